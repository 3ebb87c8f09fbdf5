"""Wire format version 1: the batch payload, its encoder and its decoder.

docs/wire-format.md is the normative specification; this module implements it,
and tests/vectors/ holds payload bytes with their decoded contents.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterator
from dataclasses import dataclass, replace

from edge_agent.crc32c import crc32c
from edge_agent.errors import WireFormatError

MAGIC = b"EA"
VERSION = 1
ENCODING_DELTA_VARINT = 1  # timestamps: delta-of-delta ms; values: zigzag deltas of quantised ints
FLAG_HISTORICAL = 0x01     # sent from the backlog, not live
FLAG_CLOCK_UNSYNCED = 0x02  # wall clock was not known to be synchronised when sampled
# Quality flags of one sample (the sparse exception list): a flagged sample is the raw value
# as read, kept outside the filter chain and not part of the reconstruction.
QUALITY_OUT_OF_RANGE = 0x01  # outside the chip's physical range
QUALITY_STUCK = 0x02         # the same raw value for longer than the sensor's stuck_after
QUALITY_INVALID = 0x04       # failed the chip's checksum/CRC or validity bit
QUALITY_WARMING_UP = 0x08    # taken while the sensor was warming up (e.g. a PMSA003I's first 30 s)


# --- primitives ---------------------------------------------------------------------------

def zigzag(n: int) -> int:
    return (n << 1) if n >= 0 else ((-n) << 1) - 1


def unzigzag(z: int) -> int:
    return (z >> 1) if not z & 1 else -((z + 1) >> 1)


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


class _Reader:
    __slots__ = ("buf", "pos", "end")

    def __init__(self, buf: bytes, end: int) -> None:
        self.buf, self.pos, self.end = buf, 0, end

    def need(self, n: int, what: str) -> None:
        if self.pos + n > self.end:
            raise WireFormatError(f"truncated payload: {what} at byte {self.pos} needs {n} bytes, "
                                  f"{self.end - self.pos} left")

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
                return n
            shift += 7
            if shift > 63:
                raise WireFormatError(f"varint too long: {what} at byte {start}")

    def svarint(self, what: str) -> int:
        return unzigzag(self.uvarint(what))

    def string(self, what: str) -> str:
        n = self.uvarint(f"{what} length")
        self.need(n, what)
        raw = bytes(self.buf[self.pos:self.pos + n])
        self.pos += n
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise WireFormatError(f"{what} at byte {self.pos - n} is not UTF-8") from None

    def f64(self, what: str) -> float:
        self.need(8, what)
        (v,) = struct.unpack_from("<d", self.buf, self.pos)
        self.pos += 8
        return v


# --- content ---------------------------------------------------------------------------------

def quantise(value: float, resolution: float) -> int:
    """The integer step nearest to value at the channel's resolution (value = q * resolution)."""
    return round(value / resolution)


def decimals_of(resolution: float) -> int:
    """Decimal places of the shortest representation of resolution (0.01 -> 2, 0.25 -> 2, 1 -> 0)."""
    text = repr(float(resolution))
    if "e" in text or "E" in text:
        mant, exp = text.lower().split("e")
        frac = len(mant.split(".")[1].rstrip("0")) if "." in mant else 0
        return max(0, frac - int(exp))
    frac = text.split(".")[1].rstrip("0")
    return len(frac)


@dataclass(frozen=True)
class ChannelData:
    """One channel of a batch: samples as Unix milliseconds and quantised integers."""

    name: str
    unit: str
    resolution: float
    times_ms: tuple[int, ...]
    values_q: tuple[int, ...]
    flags: tuple[tuple[int, int], ...] = ()  # (sample index, quality flags), only where non-zero
    encoding: int = ENCODING_DELTA_VARINT

    def values(self) -> list[float]:
        d = decimals_of(self.resolution)
        return [round(q * self.resolution, d) for q in self.values_q]


@dataclass(frozen=True)
class Batch:
    node: str
    stream: str
    seq: int
    t0_ms: int
    channels: tuple[ChannelData, ...]
    flags: int = 0
    version: int = VERSION

    def rows(self) -> Iterator[dict]:
        """One dict per sample, in channel order: node, stream, seq, channel, unit, t, value."""
        for ch in self.channels:
            qflags = dict(ch.flags)
            for i, (t_ms, value) in enumerate(zip(ch.times_ms, ch.values())):
                row = {"node": self.node, "stream": self.stream, "seq": self.seq,
                       "channel": ch.name, "unit": ch.unit, "t": t_ms / 1000.0, "value": value}
                if i in qflags:
                    row["quality"] = qflags[i]
                if self.flags & FLAG_HISTORICAL:
                    row["historical"] = True
                yield row


def restamp(batch: Batch, shift_ms: int) -> Batch:
    """The batch with every time moved by ``shift_ms`` and its clock_unsynced flag cleared."""
    channels = tuple(replace(c, times_ms=tuple(t + shift_ms for t in c.times_ms)) for c in batch.channels)
    return replace(batch, t0_ms=batch.t0_ms + shift_ms, channels=channels,
                   flags=batch.flags & ~FLAG_CLOCK_UNSYNCED)


def mark_historical(payload: bytes) -> bytes:
    """The same payload with the ``historical`` flag set (and its checksum redone).

    The payload is not decoded: the flags byte sits at a fixed offset.
    """
    if payload[:2] != MAGIC or payload[2] != VERSION:
        raise WireFormatError("not a version-1 batch")
    if payload[3] & FLAG_HISTORICAL:
        return payload
    out = bytearray(payload)
    out[3] |= FLAG_HISTORICAL
    out[-4:] = crc32c(memoryview(out)[:-4]).to_bytes(4, "little")
    return bytes(out)


