"""The limits of a batch (docs/wire-format.md, "Limits"), driven from both sides: the
encoder refuses a batch beyond one (ValueError), the decoder a payload beyond one
(WireFormatError), each naming the field; and what the encoder writes, at the edges of
every limit, the decoder reads: nothing is written and then refused."""

from __future__ import annotations

import math
import re
import struct
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from wire_data import recrc

from edge_agent import wire
from edge_agent.errors import WireFormatError
from edge_agent.wire import encoder
from edge_agent.wire.format import (
    MAX_BATCH_SAMPLES,
    MAX_BODY,
    MAX_CHANNEL_SAMPLES,
    MAX_CHANNELS,
    MAX_PAYLOAD,
    MAX_PER_BYTE,
    MAX_PERIOD_MS,
    MAX_SEQ,
    MAX_TIME_MS,
    SHAPE_BINNED,
    SHAPE_CODED,
    SHAPE_EXCEPTIONS,
    SHAPE_FLAGS,
    SHAPE_REGULAR,
    SHAPE_RICE,
    SHAPE_RUNS,
)
from edge_agent.wire.packing import pack_rice, pack_simple8b
from edge_agent.wire.varint import put_uvarint, zigzag

C, B = wire.ChannelData, wire.Batch


# --- payloads written by hand, past the encoder's checks ---------------------------------------


def uv(n: int) -> bytes:
    out = bytearray()
    put_uvarint(out, n)
    return bytes(out)


def text(s: str | bytes) -> bytes:
    raw = s.encode() if isinstance(s, str) else s
    return uv(len(raw)) + raw


def block(raw: bytes) -> bytes:
    return uv(len(raw)) + raw


def zeros(n: int) -> bytes:
    """A Simple-8b value block of n zero residuals."""
    return block(pack_simple8b([0] * n))


def head(
    *,
    version=4,
    flags=0,
    node="n",
    stream="s",
    epoch=0,
    seq=b"\x00",
    t0=0,
    period=1000,
    nch=1,
) -> bytes:
    out = b"EA" + bytes((version, flags)) + text(node) + text(stream)
    if version >= 4:
        out += epoch.to_bytes(4, "little")
    return out + seq + uv(t0) + (uv(period) if version >= 2 else b"") + uv(nch)


def chan(
    *,
    name="x",
    unit="u",
    kind=0,
    resolution=b"\x01\x00",
    recon=b"\x00",
    n=1,
    shape=SHAPE_REGULAR,
    times=b"\x00",
    width=b"",
    values=None,
    qflags=b"",
) -> bytes:
    spelled = text(name) + text(unit) if kind == 0 else b""
    values = zeros(n) if values is None else values
    return (
        bytes((kind,))
        + spelled
        + resolution
        + recon
        + uv(n)
        + bytes((shape,))
        + times
        + width
        + values
        + qflags
    )


def payload(*channels: bytes, **header) -> bytes:
    header.setdefault("nch", len(channels))
    return recrc(head(**header) + b"".join(channels))


def v1_chan(name="x", unit="u", n=1, values=b"\x00\x00", qflags=b"\x00") -> bytes:
    return text(name) + text(unit) + struct.pack("<d", 1.0) + b"\x01" + uv(n) + values + qflags


def deflated(body: bytes) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    return packer.compress(body) + packer.flush()


def test_the_hand_written_payloads_are_valid_as_they_start():
    ch = C("x", "u", 1.0, (0,), (0,))
    assert wire.decode(payload(chan())) == B("n", "s", 0, 0, (ch,), period_ms=1000)
    assert wire.decode(recrc(head(version=1) + v1_chan())) == B("n", "s", 0, 0, (ch,))


