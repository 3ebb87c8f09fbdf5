"""The agent starts on a corrupt store: it moves the file aside, starts a fresh one and keeps collecting."""

from __future__ import annotations

import os
import signal
import subprocess
import time

from helpers import agent_cmd

from edge_agent.node.store import BatchStore


def test_agent_starts_on_a_corrupt_store_and_keeps_collecting(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    (state / "queue.sqlite3").write_bytes(b"not a database" * 1000)
    err = tmp_path / "agent.err"
    proc = subprocess.Popen(
        agent_cmd(
            "run",
            "--simulate",
            "--state-dir",
            str(state),
            "--flush-interval",
            "500ms",
            "--broker",
            "mqtt://127.0.0.1:9",
        ),
        stderr=open(err, "wb"),
    )
    deadline = time.monotonic() + 20
    while "event=batch_sealed" not in err.read_text():
        assert proc.poll() is None and time.monotonic() < deadline, err.read_text()
        time.sleep(0.1)
    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=20) == 0
    log = err.read_text()
    assert "event=store_corrupt" in log and "event=store_recovered" in log
    aside = [p for p in os.listdir(state) if p.startswith("queue.sqlite3.corrupt-")]
    assert aside and (state / aside[0]).read_bytes() == b"not a database" * 1000
    with BatchStore(str(state / "queue.sqlite3")) as s:
        assert s.depth()[0] >= 1
