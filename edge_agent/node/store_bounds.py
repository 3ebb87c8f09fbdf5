"""The queue's bounds: a byte cap on the payloads waiting, with a policy when full
(``drop_oldest``, the default, or ``refuse_newest``), and a time to live.

Every batch dropped, refused or expired is counted per stream in the ``losses``
table, so the count survives restarts and reaches the health message; none goes
silently (docs/operations.md says what the bounds promise). These run inside the
store's transactions, on the connection they are given.
"""

from __future__ import annotations

import json
import logging
import sqlite3

log = logging.getLogger("edge_agent.store")

POLICIES = ("drop_oldest", "refuse_newest")


def count_loss(db: sqlite3.Connection, stream: str, reason: str, n: int = 1) -> None:
    """Add ``n`` batches lost for ``reason`` (dropped, refused, expired, unstored) to the stream's count."""
    db.execute(
        "INSERT INTO losses (stream, reason, count) VALUES (?, ?, ?) ON CONFLICT "
        "(stream, reason) DO UPDATE SET count = count + excluded.count",
        (stream, reason, n),
    )


def make_room(
    db: sqlite3.Connection, stream: str, size: int, *, used: int, max_size: int, policy: str
) -> bool:
    """Apply the cap for a new payload of ``size`` bytes with ``used`` bytes waiting;
    False if it must not be stored (refused and counted)."""
    if used + size <= max_size:
        return True
    if policy == "refuse_newest" or size > max_size:
        count_loss(db, stream, "refused")
        log.warning("event=batch_refused stream=%s reason=%r", stream, "store full (refuse_newest)")
        return False
    dropped: dict[str, int] = {}
    while used + size > max_size:
        chunk = db.execute("SELECT id, stream, length(payload) FROM batches ORDER BY id LIMIT 256").fetchall()
        if not chunk:
            break
        for row_id, old_stream, length in chunk:
            if used + size <= max_size:
                break
            db.execute("DELETE FROM batches WHERE id = ?", (row_id,))
            used -= length
            dropped[old_stream] = dropped.get(old_stream, 0) + 1
    for s, n in dropped.items():
        count_loss(db, s, "dropped", n)
        log.warning("event=batches_dropped stream=%s count=%d reason=%r", s, n, "store full (drop_oldest)")
    return True


EXPIRE_CHUNK = 256  # batches the time to live deletes per transaction, and looks at in the head per pass
EXPIRE_SCAN = 4096  # batches a pass of the time to live looks at beyond the head (see Sweep)


def expired_where(
    ttl: float, *, now: float, now_mono: float, boot_id: str | None, wall_trusted: bool
) -> tuple[str, list] | None:
    """The SQL condition (and its arguments) of batches older than ``ttl`` seconds, or None
    when no batch can be aged.

    Age is measured on the monotonic clock for batches of this boot, so a wall-clock
    jump cannot expire them early; batches of earlier boots are aged by the wall clock,
    and only while it is trusted (synchronised) and only if they were sealed on a
    synchronised clock too.
    """
    clauses, args = [], []
    if boot_id is not None:
        clauses.append("(boot_id = ? AND sealed_mono IS NOT NULL AND sealed_mono < ?)")
        args += [boot_id, now_mono - ttl]
    if wall_trusted:
        # a batch sealed on an unsynchronised clock has no trustworthy wall age: the cap bounds it
        clauses.append(
            "(clock_unsynced = 0 AND (boot_id IS NULL OR boot_id != ? OR sealed_mono IS NULL) AND sealed < ?)"
        )
        args += [boot_id or "", now - ttl]
    if not clauses:
        return None
    return " OR ".join(clauses), args


def _never_where(boot_id: str | None) -> tuple[str, list]:
    """Batches that expired_where can select under no clock while this boot lasts: sealed on
    an unsynchronised clock by another boot (only this boot's are ever restamped)."""
    if boot_id is None:
        return "clock_unsynced = 1", []
    return "clock_unsynced = 1 AND (boot_id IS NULL OR boot_id != ?)", [boot_id]


