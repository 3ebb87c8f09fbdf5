"""The dedupe key survives a lost store (issue 13): run the agent, lose its queue file and
WAL, run it again. Its sequence numbers start again at 0 under a new epoch: every new
batch is new to `edge-agent tail`, and tail's report names the store loss once."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time

import pytest
from helpers import agent_cmd, run_agent_for

CONFIG = """\
node: {{id: loss-node}}
flush_interval: 300ms
clock: {{hold_unsynced: 0s}}
mqtt: {{broker: "{broker}", topic_prefix: loss, reconnect: {{min: 200ms, max: 1s}}}}
sensors:
  - name: air
    type: bme680
    interval: 100ms
    heater: {{duration: 30ms}}
    channels: {{temperature: {{deadband: 0}}}}
    sim: {{temperature: {{mean: 20, amplitude: 5, period: 5s}}}}
"""


def delivered(log: str) -> int:
    m = re.search(r"event=uplink_stop delivered=(\d+) ", log)
    assert m, log
    return int(m.group(1))


@pytest.mark.broker
def test_batches_after_a_lost_store_are_new_and_the_loss_is_reported(broker, tmp_path):
    out, err = tmp_path / "tail.out", tmp_path / "tail.err"

    def batches() -> dict[str, set[int]]:
        """The seqs tail printed, per epoch."""
        got: dict[str, set[int]] = {}
        for line in out.read_text().splitlines():
            row = json.loads(line)
            got.setdefault(row["epoch"], set()).add(row["seq"])
        return got

    def arrived(n: int) -> None:
        """Wait until tail has n batches: printed, or reported as duplicates."""
        deadline = time.monotonic() + 30
        while sum(map(len, batches().values())) + err.read_text().count("tail: duplicate") < n:
            assert tail.poll() is None and time.monotonic() < deadline, err.read_text()
            time.sleep(0.1)

    tail = subprocess.Popen(
        agent_cmd("tail", "--broker", broker.url, "--json", "--prefix", "loss"),
        stdout=open(out, "wb"),
        stderr=open(err, "wb"),
    )
    try:
        deadline = time.monotonic() + 15
        while "event=subscribed" not in err.read_text():
            assert tail.poll() is None and time.monotonic() < deadline, err.read_text()
            time.sleep(0.05)
        config = CONFIG.format(broker=broker.url)
        first = delivered(run_agent_for(tmp_path / "node", config, 2.0))
        arrived(first)  # before the store goes: what it had not sent is lost with it
        state = tmp_path / "node" / "state"
        for name in os.listdir(state):  # the queue file, its WAL and shared memory: gone
            if name.startswith("queue.sqlite3"):
                os.remove(state / name)
        second = delivered(run_agent_for(tmp_path / "node", config, 2.0))
        assert first >= 3 and second >= 3
        arrived(first + second)
    finally:
        os.kill(tail.pid, signal.SIGTERM)
        assert tail.wait(timeout=30) == 0, err.read_text()
    assert "tail: duplicate" not in err.read_text()  # the second run's batches are all new
    got = batches()
    assert len(got) == 2 and all(len(e) == 8 for e in got), got
    (summary,) = [
        json.loads(line)["summary"] for line in err.read_text().splitlines() if line.startswith("{")
    ]
    assert summary["duplicates"] == 0 and [e["received"] for e in summary["epochs"]] == [first, second]
    before, after = (e["epoch"] for e in summary["epochs"])
    unsynced = any(e["clock_unsynced"] for e in summary["epochs"])  # this machine's clock may say so
    assert summary["store_losses"] == [
        {
            "epoch_before": before,
            "epoch_after": after,
            "last_seq_before": max(got[before]),
            "first_seq_after": 0,
            "clock_unsynced": unsynced,
        }
    ]
