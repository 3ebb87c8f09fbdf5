"""Wire format v1: golden vectors, round trips, and corruption that must never decode."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent import wire
from edge_agent.errors import WireFormatError

VECTORS = sorted((Path(__file__).parent / "vectors").glob("*.hex"))
TWO_CHANNELS = Path(__file__).parent / "vectors" / "v1-two-channels.hex"


def batch_from_json(doc: dict) -> wire.Batch:
    return wire.Batch(doc["node"], doc["stream"], doc["seq"], doc["t0_ms"], tuple(
        wire.ChannelData(c["name"], c["unit"], c["resolution"], tuple(c["times_ms"]), tuple(c["values_q"]),
                         tuple(tuple(f) for f in c["flags"]), c["encoding"]) for c in doc["channels"]),
        flags=doc["flags"], version=doc["version"])


@pytest.mark.parametrize("hexfile", VECTORS, ids=[p.stem for p in VECTORS])
def test_golden_vectors_decode_and_encode(hexfile):
    payload = bytes.fromhex(hexfile.read_text().strip())
    doc = json.loads(hexfile.with_suffix(".json").read_text())
    expected = batch_from_json(doc)
    decoded = wire.decode(payload)
    assert decoded == expected
    for ch, want in zip(decoded.channels, doc["channels"]):
        assert ch.values() == want["values"]
    assert wire.encode(expected) == payload


def test_there_are_vectors():
    assert len(VECTORS) >= 2


def test_crc32c_check_value():
    from edge_agent.crc32c import crc32c
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
       channels=st.lists(channel, max_size=5))
def test_round_trip(node, stream, seq, t0, flags, channels):
    b = wire.Batch(node, stream, seq, t0, tuple(channels), flags=flags)
    assert wire.decode(wire.encode(b)) == b


def test_every_single_bit_flip_is_detected():
    payload = bytes.fromhex(TWO_CHANNELS.read_text().strip())
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
    from edge_agent.crc32c import crc32c
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
    from edge_agent.crc32c import crc32c_py
    try:
        from edge_agent._dsp import crc32c as compiled
    except ImportError:
        if os.environ.get("EDGE_AGENT_REQUIRE_EXT") == "1":
            pytest.fail("the compiled core is not built (EDGE_AGENT_REQUIRE_EXT=1)")
        pytest.skip("the compiled core edge_agent._dsp is not built")
    assert compiled(data, start) == crc32c_py(data, start)