class Sweep:
    """Where the time to live looks for expired batches, kept between the passes of one
    connection. Batches are looked at in row-id order, a bounded number per pass, outside
    any transaction: no index is needed (none is written at each seal, for the SD card's
    sake), and no pass costs more however long the queue.

    A pass looks at the head of the queue first: the oldest batches, where they expire in
    the normal course (past a leading run that no pass of this boot can expire, stepped
    over once for good, on the pass's budget). Then it goes on through the queue from
    where the last pass stopped, wrapping round, so that a batch expired behind younger
    ones (after the wall clock was set back, or of this boot behind an earlier boot's while
    the clock is not trusted) is found within one round: the whole queue every
    len(queue) / EXPIRE_SCAN passes. Which batches expire is expired_where's alone.
    """

    def __init__(self) -> None:
        self.boot: str | None = None
        self.head_after = 0  # batches up to this row id never expire in self.boot (or are gone)
        self.after = 0  # where the round goes on

    def _look(self, db: sqlite3.Connection, where: tuple[str, list], after: int, n: int) -> list:
        """(row id, expired, never) of the ``n`` batches after row id ``after``."""
        never, never_args = _never_where(self.boot)
        return db.execute(
            f"SELECT id, ({where[0]}), ({never}) FROM batches WHERE id > ? ORDER BY id LIMIT ?",
            (*where[1], *never_args, after, n),
        ).fetchall()

    def expired(
        self,
        db: sqlite3.Connection,
        where: tuple[str, list],
        boot_id: str | None,
        budget: int | None,
        cap: int | None,
    ) -> list[int]:
        """Row ids of expired batches: the head's, then those of ``budget`` more batches of the
        round (None: the rest of the queue), at most ``cap`` (None: all); a pass stopped by
        the cap goes on from there the next time."""
        if boot_id != self.boot:
            self.boot, self.head_after = boot_id, 0
        left = budget
        while True:
            rows = self._look(db, where, self.head_after, EXPIRE_CHUNK)
            for row_id, _, never in rows:
                if not never:
                    break
                self.head_after = row_id
            else:  # the whole head never expires: step over the next one too, on the budget
                if len(rows) == EXPIRE_CHUNK and (left is None or left >= EXPIRE_CHUNK):
                    left = None if left is None else left - EXPIRE_CHUNK
                    continue
            break
        found = dict.fromkeys(r[0] for r in rows if r[1])  # an ordered set
        after = self.head_after if budget is None else self.after
        while left is None or left > 0:
            n = EXPIRE_SCAN if left is None else min(left, EXPIRE_SCAN)
            rows = self._look(db, where, after, n)
            for row_id, expired, _ in rows:
                if expired and row_id not in found:
                    if cap is not None and len(found) >= cap:
                        self.after = after  # this one first, the next time
                        return list(found)
                    found[row_id] = None
                after = row_id
            if len(rows) < n:
                after = 0  # the end of the queue: the round starts again at the beginning
                break
            if left is not None:
                left -= n
        self.after = after if budget is not None else 0
        return list(found)


def delete_expired(db: sqlite3.Connection, ids: list[int], where: tuple[str, list]) -> dict[str, int]:
    """Delete the batches of ``ids`` that ``where`` still selects (the uplink may have sent
    some since they were looked at); count them per stream as expired."""
    picked = f"FROM batches WHERE id IN (SELECT value FROM json_each(?)) AND ({where[0]})"
    args = (json.dumps(ids), *where[1])
    counts = dict(db.execute(f"SELECT stream, count(*) {picked} GROUP BY stream", args).fetchall())
    if counts:
        db.execute(f"DELETE {picked}", args)
        for s, n in counts.items():
            count_loss(db, s, "expired", n)
    return counts
