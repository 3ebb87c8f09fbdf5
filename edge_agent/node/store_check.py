"""How the queue file is checked, whatever its size: at opening, what the agent reads
first (``bounded_check``); behind READY, the whole file (``FullCheck``: PRAGMA
quick_check reads all of it, 15.7 s for the default cap's 642 MiB from a cold cache
here, past systemd's patience on an SD card), beside the salvage of a damaged file
(store_salvage.Salvage). ``Background`` is that work of the agent's store.

Damage the full check finds is recovered from as at a start (BatchStore.recover_now),
by the thread that owns the store; so is damage a running connection meets before or
after the check (store_alarm: the uplink's reads, its deleter, the sampler's seal). For
damage that ends a run all the same (its opening's reads), the next start's bounded check
reads the head of the queue, where the uplink and the time to live read first: a damaged page some way in is
read by the full check before the uplink's backlog (at most ``mqtt.backlog_rate`` a
second) reaches it, and each run that delivers brings it nearer the head, so a run
that cannot start never repeats.
"""

from __future__ import annotations

import functools
import logging
import sqlite3
import threading
from collections.abc import Callable
from typing import Any

from edge_agent.node import store_alarm, store_migrate, store_vfs
from edge_agent.node.store_salvage import Salvage

log = logging.getLogger("edge_agent.store")

HEAD_CHECK = 4096  # batches at the head of the queue read at opening (the TTL's first pass) ...
HEAD_PAYLOADS = 256, 1 << 20  # ... the payloads of the first (the uplink's first windows), up to 1 MiB
_SMALL = ("stream_seq", "losses", "chain_state", "open_marker", "queue_stats", "sqlite_sequence", "salvage")
_ROW = "id, stream, seq, sealed, clock_unsynced, boot_id, wall_offset_ms, sealed_mono, length(payload)"


def _shapes(db: sqlite3.Connection) -> dict[str, object]:
    """Each table's columns (name, type, NOT NULL, default, key) and each trigger's and
    index's text, whitespace aside, by name: what SQLite made of the schema's text."""
    out: dict[str, object] = {}
    for kind, name, sql in db.execute(
        "SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite%'"
    ).fetchall():
        if kind == "table":
            out[name] = [tuple(c[1:6]) for c in db.execute("SELECT * FROM pragma_table_xinfo(?)", (name,))]
        else:
            out[name] = " ".join(str(sql).split())
    return out


@functools.lru_cache(maxsize=4)
def _reference(schema: str) -> dict[str, object]:
    db = sqlite3.connect(":memory:")
    try:
        db.executescript(schema)
        return _shapes(db)
    finally:
        db.close()


def schema_problem(db: sqlite3.Connection, schema: str) -> str | None:
    """What of the queue's objects the file defines otherwise than ``schema`` (the queue's
    own script) does, or None. Damage to the text SQLite keeps its schema in can leave it
    parseable and wrong (a byte that ends a comment's line, so the comment takes the next
    column with it): no integrity check sees that, and the first read of the lost column
    would end every start. An object missing is not a problem here (the schema makes it)."""
    want = _reference(schema)
    for name, have in _shapes(db).items():
        if name not in want or have == want[name]:
            continue
        if not isinstance(have, list):
            return f"{name}: its definition is not the queue's"
        ours = want[name]
        assert isinstance(ours, list)
        if [c[0] for c in have] != [c[0] for c in ours]:
            return f"{name}: its columns are ({', '.join(str(c[0]) for c in have)}), not the queue's"
        theirs, mine = next((a, b) for a, b in zip(have, ours, strict=True) if a != b)
        return f"{name}: column {theirs[0]} is {_column(theirs)}, where the queue's is {_column(mine)}"
    return None


def _column(c: tuple) -> str:
    """A column as table_xinfo gives it: (name, type, notnull, default, key)."""
    return " ".join(
        [str(c[1]) or "untyped", "NOT NULL" if c[2] else "NULL"]
        + ([f"DEFAULT {c[3]}"] if c[3] is not None else [])
        + (["key"] if c[4] else [])
    )


