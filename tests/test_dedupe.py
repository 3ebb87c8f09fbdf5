"""Deduplication and gap reports by (node, stream, seq), and `tail` reporting them."""

from __future__ import annotations

import json
import subprocess
import time

import paho.mqtt.client as mqtt
import pytest
from helpers import agent_cmd
from paho.mqtt.enums import CallbackAPIVersion

from edge_agent import wire
from edge_agent.wire.dedupe import SeqTracker


def test_tracker_counts_duplicates_and_gaps():
    t = SeqTracker()
    for seq in [0, 1, 1, 2, 5, 6, 6, 6, 9]:
        t.add("n", "air", seq)
    t.add("n", "power", 3)
    air, power = t.report()
    assert air == {
        "node": "n",
        "stream": "air",
        "received": 6,
        "first": 0,
        "last": 9,
        "duplicates": 3,
        "missing": 4,
        "gaps": [[3, 4], [7, 8]],
    }
    assert power["received"] == 1 and power["gaps"] == []


@pytest.mark.broker
def test_tail_reports_duplicates_and_gaps(broker, tmp_path):
    out, err = tmp_path / "out", tmp_path / "err"
    tail = subprocess.Popen(
        agent_cmd(
            "tail", "--broker", broker.url, "--json", "--prefix", "d", "--count", "5", "--timeout", "20"
        ),
        stdout=open(out, "wb"),
        stderr=open(err, "wb"),
    )
    deadline = time.monotonic() + 15
    while "event=subscribed" not in err.read_text():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    c = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    c.connect("127.0.0.1", broker.port)
    c.loop_start()
    for seq in (0, 1, 1, 4, 5):
        batch = wire.Batch("n1", "air", seq, 1_000, (wire.ChannelData("t", "°C", 0.1, (1_000,), (seq,)),))
        c.publish("d/n1/data/air", wire.encode(batch), qos=1).wait_for_publish(5)
    c.disconnect()
    c.loop_stop()
    assert tail.wait(timeout=30) == 0, err.read_text()
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["seq"] for r in rows] == [0, 1, 4, 5]  # the duplicate is not printed twice
    assert "duplicate n1/air seq=1" in err.read_text()
    summary = [json.loads(line)["summary"] for line in err.read_text().splitlines() if line.startswith("{")]
    assert summary == [
        {
            "node": "n1",
            "stream": "air",
            "received": 4,
            "first": 0,
            "last": 5,
            "duplicates": 1,
            "missing": 2,
            "gaps": [[2, 3]],
        }
    ]
