"""Wire format: golden vectors (v1, v2 and v3), round trips, packing, and corruption that must never decode."""

from __future__ import annotations

import json
import math
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from conftest import compiled_core
from edge_agent import wire
from edge_agent.errors import WireFormatError

VECTORS = sorted((Path(__file__).parent / "vectors").glob("*.hex"))
TWO_CHANNELS = Path(__file__).parent / "vectors" / "v1-two-channels.hex"
V2_AIR = Path(__file__).parent / "vectors" / "v2-air-schedule.hex"


def batch_from_json(doc: dict) -> wire.Batch:
    return wire.Batch(doc["node"], doc["stream"], doc["seq"], doc["t0_ms"], tuple(
        wire.ChannelData(c["name"], c["unit"], c["resolution"], tuple(c["times_ms"]), tuple(c["values_q"]),
                         tuple(tuple(f) for f in c["flags"]), c["encoding"]) for c in doc["channels"]),
        flags=doc["flags"], version=doc["version"], period_ms=doc.get("period_ms", 1))


@pytest.mark.parametrize("hexfile", VECTORS, ids=[p.stem for p in VECTORS])
def test_golden_vectors_decode_and_encode(hexfile):
    payload = bytes.fromhex(hexfile.read_text().strip())
    doc = json.loads(hexfile.with_suffix(".json").read_text())
    expected = batch_from_json(doc)
    decoded = wire.decode(payload)
    assert decoded == expected and decoded.version == doc["version"]
    for ch, want in zip(decoded.channels, doc["channels"]):
        assert ch.values() == want["values"]
    if doc["version"] == 1:
        assert wire.encode_v1(expected) == payload
    elif not doc.get("deflate"):  # a DEFLATE stream depends on the zlib build: decode only
        assert wire.encode(expected, deflate=False, version=doc["version"]) == payload


def test_there_are_vectors():
    versions = {json.loads(p.with_suffix(".json").read_text())["version"] for p in VECTORS}
    assert len(VECTORS) >= 5 and versions == {1, 2, 3}


def test_crc32c_check_value():
    from edge_agent.wire.crc32c import crc32c
    assert crc32c(b"123456789") == 0xE3069283
    assert crc32c(b"") == 0


channel = st.builds(
    lambda name, unit, res, start, steps, qs: wire.ChannelData(
        name, unit, res, tuple(start + sum(steps[:i + 1]) for i in range(len(qs))), tuple(qs)),
    st.text(min_size=1, max_size=12), st.text(max_size=4),
    st.sampled_from([0.001, 0.01, 0.1, 0.5, 1.0, 100.0]),
    st.integers(0, 10**6),
    st.lists(st.integers(0, 10**7), min_size=64, max_size=64),
    st.lists(st.integers(-2**40, 2**40), max_size=60),
)


@settings(max_examples=200, deadline=None)
@given(node=st.text(min_size=1, max_size=20), stream=st.text(min_size=1, max_size=20),
       seq=st.integers(0, 2**40), t0=st.integers(0, 2**42), flags=st.integers(0, 3),
       channels=st.lists(channel, max_size=5), period=st.integers(1, 100_000), deflate=st.booleans())
def test_round_trip(node, stream, seq, t0, flags, channels, period, deflate):
    b = wire.Batch(node, stream, seq, t0, tuple(channels), flags=flags, period_ms=period)
    assert wire.decode(wire.encode(b, deflate=deflate)) == b
    v1 = wire.decode(wire.encode_v1(b))
    assert v1.channels == b.channels and v1.version == 1


@settings(max_examples=300, deadline=None)
@given(values=st.lists(st.one_of(st.integers(0, 3), st.integers(0, 2**60 - 1)), max_size=700))
def test_simple8b_round_trip(values):
    block = wire.pack_simple8b(values)
    assert wire.unpack_simple8b(block, len(values)) == values
    assert len(block) <= 8 * max(1, len(values))


