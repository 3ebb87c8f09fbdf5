"""The durable on-disk queue of sealed batches: SQLite in WAL mode, synchronous=FULL.

A flush cycle's batches are committed in one transaction that takes each stream's next
sequence number, lets the caller encode the payload with it, and commits both, so a number
is never reused, across restarts and power cuts alike. The uplink reads the oldest rows and
deletes a row once the broker acknowledged it. Payloads are opaque bytes here (the sampler
encodes and restamps, the uplink marks historical). The bounds (a byte cap and its policy,
a time to live, every loss counted) are in store_bounds.py; the file itself (schema,
pragmas, the integrity check, the salvage of a damaged file) in store_file.py.

Each thread opens its own BatchStore on the same file; WAL lets the uplink read while the
sampler writes. Each opening draws an epoch (EPOCH_BITS random bits) that the sampler
writes into every batch it seals, so the backbone's dedupe key (node, stream, epoch, seq)
stays unique when a lost or replaced file starts the numbers again at 0. The epoch lives in
the payloads only: a batch sent again after a restart is the same bytes.
"""

from __future__ import annotations

import json
import logging
import secrets
import sqlite3
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from typing import NamedTuple, TypedDict, Unpack

from edge_agent.errors import DiskFullError
from edge_agent.node import store_bounds, store_check, store_file, store_handoff
from edge_agent.node.store_bounds import EXPIRE_CHUNK, EXPIRE_SCAN, POLICIES
from edge_agent.node.store_file import (
    SCHEMA_VERSION,
    Recovery,
    WalLoss,
    ensure_private_dir,
    is_disk_full,
)
from edge_agent.node.store_handoff import HANDOFF_MAX
from edge_agent.node.store_states import DRIVER_STATE, SavedStates, save_states

__all__ = [
    "DRIVER_STATE",
    "EPOCH_BITS",
    "EXPIRE_CHUNK",
    "EXPIRE_SCAN",
    "POLICIES",
    "SCHEMA_VERSION",
    "BatchStore",
    "DiskFullError",
    "Recovery",
    "StoredBatch",
    "WalLoss",
    "ensure_private_dir",
    "is_disk_full",
]

log = logging.getLogger("edge_agent.store")

EPOCH_BITS = 32  # an opening's epoch: as many random bits as wire.EPOCH_BITS (tests/test_node_v4.py)


def _delete(db: sqlite3.Connection, row_ids: Collection[int]) -> int:
    # One statement: SQLite runs it without the GIL from start to end, where executemany
    # would take the GIL back between rows.
    return db.execute(
        "DELETE FROM batches WHERE id IN (SELECT value FROM json_each(?))", (json.dumps(list(row_ids)),)
    ).rowcount


class Stamp(TypedDict, total=False):
    """What ``seal_many`` keeps with a cycle's batches beside their payloads."""

    clock_unsynced: bool
    boot_id: str | None
    wall_offset_ms: int | None
    sealed_mono: float | None
    states: Sequence[tuple[str, str, str, str]]


class StoredBatch(NamedTuple):
    """A waiting batch as the uplink reads it (a named tuple: the drain builds thousands a
    second, and a frozen dataclass costs three times as much to make)."""

    id: int
    stream: str
    seq: int
    payload: bytes


