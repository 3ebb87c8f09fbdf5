"""A full disk on a real, small file system (a tmpfs the test mounts: CI runs as root):
the queue is kept through the fill, a restart while full, and the space coming back.
A full disk is never taken for damage: nothing is moved aside as corrupt."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from helpers import agent_cmd, free_port, kill_agent, missing, stop_agent, wait_for_log

from edge_agent import wire
from edge_agent.errors import DiskFullError
from edge_agent.node.store import BatchStore


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MiB tmpfs of 256 inodes mounted at tmp_path/disk, unmounted afterwards."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if os.geteuid() != 0:
        missing("mounting a tmpfs needs root (CI runs as root)")
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m,nr_inodes=256,mode=0700", "tmpfs", str(mnt)],
        capture_output=True,
    )
    if proc.returncode != 0:
        missing(f"cannot mount a tmpfs here: {proc.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def fill(path: Path) -> None:
    """Take every free byte of the file system."""
    with open(path, "wb", buffering=0) as f:
        try:
            while True:
                f.write(bytes(64 * 1024))
        except OSError:
            pass
        try:
            while True:
                f.write(b"\0")
        except OSError:
            pass


def fill_inodes(path: Path) -> None:
    """Take every free inode of the file system too (empty files in ``path``): no file can
    be made, not even an empty WAL."""
    path.mkdir()
    n = 0
    try:
        while True:
            (path / str(n)).touch()
            n += 1
    except OSError:
        pass
    assert n > 0


def payload(i: int) -> bytes:
    return os.urandom(16) + b"batch-%06d" % i + bytes(200)


def _corrupt(state: Path) -> list[str]:
    return [p.name for p in state.iterdir() if ".corrupt-" in p.name]


def test_fill_restart_while_full_and_free(small_disk):
    state = small_disk / "state"
    q = str(state / "queue.db")
    store = BatchStore(q, recover=True)
    for i in range(40):
        store.seal("air", lambda seq, i=i: payload(i), 0.0)
    store.close()  # a clean stop: the WAL is checkpointed and removed
    assert sorted(p.name for p in state.iterdir()) == ["queue.db"]
    filler = small_disk / "filler"
    fill(filler)  # the disk fills while the agent is down (logs, another process)
    # restart while full: the queue opens as it is (the WAL's index is in memory:
    # store_vfs), and a seal fails as a full disk, which is not damage
    store = BatchStore(q, recover=True)
    assert store.recovery is None and len(store.oldest(10_000)) == 40
    with pytest.raises(DiskFullError):
        store.seal("air", lambda seq: payload(40), 0.0)
    store.close()
    assert _corrupt(state) == []
    # full of inodes too: SQLite cannot make the WAL, which is not damage either; the
    # queue stays as it is, and the error says the disk is full
    inodes = small_disk / "inodes"
    fill_inodes(inodes)
    with pytest.raises(DiskFullError, match="the disk is full; the queue is kept as it is"):
        BatchStore(q, recover=True)
    assert _corrupt(state) == []
    for f in inodes.iterdir():
        f.unlink()
    filler.unlink()  # space comes back: the same queue, nothing lost
    store = BatchStore(q, recover=True)
    assert store.recovery is None and len(store.oldest(10_000)) == 40
    fill(filler)  # full while running: each seal fails as a full disk, what is stored stays
    failed = 0
    for i in range(40, 200):
        try:
            store.seal("air", lambda seq, i=i: payload(i), 0.0)
        except DiskFullError:
            failed += 1
    assert failed > 0
    kept = len(store.oldest(10_000))
    filler.unlink()
    _, size = store.seal("air", lambda seq: payload(999), 0.0)
    assert size > 0 and len(store.oldest(10_000)) == kept + 1
    seqs = [r.seq for r in store.oldest(10_000)]
    assert seqs == sorted(set(seqs)) and _corrupt(state) == []
    store.close()


AGENT_CONFIG = """\
node: {{id: full-node}}
flush_interval: 200ms
clock: {{hold_unsynced: 0s}}
mqtt: {{broker: "mqtt://127.0.0.1:{port}"}}
sensors:
  - {{name: mains, type: s0, pin: 5, pulses_per_kwh: 10000, interval: 100ms, sim: {{power: 7200}}}}
  - {{name: air, type: bme680, address: 0x77, interval: 100ms}}
