"""The durable on-disk queue of sealed batches: SQLite in WAL mode, synchronous=FULL.

One transaction per sealed batch takes the stream's next sequence number, lets
the caller encode the payload with it, and commits both, so a sequence number
is never reused, across restarts and power cuts alike. The uplink reads the
oldest rows and deletes a row only once the broker acknowledged it.

Bounds (docs/operations.md says what they promise): a byte cap on the payloads
waiting, with a policy when full (``drop_oldest``, the default, or
``refuse_newest``), and a time to live. Every batch dropped, refused or expired
is counted per stream in the ``losses`` table, so the count survives restarts
and reaches the health message; none goes silently.

A store file that SQLite cannot open or that fails its integrity check never
blocks start-up: it is moved aside with a timestamp (never deleted), what SQLite
can still read from it is copied into a fresh store, and the outcome is kept
in ``recovery`` for the log and the health message.

Each thread opens its own BatchStore on the same file (SQLite connections are
not shared between threads); WAL lets the uplink read while the sampler writes.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import NamedTuple

from edge_agent.errors import StoreError

log = logging.getLogger("edge_agent.store")

SCHEMA_VERSION = 1
DRIVER_STATE = "__driver__"  # chain_state rows with this channel hold a driver's own state
POLICIES = ("drop_oldest", "refuse_newest")

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
    sealed_mono REAL,                   -- monotonic time of sealing (s), within boot_id
    UNIQUE (stream, seq)
);
CREATE TABLE IF NOT EXISTS stream_seq (
    stream   TEXT PRIMARY KEY,
    next_seq INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS losses (
    stream   TEXT NOT NULL,
    reason   TEXT NOT NULL,             -- dropped (cap), refused (cap), expired (ttl), unstored (disk)
    count    INTEGER NOT NULL,
    PRIMARY KEY (stream, reason)
);
CREATE TABLE IF NOT EXISTS chain_state (
    stream   TEXT NOT NULL,
    channel  TEXT NOT NULL,
    spec     TEXT NOT NULL,             -- JSON of the chain spec the state belongs to
    state    TEXT NOT NULL,             -- JSON of Chain.get_state()
    boot_id  TEXT,
    mono     REAL NOT NULL,             -- monotonic time saved (s), within boot_id
    PRIMARY KEY (stream, channel)
);
-- Depth kept by triggers, so reading it costs O(1) however long the queue.
CREATE TABLE IF NOT EXISTS queue_stats (
    id       INTEGER PRIMARY KEY CHECK (id = 0),
    batches  INTEGER NOT NULL,
    bytes    INTEGER NOT NULL
);
INSERT OR IGNORE INTO queue_stats (id, batches, bytes) VALUES (0, 0, 0);
CREATE TRIGGER IF NOT EXISTS batches_ins AFTER INSERT ON batches BEGIN
    UPDATE queue_stats SET batches = batches + 1, bytes = bytes + length(NEW.payload) WHERE id = 0;
END;
CREATE TRIGGER IF NOT EXISTS batches_del AFTER DELETE ON batches BEGIN
    UPDATE queue_stats SET batches = batches - 1, bytes = bytes - length(OLD.payload) WHERE id = 0;
END;
CREATE TRIGGER IF NOT EXISTS batches_upd AFTER UPDATE OF payload ON batches BEGIN
    UPDATE queue_stats SET bytes = bytes - length(OLD.payload) + length(NEW.payload) WHERE id = 0;
END;
"""


class StoredBatch(NamedTuple):
    """A waiting batch as the uplink reads it (a named tuple: the drain builds thousands a
    second, and a frozen dataclass costs three times as much to make)."""

    id: int
    stream: str
    seq: int
    payload: bytes


@dataclass
class Recovery:
    """What happened to a store file that could not be used."""

    moved_to: str
    error: str
    salvaged: int = 0
    unreadable: int = 0
    at: float = field(default_factory=time.time)


