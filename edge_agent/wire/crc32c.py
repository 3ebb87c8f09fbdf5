"""CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), as in iSCSI and ext4.

Check value: crc32c(b"123456789") == 0xE3069283. Table-driven, one byte per step:
payloads here are a few hundred bytes. This is the pure-Python twin of the compiled
core's slicing-by-8 ``crc32c``; edge_agent.wire.kernels binds the one in use.
"""

from __future__ import annotations


def _table() -> tuple[int, ...]:
    out = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        out.append(c)
    return tuple(out)


_TABLE = _table()


def crc32c(data: bytes, crc: int = 0) -> int:
    """The CRC-32C of ``data``, continuing from ``crc`` (0 to start)."""
    crc ^= 0xFFFFFFFF
    table = _TABLE
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF
