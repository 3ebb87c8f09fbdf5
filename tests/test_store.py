"""The SQLite queue: WAL + FULL sync, one transaction per seal, sequence numbers that survive restarts."""

from __future__ import annotations

import os
import stat

import pytest

from edge_agent.node.store import BatchStore


def test_pragmas_and_file_mode(tmp_path):
    path = str(tmp_path / "state" / "q.sqlite3")
    with BatchStore(path) as s:
        assert s._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert s._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(tmp_path / "state").st_mode) == 0o700


def test_sequence_numbers_survive_reopen(tmp_path):
    path = str(tmp_path / "q.sqlite3")
    with BatchStore(path) as s:
        assert [s.seal("air", lambda q: b"a%d" % q, 0.0)[0] for _ in range(3)] == [0, 1, 2]
        assert s.seal("power", lambda q: b"p", 0.0)[0] == 0
        for b in s.oldest(10):
            s.delete(b.id)
        assert s.depth() == (0, 0)
    with BatchStore(path) as s:
        assert s.seal("air", lambda q: b"a%d" % q, 0.0) == (3, 2)
        assert s.next_seq("power") == 1


def test_failed_encode_stores_nothing_and_keeps_the_sequence(tmp_path):
    with BatchStore(str(tmp_path / "q.sqlite3")) as s:
        s.seal("air", lambda q: b"x", 0.0)

        def boom(seq):
            raise ValueError("encoder failed")

        with pytest.raises(ValueError):
            s.seal("air", boom, 0.0)
        assert s.depth() == (1, 1)
        assert s.seal("air", lambda q: b"y", 0.0)[0] == 1


def test_oldest_first_skipping_in_flight(tmp_path):
    with BatchStore(str(tmp_path / "q.sqlite3")) as s:
        for i in range(5):
            s.seal("air", lambda q: bytes([q]), float(i))
        rows = s.oldest(3)
        assert [r.seq for r in rows] == [0, 1, 2]
        assert [r.seq for r in s.oldest(3, skip={rows[0].id, rows[1].id})] == [2, 3, 4]
        assert s.delete(rows[0].id) and not s.delete(rows[0].id)
        assert s.depth() == (4, 4)


def test_two_connections_see_each_other(tmp_path):
    path = str(tmp_path / "q.sqlite3")
    with BatchStore(path) as writer, BatchStore(path) as reader:
        writer.seal("air", lambda q: b"abc", 0.0)
        (row,) = reader.oldest(5)
        assert row.payload == b"abc"
        reader.delete(row.id)
        assert writer.depth() == (0, 0)


def test_unopenable_path_is_a_store_error(tmp_path):
    from edge_agent.errors import StoreError
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreError, match="cannot open the queue"):
        BatchStore(str(blocker / "q.sqlite3"))
