"""The queue is the running agent's alone (edge_agent/node/store_vfs.py): a second agent
started on the same state directory fails with the reason, and takes nothing for damage;
the first one seals on, its queue whole."""

from __future__ import annotations

import os
import sqlite3
import subprocess

from helpers import agent_cmd, kill_agent, stop_agent, wait_for_log


def agent_on(state) -> list[str]:
    return agent_cmd(
        "run",
        "--simulate",
        "--state-dir",
        str(state),
        "--flush-interval",
        "300ms",
        "--broker",
        "mqtt://127.0.0.1:9",
    )


def test_a_second_agent_on_the_same_queue_is_refused_and_the_first_goes_on(tmp_path):
    state = tmp_path / "state"
    first_err = tmp_path / "first.err"
    first = subprocess.Popen(agent_on(state), stderr=open(first_err, "wb"))
    try:
        wait_for_log(first, first_err, lambda t: "event=ready" in t and t.count("event=batch_sealed") >= 3)
        second = subprocess.run(agent_on(state), capture_output=True, text=True, timeout=120)
        assert second.returncode != 0
        assert "another process has the queue open" in second.stderr, second.stderr[-3000:]
        assert "Traceback" not in second.stderr and "event=ready" not in second.stderr
        assert not [p for p in os.listdir(state) if ".corrupt-" in p]
        before = first_err.read_text().count("event=batch_sealed")
        wait_for_log(first, first_err, lambda t: t.count("event=batch_sealed") >= before + 3)
        assert stop_agent(first, first_err) == 0
    finally:
        kill_agent(first, first_err)
    db = sqlite3.connect(str(state / "queue.sqlite3"))
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    (n,) = db.execute("SELECT count(*) FROM batches").fetchone()
    db.close()
    assert n >= before + 3