def bounded_check(db: sqlite3.Connection) -> str:
    """ "ok", or what is damaged of what the agent reads first: the small tables whole
    (PRAGMA quick_check of each, with its indexes); the head of the queue (HEAD_CHECK rows,
    the payloads of the first HEAD_PAYLOADS), its newest rows (where the seals write) and,
    in a file that has a (stream, seq) index (store_migrate), each stream's end in it, and the head of the index of batches to
    restamp. A few hundred pages whatever the queue's size (14 ms from a cold cache at the
    default cap, where PRAGMA quick_check reads 642 MiB); the rest is FullCheck's."""
    have = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'index')")}
    for table in _SMALL:
        if table in have:
            result = db.execute(f"PRAGMA quick_check({table})").fetchone()[0]
            if result != "ok":
                return f"{table}: {result}"
    if "batches" not in have:
        return "ok"
    rows, size = HEAD_PAYLOADS
    for (payload,) in db.execute("SELECT payload FROM batches ORDER BY id LIMIT ?", (rows,)):
        size -= len(payload)
        if size < 0:
            break
    reads = [f"SELECT {_ROW} FROM batches ORDER BY id LIMIT {HEAD_CHECK}"]
    reads.append(f"SELECT {_ROW} FROM batches ORDER BY id DESC LIMIT 64")
    if "batches_unsynced" in have:
        reads.append(
            f"SELECT {_ROW} FROM batches INDEXED BY batches_unsynced WHERE clock_unsynced = 1 "
            f"ORDER BY id LIMIT {HEAD_CHECK}"
        )
    for sql in reads:
        for _ in db.execute(sql):
            pass
    if "stream_seq" in have and store_migrate.seq_index(db) is not None:
        for (stream,) in db.execute("SELECT stream FROM stream_seq").fetchall():
            db.execute("SELECT max(seq) FROM batches WHERE stream = ?", (stream,)).fetchone()
    return "ok"


class FullCheck:
    """PRAGMA quick_check of the whole file on a read-only connection of its own, on a
    thread of its own: ``damage`` is what it found (None: whole, or not checked)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.damage: str | None = None
        self.done = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self.run, name="store-check", daemon=True)
            self._thread.start()

    def run(self) -> None:
        db = None
        try:
            db = sqlite3.connect(store_vfs.uri(self.path, readonly=True), uri=True)
            db.set_progress_handler(self._stop.is_set, 10_000)  # True interrupts: a closing store
            result = db.execute("PRAGMA quick_check").fetchone()[0]
            if result != "ok":
                self.damage = f"integrity check failed: {result}"
        except Exception as exc:  # noqa: BLE001 - whatever the check raises is news of the file
            code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
            if code in (sqlite3.SQLITE_IOERR, sqlite3.SQLITE_FULL, sqlite3.SQLITE_BUSY):
                log.warning("event=store_check_skipped path=%s reason=%r", self.path, str(exc))
            elif code != sqlite3.SQLITE_INTERRUPT:
                self.damage = f"integrity check failed: {exc}"
        finally:
            if db is not None:
                db.close()
            self.done.set()
        if self.damage is not None:
            log.error("event=store_damage_found path=%s error=%r", self.path, self.damage)

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)


class Background:
    """The agent's store's work behind READY: the full check of the queue, and the salvage
    of the damaged files still to copy (``recovery`` not complete); and what the running
    node's connections to the file met (``met``, from store_alarm), as if the check had."""

    def __init__(self, path: str, recovery: Any, connect: Callable[[str], sqlite3.Connection]) -> None:
        self.path = path
        self.check = FullCheck(path)
        pending = recovery is not None and not recovery.complete
        self.salvage = Salvage(path, recovery, connect) if pending else None
        self.met_damage: str | None = None
        store_alarm.register(path, self.met)

    def met(self, damage: str) -> None:
        if self.met_damage is None:  # the first says where; the others follow from it
            self.met_damage = damage

    @property
    def damage(self) -> str | None:
        return self.check.damage or self.met_damage

    def start(self) -> None:
        self.check.start()
        if self.salvage is not None:
            self.salvage.start()

    def finish_salvage(self, timeout: float | None = None) -> bool:
        """Wait for the salvage (running it on this thread if it was not started); whether it is done."""
        if self.salvage is None:
            return True
        if not self.salvage.done.is_set() and self.salvage._thread is None:
            self.salvage.run()
        return self.salvage.done.wait(timeout)

    def stop(self) -> None:
        store_alarm.unregister(self.path, self.met)
        self.check.stop()
        if self.salvage is not None:
            self.salvage.stop()
