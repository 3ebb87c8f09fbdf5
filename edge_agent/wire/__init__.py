"""The batch payload: its encoder (versions 2 and 3) and its decoder (versions 1 to 3).

docs/wire-format.md is the normative specification; this module implements it,
and tests/vectors/ holds payload bytes with their decoded contents.
"""

from __future__ import annotations

import math
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

from edge_agent import dsp as _dsp_select
from edge_agent.wire.crc32c import crc32c
from edge_agent.wire.rangecoder import rc_decode, rc_encode
from edge_agent.errors import WireFormatError

MAGIC = b"EA"
VERSION = 3                # what encode() writes when a channel needs it (else 2, for older decoders)
VERSIONS = (1, 2, 3)       # what decode() reads
ENCODING_DELTA_VARINT = 1  # version 1: timestamps delta-of-delta ms; values zigzag deltas as varints
FLAG_HISTORICAL = 0x01     # sent from the backlog, not live
FLAG_CLOCK_UNSYNCED = 0x02  # wall clock was not known to be synchronised when sampled
FLAG_DEFLATE = 0x04        # versions 2, 3: the body after the flags byte is raw DEFLATE (RFC 1951)
# Version 2, per channel: what follows its sample count
SHAPE_REGULAR = 0x01       # consecutive slots from the first one: no time block
SHAPE_EXCEPTIONS = 0x02    # some times are off their slot: a list of offsets follows
SHAPE_FLAGS = 0x04         # some samples carry quality flags: the sparse list follows
SHAPE_PREDICTOR = 0x18     # bits 3-4: how values are predicted from the ones before (PREDICTORS)
PREDICTORS = ("previous", "linear", "mean8", "trend8", "zero", "seasonal")  # 0-3 also in shape bits 3-4
PREDICTOR_ZERO = 4         # version 3, coded form only: the residual is the value itself
PREDICTOR_SEASONAL = 5     # version 3, coded form only: the step one season ago repeats
SHAPE_BINNED = 0x20        # residuals are in bins of `width` steps: lossy within width / 2
SHAPE_RUNS = 0x40          # the residuals are sent as runs of zeros and the values between
SHAPE_RICE = 0x80          # the residuals are Rice codes, a parameter per partition of RICE_PART
SHAPE_CODED = 0xC0         # version 3 (runs and Rice together): predictor in the block, range-coded
RICE_PART = 64
DAY_MS = 86_400_000        # the season the encoder tries when a batch holds more than two of it

# Version 2: channels every decoder knows by a one-byte kind, so a batch need not spell out
# their names and units. Kind 0 is a channel named in the payload. Codes are never reused.
KNOWN_CHANNELS: dict[int, tuple[str, str]] = {
    1: ("temperature", "°C"), 2: ("humidity", "%"), 3: ("pressure", "hPa"), 4: ("gas", "Ω"),
    5: ("co2", "ppm"), 6: ("pm1_0", "µg/m³"), 7: ("pm2_5", "µg/m³"), 8: ("pm10", "µg/m³"),
    9: ("particles_0_3um", "/0.1L"), 10: ("particles_0_5um", "/0.1L"), 11: ("particles_1_0um", "/0.1L"),
    12: ("particles_2_5um", "/0.1L"), 13: ("particles_5_0um", "/0.1L"), 14: ("particles_10um", "/0.1L"),
    15: ("bus_voltage", "V"), 16: ("shunt_voltage", "mV"), 17: ("current", "A"), 18: ("power", "W"),
    19: ("energy", "Wh"), 20: ("energy", "kWh"), 21: ("pulses", ""),
}
_KIND_OF = {v: k for k, v in KNOWN_CHANNELS.items()}
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

    def block(self, what: str) -> bytes:
        n = self.uvarint(f"{what} length")
        self.need(n, what)
        self.pos += n
        return bytes(self.buf[self.pos - n:self.pos])

    def f64(self, what: str) -> float:
        self.need(8, what)
        (v,) = struct.unpack_from("<d", self.buf, self.pos)
        self.pos += 8
        return v


