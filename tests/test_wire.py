"""The wire format as a whole: the golden vectors (v1 to v4) are what their generator
makes, decode to their JSON and re-encode byte for byte, the v4 ones cover every form,
random batches round-trip, and the package keeps its public names."""

from __future__ import annotations

import dataclasses
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from wire_data import VECTOR_DIR, VECTORS, batch_from_json, make_vectors, vector

from edge_agent import wire
from edge_agent.wire import predict, rangecoder
from edge_agent.wire.format import KIND_OF
from edge_agent.wire.model import decimal_resolution
from edge_agent.wire.sections import times_section


@pytest.mark.parametrize("hexfile", VECTORS, ids=[p.stem for p in VECTORS])
def test_golden_vectors_decode_to_their_json_and_encode_byte_for_byte(hexfile):
    payload, doc = vector(hexfile)
    expected = batch_from_json(doc)
    decoded = wire.decode(payload)
    assert decoded == expected and decoded.version == doc["version"] == payload[2]
    assert decoded.epoch == doc.get("epoch", 0) and decoded.key[2] == decoded.epoch
    assert bool(payload[3] & wire.FLAG_DEFLATE) == doc.get("deflate", False)
    for ch, want in zip(decoded.channels, doc["channels"], strict=True):
        assert ch.values() == want["values"]
        if doc["version"] >= 2:
            assert KIND_OF.get((ch.name, ch.unit), 0) == want["kind"]
            assert (wire.PREDICTORS[ch.predictor or 0], ch.season, ch.form) == (
                want["predictor"],
                want["season"],
                want["form"],
            )
    if doc["version"] == 1:
        assert wire.encode_v1(expected) == payload
    elif not doc["deflate"]:
        assert wire.encode(expected, deflate=False, version=doc["version"]) == payload
    else:  # a DEFLATE stream depends on the zlib build: what it inflates to decodes the same
        assert wire.decode(wire.encode(expected, version=doc["version"])) == expected


def test_the_vectors_are_what_the_generator_makes():
    generator = make_vectors()
    built = generator.build()
    assert built == generator.build()  # deterministic
    assert sorted(built) == sorted(p.stem for p in VECTORS)
    for name, (hex_text, json_text) in built.items():
        assert (VECTOR_DIR / f"{name}.hex").read_text() == hex_text, name
        assert (VECTOR_DIR / f"{name}.json").read_text() == json_text, name
        about, batch, version, _ = generator.VECTORS[name]
        assert generator.decodes_to(bytes.fromhex(hex_text), batch), name
        assert json.loads(json_text)["about"] == about and json.loads(json_text)["version"] == version


def test_there_are_vectors_of_every_version():
    versions = {vector(p)[1]["version"] for p in VECTORS}
    assert len(VECTORS) >= 9 and versions == set(wire.VERSIONS)


def test_the_version_4_vectors_cover_every_form():
    seen: dict[str, set] = {
        k: set() for k in ("predictor", "form", "reconstruction", "bound", "flags", "other")
    }
    for path in VECTORS:
        payload, doc = vector(path)
        if doc["version"] != 4:
            continue
        b = wire.decode(payload)
        seen["flags"] |= {bit for bit in (1, 2, 4) if (b.flags | payload[3]) & bit}
        seen["other"] |= {"epoch"} if b.epoch else set()
        for ch in b.channels:
            seen["predictor"].add(wire.PREDICTORS[ch.predictor or 0])
            seen["form"].add(ch.form)
            seen["reconstruction"].add(ch.reconstruction)
            if ch.bound:
                seen["bound"].add(("relative" if ch.bound_relative else "absolute", ch.reconstruction))
            regular, exceptions, _ = times_section(ch.times_ms, b.t0_ms, b.period_ms)
            seen["other"] |= {
                name
                for name, there in (
                    ("binned", ch.bin_width > 1),
                    ("quality", ch.flags),
                    ("exceptions", exceptions),
                    ("irregular", not regular),
                    ("custom", KIND_OF.get((ch.name, ch.unit), 0) == 0),
                    ("f64 resolution", decimal_resolution(ch.resolution) == (0, 0)),
                )
                if there
            }
    assert seen["predictor"] == set(wire.PREDICTORS) and seen["form"] == set(wire.FORMS)
    assert seen["reconstruction"] == set(wire.RECONSTRUCTIONS)
    assert {"absolute", "relative"} == {kind for kind, _ in seen["bound"]}
    assert {("absolute", "hold"), ("absolute", "linear"), ("relative", "hold")} <= seen["bound"]
    assert seen["flags"] == {wire.FLAG_HISTORICAL, wire.FLAG_CLOCK_UNSYNCED, wire.FLAG_DEFLATE}
    assert seen["other"] == {
        "epoch",
        "binned",
        "quality",
        "exceptions",
        "irregular",
        "custom",
        "f64 resolution",
    }