BIG = MAX_CHANNEL_SAMPLES + 1
HALF = MAX_BATCH_SAMPLES // 2 + 1
DECODER_LIMITS = [
    ("payload", b"EA\x04\x00" + bytes(MAX_PAYLOAD), r"payload of 1048580 bytes: the limit is 1048576"),
    ("body", recrc(b"EA\x04\x04" + deflated(bytes(MAX_BODY + 1))), r"inflates beyond 1048576 bytes"),
    (
        "deflate end",
        recrc(b"EA\x04\x04" + deflated(head()[4:]) + b"\x00"),
        r"1 bytes after the end of the deflated",
    ),
    ("channel samples", payload(chan(n=BIG)), r"channel 0 \(x\): sample count 1048577 exceeds"),
    ("batch samples", payload(chan(n=HALF), chan(n=HALF)), r"channel 1 \(x\): sample count 524289 exceeds"),
    ("per byte", payload(chan(n=4 * MAX_PER_BYTE + 1, values=block(b"\xf0"))), r"sample count 15361 exceeds"),
    ("v1 samples", recrc(head(version=1) + v1_chan(n=7)), r"channel 0 \(x\): sample count 7 exceeds"),
    ("channels", payload(nch=MAX_CHANNELS + 1), r"65 channels: at most 64 in a batch"),
    ("node empty", payload(chan(), node=""), r"node id '' is not 1 to 64 characters"),
    ("node long", payload(chan(), node="a" * 65), r"node id 'a{65}' is not 1 to 64"),
    ("node start", payload(chan(), node="-a"), r"node id '-a' is not"),
    ("node alphabet", payload(chan(), node="lamp 1"), r"node id 'lamp 1' is not"),
    ("node ascii", payload(chan(), node="läm"), r"node id 'läm' is not"),
    ("node utf-8", payload(chan(), node=b"\xc3"), r"node id at byte 5 is not UTF-8"),
    ("stream", payload(chan(), stream="a/b"), r"stream 'a/b' is not"),
    ("channel name", payload(chan(name="co2/x")), r"channel 0 name 'co2/x' is not"),
    ("v1 channel name", recrc(head(version=1) + v1_chan(name="")), r"channel 0 name '' is not"),
    (
        "unit long",
        payload(chan(unit="µg/m³µg/m³µg")),
        r"channel 0 unit 'µg/m³µg/m³µg' is not at most 16 bytes",
    ),
    ("unit control", payload(chan(unit="a\tb")), r"channel 0 unit 'a\\tb' is not at most 16 bytes of text"),
    ("kind", payload(chan(kind=99)), r"channel 0: unknown channel kind 99"),
    (
        "seq",
        payload(chan(), seq=uv(MAX_SEQ + 1)),
        r"sequence number 9007199254740992 is outside 0\.\.9007199254740991",
    ),
    (
        "varint 10 bytes",
        payload(chan(), seq=b"\xff" * 10 + b"\x01"),
        r"varint longer than 10 bytes: sequence number at byte 12",
    ),
    (
        "varint 64 bits",
        payload(chan(), seq=b"\xff" * 9 + b"\x02"),
        r"varint beyond 64 bits: sequence number at byte 12",
    ),
    ("t0", payload(chan(), t0=MAX_TIME_MS + 1), r"time base 9007199254740992 ms is outside"),
    (
        "time",
        payload(chan(times=uv(1)), t0=MAX_TIME_MS, period=1),
        r"channel 0 \(x\): time 9007199254740992 ms is outside",
    ),
    (
        "time negative",
        payload(chan(shape=SHAPE_REGULAR | SHAPE_EXCEPTIONS, times=b"\x00\x01\x00" + uv(zigzag(-1)))),
        r"channel 0 \(x\): time -1 ms is outside",
    ),
    (
        "exception index",
        payload(chan(shape=SHAPE_REGULAR | SHAPE_EXCEPTIONS, times=b"\x00\x01\x01\x02")),
        r"time exception for sample 1 of 1",
    ),
    ("period 0", payload(chan(), period=0), r"period 0 ms is outside 1\.\.1099511627776"),
    ("period", payload(chan(), period=MAX_PERIOD_MS + 1), r"period 1099511627777 ms is outside"),
    (
        "exponent",
        payload(chan(resolution=uv(1) + uv(zigzag(31)))),
        r"resolution at byte 22: exponent 31 is outside ±30",
    ),
    (
        "f64 nan",
        payload(chan(resolution=b"\x00\x00" + struct.pack("<d", math.nan))),
        r"resolution at byte 22: nan is not a finite",
    ),
    (
        "f64 zero",
        payload(chan(resolution=b"\x00\x00" + struct.pack("<d", 0.0))),
        r"resolution 0\.0 is not a positive number",
    ),
    ("reconstruction", payload(chan(recon=b"\x03")), r"reconstruction 3 is not defined"),
    ("bound zero", payload(chan(recon=b"\xf9\x00\x00" + bytes(8))), r"bound 0\.0 is not a positive number"),
    (
        "relative zero",
        payload(chan(recon=b"\xfd\x00\x00" + bytes(8))),
        r"bound 0\.0 is not a positive number",
    ),
    (
        "bound exponent",
        payload(chan(recon=b"\xf9\x01" + uv(zigzag(-31)))),
        r"bound at byte 25: exponent -31 is outside",
    ),
    (
        "bin width 0",
        payload(chan(shape=SHAPE_REGULAR | SHAPE_BINNED, width=b"\x00")),
        r"channel 0 \(x\): bin width 0",
    ),
    (
        "quality 0",
        payload(chan(shape=SHAPE_REGULAR | SHAPE_FLAGS, qflags=b"\x01\x00\x00")),
        r"quality flag 0 for sample 0 \(only flagged samples are listed\)",
    ),
    (
        "v1 quality 0",
        recrc(head(version=1) + v1_chan(qflags=b"\x01\x00\x00")),
        r"quality flag 0 for sample 0",
    ),
    (
        "quality index",
        payload(chan(shape=SHAPE_REGULAR | SHAPE_FLAGS, qflags=b"\x01\x01\x04")),
        r"quality flag for sample 1 of 1",
    ),
    (
        "rice residual",
        payload(chan(shape=SHAPE_REGULAR | SHAPE_RICE, values=block(pack_rice([1 << 60])))),
        r"channel 0 \(x\): a Rice-coded residual of 2\^60 or more",
    ),
    (
        "coded residual",
        payload(chan(shape=SHAPE_REGULAR | SHAPE_CODED, values=block(b"\x00" + b"\xff" * 16))),
        r"channel 0 values: a coded residual of more than 60 bits",
    ),
    (
        "runs",
        payload(chan(shape=SHAPE_REGULAR | SHAPE_RUNS, values=block(b"\x00" + pack_simple8b([1 << 33])))),
        r"channel 0 \(x\): runs make 8589934592 values, not 1",
    ),
    (
        "runs count",
        payload(chan(shape=SHAPE_REGULAR | SHAPE_RUNS, values=block(b"\x02" + pack_simple8b([0] * 5)))),
        r"2 non-zero residuals of 1",
    ),
    (
        "block offset",
        payload(chan(shape=SHAPE_REGULAR | SHAPE_CODED, values=block(b"\x80"))),
        r"truncated payload: channel 0 predictor at the value block's byte 1 needs 1 bytes, 0 left",
    ),
]


