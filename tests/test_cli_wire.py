"""decode and tail (edge_agent/cli/wire.py): any bytes are payloads to decode or a
WireFormatError that names the line, never another exception; every field a batch carries
is printed; tail's duplicates and closing report."""

from __future__ import annotations

import argparse
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from wire_data import VECTORS

from edge_agent import wire
from edge_agent.cli.wire import _row, _sample_line, cmd_decode, payloads_of, report_lines
from edge_agent.errors import WireFormatError
from edge_agent.wire.dedupe import SeqTracker

HEXISH = st.text(alphabet="0123456789abcdefABCDEF \t\r\n", max_size=300).map(str.encode)


@settings(max_examples=400, deadline=None)
@given(data=st.one_of(st.binary(max_size=300), HEXISH))
def test_any_input_is_payloads_or_a_named_error(data):
    try:
        found = payloads_of(data, "in")
    except WireFormatError as exc:
        assert str(exc).startswith("in:")
        return
    assert all(where == "in" or where.startswith("in:") for where, _ in found)
    for _, payload in found:  # the decoder then decodes each or says why
        try:
            wire.decode(payload)
        except WireFormatError:
            pass


def test_every_vector_reads_the_same_as_hex_and_as_bytes():
    for path in VECTORS:
        raw = bytes.fromhex(path.read_text().strip())
        assert payloads_of(raw, "f") == [("f", raw)]
        assert payloads_of(path.read_bytes(), "f") == [("f:1", raw)]


def v4_payload() -> tuple[wire.Batch, bytes]:
    ch = wire.ChannelData(
        "temperature",
        "°C",
        0.01,
        (1_000, 61_000, 121_000),
        (2150, 2190, 2149),
        ((1, wire.QUALITY_STUCK),),
        reconstruction="hold",
        bound=0.1,
    )
    rel = wire.ChannelData(
        "power", "W", 1.0, (1_000,), (200,), reconstruction="hold", bound=0.05, bound_relative=True
    )
    batch = wire.Batch(
        "n-1", "air", 12, 1_000, (ch, rel), flags=wire.FLAG_CLOCK_UNSYNCED, period_ms=60_000, epoch=0x0BADF00D
    )
    return batch, wire.mark_historical(wire.encode(batch))


def test_decode_prints_every_field_a_batch_carries(tmp_path, capsys):
    _, payload = v4_payload()
    f = tmp_path / "b.bin"
    f.write_bytes(payload)
    assert cmd_decode(argparse.Namespace(file=str(f), json=True, topic="edge/n-1/data/air")) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert rows[1] == {
        "node": "n-1",
        "stream": "air",
        "epoch": "0badf00d",
        "seq": 12,
        "version": 4,
        "channel": "temperature",
        "unit": "°C",
        "t": 61.0,
        "value": 21.9,
        "reconstruction": "hold",
        "bound": pytest.approx(0.105),
        "quality": wire.QUALITY_STUCK,
        "historical": True,
        "clock_unsynced": True,
    }
    assert [r["bound"] for r in rows] == pytest.approx(
        [0.105, 0.105, 0.105, 10.525]
    )  # relative: 5% of (200 W + the half step held beyond) + 0.5
    assert "quality" not in rows[0]
    assert cmd_decode(argparse.Namespace(file=str(f), json=False, topic=None)) == 0
    text = capsys.readouterr().out.splitlines()
    assert text[1] == (
        "n-1 air epoch=0badf00d seq=12 v4 1970-01-01T00:01:01.000Z temperature=21.9 °C (hold ±0.105) "
        "quality=0x02 historical clock_unsynced"
    )
    assert text[3].endswith("power=200.0 W (hold ±10.525) historical clock_unsynced")


def test_tail_marks_a_duplicate_and_reports_in_words():
    batch, payload = v4_payload()
    row = _row(batch, next(wire.decode(payload).rows()), duplicate=True)
    assert row["duplicate"] is True and _sample_line(row).endswith("historical clock_unsynced duplicate")
    t = SeqTracker()
    for epoch, seq, t0 in [(0xA, 0, 0), (0xA, 3, 1), (0xA, 3, 1), (0xB, 0, 9)]:
        t.add_key("n-1", "air", epoch, seq, t0)
    (r,) = t.report()
    assert report_lines(r) == [
        "n-1/air: 3 received, 1 duplicates, 2 missing, 1 store losses",
        "n-1/air epoch 0000000a: seq 0..3, 2 received, 2 missing (gaps: 1-2)",
        "n-1/air epoch 0000000b: seq 0..0, 1 received, 0 missing (gaps: none)",
        "n-1/air: store lost between epoch 0000000a (last seq 3) and epoch 0000000b (first seq 0)",
    ]
