"""The loss window at a long queue: write-lock holds and sampler stalls of the time to live,
of the restamp check and of a seal, the old code paths beside the new, in one run.

    .venv/bin/python bench/bench_ttl.py [--batches 1000000] [--dir DIR]

Builds a queue of N batches (six streams, small payloads, one executemany in one
transaction): the older nine tenths sealed in an earlier boot, the rest in this one, at
six a second (six streams at a 1 s flush). Then, on copies of it:

- the time to live when nothing has expired (a queue of young batches, the usual case)
  and when a tenth expires at once (the wall clock synchronised after an offline week),
  old: one transaction with a full-table scan DELETE of expired_where's condition; new:
  BatchStore.expire with the sampler's budget, pass after pass (one per seal) until the
  tenth is gone;
- the sampler's restamp check at every seal while the clock is synchronised, old: the
  full scan for this boot's unsynchronised batches; new: through the index of them;
- restamping after a sync that came an hour late (21,600 batches), old: all of them at
  the next seal, in one transaction; new: RESTAMP_PER_SEAL a seal;
- a seal (BatchStore.seal, 100 of them): schema 1 (no index) beside schema 2.

Prints the longest write-lock hold (BEGIN IMMEDIATE to COMMIT's end) and the longest
stall of the sampler's thread per seal cycle, and the loss window they imply at a 1 s
flush: what a power cut loses at worst, the interval plus the longest a cycle's commit
comes late. The old sampler ran its upkeep (restamp, time to live) before the cycle's
seals, so all of it made them late; the new one runs it after them, bounded, so it makes
the next cycle's late only by what it takes beyond an interval. Figures only: times depend on the machine and its disk (the file lives in
--dir, default a temporary directory; SD cards are slower).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext

from edge_agent import wire
from edge_agent.node import store_bounds, store_file
from edge_agent.node.open_batch import restamp_payload
from edge_agent.node.sampler import RESTAMP_PER_SEAL
from edge_agent.node.store import EXPIRE_CHUNK, EXPIRE_SCAN, BatchStore

FLUSH = 1.0
STREAMS = 6
WALL0 = 1.7e9
THIS, EARLIER = "this-boot", "earlier-boot"
COLUMNS = "stream, seq, sealed, payload, clock_unsynced, boot_id, wall_offset_ms, sealed_mono"


def build(path: str, n: int) -> None:
    """N batches, six a second; the first nine tenths of an earlier boot."""
    with BatchStore(path) as s:
        split = n * 9 // 10

        def rows() -> Iterator[tuple]:
            for i in range(n):
                t = i / STREAMS
                boot = EARLIER if i < split else THIS
                mono = t if i < split else t - split / STREAMS + 100.0
                yield (f"s{i % STREAMS}", i // STREAMS, WALL0 + t, b"0123456789abcdef", 0, boot, 0, mono)

        s._db.execute("BEGIN")
        s._db.executemany(f"INSERT INTO batches ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows())
        s._db.execute(
            "INSERT OR REPLACE INTO stream_seq SELECT stream, max(seq) + 1 FROM batches GROUP BY stream"
        )
        s._db.execute("COMMIT")
        s.checkpoint()


def as_schema_1(path: str) -> None:
    with BatchStore(path) as s:
        s._db.execute("DROP INDEX batches_unsynced")
        s._db.execute("PRAGMA user_version=1")
        s.checkpoint()


@contextmanager
def schema_1() -> Iterator[None]:
    """Stores opened meanwhile are taken as they are at schema 1 (not migrated): the old code."""
    objects, version = store_file._OBJECTS, store_file.SCHEMA_VERSION
    store_file._OBJECTS, store_file.SCHEMA_VERSION = objects - {"batches_unsynced"}, 1
    try:
        yield
    finally:
        store_file._OBJECTS, store_file.SCHEMA_VERSION = objects, version


class Timed:
    """A store whose transactions are timed, BEGIN IMMEDIATE to the end of COMMIT."""

    def __init__(self, path: str) -> None:
        self.store = BatchStore(path)
        self.holds: list[float] = []
        plain = self.store._transaction

        @contextmanager
        def timed() -> Iterator:
            t = time.perf_counter()
            with plain() as db:
                yield db
            self.holds.append(time.perf_counter() - t)

        self.store._transaction = timed  # type: ignore[method-assign]

    def close(self) -> None:
        self.store.close()


def stall(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def old_ttl(store: BatchStore, ttl: float, args: dict) -> dict[str, int]:
    """The TTL pass as it was: one transaction, a full scan to count, a full scan to delete."""
    where = store_bounds.expired_where(ttl, **args)
    assert where is not None
    with store._transaction() as db:
        counts = dict(
            db.execute(
                f"SELECT stream, count(*) FROM batches WHERE {where[0]} GROUP BY stream", where[1]
            ).fetchall()
        )
        db.execute(f"DELETE FROM batches WHERE {where[0]}", where[1])
        for s, k in counts.items():
            store_bounds.count_loss(db, s, "expired", k)
    return counts


def ttl_case(old: str, new: str, work: str, n: int, expire_tenth: bool) -> dict[str, float]:
    """(old hold, old stall, new hold, new stall, passes) of one case of the time to live."""
    age = n / STREAMS  # seconds the queue spans
    ttl = age * 0.9 if expire_tenth else 30 * 86400.0
    # the earlier boot's batches by the (now trusted) wall clock, this boot's by its own
    args = {
        "now": WALL0 + age,
        "now_mono": 100.0 + (n - n * 9 // 10) / STREAMS,
        "boot_id": THIS,
        "wall_trusted": True,
    }
    out: dict[str, float] = {}
    shutil.copy(old, work)
    with schema_1():
        t = Timed(work)
    out["old stall"] = stall(lambda: old_ttl(t.store, ttl, args))
    out["old hold"] = max(t.holds)
    out["old deleted"] = n - t.store.depth()[0]
    t.close()
    os.remove(work)
    shutil.copy(new, work)
    t = Timed(work)
    stalls, deleted, passes = [], 0, 0
    while True:  # as the sampler does: one budgeted pass per seal while a pass deletes a full chunk
        start = time.perf_counter()
        got = sum(t.store.expire(ttl, budget=EXPIRE_SCAN, **args).values())
        stalls.append(time.perf_counter() - start)
        passes += 1
        deleted += got
        if got < EXPIRE_CHUNK:
            break
    out["new stall"], out["new hold"] = max(stalls), max(t.holds, default=0.0)
    out["new median hold"] = sorted(t.holds)[len(t.holds) // 2] if t.holds else 0.0
    out["new deleted"], out["passes"] = deleted, passes
    t.close()
    os.remove(work)
    return out


def restamp_case(path: str, indexed: bool) -> float:
    """The longest of 20 restamp checks with nothing to restamp (every seal, once synced)."""
    with nullcontext() if indexed else schema_1():
        s = BatchStore(path)
    with s:
        if indexed:
            return max(
                stall(lambda: s.restamp_unsynced(THIS, 0, _same, limit=RESTAMP_PER_SEAL)) for _ in range(20)
            )
        query = "SELECT id, payload, wall_offset_ms FROM batches WHERE clock_unsynced = 1 AND boot_id = ?"
        return max(stall(lambda: s._db.execute(query, (THIS,)).fetchall()) for _ in range(20))


def _same(payload: bytes, shift_ms: int) -> bytes:
    return payload


def restamp_volume(top: str, n: int) -> tuple[float, float]:
    """(old, new) stall of the first restamp after a late sync, with ``n`` batches to restamp."""
    times = tuple(range(0, 10_000, 1000))
    batch = wire.Batch("n", "s0", 0, 0, (wire.ChannelData("t", "C", 0.01, times, (2100,) * 10, ()),))
    payload = wire.encode(batch)
    out = []
    for limit in (None, RESTAMP_PER_SEAL):
        path = os.path.join(top, f"restamp-{limit}.sqlite3")
        with BatchStore(path) as s:
            s._db.execute("BEGIN")
            s._db.executemany(
                f"INSERT INTO batches ({COLUMNS}) VALUES (?, ?, ?, ?, 1, ?, 0, ?)",
                ((f"s{i % STREAMS}", i // STREAMS, WALL0 + i, payload, THIS, float(i)) for i in range(n)),
            )
            s._db.execute("COMMIT")
            out.append(
                stall(lambda s=s, limit=limit: s.restamp_unsynced(THIS, 5000, restamp_payload, limit=limit))
            )
        os.remove(path)
    return out[0], out[1]


def seal_case(path: str, unsynced: bool, old: bool = False) -> tuple[float, float]:
    """(longest, median) write-lock hold of 100 seals on the long queue."""
    with schema_1() if old else nullcontext():
        t = Timed(path)
    for i in range(100):
        t.store.seal(
            f"s{i % STREAMS}",
            lambda q: os.urandom(80),
            WALL0 + 1e6 + i,
            clock_unsynced=unsynced,
            boot_id=THIS,
            wall_offset_ms=0,
            sealed_mono=1e6 + i,
        )
    t.close()
    holds = sorted(t.holds)
    return holds[-1], holds[len(holds) // 2]


def ms(x: float) -> str:
    return f"{x * 1000:10.1f} ms"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, default=1_000_000)
    ap.add_argument("--dir", help="where the queue files go (default: a temporary directory)")
    a = ap.parse_args()
    top = tempfile.mkdtemp(prefix="bench-ttl-", dir=a.dir)
    try:
        new, old = os.path.join(top, "v2.sqlite3"), os.path.join(top, "v1.sqlite3")
        t0 = time.perf_counter()
        build(new, a.batches)
        shutil.copy(new, old)
        as_schema_1(old)
        mib = os.path.getsize(new) / 2**20
        print(f"queue: {a.batches:,} batches, {mib:.0f} MiB, built in {time.perf_counter() - t0:.1f} s")
        shutil.copy(old, old + ".m")
        t0 = time.perf_counter()
        BatchStore(old + ".m").close()
        print(
            f"opening a schema-1 file the first time (the index of batches to restamp built): "
            f"{time.perf_counter() - t0:.2f} s, once"
        )
        os.remove(old + ".m")
        work = os.path.join(top, "work.sqlite3")
        young = ttl_case(old, new, work, a.batches, expire_tenth=False)
        tenth = ttl_case(old, new, work, a.batches, expire_tenth=True)
        restamp_old, restamp_new = restamp_case(old, False), restamp_case(new, True)
        seal_old, seal_new = seal_case(old, False, old=True), seal_case(new, False)
        seal_new_unsynced = seal_case(new, True)
        late_old, late_new = restamp_volume(top, 21_600)
        print(f"\n{'':52}{'old':>13}{'new':>13}")
        rows = [
            ("TTL pass, nothing expired: longest write-lock hold", young["old hold"], young["new hold"]),
            ("   sampler stall of the pass", young["old stall"], young["new stall"]),
            (
                f"TTL pass, a tenth expires ({tenth['old deleted']:,.0f}): longest hold",
                tenth["old hold"],
                tenth["new hold"],
            ),
            ("   median write-lock hold", tenth["old hold"], tenth["new median hold"]),
            ("   longest sampler stall of a pass", tenth["old stall"], tenth["new stall"]),
            ("restamp check at each seal (nothing to restamp)", restamp_old, restamp_new),
            ("first restamp after an hour unsynchronised", late_old, late_new),
            ("seal: longest write-lock hold (of 100)", seal_old[0], seal_new[0]),
            ("seal: median write-lock hold", seal_old[1], seal_new[1]),
        ]
        for name, o, n_ in rows:
            print(f"{name:52}{ms(o)}{ms(n_)}")
        print(f"{'seal while unsynchronised (index written): longest':52}{'':13}{ms(seal_new_unsynced[0])}")
        print(
            f"\nnew: a tenth expired in {tenth['passes']:.0f} passes (one a seal), "
            f"{tenth['new deleted']:,.0f} batches, {EXPIRE_CHUNK} a transaction; a pass looks at "
            f"{EXPIRE_CHUNK} + {EXPIRE_SCAN} batches"
        )
        ttl_old = max(young["old stall"], tenth["old stall"])
        ttl_new = max(young["new stall"], tenth["new stall"])
        print(f"loss window at a {FLUSH:g} s flush (interval + the longest a cycle's commit comes late):")
        for what, restamp in (("clock synchronised", 0.0), ("the cycle after a late sync", 1.0)):
            old_late = ttl_old + restamp_old + restamp * late_old + seal_old[0]
            upkeep = ttl_new + restamp_new + restamp * late_new
            new_late = seal_new[0] + max(0.0, upkeep - FLUSH)
            print(f"  {what:30} old {FLUSH + old_late:.3f} s, new {FLUSH + new_late:.3f} s")
    finally:
        shutil.rmtree(top, ignore_errors=True)


if __name__ == "__main__":
    main()