class BatchStore(SavedStates):
    """One connection to the queue file; use one per thread.

    ``max_size`` (bytes of payload waiting, None for no cap) and ``policy`` apply
    to ``seal``; ``recover=True`` (the sampler's store, opened first) moves a
    corrupt file aside instead of failing (``background``: its work behind READY).
    ``epoch`` is drawn anew at each opening (a recovered file gets one of its own).
    """

    def __init__(
        self, path: str, *, max_size: int | None = None, policy: str = "drop_oldest", recover: bool = False
    ) -> None:
        if policy not in POLICIES:
            raise ValueError(f"store policy must be one of {POLICIES}, got {policy!r}")
        self.path = path
        self.max_size = max_size
        self.policy = policy
        self.recovery: Recovery | None = None
        self.wal_loss: WalLoss | None = None  # (recover=True) the last run's WAL found missing
        self._marked = False
        self.epoch = secrets.randbits(EPOCH_BITS)  # for the batches sealed through this opening
        self._unstored: dict[str, int] = {}  # counts a full disk kept out, for the next seal
        self.commits = 0  # durable (fsync'ed, synchronous=FULL) seals on this connection
        self._sweep = store_bounds.Sweep()  # where the time to live looks next
        self._handoff: store_handoff.Handoff | None = None  # see take_deletes
        self.background: store_check.Background | None = None  # (recover=True) behind READY
        self._open(store_file.open_store(path, recover, self.epoch))

    def _open(self, o: store_file.Opened) -> None:
        self._db, self.recovery, self._marked, self.background = o.db, o.recovery, o.marked, o.background
        self.wal_loss = o.wal_loss or self.wal_loss

    def recover_now(self) -> None:
        """Damage found behind READY (``background.damage``): as at a start, moved aside, a
        fresh file under a new epoch, the salvage to start. On this store's thread, every
        other connection to the file closed (the uplink's)."""
        assert self.background is not None and self.background.damage is not None
        damage = self.background.damage
        self.background.stop()
        self._db.close()
        self.epoch = secrets.randbits(EPOCH_BITS)
        self._open(store_file.open_store(self.path, True, self.epoch, damaged=damage))

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """``with self._transaction() as db:`` BEGIN IMMEDIATE, COMMIT at the end, ROLLBACK on
        any exception. A full disk raises DiskFullError: the one place that knows one."""
        db = self._db
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:  # a failed COMMIT may have rolled back already
                    db.execute("ROLLBACK")
                raise
        except sqlite3.OperationalError as exc:
            if is_disk_full(exc) and not isinstance(exc, DiskFullError):
                raise DiskFullError(str(exc)) from exc
            raise

    # --- writing ------------------------------------------------------------------------------
    def seal(
        self, stream: str, encode: Callable[[int], bytes], sealed_at: float, **stamp: Unpack[Stamp]
    ) -> tuple[int, int]:
        """``seal_many`` of one batch: (sequence number, payload size)."""
        return self.seal_many([(stream, encode)], sealed_at, **stamp)[0]

    def seal_many(
        self,
        batches: Sequence[tuple[str, Callable[[int], bytes]]],
        sealed_at: float,
        *,
        clock_unsynced: bool = False,
        boot_id: str | None = None,
        wall_offset_ms: int | None = None,
        sealed_mono: float | None = None,
        states: Sequence[tuple[str, str, str, str]] = (),
    ) -> list[tuple[int, int]]:
        """Commit a flush cycle's batches, (stream, encode) each, in one transaction:
        ``encode(seq)`` gives a batch's payload once its number is known.

        One commit a cycle, not one a stream: each is an fsync and whole pages of the card,
        and the cycle's batches share most of theirs (the counters, the last leaf). What a
        cycle seals is durable when this returns, as when its last stream's commit did.

        ``states`` are (stream, channel, spec JSON, state JSON) rows kept in the same
        transaction, as of ``sealed_mono``: a driver's total (an energy meter's) is written
        with the batch that carries it, so no kill leaves a total older than a batch sealed.

        Returns (sequence number, payload size) per batch, or (sequence number, 0) for one
        the cap and the ``refuse_newest`` policy turned away (its number is used up so the
        backbone sees the gap; the refusal is counted). Nothing is stored, states included,
        if an encode raises or the commit fails. A full disk raises DiskFullError.
        """
        stamp = (sealed_at, int(clock_unsynced), boot_id, wall_offset_ms, sealed_mono)
        handed = self._handoff.take() if self._handoff is not None else []
        try:
            with self._transaction() as db:
                out = [self._seal_one(db, stream, encode, stamp) for stream, encode in batches]
                if states:
                    save_states(db, states, boot_id, sealed_mono or 0.0)
                for stream, n in self._unstored.items():
                    store_bounds.count_loss(db, stream, "unstored", n)
                deleted = [_delete(db, entry.ids) for entry in handed]
        except BaseException:
            if self._handoff is not None:
                self._handoff.finish(handed, None)  # the deleter deletes them itself
            raise
        if self._handoff is not None:
            self._handoff.finish(handed, deleted)
        self._unstored.clear()
        self.commits += 1
        return out

    def _seal_one(
        self,
        db: sqlite3.Connection,
        stream: str,
        encode: Callable[[int], bytes],
        stamp: tuple[float, int, str | None, int | None, float | None],
    ) -> tuple[int, int]:
        """One batch of ``seal_many``'s transaction; ``stamp`` is the rest of its row."""
        row = db.execute("SELECT next_seq FROM stream_seq WHERE stream = ?", (stream,)).fetchone()
        seq = row[0] if row else 0
        payload = encode(seq)
        db.execute(
            "INSERT INTO stream_seq (stream, next_seq) VALUES (?, ?) "
            "ON CONFLICT (stream) DO UPDATE SET next_seq = excluded.next_seq",
            (stream, seq + 1),
        )
        stored = self.max_size is None or store_bounds.make_room(
            db, stream, len(payload), used=self.depth()[1], max_size=self.max_size, policy=self.policy
        )
        if not stored:
            return seq, 0
        db.execute(
            "INSERT INTO batches (stream, seq, payload, sealed, clock_unsynced, boot_id, "
            "wall_offset_ms, sealed_mono) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (stream, seq, payload, *stamp),
        )
        return seq, len(payload)

    def expire(
        self,
        ttl: float,
        *,
        now: float,
        now_mono: float,
        boot_id: str | None,
        wall_trusted: bool,
        budget: int | None = None,
    ) -> dict[str, int]:
        """Delete batches older than ``ttl`` seconds (store_bounds.expired_where says how a
        batch's age is measured); count them per stream as expired.

        Batches are looked at outside any transaction and deleted in transactions of at
        most EXPIRE_CHUNK, so no hold of the write lock grows with the queue. With a
        ``budget`` (for the sampler, which must seal on time) a pass looks at the head of
        the queue and ``budget`` batches more, and deletes at most one transaction's worth
        (store_bounds.Sweep: the next pass goes on); without, the whole queue.
        """
        where = store_bounds.expired_where(
            ttl, now=now, now_mono=now_mono, boot_id=boot_id, wall_trusted=wall_trusted
        )
        if where is None:
            return {}
        cap = None if budget is None else EXPIRE_CHUNK
        ids = self._sweep.expired(self._db, where, boot_id, budget, cap)
        counts: dict[str, int] = {}
        for at in range(0, len(ids), EXPIRE_CHUNK):
            with self._transaction() as db:
                for s, n in store_bounds.delete_expired(db, ids[at : at + EXPIRE_CHUNK], where).items():
                    counts[s] = counts.get(s, 0) + n
        for s, n in counts.items():
            log.warning("event=batches_expired stream=%s count=%d ttl=%gs", s, n, ttl)
        return counts

    def count_unstored(self, stream: str, n: int = 1) -> bool:
        """Record batches lost to a full disk; False if even that could not be written (then
        the count goes in with the next seal that commits)."""
        try:
            store_bounds.count_loss(self._db, stream, "unstored", n)
            return True
        except sqlite3.OperationalError:
            self._unstored[stream] = self._unstored.get(stream, 0) + n
            return False

    # --- reading and deleting --------------------------------------------------------------
    def oldest(
        self,
        limit: int,
        skip: Collection[int] = (),
        *,
        hold_unsynced: bool = False,
        after_id: int | None = None,
        up_to_id: int | None = None,
    ) -> list[StoredBatch]:
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
            (*args, limit + len(skip)),
        ).fetchall()
        return [StoredBatch._make(r) for r in rows if r[0] not in skip][:limit]

    def newest_id(self) -> int:
        """The largest row id waiting (0 when the queue is empty)."""
        row = self._db.execute("SELECT max(id) FROM batches").fetchone()
        return row[0] or 0

    def restamp_unsynced(
        self,
        boot_id: str,
        wall_offset_ms: int,
        restamp: Callable[[bytes, int], bytes],
        *,
        limit: int | None = None,
    ) -> int:
        """Re-time this boot's batches stamped before the clock was synchronised.

        Their samples were taken on this boot's monotonic clock, so shifting them by the
        change of (wall - monotonic) gives their true times: ``restamp(payload, shift_ms)``
        gives the payload shifted. Batches of an earlier boot keep their clock_unsynced flag.
        Returns how many were restamped, in one transaction: the oldest ``limit`` (None:
        all), the rest at the caller's next turn. Found through an index of the
        unsynchronised batches alone, so finding none costs nothing however long the queue.
        """
        rows = self._db.execute(
            "SELECT id, payload, wall_offset_ms FROM batches INDEXED BY batches_unsynced "
            "WHERE clock_unsynced = 1 AND boot_id = ? ORDER BY id LIMIT ?",
            (boot_id, -1 if limit is None else limit),
        ).fetchall()
        if not rows:
            return 0
        with self._transaction() as db:
            for row_id, payload, old_offset in rows:
                shift = wall_offset_ms - (old_offset or 0)
                db.execute(
                    "UPDATE batches SET payload = ?, clock_unsynced = 0, wall_offset_ms = ?, "
                    "sealed = sealed + ? WHERE id = ?",
                    (restamp(payload, shift), wall_offset_ms, shift / 1000.0, row_id),
                )
        return len(rows)

    def delete_many(self, row_ids: Collection[int]) -> int:
        """Remove acknowledged batches in one transaction; how many were there. A few rows
        go with the next seal of the agent's sampler, when it takes them (take_deletes)."""
        handoff = store_handoff.lookup(self.path)
        if handoff is not None and handoff is not self._handoff and len(row_ids) <= HANDOFF_MAX:
            n = handoff.give(list(row_ids))
            if n is not None:
                return n
        with self._transaction() as db:
            return _delete(db, row_ids)

    def take_deletes(self, wait: float | None) -> None:
        """Carry the few acknowledged deletes of this process's other connections to this
        file in this one's seals (store_handoff), each waiting at most ``wait`` s for one;
        None: no more (before the last seal's connection stops sealing)."""
        self._handoff = None if wait is None else store_handoff.Handoff(wait)
        store_handoff.register(self.path, self._handoff)

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

    def next_seq(self, stream: str) -> int:
        """The sequence number the stream's next batch will get."""
        row = self._db.execute("SELECT next_seq FROM stream_seq WHERE stream = ?", (stream,)).fetchone()
        return row[0] if row else 0

    CLOSE_BUSY = 2.0  # s the marker's DELETE waits for another connection's write lock

    def close(self) -> None:
        if self._handoff is not None:
            self.take_deletes(None)
        if self.background is not None:
            self.background.stop()
        if self._marked:  # a clean stop: the next start has no WAL to miss
            try:
                # Not the connection's 10 s: the agent closes its store after the uplink's
                # connections, so a lock still held is a stuck writer, not one about to finish.
                self._db.execute(f"PRAGMA busy_timeout={int(self.CLOSE_BUSY * 1000)}")
                store_file.mark_closed(self._db)
            except sqlite3.DatabaseError as exc:  # busy, or damaged: the next start checks it
                log.warning("event=store_marker_kept path=%s reason=%r", self.path, str(exc))
        self._db.close()

    def __enter__(self) -> BatchStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