def test_the_coded_vector_carries_through_a_pending_byte(monkeypatch):
    """v4-coded-carry is there for the range coder's rarest step: a carry out of ``low``
    while a 0xff byte is pending (it becomes 0x00 and the cache byte goes up by one)."""
    carried = []
    shift = rangecoder._Encoder._shift

    def spy(self):
        if self.low >= 1 << 32 and self.pending > 1:
            carried.append(self.pending - 1)
        shift(self)

    monkeypatch.setattr(rangecoder._Encoder, "_shift", spy)
    payload, _ = vector(VECTOR_DIR / "v4-coded-carry.hex")
    ch = wire.decode(payload).channels[0]
    residuals = predict.residuals(ch.values_q, ch.predictor or 0)[0]
    assert ch.form == "coded" and max(map(abs, residuals)).bit_length() == 45
    assert rangecoder.rc_encode(residuals) in payload and carried == [1]


channel = st.builds(
    lambda name, unit, res, start, steps, qs, recon, bound, relative: wire.ChannelData(
        name,
        unit,
        res,
        tuple(start + sum(steps[: i + 1]) for i in range(len(qs))),
        tuple(qs),
        reconstruction=recon,
        bound=bound,
        bound_relative=relative and bound > 0,
    ),
    st.from_regex(wire.NAME_PATTERN, fullmatch=True),
    st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=4),
    st.sampled_from([0.001, 0.01, 0.1, 0.5, 1.0, 100.0]),
    st.integers(0, 10**6),
    st.lists(st.integers(0, 10**7), min_size=64, max_size=64),
    st.lists(st.integers(-(2**40), 2**40), max_size=60),
    st.sampled_from(wire.RECONSTRUCTIONS),
    st.sampled_from([0.0, 0.05, 0.25, 1 / 3, 2.0]),
    st.booleans(),
)


@settings(max_examples=200, deadline=None)
@given(
    node=st.from_regex(wire.NAME_PATTERN, fullmatch=True),
    stream=st.from_regex(wire.NAME_PATTERN, fullmatch=True),
    seq=st.integers(0, wire.MAX_SEQ),
    epoch=st.integers(0, 2**32 - 1),
    t0=st.integers(0, 2**42),
    flags=st.integers(0, 3),
    channels=st.lists(channel, max_size=5),
    period=st.integers(1, 100_000),
    deflate=st.booleans(),
)
def test_round_trip(node, stream, seq, epoch, t0, flags, channels, period, deflate):
    b = wire.Batch(node, stream, seq, t0, tuple(channels), flags=flags, period_ms=period, epoch=epoch)
    assert wire.decode(wire.encode(b, deflate=deflate)) == b
    # versions 2 and 3 carry neither the epoch nor a reconstruction or bound
    lost = dataclasses.replace(
        b,
        epoch=0,
        channels=tuple(
            dataclasses.replace(c, reconstruction="every", bound=0.0, bound_relative=False) for c in channels
        ),
    )
    assert wire.decode(wire.encode(b, deflate=deflate, version=3)) == lost
    v1 = wire.decode(wire.encode_v1(b))
    assert v1.channels == lost.channels and v1.version == 1


def test_the_public_names_stay_importable():
    """What the node, the CLI, the backbone, bench/ and the README take from edge_agent.wire."""
    for name in (
        "Batch",
        "ChannelData",
        "decode",
        "encode",
        "encode_v1",
        "restamp",
        "mark_historical",
        "quantise",
        "decimals_of",
        "bin_width_for",
        "season_for",
        "value_block",
        "data_topic",
        "status_topic",
        "health_topic",
        "parse_data_topic",
        "put_uvarint",
        "zigzag",
        "unzigzag",
        "pack_simple8b",
        "unpack_simple8b",
        "pack_rice",
        "unpack_rice",
        "PREDICTORS",
        "FORMS",
        "RECONSTRUCTIONS",
        "KNOWN_CHANNELS",
        "MAGIC",
        "MAX_BODY",
        "FLAG_HISTORICAL",
        "FLAG_CLOCK_UNSYNCED",
        "FLAG_DEFLATE",
        "QUALITY_OUT_OF_RANGE",
        "QUALITY_STUCK",
        "QUALITY_INVALID",
        "QUALITY_WARMING_UP",
        "SHAPE_CODED",
        "PREDICTOR_SEASONAL",
    ):
        assert hasattr(wire, name), name
    assert sorted(wire.__all__) == sorted(set(wire.__all__))
    assert all(hasattr(wire, name) for name in wire.__all__)
    assert callable(wire.decode) and callable(wire.encode)  # the functions, not the modules


SPEC = VECTOR_DIR.parent.parent / "docs" / "wire-format.md"


@pytest.mark.parametrize(
    "name", ["v1-two-channels", "v2-air-schedule", "v4-air-hold", "v4-private-aggregate"]
)
def test_the_specs_walk_through_is_the_vectors_bytes(name):
    """The hex of the spec's annotated dump (each line's leading even-length hex groups)."""
    spec = SPEC.read_text()
    at = spec.index(f"`tests/vectors/{name}.hex`")
    dump = spec[spec.index("```\n", at) + 4 : spec.index("\n```", spec.index("```\n", at) + 4)]
    groups = []
    for line in dump.splitlines():
        for token in line.split():
            if len(token) % 2 or not all(c in "0123456789abcdef" for c in token):
                break
            groups.append(token)
    payload, _ = vector(VECTOR_DIR / f"{name}.hex")
    assert bytes.fromhex("".join(groups)) == payload