# --- Simple-8b (Anh & Moffat, 2010), with zero runs in one byte --------------------------------
# A data word is 64 bits, little-endian: the selector in its low 4 bits, then `count` values of
# `bits` bits each, the first value lowest. Selectors 0 and 1 are runs of zeros and take one
# byte, not eight: its high 4 bits say how many runs in a row (1 to 16), so one byte stands
# for up to 3840 zeros. The block's last word may hold fewer values than its selector says
# (the count of values is known) and is cut after its last non-zero byte.
_S8B = ((240, 0), (120, 0), (60, 1), (30, 2), (20, 3), (15, 4), (12, 5), (10, 6), (8, 7), (7, 8),
        (6, 10), (5, 12), (4, 15), (3, 20), (2, 30), (1, 60))


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
            raise ValueError(f"value {max(values[i:i + 60])} does not fit Simple-8b (at most 2**60 - 1)")
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
        word = int.from_bytes(block[pos:pos + 8], "little") >> 4
        pos += 8
        mask = (1 << bits) - 1
        for _ in range(min(count, n - len(out))):
            out.append(word & mask)
            word >>= bits
    if pos < len(block):
        raise WireFormatError(f"{what}: {len(block) - pos} bytes after its {n} values")
    return out


def _decimal_resolution(resolution: float) -> tuple[int, int]:
    """(m, e) with resolution == m * 10**e exactly as a float, or (0, 0) when there is none short."""
    from decimal import Decimal

    sign, digits, exp = Decimal(repr(float(resolution))).as_tuple()
    m = int("".join(map(str, digits)))
    while m and m % 10 == 0:
        m, exp = m // 10, exp + 1
    if sign or m == 0 or m >= 1 << 32 or _resolution_of(m, exp) != resolution:
        return 0, 0
    return m, exp


def _resolution_of(m: int, e: int) -> float:
    return m * 10.0 ** e if e >= 0 else m / 10 ** -e


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
    encoding: int = field(default=ENCODING_DELTA_VARINT, compare=False)  # as decoded: the payload's version
    bin_width: int = 1  # versions 2, 3, error-bounded: each value within bin_width // 2 steps of its quantised value
    predictor: int | None = field(default=None, compare=False)  # as decoded; re-encoding keeps it
    season: int = field(default=0, compare=False)  # as decoded: the seasonal predictor's period in samples

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
    version: int = field(default=VERSION, compare=False)  # as decoded; encode() chooses its own
    period_ms: int = 1  # the sampling schedule (version 2): times are t0 + k * period (+ exceptions);
    #                     1: every millisecond is a slot, i.e. no schedule

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


_HISTORICAL_DELTA: dict[int, int] = {}  # checked length -> what setting the flag does to the CRC


def mark_historical(payload: bytes) -> bytes:
    """The same payload with the ``historical`` flag set (and its checksum brought along).

    The payload is not decoded: the flags byte sits at a fixed offset. A CRC is affine in
    its message, so flipping one bit changes it by a constant of the message's length
    (``crc(m ^ d) = crc(m) ^ crc(d) ^ crc(0)``): the checksum is updated without reading
    the payload again, and a payload corrupted in the store stays detectably corrupt.
    """
    if payload[:2] != MAGIC or payload[2] not in VERSIONS:
        raise WireFormatError("not an edge-agent batch of a known version")
    if payload[3] & FLAG_HISTORICAL:
        return payload
    n = len(payload) - 4
    delta = _HISTORICAL_DELTA.get(n)
    if delta is None:
        if len(_HISTORICAL_DELTA) > 4096:
            _HISTORICAL_DELTA.clear()
        flag = bytearray(n)
        flag[3] = FLAG_HISTORICAL
        delta = _HISTORICAL_DELTA[n] = crc32c(bytes(flag)) ^ crc32c(bytes(n))
    crc = int.from_bytes(payload[-4:], "little") ^ delta
    return b"".join((payload[:3], bytes((payload[3] | FLAG_HISTORICAL,)), payload[4:-4], crc.to_bytes(4, "little")))


