"""The rows SQLite can still read from a damaged queue file (``readable_rows``), and the
pages that say where a damaged part of its table ends (``Pages``): for the salvage
(store_salvage.py).

SQLite answers a range query or fails; it does not say which ids a damaged page held,
nor where the next readable page begins, so a search by ids alone is bounded by the ids'
span, not by the damage (ids are never reused: a queue of 1,000 rows can have ids up to
10 M, with gaps of any width; the old salvage looked up every id up to the highest). The
interior pages of the table's b-tree say it: each child's range of ids. ``Pages.locate``
descends them, MAX_DEPTH pages at most, to the leaf that holds an id: its range, and the
ids it lists, for lookups one by one; where an interior page on the way is damaged
itself, that page's range and the ids the leaves under it list, each page read once. A
damaged leaf so costs a bounded number of queries, a damaged interior page a lookup per
row under it, whatever the span of the ids.

A page is the newest committed copy of it: the write-ahead log's frames, up to its last
valid commit (salts and the cumulative checksum, as SQLite checks them: the file format,
https://www.sqlite.org/fileformat2.html, "The WAL file"), over the main file; a cell
pointer is read within its page, as SQLite's search reads it. Nothing here trusts a byte:
a cell that does not parse is left out, each step down narrows the range, a descent ends
within MAX_DEPTH pages and a walk under a page reads each page once.
"""

from __future__ import annotations

import os
import sqlite3
import struct
import sys
import threading
import urllib.parse
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import pairwise
from typing import BinaryIO

MAX_DEPTH = 20  # SQLite's own bound on a b-tree's depth (BTCURSOR_MAX_DEPTH)
STEPS_PER_KIB = 50_000  # SQLite steps a walk may take per KiB of the damaged file
FIRST, LAST = -(1 << 63), (1 << 63) - 1  # the smallest and the largest row id
COLUMNS = "stream, seq, sealed, payload, clock_unsynced, boot_id, wall_offset_ms, sealed_mono"
# What reading a damaged file may raise: SQLite's errors, and text that is not UTF-8 (or
# a value of the wrong type) from bytes the damage changed.
UNREADABLE = (sqlite3.DatabaseError, TypeError, ValueError, OverflowError)
_WAL_MAGIC = (0x377F0682, 0x377F0683)  # checksums over little- or big-endian words
_M32 = 0xFFFFFFFF
_INTERIOR, _LEAF = 0x05, 0x0D  # table b-tree page types


def _checksum(data: bytes, s0: int, s1: int, big_endian: bool) -> tuple[int, int]:
    words = array("I", data)
    if big_endian != (sys.byteorder == "big"):
        words.byteswap()
    for i in range(0, len(words), 2):
        s0 = (s0 + words[i] + s1) & _M32
        s1 = (s1 + words[i + 1] + s0) & _M32
    return s0, s1


def _varint(buf: bytes, at: int) -> tuple[int, int]:
    """SQLite's varint at ``at`` (signed 64-bit), and the offset after it."""
    value = 0
    for i in range(8):
        if at + i >= len(buf):
            raise ValueError("varint past the page")
        b = buf[at + i]
        value = (value << 7) | (b & 0x7F)
        if b < 0x80:
            break
    else:
        if at + 8 >= len(buf):
            raise ValueError("varint past the page")
        value = (value << 8) | buf[at + 8]
        i = 8
    if value >= 1 << 63:
        value -= 1 << 64
    return value, at + i + 1


@dataclass
class Leaf:
    """Where an id lives: the range (after, up_to] (None: unbounded) of the deepest page
    on the way down from the root that is whole, and the ids listed under it, ascending."""

    after: int | None
    up_to: int | None
    ids: Iterator[int] = field(default_factory=lambda: iter(()))