@pytest.mark.parametrize(
    ("data", "message"), [c[1:] for c in DECODER_LIMITS], ids=[c[0] for c in DECODER_LIMITS]
)
def test_the_decoder_refuses_a_payload_beyond_a_limit_and_says_which(data, message):
    with pytest.raises(WireFormatError, match=message):
        wire.decode(data)


def test_a_deflated_body_of_exactly_the_limit_is_not_refused_for_its_size():
    body = head(nch=0)[4:]
    for size, message in (
        (MAX_BODY, f"{MAX_BODY - len(body)} unexpected bytes after the last channel"),
        (MAX_BODY + 1, "beyond"),
    ):
        with pytest.raises(WireFormatError, match=message):
            wire.decode(recrc(b"EA\x04\x04" + deflated(body.ljust(size, b"\0"))))
    # an offset in a deflated body counts from the inflated body's first byte
    with pytest.raises(WireFormatError, match="stream at the inflated body's byte 3 is not UTF-8"):
        wire.decode(recrc(b"EA\x04\x04" + deflated(text("n") + text(b"\xff") + bytes(20))))


def ch(**kw) -> C:
    base = {"name": "x", "unit": "u", "resolution": 1.0, "times_ms": (0,), "values_q": (0,)}
    return C(**(base | kw))


