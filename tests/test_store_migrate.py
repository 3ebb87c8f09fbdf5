"""A queue file of version 2's layout (its UNIQUE (stream, seq) index) loses the index at
the agent's opening when that is cheap, keeping every batch, id and counter; when it is
not (a long queue, a salvage still copying, a full disk, a kill half-way), the file stays
as it was and works."""

from __future__ import annotations

import logging
import os
import sqlite3
import subprocess
import sys
import textwrap

import pytest
from test_store_salvage import legacy_queue

from edge_agent.node import store_file, store_migrate
from edge_agent.node.store import BatchStore

COLUMNS = "id, stream, seq, sealed, payload, clock_unsynced, boot_id, wall_offset_ms, sealed_mono"


def legacy(path: str, n: int = 40, deleted_top: int = 5) -> list[tuple]:
    """A version 2 queue of ``n`` batches of three streams, the newest ``deleted_top``
    deleted (so the highest id ever given is above the highest left); its rows."""
    legacy_queue(path)
    with BatchStore(path) as s:  # the uplink's kind of opening: no check, no rebuild
        for i in range(n):
            s.seal(
                f"s{i % 3}", lambda seq, i=i: bytes([i]) * 30, 1.7e9 + i, boot_id="b", sealed_mono=float(i)
            )
        top = s.newest_id()
        s.delete_many(range(top - deleted_top + 1, top + 1))
    db = sqlite3.connect(path)
    assert store_migrate.seq_index(db) == store_migrate.LEGACY_INDEX
    rows = db.execute(f"SELECT {COLUMNS} FROM batches ORDER BY id").fetchall()
    db.close()
    return rows


def test_a_short_legacy_queue_loses_its_index_and_keeps_everything(tmp_path, caplog):
    q = str(tmp_path / "queue.sqlite3")
    rows = legacy(q)
    caplog.set_level(logging.INFO, "edge_agent.store")
    with BatchStore(q, recover=True) as s:
        db = s._db
        assert store_migrate.seq_index(db) is None
        assert db.execute("PRAGMA user_version").fetchone()[0] == store_file.SCHEMA_VERSION == 3
        assert db.execute(f"SELECT {COLUMNS} FROM batches ORDER BY id").fetchall() == rows
        assert s.depth() == (35, 35 * 30)  # the triggers made again, the totals kept
        assert db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'batches'").fetchone()[0] == 40
        seq, size = s.seal("s0", lambda seq: b"new", 1.8e9)
        assert (seq, size) == (14, 3) and s.newest_id() == 41  # never an id given before
        assert s.depth() == (36, 35 * 30 + 3)
        s.delete_many([1])
        assert s.depth() == (35, 34 * 30 + 3)
        names = {r[0] for r in db.execute("SELECT name FROM sqlite_master")}
        assert {"batches_ins", "batches_del", "batches_upd", "batches_unsynced"} <= names
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert "event=store_layout_upgraded batches=35" in caplog.text
    with BatchStore(q, recover=True) as s:  # once: the next opening writes nothing for it
        assert "batches_v3" not in {r[0] for r in s._db.execute("SELECT name FROM sqlite_master")}


def test_a_long_legacy_queue_keeps_its_index_until_an_opening_finds_it_short(tmp_path, monkeypatch, caplog):
    q = str(tmp_path / "queue.sqlite3")
    legacy(q, n=40, deleted_top=0)
    monkeypatch.setattr(store_migrate, "REBUILD_MAX", 30)
    caplog.set_level(logging.INFO, "edge_agent.store")
    with BatchStore(q, recover=True) as s:
        assert store_migrate.seq_index(s._db) == store_migrate.LEGACY_INDEX
        assert s.seal("s1", lambda seq: b"x", 1.8e9)[0] == 13  # works as it is
        s.delete_many([r.id for r in s.oldest(20)])
    assert "event=store_layout_kept batches=40" in caplog.text
    with BatchStore(q, recover=True) as s:
        assert store_migrate.seq_index(s._db) is None and s.depth()[0] == 21


class _Failing:
    """A connection whose statements fail from the first that contains ``at`` (as a full
    disk would), or that kills its process there (as a power cut would)."""

    def __init__(self, db: sqlite3.Connection, at: str, kill: bool = False) -> None:
        self.db, self.at, self.kill = db, at, kill

    def execute(self, sql: str, *args: object) -> sqlite3.Cursor:
        if self.at in sql:
            if self.kill:
                os.kill(os.getpid(), 9)
            raise sqlite3.OperationalError("database or disk is full")
        return self.db.execute(sql, *args)

    def __getattr__(self, name: str) -> object:
        return getattr(self.db, name)


