"""The queue's SQLite file: created owner-only, opened in WAL mode with synchronous=FULL
and its schema, checked, and moved aside and salvaged when it is damaged.

A store file that SQLite cannot open or that fails its check never blocks start-up:
it is moved aside with a timestamp (never deleted), a fresh file takes its place with
what the first seal needs from it (store_salvage.prepare), and what SQLite can still
read from it is copied in behind READY (store_salvage.Salvage); the outcome is kept in
a ``Recovery`` for the log and the health message, updated as the copy goes on.

The check at opening reads what the agent reads first, whatever the queue's size; the
whole file is checked behind READY (store_check.py says how), and damage found there is
recovered from the same way (``open_store`` with ``damaged``).
"""

from __future__ import annotations

import errno
import logging
import os
import re
import sqlite3
import stat
import time
from dataclasses import dataclass, field

from edge_agent.errors import DiskFullError, StoreError
from edge_agent.node import store_check, store_migrate, store_salvage, store_vfs
from edge_agent.node.store_pages import COLUMNS

log = logging.getLogger("edge_agent.store")

BUSY_TIMEOUT = 10.0  # s a connection waits for a lock (another process's: as long as it has the queue)
SCHEMA_VERSION = 3  # 2: the index of the batches to restamp; 3: no (stream, seq) index (store_migrate)

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
    sealed_mono REAL                    -- monotonic time of sealing (s), within boot_id
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
    spec     TEXT NOT NULL,             -- JSON [unit, chain spec] the state belongs to
    state    TEXT NOT NULL,             -- JSON of Chain.get_state()
    boot_id  TEXT,
    mono     REAL NOT NULL,             -- monotonic time saved (s), within boot_id
    PRIMARY KEY (stream, channel)
);
-- Set while the agent has the queue open, checkpointed into the main file at once, cleared
-- at a clean stop: found set with no WAL beside the file, the WAL of an unclean stop is gone.
CREATE TABLE IF NOT EXISTS open_marker (
    id       INTEGER PRIMARY KEY CHECK (id = 0),
    opened   REAL    NOT NULL,          -- Unix time the run opened the queue (s)
    epoch    INTEGER NOT NULL           -- that run's epoch
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
-- The batches waiting to be restamped once the clock synchronises, looked for at every
-- seal without reading the rest of the queue; while the clock is synchronised, no seal
-- writes to it. (The time to live needs no index: store_bounds.Sweep.)
CREATE INDEX IF NOT EXISTS batches_unsynced ON batches (boot_id) WHERE clock_unsynced = 1;
"""


_BATCHES = re.search(r"CREATE TABLE IF NOT EXISTS batches \(.*?\n\);", _SCHEMA, re.S).group(0)  # type: ignore[union-attr]
_OBJECTS = set(re.findall(r"CREATE (?:TABLE|TRIGGER|INDEX) IF NOT EXISTS (\w+)", _SCHEMA))


@dataclass
class WalLoss:
    """A WAL found missing after an unclean stop: the batches sealed in that run since its
    last checkpoint are gone, and their sequence numbers may be handed out again (under the
    new run's epoch, so a backbone takes them for new ones)."""

    run_opened: float  # when the run that lost it had opened the queue (Unix s)
    run_epoch: str  # its epoch, 8 hex digits
    at: float = field(default_factory=time.time)


def mark_open(db: sqlite3.Connection, path: str, wal_was_there: bool, epoch: int) -> WalLoss | None:
    """At the agent's start: what the last run's marker says (a lost WAL, or nothing), then
    this run's marker, checkpointed into the main file so a later loss of the WAL shows."""
    row = db.execute("SELECT opened, epoch FROM open_marker WHERE id = 0").fetchone()
    lost = WalLoss(row[0], f"{row[1]:08x}") if row is not None and not wal_was_there else None
    if lost is not None:
        log.error(
            "event=store_wal_lost path=%s run_opened=%.0f run_epoch=%s: the batches that run sealed "
            "since its last checkpoint are gone; its sequence numbers may come again, under a new epoch",
            path,
            lost.run_opened,
            lost.run_epoch,
        )
    db.execute("BEGIN IMMEDIATE")
    try:
        db.execute(
            "INSERT OR REPLACE INTO open_marker (id, opened, epoch) VALUES (0, ?, ?)", (time.time(), epoch)
        )
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    db.execute("PRAGMA wal_checkpoint(PASSIVE)")
    return lost


def mark_closed(db: sqlite3.Connection) -> None:
    """At a clean stop: no marker, so the next start knows there is no WAL to miss."""
    db.execute("DELETE FROM open_marker WHERE id = 0")


@dataclass
class Recovery:
    """What happened to a store file that could not be used: its batches ``salvaged`` and
    ``unreadable`` so far, ``complete`` once the copy behind READY is done (``unreadable``
    is then what its own count, ``expected``, says is missing, if that was readable)."""

    moved_to: str
    error: str
    salvaged: int = 0
    unreadable: int = 0
    at: float = field(default_factory=time.time)
    complete: bool = True
    expected: int | None = None


def no_space(directory: str, exc: BaseException) -> bool:
    """Whether an I/O error of SQLite's, or its "unable to open database file" (what it says
    when the WAL cannot be created), came with next to no space left where the queue lives:
    under 1 MiB, or no inode for a new file."""
    if getattr(exc, "sqlite_errorcode", 0) & 0xFF not in (sqlite3.SQLITE_IOERR, sqlite3.SQLITE_CANTOPEN):
        return False
    try:
        st = os.statvfs(directory)
        return st.f_bavail * st.f_frsize < 1 << 20 or (st.f_files > 0 and st.f_favail == 0)
    except OSError:
        return False


def is_disk_full(exc: BaseException) -> bool:
    """Whether SQLite failed for want of space (SQLITE_FULL: the disk, or max_page_count)."""
    return isinstance(exc, sqlite3.OperationalError) and (
        getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or "full" in str(exc)
    )


def ensure_private_dir(path: str) -> None:
    """Create a directory (and parents) readable by the agent's user only. One that exists
    and that others may write to is refused, not changed (it may be shared, like /tmp): anyone
    who can write there can replace the queue or its WAL."""
    os.makedirs(path, mode=0o700, exist_ok=True)
    mode = os.stat(path).st_mode
    if mode & 0o022:
        who = " and ".join(w for bit, w in ((0o020, "its group"), (0o002, "every user")) if mode & bit)
        raise StoreError(
            f"{path}: writable by {who} (mode {stat.S_IMODE(mode):04o}): a queue there is open to "
            f"them; give the agent a directory of its own, or chmod go-w {path}"
        )


def create_private(path: str) -> None:
    """Create the file (if missing) ourselves, so it is 0600 whatever the umask. Never opens
    one that exists: closing any descriptor of a file ends every POSIX lock the process has
    on it, the queue's exclusive one among them (store_vfs)."""
    try:
        os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600))
    except FileExistsError:
        pass


