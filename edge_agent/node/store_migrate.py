"""The (stream, seq) constraint of older queue files, dropped where that is cheap.

Up to version 2 the queue's ``batches`` table carried ``UNIQUE (stream, seq)``: an index
that every seal wrote one leaf of per stream, since each stream's numbers sit in their
own part of it (9 of the 19 pages a cycle of six streams wrote to the WAL, half of the
bytes the card paid: bench/bench_writes.py). Version 3 has none: a seal takes its number
from ``stream_seq`` under the write lock, so no two batches of a stream get the same one,
and the dedupe key carries the epoch besides. (A salvage has a unique index of its own
while it copies: store_salvage.SEQ_INDEX.)

SQLite drops a table's constraint only with a copy of the table, so a file of an older
layout is copied at the agent's opening when it holds at most ``REBUILD_MAX`` batches (a
node with a working link: nearly every opening), in one transaction, so a kill leaves it
as it was; a longer queue keeps its index, which costs writes and nothing else, until an
opening finds it short. A full disk, or a salvage not yet finished, leaves it as well.
"""

from __future__ import annotations

import logging
import sqlite3

log = logging.getLogger("edge_agent.store")

REBUILD_MAX = 20_000  # batches copied at most (about 4 MB at a node's usual sizes)
LEGACY_INDEX = "sqlite_autoindex_batches_1"  # UNIQUE (stream, seq) of version 2 and before


def _str(value: object) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def seq_index(db: sqlite3.Connection) -> str | None:
    """The name of an index of ``batches`` on (stream, seq) (a whole one, not partial), or
    None. Raises what reading the schema raises (a damaged file: sqlite3.DatabaseError)."""
    for _, name, _unique, _origin, partial in db.execute("PRAGMA index_list(batches)").fetchall():
        if partial:
            continue
        columns = [_str(row[2]) for row in db.execute("SELECT * FROM pragma_index_info(?)", (name,))]
        if columns[:2] == ["stream", "seq"]:
            return _str(name)
    return None


def drop_legacy_index(db: sqlite3.Connection, create_batches: str, columns: str) -> bool:
    """Copy ``batches`` into a table made by ``create_batches`` (its CREATE TABLE) when it
    has the legacy index and is short enough; True when it did. The triggers and indexes
    that went with the old table are made again by the schema, which the caller runs next
    (a kill between the two leaves a file the next opening completes the same way)."""
    if seq_index(db) != LEGACY_INDEX:
        return False
    try:
        (count,) = db.execute("SELECT batches FROM queue_stats WHERE id = 0").fetchone() or (0,)
    except sqlite3.OperationalError:  # a file older than the queue's totals: the schema first
        return False
    pending = db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'salvage'").fetchone()
    if pending and db.execute("SELECT 1 FROM salvage LIMIT 1").fetchone():
        return False  # the salvage's collisions are found through that index
    if count > REBUILD_MAX:
        log.info(
            "event=store_layout_kept batches=%d: the queue keeps its (stream, seq) index until "
            "an opening finds at most %d batches",
            count,
            REBUILD_MAX,
        )
        return False
    top = db.execute("SELECT max(seq) FROM sqlite_sequence WHERE name = 'batches'").fetchone()[0] or 0
    new = create_batches.replace("IF NOT EXISTS batches (", "batches_v3 (", 1)
    assert new != create_batches, "the CREATE TABLE of batches"
    db.execute("BEGIN IMMEDIATE")
    try:
        db.execute(new)
        db.execute(f"INSERT INTO batches_v3 (id, {columns}) SELECT id, {columns} FROM batches")
        db.execute("DROP TABLE batches")  # and its triggers and indexes; no trigger fires
        db.execute("ALTER TABLE batches_v3 RENAME TO batches")
        db.execute("DELETE FROM sqlite_sequence WHERE name = 'batches'")
        high = db.execute("SELECT coalesce(max(id), 0) FROM batches").fetchone()[0]
        db.execute("INSERT INTO sqlite_sequence (name, seq) VALUES ('batches', ?)", (max(top, high),))
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    log.warning("event=store_layout_upgraded batches=%d: the (stream, seq) index is gone", count)
    return True
