"""The spec is enough for a second decoder: tests/spec_decoder.py, written from
docs/wire-format.md alone, decodes every vector to its JSON, decodes random payloads of
edge-agent's encoder (versions 1 to 4) exactly as edge_agent.wire.decode does, and rejects
what the spec says a decoder MUST reject, as edge-agent's does. edge_agent.wire is used only
through its public API, as a black box."""

from __future__ import annotations

import json
import math
import random
from collections import Counter
from pathlib import Path

import pytest
import spec_decoder
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_agent import wire
from edge_agent.errors import WireFormatError

VECTORS = sorted((Path(__file__).parent / "vectors").glob("*.hex"))
KIND_OF = {pair: kind for kind, pair in spec_decoder.KINDS.items()}
T0 = 1_767_225_600_000


def payload_of(name: str) -> bytes:
    return bytes.fromhex((Path(__file__).parent / "vectors" / f"{name}.hex").read_text().strip())


def sealed(without_crc: bytes) -> bytes:
    return without_crc + spec_decoder.crc32c(without_crc).to_bytes(4, "little")


def black_box(payload: bytes) -> dict:
    """edge_agent.wire.decode's batch, in the fields of the vectors' JSON it exposes."""
    b = wire.decode(payload)
    doc = {"node": b.node, "stream": b.stream, "seq": b.seq, "version": b.version}
    doc.update(flags=b.flags & ~wire.FLAG_DEFLATE & ~wire.FLAG_LEVEL_MASK, t0_ms=b.t0_ms)
    if b.privacy != "raw":
        doc["privacy"] = b.privacy
    if b.version >= 2:
        doc["period_ms"] = b.period_ms
    if b.version >= 4:
        doc["epoch"] = b.epoch
    doc["channels"] = []
    for c in b.channels:
        ch: dict = {"name": c.name, "unit": c.unit, "resolution": c.resolution}
        if b.version == 1:
            ch["encoding"] = c.encoding
        if b.version >= 4:
            ch.update(reconstruction=c.reconstruction, bound=c.bound, bound_relative=c.bound_relative)
        if b.version >= 2:
            assert c.predictor is not None
            ch.update(bin_width=c.bin_width, predictor=spec_decoder.PREDICTORS[c.predictor])
            ch.update(season=c.season, form=c.form)
        ch.update(times_ms=list(c.times_ms), values_q=list(c.values_q), values=list(c.values()))
        ch["flags"] = [list(f) for f in c.flags]
        doc["channels"].append(ch)
    return doc


def without_black_box_blind_spots(doc: dict) -> dict:
    """The spec decoder's document less what wire.Batch does not expose (deflate, kind)."""
    out = {k: v for k, v in doc.items() if k != "deflate"}
    out["channels"] = [{k: v for k, v in c.items() if k != "kind"} for c in doc["channels"]]
    return out


# 1. The vectors


def test_crc32c_check_value():
    assert spec_decoder.crc32c(b"123456789") == 0xE3069283


def test_every_vector_is_found():
    assert len(VECTORS) >= 10
    assert {p.stem for p in VECTORS} == {p.stem for p in VECTORS[0].parent.glob("*.json")}
    assert {p.name[:2] for p in VECTORS} == {"v1", "v2", "v3", "v4"}


@pytest.mark.parametrize("path", VECTORS, ids=lambda p: p.stem)
def test_vector_decodes_to_its_json(path: Path):
    expected = json.loads(path.with_suffix(".json").read_text())
    expected.pop("about")
    mine = spec_decoder.decode(payload_of(path.stem))
    assert mine == expected
    assert without_black_box_blind_spots(mine) == black_box(payload_of(path.stem))


# 2. Random batches of edge-agent's encoder, decoded by both

