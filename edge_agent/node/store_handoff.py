"""Acknowledged deletes carried by the sampler's next commit.

On a live link the broker acknowledges each cycle's few batches within milliseconds of
their seal, and the uplink's deleter used to delete them in a transaction of its own: a
second commit a cycle, writing the very pages the seal had just written (the table's last
leaves, the queue's totals, page 1), about as many bytes of the card as the seal itself.
Handed over instead, they are deleted in the transaction of the sampler's next seal, and
those pages are written once (bench/bench_writes.py measures it).

A hand-over of more than HANDOFF_MAX rows (a backlog draining) is not made, and one that the
sampler has not taken within its ``wait`` (no seal: every sensor down, or the sampler
stopped) is taken back: the deleter deletes those rows itself, as before. A hand-over lives
in one process: the agent's sampler and uplink share the queue file through it, by path.
"""

from __future__ import annotations

import os
import threading

HANDOFF_MAX = 64  # rows: more is a backlog, deleted by the deleter's own transaction
COMMIT_WAIT = 15.0  # s a taken hand-over waits for the commit carrying it (SQLite's busy timeout and more)

_WAITING, _TAKEN, _DONE, _FAILED = range(4)


class Entry:
    """One hand-over: its row ids, and what became of them."""

    __slots__ = ("count", "ids", "state")

    def __init__(self, ids: list[int]) -> None:
        self.ids = ids
        self.count = 0
        self.state = _WAITING


class Handoff:
    """Row ids from deleters, waiting for the sampler's next transaction."""

    def __init__(self, wait: float) -> None:
        self.wait = wait
        self._cond = threading.Condition()
        self._waiting: list[Entry] = []
        self._closed = False

    def give(self, ids: list[int]) -> int | None:
        """Block until a commit of the sampler deleted ``ids``: how many were there; None
        when it did not within ``wait`` (or failed, or the hand-over closed): delete them."""
        entry = Entry(ids)
        with self._cond:
            if self._closed:
                return None
            self._waiting.append(entry)
            self._cond.wait_for(lambda: entry.state != _WAITING or self._closed, self.wait)
            if entry.state == _WAITING:  # not taken in time: take it back
                self._waiting.remove(entry)
                return None
            self._cond.wait_for(lambda: entry.state in (_DONE, _FAILED), COMMIT_WAIT)
            return entry.count if entry.state == _DONE else None

    def take(self) -> list[Entry]:
        """What is waiting, for the transaction about to begin (the sampler's thread)."""
        with self._cond:
            entries, self._waiting = self._waiting, []
            for entry in entries:
                entry.state = _TAKEN
            return entries

    def finish(self, entries: list[Entry], counts: list[int] | None) -> None:
        """The transaction committed (rows deleted per entry), or failed (None)."""
        with self._cond:
            for i, entry in enumerate(entries):
                if counts is None:
                    entry.state = _FAILED
                else:
                    entry.count, entry.state = counts[i], _DONE
            self._cond.notify_all()

    def close(self) -> None:
        """No more commits will come: every waiting giver deletes its rows itself."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()


_lock = threading.Lock()
_handoffs: dict[str, Handoff] = {}


def _key(path: str) -> str:
    return os.path.realpath(path)


def register(path: str, handoff: Handoff | None) -> None:
    """``handoff`` takes the deletes of the queue at ``path`` (None: none does any more)."""
    with _lock:
        old = _handoffs.pop(_key(path), None)
        if handoff is not None:
            _handoffs[_key(path)] = handoff
    if old is not None and old is not handoff:
        old.close()


def lookup(path: str) -> Handoff | None:
    with _lock:
        return _handoffs.get(_key(path))