@pytest.mark.parametrize("at", ["INSERT INTO batches_v3", "DROP TABLE", "ALTER TABLE", "COMMIT"])
def test_a_full_disk_half_way_leaves_the_file_as_it_was(tmp_path, monkeypatch, at):
    q = str(tmp_path / "queue.sqlite3")
    rows = legacy(q)
    real = store_migrate.drop_legacy_index
    monkeypatch.setattr(store_migrate, "drop_legacy_index", lambda db, *a: real(_Failing(db, at), *a))  # type: ignore[arg-type]
    with BatchStore(q, recover=True) as s:
        assert s.recovery is None  # a full disk is no damage
        assert store_migrate.seq_index(s._db) == store_migrate.LEGACY_INDEX
        assert s._db.execute(f"SELECT {COLUMNS} FROM batches ORDER BY id").fetchall() == rows
        assert s.seal("s0", lambda seq: b"new", 1.8e9)[0] == 14
    monkeypatch.setattr(store_migrate, "drop_legacy_index", real)
    with BatchStore(q, recover=True) as s:
        assert store_migrate.seq_index(s._db) is None and s.depth()[0] == 36


@pytest.mark.parametrize("at", ["DROP TABLE", "ALTER TABLE", "COMMIT"])
def test_a_kill_half_way_leaves_the_file_as_it_was(tmp_path, at):
    q = str(tmp_path / "queue.sqlite3")
    rows = legacy(q)
    code = textwrap.dedent(
        f"""
        from edge_agent.node import store_migrate
        from edge_agent.node.store import BatchStore
        from test_store_migrate import _Failing
        real = store_migrate.drop_legacy_index
        store_migrate.drop_legacy_index = lambda db, *a: real(_Failing(db, {at!r}, kill=True), *a)
        BatchStore({q!r}, recover=True)
        """
    )
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, timeout=120)
    assert proc.returncode == -9, proc.stderr
    db = sqlite3.connect(q)
    assert store_migrate.seq_index(db) == store_migrate.LEGACY_INDEX
    assert db.execute(f"SELECT {COLUMNS} FROM batches ORDER BY id").fetchall() == rows
    db.close()
    with BatchStore(q, recover=True) as s:
        assert s.recovery is None and store_migrate.seq_index(s._db) is None
        assert s._db.execute(f"SELECT {COLUMNS} FROM batches ORDER BY id").fetchall() == rows


def test_a_new_queue_has_no_seq_index_and_a_seal_writes_no_page_of_one(tmp_path):
    """What version 3 is for: six streams sealed in one cycle write the WAL frames of the
    batches' last leaves and the counters, not a leaf of an index per stream."""
    frames = {}
    for kind in ("new", "legacy"):
        q = str(tmp_path / f"{kind}.sqlite3")
        if kind == "legacy":
            legacy_queue(q)
        with BatchStore(q) as s:
            db = s._db
            assert (store_migrate.seq_index(db) is None) == (kind == "new")
            for c in range(60):  # a queue long enough that each stream's index entries part
                s.seal_many([(f"s{i}", lambda seq: os.urandom(85)) for i in range(6)], 1.7e9 + c)
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            db.execute("PRAGMA wal_autocheckpoint=0")
            for c in range(30):
                s.seal_many([(f"s{i}", lambda seq: os.urandom(85)) for i in range(6)], 1.8e9 + c)
            size = os.path.getsize(q + "-wal")
            frames[kind] = (size - 32) / (db.execute("PRAGMA page_size").fetchone()[0] + 24) / 30
    assert frames["new"] < frames["legacy"] - 3  # 6 streams: a leaf of the index each, nearly


def test_a_legacy_file_without_the_queues_totals_is_kept_not_taken_for_damage(tmp_path):
    q = str(tmp_path / "queue.sqlite3")
    rows = legacy(q)
    db = sqlite3.connect(q)
    db.execute("DROP TABLE queue_stats")
    db.commit()
    db.close()
    with BatchStore(q, recover=True) as s:
        assert s.recovery is None
        assert s._db.execute(f"SELECT {COLUMNS} FROM batches ORDER BY id").fetchall() == rows
