"""A full disk on a real, small file system (a tmpfs the test mounts: CI runs as root):
the queue is kept through the fill, a restart while full, and the space coming back.
A full disk is never taken for damage: nothing is moved aside as corrupt."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from helpers import missing

from edge_agent.errors import DiskFullError
from edge_agent.node.store import BatchStore


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MiB tmpfs mounted at tmp_path/disk, unmounted afterwards."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if os.geteuid() != 0:
        missing("mounting a tmpfs needs root (CI runs as root)")
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", str(mnt)], capture_output=True
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
    # restart while full: SQLite cannot even make the WAL's index ("disk I/O error"), which
    # is not damage: the queue stays as it is, and the error says the disk is full
    with pytest.raises(DiskFullError, match="the disk is full; the queue is kept as it is"):
        BatchStore(q, recover=True)
    assert _corrupt(state) == []
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
