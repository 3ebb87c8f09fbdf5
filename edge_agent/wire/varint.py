"""The format's primitives: zigzag signed integers, unsigned LEB128 varints, length-prefixed
strings and blocks, and the Reader that takes them off a payload with bounds checked.

``zigzags`` is the pure-Python twin of the compiled core's; edge_agent.wire.kernels binds
the one in use.
"""

from __future__ import annotations

import struct

from edge_agent.errors import WireFormatError


def zigzag(n: int) -> int:
    """0, -1, 1, -2, ... -> 0, 1, 2, 3, ...: small magnitudes of either sign stay small."""
    return (n << 1) if n >= 0 else ((-n) << 1) - 1


def unzigzag(z: int) -> int:
    return (z >> 1) if not z & 1 else -((z + 1) >> 1)


def zigzags(values: list[int]) -> list[int]:
    """zigzag of each value (twin of the compiled core's ``zigzags``)."""
    return [zigzag(v) for v in values]


def put_uvarint(out: bytearray, n: int) -> None:
    if n < 0:
        raise ValueError(f"uvarint cannot hold a negative number ({n})")
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def put_str(out: bytearray, s: str) -> None:
    raw = s.encode("utf-8")
    put_uvarint(out, len(raw))
    out += raw


class Reader:
    """Reads ``buf[pos:end]`` front to back; every read says what it reads, so a payload
    cut short or malformed raises WireFormatError naming the field and the byte."""

    __slots__ = ("buf", "end", "pos", "where")

    def __init__(self, buf: bytes, end: int, where: str = "") -> None:
        # ``where`` names what byte offsets count from when it is not the payload's first byte
        self.buf, self.pos, self.end, self.where = buf, 0, end, where

    def at(self, pos: int | None = None) -> str:
        """``byte N`` of this reader's buffer, saying which buffer when it is not the payload."""
        return f"{self.where}byte {self.pos if pos is None else pos}"

    def need(self, n: int, what: str) -> None:
        if self.pos + n > self.end:
            raise WireFormatError(
                f"truncated payload: {what} at {self.at()} needs {n} bytes, {self.end - self.pos} left"
            )

    def take(self, n: int, what: str) -> bytes:
        self.need(n, what)
        self.pos += n
        return bytes(self.buf[self.pos - n : self.pos])

    def byte(self, what: str) -> int:
        self.need(1, what)
        b = self.buf[self.pos]
        self.pos += 1
        return b

    def uvarint(self, what: str) -> int:
        n = shift = 0
        start = self.pos
        while True:
            b = self.byte(what)
            n |= (b & 0x7F) << shift
            if not b & 0x80:
                if n >> 64:
                    raise WireFormatError(f"varint beyond 64 bits: {what} at {self.at(start)}")
                return n
            shift += 7
            if shift > 63:
                raise WireFormatError(f"varint longer than 10 bytes: {what} at {self.at(start)}")

    def svarint(self, what: str) -> int:
        return unzigzag(self.uvarint(what))

    def string(self, what: str) -> str:
        n = self.uvarint(f"{what} length")
        self.need(n, what)
        raw = bytes(self.buf[self.pos : self.pos + n])
        self.pos += n
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise WireFormatError(f"{what} at {self.at(self.pos - n)} is not UTF-8") from None

    def block(self, what: str) -> bytes:
        return self.take(self.uvarint(f"{what} length"), what)

    def f64(self, what: str) -> float:
        self.need(8, what)
        (v,) = struct.unpack_from("<d", self.buf, self.pos)
        self.pos += 8
        return v