def encode(batch: Batch) -> bytes:
    """The version-1 payload of a batch (see docs/wire-format.md)."""
    out = bytearray(MAGIC)
    out.append(VERSION)
    out.append(batch.flags & 0xFF)
    put_str(out, batch.node)
    put_str(out, batch.stream)
    put_uvarint(out, batch.seq)
    put_uvarint(out, batch.t0_ms)
    put_uvarint(out, len(batch.channels))
    for ch in batch.channels:
        n = len(ch.times_ms)
        if len(ch.values_q) != n:
            raise ValueError(f"channel {ch.name}: {n} timestamps but {len(ch.values_q)} values")
        if not (ch.resolution > 0 and math.isfinite(ch.resolution)):
            raise ValueError(f"channel {ch.name}: resolution must be a positive number")
        put_str(out, ch.name)
        put_str(out, ch.unit)
        out += struct.pack("<d", ch.resolution)
        out.append(ENCODING_DELTA_VARINT)
        put_uvarint(out, n)
        prev_t, prev_dt = batch.t0_ms, 0
        for i, t in enumerate(ch.times_ms):
            # first: offset from the time base; second: delta; then delta-of-delta
            dt = t - prev_t
            put_uvarint(out, zigzag(dt if i <= 1 else dt - prev_dt))
            prev_t, prev_dt = t, dt
        prev_q = 0
        for q in ch.values_q:
            put_uvarint(out, zigzag(q - prev_q))
            prev_q = q
        put_uvarint(out, len(ch.flags))
        prev_i = -1
        for idx, fl in ch.flags:
            if not prev_i < idx < n or not 0 < fl <= 0xFF:
                raise ValueError(f"channel {ch.name}: bad quality flag entry ({idx}, {fl})")
            put_uvarint(out, idx - prev_i - 1)
            out.append(fl)
            prev_i = idx
    out += struct.pack("<I", crc32c(bytes(out)))
    return bytes(out)


def decode(payload: bytes) -> Batch:
    """Decode one payload; WireFormatError says what is wrong and where."""
    payload = bytes(payload)
    if len(payload) < 8:
        raise WireFormatError(f"payload of {len(payload)} bytes is too short to be a batch")
    if payload[:2] != MAGIC:
        raise WireFormatError(f"bad magic {payload[:2].hex()} (expected {MAGIC.hex()}): not an edge-agent batch")
    version = payload[2]
    if version != VERSION:
        raise WireFormatError(f"unsupported wire format version {version} (this decoder knows {VERSION})")
    (crc,) = struct.unpack_from("<I", payload, len(payload) - 4)
    actual = crc32c(payload[:-4])
    if crc != actual:
        raise WireFormatError(f"checksum mismatch: payload says {crc:08x}, content gives {actual:08x} "
                              f"(corrupted in the store or on the way)")
    r = _Reader(payload, len(payload) - 4)
    r.pos = 3
    flags = r.byte("flags")
    node = r.string("node id")
    stream = r.string("stream")
    seq = r.uvarint("sequence number")
    t0 = r.uvarint("time base")
    nch = r.uvarint("channel count")
    channels = []
    for c in range(nch):
        what = f"channel {c}"
        name = r.string(f"{what} name")
        unit = r.string(f"{what} unit")
        resolution = r.f64(f"{what} resolution")
        if not (resolution > 0 and math.isfinite(resolution)):
            raise WireFormatError(f"{what} ({name}): resolution {resolution!r} is not a positive number")
        encoding = r.byte(f"{what} encoding")
        if encoding != ENCODING_DELTA_VARINT:
            raise WireFormatError(f"{what} ({name}): unknown encoding id {encoding}")
        n = r.uvarint(f"{what} sample count")
        if n > r.end - r.pos:  # every sample takes at least two bytes: guards absurd counts
            raise WireFormatError(f"{what} ({name}): sample count {n} exceeds the payload")
        times = []
        t, dt = t0, 0
        for i in range(n):
            v = r.svarint(f"{what} timestamp {i}")
            if i == 0:
                t = t0 + v
            else:
                dt = v if i == 1 else dt + v
                t += dt
            times.append(t)
        values = []
        q = 0
        for i in range(n):
            q += r.svarint(f"{what} value {i}")
            values.append(q)
        nflags = r.uvarint(f"{what} flag count")
        qflags = []
        idx = -1
        for _ in range(nflags):
            idx += r.uvarint(f"{what} flag index") + 1
            fl = r.byte(f"{what} flag")
            if idx >= n:
                raise WireFormatError(f"{what} ({name}): quality flag for sample {idx} of {n}")
            qflags.append((idx, fl))
        channels.append(ChannelData(name, unit, resolution, tuple(times), tuple(values), tuple(qflags)))
    if r.pos != r.end:
        raise WireFormatError(f"{r.end - r.pos} unexpected bytes after the last channel")
    return Batch(node=node, stream=stream, seq=seq, t0_ms=t0, channels=tuple(channels),
                 flags=flags, version=version)


def data_topic(prefix: str, node: str, stream: str) -> str:
    return f"{prefix}/{node}/data/{stream}"


def status_topic(prefix: str, node: str) -> str:
    return f"{prefix}/{node}/status"


def health_topic(prefix: str, node: str) -> str:
    return f"{prefix}/{node}/health"


def parse_data_topic(topic: str) -> tuple[str, str] | None:
    """(node, stream) from ``{prefix}/{node}/data/{stream}``, or None if it is not a data topic."""
    parts = topic.split("/")
    if len(parts) >= 4 and parts[-2] == "data":
        return parts[-3], parts[-1]
    return None

