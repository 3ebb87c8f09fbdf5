"""A clean-room decoder of edge-agent's batch payload, versions 1 to 4, written from
docs/wire-format.md alone (standard library only, no code of edge_agent.wire), to show that
the spec is enough for a second implementation. decode(payload) gives a dict shaped like a
vector's JSON (without "about"); what the spec says a decoder MUST reject raises ValueError
saying what and at which byte."""

import math
import re
import struct
import zlib
from collections.abc import Callable
from decimal import Decimal
from itertools import accumulate

MAX_PAYLOAD = MAX_BODY = MAX_SAMPLES = 1 << 20  # samples: of one channel, and of a batch
PER_BYTE, MAX_CHANNELS, MAX_EXP = 3840, 64, 30
MAX_TIME = MAX_SEQ = (1 << 53) - 1
MAX_PERIOD, MAX_Z = 1 << 40, 1 << 60  # MAX_Z: residuals, zigzag below 2^60, bit length <= 60
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
UNIT_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_KNOWN = (
    "temperature °C|humidity %|pressure hPa|gas Ω|co2 ppm|pm1_0 µg/m³|pm2_5 µg/m³|pm10 µg/m³|"
    "particles_0_3um /0.1L|particles_0_5um /0.1L|particles_1_0um /0.1L|particles_2_5um /0.1L|"
    "particles_5_0um /0.1L|particles_10um /0.1L|bus_voltage V|shunt_voltage mV|current A|power W|"
    "energy Wh|energy kWh|pulses"
)
KINDS = dict(enumerate((tuple(f"{k} ".split(" ")[:2]) for k in _KNOWN.split("|")), 1))
PREDICTORS = ("previous", "linear", "mean8", "trend8", "zero", "seasonal")
RECONSTRUCTIONS = ("every", "hold", "linear")
# Simple-8b selectors 2 to 15: (values per word, bits each); 0 and 1 are run bytes.
WORDS = dict(enumerate(((60, 1), (30, 2), (20, 3), (15, 4), (12, 5), (10, 6), (8, 7), (7, 8)), 2))
WORDS.update({10: (6, 10), 11: (5, 12), 12: (4, 15), 13: (3, 20), 14: (2, 30), 15: (1, 60)})
SHIFTS = (2, 2, 3, 3, 4, 4, 4, 4, 5)  # the coder's adaptation shift by count c


def _crc_byte(c: int) -> int:
    for _ in range(8):
        c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
    return c


CRC_TABLE = [_crc_byte(c) for c in range(256)]


def crc32c(data: bytes) -> int:
    c = 0xFFFFFFFF
    for b in data:
        c = CRC_TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def unzigzag(z: int) -> int:
    return (z >> 1) ^ -(z & 1)


def rounded(q: list[int], resolution: float) -> list[float]:
    """q x resolution, to the decimal places of the resolution's shortest form (1/3: 16)."""
    places = max(0, -int(Decimal(repr(resolution)).normalize().as_tuple().exponent))
    return [round(x * resolution, places) for x in q]