def encode_v1(batch: Batch) -> bytes:
    """The version-1 payload of a batch (see docs/wire-format.md): for test vectors and for
    backbones that still need it; nodes send version 2."""
    out = bytearray(MAGIC)
    out.append(1)
    out.append(batch.flags & 0xFF)
    put_str(out, batch.node)
    put_str(out, batch.stream)
    put_uvarint(out, batch.seq)
    put_uvarint(out, batch.t0_ms)
    put_uvarint(out, len(batch.channels))
    for ch in batch.channels:
        n = _check_channel(ch)
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
        _put_flags(out, ch, n)
    out += struct.pack("<I", crc32c(bytes(out)))
    return bytes(out)


def _check_channel(ch: ChannelData) -> int:
    n = len(ch.times_ms)
    if len(ch.values_q) != n:
        raise ValueError(f"channel {ch.name}: {n} timestamps but {len(ch.values_q)} values")
    if not (ch.resolution > 0 and math.isfinite(ch.resolution)):
        raise ValueError(f"channel {ch.name}: resolution must be a positive number")
    return n


def _put_flags(out: bytearray, ch: ChannelData, n: int) -> None:
    put_uvarint(out, len(ch.flags))
    prev_i = -1
    for idx, fl in ch.flags:
        if not prev_i < idx < n or not 0 < fl <= 0xFF:
            raise ValueError(f"channel {ch.name}: bad quality flag entry ({idx}, {fl})")
        put_uvarint(out, idx - prev_i - 1)
        out.append(fl)
        prev_i = idx


def _put_block(out: bytearray, values: list[int]) -> None:
    block = pack_simple8b(values)
    put_uvarint(out, len(block))
    out += block


def bin_width_for(bound: float, resolution: float) -> int:
    """The widest bin (in resolution steps) that keeps every value within ``bound``: odd,
    as a bin of W steps rebuilds within floor(W / 2) of them on one side and
    W - 1 - floor(W / 2) on the other, so an even width wastes a step."""
    return 2 * math.floor(bound / resolution + 1e-9) + 1


def _predict(kind: int, hist: list[int], i: int, season: int = 0) -> int:
    """The prediction of value i from the values before it (``hist``), known to the decoder:
    0 the previous value; 1 the line through the two before (the previous one for i = 1);
    2 the mean of up to eight before, rounded half up (noisy, slowly moving signals);
    3 the least-squares line through up to eight before, one step on, rounded half up
    (noisy signals with a trend); 4 zero (values that mostly sit at one level, e.g. rain);
    5 the previous value plus the step between the same two samples one ``season`` earlier
    (the previous value while i <= season): a daily cycle repeats."""
    if i == 0 or kind == PREDICTOR_ZERO:
        return 0
    if kind == PREDICTOR_SEASONAL:
        return hist[i - 1] + hist[i - season] - hist[i - season - 1] if i > season else hist[i - 1]
    if kind == 0 or (kind == 1 and i == 1):
        return hist[i - 1]
    if kind == 1:
        return 2 * hist[i - 1] - hist[i - 2]
    window = hist[max(0, i - 8):i]
    m = len(window)
    if kind == 2 or m < 2:
        return (2 * sum(window) + m) // (2 * m)
    # 3: the least-squares line through them (x = 0 .. m-1), one step on, in integers
    sx, sxx = m * (m - 1) // 2, (m - 1) * m * (2 * m - 1) // 6
    sy = sum(window)
    sxy = sum(x * y for x, y in enumerate(window))
    d = m * sxx - sx * sx
    num = sy * d + (m * sxy - sx * sy) * (m * m - sx)
    den = d * m
    return (2 * num + den) // (2 * den)