def batch(*channels: C, **kw) -> B:
    return B(**({"node": "n", "stream": "s", "seq": 0, "t0_ms": 0, "channels": channels} | kw))


ENCODER_LIMITS = [
    (
        "channel samples",
        batch(ch(times_ms=(0,) * BIG, values_q=(0,) * BIG)),
        r"channel x: 1048577 samples, at most 1048576 in a channel",
    ),
    (
        "batch samples",
        batch(ch(times_ms=(0,) * HALF, values_q=(0,) * HALF), ch(times_ms=(0,) * HALF, values_q=(0,) * HALF)),
        r"1048578 samples: at most 1048576 in a batch",
    ),
    ("channels", batch(*[ch()] * 65), r"65 channels: at most 64 in a batch"),
    ("node empty", batch(node=""), r"node id '' is not 1 to 64 characters"),
    ("node long", batch(node="a" * 65), r"node id 'a{65}' is not"),
    ("node start", batch(node="_a"), r"node id '_a' is not"),
    ("node ascii", batch(node="läm"), r"node id 'läm' is not"),
    ("stream", batch(stream="a+b"), r"stream 'a\+b' is not"),
    ("channel name", batch(ch(name="a" * 65)), r"channel name 'a{65}' is not"),
    ("unit long", batch(ch(unit="µg/m³µg/m³µg")), r"channel x: unit 'µg/m³µg/m³µg' is not at most 16 bytes"),
    ("unit control", batch(ch(unit="\x85")), r"channel x: unit '\\x85' is not at most 16 bytes of text"),
    ("unit surrogate", batch(ch(unit="\udc80")), r"channel x: unit '\\udc80' is not text"),
    ("seq", batch(seq=MAX_SEQ + 1), r"sequence number 9007199254740992 is outside"),
    ("seq negative", batch(seq=-1), r"sequence number -1 is outside"),
    ("t0", batch(t0_ms=MAX_TIME_MS + 1), r"time base 9007199254740992 ms is outside"),
    ("time", batch(ch(times_ms=(MAX_TIME_MS + 1,))), r"channel x: time 9007199254740992 ms is outside"),
    ("time negative", batch(ch(times_ms=(-1,))), r"channel x: time -1 ms is outside"),
    ("period 0", batch(period_ms=0), r"period 0 ms is outside"),
    ("period", batch(period_ms=MAX_PERIOD_MS + 1), r"period 1099511627777 ms is outside"),
    ("epoch", batch(epoch=1 << 32), r"epoch 4294967296 is not a 32-bit number"),
    ("epoch negative", batch(epoch=-1), r"epoch -1 is not a 32-bit number"),
    ("resolution", batch(ch(resolution=math.inf)), r"channel x: resolution must be a positive number"),
    ("bin width 0", batch(ch(bin_width=0)), r"channel x: bin width 0 is not in 1\.\.2\*\*64-1"),
    ("bin width", batch(ch(bin_width=1 << 64)), r"channel x: bin width 18446744073709551616 is not"),
    (
        "reconstruction",
        batch(ch(reconstruction="step")),
        r"channel x: reconstruction 'step' is not one of every, hold, linear",
    ),
    ("bound", batch(ch(bound=-0.5)), r"channel x: bound -0.5 is not a finite number >= 0"),
    ("bound nan", batch(ch(bound=math.nan)), r"channel x: bound nan is not"),
    ("quality 0", batch(ch(flags=((0, 0),))), r"channel x: bad quality flag entry \(0, 0\)"),
    ("quality byte", batch(ch(flags=((0, 256),))), r"bad quality flag entry \(0, 256\)"),
    ("quality index", batch(ch(flags=((1, 4),))), r"bad quality flag entry \(1, 4\)"),
    (
        "quality order",
        batch(ch(times_ms=(0, 1), values_q=(0, 0), flags=((1, 4), (0, 4)))),
        r"bad quality flag entry \(0, 4\)",
    ),
    ("residual", batch(ch(times_ms=(0, 1), values_q=(0, 1 << 59))), r"values too far apart to encode"),
    ("predictor", batch(ch(bin_width=3, predictor=6)), r"predictor 6 \(season 0\) is not one the format has"),
    ("season", batch(ch(bin_width=3, predictor=wire.PREDICTOR_SEASONAL)), r"predictor 5 \(season 0\) is not"),
]


