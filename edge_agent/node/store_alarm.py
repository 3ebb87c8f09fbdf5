"""Damage met by a running node's connections to the queue, told to the agent's store.

The full check behind READY (store_check.FullCheck) reads the whole file once; damage
that comes later (a failing card, a write torn under us) is met by whoever reads the
damaged page first: the uplink's reads, its deleter, the sampler's seal. Each of them
hands what it met to ``met()``: logged, and given to the agent's store's work behind
READY (store_check.Background, registered here by the file's path), whose ``damage`` the
agent acts on as on the full check's: the uplink stopped, the file moved aside and its
readable batches salvaged, a new epoch (agent._store_damage, BatchStore.recover_now).
The one that met it lets go (a thread ends, a seal counts its batches unstored) instead
of dying or raising again and again.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from edge_agent.errors import DiskFullError

log = logging.getLogger("edge_agent.store")

_lock = threading.Lock()
_owners: dict[str, Callable[[str], None]] = {}  # real path of the queue -> its Background.met

_DAMAGE_CODES = (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)
SHORT_READ = sqlite3.SQLITE_IOERR | (2 << 8)  # SQLITE_IOERR_SHORT_READ
ERRORS = (sqlite3.DatabaseError, UnicodeDecodeError)  # what a store's call may raise of the file


def is_damage(exc: BaseException) -> bool:
    """Whether ``exc`` says the file is damaged (as opposed to busy, full, or an I/O error
    of the moment): SQLite's corrupt or not-a-database, text that is not UTF-8 any more,
    a constraint a damaged index breaks."""
    if isinstance(exc, UnicodeDecodeError):
        return True
    if not isinstance(exc, sqlite3.DatabaseError):
        return False
    if isinstance(exc, sqlite3.OperationalError):
        extended = getattr(exc, "sqlite_errorcode", None) or 0
        if extended == SHORT_READ:  # a file shorter than its WAL index says: truncated under us
            return True
        return extended & 0xFF in _DAMAGE_CODES or "could not decode" in str(exc).lower()
    return True  # DatabaseError (malformed, not a database), IntegrityError, ...


def _key(path: str) -> str:
    return os.path.realpath(path)


def register(path: str, report: Callable[[str], None]) -> None:
    """The agent's store's work behind READY for ``path`` (the last one registered wins)."""
    with _lock:
        _owners[_key(path)] = report


def unregister(path: str, report: Callable[[str], None]) -> None:
    with _lock:
        if _owners.get(_key(path)) == report:
            del _owners[_key(path)]


def met(path: str, who: str, exc: BaseException) -> bool:
    """``who`` met ``exc`` on the queue at ``path``. Damage is logged and handed to the
    agent's store; True when it was (the caller lets go: the agent recovers the file),
    False when it is no damage or no agent's store of this file is there to recover it."""
    if not is_damage(exc):
        return False
    with _lock:
        report = _owners.get(_key(path))
    log.error(
        "event=store_damage_met path=%s by=%s error=%r recovery=%s",
        path,
        who,
        str(exc),
        "started" if report is not None else "none (no agent's store of this file)",
    )
    if report is None:
        return False
    report(f"{who} met damage: {exc}")
    return True


def unstored(store: Any, who: str, exc: BaseException) -> Callable[[str], object]:
    """A seal failed with ``exc``: for a full disk, how to count a batch unstored in the
    store (``store.count_unstored``); for damage met (``met``: the agent recovers the file,
    which has no room for a count), nothing more. Anything else is raised again."""
    if isinstance(exc, DiskFullError):
        return store.count_unstored
    if met(store.path, who, exc):
        return lambda stream: None
    raise exc


@contextmanager
def guard(path: str, who: str) -> Iterator[None]:
    """``with guard(path, who):`` damage met inside is reported (``met``) and goes no further."""
    try:
        yield
    except ERRORS as exc:
        if not met(path, who, exc):
            raise
