"""The wire format as a whole: the golden vectors (v1, v2 and v3) decode and re-encode byte
for byte, random batches round-trip, and the package keeps its public names."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from wire_data import VECTORS, batch_from_json, vector

from edge_agent import wire


@pytest.mark.parametrize("hexfile", VECTORS, ids=[p.stem for p in VECTORS])
def test_golden_vectors_decode_and_encode(hexfile):
    payload, doc = vector(hexfile)
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
    versions = {vector(p)[1]["version"] for p in VECTORS}
    assert len(VECTORS) >= 5 and versions == {1, 2, 3}


channel = st.builds(
    lambda name, unit, res, start, steps, qs: wire.ChannelData(
        name, unit, res, tuple(start + sum(steps[: i + 1]) for i in range(len(qs))), tuple(qs)
    ),
    st.from_regex(wire.NAME_PATTERN, fullmatch=True),
    st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=4),
    st.sampled_from([0.001, 0.01, 0.1, 0.5, 1.0, 100.0]),
    st.integers(0, 10**6),
    st.lists(st.integers(0, 10**7), min_size=64, max_size=64),
    st.lists(st.integers(-(2**40), 2**40), max_size=60),
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
    v1 = wire.decode(wire.encode_v1(b))
    assert v1.channels == b.channels and v1.version == 1


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
