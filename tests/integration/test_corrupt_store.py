"""The agent starts on a corrupt store: it moves the file aside, starts a fresh one and keeps collecting."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import time

import pytest
from helpers import agent_cmd, read_copy, stop_agent, wait_for_log

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
    for suffix, name in (("", "main"), ("-wal", "wal"), ("-shm", "shm")):  # -shm: an older version's
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
    (state / "queue.sqlite3-wal").unlink()  # what an operator's `rm` or a damaged card does
    assert not (state / "queue.sqlite3-shm").exists()  # the WAL's index is in memory (store_vfs)
    second = tmp_path / "second.err"
    proc = subprocess.Popen(cmd, stderr=open(second, "wb"))
    wait_for_log(proc, second, lambda text: "event=batch_sealed" in text)
    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=20) == 0
    log = second.read_text()
    assert f"event=store_wal_lost path={state}/queue.sqlite3 " in log and f"run_epoch={epoch}" in log, log
    start = next(line for line in log.splitlines() if "event=start " in line)
    assert start.split(" epoch=")[1].split()[0] != epoch  # this run seals under an epoch of its own


def damaged_queue(state, ids: list[int], leaf: str) -> set[tuple]:
    """A queue of batches at ``ids`` (its sqlite_sequence at the highest), one leaf of its
    table zeroed (the "head", or the "middle", past what the opening reads); what SQLite
    can still read of it, (stream, seq, payload) by id."""
    from test_store_salvage import btree, build, rows_sqlite_reads, zero_pages

    state.mkdir(exist_ok=True)
    q = str(state / "queue.sqlite3")
    build(q, ids)
    db = sqlite3.connect(q)
    db.execute("UPDATE sqlite_sequence SET seq = ? WHERE name = 'batches'", (max(ids),))
    db.commit()
    db.close()
    leaves = [pg for pg, _, kind, _ in sorted(btree(q), key=lambda r: r[1]) if kind == "leaf"]
    zero_pages(q, [leaves[0 if leaf == "head" else len(leaves) // 2]])
    readable = rows_sqlite_reads(q, ids)
    return readable


def queue_rows(state) -> list[tuple]:
    db = sqlite3.connect(f"file:{state / 'queue.sqlite3'}?mode=ro", uri=True)
    rows = db.execute("SELECT stream, seq, payload FROM batches").fetchall()
    db.close()
    return rows


def test_the_agent_is_ready_before_the_salvage_of_ten_million_ids(tmp_path):
    """20,000 batches waiting at ids up to 10 M, the oldest leaf damaged: READY comes before
    the salvage, which takes a few queries (the old one looked up all 10 M ids before READY)
    and brings back every batch SQLite can read."""
    state = tmp_path / "state"
    readable = damaged_queue(state, list(range(9_980_001, 10_000_001)), "head")
    err = tmp_path / "agent.err"
    proc = subprocess.Popen(agent_on(state, "500ms"), stderr=open(err, "wb"))
    log = wait_for_log(
        proc, err, lambda text: "event=store_salvaged" in text and "event=batch_sealed" in text, 120
    )
    assert stop_agent(proc, err) == 0
    log = err.read_text()
    assert log.index("event=ready") < log.index("event=store_salvaged")
    salvaged = next(line for line in log.splitlines() if "event=store_salvaged" in line)
    assert (
        f"salvaged_batches={len(readable)} " in salvaged
        and f"unreadable={20_000 - len(readable)} " in salvaged
    )
    assert int(salvaged.split("queries=")[1].split()[0]) <= 10
    rows = queue_rows(state)
    assert readable <= set(rows) and len({r[:2] for r in rows}) == len(rows)
    assert "Traceback" not in log


def test_an_agent_killed_during_its_salvage_goes_on_and_loses_nothing_readable(tmp_path):
    state = tmp_path / "state"
    readable = damaged_queue(state, list(range(1, 200_001)), "head")
    err = tmp_path / "first.err"
    proc = subprocess.Popen(agent_on(state, "500ms"), stderr=open(err, "wb"))
    wait_for_log(proc, err, lambda text: "event=ready" in text, 60)
    deadline = time.monotonic() + 60
    copied = 0
    while not copied:  # the salvage under way: the kill comes in its middle
        assert time.monotonic() < deadline and "event=store_salvaged" not in err.read_text(), err.read_text()
        try:  # a copy: the agent holds the queue itself (store_vfs)
            copied = (
                read_copy(state / "queue.sqlite3", tmp_path, "SELECT max(salvaged) FROM salvage")[0][0] or 0
            )
        except sqlite3.DatabaseError:
            pass
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    assert "event=store_salvaged" not in err.read_text()
    aside = [p for p in os.listdir(state) if ".corrupt-" in p and not p.endswith(("-wal", "-shm"))]
    assert len(aside) == 1  # kept, and the salvage's row with it, for the next start
    second = tmp_path / "second.err"
    proc = subprocess.Popen(agent_on(state, "500ms"), stderr=open(second, "wb"))
    wait_for_log(proc, second, lambda text: "event=store_salvaged" in text, 180)
    assert stop_agent(proc, second) == 0
    log = second.read_text()
    assert "event=store_salvage_resumed" in log and "event=store_corrupt" not in log
    rows = queue_rows(state)
    assert readable <= set(rows)  # every readable batch, after the kill as before it
    assert len({r[:2] for r in rows}) == len(rows)  # and none twice
    assert os.path.exists(state / aside[0])


def test_damage_the_opening_does_not_read_is_recovered_while_the_agent_runs(tmp_path):
    """A damaged page in the middle of the queue passes the bounded check at opening; the
    whole file's check behind READY finds it, and the running agent moves the file aside
    and salvages it as at a start, sealing on meanwhile and after."""
    state = tmp_path / "state"
    readable = damaged_queue(state, list(range(1, 30_001)), "middle")
    err = tmp_path / "agent.err"
    proc = subprocess.Popen(agent_on(state, "300ms"), stderr=open(err, "wb"))
    wait_for_log(proc, err, lambda text: "event=store_salvaged" in text, 120)
    sealed = err.read_text().count("event=batch_sealed")
    wait_for_log(proc, err, lambda text: text.count("event=batch_sealed") >= sealed + 3, 60)
    assert stop_agent(proc, err) == 0
    log = err.read_text()
    order = ["event=ready", "event=store_damage_found", "event=store_corrupt", "event=store_reopened"]
    assert [log.index(e) for e in order] == sorted(log.index(e) for e in order), log
    epochs = [log.split(" epoch=")[1].split()[0], log.split("event=store_reopened epoch=")[1].split(":")[0]]
    assert epochs[0] != epochs[1]  # batches sealed after it under an epoch of their own
    rows = queue_rows(state)
    assert readable <= set(rows) and len({r[:2] for r in rows}) == len(rows)
    assert "Traceback" not in log
