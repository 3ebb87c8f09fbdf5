"""A group of records into PostgreSQL, in one transaction: exactly once per dedupe key.

One transaction a group: the batches' keys first, in key order (``INSERT ... ON CONFLICT DO
UPDATE`` adds to ``received_count`` and says which keys are new), then the samples of the
new ones alone (one binary ``COPY``), node status and health (upserts, the newest received
wins), dead letters. A key a concurrent worker is inserting blocks ours until it commits,
then counts as a duplicate: a batch's samples are written once, by the transaction that
inserted its key. Locks are taken in one order (keys sorted, then nodes), so workers do not
deadlock each other.

``write_group`` is what the worker calls: when PostgreSQL refuses a group's data (a time
beyond its range, a string jsonb cannot hold), each record is written alone and the one it
refuses becomes a dead letter with PostgreSQL's reason, so one bad message never stops the
others or comes back in a loop. A connection that fails is the caller's (OperationalError:
nothing of the group was committed; write it again).

Stream and channel ids are looked up once and cached; the new ones of a group are inserted in
their own short transaction before the group's (an id nobody uses yet harms nobody).
"""

from __future__ import annotations

import functools
import logging
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from edge_agent import wire
from edge_agent.backbone.messages import (
    BatchRecord,
    DeadLetter,
    HealthRecord,
    Record,
    StatusRecord,
)
from edge_agent.wire.model import decimals_of

log = logging.getLogger("edge_agent.backbone")

# PostgreSQL's binary COPY: a header, then per row the field count and each field's length and
# big-endian bytes (-1: NULL); timestamptz is int64 microseconds since 2000-01-01 UTC.
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)
_COPY_TRAILER = b"\xff\xff"
_ROW = struct.Struct(">hiqidiiii?")  # t, value, channel_id, quality NULL, clock_unsynced
_ROW_Q = struct.Struct(">hiqidiiihi?")  # ... with a quality
_PG_EPOCH_MS = 946_684_800_000  # 2000-01-01 in Unix ms
_COPY_SAMPLES = "COPY samples (t, value, channel_id, quality, clock_unsynced) FROM STDIN (FORMAT BINARY)"

_INSERT_BATCHES = """
INSERT INTO batches (stream_id, epoch, seq, t0, t_last, period_ms, flags, version, payload_bytes,
                     samples, received, last_received, received_count)
SELECT sid, ep, sq, 'epoch'::timestamptz + t0 * interval '1 ms', 'epoch'::timestamptz + tl * interval '1 ms',
       per, fl, ver, pb, ns, to_timestamp(rc), to_timestamp(rl), cnt
FROM unnest(%s::int4[], %s::int8[], %s::int8[], %s::int8[], %s::int8[], %s::int8[], %s::int2[], %s::int2[],
            %s::int4[], %s::int4[], %s::float8[], %s::float8[], %s::int4[])
     AS u(sid, ep, sq, t0, tl, per, fl, ver, pb, ns, rc, rl, cnt)
ORDER BY sid, ep, sq
ON CONFLICT (stream_id, epoch, seq) DO UPDATE
    SET received_count = batches.received_count + EXCLUDED.received_count,
        last_received = greatest(batches.last_received, EXCLUDED.last_received)
RETURNING stream_id, epoch, seq, received_count
"""

_UPSERT_STATUS = """
INSERT INTO node_status AS n (node, state, status, status_received, birth, will)
VALUES (%(node)s, %(state)s, %(doc)s, to_timestamp(%(at)s),
        CASE WHEN %(state)s = 'online' THEN to_timestamp(%(at)s) END,
        CASE WHEN %(state)s = 'offline' THEN to_timestamp(%(at)s) END)
ON CONFLICT (node) DO UPDATE SET
    state = CASE WHEN n.status_received > EXCLUDED.status_received THEN n.state ELSE EXCLUDED.state END,
    status = CASE WHEN n.status_received > EXCLUDED.status_received THEN n.status ELSE EXCLUDED.status END,
    status_received = greatest(n.status_received, EXCLUDED.status_received),
    birth = greatest(n.birth, EXCLUDED.birth),
    will = greatest(n.will, EXCLUDED.will)
"""