@pytest.mark.parametrize(
    ("b", "message"), [c[1:] for c in ENCODER_LIMITS], ids=[c[0] for c in ENCODER_LIMITS]
)
def test_the_encoder_refuses_a_batch_beyond_a_limit_and_says_which(b, message):
    only_v4 = any(c.reconstruction != "every" or c.bound for c in b.channels)  # not written before
    for version in (4,) if only_v4 else (2, 3, 4):
        with pytest.raises(ValueError, match=message):
            wire.encode(b, version=version)


def test_version_1_holds_the_limits_and_its_own():
    for b, message in [
        (c[1], c[2]) for c in ENCODER_LIMITS if c[0] in ("node long", "seq", "time", "channel name")
    ]:
        with pytest.raises(ValueError, match=message):
            wire.encode_v1(b)
    with pytest.raises(
        ValueError, match="value -18446744073709551616 is too far from the one before for version 1"
    ):
        wire.encode_v1(batch(ch(values_q=(-(1 << 64),))))


def test_the_encoder_refuses_a_body_or_payload_beyond_the_limit(monkeypatch):
    b = batch(ch(name="a_long_channel_name_" * 3, times_ms=tuple(range(100)), values_q=tuple(range(100))))
    size = len(wire.encode(b, deflate=False))
    monkeypatch.setattr(encoder, "MAX_BODY", size - 9)
    with pytest.raises(
        ValueError, match=f"a body of {size - 8} bytes: at most {size - 9}; seal smaller batches"
    ):
        wire.encode(b, deflate=False)
    monkeypatch.setattr(encoder, "MAX_BODY", size)
    monkeypatch.setattr(encoder, "MAX_PAYLOAD", size - 1)
    with pytest.raises(ValueError, match=f"a payload of {size} bytes: at most {size - 1}"):
        wire.encode(b, deflate=False)
    with pytest.raises(ValueError, match=r"a payload of .* bytes: at most"):
        wire.encode_v1(b)


def test_a_long_constant_channel_stays_within_the_bytes_per_sample_bound():
    """Its runs of zeros would make a block of five bytes for any number of samples: the
    encoder writes a form of at least a byte per MAX_PER_BYTE samples, which the decoder
    admits (before, 60,000 were written in eight bytes and then refused)."""
    n = 60_000
    b = batch(
        ch(name="pulses", unit="", times_ms=tuple(range(0, 1000 * n, 1000)), values_q=(5,) * n),
        period_ms=1000,
    )
    for version in (2, 3, 4):
        raw = wire.encode(b, deflate=False, version=version)
        assert len(raw) * MAX_PER_BYTE >= n and wire.decode(raw) == b
        got = wire.decode(raw).channels[0]
        assert got.form in ("simple8b", "coded")


def test_a_decimal_beyond_the_exponent_limit_travels_as_an_f64():
    for x in (1e-40, 1e35, 5e-324):
        b = batch(ch(resolution=x, bound=x, reconstruction="hold"))
        assert wire.decode(wire.encode(b)) == b


# --- the edges of every limit: written, then read -------------------------------------------