def _residuals(qs, kind: int, width: int = 1, season: int = 0) -> tuple[list[int], list[int]]:
    """(signed residuals, the values the decoder will rebuild). With width > 1 the residual
    is in bins of ``width`` steps around the prediction (SZ-style error-bounded
    quantisation): every rebuilt value is within width // 2 steps of the one given."""
    out: list[int] = []
    rebuilt: list[int] = []
    for i, q in enumerate(qs):
        pred = _predict(kind, rebuilt, i, season)
        b = (q - pred + width // 2) // width if width > 1 else q - pred
        rebuilt.append(pred + width * b)
        out.append(b)
    return out, rebuilt


def _values_from(residuals: list[int], kind: int, width: int = 1, season: int = 0) -> list[int]:
    out: list[int] = []
    for i, r in enumerate(residuals):
        out.append(_predict(kind, out, i, season) + width * r)
    return out


def _runs(residuals: list[int]) -> list[int]:
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


def _from_runs(items: list[int]) -> list[int]:
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
        part = values[start:start + RICE_PART]
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
            k = int(text[pos:pos + 6], 2)
            pos += 6
            for _ in range(min(RICE_PART, n - len(out))):
                end = text.index("0", pos)
                q = end - pos
                pos = end + 1
                low = int(text[pos:pos + k], 2) if k else 0
                if k and pos + k > len(text):
                    raise ValueError
                pos += k
                out.append((q << k) | low)
    except ValueError:
        raise WireFormatError(f"{what}: Rice codes end before {n} values") from None
    if len(text) - pos >= 8 or "1" in text[pos:]:
        raise WireFormatError(f"{what}: bits after its {n} Rice-coded values")
    return out


# The compiled core's packers and predictors when the core is in use (the rule of
# edge_agent.dsp); the functions above are their twins, and the tests hold them equal.
def zigzags(values: list[int]) -> list[int]:
    return [zigzag(v) for v in values]


pack_simple8b_py, pack_rice_py, zigzags_py = pack_simple8b, pack_rice, zigzags
if _dsp_select.IMPLEMENTATION == "cython":
    from edge_agent._core import pack_rice, pack_simple8b, zigzags  # noqa: E402,F811
    from edge_agent._core import residuals as _compiled_residuals  # noqa: E402
    from edge_agent._core import times_section as _compiled_times  # noqa: E402
    from edge_agent._core import value_block as _compiled_value_block  # noqa: E402
else:
    _compiled_residuals = _compiled_times = _compiled_value_block = None


def _compiled_or_twin(compiled, twin, *args):
    """compiled(*args) when the compiled core is in use and the numbers fit its int64
    (it raises OverflowError beyond), else the Python twin, whose integers have no bound."""
    if compiled is not None:
        try:
            return compiled(*args)
        except OverflowError:
            pass
    return twin(*args)


def _residuals_fast(qs, kind: int, width: int = 1, season: int = 0) -> tuple[list[int], list[int]]:
    """_residuals by the compiled core when it is in use and the values fit its int64."""
    return _compiled_or_twin(_compiled_residuals, _residuals, qs, kind, width, season)


def _pack_residuals(residuals: list[int]) -> tuple[bytes, int]:
    """The residuals' block in its smallest form: (block, shape bits of the form). Forms:
    Simple-8b as they are; runs of zeros (most are 0), preceded by the number of non-zero
    residuals; Rice codes (a Laplacian spread, outliers)."""
    best = (pack_simple8b(residuals), 0)
    nonzero = len(residuals) - residuals.count(0)
    if nonzero * 4 <= len(residuals):
        head = bytearray()
        put_uvarint(head, nonzero)
        runs = bytes(head) + pack_simple8b(_runs(residuals))
        if len(runs) < len(best[0]):
            best = (runs, SHAPE_RUNS)
    if residuals and max(residuals) < 1 << 24:  # beyond, a unary part would be absurd
        rice = pack_rice(residuals)
        if len(rice) < len(best[0]):
            best = (rice, SHAPE_RICE)
    return best


def _coded(residuals: list[int], kind: int, season: int) -> bytes:
    """The coded form's block: predictor, season, range-coded residuals, padded with zero
    bytes (which the decoder reads past the end anyway) to a byte per MAX_PER_BYTE values,
    so the decoder's bound on the sample count holds for every form."""
    head = bytearray()
    put_uvarint(head, kind)
    if kind == PREDICTOR_SEASONAL:
        put_uvarint(head, season)
    return bytes(head) + rc_encode(residuals).ljust(-(-len(residuals) // MAX_PER_BYTE), b"\0")


def season_for(period_ms: int, n: int) -> int:
    """The seasonal predictor's period in samples for a batch of ``n`` on a ``period_ms``
    schedule: one day when it is a whole number of periods and the batch holds more than
    two days; else 0 (not tried)."""
    if period_ms > 1 and DAY_MS % period_ms == 0 and n > 2 * (DAY_MS // period_ms):
        return DAY_MS // period_ms
    return 0


def value_block(qs, width: int = 1, predictor: int | None = None, season: int = 0,
                coded: bool = True) -> tuple[bytes, int, int]:
    """The smallest block of the predictors' residuals: (block, predictor, shape bits of the
    predictor and form). ``season`` > 0 adds the seasonal predictor with that period;
    ``coded`` False keeps to version 2's forms and predictors.

    Binned values that came from a decoder are re-encoded with the predictor (and season)
    they were rebuilt with: only then is every residual exact, and re-encoding (the store
    restamps batches so) changes no value."""
    if predictor is not None and width > 1:
        kinds = [predictor]
        if predictor >= PREDICTOR_ZERO and not coded:
            raise ValueError(f"predictor {PREDICTORS[predictor]} needs wire version 3")
    else:
        kinds = [0, 1, 2, 3] if len(qs) >= 3 else [0]
        if coded and len(qs) >= 3:
            kinds.append(PREDICTOR_ZERO)
        if coded and season:
            kinds.append(PREDICTOR_SEASONAL)
    return _compiled_or_twin(_compiled_value_block, _value_block_py, qs, width, kinds, season, coded)


def _value_block_py(qs, width: int, kinds: list[int], season: int, coded: bool) -> tuple[bytes, int, int]:
    """value_block's search in Python: every predictor of ``kinds`` in each of its forms,
    the smallest block kept (the earlier on a tie). The compiled core's value_block is its
    twin (the same bytes; a property test holds them equal)."""
    best = None
    for kind in kinds:
        residuals = _residuals_fast(qs, kind, width, season)[0]
        widest = max(max(residuals), -min(residuals)) if residuals else 0
        if widest >= 1 << 59:  # beyond Simple-8b's zigzag values
            raise ValueError(f"a residual of {widest} steps: values too far apart to encode")
        forms = []  # version 2's forms first: a tie keeps the payload readable by older decoders
        if kind < PREDICTOR_ZERO:
            block, form = _pack_residuals(zigzags(residuals))
            forms.append((block, kind << 3 | form))
        if coded:
            forms.append((_coded(residuals, kind, season), SHAPE_CODED))
        for block, shape in forms:
            if best is None or len(block) < len(best[0]):
                best = (block, kind, shape)
    return best


def _times_py(times_ms, t0_ms: int, period: int) -> tuple[bool, bool, bytes]:
    """A channel's times as slots of the schedule: (regular, has exceptions, the bytes
    after the shape). Regular: consecutive slots from the first, written as that slot;
    else the gaps between slots (zigzag, Simple-8b). Then the offsets of the times that
    are not on their slot, if any. The compiled core's times_section is its twin."""
    ks, exceptions = [], []
    for i, t in enumerate(times_ms):
        k = (t - t0_ms + period // 2) // period
        off = t - t0_ms - k * period
        if off:
            exceptions.append((i, off))
        ks.append(k)
    regular = bool(ks) and ks[0] >= 0 and all(b - a == 1 for a, b in zip(ks, ks[1:]))
    out = bytearray()
    if regular:
        put_uvarint(out, ks[0])
    else:
        _put_block(out, [zigzag(b - a - 1) for a, b in zip([-1] + ks, ks)])
    if exceptions:
        put_uvarint(out, len(exceptions))
        prev_i = -1
        for i, off in exceptions:
            put_uvarint(out, i - prev_i - 1)
            put_uvarint(out, zigzag(off))
            prev_i = i
    return regular, bool(exceptions), bytes(out)


def _times(times_ms, t0_ms: int, period: int) -> tuple[bool, bool, bytes]:
    """_times_py by the compiled core when it is in use and the times fit its int64."""
    return _compiled_or_twin(_compiled_times, _times_py, times_ms, t0_ms, period)


def encode(batch: Batch, *, deflate: bool = True, version: int = VERSION) -> bytes:
    """The payload of a batch (see docs/wire-format.md): version 3 when a channel's values
    are smallest in its coded form, else version 2; ``version=2`` keeps to version 2 for
    backbones whose decoders do not read version 3 yet.

    Times are written as slots of the batch's schedule (``period_ms``; 1 when it has
    none) plus the offsets of points that are not on it; values as the residuals of the
    predictor whose block is smallest, in the smallest of the forms (Simple-8b, runs of
    zeros, Rice codes, range-coded). With ``deflate`` the body is compressed when that
    makes the payload smaller.
    """
    period = batch.period_ms
    if period < 1:
        raise ValueError(f"period_ms must be at least 1 (got {period})")
    if version not in (2, 3):
        raise ValueError(f"encode writes wire versions 2 and 3, not {version}")
    coded, version = version == 3, 2
    body = bytearray()
    put_str(body, batch.node)
    put_str(body, batch.stream)
    put_uvarint(body, batch.seq)
    put_uvarint(body, batch.t0_ms)
    put_uvarint(body, period)
    put_uvarint(body, len(batch.channels))
    for ch in batch.channels:
        n = _check_channel(ch)
        kind = _KIND_OF.get((ch.name, ch.unit), 0)
        body.append(kind)
        if kind == 0:
            put_str(body, ch.name)
            put_str(body, ch.unit)
        m, e = _decimal_resolution(ch.resolution)
        put_uvarint(body, m)
        put_uvarint(body, zigzag(e))
        if m == 0:
            body += struct.pack("<d", ch.resolution)
        put_uvarint(body, n)
        regular, has_exceptions, times = _times(ch.times_ms, batch.t0_ms, period)
        shape = (SHAPE_REGULAR if regular else 0) | (SHAPE_EXCEPTIONS if has_exceptions else 0) | \
            (SHAPE_FLAGS if ch.flags else 0)
        shape_at = len(body)
        body.append(shape)
        body += times
        if ch.bin_width > 1:
            body[shape_at] |= SHAPE_BINNED
            put_uvarint(body, ch.bin_width)
        season = ch.season if ch.predictor == PREDICTOR_SEASONAL else season_for(period, n)
        block, _, shape_bits = value_block(ch.values_q, ch.bin_width, ch.predictor, season, coded)
        body[shape_at] |= shape_bits
        if shape_bits & SHAPE_CODED == SHAPE_CODED:
            version = 3
        put_uvarint(body, len(block))
        body += block
        if ch.flags:
            _put_flags(body, ch, n)
    flags = batch.flags & ~FLAG_DEFLATE & 0xFF
    if deflate:
        packer = zlib.compressobj(9, zlib.DEFLATED, -15)
        packed = packer.compress(bytes(body)) + packer.flush()
        if len(packed) < len(body):
            body, flags = bytearray(packed), flags | FLAG_DEFLATE
    out = bytearray(MAGIC)
    out.append(version)
    out.append(flags)
    out += body
    out += struct.pack("<I", crc32c(bytes(out)))
    return bytes(out)


MAX_BODY = 1 << 20  # a version-2 body inflates to at most this many bytes
MAX_CHANNEL_SAMPLES = 1 << 20  # a decoder refuses channels claiming more samples
MAX_PER_BYTE = 16 * 240  # the most values one byte of a channel stands for (a Simple-8b run byte)


def _decode_v2(payload: bytes, flags: int) -> Batch:
    """Versions 2 and 3 (version 3 adds the coded form)."""
    version = payload[2]
    body = payload[4:-4]
    if flags & FLAG_DEFLATE:
        inflater = zlib.decompressobj(-15)
        try:
            body = inflater.decompress(body, MAX_BODY)
        except zlib.error as exc:
            raise WireFormatError(f"deflated body does not inflate: {exc}") from None
        if inflater.unconsumed_tail or not inflater.eof:
            raise WireFormatError(f"deflated body is cut short or inflates beyond {MAX_BODY} bytes")
    r = _Reader(body, len(body))
    node = r.string("node id")
    stream = r.string("stream")
    seq = r.uvarint("sequence number")
    t0 = r.uvarint("time base")
    period = r.uvarint("period")
    if period == 0:
        raise WireFormatError("period 0: the schedule needs a period of at least 1 ms")
    nch = r.uvarint("channel count")
    channels = []
    for c in range(nch):
        what = f"channel {c}"
        kind = r.byte(f"{what} kind")
        if kind == 0:
            name, unit = r.string(f"{what} name"), r.string(f"{what} unit")
        elif kind in KNOWN_CHANNELS:
            name, unit = KNOWN_CHANNELS[kind]
        else:
            raise WireFormatError(f"{what}: unknown channel kind {kind}")
        m = r.uvarint(f"{what} resolution")
        e = r.svarint(f"{what} resolution exponent")
        resolution = r.f64(f"{what} resolution") if m == 0 else _resolution_of(m, e) if -30 <= e <= 30 else 0.0
        if not (resolution > 0 and math.isfinite(resolution)):
            raise WireFormatError(f"{what} ({name}): resolution {resolution!r} is not a positive number")
        n = r.uvarint(f"{what} sample count")
        if n > min(MAX_CHANNEL_SAMPLES, MAX_PER_BYTE * (r.end - r.pos)):
            raise WireFormatError(f"{what} ({name}): sample count {n} exceeds the payload or the limit")
        shape = r.byte(f"{what} shape")
        if shape & SHAPE_REGULAR:
            k0 = r.uvarint(f"{what} first slot")
            ks = list(range(k0, k0 + n))
        else:
            ks, k = [], -1
            for z in unpack_simple8b(r.block(f"{what} times"), n, f"{what} times"):
                k += unzigzag(z) + 1
                ks.append(k)
        offsets: dict[int, int] = {}
        if shape & SHAPE_EXCEPTIONS:
            idx = -1
            for _ in range(r.uvarint(f"{what} exception count")):
                idx += r.uvarint(f"{what} exception index") + 1
                if idx >= n:
                    raise WireFormatError(f"{what} ({name}): time exception for sample {idx} of {n}")
                offsets[idx] = r.svarint(f"{what} exception offset")
        times = [t0 + k * period + offsets.get(i, 0) for i, k in enumerate(ks)]
        width = r.uvarint(f"{what} bin width") if shape & SHAPE_BINNED else 1
        if width < 1:
            raise WireFormatError(f"{what} ({name}): bin width 0")
        predictor = (shape & SHAPE_PREDICTOR) >> 3
        season = 0
        block = r.block(f"{what} values")
        if shape & SHAPE_CODED == SHAPE_CODED:
            if version < 3:
                raise WireFormatError(f"{what} ({name}): shape says both runs and Rice codes")
            if predictor:
                raise WireFormatError(f"{what} ({name}): coded values with predictor bits {predictor} "
                                      "in the shape (the block names the predictor)")
            rb = _Reader(block, len(block))
            predictor = rb.uvarint(f"{what} predictor")
            if predictor >= len(PREDICTORS):
                raise WireFormatError(f"{what} ({name}): unknown predictor {predictor}")
            if predictor == PREDICTOR_SEASONAL:
                season = rb.uvarint(f"{what} season")
                if season < 1:
                    raise WireFormatError(f"{what} ({name}): season 0")
            residuals = rc_decode(block[rb.pos:], n, f"{what} values")
        elif shape & SHAPE_RICE:
            residuals = unpack_rice(block, n, f"{what} values")
        elif shape & SHAPE_RUNS:
            rb = _Reader(block, len(block))
            nonzero = rb.uvarint(f"{what} non-zero count")
            if nonzero > n:
                raise WireFormatError(f"{what} ({name}): {nonzero} non-zero residuals of {n}")
            items = unpack_simple8b(block[rb.pos:], 2 * nonzero + 1, f"{what} values")
            residuals = _from_runs(items)
            if len(residuals) != n:
                raise WireFormatError(f"{what} ({name}): runs make {len(residuals)} values, not {n}")
        else:
            residuals = unpack_simple8b(block, n, f"{what} values")
        if shape & SHAPE_CODED != SHAPE_CODED:
            residuals = [unzigzag(z) for z in residuals]
        values = _values_from(residuals, predictor, width, season)
        qflags = _read_flags(r, what, name, n) if shape & SHAPE_FLAGS else []
        channels.append(ChannelData(name, unit, resolution, tuple(times), tuple(values), tuple(qflags),
                                    encoding=version, bin_width=width, predictor=predictor, season=season))
    if r.pos != r.end:
        raise WireFormatError(f"{r.end - r.pos} unexpected bytes after the last channel")
    return Batch(node=node, stream=stream, seq=seq, t0_ms=t0, channels=tuple(channels),
                 flags=flags & ~FLAG_DEFLATE, version=version, period_ms=period)


def _read_flags(r: _Reader, what: str, name: str, n: int) -> list[tuple[int, int]]:
    nflags = r.uvarint(f"{what} flag count")
    qflags = []
    idx = -1
    for _ in range(nflags):
        idx += r.uvarint(f"{what} flag index") + 1
        fl = r.byte(f"{what} flag")
        if idx >= n:
            raise WireFormatError(f"{what} ({name}): quality flag for sample {idx} of {n}")
        qflags.append((idx, fl))
    return qflags


def decode(payload: bytes) -> Batch:
    """Decode one payload; WireFormatError says what is wrong and where."""
    payload = bytes(payload)
    if len(payload) < 8:
        raise WireFormatError(f"payload of {len(payload)} bytes is too short to be a batch")
    if payload[:2] != MAGIC:
        raise WireFormatError(f"bad magic {payload[:2].hex()} (expected {MAGIC.hex()}): not an edge-agent batch")
    version = payload[2]
    if version not in VERSIONS:
        raise WireFormatError(f"unsupported wire format version {version} (this decoder knows "
                              f"{', '.join(map(str, VERSIONS))})")
    (crc,) = struct.unpack_from("<I", payload, len(payload) - 4)
    actual = crc32c(payload[:-4])
    if crc != actual:
        raise WireFormatError(f"checksum mismatch: payload says {crc:08x}, content gives {actual:08x} "
                              f"(corrupted in the store or on the way)")
    if version >= 2:
        return _decode_v2(payload, payload[3])
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
        qflags = _read_flags(r, what, name, n)
        channels.append(ChannelData(name, unit, resolution, tuple(times), tuple(values), tuple(qflags)))
    if r.pos != r.end:
        raise WireFormatError(f"{r.end - r.pos} unexpected bytes after the last channel")
    return Batch(node=node, stream=stream, seq=seq, t0_ms=t0, channels=tuple(channels),
                 flags=flags, version=1)


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

