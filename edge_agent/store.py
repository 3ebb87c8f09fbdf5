"""The durable on-disk queue of sealed batches: SQLite in WAL mode, synchronous=FULL.

One transaction per sealed batch takes the stream's next sequence number, lets
the caller encode the payload with it, and commits both, so a sequence number
is never reused, across restarts and power cuts alike. The uplink reads the
oldest rows and deletes a row only once the broker acknowledged it.

Each thread opens its own BatchStore on the same file (SQLite connections are
not shared between threads); WAL lets the uplink read while the sampler writes.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Collection
from dataclasses import dataclass

from edge_agent.errors import StoreError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS batches (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    stream   TEXT    NOT NULL,
    seq      INTEGER NOT NULL,
    sealed   REAL    NOT NULL,          -- Unix time of sealing (s)
    payload  BLOB    NOT NULL,
    clock_unsynced INTEGER NOT NULL DEFAULT 0,  -- stamped while the wall clock was not synchronised
    boot_id  TEXT,                      -- the boot whose monotonic clock the samples were taken on
    wall_offset_ms INTEGER,             -- wall - monotonic (ms) used to stamp them
    UNIQUE (stream, seq)
);
CREATE TABLE IF NOT EXISTS stream_seq (
    stream   TEXT PRIMARY KEY,
    next_seq INTEGER NOT NULL
);
"""


@dataclass(frozen=True)
class StoredBatch:
    id: int
    stream: str
    seq: int
    payload: bytes


def ensure_private_dir(path: str) -> None:
    """Create a directory (and parents) readable by the agent's user only."""
    os.makedirs(path, mode=0o700, exist_ok=True)


class BatchStore:
    """One connection to the queue file; use one per thread."""

    def __init__(self, path: str) -> None:
        self.path = path
        parent = os.path.dirname(os.path.abspath(path))
        try:
            ensure_private_dir(parent)
            # Create the file ourselves so it is 0600 whatever the umask.
            os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
            self._db = sqlite3.connect(path, isolation_level=None, timeout=10.0,
                                       check_same_thread=True)
            mode = self._db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise StoreError(f"{path}: SQLite refused WAL mode (got {mode})")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{path}: cannot open the queue: {exc}") from exc
        except OSError as exc:
            raise StoreError(f"{path}: cannot open the queue: {exc.strerror or exc}") from exc

    def seal(self, stream: str, encode: Callable[[int], bytes], sealed_at: float, *,
             clock_unsynced: bool = False, boot_id: str | None = None,
             wall_offset_ms: int | None = None) -> tuple[int, int]:
        """Commit one batch in one transaction; ``encode(seq)`` gives its payload.

        Returns (sequence number, payload size). Nothing is stored if encode raises.
        """
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            row = db.execute("SELECT next_seq FROM stream_seq WHERE stream = ?", (stream,)).fetchone()
            seq = row[0] if row else 0
            payload = encode(seq)
            db.execute("INSERT INTO batches (stream, seq, sealed, payload, clock_unsynced, boot_id, "
                       "wall_offset_ms) VALUES (?, ?, ?, ?, ?, ?, ?)",
                       (stream, seq, sealed_at, payload, int(clock_unsynced), boot_id, wall_offset_ms))
            db.execute("INSERT INTO stream_seq (stream, next_seq) VALUES (?, ?) "
                       "ON CONFLICT (stream) DO UPDATE SET next_seq = excluded.next_seq",
                       (stream, seq + 1))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return seq, len(payload)

    def oldest(self, limit: int, skip: Collection[int] = (), *, hold_unsynced: bool = False) -> list[StoredBatch]:
        """Up to ``limit`` batches, oldest first, leaving out the row ids in ``skip``
        and, with ``hold_unsynced``, batches stamped before the clock was synchronised."""
        where = "WHERE clock_unsynced = 0 " if hold_unsynced else ""
        rows = self._db.execute(
            f"SELECT id, stream, seq, payload FROM batches {where}ORDER BY id LIMIT ?",
            (limit + len(skip),)).fetchall()
        return [StoredBatch(*r) for r in rows if r[0] not in skip][:limit]

    def restamp_unsynced(self, boot_id: str, wall_offset_ms: int) -> int:
        """Re-time this boot's batches stamped before the clock was synchronised.

        Their samples were taken on this boot's monotonic clock, so shifting them
        by the change of (wall - monotonic) gives their true times. Batches of an
        earlier boot cannot be re-timed and keep their clock_unsynced flag.
        Returns how many batches were restamped (in one transaction).
        """
        from edge_agent import wire  # the store otherwise treats payloads as opaque bytes

        db = self._db
        rows = db.execute("SELECT id, payload, wall_offset_ms FROM batches "
                          "WHERE clock_unsynced = 1 AND boot_id = ?", (boot_id,)).fetchall()
        if not rows:
            return 0
        db.execute("BEGIN IMMEDIATE")
        try:
            for row_id, payload, old_offset in rows:
                batch = wire.restamp(wire.decode(payload), wall_offset_ms - (old_offset or 0))
                db.execute("UPDATE batches SET payload = ?, clock_unsynced = 0, wall_offset_ms = ? "
                           "WHERE id = ?", (wire.encode(batch), wall_offset_ms, row_id))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return len(rows)

    def delete(self, row_id: int) -> bool:
        """Remove an acknowledged batch; False if it was already gone."""
        cur = self._db.execute("DELETE FROM batches WHERE id = ?", (row_id,))
        return cur.rowcount > 0

    def depth(self) -> tuple[int, int]:
        """(number of batches, payload bytes) waiting to be sent."""
        n, size = self._db.execute("SELECT count(*), coalesce(sum(length(payload)), 0) FROM batches").fetchone()
        return n, size

    def oldest_sealed(self) -> float | None:
        """Unix time the oldest waiting batch was sealed, or None when the queue is empty."""
        row = self._db.execute("SELECT sealed FROM batches ORDER BY id LIMIT 1").fetchone()
        return row[0] if row else None

    def next_seq(self, stream: str) -> int:
        row = self._db.execute("SELECT next_seq FROM stream_seq WHERE stream = ?", (stream,)).fetchone()
        return row[0] if row else 0

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "BatchStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