class Pages:
    """Read-only access to the pages of ``path`` and its WAL (``path``-wal)."""

    def __init__(self, path: str) -> None:
        self._main = open(path, "rb")
        self._wal: BinaryIO | None = None
        self.frames: dict[int, int] = {}  # page number -> offset of its newest committed frame
        head = self._main.read(100)
        size = int.from_bytes(head[16:18], "big") if len(head) >= 18 else 0
        self.page_size = 65536 if size == 1 else size
        self.reserved = head[20] if len(head) > 20 else 0
        self.page_count = 0
        try:
            self._wal = open(path + "-wal", "rb")
            self._read_wal(self._wal)  # a damaged main header: the page size from the WAL's
        except OSError:
            pass
        if self._valid_size() and not self.frames:  # a page cut short reads as zeros, as in SQLite
            self.page_count = -(-os.fstat(self._main.fileno()).st_size // self.page_size)

    def _valid_size(self) -> bool:
        return 512 <= self.page_size <= 65536 and self.page_size & (self.page_size - 1) == 0

    def _read_wal(self, wal: BinaryIO) -> None:
        head = wal.read(32)
        if len(head) < 32:
            return
        magic, _version, page_size, _ckpt, salt1, salt2, c0, c1 = struct.unpack(">8I", head)
        if magic not in _WAL_MAGIC:
            return
        big = magic == _WAL_MAGIC[1]
        if _checksum(head[:24], 0, 0, big) != (c0, c1):
            return
        if not self._valid_size():
            self.page_size = page_size  # the main file's header is damaged; the WAL says
            if not self._valid_size():
                return
        if page_size != self.page_size or self.reserved > 255:
            return
        s0, s1 = c0, c1
        pending: dict[int, int] = {}
        at = 32
        while True:
            frame = wal.read(24 + page_size)
            if len(frame) < 24 + page_size:
                break
            pgno, commit, f1, f2, k0, k1 = struct.unpack(">6I", frame[:24])
            if (f1, f2) != (salt1, salt2):
                break
            s0, s1 = _checksum(frame[:8] + frame[24:], s0, s1, big)
            if (s0, s1) != (k0, k1):
                break
            pending[pgno] = at + 24
            if commit:  # a committed transaction: its frames count, and the size it left
                self.frames.update(pending)
                pending.clear()
                self.page_count = commit
            at += 24 + page_size

    def page(self, pgno: int) -> bytes | None:
        """The page's bytes (usable part), or None if it is not in the database."""
        if not self._valid_size() or not 1 <= pgno <= self.page_count:
            return None
        at = self.frames.get(pgno)
        f = self._main if at is None or self._wal is None else self._wal
        f.seek((pgno - 1) * self.page_size if at is None else at)
        data = f.read(self.page_size).ljust(self.page_size, b"\0")
        return data[: self.page_size - self.reserved]

    def _cells(self, pgno: int) -> tuple[int, list[tuple[int, int] | None], int] | None:
        """(page type, [(child or 0, id), or None where a cell does not parse], right-most
        child) of a page of a table's b-tree; None for any other page."""
        data = self.page(pgno)
        if data is None:
            return None
        off = 100 if pgno == 1 else 0
        kind = data[off]
        if kind not in (_INTERIOR, _LEAF):
            return None
        ncell = int.from_bytes(data[off + 3 : off + 5], "big")
        ptrs = off + (12 if kind == _INTERIOR else 8)
        if ptrs + 2 * ncell > len(data):
            return None
        right = int.from_bytes(data[off + 8 : off + 12], "big") if kind == _INTERIOR else 0
        cells: list[tuple[int, int] | None] = []
        mask = self.page_size - 1  # as SQLite reads a cell pointer (findCell): within the page
        for i in range(ncell):
            p = int.from_bytes(data[ptrs + 2 * i : ptrs + 2 * i + 2], "big") & mask
            try:
                if kind == _INTERIOR:
                    if p + 4 >= len(data):
                        raise ValueError("cell past the page")
                    cells.append((int.from_bytes(data[p : p + 4], "big"), _varint(data, p + 4)[0]))
                else:
                    cells.append((0, _varint(data, _varint(data, p)[1])[0]))
            except ValueError:
                cells.append(None)
        return kind, cells, right

    def locate(self, root: int, key: int) -> Leaf:
        """The leaf of the table whose b-tree starts at ``root`` that would hold ``key``.

        Each step down narrows the range to a child's: (the id of the cell before, the id
        of its cell], or past the last for the right-most child. It ends at a leaf (the
        ids it lists), at a page that is not a table's (none: SQLite cannot read through
        it either), or at an interior page that is damaged: a cell that does not parse,
        ids out of order or outside its range, a child that is no page. SQLite's search
        through such a page may still reach some of its children, so the ids are then
        those listed in every leaf under it (each page read once), for lookups one by one."""
        after: int | None = None
        up_to: int | None = None
        pgno = root
        for _ in range(MAX_DEPTH):
            parsed = self._cells(pgno)
            if parsed is None:
                return Leaf(after, up_to)
            kind, cells, right = parsed
            if kind == _LEAF or not self._whole(cells, right, after, up_to):
                return Leaf(after, up_to, self._ids_under(pgno, after, up_to))
            child = right
            for cell_child, k in cells:  # type: ignore[misc]  # whole: every cell parsed
                if key <= k:
                    child, up_to = cell_child, k
                    break
                after = k
            pgno = child
        return Leaf(after, up_to)

    def _whole(self, cells: list, right: int, after: int | None, up_to: int | None) -> bool:
        keys = [c[1] for c in cells if c is not None]
        return (
            len(keys) == len(cells)
            and all(a < b for a, b in pairwise(keys))
            and (not keys or ((after is None or keys[0] > after) and (up_to is None or keys[-1] <= up_to)))
            and all(1 <= c[0] <= self.page_count for c in cells)
            and 1 <= right <= self.page_count
        )

    def _ids_under(self, top: int, after: int | None, up_to: int | None) -> Iterator[int]:
        """The ids in (after, up_to] that the leaves under page ``top`` list, leaf by leaf in
        the order of the b-tree's children (each page read at most once)."""
        stack, seen = [top], set[int]()
        while stack:
            pgno = stack.pop()
            if pgno in seen or len(seen) >= self.page_count:
                continue
            seen.add(pgno)
            parsed = self._cells(pgno)
            if parsed is None:
                continue
            kind, cells, right = parsed
            if kind == _INTERIOR:
                children = [c[0] for c in cells if c is not None] + [right]
                stack.extend(c for c in reversed(children) if 1 <= c <= self.page_count)
                continue
            yield from sorted(
                {
                    k
                    for _, k in filter(None, cells)
                    if (after is None or k > after) and (up_to is None or k <= up_to)
                }
            )

    def close(self) -> None:
        self._main.close()
        if self._wal is not None:
            self._wal.close()


def open_old(aside: str, stop: threading.Event | None = None) -> sqlite3.Connection | None:
    """The damaged file, read only, text as bytes (decoded row by row: a damaged name
    spoils its row only), its steps bounded; None if SQLite cannot open it at all. With
    writable_schema, SQLite leaves out an object whose text in the schema no longer parses
    rather than refusing every read (the file is read only: nothing is written): damage to
    the text of a trigger or of a small table costs that object, not the batches."""
    try:
        old = sqlite3.connect(f"file:{urllib.parse.quote(aside)}?mode=ro", uri=True, check_same_thread=False)
    except UNREADABLE:
        return None
    old.execute("PRAGMA writable_schema=ON")  # a flag: reads nothing
    old.text_factory = bytes
    size = sum(os.path.getsize(aside + s) for s in ("", "-wal") if os.path.isfile(aside + s))
    budget = [STEPS_PER_KIB * (size // 1024 + 64) // 1000]  # in thousands of steps

    def spend() -> int:
        budget[0] -= 1
        return int(budget[0] < 0 or (stop is not None and stop.is_set()))  # nonzero interrupts

    old.set_progress_handler(spend, 1000)
    return old


def root_page(old: sqlite3.Connection) -> int | None:
    """The root page of the damaged file's table of batches, if its schema says."""
    try:
        row = old.execute(
            "SELECT rootpage FROM sqlite_master WHERE type = 'table' AND name = 'batches'"
        ).fetchone()
    except UNREADABLE:
        return None
    return row[0] if row and isinstance(row[0], int) else None


def open_pages(path: str) -> Pages | None:
    try:
        return Pages(path)
    except OSError:
        return None


class Interrupted(Exception):
    """The walk was asked to stop, or spent its budget of SQLite steps."""


@dataclass
class Walk:
    """Where ``readable_rows`` is, and what it did."""

    pos: int = FIRST  # every id below is read, or known unreadable
    queries: int = 0
    skipped: int = 0  # leaf ranges stepped over
    lost: int = 0  # ids a damaged leaf lists that SQLite cannot read


def _failed(exc: BaseException) -> None:
    """A query failed: damage, unless it was interrupted (then the walk stops)."""
    if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_INTERRUPT:
        raise Interrupted(str(exc)) from exc


def readable_rows(
    old: sqlite3.Connection, pages: Callable[[], Pages | None], root: int | None, walk: Walk
) -> Iterator[tuple]:
    """(id, COLUMNS...) of every row of ``batches`` SQLite can read from ``walk.pos`` on,
    ids ascending; ``root`` is its b-tree's root page.

    A scan from ``walk.pos`` gives rows until it fails. Failing after a row, it is tried
    again just after that row; failing at once, ``pages()`` (opened at the first damage)
    locates the leaf that holds ``walk.pos``: the ids it lists are looked up one by one, and
    the scan goes on past its range. Each query so gives a row beyond every row before, or
    moves ``walk.pos`` past a leaf's range: the queries are bounded by the rows read and the
    ranges that fail, whatever the ids' span. ``walk.pos`` is past the last row given, so a
    caller that stops may go on from it later."""
    scan = f"SELECT id, {COLUMNS} FROM batches WHERE id >= ? ORDER BY id"
    one = f"SELECT id, {COLUMNS} FROM batches WHERE id = ?"
    opened: Pages | None = None
    while walk.pos <= LAST:
        # A row is given once the next is larger, or the scan ended: an id the damage made
        # larger than its neighbours must not carry walk.pos past the rows that follow it.
        held: tuple | None = None
        read, failed = 0, False
        walk.queries += 1
        try:
            for row in old.execute(scan, (walk.pos,)):
                if not isinstance(row[0], int) or row[0] <= (walk.pos - 1 if held is None else held[0]):
                    failed = True  # ids out of order: damage SQLite did not notice
                    break
                if held is not None:
                    walk.pos = held[0] + 1
                    read += 1
                    yield held
                held = row
        except UNREADABLE as exc:
            _failed(exc)
            failed = True
        if not failed:
            if held is not None:
                walk.pos = held[0] + 1
                yield held
            return
        if read:
            continue  # from just after the last row given: failing at once, its leaf is stepped over
        if opened is None:
            opened = pages()
        if opened is None or root is None:
            return
        leaf = opened.locate(root, walk.pos)
        walk.skipped += 1
        start = walk.pos  # kept until the range is done: a caller that stops looks it up again
        for row_id in leaf.ids:
            if row_id < start:
                continue
            walk.queries += 1
            try:
                found = old.execute(one, (row_id,)).fetchone()
            except UNREADABLE as exc:
                _failed(exc)
                found = None
            if found is None:
                walk.lost += 1
            else:
                yield found
        if leaf.up_to is None or leaf.up_to >= LAST:
            return
        walk.pos = max(walk.pos, leaf.up_to + 1)