def test_simple8b_limits_and_damage():
    with pytest.raises(ValueError, match="2\\*\\*60"):
        wire.pack_simple8b([2**60])
    with pytest.raises(ValueError, match="non-negative"):
        wire.pack_simple8b([-1])
    block = wire.pack_simple8b(list(range(100)))
    with pytest.raises(WireFormatError, match="block ends"):
        wire.unpack_simple8b(block[:-9], 100)
    with pytest.raises(WireFormatError, match="after its"):
        wire.unpack_simple8b(block + bytes(8), 100)
    assert wire.pack_simple8b([0] * 240) == b"\x00"  # one byte for 240 zeros
    assert wire.pack_simple8b([0] * 3840) == b"\xf0" and len(wire.pack_simple8b([0] * 10_000)) == 3


def test_a_regular_series_costs_almost_nothing_per_timestamp():
    t0 = 1_767_225_600_000
    def payload(n, jitter=()):
        times = tuple(t0 + 1000 * i + (3 if i in jitter else 0) for i in range(n))
        ch = wire.ChannelData("temperature", "°C", 0.01, times, (2150,) * n)
        return wire.encode(wire.Batch("lamp-0042", "air", 1, t0, (ch,), period_ms=1000), deflate=False)
    # 600 samples on schedule with a constant value: no byte for the 600 times, and the
    # values' first word (8 bytes, as the first value is not followed by others) plus one
    # byte of zero runs, against one trimmed word for a single sample
    assert len(payload(600)) - len(payload(1)) <= 8
    # a sample off its slot is an exception of a few bytes, and decodes exactly
    late = payload(600, jitter=(17,))
    assert len(late) - len(payload(600)) <= 4
    assert wire.decode(late).channels[0].times_ms[17] == t0 + 17_003


def test_deflate_is_used_only_when_it_pays_and_bombs_are_refused():
    names = [f"custom_channel_{i:02d}" for i in range(6)]
    chs = tuple(wire.ChannelData(n, "counts", 1.0, (0, 1000), (1, 2)) for n in names)
    b = wire.Batch("n", "s", 0, 0, chs, period_ms=1000)
    packed, plain = wire.encode(b), wire.encode(b, deflate=False)
    assert packed[3] & wire.FLAG_DEFLATE and len(packed) < len(plain) and wire.decode(packed) == b
    tiny = wire.Batch("n", "s", 0, 0, (wire.ChannelData("temperature", "°C", 0.01, (0,), (1,)),))
    assert not wire.encode(tiny)[3] & wire.FLAG_DEFLATE
    from edge_agent.wire.crc32c import crc32c
    import zlib
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    bomb = b"EA\x02" + bytes([wire.FLAG_DEFLATE]) + packer.compress(bytes(wire.MAX_BODY + 10)) + packer.flush()
    with pytest.raises(WireFormatError, match="beyond"):
        wire.decode(bomb + crc32c(bomb).to_bytes(4, "little"))
    cut = packed[:-12]
    with pytest.raises(WireFormatError, match="inflate|cut short"):
        wire.decode(cut + crc32c(cut).to_bytes(4, "little"))


def test_known_channels_travel_as_one_byte_and_custom_ones_by_name():
    known = wire.ChannelData("co2", "ppm", 1.0, (0,), (420,))
    renamed = wire.ChannelData("co2", "ppb", 1.0, (0,), (420,))  # another unit: spelled out
    a = wire.encode(wire.Batch("n", "s", 0, 0, (known,)), deflate=False)
    b = wire.encode(wire.Batch("n", "s", 0, 0, (renamed,)), deflate=False)
    assert len(b) - len(a) == len("co2") + len("ppb") + 2
    assert wire.decode(b).channels[0].unit == "ppb"
    assert len(set(wire.KNOWN_CHANNELS.values())) == len(wire.KNOWN_CHANNELS)


def test_a_resolution_without_a_short_decimal_form_travels_as_f64():
    ch = wire.ChannelData("x", "u", 1 / 3, (0, 1), (3, 4))
    d = wire.decode(wire.encode(wire.Batch("n", "s", 0, 0, (ch,))))
    assert d.channels[0].resolution == 1 / 3 and d.channels[0].values_q == (3, 4)


@pytest.mark.parametrize("vector", [TWO_CHANNELS, V2_AIR], ids=["v1", "v2"])
def test_every_single_bit_flip_is_detected(vector):
    payload = bytes.fromhex(vector.read_text().strip())
    for i in range(len(payload)):
        for bit in range(8):
            bad = bytearray(payload)
            bad[i] ^= 1 << bit
            with pytest.raises(WireFormatError):
                wire.decode(bytes(bad))