def connect(path: str) -> sqlite3.Connection:
    """A connection in WAL mode, synchronous=FULL, transactions begun explicitly."""
    db = sqlite3.connect(
        store_vfs.uri(path), uri=True, isolation_level=None, timeout=BUSY_TIMEOUT, check_same_thread=True
    )
    # Text that damage left not UTF-8 (a stream name in a row the integrity check cannot
    # see into) is read with replacement characters rather than failing every read of it:
    # the payload carries its own checksum, and the backbone refuses a topic it does not name.
    db.text_factory = lambda raw: raw.decode("utf-8", "replace")
    # Small pages: every commit writes whole pages to the WAL, and a cycle's batches are a
    # few hundred bytes, so 512-byte pages write less of the card than larger ones
    # (bench/bench_writes.py: 41 against 47 bytes per payload byte with 1 KiB pages).
    # (Takes effect when the file is created; an existing file keeps its page size.)
    db.execute("PRAGMA page_size=512")
    mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    if mode.lower() != "wal":
        db.close()
        raise sqlite3.DatabaseError(f"SQLite refused WAL mode (got {mode})")
    db.execute("PRAGMA synchronous=FULL")
    return db


def open_checked(path: str, *, check: bool = True) -> sqlite3.Connection:
    """``connect`` and the schema; with ``check`` (the agent's own opening),
    store_check.bounded_check first and the legacy index dropped where that is cheap
    (store_migrate). Raises sqlite3.DatabaseError for a file that is not a usable store."""
    db = connect(path)
    try:
        result = store_check.bounded_check(db) if check else "ok"
        if result == "ok" and check:
            result = store_check.schema_problem(db, _SCHEMA + store_salvage.SALVAGE_SCHEMA) or "ok"
        if result != "ok":
            raise sqlite3.DatabaseError(f"integrity check failed: {result}")
        if check:
            try:
                store_migrate.drop_legacy_index(db, _BATCHES, COLUMNS)
            except sqlite3.OperationalError as exc:
                if not is_disk_full(exc):
                    raise
                log.warning("event=store_layout_kept reason=%r", str(exc))
        # Written only when something is missing: a store that is whole opens without a
        # write, so a restart on a full disk finds its queue as it was. A file of an older
        # version gets what it lacks (version 2's index, built from its rows) in one
        # transaction: a kill half-way leaves it as it was, to be done at the next opening.
        have = {
            r[0]
            for r in db.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'trigger', 'index')")
        }
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if not _OBJECTS <= have or version != SCHEMA_VERSION:
            db.executescript(f"BEGIN IMMEDIATE;\n{_SCHEMA}\nPRAGMA user_version={SCHEMA_VERSION};\nCOMMIT;")
    except BaseException:
        db.close()
        raise
    return db


