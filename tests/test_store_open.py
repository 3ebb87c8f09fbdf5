"""Opening the queue: whatever is in its place, the agent starts. A damaged file of any
kind (whatever exception SQLite's read of it raises) and a directory are moved aside; a
symbolic link is refused with a clear error; nothing healthy is ever moved aside."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys

import pytest

from edge_agent.errors import DiskFullError, StoreError
from edge_agent.node import store_file
from edge_agent.node.store import BatchStore


def _seal(store: BatchStore, n: int = 3) -> None:
    for i in range(n):
        store.seal("air", lambda seq, i=i: b"payload-%d" % i, 0.0)


def test_a_directory_in_the_queues_place_is_moved_aside(tmp_path):
    q = tmp_path / "queue.db"
    q.mkdir()
    (q / "something").write_text("x")
    s = BatchStore(str(q), recover=True)
    _seal(s)
    assert s.recovery is not None and "not a regular file" in s.recovery.error
    assert os.path.isdir(s.recovery.moved_to) and len(s.oldest(10)) == 3
    s.close()


def test_a_symlink_in_the_queues_place_is_refused_saying_where_it_points(tmp_path):
    target = tmp_path / "elsewhere.db"
    (tmp_path / "queue.db").symlink_to(target)
    with pytest.raises(StoreError, match=r"symbolic link \(to .*elsewhere.db\)"):
        BatchStore(str(tmp_path / "queue.db"), recover=True)
    assert not target.exists()


@pytest.mark.parametrize(
    "error",
    [
        UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"),  # text SQLite read from damage
        sqlite3.DatabaseError("file is not a database"),
        ValueError("anything else"),
    ],
    ids=["unicode", "database", "other"],
)
def test_any_failure_to_open_or_check_takes_the_recovery_path(tmp_path, monkeypatch, error):
    q = str(tmp_path / "queue.db")
    s = BatchStore(q)
    _seal(s)
    s.close()
    real = store_file.open_checked
    calls = []

    def failing_once(path, *, check=True):
        calls.append(path)
        if len(calls) == 1:
            raise error
        return real(path, check=check)

    monkeypatch.setattr(store_file, "open_checked", failing_once)
    s = BatchStore(q, recover=True)
    assert s.recovery is not None and s.background is not None and s.background.finish_salvage(60)
    assert s.recovery.complete and s.recovery.salvaged == 3 and len(s.oldest(10)) == 3
    s.close()


def test_a_full_disk_at_open_is_no_damage(tmp_path, monkeypatch):
    q = str(tmp_path / "queue.db")
    s = BatchStore(q)
    _seal(s)
    s.close()

    def full(path, *, check=True):
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(store_file, "open_checked", full)
    with pytest.raises(DiskFullError, match="kept as it is"):
        BatchStore(q, recover=True)
    assert sorted(p.name for p in tmp_path.iterdir() if ".corrupt-" in p.name) == []
    monkeypatch.undo()
    s = BatchStore(q, recover=True)
    assert s.recovery is None and len(s.oldest(10)) == 3
    s.close()


def test_a_whole_store_opens_without_writing(tmp_path):
    """So a restart on a full disk finds its queue as it was (root writes anywhere, so the
    file's bytes are compared rather than its permissions)."""
    q = tmp_path / "queue.db"
    s = BatchStore(str(q))
    _seal(s)
    s.close()
    before = q.read_bytes()
    db = store_file.open_checked(str(q), check=True)
    assert db.execute("SELECT count(*) FROM batches").fetchone()[0] == 3
    assert not (tmp_path / "queue.db-wal").exists() or (tmp_path / "queue.db-wal").stat().st_size == 0
    db.close()
    assert q.read_bytes() == before


def test_the_queue_has_no_shm_file_and_its_connections_share_one_index(tmp_path, caplog):
    """store_vfs: the WAL's index is in the agent's heap, not in a -shm file on the card;
    every connection of the process (the sampler's, the uplink's, the full check's) sees
    the others' commits."""
    q = str(tmp_path / "queue.sqlite3")
    with BatchStore(q, recover=True) as sampler, BatchStore(q) as uplink:
        assert sampler.background is not None
        sampler.background.start()
        for i in range(50):
            sampler.seal(f"s{i % 3}", lambda seq: b"x" * 40, float(i))
            assert uplink.depth()[0] == i + 1
        assert [b.seq for b in uplink.oldest(3)] == [0, 0, 0]
        uplink.delete_many([b.id for b in uplink.oldest(10)])
        assert sampler.depth()[0] == 40
        assert sampler.background.check.done.wait(60) and sampler.background.check.damage is None
        assert "store_check_skipped" not in caplog.text  # the check read the file
        assert not os.path.exists(q + "-shm") and os.path.exists(q + "-wal")


def test_a_queue_another_process_holds_is_refused_and_kept(tmp_path, monkeypatch):
    """A second agent on the same state directory: refused with the reason, never taken for
    damage (nothing moved aside), and the first one's queue untouched."""
    q = str(tmp_path / "queue.sqlite3")
    with BatchStore(q) as s:
        for i in range(10):
            s.seal("air", lambda seq: b"y" * 30, float(i))
    code = (
        "import sys, time\n"
        "from edge_agent.node.store import BatchStore\n"
        f"s = BatchStore({q!r}, recover=True)\n"
        f"uplink = BatchStore({q!r})\n"  # the agent's other connections, one closed again:
        f"BatchStore({q!r}).close()\n"  # none may end the process's lock on the file
        "s.seal('air', lambda seq: b'z', 1.0)\n"
        "print('held', flush=True)\n"
        "sys.stdin.read()\n"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        monkeypatch.setattr(store_file, "BUSY_TIMEOUT", 0.2)
        with pytest.raises(StoreError, match="another process has the queue open"):
            BatchStore(q, recover=True)
        assert sorted(os.listdir(tmp_path)) == ["queue.sqlite3", "queue.sqlite3-wal"]
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=30)
    assert holder.returncode == 0
    with BatchStore(q, recover=True) as s:
        assert s.recovery is None and s.depth()[0] == 11
