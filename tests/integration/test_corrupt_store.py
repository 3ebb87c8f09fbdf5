"""The agent starts on a corrupt store: it moves the file aside, starts a fresh one and keeps collecting."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest
from helpers import agent_cmd, stop_agent, wait_for_log

from edge_agent.node.store import BatchStore


def agent_on(state, flush: str) -> list[str]:
    """The agent on simulated sensors, its queue in ``state``, a broker nobody answers."""
    return agent_cmd(
        "run",
        "--simulate",
        "--state-dir",
        str(state),
        "--flush-interval",
        flush,
        "--broker",
        "mqtt://127.0.0.1:9",
    )


def test_agent_starts_on_a_corrupt_store_and_keeps_collecting(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    (state / "queue.sqlite3").write_bytes(b"not a database" * 1000)
    err = tmp_path / "agent.err"
    proc = subprocess.Popen(agent_on(state, "500ms"), stderr=open(err, "wb"))
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


@pytest.mark.parametrize("seed", [3, 24, 25, 533, 71, 150])
def test_the_agent_starts_and_collects_on_a_randomly_damaged_store(tmp_path, seed):
    """Damage as tests/test_store_damage.py makes it (these seeds once crash-looped the
    agent: text that is not UTF-8 at open, in the salvage, in a row), under the real agent."""
    import random
    import shutil

    from test_store_damage import _crashed_store

    src = tmp_path / "src"
    src.mkdir()
    _crashed_store(str(src / "q.sqlite3"))
    state = tmp_path / "state"
    state.mkdir()
    q = state / "queue.sqlite3"
    for suffix, name in (("", "main"), ("-wal", "wal"), ("-shm", "shm")):
        shutil.copy(src / f"q.sqlite3.{name}", str(q) + suffix)
    rnd = random.Random(seed)
    path = str(q) + rnd.choice(["", "-wal", "-shm"])
    with open(path, "r+b") as f:
        size = os.path.getsize(path)
        f.seek(rnd.randrange(max(1, size - 64)))
        f.write(rnd.randbytes(64))
    err = tmp_path / "agent.err"
    proc = subprocess.Popen(agent_on(state, "500ms"), stderr=open(err, "wb"))
    wait_for_log(proc, err, lambda text: "event=ready" in text and "event=batch_sealed" in text)
    assert stop_agent(proc, err) == 0, err.read_text()  # a hang fails with its log and stacks
    assert "Traceback" not in err.read_text()


def test_a_wal_deleted_after_a_kill_is_logged_at_the_next_start(tmp_path):
    state = tmp_path / "state"
    cmd = agent_on(state, "300ms")
    first = tmp_path / "first.err"
    proc = subprocess.Popen(cmd, stderr=open(first, "wb"))
    wait_for_log(proc, first, lambda text: text.count("event=batch_sealed") >= 3)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    epoch = first.read_text().split(" epoch=")[1].split()[0]
    for suffix in ("-wal", "-shm"):  # what an operator's `rm` or a damaged card does
        (state / f"queue.sqlite3{suffix}").unlink()
    second = tmp_path / "second.err"
    proc = subprocess.Popen(cmd, stderr=open(second, "wb"))
    wait_for_log(proc, second, lambda text: "event=batch_sealed" in text)
    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=20) == 0
    log = second.read_text()
    assert f"event=store_wal_lost path={state}/queue.sqlite3 " in log and f"run_epoch={epoch}" in log, log
    start = next(line for line in log.splitlines() if "event=start " in line)
    assert start.split(" epoch=")[1].split()[0] != epoch  # this run seals under an epoch of its own