def open_queue(path: str, recover: bool) -> tuple[sqlite3.Connection, Recovery | None, bool]:
    """The queue's connection, with ``recover`` the recovery of a damaged file, and whether a
    WAL was there before SQLite made one (for the open marker: see ``mark_open``).

    Any failure to open or check takes the recovery path, but a full disk (DiskFullError),
    an I/O error and a queue another process holds (StoreError), which moving the file
    aside would not mend: the queue stays as it is. A symbolic link in the queue's place is refused, a directory moved aside.
    """
    parent = os.path.dirname(os.path.abspath(path))
    damage: Exception | None = None
    if os.path.islink(path):  # the state directory is private: someone meant it, or means harm
        raise StoreError(
            f"{path}: is a symbolic link (to {os.readlink(path)}): the queue must be a file of "
            "its own; set store.path to where it should be"
        )
    try:
        ensure_private_dir(parent)
        if os.path.lexists(path) and not os.path.isfile(path):
            damage = StoreError(f"{path}: is not a regular file (a directory?)")
        else:
            create_private(path)
    except OSError as exc:
        raise StoreError(f"{path}: cannot open the queue: {exc.strerror or exc}") from exc
    wal_was_there = os.path.exists(path + "-wal")  # before SQLite makes one
    try:
        if damage is not None:
            raise damage
        # Only the opening that can recover from a failure (the agent's, first at start)
        # checks, and goes on with a salvage a kill interrupted.
        db = open_checked(path, check=recover)
        try:
            jobs = store_salvage.pending(db) if recover else []
        except BaseException:
            db.close()
            raise
    except Exception as exc:
        if is_disk_full(exc) or getattr(exc, "errno", None) == errno.ENOSPC or no_space(parent, exc):
            raise DiskFullError(f"{path}: the disk is full; the queue is kept as it is: {exc}") from exc
        if getattr(exc, "sqlite_errorcode", 0) & 0xFF == sqlite3.SQLITE_BUSY:  # store_vfs: held
            raise StoreError(
                f"{path}: another process has the queue open (a second edge-agent on the same "
                f"state directory?); the queue is kept as it is: {exc}"
            ) from exc
        if getattr(exc, "sqlite_errorcode", 0) & 0xFF == sqlite3.SQLITE_IOERR:
            raise StoreError(f"{path}: cannot read or write the queue (the card?): {exc}") from exc
        if not recover:
            raise StoreError(f"{path}: cannot open the queue: {exc}") from exc
        db, rec = recover_file(path, exc)
        return db, rec, True  # a fresh file: no marker to compare
    if not jobs:
        return db, None, wal_was_there
    moved_to, error, at, salvaged, unreadable, expected = jobs[-1]
    log.warning("event=store_salvage_resumed moved_to=%s salvaged_batches=%d", moved_to, salvaged)
    return db, Recovery(moved_to, error, salvaged, unreadable, at, False, expected), wal_was_there


def recover_file(path: str, error: Exception) -> tuple[sqlite3.Connection, Recovery]:
    """Move the damaged file (and its WAL) aside, open a fresh one with what the first seal
    needs from it (store_salvage.prepare, in one transaction); the new connection, and what
    happened, the copy of its batches still to come (store_salvage.Salvage)."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    aside = f"{path}.corrupt-{stamp}"
    n = 1
    while os.path.exists(aside):
        n += 1
        aside = f"{path}.corrupt-{stamp}-{n}"
    for suffix in ("", "-wal", "-shm"):
        if os.path.lexists(path + suffix):  # a directory in the file's place goes aside too
            os.replace(path + suffix, aside + suffix)
    log.error("event=store_corrupt path=%s error=%r moved_to=%s", path, str(error), aside)
    create_private(path)
    db = open_checked(path)
    try:
        db.execute("BEGIN IMMEDIATE")
        expected, whole = store_salvage.prepare(db, aside, str(error))
        db.execute("COMMIT")
    except BaseException:
        db.close()
        raise
    rec = Recovery(moved_to=aside, error=str(error), complete=False, expected=expected)
    log.error(
        "event=store_recovered moved_to=%s batches=%s counters=%s: the readable batches are copied behind READY",
        aside,
        "unknown" if expected is None else expected,
        "exact" if whole else "from the index and the newest rows (stream_seq unreadable)",
    )
    return db, rec


@dataclass
class Opened:
    """A queue opened, as a BatchStore keeps it."""

    db: sqlite3.Connection
    recovery: Recovery | None = None
    wal_loss: WalLoss | None = None
    marked: bool = False
    background: store_check.Background | None = None


def open_store(path: str, recover: bool, epoch: int, *, damaged: str | None = None) -> Opened:
    """``open_queue`` (with ``damaged``, what the check behind READY found: straight to
    ``recover_file``); for the agent's opening (``recover``) also this run's open marker
    (``mark_open``; on a full disk it waits: the queue works without it) and the work
    behind READY, not yet started (store_check.Background)."""
    if damaged is None:
        db, rec, wal_was_there = open_queue(path, recover)
    else:
        (db, rec), wal_was_there = recover_file(path, sqlite3.DatabaseError(damaged)), True
    out = Opened(db, rec)
    if recover:
        try:
            out.wal_loss = mark_open(db, path, wal_was_there, epoch)
            out.marked = True
        except sqlite3.OperationalError as exc:
            if not is_disk_full(exc):
                db.close()
                raise
            log.warning("event=store_marker_skipped path=%s reason=%r", path, str(exc))
        out.background = store_check.Background(path, rec, connect)
    return out