class Reader:
    """Reads fields from data[pos:end]; errors name the byte, counted from `origin`, as
    `where` says ("byte", "the inflated body's byte", "the value block's byte")."""

    def __init__(self, data: bytes, pos: int, end: int, where: str = "byte", origin: int = 0):
        self.data, self.pos, self.end, self.where, self.origin = data, pos, end, where, origin

    def fail(self, what: str, at: int | None = None) -> ValueError:
        return ValueError(f"{what} at {self.where} {(self.pos if at is None else at) - self.origin}")

    def left(self) -> int:
        return self.end - self.pos

    def take(self, k: int, what: str) -> bytes:
        if k > self.left():
            raise self.fail(f"{what} ends early: needs {k} bytes, {self.left()} left")
        self.pos += k
        return self.data[self.pos - k : self.pos]

    def sub(self, what: str) -> "Reader":
        """A length-prefixed block, read by its own Reader counting from its first byte."""
        block = self.take(self.uvarint(f"{what}'s length"), what)
        start = self.pos - len(block)
        return Reader(self.data, start, self.pos, f"the {what}'s byte", start)

    def u8(self, what: str) -> int:
        return self.take(1, what)[0]

    def uvarint(self, what: str) -> int:
        """At most 10 bytes, below 2^64: a 10th byte above 1 (an 11th byte needs one) fails."""
        start, value, shift = self.pos, 0, 0
        while True:
            if self.pos >= self.end:
                raise self.fail(f"{what} ends early: a varint cut short")
            b, self.pos = self.data[self.pos], self.pos + 1
            if shift == 63 and b > 1:
                raise self.fail(f"{what}: a varint over 10 bytes or of 2^64 or more", start)
            value |= (b & 0x7F) << shift
            if b < 0x80:
                return value
            shift += 7

    def svarint(self, what: str) -> int:
        return unzigzag(self.uvarint(what))

    def limited(self, what: str, top: int, bottom: int = 0, per_byte: int = 0) -> int:
        """A uvarint in [bottom, top], and with per_byte at most that many a byte left after it."""
        at, value = self.pos, self.uvarint(what)
        top = min(top, per_byte * self.left()) if per_byte else top
        if not bottom <= value <= top:
            raise self.fail(f"{what} {value} is outside [{bottom}, {top}]", at)
        return value

    def text(self, what: str, rule: str, ok: Callable[[str], object]) -> str:
        at, raw = self.pos, self.take(self.uvarint(f"{what}'s length"), what)
        try:
            s = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise self.fail(f"{what} is not UTF-8 ({e.reason})", at) from None
        if not ok(s):
            raise self.fail(f"{what} {s!r} is not {rule}", at)
        return s

    def name(self, what: str) -> str:
        return self.text(what, "1 to 64 of A-Z a-z 0-9 . _ - from a letter or digit", NAME.fullmatch)

    def unit(self) -> str:
        rule = "at most 16 bytes without a control character"
        return self.text("unit", rule, lambda s: len(s.encode()) <= 16 and not UNIT_CONTROL.search(s))

    def f64(self, what: str) -> float:
        at, x = self.pos, struct.unpack("<d", self.take(8, what))[0]
        if not (math.isfinite(x) and x > 0):
            raise self.fail(f"{what} {x!r} is not finite and above 0", at)
        return x

    def decimal(self, what: str) -> float:
        """m:uvarint e:svarint [f64]: m x 10^e, or the f64 that follows when m = 0."""
        at, m, e = self.pos, self.uvarint(what), self.svarint(f"{what}'s exponent")
        if m == 0:
            return self.f64(what)  # e is then ignored
        if abs(e) > MAX_EXP:
            raise self.fail(f"{what}'s decimal exponent {e} is beyond ±{MAX_EXP}", at)
        return float(f"{m}e{e}")

    def sparse(self, n: int, what: str, entry: Callable[[], int]) -> list[list[int]]:
        """count, then (gap, entry) pairs: [index, entry] with indices increasing, below n."""
        at, count = self.pos, self.uvarint(f"number of {what}")
        if count > n:
            raise self.fail(f"{count} {what} for {n} samples", at)
        out, index = [], -1
        for _ in range(count):
            at = self.pos
            index += 1 + self.uvarint(f"{what}' gap")
            if index >= n:
                raise self.fail(f"{what}: index {index} at or beyond n = {n}", at)
            out.append([index, entry()])
        return out

    def check_times(self, times: list[int], at: int) -> list[int]:
        for i, t in enumerate(times):
            if not 0 <= t <= MAX_TIME:
                raise self.fail(f"sample {i}'s time {t} ms is outside [0, 2^53 - 1]", at)
        return times

    def flag(self) -> int:
        if (f := self.u8("quality flag")) == 0:
            raise self.fail("a quality flag of 0", self.pos - 1)
        return f

    def simple8b(self, n: int) -> list[int]:
        """n integers from the Simple-8b words filling the rest of the block."""
        out: list[int] = []
        while len(out) < n:
            if self.left() <= 0:
                raise self.fail(f"Simple-8b: the block ends before its {n} values (has {len(out)})")
            head = self.data[self.pos]
            if (selector := head & 15) <= 1:
                self.pos += 1
                out.extend([0] * min((240 if selector == 0 else 120) * ((head >> 4) + 1), n - len(out)))
                continue
            word = int.from_bytes(self.data[self.pos : min(self.pos + 8, self.end)], "little")
            self.pos = min(self.pos + 8, self.end)  # the last word may be cut: missing bytes are zero
            count, bits = WORDS[selector]
            out.extend((word >> (4 + j * bits)) & ((1 << bits) - 1) for j in range(min(count, n - len(out))))
        if self.left():
            raise self.fail(f"Simple-8b: bytes after the block's {n} values")
        return out

    def rice(self, n: int) -> list[int]:
        bits = "".join(f"{b:08b}" for b in self.data[self.pos : self.end])
        pos, out = 0, []
        while len(out) < n:
            if pos + 6 > len(bits):
                raise self.fail("Rice: the codes end early (a parameter cut short)", self.pos + pos // 8)
            k, pos = int(bits[pos : pos + 6], 2), pos + 6
            for _ in range(min(64, n - len(out))):
                stop = bits.find("0", pos)
                if stop < 0 or stop + 1 + k > len(bits):
                    raise self.fail("Rice: the codes end early", self.pos + pos // 8)
                z = ((stop - pos) << k) | (int(bits[stop + 1 : stop + 1 + k], 2) if k else 0)
                if z >= MAX_Z:
                    raise self.fail(f"Rice: a residual of 2^60 or more ({z})", self.pos + pos // 8)
                out.append(z)
                pos = stop + 1 + k
        if len(bits) - pos >= 8 or "1" in bits[pos:]:
            raise self.fail("Rice: bits after the last code", self.pos + pos // 8)
        return out

    def coded(self, n: int) -> list[int]:
        """The signed residuals b[0..n-1] range-coded in the rest of the block (LZMA's coder)."""
        code = self.data[self.pos : self.end]
        state = {"range": 0xFFFFFFFF, "code": int.from_bytes(code[:4].ljust(4, b"\0"), "big"), "next": 4}

        def normalise() -> None:
            while state["range"] < 1 << 24:
                byte = code[state["next"]] if state["next"] < len(code) else 0  # zeros past the end
                state["next"] += 1
                state["range"] <<= 8
                state["code"] = ((state["code"] << 8) | byte) & 0xFFFFFFFF

        def decision(probs: list[list[int]], node: int) -> int:
            p, c = probs[node]
            bound = (state["range"] >> 11) * p
            if state["code"] < bound:
                state["range"], bit, p = bound, 0, p + ((2048 - p) >> SHIFTS[c])
            else:
                state["code"] -= bound
                state["range"], bit, p = state["range"] - bound, 1, p - (p >> SHIFTS[c])
            probs[node] = [min(max(p, 32), 2016), min(c + 1, 8)]
            normalise()
            return bit

        def direct() -> int:
            state["range"] >>= 1
            if bit := int(state["code"] >= state["range"]):
                state["code"] -= state["range"]
            normalise()
            return bit

        lengths = [[2000 if i == 1 else 1950 if i < 4 else 1700 if i < 8 else 1024, 0] for i in range(64)]
        mantissas: dict[int, list[list[int]]] = {}
        signs = [[1024, 0] for _ in range(3)]
        sign_state, out = 0, []
        for i in range(n):
            node = 1
            for _ in range(6):
                node = 2 * node + decision(lengths, node)
            if (nbits := node - 64) > 60:
                raise self.fail(
                    f"coded residual {i}: a bit length of {nbits}, above 60", self.pos + state["next"] - 4
                )
            magnitude, node = (1 if nbits else 0), 1
            tree = mantissas.setdefault(nbits, [[1024, 0] for _ in range(64)])
            for j in range(nbits - 1):
                bit = decision(tree, node) if j < 6 else direct()
                node, magnitude = 2 * node + bit, 2 * magnitude + bit
            if nbits:
                negative = decision(signs, sign_state)  # the state of the last non-zero residual's sign
                sign_state, magnitude = (2, -magnitude) if negative else (1, magnitude)
            out.append(magnitude)
        return out


def predict(q: list[int], i: int, predictor: int, season: int) -> int:
    if i == 0 or predictor == 4:
        return 0
    if predictor == 0 or (predictor == 1 and i == 1) or (predictor == 5 and i <= season):
        return q[i - 1]
    if predictor == 1:
        return 2 * q[i - 1] - q[i - 2]
    if predictor == 5:
        return q[i - 1] + q[i - season] - q[i - season - 1]
    m = min(i, 8)
    ys = q[i - m : i]
    sy = sum(ys)
    if predictor == 2:
        return (2 * sy + m) // (2 * m)
    if m == 1:
        return q[i - 1]
    sx, sxx, sxy = m * (m - 1) // 2, (m - 1) * m * (2 * m - 1) // 6, sum(x * y for x, y in enumerate(ys))
    d = m * sxx - sx * sx
    num, den = sy * d + (m * sxy - sx * sy) * (m * m - sx), d * m
    return (2 * num + den) // (2 * den)


def inflate(raw: bytes) -> bytes:
    d = zlib.decompressobj(-15)
    try:
        body = d.decompress(raw, MAX_BODY + 1)
    except zlib.error as e:
        raise ValueError(f"the body is not raw DEFLATE ({e}) at byte 4") from None
    if len(body) > MAX_BODY:
        raise ValueError(f"the DEFLATE body inflates to more than {MAX_BODY} bytes (at byte 4)")
    if not d.eof or d.unused_data:
        what = f"has {len(d.unused_data)} bytes after its end" if d.eof else "does not end (no final block)"
        raise ValueError(f"the DEFLATE stream {what} at byte {4 + len(raw) - len(d.unused_data)}")
    return body


def channel_v1(r: Reader, version: int, t0: int, period: int, samples: list[int]) -> dict:
    """A version-1 channel (no schedule: period unused; n is bounded by the bytes left)."""
    name, unit, resolution = r.name("channel name"), r.unit(), r.f64("resolution")
    if (encoding := r.u8("encoding")) != 1:
        raise r.fail(f"unknown encoding {encoding} (version 1 has only 1)", r.pos - 1)
    n, at = r.limited("number of samples", MAX_SAMPLES, per_byte=1), r.pos
    ts = [r.svarint("timestamp") for _ in range(n)]  # offset, delta, then deltas of deltas
    q = list(accumulate(r.svarint("value") for _ in range(n)))
    times = list(accumulate([t0 + ts[0], *accumulate(ts[1:])])) if n else []
    out = {"name": name, "unit": unit, "resolution": resolution, "encoding": 1}
    out.update(times_ms=r.check_times(times, at), values_q=q, values=rounded(q, resolution))
    return out | {"flags": r.sparse(n, "quality flags", r.flag)}


def values_block(r: Reader, n: int, shape: int, version: int, at: int) -> tuple[list[int], int, int, str]:
    """(signed residuals, predictor, season, form) from a channel's values block; `at` is
    the channel's shape byte."""
    b = r.sub("value block")
    predictor, season = (shape >> 3) & 3, 0
    if shape & 0xC0 == 0xC0:
        if version < 3 or shape & 0x18:
            raise r.fail("the coded form in version 2" if version < 3 else "coded, with predictor bits", at)
        if (predictor := b.uvarint("predictor")) > 5:
            raise b.fail(f"unknown predictor {predictor}", b.origin)
        if predictor == 5 and (season := b.uvarint("season")) == 0:
            raise b.fail("a season of 0")
        return b.coded(n), predictor, season, "coded"
    if shape & 0x40:
        k = b.limited("number of non-zero residuals (runs)", n)
        ints = b.simple8b(2 * k + 1)
        zeros, nonzero = ints[0::2], ints[1::2]
        if sum(zeros) + k != n:
            raise b.fail(f"runs make {sum(zeros) + k} residuals, not n = {n}", b.origin)
        if any(zp + 1 >= MAX_Z for zp in nonzero):
            raise b.fail("runs: a residual of 2^60 or more", b.origin)
        z = [0] * zeros[0]
        for run, zp in zip(zeros[1:], nonzero, strict=True):
            z += [zp + 1] + [0] * run
        return [unzigzag(x) for x in z], predictor, season, "runs"
    if shape & 0x80:
        return [unzigzag(x) for x in b.rice(n)], predictor, season, "rice"
    return [unzigzag(x) for x in b.simple8b(n)], predictor, season, "simple8b"


def channel(r: Reader, version: int, t0: int, period: int, samples: list[int]) -> dict:
    if (kind := r.u8("kind")) == 0:
        name, unit = r.name("channel name"), r.unit()
    elif kind in KINDS:
        name, unit = KINDS[kind]
    else:
        raise r.fail(f"unknown kind {kind}", r.pos - 1)
    resolution = r.decimal("resolution")
    out: dict = {"name": name, "unit": unit, "kind": kind, "resolution": resolution}
    if version >= 4:
        if (recon := r.u8("reconstruction")) & 3 == 3:
            raise r.fail("reconstruction 3 (not defined)", r.pos - 1)
        steps = recon >> 2  # 0 no bound, 1-61 steps, 62 a bound follows, 63 a relative one
        bound = rounded([steps], resolution)[0] if steps <= 61 else r.decimal("bound")
        out.update(reconstruction=RECONSTRUCTIONS[recon & 3], bound=bound, bound_relative=steps == 63)
    at, n = r.pos, r.limited("number of samples", MAX_SAMPLES, per_byte=PER_BYTE)
    samples[0] += n
    if samples[0] > MAX_SAMPLES:
        raise r.fail(f"samples of the batch: {samples[0]}, above {MAX_SAMPLES}", at)
    shape_at, shape = r.pos, r.u8("shape")
    if shape & 1:
        slots = list(range(first := r.uvarint("first slot"), first + n))
    else:  # zigzag(k[i] - k[i-1] - 1), k[-1] = -1
        slots = list(accumulate((unzigzag(z) + 1 for z in r.sub("times block").simple8b(n)), initial=-1))[1:]
    offsets = dict(r.sparse(n, "time exceptions", lambda: r.svarint("time offset"))) if shape & 2 else {}
    times = r.check_times([t0 + k * period + offsets.get(i, 0) for i, k in enumerate(slots)], at)
    width = r.uvarint("bin width") if shape & 0x20 else 1
    if width == 0:
        raise r.fail("a bin width of 0", r.pos - 1)
    residuals, predictor, season, form = values_block(r, n, shape, version, shape_at)
    q: list[int] = []
    for i, res in enumerate(residuals):
        q.append(predict(q, i, predictor, season) + width * res)
    out.update(bin_width=width, predictor=PREDICTORS[predictor], season=season, form=form)
    out.update(times_ms=times, values_q=q, values=rounded(q, resolution))
    return out | {"flags": r.sparse(n, "quality flags", r.flag) if shape & 4 else []}


# the statistics a channel of a private batch may be (its name is BASE.STATISTIC), by level
STATISTICS = {1: ("mean", "min", "max", "count", "total"), 2: ("total",)}


def decode(payload: bytes) -> dict:
    """The batch in a payload, as a dict like a vector's JSON (without "about")."""
    size = len(payload := bytes(payload))
    if size > MAX_PAYLOAD or size < 8:
        raise ValueError(f"a payload of {size} bytes (not 8 to {MAX_PAYLOAD}) at byte 0")
    if payload[:2] != b"EA":
        raise ValueError("not an edge-agent batch: the magic is not 'EA' at byte 0")
    version, flags = payload[2], payload[3]
    if version not in (1, 2, 3, 4):
        raise ValueError(f"unknown version {version} at byte 2")
    if crc32c(payload[:-4]) != int.from_bytes(payload[-4:], "little"):
        raise ValueError(f"the CRC-32C does not match at byte {size - 4}")
    r = Reader(payload, 4, size - 4)
    if version >= 2 and flags & 4:
        body = inflate(payload[4:-4])
        r = Reader(body, 0, len(body), "the inflated body's byte")
    out: dict = {"node": r.name("node id"), "stream": r.name("stream")}
    epoch = int.from_bytes(r.take(4, "epoch"), "little") if version >= 4 else 0
    out.update(seq=r.limited("sequence number", MAX_SEQ), version=version, flags=flags & 3)
    t0 = out["t0_ms"] = r.limited("t0", MAX_TIME)
    if version >= 2:
        out.update(deflate=bool(flags & 4), period_ms=r.limited("period", MAX_PERIOD, 1))
    if version >= 4:
        out["epoch"] = epoch
    level = (flags >> 3) & 3 if version >= 2 else 0  # bits 3-4, the privacy level (version 2 on)
    if level == 3:
        raise ValueError("privacy level 3 (flag bits 3-4) is not defined at byte 3")
    if level:
        out["privacy"] = ("raw", "aggregate", "total")[level]
    read = channel if version > 1 else channel_v1
    count, samples = r.limited("number of channels", MAX_CHANNELS), [0]
    out["channels"] = []
    for _ in range(count):
        at = r.pos
        out["channels"].append(ch := read(r, version, t0, out.get("period_ms", 1), samples))
        base, _, stat = ch["name"].rpartition(".")
        if level and (not base or stat not in STATISTICS[level]):
            raise ValueError(f"channel {ch['name']!r} is no statistic of its level at byte {at}")
    if r.left():
        raise r.fail(f"{r.left()} bytes left over after the last channel")
    return out