def test_errors_say_what_is_wrong():
    payload = bytes.fromhex(TWO_CHANNELS.read_text().strip())
    with pytest.raises(WireFormatError, match="bad magic"):
        wire.decode(b"XX" + payload[2:])
    with pytest.raises(WireFormatError, match="unsupported wire format version 9"):
        wire.decode(payload[:2] + b"\x09" + payload[3:])
    with pytest.raises(WireFormatError, match="checksum mismatch"):
        wire.decode(payload[:-1] + bytes([payload[-1] ^ 0xFF]))
    with pytest.raises(WireFormatError, match="too short"):
        wire.decode(payload[:5])
    # A truncated body with a valid checksum still fails, and says where.
    from edge_agent.wire.crc32c import crc32c
    body = payload[:40]
    with pytest.raises(WireFormatError, match="truncated payload"):
        wire.decode(body + crc32c(body).to_bytes(4, "little"))


def test_decode_cli_prints_samples_and_checks_topic(tmp_path):
    payload = bytes.fromhex(TWO_CHANNELS.read_text().strip())
    f = tmp_path / "msg.bin"
    f.write_bytes(payload)
    cmd = [sys.executable, "-m", "edge_agent.cli", "decode", str(f), "--json"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert rows[0] == {"node": "lamp-0042", "stream": "air", "seq": 7, "channel": "temperature",
                       "unit": "°C", "t": 1767225600.0, "value": 21.5}
    assert len(rows) == 5 and rows[-1]["quality"] == 4
    ok = subprocess.run(cmd + ["--topic", "city/lamp-0042/data/air"], capture_output=True, text=True)
    assert ok.returncode == 0
    bad = subprocess.run(cmd + ["--topic", "city/lamp-0001/data/air"], capture_output=True, text=True)
    assert bad.returncode == 1 and "does not match" in bad.stderr
    f.write_bytes(payload[:-2])
    corrupt = subprocess.run(cmd, capture_output=True, text=True)
    assert corrupt.returncode == 1 and "checksum" in corrupt.stderr


def test_quantise_and_decimals():
    assert wire.quantise(21.504, 0.01) == 2150
    assert wire.quantise(-0.049, 0.01) == -5
    assert [wire.decimals_of(r) for r in (0.01, 0.25, 1.0, 100.0, 1e-5)] == [2, 2, 0, 0, 5]


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=300), start=st.integers(0, 2**32 - 1))
def test_compiled_crc32c_agrees_with_the_twin(data, start):
    from edge_agent.wire.crc32c import crc32c_py
    try:
        from edge_agent._core import crc32c as compiled
    except ImportError:
        if os.environ.get("EDGE_AGENT_REQUIRE_EXT") == "1":
            pytest.fail("the compiled core is not built (EDGE_AGENT_REQUIRE_EXT=1)")
        pytest.skip("the compiled core edge_agent._core is not built")
    assert compiled(data, start) == crc32c_py(data, start)


