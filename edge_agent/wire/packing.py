"""Integer blocks of the format: Simple-8b words with zero runs in one byte, runs of zeros,
Rice codes, and the choice among them for a channel's residuals (version 2's forms).

These are the pure-Python twins: the compiled core has ``pack_simple8b`` and ``pack_rice``
with the same bytes, bound in edge_agent.wire.kernels; the unpackers have no compiled twin.
"""

from __future__ import annotations

import math

from edge_agent.errors import WireFormatError
from edge_agent.wire.format import RICE_PART, SHAPE_RICE, SHAPE_RUNS
from edge_agent.wire.varint import put_uvarint

# --- Simple-8b (Anh & Moffat, 2010), with zero runs in one byte --------------------------------
# A data word is 64 bits, little-endian: the selector in its low 4 bits, then `count` values of
# `bits` bits each, the first value lowest. Selectors 0 and 1 are runs of zeros and take one
# byte, not eight: its high 4 bits say how many runs in a row (1 to 16), so one byte stands
# for up to 3840 zeros. The block's last word may hold fewer values than its selector says
# (the count of values is known) and is cut after its last non-zero byte.
_S8B = (
    (240, 0),
    (120, 0),
    (60, 1),
    (30, 2),
    (20, 3),
    (15, 4),
    (12, 5),
    (10, 6),
    (8, 7),
    (7, 8),
    (6, 10),
    (5, 12),
    (4, 15),
    (3, 20),
    (2, 30),
    (1, 60),
)


def pack_simple8b(values: list[int]) -> bytes:
    """Non-negative integers below 2**60, packed; the decoder needs their number."""
    out = bytearray()
    n, i = len(values), 0
    last_word = -1  # where the last data word starts, to cut it
    while i < n:
        if values[i] == 0:
            z = i
            while z < n and z - i < 16 * 240 and values[z] == 0:
                z += 1
            z -= i
            if z >= 240 or i + z == n:  # whole runs of 240, or the zeros that end the block
                runs = min(16, -(-z // 240)) if i + z == n else z // 240
                out.append((runs - 1) << 4)
                i = min(n, i + runs * 240)
                last_word = -1
                continue
            if z >= 120:
                out.append(1)
                i += 120
                last_word = -1
                continue
        for sel in range(2, 16):
            count, bits = _S8B[sel]
            end = min(i + count, n)
            if max(values[i:end]) < (1 << bits):
                break
        else:
            raise ValueError(f"value {max(values[i : i + 60])} does not fit Simple-8b (at most 2**60 - 1)")
        if min(values[i:end]) < 0:
            raise ValueError("Simple-8b holds non-negative integers")
        word, shift = sel, 4
        for v in values[i:end]:
            word |= v << shift
            shift += bits
        last_word = len(out)
        out += word.to_bytes(8, "little")
        i = end
    if last_word >= 0:
        cut = bytes(out[last_word:]).rstrip(b"\0")
        del out[last_word:]
        out += cut
    return bytes(out)


def unpack_simple8b(block: bytes, n: int, what: str = "block") -> list[int]:
    out: list[int] = []
    pos = 0
    while len(out) < n:
        if pos >= len(block):
            raise WireFormatError(f"{what}: {len(out)} of {n} values, then the block ends")
        sel = block[pos] & 0xF
        count, bits = _S8B[sel]
        if not bits:
            runs = (block[pos] >> 4) + 1
            out.extend([0] * min(count * runs, n - len(out)))
            pos += 1
            continue
        word = int.from_bytes(block[pos : pos + 8], "little") >> 4
        pos += 8
        mask = (1 << bits) - 1
        for _ in range(min(count, n - len(out))):
            out.append(word & mask)
            word >>= bits
    if pos < len(block):
        raise WireFormatError(f"{what}: {len(block) - pos} bytes after its {n} values")
    return out


def zero_runs(residuals: list[int]) -> list[int]:
    """[zeros before the 1st non-zero, that value - 1, zeros before the 2nd, ..., zeros at the end]."""
    out, run = [], 0
    for z in residuals:
        if z:
            out += [run, z - 1]
            run = 0
        else:
            run += 1
    out.append(run)
    return out


def from_zero_runs(items: list[int]) -> list[int]:
    out: list[int] = []
    for j in range(0, len(items) - 1, 2):
        out += [0] * items[j]
        out.append(items[j + 1] + 1)
    out += [0] * items[-1]
    return out


def pack_rice(values: list[int]) -> bytes:
    """Rice codes, most significant bit first: per partition of RICE_PART values a 6-bit
    parameter k, then each value as (v >> k) ones and a zero, and its low k bits. k is the
    cheapest for the partition (searched around log2 of its mean). The last byte is padded
    with zeros."""
    bits: list[str] = []
    for start in range(0, len(values), RICE_PART):
        part = values[start : start + RICE_PART]
        k0 = max(0, int(math.log2(sum(part) / len(part) + 1)) - 1)
        k = min(range(k0, min(k0 + 4, 61)), key=lambda k: sum((v >> k) for v in part) + len(part) * (k + 1))
        bits.append(format(k, "06b"))
        for v in part:
            bits.append("1" * (v >> k) + "0")
            if k:
                bits.append(format(v & ((1 << k) - 1), f"0{k}b"))
    text = "".join(bits)
    if not text:
        return b""
    text += "0" * (-len(text) % 8)
    return int(text, 2).to_bytes(len(text) // 8, "big")


def unpack_rice(block: bytes, n: int, what: str = "block") -> list[int]:
    text = bin(int.from_bytes(block, "big"))[2:].zfill(8 * len(block)) if block else ""
    out: list[int] = []
    pos = 0
    try:
        while len(out) < n:
            k = int(text[pos : pos + 6], 2)
            pos += 6
            for _ in range(min(RICE_PART, n - len(out))):
                end = text.index("0", pos)
                q = end - pos
                pos = end + 1
                low = int(text[pos : pos + k], 2) if k else 0
                if k and pos + k > len(text):
                    raise ValueError
                pos += k
                out.append((q << k) | low)
    except ValueError:
        raise WireFormatError(f"{what}: Rice codes end before {n} values") from None
    if len(text) - pos >= 8 or "1" in text[pos:]:
        raise WireFormatError(f"{what}: bits after its {n} Rice-coded values")
    return out


def pack_residuals(residuals: list[int]) -> tuple[bytes, int]:
    """Zigzagged residuals' block in its smallest form: (block, shape bits of the form). Forms:
    Simple-8b as they are; runs of zeros (most are 0), preceded by the number of non-zero
    residuals; Rice codes (a Laplacian spread, outliers)."""
    best = (pack_simple8b(residuals), 0)
    nonzero = len(residuals) - residuals.count(0)
    if nonzero * 4 <= len(residuals):
        head = bytearray()
        put_uvarint(head, nonzero)
        runs = bytes(head) + pack_simple8b(zero_runs(residuals))
        if len(runs) < len(best[0]):
            best = (runs, SHAPE_RUNS)
    if residuals and max(residuals) < 1 << 24:  # beyond, a unary part would be absurd
        rice = pack_rice(residuals)
        if len(rice) < len(best[0]):
            best = (rice, SHAPE_RICE)
    return best