def ensure_private_dir(path: str) -> None:
    """Create a directory (and parents) readable by the agent's user only."""
    os.makedirs(path, mode=0o700, exist_ok=True)


def is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and (
        getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or "full" in str(exc))


def _connect(path: str) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None, timeout=10.0, check_same_thread=True)
    # Small pages: every commit writes whole pages to the WAL, and a batch is a few hundred
    # bytes, so 1 KiB pages write a quarter of what the 4 KiB default would to the SD card.
    # (Takes effect when the file is created; an existing file keeps its page size.)
    db.execute("PRAGMA page_size=1024")
    mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    if mode.lower() != "wal":
        db.close()
        raise sqlite3.DatabaseError(f"SQLite refused WAL mode (got {mode})")
    db.execute("PRAGMA synchronous=FULL")
    return db


class BatchStore:
    """One connection to the queue file; use one per thread.

    ``max_size`` (bytes of payload waiting, None for no cap) and ``policy`` apply
    to ``seal``; ``recover=True`` (the sampler's store, opened first) moves a
    corrupt file aside instead of failing.
    """

    def __init__(self, path: str, *, max_size: int | None = None, policy: str = "drop_oldest",
                 recover: bool = False) -> None:
        if policy not in POLICIES:
            raise ValueError(f"store policy must be one of {POLICIES}, got {policy!r}")
        self.path = path
        self.max_size = max_size
        self.policy = policy
        self.recovery: Recovery | None = None
        self.commits = 0  # durable (fsync'ed, synchronous=FULL) transactions on this connection
        parent = os.path.dirname(os.path.abspath(path))
        try:
            ensure_private_dir(parent)
            # Create the file ourselves so it is 0600 whatever the umask.
            os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
        except OSError as exc:
            raise StoreError(f"{path}: cannot open the queue: {exc.strerror or exc}") from exc
        try:
            # The integrity check reads the whole file: only the opening that can recover
            # from a failure (the sampler's, first at start) pays for it.
            self._db = self._open_checked(path, check=recover)
        except sqlite3.DatabaseError as exc:
            if not recover:
                raise StoreError(f"{path}: cannot open the queue: {exc}") from exc
            self._db = self._recover(path, exc)

    @staticmethod
    def _open_checked(path: str, *, check: bool = True) -> sqlite3.Connection:
        db = _connect(path)
        try:
            result = db.execute("PRAGMA quick_check").fetchone()[0] if check else "ok"
            if result != "ok":
                raise sqlite3.DatabaseError(f"integrity check failed: {result}")
            db.executescript(_SCHEMA)
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except BaseException:
            db.close()
            raise
        return db

    def _recover(self, path: str, error: Exception) -> sqlite3.Connection:
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        aside = f"{path}.corrupt-{stamp}"
        n = 1
        while os.path.exists(aside):
            n += 1
            aside = f"{path}.corrupt-{stamp}-{n}"
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(path + suffix):
                os.replace(path + suffix, aside + suffix)
        log.error("event=store_corrupt path=%s error=%r moved_to=%s", path, str(error), aside)
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
        db = self._open_checked(path)
        self.recovery = Recovery(moved_to=aside, error=str(error))
        self._salvage(db, aside)
        log.error("event=store_recovered moved_to=%s salvaged_batches=%d unreadable=%d",
                  aside, self.recovery.salvaged, self.recovery.unreadable)
        return db

    def _salvage(self, db: sqlite3.Connection, aside: str) -> None:
        """Copy every batch and sequence counter SQLite can still read from the old file."""
        try:
            old = sqlite3.connect(f"file:{aside}?mode=ro", uri=True)
        except sqlite3.DatabaseError:
            return
        rec = self.recovery
        try:
            try:
                for stream, next_seq in old.execute("SELECT stream, next_seq FROM stream_seq"):
                    db.execute("INSERT OR REPLACE INTO stream_seq VALUES (?, ?)", (stream, next_seq))
            except sqlite3.DatabaseError:
                rec.unreadable += 1
            ids = self._readable_ids(old)
            for row_id in ids:
                try:
                    row = old.execute("SELECT stream, seq, sealed, payload, clock_unsynced, boot_id, "
                                      "wall_offset_ms, sealed_mono FROM batches WHERE id = ?",
                                      (row_id,)).fetchone()
                    db.execute("INSERT OR IGNORE INTO batches (stream, seq, sealed, payload, "
                               "clock_unsynced, boot_id, wall_offset_ms, sealed_mono) "
                               "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", row)
                    # never hand out a salvaged batch's number again
                    db.execute("INSERT INTO stream_seq (stream, next_seq) VALUES (?, ?) ON CONFLICT "
                               "(stream) DO UPDATE SET next_seq = max(next_seq, excluded.next_seq)",
                               (row[0], row[1] + 1))
                    rec.salvaged += 1
                except (sqlite3.DatabaseError, TypeError):
                    rec.unreadable += 1
        finally:
            old.close()

    @staticmethod
    def _readable_ids(old: sqlite3.Connection) -> list[int]:
        """Row ids of batches: a scan up to the first damaged page, then one lookup per id
        up to the highest id ever given (lookups descend the tree and step over bad leaves)."""
        ids: list[int] = []
        try:
            for (row_id,) in old.execute("SELECT id FROM batches ORDER BY id"):
                ids.append(row_id)
            return ids
        except sqlite3.DatabaseError:
            pass
        try:
            row = old.execute("SELECT seq FROM sqlite_sequence WHERE name = 'batches'").fetchone()
            top = row[0] if row else 0
        except sqlite3.DatabaseError:
            top = 0
        for row_id in range((ids[-1] if ids else 0) + 1, top + 1):
            try:
                if old.execute("SELECT 1 FROM batches WHERE id = ?", (row_id,)).fetchone():
                    ids.append(row_id)
            except sqlite3.DatabaseError:
                continue
        return ids

    # --- writing ------------------------------------------------------------------------------
    def _count_loss(self, stream: str, reason: str, n: int = 1) -> None:
        self._db.execute("INSERT INTO losses (stream, reason, count) VALUES (?, ?, ?) ON CONFLICT "
                         "(stream, reason) DO UPDATE SET count = count + excluded.count",
                         (stream, reason, n))

    def seal(self, stream: str, encode: Callable[[int], bytes], sealed_at: float, *,
             clock_unsynced: bool = False, boot_id: str | None = None,
             wall_offset_ms: int | None = None, sealed_mono: float | None = None) -> tuple[int, int]:
        """Commit one batch in one transaction; ``encode(seq)`` gives its payload.

        Returns (sequence number, payload size), or (sequence number, 0) when the
        cap and the ``refuse_newest`` policy turned it away (its number is used up
        so the backbone sees the gap, and the refusal is counted). Nothing is
        stored if encode raises. A full disk raises sqlite3.OperationalError.
        """
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            row = db.execute("SELECT next_seq FROM stream_seq WHERE stream = ?", (stream,)).fetchone()
            seq = row[0] if row else 0
            payload = encode(seq)
            db.execute("INSERT INTO stream_seq (stream, next_seq) VALUES (?, ?) "
                       "ON CONFLICT (stream) DO UPDATE SET next_seq = excluded.next_seq",
                       (stream, seq + 1))
            stored = self._make_room(stream, len(payload))
            if stored:
                db.execute("INSERT INTO batches (stream, seq, sealed, payload, clock_unsynced, boot_id, "
                           "wall_offset_ms, sealed_mono) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                           (stream, seq, sealed_at, payload, int(clock_unsynced), boot_id,
                            wall_offset_ms, sealed_mono))
            db.execute("COMMIT")
            self.commits += 1
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return seq, len(payload) if stored else 0

    def _make_room(self, stream: str, size: int) -> bool:
        """Apply the cap for a new payload of ``size`` bytes; False if it must not be stored."""
        if self.max_size is None:
            return True
        _, used = self.depth()
        if used + size <= self.max_size:
            return True
        if self.policy == "refuse_newest" or size > self.max_size:
            self._count_loss(stream, "refused")
            log.warning("event=batch_refused stream=%s reason=%r", stream, "store full (refuse_newest)")
            return False
        dropped: dict[str, int] = {}
        while used + size > self.max_size:
            chunk = self._db.execute("SELECT id, stream, length(payload) FROM batches ORDER BY id "
                                     "LIMIT 256").fetchall()
            if not chunk:
                break
            for row_id, old_stream, length in chunk:
                if used + size <= self.max_size:
                    break
                self._db.execute("DELETE FROM batches WHERE id = ?", (row_id,))
                used -= length
                dropped[old_stream] = dropped.get(old_stream, 0) + 1
        for s, n in dropped.items():
            self._count_loss(s, "dropped", n)
            log.warning("event=batches_dropped stream=%s count=%d reason=%r", s, n,
                        "store full (drop_oldest)")
        return True

    def expire(self, ttl: float, *, now: float, now_mono: float, boot_id: str | None,
               wall_trusted: bool) -> dict[str, int]:
        """Delete batches older than ``ttl`` seconds; count them per stream as expired.

        Age is measured on the monotonic clock for batches of this boot, so a
        wall-clock jump cannot expire them early; batches of earlier boots are aged
        by the wall clock, and only while it is trusted (synchronised) and only if
        they were sealed on a synchronised clock too.
        """
        db = self._db
        clauses, args = [], []
        if boot_id is not None:
            clauses.append("(boot_id = ? AND sealed_mono IS NOT NULL AND sealed_mono < ?)")
            args += [boot_id, now_mono - ttl]
        if wall_trusted:
            # a batch sealed on an unsynchronised clock has no trustworthy wall age: the cap bounds it
            clauses.append("(clock_unsynced = 0 AND (boot_id IS NULL OR boot_id != ? OR sealed_mono IS NULL) "
                           "AND sealed < ?)")
            args += [boot_id or "", now - ttl]
        if not clauses:
            return {}
        where = " OR ".join(clauses)
        db.execute("BEGIN IMMEDIATE")
        try:
            counts = dict(db.execute(f"SELECT stream, count(*) FROM batches WHERE {where} GROUP BY stream",
                                     args).fetchall())
            if counts:
                db.execute(f"DELETE FROM batches WHERE {where}", args)
                for s, n in counts.items():
                    self._count_loss(s, "expired", n)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        for s, n in counts.items():
            log.warning("event=batches_expired stream=%s count=%d ttl=%gs", s, n, ttl)
        return counts

    def count_unstored(self, stream: str, n: int = 1) -> bool:
        """Record batches lost to a full disk; False if even that could not be written."""
        try:
            self._count_loss(stream, "unstored", n)
            return True
        except sqlite3.OperationalError:
            return False

    # --- reading and deleting --------------------------------------------------------------
    def oldest(self, limit: int, skip: Collection[int] = (), *, hold_unsynced: bool = False,
               after_id: int | None = None, up_to_id: int | None = None) -> list[StoredBatch]:
        """Up to ``limit`` batches, oldest first, leaving out the row ids in ``skip``;
        with ``hold_unsynced``, not those stamped before the clock was synchronised;
        optionally only row ids in (after_id, up_to_id]."""
        conds, args = [], []
        if hold_unsynced:
            conds.append("clock_unsynced = 0")
        if after_id is not None:
            conds.append("id > ?")
            args.append(after_id)
        if up_to_id is not None:
            conds.append("id <= ?")
            args.append(up_to_id)
        where = ("WHERE " + " AND ".join(conds) + " ") if conds else ""
        rows = self._db.execute(
            f"SELECT id, stream, seq, payload FROM batches {where}ORDER BY id LIMIT ?",
            (*args, limit + len(skip))).fetchall()
        return [StoredBatch._make(r) for r in rows if r[0] not in skip][:limit]

    def newest_id(self) -> int:
        """The largest row id waiting (0 when the queue is empty)."""
        row = self._db.execute("SELECT max(id) FROM batches").fetchone()
        return row[0] or 0

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
                shift = wall_offset_ms - (old_offset or 0)
                batch = wire.restamp(wire.decode(payload), shift)  # its version stays (2 for old backbones)
                db.execute("UPDATE batches SET payload = ?, clock_unsynced = 0, wall_offset_ms = ?, "
                           "sealed = sealed + ? WHERE id = ?",
                           (wire.encode(batch, version=max(2, batch.version)), wall_offset_ms, shift / 1000.0,
                            row_id))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return len(rows)

    def delete(self, row_id: int) -> bool:
        """Remove an acknowledged batch; False if it was already gone."""
        cur = self._db.execute("DELETE FROM batches WHERE id = ?", (row_id,))
        return cur.rowcount > 0

    def delete_many(self, row_ids: Collection[int]) -> int:
        """Remove acknowledged batches in one transaction; how many were there."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            # One statement: SQLite runs it without the GIL from start to end, where
            # executemany would take the GIL back between rows.
            n = db.execute("DELETE FROM batches WHERE id IN (SELECT value FROM json_each(?))",
                           (json.dumps(list(row_ids)),)).rowcount
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return n

    def checkpoint(self) -> None:
        """Copy the WAL into the main file and truncate it."""
        self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def relax_durability(self) -> None:
        """For a connection that only deletes acknowledged batches: commits need not wait for
        fsync (WAL, synchronous=NORMAL). A delete lost in a power cut only means that batch
        is sent again, and the backbone deduplicates it; the sampler's seals stay FULL."""
        self._db.execute("PRAGMA synchronous=NORMAL")

    def depth(self) -> tuple[int, int]:
        """(number of batches, payload bytes) waiting to be sent."""
        n, size = self._db.execute("SELECT batches, bytes FROM queue_stats WHERE id = 0").fetchone()
        return n, size

    def oldest_sealed(self) -> float | None:
        """Unix time the oldest waiting batch was sealed, or None when the queue is empty."""
        row = self._db.execute("SELECT sealed FROM batches ORDER BY id LIMIT 1").fetchone()
        return row[0] if row else None

    def losses(self) -> dict[str, dict[str, int]]:
        """Batches lost per stream and reason, since the store was created."""
        out: dict[str, dict[str, int]] = {}
        for stream, reason, count in self._db.execute("SELECT stream, reason, count FROM losses"):
            out.setdefault(stream, {})[reason] = count
        return out

    def save_chain_states(self, states: list[tuple[str, str, str, str]], boot_id: str | None,
                          mono: float) -> None:
        """Keep (stream, channel, spec JSON, state JSON) rows, replacing older ones, in one transaction."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany("INSERT OR REPLACE INTO chain_state VALUES (?, ?, ?, ?, ?, ?)",
                           [(*row, boot_id, mono) for row in states])
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def chain_states(self, boot_id: str | None, newer_than_mono: float) -> dict[tuple[str, str], tuple[str, str]]:
        """Saved states of this boot younger than the given monotonic time: (stream, channel) -> (spec, state)."""
        if boot_id is None:
            return {}
        rows = self._db.execute("SELECT stream, channel, spec, state FROM chain_state "
                                "WHERE boot_id = ? AND mono >= ?", (boot_id, newer_than_mono)).fetchall()
        return {(r[0], r[1]): (r[2], r[3]) for r in rows}

    def driver_states(self) -> dict[str, str]:
        """Saved driver states (JSON) by stream, whatever boot or age: totals such as an energy
        meter's must survive reboots too."""
        rows = self._db.execute("SELECT stream, state FROM chain_state WHERE channel = ?",
                                (DRIVER_STATE,)).fetchall()
        return dict(rows)

    def next_seq(self, stream: str) -> int:
        row = self._db.execute("SELECT next_seq FROM stream_seq WHERE stream = ?", (stream,)).fetchone()
        return row[0] if row else 0

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "BatchStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