ALNUM = "abcXYZ019"
NAME_CHARS = ALNUM + "._-"
names = st.one_of(
    st.from_regex(wire.NAME_PATTERN, fullmatch=True),
    st.builds(
        lambda a, rest: a + rest, st.sampled_from(ALNUM), st.text(NAME_CHARS, min_size=63, max_size=63)
    ),
)
times = st.one_of(
    st.integers(0, 1000), st.integers(MAX_TIME_MS - 1000, MAX_TIME_MS), st.integers(0, MAX_TIME_MS)
)
decimals = st.sampled_from(
    [5e-324, 1e-40, 1e-30, 0.001, 0.01, 1 / 3, 1.0, 25.0, 1e30, 1e35, 1.7976931348623157e308]
)
units = st.sampled_from(["", "°C", "µg/m³µg/m³", "/0.1L", "abcdefghijklmnop", "µµµµµµµµ"])


@st.composite
def channels(draw, name: str) -> C:
    n = draw(st.integers(0, 5))
    ts = tuple(draw(times) for _ in range(n))
    qs = tuple(draw(st.integers(-(2**40), 2**40)) for _ in range(n))
    flagged = sorted(draw(st.sets(st.integers(0, max(0, n - 1)), max_size=n)))
    bound = draw(st.one_of(st.just(0.0), decimals))
    return C(
        name,
        draw(units),
        draw(decimals),
        ts,
        qs,
        tuple((i, draw(st.integers(1, 255))) for i in flagged),
        bin_width=draw(st.one_of(st.just(1), st.integers(2, 9), st.integers(2, 2**64 - 1))),
        reconstruction=draw(st.sampled_from(wire.RECONSTRUCTIONS)),
        bound=bound,
        bound_relative=bound > 0 and draw(st.booleans()),
    )


@st.composite
def extreme_batches(draw) -> B:
    count = draw(st.sampled_from([0, 1, 2, 3, MAX_CHANNELS]))
    chs = tuple(draw(channels(draw(names) if i < 3 else f"{'c' * 60}{i:04d}")) for i in range(count))
    return B(
        draw(names),
        draw(names),
        draw(st.one_of(st.just(0), st.just(MAX_SEQ), st.integers(0, MAX_SEQ))),
        draw(times),
        chs,
        flags=draw(st.integers(0, 3)),
        period_ms=draw(st.one_of(st.just(1), st.just(MAX_PERIOD_MS), st.integers(1, MAX_PERIOD_MS))),
        epoch=draw(st.one_of(st.just(0), st.just(2**32 - 1), st.integers(0, 2**32 - 1))),
    )


