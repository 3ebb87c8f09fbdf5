"""The decoder refuses what it must: every bit flip, DEFLATE bombs, malformed coded
channels, damage behind a valid checksum, random bytes and mutated version-4 payloads
(WireFormatError, never another exception), and says what is wrong (`edge-agent decode`:
integration/test_decode_cli.py; the limits: test_limits.py)."""

from __future__ import annotations

import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from wire_data import TWO_CHANNELS, V2_AIR, V4_AIR, VECTORS, hourly_days, recrc

from edge_agent import wire
from edge_agent.errors import WireFormatError


@pytest.mark.parametrize("vector", [TWO_CHANNELS, V2_AIR, V4_AIR], ids=["v1", "v2", "v4"])
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
    with pytest.raises(WireFormatError, match="truncated payload"):
        wire.decode(recrc(payload[:40]))


def test_deflate_bombs_and_cut_streams_are_refused():
    names = [f"custom_channel_{i:02d}" for i in range(6)]
    chs = tuple(wire.ChannelData(n, "counts", 1.0, (0, 1000), (1, 2)) for n in names)
    packed = wire.encode(wire.Batch("n", "s", 0, 0, chs, period_ms=1000))
    assert packed[3] & wire.FLAG_DEFLATE
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    bomb = (
        b"EA\x02" + bytes([wire.FLAG_DEFLATE]) + packer.compress(bytes(wire.MAX_BODY + 10)) + packer.flush()
    )
    with pytest.raises(WireFormatError, match="beyond"):
        wire.decode(recrc(bomb))
    with pytest.raises(WireFormatError, match=r"inflate|cut short"):
        wire.decode(recrc(packed[:-12]))


@pytest.mark.parametrize(
    ("at", "byte", "message"),
    [
        ("version", 2, "shape says both runs and Rice codes"),  # the coded form in a version-2 payload
        ("shape", 0xC9, "coded values with predictor bits 1 in the shape"),
        ("predictor", 7, "unknown predictor 7"),
        ("season", 0, "season 0"),
    ],
)
def test_malformed_coded_channels_are_refused_with_what_is_wrong(at, byte, message):
    qs = hourly_days(3)
    ch = wire.ChannelData("t", "", 0.1, tuple(i * 3_600_000 for i in range(len(qs))), tuple(qs))
    payload = bytearray(
        wire.encode(wire.Batch("n", "s", 0, 0, (ch,), period_ms=3_600_000), deflate=False, version=3)
    )
    block = wire.value_block(qs, season=24)[0]
    assert payload[2] == 3 and block[:2] == bytes([wire.PREDICTOR_SEASONAL, 24])
    length = bytearray()
    wire.put_uvarint(length, len(block))
    shape = bytes(payload).index(bytes([wire.SHAPE_CODED | wire.SHAPE_REGULAR, 0]) + length + block)
    pos = {
        "version": 2,
        "shape": shape,
        "predictor": shape + 2 + len(length),
        "season": shape + 3 + len(length),
    }[at]
    payload[pos] = byte
    with pytest.raises(WireFormatError, match=message):
        wire.decode(recrc(bytes(payload[:-4])))


@settings(max_examples=400, deadline=None)
@given(
    vector=st.sampled_from([p for p in VECTORS if "deflate" not in p.stem]),
    edits=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=4),
    cut=st.integers(0, 8),
)
def test_damage_behind_a_valid_checksum_is_refused_or_decoded_never_a_crash(vector, edits, cut):
    """A sender with a bug (or a forged message) can produce a body whose CRC is right:
    the decoder says what is wrong (WireFormatError) or decodes it; it never raises
    anything else and never loops or allocates without bound."""
    body = bytearray(bytes.fromhex(vector.read_text().strip())[:-4])
    for pos, byte in edits:
        body[4 + pos % max(1, len(body) - 4)] = byte  # the header's magic and version stay
    body = body[: max(4, len(body) - cut)]
    try:
        wire.decode(recrc(bytes(body)))
    except WireFormatError:
        pass


def _deflate(body: bytes) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    return packer.compress(body) + packer.flush()


def _decodes_or_says_why(raw: bytes) -> None:
    try:
        wire.decode(raw)
    except WireFormatError as exc:
        assert str(exc)  # says something


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=400), version=st.sampled_from([1, 2, 3, 4, 5]), flags=st.integers(0, 255))
def test_random_bytes_only_ever_raise_wire_format_error(data, version, flags):
    """As they come, behind a valid header and checksum, and as a deflated body."""
    _decodes_or_says_why(data)
    _decodes_or_says_why(recrc(wire.MAGIC + bytes((version, flags)) + data))
    _decodes_or_says_why(recrc(wire.MAGIC + bytes((version, flags | wire.FLAG_DEFLATE)) + _deflate(data)))


V4 = [p for p in VECTORS if p.stem.startswith("v4-")]


@settings(max_examples=400, deadline=None)
@given(
    vector=st.sampled_from(V4),
    edits=st.lists(
        st.tuples(
            st.sampled_from(["set", "insert", "delete", "flip"]), st.integers(0, 10_000), st.integers(0, 255)
        ),
        min_size=1,
        max_size=6,
    ),
)
def test_mutated_version_4_payloads_only_ever_raise_wire_format_error(vector, edits):
    """Bytes set, inserted, deleted or flipped in a version-4 body (inflated first when it is
    deflated, and deflated again), behind a valid checksum: decoded or refused, nothing else."""
    payload = bytes.fromhex(vector.read_text().strip())
    deflated = payload[3] & wire.FLAG_DEFLATE
    body = bytearray(zlib.decompress(payload[4:-4], -15) if deflated else payload[4:-4])
    for op, pos, byte in edits:
        at = pos % (len(body) + 1)
        if op == "insert":
            body[at:at] = bytes((byte,))
        elif body and op == "delete":
            del body[at % len(body)]
        elif body:
            body[at % len(body)] = byte if op == "set" else body[at % len(body)] ^ (1 << byte % 8)
    _decodes_or_says_why(recrc(payload[:4] + (_deflate(bytes(body)) if deflated else bytes(body))))
