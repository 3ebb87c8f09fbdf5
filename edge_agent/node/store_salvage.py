"""The salvage of a damaged queue file, behind READY.

Before READY (``prepare``, in the transaction that creates the fresh queue): what the
first seal needs from the damaged file, each part bounded by its own size and none by
the queue's. The sequence counters (its ``stream_seq``; each stream's highest number in
an index on (stream, seq), one descent each, where the file has one; the newest TAIL
rows), so no batch
sealed from now on takes the (stream, seq) of one still to be copied; the highest row
id, so new batches come after every salvaged one, which keeps its id and its place in
the queue; the loss counts and the saved chain and driver states (energy totals); and
the salvage's own row, ``salvage``, kept until the copy is complete.

Behind READY (``Salvage``, a thread of its own with its own connections): the readable
batches, found by ``readable_rows``, copied CHUNK at a time, each chunk in a short
transaction that also advances the salvage's row, so a kill loses none and repeats none:
the next opening goes on from there. A chunk that finds its (stream, seq) taken (a
counter the damage hid) is counted as unreadable and logged, never silently dropped: the
fresh queue has a unique index on (stream, seq), SEQ_INDEX, until its last salvage is
done (a queue has none otherwise: store_migrate says why).

``store_pages.readable_rows`` finds them: queries bounded by the rows read and the
damaged pages, never by the ids' span; a progress handler here bounds SQLite's own
steps by the damaged file's size besides, and stops the salvage when the store closes.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any

from edge_agent.node import store_migrate, store_pages
from edge_agent.node.store_pages import (
    COLUMNS,
    FIRST,
    LAST,
    UNREADABLE,
    Interrupted,
    Walk,
    open_old,
    root_page,
)

log = logging.getLogger("edge_agent.store")

CHUNK = 32  # batches copied per transaction: a hold of the write lock of a few ms
TAIL = 256  # newest rows read for the counters (beside stream_seq and the index) ...
TAIL_SKIPS = 8  # ... stepping over at most so many damaged leaves at the end of the table
MAX_STREAMS = 1024  # streams looked for in the index, one descent each
SEQ_INDEX = "batches_salvage_seq"
MAX_ID = 1 << 53  # row ids beyond are the damage's (2^63 - 1 would end AUTOINCREMENT: SQLITE_FULL)

SALVAGE_SCHEMA = """
CREATE TABLE IF NOT EXISTS salvage (
    moved_to   TEXT PRIMARY KEY,        -- the damaged file, kept
    error      TEXT NOT NULL,
    at         REAL NOT NULL,           -- Unix time it was found
    next_id    INTEGER NOT NULL,        -- every row id below is copied, or unreadable
    salvaged   INTEGER NOT NULL,
    unreadable INTEGER NOT NULL,
    expected   INTEGER                  -- the batches it held by its own count, if readable
)"""


def _read(old: sqlite3.Connection, sql: str, args: tuple = ()) -> list[tuple]:
    """What a query gives until it fails."""
    rows: list[tuple] = []
    try:
        for row in old.execute(sql, args):
            rows.append(row)
    except UNREADABLE:
        pass
    return rows


def _text(value: object) -> str | None:
    return value.decode("utf-8") if isinstance(value, bytes) else None  # strict: raises on damage


def _newest(old: sqlite3.Connection, aside: str) -> list[tuple]:
    """(id, stream, seq) of the newest rows SQLite can read, TAIL at most: from the end of the
    table down, stepping over damaged leaves (store_pages.Pages.locate), TAIL_SKIPS at most."""
    pages, root, upper = None, root_page(old), LAST
    for _ in range(TAIL_SKIPS):
        rows = _read(
            old, "SELECT id, stream, seq FROM batches WHERE id <= ? ORDER BY id DESC LIMIT ?", (upper, TAIL)
        )
        if rows or root is None:
            return rows
        pages = pages or store_pages.open_pages(aside)
        leaf = pages.locate(root, upper) if pages is not None else None
        if leaf is None or leaf.after is None:
            return []
        upper = leaf.after
    return []


def _counters(old: sqlite3.Connection, newest: list[tuple]) -> tuple[dict[str, int], bool]:
    """Each stream's next sequence number as far as the damaged file tells (its stream_seq,
    each stream's end in the (stream, seq) index, the ``newest`` rows), and whether its
    stream_seq was read whole (then they are exact: a seal updates it with its batch)."""
    counters: dict[str, int] = {}

    def seen(stream: object, next_seq: object) -> None:
        try:
            name = _text(stream)
        except ValueError:
            return
        if name and isinstance(next_seq, int) and next_seq > 0:
            counters[name] = max(counters.get(name, 0), next_seq)

    whole = True
    try:
        for stream, next_seq in old.execute("SELECT stream, next_seq FROM stream_seq"):
            seen(stream, next_seq)
    except UNREADABLE:
        whole = False
    names, last = set(counters), ""
    try:
        indexed = store_migrate.seq_index(old) is not None
    except UNREADABLE:
        indexed = False
    for _ in range(MAX_STREAMS if indexed else 0):  # the index's streams, one descent each
        got = _read(old, "SELECT min(stream) FROM batches WHERE stream > ?", (last,))
        try:
            name = _text(got[0][0]) if got else None
        except ValueError:
            name = None
        if not name:
            break
        names.add(last := name)
    for name in names:
        for (top,) in _read(old, "SELECT max(seq) FROM batches WHERE stream = ?", (name,)):
            seen(name.encode(), top + 1 if isinstance(top, int) else None)
    for _, stream, seq in newest:
        seen(stream, seq + 1 if isinstance(seq, int) else None)
    return counters, whole


def prepare(db: sqlite3.Connection, aside: str, error: str) -> tuple[int | None, bool]:
    """In the fresh queue's open transaction: counters, highest id, losses, states and the
    salvage's row from the damaged file (and any salvage of its own still pending). Returns
    the batches the damaged file held by its own count (None if unreadable), and whether
    its sequence counters were read whole."""
    db.execute(SALVAGE_SCHEMA)
    db.execute(f"CREATE UNIQUE INDEX IF NOT EXISTS {SEQ_INDEX} ON batches (stream, seq)")
    old = open_old(aside)
    expected: int | None = None
    whole = old is None  # nothing readable: nothing to collide with
    if old is not None:
        try:
            newest = _newest(old, aside)
            counters, whole = _counters(old, newest)
            db.executemany("INSERT OR REPLACE INTO stream_seq VALUES (?, ?)", counters.items())
            tops = _read(old, "SELECT seq FROM sqlite_sequence WHERE name = 'batches'")
            tops += [row[:1] for row in newest[:1]]
            top = max((t for (t,) in tops if isinstance(t, int) and 0 < t < MAX_ID), default=0)
            db.execute("DELETE FROM sqlite_sequence WHERE name = 'batches'")
            db.execute("INSERT INTO sqlite_sequence (name, seq) VALUES ('batches', ?)", (top,))
            copies = (
                ("losses", "stream, reason, count", 2),
                ("chain_state", "stream, channel, spec, state, boot_id, mono", 5),
                ("salvage", "moved_to, error, at, next_id, salvaged, unreadable, expected", 2),
            )
            for table, columns, texts in copies:
                for row in _read(old, f"SELECT {columns} FROM {table}"):
                    try:
                        values = (*map(_text, row[:texts]), *row[texts:])
                        db.execute(
                            f"INSERT OR IGNORE INTO {table} ({columns}) VALUES ({', '.join('?' * len(row))})",
                            values,
                        )
                    except UNREADABLE:
                        pass
            stats = _read(old, "SELECT batches FROM queue_stats WHERE id = 0")
            expected = stats[0][0] if stats and isinstance(stats[0][0], int) and stats[0][0] >= 0 else None
        finally:
            old.close()
    db.execute(
        "INSERT INTO salvage VALUES (?, ?, ?, ?, 0, 0, ?)", (aside, error, time.time(), FIRST, expected)
    )
    return expected, whole


def pending(db: sqlite3.Connection) -> list[tuple]:
    """The salvages still to finish (moved_to, error, at, salvaged, unreadable, expected),
    newest last: none in a queue that was never recovered."""
    if not db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'salvage'").fetchone():
        return []
    return db.execute(
        "SELECT moved_to, error, at, salvaged, unreadable, expected FROM salvage ORDER BY at"
    ).fetchall()


def _values(row: tuple) -> tuple | None:
    """(id, COLUMNS...) of a salvaged row as the queue takes them, or None where the damage
    made a value wrong (text that is not UTF-8 in its stream, a number that is none...)."""
    row_id, stream, seq, sealed, payload, unsynced, boot, offset, mono = row
    try:
        name = _text(stream)
        boot_id = boot.decode("utf-8", "replace") if isinstance(boot, bytes) else None
    except ValueError:
        return None
    if not (
        name
        and isinstance(seq, int)
        and seq >= 0
        and isinstance(sealed, int | float)
        and isinstance(payload, bytes)
        and isinstance(unsynced, int)
        and (offset is None or isinstance(offset, int))
        and (mono is None or isinstance(mono, int | float))
    ):
        return None
    if not 0 < row_id < MAX_ID:
        row_id = None  # an id the damage made: a new one, never one that would end the ids
    return (row_id, name, seq, float(sealed), payload, 1 if unsynced else 0, boot_id, offset, mono)


_INSERT = f"INSERT OR IGNORE INTO batches (id, {COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"


def _copy(db: sqlite3.Connection, rows: list[tuple]) -> tuple[int, int]:
    """Salvaged rows (``_values``) into the queue, each under its own id, in one statement
    (SQLite's loop, not Python's) when none is there yet; (copied, taken). Else row by row:
    one whose id was given again (the damaged file's highest was unreadable) gets a new
    id; one whose stream and number a batch sealed since has taken (the damage hid its
    counter) is taken, and logged; one copied before is left."""
    db.execute("SAVEPOINT chunk")
    copied, taken = (db.executemany(_INSERT, rows).rowcount if rows else 0), 0
    if copied < len(rows):
        db.execute("ROLLBACK TO chunk")
        copied = 0
        for row_id, name, seq, *rest in rows:
            if db.execute(_INSERT, (row_id, name, seq, *rest)).rowcount:
                copied += 1
                continue
            found = db.execute("SELECT id FROM batches WHERE stream = ? AND seq = ?", (name, seq)).fetchone()
            if found is None:
                db.execute(_INSERT, (None, name, seq, *rest))
                copied += 1
            elif found[0] != row_id:
                taken += 1
                log.error(
                    "event=salvage_collision stream=%s seq=%d: sealed again since; counted unreadable",
                    name,
                    seq,
                )
    db.execute("RELEASE chunk")
    return copied, taken


class Salvage:
    """Copies the readable batches of every pending salvage into the queue at ``path``, on
    a thread of its own, CHUNK at a time, each chunk in one transaction with the salvage's
    progress; keeps ``recovery`` (store_file.Recovery) up to date. ``connect`` opens the queue."""

    PAUSE = 0.001  # s between chunks: the sampler and the uplink get the lock and the GIL
    CHECKPOINT_EVERY = 64  # chunks between the salvage's own checkpoints (see run)
    DISK_RETRY = 5.0  # s before a chunk a full disk refused is tried again

    def __init__(self, path: str, recovery: Any, connect: Callable[[str], sqlite3.Connection]) -> None:
        self.path = path
        self.recovery = recovery
        self._connect = connect
        self.walk = Walk()  # of the salvage being copied
        self.done = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None and not self.done.is_set():
            self._thread = threading.Thread(target=self.run, name="store-salvage", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def run(self) -> None:
        """Every pending salvage, oldest first; stopped, the next opening goes on."""
        db = None
        try:
            db = self._connect(self.path)
            db.execute("PRAGMA synchronous=NORMAL")  # a chunk lost in a power cut is copied again
            # Its checkpoints are its own, outside its transactions (PASSIVE: no writer waits
            # for one), so the WAL it fills is never the sampler's to copy after a seal.
            db.execute("PRAGMA wal_autocheckpoint=0")
            while not self._stop.is_set():
                job = db.execute(
                    "SELECT moved_to, next_id, unreadable, expected FROM salvage ORDER BY at LIMIT 1"
                ).fetchone()
                if job is None:
                    break
                self._job(db, *job)
        except Interrupted:
            pass
        except Exception as exc:  # noqa: BLE001 - the agent runs on; the salvage goes on at the next start
            log.error("event=salvage_stopped error=%r: it goes on at the next start", str(exc))
        finally:
            if db is not None:
                db.close()
            self.done.set()

    def _job(
        self, db: sqlite3.Connection, aside: str, pos: int, unreadable: int, expected: int | None
    ) -> None:
        walk = self.walk = Walk(pos=pos)
        base = unreadable  # lost before this run, as the salvage's row says
        old = open_old(aside, self._stop) if os.path.isfile(aside) else None
        try:
            chunk: list[tuple] = []
            chunks = 0
            rows = (
                store_pages.readable_rows(old, lambda: store_pages.open_pages(aside), root_page(old), walk)
                if old
                else iter(())
            )
            try:
                for row in rows:
                    chunk.append(row)
                    if len(chunk) >= CHUNK:
                        base = self._commit(db, aside, chunk, base, walk)
                        chunk = []
                        chunks += 1
                        if chunks % self.CHECKPOINT_EVERY == 0:
                            db.execute("PRAGMA wal_checkpoint(PASSIVE)")
                        if self._stop.wait(self.PAUSE):
                            raise Interrupted("stopped")
            except Interrupted:
                if self._stop.is_set():
                    raise
                log.error("event=salvage_budget_spent moved_to=%s: the rest is counted unreadable", aside)
            base = self._commit(db, aside, chunk, base, walk)
        finally:
            if old is not None:
                old.close()
        copied = db.execute("SELECT salvaged FROM salvage WHERE moved_to = ?", (aside,)).fetchone()[0]
        lost = base + walk.lost
        if expected is not None and expected >= copied:
            lost = max(lost, expected - copied)  # the file's own count: rows behind damaged pages too
        self._commit(db, aside, [], base, walk, done=True)
        rec = self.recovery
        if rec.moved_to == aside:
            rec.salvaged, rec.unreadable, rec.complete = copied, lost, True
        log.warning(
            "event=store_salvaged moved_to=%s salvaged_batches=%d unreadable=%d queries=%d damaged_ranges=%d",
            aside,
            copied,
            lost,
            walk.queries,
            walk.skipped,
        )

    def _commit(
        self, db: sqlite3.Connection, aside: str, rows: list[tuple], base: int, walk: Walk, done: bool = False
    ) -> int:
        """Copy ``rows`` and move the salvage's row on (delete it when ``done``) in one
        transaction, a full disk waiting; what is lost so far, not counting ``walk.lost``."""
        values = [v for v in map(_values, rows) if v is not None]
        tops: dict[str, int] = {}
        for _, name, seq, *_rest in values:  # never hand out a salvaged batch's number again
            tops[name] = max(tops.get(name, 0), seq + 1)
        while True:
            try:
                db.execute("BEGIN IMMEDIATE")
                try:
                    copied, taken = _copy(db, values)
                    db.executemany(
                        "INSERT INTO stream_seq (stream, next_seq) VALUES (?, ?) ON CONFLICT (stream) "
                        "DO UPDATE SET next_seq = max(next_seq, excluded.next_seq)",
                        tops.items(),
                    )
                    lost = base + len(rows) - len(values) + taken
                    if done:
                        db.execute("DELETE FROM salvage WHERE moved_to = ?", (aside,))
                        if not db.execute("SELECT 1 FROM salvage LIMIT 1").fetchone():
                            db.execute(f"DROP INDEX IF EXISTS {SEQ_INDEX}")  # costs each seal a page
                    else:
                        db.execute(
                            "UPDATE salvage SET next_id = ?, salvaged = salvaged + ?, unreadable = ? "
                            "WHERE moved_to = ?",
                            (walk.pos, copied, lost + walk.lost, aside),
                        )
                    db.execute("COMMIT")
                except BaseException:
                    if db.in_transaction:
                        db.execute("ROLLBACK")
                    raise
            except sqlite3.OperationalError as exc:
                if "full" not in str(exc) and getattr(exc, "sqlite_errorcode", 0) != sqlite3.SQLITE_FULL:
                    raise
                log.error("event=salvage_waits reason=%r retry_in=%gs", str(exc), self.DISK_RETRY)
                if self._stop.wait(self.DISK_RETRY):
                    raise Interrupted("stopped") from exc
                continue
            rec = self.recovery
            if rec.moved_to == aside and not done:
                rec.salvaged += copied
                rec.unreadable = lost + walk.lost
            return lost