@settings(max_examples=100, deadline=None)
@given(b=extreme_batches(), version=st.sampled_from([2, 3, 4]), deflate=st.booleans())
def test_a_batch_at_the_edges_of_the_limits_is_written_and_read(b, version, deflate):
    got = wire.decode(wire.encode(b, version=version, deflate=deflate))
    assert (got.node, got.stream, got.seq, got.t0_ms, got.period_ms, got.flags) == (
        b.node,
        b.stream,
        b.seq,
        b.t0_ms,
        b.period_ms,
        b.flags,
    )
    assert got.epoch == (b.epoch if version == 4 else 0)
    for g, c in zip(got.channels, b.channels, strict=True):
        assert (g.name, g.unit, g.resolution, g.times_ms, g.flags, g.bin_width) == (
            c.name,
            c.unit,
            c.resolution,
            c.times_ms,
            c.flags,
            c.bin_width,
        )
        assert all(abs(x - q) <= c.bin_width // 2 for x, q in zip(g.values_q, c.values_q, strict=True))
        if version == 4:
            assert (g.reconstruction, g.bound, g.bound_relative) == (
                c.reconstruction,
                c.bound,
                c.bound_relative,
            )
    assert wire.decode(wire.encode(got, version=version, deflate=False)) == got  # what a store re-encodes


def within_limits(b: B) -> bool:
    """The limits restated, independently of limits.py."""
    name = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")

    def unit_ok(u: str) -> bool:
        return len(u.encode("utf-8", "surrogatepass")) <= 16 and not any(
            ord(c) < 32 or 127 <= ord(c) < 160 or 0xD800 <= ord(c) < 0xE000 for c in u
        )

    return (
        all(name.fullmatch(x) for x in (b.node, b.stream, *(c.name for c in b.channels)))
        and 0 <= b.seq <= 2**53 - 1
        and 0 <= b.t0_ms <= 2**53 - 1
        and 1 <= b.period_ms <= 2**40
        and 0 <= b.epoch < 2**32
        and len(b.channels) <= 64
        and all(
            unit_ok(c.unit)
            and all(0 <= t <= 2**53 - 1 for t in c.times_ms)
            and 1 <= c.bin_width < 2**64
            and c.resolution > 0
            and math.isfinite(c.resolution)
            for c in b.channels
        )
    )


beyond_names = st.one_of(names, st.sampled_from(["", "-x", "a" * 65, "a b", "é"]))


@settings(max_examples=300, deadline=None)
@given(
    node=beyond_names,
    channel_name=beyond_names,
    unit=st.one_of(units, st.sampled_from(["a" * 17, "\x00", "\x9f", "µ" * 9])),
    seq=st.sampled_from([-1, 0, MAX_SEQ, MAX_SEQ + 1]),
    t0=st.sampled_from([-1, 0, MAX_TIME_MS, MAX_TIME_MS + 1]),
    t=st.sampled_from([-1, 0, MAX_TIME_MS, MAX_TIME_MS + 1]),
    period=st.sampled_from([0, 1, MAX_PERIOD_MS, MAX_PERIOD_MS + 1]),
    epoch=st.sampled_from([-1, 0, 2**32 - 1, 2**32]),
    width=st.sampled_from([0, 1, 2**64 - 1, 2**64]),
    count=st.sampled_from([1, MAX_CHANNELS, MAX_CHANNELS + 1]),
)
def test_the_encoder_refuses_exactly_what_is_beyond_the_limits(
    node, channel_name, unit, seq, t0, t, period, epoch, width, count
):
    chs = tuple(
        C(channel_name if i == 0 else f"c{i}", unit, 0.01, (t,), (7,), bin_width=width) for i in range(count)
    )
    b = B(node, "s", seq, t0, chs, period_ms=period, epoch=epoch)
    try:
        raw = wire.encode(b)
    except ValueError:
        assert not within_limits(b)
        return
    assert within_limits(b)
    assert wire.decode(raw).key == b.key  # never written and then refused


def test_the_spec_states_every_limit():
    """docs/wire-format.md's "Limits" names each number of format.py (so neither changes
    alone)."""
    from pathlib import Path

    spec = (Path(__file__).resolve().parent.parent / "docs" / "wire-format.md").read_text()
    limits = spec[spec.index("## Limits") : spec.index("## Test vectors\n")]
    assert (MAX_PAYLOAD, MAX_BODY, MAX_CHANNEL_SAMPLES, MAX_BATCH_SAMPLES) == (2**20,) * 4
    assert (MAX_PER_BYTE, MAX_CHANNELS, wire.MAX_NAME, wire.MAX_UNIT) == (3840, 64, 64, 16)
    assert (MAX_TIME_MS, MAX_SEQ, MAX_PERIOD_MS) == (2**53 - 1, 2**53 - 1, 2**40)
    assert (wire.RESOLUTION_EXP, wire.EPOCH_BITS, wire.MAX_RESIDUAL_BITS) == (30, 32, 60)
    for text in (
        "| payload | 1 MiB (1,048,576 bytes)",
        "| inflated body | 1 MiB",
        "| samples of a channel | 2^20",
        "| samples of a batch | 2^20",
        "| samples per byte | 3840",
        "| channels | 64",
        "| names | 1 to 64 characters of `A-Z a-z 0-9 . _ -`",
        "| units | at most 16 bytes",
        "`[0, 2^53 - 1]` ms",
        "| period | `[1, 2^40]` ms",
        "| sequence number | `[0, 2^53 - 1]`",
        "| epoch | 32 bits",
        "`|e| <= 30`",
        "zigzag below 2^60",
        "| bin width | `[1, 2^64 - 1]`",
        "| quality flags | flags 1 to 255",
    ):
        assert text in limits, text