"""


def _energies(store: BatchStore) -> list[float]:
    rows = sorted((r.seq, r.payload) for r in store.oldest(1_000_000) if r.stream == "mains")
    out: list[float] = []
    for _, p in rows:
        out += next(c for c in wire.decode(p).channels if c.name == "energy").values()
    return out


@pytest.mark.parametrize("full", ["blocks", "blocks and inodes"])
def test_the_agent_restarted_while_full_samples_on_and_opens_the_queue_with_space(small_disk, tmp_path, full):
    """`edge-agent run` restarted on a full disk: it becomes ready and samples on, counting
    each cycle as unstored, moves nothing aside, and when space comes back stores in the
    same queue again (every batch still there), keeps the count among its losses, and seals
    on from an energy total that never goes back. With no block free the queue opens and
    each seal fails as a full disk; with no inode free either (no WAL can be made) it opens
    only once space is back (store_pending)."""
    state = small_disk / "state"
    cfg = tmp_path / "node.yaml"
    cfg.write_text(AGENT_CONFIG.format(port=free_port()))  # no broker: every batch stays
    cmd = agent_cmd("run", "--simulate", "--config", str(cfg), "--state-dir", str(state))
    first = tmp_path / "first.err"
    agent = subprocess.Popen(cmd, stderr=open(first, "wb"))
    try:
        wait_for_log(agent, first, lambda t: t.count("event=batch_sealed stream=mains") >= 5, timeout=60)
        assert stop_agent(agent, first) == 0, first.read_text()
    finally:
        kill_agent(agent, first)
    with BatchStore(str(state / "queue.sqlite3")) as store:
        before = {(r.stream, r.seq): r.payload for r in store.oldest(1_000_000)}
        energy_before = _energies(store)
    filler = small_disk / "filler"
    fill(filler)
    inodes = small_disk / "inodes"
    if full == "blocks and inodes":
        fill_inodes(inodes)  # no WAL can be made: the queue does not open
    opened = "event=store_opened" if full == "blocks and inodes" else "event=ready"
    second = tmp_path / "second.err"
    agent = subprocess.Popen(cmd, stderr=open(second, "wb"))
    try:
        text = wait_for_log(
            agent,
            second,
            lambda t: "event=ready" in t and t.count("event=batch_unstored stream=mains") >= 5,
            timeout=60,
        )
        assert ("event=store_unavailable" in text) == (full == "blocks and inodes"), text
        assert "the disk is full" in text or "database or disk is full" in text, text
        assert _corrupt(state) == [], text
        for f in inodes.iterdir() if inodes.exists() else ():
            f.unlink()
        filler.unlink()  # space comes back: the same queue stores again within a retry or two
        freed = len(second.read_text())
        text = wait_for_log(
            agent,
            second,
            lambda t: opened in t[freed:] if opened == "event=store_opened" else True,
            timeout=60,
        )
        text = wait_for_log(
            agent,
            second,
            lambda t: t[freed:].count("event=batch_sealed stream=mains") >= 3,
            timeout=60,
        )
        assert stop_agent(agent, second) == 0, second.read_text()
    finally:
        text = kill_agent(agent, second)
    assert "Traceback" not in text, text
    unstored = text.count("event=batch_unstored stream=mains")
    assert _corrupt(state) == []
    with BatchStore(str(state / "queue.sqlite3")) as store:
        after = {(r.stream, r.seq): r.payload for r in store.oldest(1_000_000)}
        assert before.items() <= after.items(), "a batch stored before the restart was lost"
        assert len(after) > len(before)
        seqs = sorted(seq for stream, seq in after if stream == "mains")
        assert seqs == list(range(len(seqs))), "a cycle that was not stored took a number"
        # every cycle counted while closed, and those after it opened (none: space is back)
        assert store.losses()["mains"]["unstored"] >= unstored > 0
        energy = _energies(store)
        assert energy[: len(energy_before)] == energy_before
        assert energy == sorted(energy), "the energy total went back after the queue opened"
        assert energy[-1] > energy_before[-1]