_UPSERT_HEALTH = """
INSERT INTO node_status AS n (node, health, health_received) VALUES (%(node)s, %(doc)s, to_timestamp(%(at)s))
ON CONFLICT (node) DO UPDATE SET
    health = CASE WHEN n.health_received > EXCLUDED.health_received THEN n.health ELSE EXCLUDED.health END,
    health_received = greatest(n.health_received, EXCLUDED.health_received)
"""

_INSERT_DEAD = (
    "INSERT INTO dead_letters (topic, payload, reason, received) VALUES (%s, %s, %s, to_timestamp(%s))"
)

_INSERT_STREAMS = """
INSERT INTO streams (node, stream) SELECT * FROM unnest(%s::text[], %s::text[]) ORDER BY 1, 2
ON CONFLICT DO NOTHING
"""
_SELECT_STREAMS = """
SELECT s.id, s.node, s.stream FROM streams s JOIN unnest(%s::text[], %s::text[]) AS u(node, stream)
    ON (s.node, s.stream) = (u.node, u.stream)
"""
_CHANNEL_COLUMNS = "stream_id, name, unit, resolution, reconstruction, bound, bound_relative"
_CHANNEL_ARRAYS = "%s::int4[], %s::text[], %s::text[], %s::float8[], %s::text[], %s::float8[], %s::bool[]"
_INSERT_CHANNELS = f"""
INSERT INTO channels ({_CHANNEL_COLUMNS}) SELECT * FROM unnest({_CHANNEL_ARRAYS}) ORDER BY 1, 2, 3, 4, 5, 6, 7
ON CONFLICT DO NOTHING
"""
_SELECT_CHANNELS = f"""
SELECT c.id, c.stream_id, c.name, c.unit, c.resolution, c.reconstruction, c.bound, c.bound_relative
FROM channels c JOIN unnest({_CHANNEL_ARRAYS}) AS u({_CHANNEL_COLUMNS})
    ON ({", ".join("c." + x for x in _CHANNEL_COLUMNS.split(", "))}) = ({", ".join("u." + x for x in _CHANNEL_COLUMNS.split(", "))})
"""

# What PostgreSQL refuses because of a message's content, not because of the database.
REFUSED = (psycopg.DataError, psycopg.IntegrityError)


@dataclass
class Counts:
    """What a group did: new batches, duplicates (keys seen before, or twice in the group),
    samples written, status and health reports, dead letters."""

    batches: int = 0
    duplicates: int = 0
    samples: int = 0
    status: int = 0
    health: int = 0
    dead_letters: int = 0

    def add(self, other: Counts) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


def _channel_rows(ch: wire.ChannelData, cid: int, unsynced: bool) -> bytes | None:
    """A channel without quality flags as its binary COPY rows in one ``struct`` call: the
    template row's fields repeated, the times and values put in by slice assignment. None for
    a flagged channel, or a time past int64 microseconds: those go row by row."""
    n = len(ch.times_ms)
    if ch.flags or not n:
        return None
    args: list = [5, 8, 0, 8, 0.0, 4, cid, -1, 1, unsynced] * n
    args[2::10] = [(t - _PG_EPOCH_MS) * 1000 for t in ch.times_ms]
    args[4::10] = values(ch)
    try:
        return _rows_struct(n).pack(*args)
    except struct.error:
        return None


@functools.lru_cache(maxsize=512)
def _rows_struct(n: int) -> struct.Struct:
    return struct.Struct(">" + _ROW.format[1:] * n)


@functools.lru_cache(maxsize=1024)
def _scale(resolution: float) -> tuple[int, int] | None:
    """(m, p) with resolution == m / p exactly, p a power of ten; None when there is none."""
    p = 10 ** decimals_of(resolution)
    m = round(resolution * p)
    return (m, p) if m / p == resolution else None