NAMES = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", fullmatch=True)
UNITS = st.text(st.characters(codec="utf-8", exclude_categories=["Cs", "Cc"]), max_size=16).filter(
    lambda u: len(u.encode()) <= 16
)
DECIMAL = st.builds(lambda m, e: float(f"{m}e{e}"), st.integers(1, 99_999), st.integers(-9, 3))
WIDE_DECIMAL = st.builds(lambda m, e: float(f"{m}e{e}"), st.integers(1, 2**32 - 1), st.integers(-30, 30))
F64 = st.one_of(
    st.sampled_from([1 / 3, 1 / 7, 0.1 + 0.2, math.pi / 1000, 1e-40, 2.0**-20]),
    st.floats(1e-12, 1e6, allow_subnormal=False),
)
RESOLUTIONS = st.one_of(DECIMAL, DECIMAL, WIDE_DECIMAL, F64)
HOUR = 3_600_000
PERIODS = st.one_of(st.sampled_from([1, 250, 1000, 60_000, HOUR]), st.integers(1, 2**40))


def sample_times(rnd: random.Random, mode: str, n: int, t0: int, period: int) -> list[int]:
    if mode == "regular":
        first = rnd.randrange(6)
        return [t0 + (first + i) * period for i in range(n)]
    if mode == "free":  # anywhere, any order (flagged raw samples need not be in time order)
        return [rnd.randrange(t0 - min(t0, 10**6), t0 + 10**7) for _ in range(n)]
    times, slot = [], rnd.randrange(-3, 6)
    for _ in range(n):  # slots that may repeat or skip, some read late or early
        slot += rnd.choice((0, 1, 1, 1, 2, 5))
        late = rnd.randrange(-(period // 2), period // 2 + 1) if rnd.random() < 0.3 else 0
        times.append(t0 + slot * period + late)
    return times


def sample_values(rnd: random.Random, mode: str, n: int) -> list[int]:
    base = rnd.randrange(-(10**6), 10**6)
    if mode == "random":
        top = rnd.choice((2**8, 2**31, 2**48))
        return [rnd.randrange(-top, top) for _ in range(n)]
    if mode == "sparse":  # long runs at one level: the runs form, the zero predictor
        out, level = [], base
        for _ in range(n):
            level += rnd.randrange(-50, 50) if rnd.random() < 0.1 else 0
            out.append(level)
        return out
    if mode == "ramp":
        step = rnd.randrange(-40, 40)
        return [base + step * i + rnd.randrange(-2, 3) for i in range(n)]
    # "wave": a daily cycle of an hourly series, for the seasonal predictor
    return [base + round(300 * math.sin(2 * math.pi * i / 24)) + rnd.randrange(-3, 4) for i in range(n)]


@st.composite
def bounds(draw, resolution: float) -> tuple[str, float, bool]:
    recon = draw(st.sampled_from(wire.RECONSTRUCTIONS))
    mode = draw(st.sampled_from(["none", "steps", "many_steps", "decimal", "f64", "relative"]))
    if mode == "none":
        return recon, 0.0, False
    if mode in ("steps", "many_steps"):
        steps = draw(st.integers(1, 61) if mode == "steps" else st.integers(62, 10_000))
        return recon, spec_decoder.rounded([steps], resolution)[0], False
    if mode == "relative":
        return recon, draw(st.sampled_from([0.02, 0.005, 0.1, 1 / 3])), True
    return recon, draw(DECIMAL if mode == "decimal" else F64), False


@st.composite
def channels(draw, version: int, t0: int, period: int, rnd: random.Random) -> wire.ChannelData:
    if draw(st.booleans()):
        name, unit = draw(st.sampled_from(sorted(KIND_OF)))
    else:
        name, unit = draw(NAMES), draw(UNITS)
    resolution = draw(RESOLUTIONS)
    if period == HOUR and draw(st.booleans()):  # over two days hourly: the seasonal predictor
        n, times_mode, values_mode = draw(st.integers(50, 120)), "regular", "wave"
    else:
        n = draw(st.one_of(st.integers(0, 12), st.integers(13, 130)))
        times_mode = draw(st.sampled_from(["regular", "schedule", "free"]))
        values_mode = draw(st.sampled_from(["random", "sparse", "ramp", "wave"]))
    times = sample_times(rnd, times_mode, n, t0, period)
    values = sample_values(rnd, values_mode, n)
    flagged = sorted(rnd.sample(range(n), min(n, rnd.choice((0, 0, 1, 3)))))
    flags = tuple((i, rnd.randrange(1, 256)) for i in flagged)
    extra = {}
    if version >= 2:
        width = draw(st.one_of(st.just(1), st.just(1), st.integers(2, 1000)))
        recon, bound, relative = draw(bounds(resolution))
        extra = {"bin_width": width, "reconstruction": recon, "bound": bound, "bound_relative": relative}
    return wire.ChannelData(name, unit, resolution, tuple(times), tuple(values), flags, **extra)


@st.composite
def cases(draw) -> tuple[int, bool, wire.Batch]:
    version, deflate = draw(st.sampled_from([1, 2, 3, 4])), draw(st.booleans())
    rnd = draw(st.randoms(use_true_random=False))
    hourly = version >= 3 and draw(st.integers(0, 3)) == 0  # days of an hourly schedule
    period = HOUR if hourly else draw(PERIODS) if version >= 2 else 1
    t0 = draw(st.integers(0, 2**45)) + 4 * period  # room for slots before t0
    count = draw(st.integers(0, 4))
    chans = tuple(draw(channels(version, t0, period, rnd)) for _ in range(count))
    batch = wire.Batch(
        draw(NAMES),
        draw(NAMES),
        draw(st.integers(0, 2**53 - 1)),
        t0,
        chans,
        flags=draw(st.integers(0, 3)),
        period_ms=period,
        epoch=draw(st.integers(0, 2**32 - 1)),
    )
    return version, deflate, batch


def test_random_payloads_decode_alike():
    """About 300 random batches, every version, deflated or not: the two decoders agree field
    by field, lossless channels come back as sent, and the run covers every version, form,
    predictor and reconstruction, relative bounds, binning and both kinds of channel names
    (derandomized, so that coverage check cannot flake)."""
    seen: Counter[str] = Counter()

    @settings(
        max_examples=300,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(cases())
    def compare(case: tuple[int, bool, wire.Batch]) -> None:
        version, deflate, batch = case
        if version == 1:
            payload = plain = wire.encode_v1(batch)
        else:
            payload = wire.encode(batch, version=version, deflate=deflate)
            plain = wire.encode(batch, version=version, deflate=False)
        mine = spec_decoder.decode(payload)
        assert without_black_box_blind_spots(mine) == black_box(payload)
        assert mine.get("deflate", False) == (payload != plain)
        assert payload == plain or len(payload) < len(plain)
        for sent, got in zip(batch.channels, mine["channels"], strict=True):
            if "kind" in got:  # a well-known name and unit MUST be sent by its kind
                assert got["kind"] == KIND_OF.get((got["name"], got["unit"]), 0)
                seen.update([f"kind {'known' if got['kind'] else 0}"])
            if got.get("bin_width", 1) == 1:
                assert (got["times_ms"], got["values_q"]) == (list(sent.times_ms), list(sent.values_q))
            seen.update([f"form {got.get('form', 'v1')}", f"predictor {got.get('predictor', 'v1')}"])
            seen.update([f"recon {got.get('reconstruction', '-')}", f"relative {got.get('bound_relative')}"])
            seen.update(["binned"] * (got.get("bin_width", 1) > 1) + ["channels"])
        seen.update([f"version {mine['version']}", f"deflate {mine.get('deflate')}", "payloads"])

    compare()
    wanted = [f"form {f}" for f in ("simple8b", "runs", "rice", "coded")]
    wanted += [f"predictor {p}" for p in spec_decoder.PREDICTORS]
    wanted += [f"recon {r}" for r in wire.RECONSTRUCTIONS] + [
        "relative True",
        "binned",
        "kind 0",
        "kind known",
    ]
    wanted += [f"version {v}" for v in (1, 2, 3, 4)] + ["deflate True", "deflate False"]
    assert not [w for w in wanted if not seen[w]], seen
    assert seen["payloads"] >= 250


# 3. What a decoder MUST reject, rejected by both


def word15(value: int) -> bytes:
    """A Simple-8b word of selector 15: one 60-bit value."""
    return (15 | value << 4).to_bytes(8, "little")


def patched(name: str, old: str, new: str) -> bytes:
    """A vector with its first `old` bytes (hex) replaced by `new`, the checksum redone."""
    body = payload_of(name)[:-4]
    assert bytes.fromhex(old) in body, (name, old)
    return sealed(body.replace(bytes.fromhex(old), bytes.fromhex(new), 1))


# v2-air-schedule's "noise" channel (3 samples, Simple-8b) in the runs form: k = 1 non-zero
# residual, then r0 = 0, z' = 2^60 - 1, r1 = 2.
RUNS_BLOCK = b"\x01" + word15(0) + word15(2**60 - 1) + word15(2)
RUNS_2_TO_THE_60 = patched(
    "v2-air-schedule", "03 00 02 0568 04 4a380105", f"03 40 02 0568 {len(RUNS_BLOCK):02x} {RUNS_BLOCK.hex()}"
)
V4_TEMPERATURE = "01 0103 15 04 c2"  # kind, resolution, recon, n, shape of v4-air-hold's first channel
REJECTED = {
    "bad magic": (sealed(b"EB" + payload_of("v2-air-schedule")[2:-4]), "magic"),
    "unknown version 5": (patched("v4-air-hold", "4541 04", "4541 05"), "version"),
    "unknown version 0": (patched("v1-two-channels", "4541 01", "4541 00"), "version"),
    "bad CRC": (payload_of("v4-air-hold")[:-1] + b"\0", "CRC"),
    "shorter than 8 bytes": (b"EA\x01\x00\x00\x00\x00", "bytes"),
    "longer than 1 MiB": (sealed(b"EA\x01\x00" + bytes(1 << 20)), "bytes"),
    "v1 trailing byte": (sealed(payload_of("v1-two-channels")[:-4] + b"\0"), "left over"),
    "v4 trailing byte": (sealed(payload_of("v4-air-hold")[:-4] + b"\0"), "left over"),
    "bytes after the DEFLATE stream": (sealed(payload_of("v2-custom-deflate")[:-4] + b"\0"), "after"),
    "a DEFLATE stream that does not end": (sealed(payload_of("v4-cabinet-deflate")[:-5]), "DEFLATE"),
    "unknown kind 22": (patched("v2-air-schedule", "04 0100 01 07", "16 0100 01 07"), "kind"),
    "reconstruction 3": (patched("v4-air-hold", V4_TEMPERATURE, "01 0103 17 04 c2"), "reconstruction"),
    "quality flag 0": (
        patched("v1-two-channels", "9003 a08d06 01 00 04", "9003 a08d06 01 00 00"),
        "flag of 0",
    ),
    "quality flag beyond n": (
        patched("v1-two-channels", "9003 a08d06 01 00 04", "9003 a08d06 01 01 04"),
        "index",
    ),
    "a varint of 11 bytes": (
        patched("v2-air-schedule", "07 80d0", "80808080808080808080 00 80d0"),
        "over 10 bytes",
    ),
    "a 10th varint byte above 1": (
        patched("v2-air-schedule", "07 80d0", "ffffffffffffffffff02 80d0"),
        "2\\^64",
    ),
    "a decimal exponent of 31": (patched("v2-air-schedule", "01 0103 04 02", "01 013e 04 02"), "exponent"),
    "a v1 resolution of 0": (
        patched("v1-two-channels", "000000000000f03f", "0000000000000000"),
        "resolution",
    ),
    "a bound of f64 0": (
        patched("v4-air-hold", "02 0103 66 03", "02 0103 fa 00 00 0000000000000000 03"),
        "bound",
    ),
    "the coded form in version 2": (patched("v2-air-schedule", "01 01 03 00 02", "01 01 03 c0 02"), "coded"),
    "coded with predictor bits": (patched("v4-air-hold", V4_TEMPERATURE, "01 0103 15 04 ca"), "predictor"),
    "coded predictor 6": (patched("v3-hourly-seasonal", "35 05 18", "35 06 18"), "predictor"),
    "a season of 0": (patched("v3-hourly-seasonal", "35 05 18", "35 05 00"), "season"),
    "a Simple-8b byte after the values": (
        patched("v2-air-schedule", "08 cc0c11000c00a621", "09 cc0c11000c00a62100"),
        "after",
    ),
    "a time exception beyond n": (patched("v2-air-schedule", "01 03 e707", "01 04 e707"), "index"),
    "a stream name with a slash": (patched("v2-air-schedule", "03 616972", "03 612f72"), "stream"),
    "65 channels": (patched("v1-two-channels", "b733 02 0b", "b733 41 0b"), "channels"),
    "a period of 0": (patched("v2-air-schedule", "b733 e807 03", "b733 00 03"), "period"),
}


@pytest.mark.parametrize("payload, says", REJECTED.values(), ids=REJECTED.keys())
def test_both_decoders_reject(payload: bytes, says: str):
    with pytest.raises(ValueError, match=says):
        spec_decoder.decode(payload)
    with pytest.raises(WireFormatError):
        wire.decode(payload)


def test_the_spec_decoder_refuses_a_runs_residual_of_2_to_the_60():
    """Limits: "residuals | zigzag below 2^60 (Simple-8b, runs, Rice)", and a decoder MUST
    refuse a payload beyond any limit. A runs block's non-zero residual is z' + 1, so a
    Simple-8b z' of 2^60 - 1 makes z = 2^60: one beyond."""
    with pytest.raises(ValueError, match=r"runs: a residual of 2\^60"):
        spec_decoder.decode(RUNS_2_TO_THE_60)


def test_edge_agent_refuses_a_runs_residual_of_2_to_the_60():
    try:
        wire.decode(RUNS_2_TO_THE_60)
    except WireFormatError:
        return
    raise AssertionError("edge_agent.wire.decode accepted a runs residual of 2^60")


# 4. What the spec says a decoder accepts, accepted by both with the same content


ACCEPTED = {  # (vector, the payload's bytes, replaced by): each still decodes to the vector's JSON
    "a varint longer than needed (seq 7 as 87 00)": ("v2-air-schedule", "07 80d0", "8700 80d0"),
    "an f64 resolution with a decimal exponent of 31 (ignored)": (
        "v2-air-schedule",
        "00 05 6e6f697365 02 6442 01 01 03 00",
        "00 05 6e6f697365 02 6442 00 3e 9a9999999999b93f 03 00",
    ),
    "a Simple-8b last word not cut": (
        "v2-air-schedule",
        "03 0d6a18 01 00 04",
        "08 0d6a180000000000 01 00 04",
    ),
    "binned with W = 1": ("v2-air-schedule", "03 00 02 0568 04 4a380105", "03 20 02 0568 01 04 4a380105"),
    "a coded block padded with zero bytes": ("v4-air-hold", "06 00 da10b48282", "0a 00 da10b48282 00000000"),
    "a time exception of offset 0 listed": ("v2-air-schedule", "01 03 e707", "02 00 00 02 e707"),
}


@pytest.mark.parametrize("name, old, new", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_both_decoders_accept(name: str, old: str, new: str):
    payload = patched(name, old, new)
    expected = json.loads((VECTORS[0].parent / f"{name}.json").read_text())
    expected.pop("about")
    mine = spec_decoder.decode(payload)
    assert mine == expected
    assert without_black_box_blind_spots(mine) == black_box(payload)


def test_reserved_flag_bits_are_ignored():
    """Bits 5-7 of the flags (2-7 in version 1) are reserved: a decoder MUST ignore them (bits
    3-4 are the privacy level since versions 2-4 have one). The spec decoder reports bits 0-1
    only; wire.Batch.flags keeps the others (the JSON schema's "flags, without deflate" does
    not say which is meant)."""
    for name, flags in (("v4-air-hold", 0xE2), ("v1-two-channels", 0xFC)):
        payload = bytearray(payload_of(name)[:-4])
        payload[3] = flags
        mine = spec_decoder.decode(sealed(bytes(payload)))
        assert mine["flags"] == flags & 3
        assert wire.decode(sealed(bytes(payload))).flags & 3 == flags & 3
