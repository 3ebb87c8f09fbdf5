"""A WAL lost after an unclean stop is reported: the agent's store marks itself open in the
main file at start and clears the mark at a clean stop, so a mark found with no WAL beside
it means the WAL of a crashed run is gone (76 batches went that way once, with no word)."""

from __future__ import annotations

import os
import shutil

from edge_agent.node.store import BatchStore


def _seal(store: BatchStore, n: int) -> None:
    for i in range(n):
        store.seal("air", lambda seq, i=i: b"EA-batch-%d" % i, 0.0)


def _crash(q: str, tmp_path) -> None:
    """A run killed with batches in its WAL: the files as a kill leaves them."""
    s = BatchStore(q, recover=True)
    _seal(s, 5)
    crashed = tmp_path / "crashed"
    crashed.mkdir()
    for suffix in ("", "-wal"):  # (no -shm: the WAL's index is in memory, store_vfs)
        shutil.copy(q + suffix, str(crashed / "q") + suffix)
    s._db.close()  # no clean stop: the marker stays
    for suffix in ("", "-wal"):
        os.replace(str(crashed / "q") + suffix, q + suffix)


def test_a_clean_stop_and_a_crash_with_its_wal_report_nothing(tmp_path):
    q = str(tmp_path / "queue.sqlite3")
    s = BatchStore(q, recover=True)
    _seal(s, 3)
    s.close()
    s = BatchStore(q, recover=True)
    assert s.wal_loss is None and s.depth()[0] == 3
    s.close()
    _crash(q, tmp_path)
    s = BatchStore(q, recover=True)  # the WAL is there: SQLite replays it, nothing lost
    assert s.wal_loss is None and s.depth()[0] == 8
    s.close()


def test_a_wal_deleted_after_a_crash_is_reported_with_the_lost_runs_epoch(tmp_path, caplog):
    q = str(tmp_path / "queue.sqlite3")
    s = BatchStore(q, recover=True)
    _seal(s, 3)
    s.close()
    _crash(q, tmp_path)
    os.unlink(q + "-wal")
    s = BatchStore(q, recover=True)
    try:
        assert s.wal_loss is not None and len(s.wal_loss.run_epoch) == 8
        assert s.depth()[0] == 3  # the 5 in the lost WAL are gone: said, not hidden
        assert "event=store_wal_lost" in caplog.text and s.wal_loss.run_epoch in caplog.text
        _seal(s, 1)
    finally:
        s.close()
    s = BatchStore(q, recover=True)  # said once: the next clean start reports nothing
    assert s.wal_loss is None
    s.close()


def test_only_the_agents_own_opening_marks_the_queue(tmp_path):
    q = str(tmp_path / "queue.sqlite3")
    agent = BatchStore(q, recover=True)
    uplink = BatchStore(q)  # another connection of the same run
    uplink.close()
    assert agent._db.execute("SELECT count(*) FROM open_marker").fetchone()[0] == 1
    agent.close()
    tool = BatchStore(q)
    assert tool._db.execute("SELECT count(*) FROM open_marker").fetchone()[0] == 0
    tool.close()