def values(ch: wire.ChannelData) -> list[float]:
    """``ch.values()``, the same floats, without a ``round()`` a point: ``round(q * r, d)`` is
    the double nearest q x m / 10^d (r = m / 10^d), which is what int / int gives, exactly
    rounded, while q x m stays below 2^50 (else ``ch.values()`` itself)."""
    scale = _scale(ch.resolution)
    if scale is None or not ch.values_q or max(map(abs, ch.values_q)) * abs(scale[0]) >= 1 << 50:
        return ch.values()
    m, p = scale
    return [float(q * m) for q in ch.values_q] if p == 1 else [q * m / p for q in ch.values_q]


def _channel_key(sid: int, ch: wire.ChannelData) -> tuple:
    """A channel's identity: its stream and its whole description."""
    return (sid, ch.name, ch.unit, ch.resolution, ch.reconstruction, ch.bound, ch.bound_relative)


def _text(s: str) -> str:
    """A str PostgreSQL's text takes (it has no NUL)."""
    return s.replace("\x00", "\\x00")


class Writer:
    """Writes groups of records on one connection (psycopg, autocommit: each group one
    explicit transaction). ``conn`` may be replaced after a failure; the caches stay."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self._streams: dict[tuple[str, str], int] = {}
        self._channels: dict[tuple, int] = {}

    # --- ids -------------------------------------------------------------------------------

    def _resolve_ids(self, batches: list[wire.Batch]) -> None:
        """Every stream and channel of these batches into the caches; the new ones inserted in
        one short transaction (two statements each), sorted, so workers do not deadlock."""
        streams = sorted({(b.node, b.stream) for b in batches} - self._streams.keys())
        if streams:
            cols = [list(c) for c in zip(*streams)]
            with self.conn.transaction():
                self.conn.execute(_INSERT_STREAMS, cols)
                for sid, *key in self.conn.execute(_SELECT_STREAMS, cols):
                    self._streams[tuple(key)] = sid
        channels = sorted(
            {_channel_key(self._streams[(b.node, b.stream)], ch) for b in batches for ch in b.channels}
            - self._channels.keys()
        )
        if channels:
            cols = [list(c) for c in zip(*channels)]
            with self.conn.transaction():
                self.conn.execute(_INSERT_CHANNELS, cols)
                for cid, *key in self.conn.execute(_SELECT_CHANNELS, cols):
                    self._channels[tuple(key)] = cid

    # --- one group -------------------------------------------------------------------------

    def write(self, records: Sequence[Record]) -> Counts:
        """All of ``records`` in one transaction; raises what psycopg raises (nothing committed)."""
        counts = Counts()
        batches: dict[tuple[int, int, int], tuple[BatchRecord, list[int], int, float]] = {}
        self._resolve_ids([r.batch for r in records if isinstance(r, BatchRecord)])
        for r in records:
            if isinstance(r, BatchRecord):
                b = r.batch
                sid = self._streams[(b.node, b.stream)]
                key = (sid, b.epoch, b.seq)
                seen = batches.get(key)
                if seen is None:
                    cids = [self._channels[_channel_key(sid, ch)] for ch in b.channels]
                    batches[key] = (r, cids, 1, r.msg.received)
                else:
                    batches[key] = (seen[0], seen[1], seen[2] + 1, max(seen[3], r.msg.received))
        statuses = sorted(
            (r for r in records if isinstance(r, StatusRecord)), key=lambda r: (r.node, r.msg.received)
        )
        healths = sorted(
            (r for r in records if isinstance(r, HealthRecord)), key=lambda r: (r.node, r.msg.received)
        )
        dead = [r for r in records if isinstance(r, DeadLetter)]
        with self.conn.transaction(), self.conn.cursor() as cur:
            if batches:
                new = self._insert_batches(cur, batches)
                counts.batches = len(new)
                counts.duplicates = sum(n for _, _, n, _ in batches.values()) - len(new)
                counts.samples = self._copy_samples(cur, [batches[k] for k in new])
            if statuses:
                cur.executemany(
                    _UPSERT_STATUS,
                    [
                        {"node": r.node, "state": r.state, "doc": Jsonb(r.doc), "at": r.msg.received}
                        for r in statuses
                    ],
                )
                counts.status = len(statuses)
            if healths:
                cur.executemany(
                    _UPSERT_HEALTH,
                    [{"node": r.node, "doc": Jsonb(r.doc), "at": r.msg.received} for r in healths],
                )
                counts.health = len(healths)
            if dead:
                cur.executemany(
                    _INSERT_DEAD,
                    [(_text(d.msg.topic), d.msg.payload, _text(d.reason), d.msg.received) for d in dead],
                )
                counts.dead_letters = len(dead)
        return counts

    def _insert_batches(self, cur: Any, batches: dict) -> list[tuple[int, int, int]]:
        """Insert or count each key; the keys that are new, in key order."""
        keys = sorted(batches)
        cols: list[list] = [[] for _ in range(13)]
        for key in keys:
            r, _, n, last = batches[key]
            b = r.batch
            times = [max(ch.times_ms) for ch in b.channels if ch.times_ms]
            row = (
                *key,
                b.t0_ms,
                max(times) if times else None,
                b.period_ms,
                b.flags,
                b.version,
                len(r.msg.payload),
                sum(len(ch.times_ms) for ch in b.channels),
                r.msg.received,
                last,
                n,
            )
            for col, value in zip(cols, row):
                col.append(value)
        cur.execute(_INSERT_BATCHES, cols)
        counts = {(sid, ep, sq): count for sid, ep, sq, count in cur.fetchall()}
        # a new key's row holds just the copies this group brought; an old one's has more
        return [k for k in keys if counts[k] == batches[k][2]]

    def _copy_samples(self, cur: Any, new: list[tuple[BatchRecord, list[int], int, float]]) -> int:
        parts, rows = [_COPY_HEADER], 0
        pack, pack_q = _ROW.pack, _ROW_Q.pack
        for r, channel_ids, _, _ in new:
            unsynced = bool(r.batch.flags & wire.FLAG_CLOCK_UNSYNCED)
            slow = []
            for ch, cid in zip(r.batch.channels, channel_ids):
                fast = _channel_rows(ch, cid, unsynced)
                if fast is None:
                    slow.append((ch, cid))
                else:
                    parts.append(fast)
                    rows += len(ch.times_ms)
            for ch, cid in slow:  # flagged points carry their quality (the same rows as sample_rows)
                quality = dict(ch.flags)
                for k, (t, value) in enumerate(zip(ch.times_ms, values(ch))):
                    us = (t - _PG_EPOCH_MS) * 1000
                    q = quality.get(k)
                    if q is None:
                        parts.append(pack(5, 8, us, 8, value, 4, cid, -1, 1, unsynced))
                    else:
                        parts.append(pack_q(5, 8, us, 8, value, 4, cid, 2, q, 1, unsynced))
                    rows += 1
        if rows == 0:
            return 0
        parts.append(_COPY_TRAILER)
        with cur.copy(_COPY_SAMPLES) as copy:
            copy.write(b"".join(parts))
        return rows

    def write_group(self, records: list[Record]) -> Counts:
        """``write``, and where PostgreSQL refuses the group's data, each record alone: the
        ones it refuses become dead letters with its reason. OperationalError passes up, with
        ``records`` left holding what is still to write (those committed alone are taken out),
        so writing them again counts nothing twice."""
        try:
            return self.write(records)
        except REFUSED as exc:
            if len(records) > 1:
                log.warning(
                    "event=group_refused records=%d error=%r: writing them one by one", len(records), str(exc)
                )
        counts = Counts()
        while records:
            r = records[0]
            try:
                counts.add(self.write([r]))
            except REFUSED as exc:
                reason = f"the database refused it: {str(exc).strip()}"
                letter = DeadLetter(
                    r.msg, f"{r.reason}; then {reason}" if isinstance(r, DeadLetter) else reason
                )
                log.warning("event=dead_letter topic=%s reason=%r", r.msg.topic, letter.reason)
                counts.add(self.write([letter]))
            records.pop(0)
        return counts
