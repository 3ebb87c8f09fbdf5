"""The queue's bounds: a byte cap on the payloads waiting, with a policy when full
(``drop_oldest``, the default, or ``refuse_newest``), and a time to live.

Every batch dropped, refused or expired is counted per stream in the ``losses``
table, so the count survives restarts and reaches the health message; none goes
silently (docs/operations.md says what the bounds promise). These run inside the
store's transactions, on the connection they are given.
"""

from __future__ import annotations

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


def delete_expired(db: sqlite3.Connection, where: str, args: list) -> dict[str, int]:
    """Delete the batches ``where`` selects; count them per stream as expired."""
    counts = dict(
        db.execute(f"SELECT stream, count(*) FROM batches WHERE {where} GROUP BY stream", args).fetchall()
    )
    if counts:
        db.execute(f"DELETE FROM batches WHERE {where}", args)
        for s, n in counts.items():
            count_loss(db, s, "expired", n)
    return counts