@settings(max_examples=300, deadline=None)
@given(qs=st.lists(st.integers(-10**6, 10**6), max_size=200), width=st.integers(1, 1000))
def test_binned_values_are_within_half_a_bin_and_stable(qs, width):
    ch = wire.ChannelData("x", "u", 0.01, tuple(range(len(qs))), tuple(qs), bin_width=width)
    b = wire.Batch("n", "s", 0, 0, (ch,))
    got = wire.decode(wire.encode(b)).channels[0]
    assert got.bin_width == width
    assert all(abs(g - q) <= width // 2 for g, q in zip(got.values_q, qs)) and len(got.values_q) == len(qs)
    # re-encoding what was rebuilt (the store restamps so) changes nothing
    again = wire.decode(wire.encode(wire.Batch("n", "s", 0, 0, (got,)))).channels[0]
    assert again.values_q == got.values_q


def test_each_predictor_decodes_what_it_encoded():
    qs = [5, 9, 14, 18, 25, 24, 30, 31, 29, 40, 41, 39]
    for kind in range(len(wire.PREDICTORS)):
        residuals, rebuilt = wire._residuals(qs, kind, season=3)
        assert rebuilt == qs and wire._values_from(residuals, kind, season=3) == qs
    smooth = [round(1000 + 0.5 * i * i) for i in range(50)]  # a parabola: the line predicts it best
    block, kind, _ = wire.value_block(smooth)
    assert wire.PREDICTORS[kind] == "linear"


@settings(max_examples=300, deadline=None)
@given(values=st.lists(st.one_of(st.integers(0, 5), st.integers(0, 2**20)), max_size=300))
def test_rice_round_trip(values):
    block = wire.pack_rice(values)
    assert wire.unpack_rice(block, len(values)) == values


def test_rice_codes_win_on_a_laplacian_spread_and_damage_is_caught():
    rnd = __import__("random").Random(4)
    residuals = [wire.zigzag(round(rnd.gauss(0, 6))) for _ in range(500)]
    block, form = wire._pack_residuals(residuals)
    assert form == wire.SHAPE_RICE and len(block) < len(wire.pack_simple8b(residuals))
    with pytest.raises(WireFormatError, match="end before"):
        wire.unpack_rice(block[: len(block) // 2], 500)
    with pytest.raises(WireFormatError, match="bits after"):
        wire.unpack_rice(block + b"\xff", 500)
    ch = wire.ChannelData("x", "u", 0.1, tuple(range(0, 500_000, 1000)),
                          tuple(__import__("itertools").accumulate(wire.unzigzag(z) for z in residuals)))
    payload = wire.encode(wire.Batch("n", "s", 0, 0, (ch,), period_ms=1000), deflate=False)
    assert wire.decode(payload) == wire.Batch("n", "s", 0, 0, (ch,), period_ms=1000)


def _hourly_days(days: int) -> list[int]:
    """Hourly temperatures (0.1 degC steps) with a daily cycle that repeats, slowly drifting."""
    rnd = random.Random(11)
    profile = [round(60 * math.sin(2 * math.pi * h / 24)) + rnd.randint(-25, 25) for h in range(24)]
    return [150 + profile[h % 24] + h // 50 + rnd.choice((-1, 0, 0, 1)) for h in range(24 * days)]


def test_a_daily_cycle_is_predicted_from_the_day_before():
    qs = _hourly_days(10)
    hour = 3_600_000
    assert wire.season_for(hour, len(qs)) == 24
    assert wire.season_for(hour, 48) == 0  # not more than two days: not tried
    assert wire.season_for(7_000, 10**6) == 0  # a day is not a whole number of periods
    block, kind, shape = wire.value_block(qs, season=24)
    assert wire.PREDICTORS[kind] == "seasonal" and shape == wire.SHAPE_CODED
    ch = wire.ChannelData("temperature", "°C", 0.1, tuple(i * hour for i in range(len(qs))), tuple(qs))
    payload = wire.encode(wire.Batch("n", "air", 0, 0, (ch,), period_ms=hour))
    assert payload[2] == 3
    got = wire.decode(payload)
    assert got.channels == (ch,) and got.version == 3 and got.channels[0].season == 24
    # without the season the same values cost far more (the first day costs the same)
    assert len(block) * 3 < len(wire.value_block(qs)[0]) * 2


def test_version_2_on_request_and_when_the_coded_form_does_not_pay():
    rnd = random.Random(5)  # daily maxima read in whole degrees Fahrenheit, sent at 0.1 degC
    fahrenheit = [60]
    for _ in range(199):
        fahrenheit.append(fahrenheit[-1] + rnd.choice((-3, -2, -1, 0, 0, 1, 2, 3)))
    qs = [round((f - 32) / 1.8 * 10) for f in fahrenheit]
    ch = wire.ChannelData("temperature", "°C", 0.1, tuple(i * 1000 for i in range(len(qs))), tuple(qs))
    b = wire.Batch("n", "air", 0, 0, (ch,), period_ms=1000)
    v3, v2 = wire.encode(b, deflate=False), wire.encode(b, deflate=False, version=2)
    assert v3[2] == 3 and v2[2] == 2 and len(v3) < len(v2)
    assert wire.decode(v2) == wire.decode(v3) == b
    # a regular ramp: Simple-8b of zeros is as small as it gets, so the payload stays version 2
    ramp = wire.ChannelData("temperature", "°C", 0.1, tuple(i * 1000 for i in range(50)), tuple(range(50)))
    assert wire.encode(wire.Batch("n", "air", 0, 0, (ramp,), period_ms=1000))[2] == 2
    with pytest.raises(ValueError, match="versions 2 and 3"):
        wire.encode(b, version=1)


def test_long_zero_runs_stay_within_the_decoders_sample_bound():
    # 20,000 zeros take 6 Simple-8b run bytes; the decoder's bound was once 240 values a byte
    zeros = wire.ChannelData("power", "W", 1.0, tuple(range(0, 20_000 * 1000, 1000)), (0,) * 20_000)
    payload = wire.encode(wire.Batch("n", "meter", 0, 0, (zeros,), period_ms=1000), deflate=False)
    assert wire.decode(payload).channels == (zeros,)
    assert wire._coded([0] * 20_000, 4, 0) == b"\x04" + b"\0" * 6  # padded to a byte per 3840 values


def _recrc(body: bytes) -> bytes:
    from edge_agent.wire.crc32c import crc32c
    return body + crc32c(body).to_bytes(4, "little")


@pytest.mark.parametrize("at,byte,message", [
    ("version", 2, "shape says both runs and Rice codes"),  # the coded form in a version-2 payload
    ("shape", 0xC9, "coded values with predictor bits 1 in the shape"),
    ("predictor", 7, "unknown predictor 7"),
    ("season", 0, "season 0"),
])
def test_malformed_coded_channels_are_refused_with_what_is_wrong(at, byte, message):
    qs = _hourly_days(3)
    ch = wire.ChannelData("t", "", 0.1, tuple(i * 3_600_000 for i in range(len(qs))), tuple(qs))
    payload = bytearray(wire.encode(wire.Batch("n", "s", 0, 0, (ch,), period_ms=3_600_000), deflate=False))
    block = wire.value_block(qs, season=24)[0]
    assert payload[2] == 3 and block[:2] == bytes([wire.PREDICTOR_SEASONAL, 24])
    length = bytearray()
    wire.put_uvarint(length, len(block))
    shape = bytes(payload).index(bytes([wire.SHAPE_CODED | wire.SHAPE_REGULAR, 0]) + length + block)
    pos = {"version": 2, "shape": shape, "predictor": shape + 2 + len(length),
           "season": shape + 3 + len(length)}[at]
    payload[pos] = byte
    with pytest.raises(WireFormatError, match=message):
        wire.decode(_recrc(bytes(payload[:-4])))


@settings(max_examples=300, deadline=None)
@given(bound=st.floats(0, 1000, allow_nan=False), resolution=st.sampled_from([0.001, 0.01, 0.1, 0.5, 1.0, 3.0]))
def test_bins_are_odd_and_as_wide_as_the_bound_allows(bound, resolution):
    w = wire.bin_width_for(bound, resolution)
    half = w // 2
    assert w % 2 == 1  # an even bin rebuilds within W/2 on one side only: a step wasted
    assert half * resolution <= bound * (1 + 1e-9) + 1e-12 < (half + 1) * resolution


@settings(max_examples=400, deadline=None)
@given(vector=st.sampled_from([p for p in VECTORS if "deflate" not in p.stem]),
       edits=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=4),
       cut=st.integers(0, 8))
def test_damage_behind_a_valid_checksum_is_refused_or_decoded_never_a_crash(vector, edits, cut):
    """A sender with a bug (or a forged message) can produce a body whose CRC is right:
    the decoder says what is wrong (WireFormatError) or decodes it; it never raises
    anything else and never loops or allocates without bound."""
    from edge_agent.wire.crc32c import crc32c
    body = bytearray(bytes.fromhex(vector.read_text().strip())[:-4])
    for pos, byte in edits:
        body[4 + pos % max(1, len(body) - 4)] = byte  # the header's magic and version stay
    body = body[:max(4, len(body) - cut)]
    try:
        wire.decode(bytes(body) + crc32c(bytes(body)).to_bytes(4, "little"))
    except WireFormatError:
        pass


@settings(max_examples=300, deadline=None)
@given(values=st.lists(st.one_of(st.just(0), st.integers(0, 3), st.integers(0, 2**24 - 1), st.integers(0, 2**60 - 1)),
                       max_size=900))
def test_the_compiled_packers_write_the_twins_bytes(values):  # and zigzag the same
    core = compiled_core()
    packers = [(wire.pack_simple8b_py, wire.unpack_simple8b)] + ([(core.pack_simple8b, wire.unpack_simple8b)]
                                                                if core else [])
    blocks = {pack(values) for pack, _ in packers}
    assert len(blocks) == 1 and wire.unpack_simple8b(blocks.pop(), len(values)) == values
    signed = [v - 2**59 for v in values if v < 2**60]
    assert wire.zigzags_py(signed) == [wire.zigzag(v) for v in signed]
    if core:
        assert core.zigzags(signed) == wire.zigzags_py(signed)
    small = [v for v in values if v < 2**24]
    blocks = {wire.pack_rice_py(small)} | ({core.pack_rice(small)} if core else set())
    assert len(blocks) == 1 and wire.unpack_rice(blocks.pop(), len(small)) == small


@settings(max_examples=300, deadline=None)
@given(qs=st.lists(st.one_of(st.integers(-300, 300), st.integers(-2**39, 2**39)), max_size=80),
       kind=st.integers(0, 5), width=st.sampled_from([1, 2, 3, 11, 1001]), season=st.integers(1, 30))
def test_the_compiled_predictors_give_the_twins_residuals(qs, kind, width, season):
    core = compiled_core()
    want = wire._residuals(qs, kind, width, season)
    assert wire._residuals_fast(qs, kind, width, season) == want
    if core:
        assert core.residuals(qs, kind, width, season) == want
    huge = [q * 2**30 for q in qs]  # beyond the compiled range: the twin takes over
    assert wire._residuals_fast(huge, kind, width, season) == wire._residuals(huge, kind, width, season)


sparse_steps = st.lists(st.tuples(st.integers(0, 400), st.integers(-3, 3)), max_size=30).map(
    lambda steps: [v for n, d in steps for v in [0] * n + [d]])  # long runs of zeros between steps


@settings(max_examples=300, deadline=None)
@given(qs=st.one_of(st.lists(st.integers(-300, 300), max_size=200),
                    st.lists(st.integers(-2**39, 2**39), max_size=40),
                    sparse_steps.map(lambda d: [sum(d[:i + 1]) for i in range(len(d))]),
                    st.integers(0, 9000).map(lambda n: [7] * n)),
       width=st.sampled_from([1, 1, 3, 11]), season=st.sampled_from([0, 0, 1, 24]), coded=st.booleans())
@example(qs=[0] * 9 + [-1], width=1, season=0, coded=False)  # runs of zeros tie Simple-8b: 2 bytes each
@example(qs=[7] * 9000, width=1, season=0, coded=True)       # the coded form padded to 3 bytes
def test_the_compiled_value_block_search_chooses_the_twins_bytes(qs, width, season, coded):
    """Every predictor in every form, ties to the earlier: runs of zeros, Rice codes,
    Simple-8b and the coded form (padded to a byte per 3840 values) all get chosen here."""
    core = compiled_core()
    kinds = [0, 1, 2, 3] + ([wire.PREDICTOR_ZERO] if coded else []) + (
        [wire.PREDICTOR_SEASONAL] if coded and season else [])
    want = wire._value_block_py(qs, width, kinds, season, coded)
    if core:
        assert core.value_block(qs, width, kinds, season, coded) == want


@settings(max_examples=300, deadline=None)
@given(steps=st.lists(st.one_of(st.just(1000), st.integers(1, 3000), st.integers(-5000, 10**7)), max_size=300),
       start=st.integers(-10**6, 10**13), t0=st.integers(0, 2 * 10**12), period=st.sampled_from([1, 7, 1000, 60000]))
@example(steps=[1000] * 20, start=0, t0=0, period=1000)  # regular: the first slot only
def test_the_compiled_time_slots_write_the_twins_bytes(steps, start, t0, period):
    core = compiled_core()
    times = [start + sum(steps[:i]) for i in range(len(steps))]
    want = wire._times_py(times, t0, period)
    assert wire._times(times, t0, period) == want
    if core:
        assert core.times_section(times, t0, period) == want
    huge = [t + 2**61 for t in times]  # beyond the compiled range: the twin takes over
    assert wire._times(huge, t0 + 2**61, period) == want
