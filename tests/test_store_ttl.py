"""The time to live costs the same however long the queue: each pass looks at a bounded
number of batches, deletes in short transactions, and finds exactly what the old full
scan found (expired_where's condition), within one round of the queue. Restamping looks
through an index that holds only the batches to restamp. Proved by counting: rows looked
at, rows changed per transaction, SQLite's steps and query plans; never by the clock."""

from __future__ import annotations

import dataclasses
import itertools
import random
import sqlite3

import pytest

from drivers.base import Reading
from edge_agent import wire
from edge_agent.config import load_config
from edge_agent.node import store_bounds, store_file
from edge_agent.node.sampler import RESTAMP_PER_SEAL, Sampler
from edge_agent.node.store import EXPIRE_CHUNK, EXPIRE_SCAN, SCHEMA_VERSION, BatchStore

COLUMNS = "stream, seq, sealed, payload, clock_unsynced, boot_id, wall_offset_ms, sealed_mono"
SEQ = itertools.count()  # sequence numbers, unique in every test's queue


def fill(store: BatchStore, rows: list[tuple]) -> None:
    """Batches written straight into the table in one transaction (a long queue, fast)."""
    db = store._db
    db.execute("BEGIN")
    db.executemany(f"INSERT INTO batches ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
    db.execute("COMMIT")


def queue(n: int, *, boot: str = "old", start: float = 1000.0, unsynced: bool = False) -> list[tuple]:
    """``n`` batches of one boot sealed a second apart, wall time = monotonic + 1.7e9."""
    return [("air", next(SEQ), 1.7e9 + start + i, b"p", int(unsynced), boot, 0, start + i) for i in range(n)]


class Steps:
    """SQLite's virtual-machine steps on a connection (a progress handler, every step)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.n = 0
        db.set_progress_handler(self._step, 1)

    def _step(self) -> int:
        self.n += 1
        return 0


def transactions(store: BatchStore, call) -> list[int]:
    """Rows changed (deleted, counted) in each transaction ``call()`` runs on the store."""
    db = store._db
    changes: list[int] = []
    mark = [0]

    def trace(sql: str) -> None:
        if sql.startswith("BEGIN"):
            mark[0] = db.total_changes
        elif sql == "COMMIT":
            changes.append(db.total_changes - mark[0])

    db.set_trace_callback(trace)
    try:
        call()
    finally:
        db.set_trace_callback(None)
    return changes


def test_each_transaction_deletes_a_bounded_number_of_batches(tmp_path):
    with BatchStore(str(tmp_path / "q")) as s:
        fill(s, queue(20_000))
        # a wall-clock sync makes the first 5,000 expire at once
        per = transactions(
            s,
            lambda: s.expire(
                3600, now=1.7e9 + 1000 + 5000 + 3600, now_mono=0.0, boot_id="new", wall_trusted=True
            ),
        )
        assert s.losses() == {"air": {"expired": 5000}} and s.depth()[0] == 15_000
        assert len(per) == -(-5000 // EXPIRE_CHUNK)  # 20 transactions
        # each: the rows deleted, the depth its trigger keeps, the count of losses
        assert max(per) <= 2 * EXPIRE_CHUNK + 1


def look_plan(db: sqlite3.Connection) -> str:
    where = store_bounds.expired_where(60, now=0.0, now_mono=0.0, boot_id="b", wall_trusted=True)
    assert where is not None
    rows = db.execute(
        f"EXPLAIN QUERY PLAN SELECT id, ({where[0]}) FROM batches WHERE id > ? ORDER BY id LIMIT ?",
        (*where[1], 0, 10),
    ).fetchall()
    return " ".join(r[3] for r in rows)


def test_a_pass_looks_at_a_bounded_number_of_batches(tmp_path):
    """The pass looks at the head and EXPIRE_SCAN batches by row id (a range of the table's
    own key, no scan); SQLite's steps for it are the same at 10,000 and at 100,000 batches,
    where the old full scan takes ten times as many (at 100,000 already seven times the new)."""
    steps = {}
    for n in (10_000, 100_000):
        with BatchStore(str(tmp_path / f"q{n}")) as s:
            fill(s, queue(n, start=1e6))  # none expired
            assert "USING INTEGER PRIMARY KEY (rowid>?)" in look_plan(s._db)
            counter = Steps(s._db)
            args = {"now": 1.7e9 + 1e6, "now_mono": 1e6, "boot_id": "old", "wall_trusted": True}
            assert s.expire(3600, budget=EXPIRE_SCAN, **args) == {}
            steps[n] = counter.n
            counter.n = 0
            where = store_bounds.expired_where(3600, **args)
            assert where is not None
            s._db.execute(f"SELECT count(*) FROM batches WHERE {where[0]}", where[1]).fetchone()
            steps[f"old {n}"] = counter.n
    assert steps[100_000] == steps[10_000]
    assert steps["old 100000"] > 9 * steps["old 10000"] and steps["old 100000"] > 5 * steps[100_000]


def test_the_head_run_that_never_expires_is_stepped_over_once(tmp_path):
    """Batches sealed unsynchronised in an earlier boot have no age: behind 10,000 of them,
    the batches of this boot that expired are found within a few passes, and the passes
    after look past them (not a round later, not at their cost again)."""
    with BatchStore(str(tmp_path / "q")) as s:
        fill(s, queue(10_000, boot="earlier", unsynced=True) + queue(50, boot="this", start=10.0))
        args = {"now": 0.0, "now_mono": 10.0 + 3600 + 20, "boot_id": "this", "wall_trusted": False}
        expired: dict[str, int] = {}
        for _ in range(10_000 // EXPIRE_SCAN + 1):
            expired.update(s.expire(3600, budget=EXPIRE_SCAN, **args))
        assert expired == {"air": 20}
        assert s._sweep.head_after == 10_000  # the last of the run that never expires
        counter = Steps(s._db)
        s.expire(3600, budget=0, **args)
        looked = counter.n
        counter.n = 0
        s._db.execute("SELECT id, clock_unsynced FROM batches ORDER BY id LIMIT 256").fetchall()
        assert looked < 4 * counter.n  # a head's worth of steps, not the 10,000 again


def _random_queue(rng: random.Random) -> list[tuple]:
    """Boots one after the other, wall clocks set back and forth, unsynchronised stretches,
    batches without a monotonic time or a boot: whatever the condition must sort out."""
    rows: list[tuple] = []
    wall = 1.7e9
    for b in range(rng.randrange(1, 5)):
        boot = rng.choice([f"boot{b}", None]) if b < 3 else "this"
        mono = rng.uniform(0, 100)
        for _ in range(rng.randrange(0, 600)):
            mono += rng.uniform(0.1, 20)
            wall += rng.uniform(-30, 40) if rng.random() < 0.05 else rng.uniform(0.1, 20)
            rows.append(
                (
                    rng.choice(["air", "power"]),
                    len(rows),
                    wall,
                    b"p",
                    int(rng.random() < 0.2),
                    boot,
                    0,
                    None if rng.random() < 0.05 else mono,
                )
            )
    return rows


@pytest.mark.parametrize("seed", range(12))
def test_a_round_of_bounded_passes_deletes_what_the_full_scan_did(tmp_path, seed):
    """On random queues, passes with a small budget delete, within one round of the queue,
    exactly the batches the old single DELETE of expired_where's condition would have, and
    no other; their counts per stream too."""
    rng = random.Random(seed)
    rows = _random_queue(rng)
    walls = [r[2] for r in rows] or [1.7e9]
    args = {
        "now": rng.uniform(min(walls), max(walls) + 7200),
        "now_mono": rng.uniform(0, 8000),
        "boot_id": rng.choice(["this", "boot1", None]),
        "wall_trusted": rng.random() < 0.7,
    }
    ttl = rng.uniform(60, 3600)
    with BatchStore(str(tmp_path / "old")) as old, BatchStore(str(tmp_path / "new")) as new:
        fill(old, rows)
        fill(new, rows)
        where = store_bounds.expired_where(ttl, **args)
        if where is not None:
            with old._transaction() as db:
                store_bounds.delete_expired(
                    db,
                    [r[0] for r in db.execute(f"SELECT id FROM batches WHERE {where[0]}", where[1])],
                    where,
                )
        budget = 50  # a round of the queue, and the passes that a full chunk of deletions took
        for _ in range(len(rows) // budget + len(rows) // EXPIRE_CHUNK + 2):
            new.expire(ttl, budget=budget, **args)
        ids = "SELECT id FROM batches ORDER BY id"
        assert new._db.execute(ids).fetchall() == old._db.execute(ids).fetchall()
        assert new.losses() == old.losses()


def test_a_full_pass_deletes_everything_expired_at_once(tmp_path):
    with BatchStore(str(tmp_path / "q")) as s:
        fill(s, queue(3000, boot="earlier", unsynced=True) + queue(3000, boot="this", start=10.0))
        got = s.expire(60, now=0.0, now_mono=10.0 + 60 + 1000.5, boot_id="this", wall_trusted=False)
        assert got == {"air": 1001}


def _sampler(tmp_path, store: BatchStore, clock, synced=lambda: True) -> Sampler:
    base = load_config(None)
    cfg = dataclasses.replace(
        base,
        state_dir=str(tmp_path),
        store=dataclasses.replace(base.store, ttl=3600.0),
        sensors=base.sensors[:1],
    )
    return Sampler(
        cfg,
        store,
        lambda c: None,  # type: ignore[arg-type,return-value]
        clock=lambda: clock[0],
        wall=lambda: 1.7e9 + clock[0],
        clock_synchronized=synced,
        boot_id="this",
    )


def test_the_sampler_deletes_a_mass_expiry_a_chunk_per_seal(tmp_path):
    """50,000 batches expiring at once are deleted one transaction per seal, the next chunk
    at the next seal, not all before the next seal."""
    clock = [10.0 + 3600 + 50_000]
    with BatchStore(str(tmp_path / "q")) as s:
        fill(s, queue(50_000, boot="this", start=10.0))
        sampler = _sampler(tmp_path, s, clock)
        per_seal = []
        for _ in range(5):
            per_seal.append(transactions(s, sampler.seal))
            clock[0] += 1.0
        assert per_seal == [[2 * EXPIRE_CHUNK + 1]] * 5
        assert s.losses() == {"air": {"expired": 5 * EXPIRE_CHUNK}}


class Thermometer:
    def __init__(self, clock):
        self.clock = clock

    def read(self):
        return Reading(t=1.7e9 + self.clock[0], mono=self.clock[0], values={"temperature": 21.0})

    def close(self):
        pass


def test_the_seal_commits_before_the_upkeep(tmp_path):
    """A cycle's batches are committed first; restamping and the time to live come after,
    so what a power cut loses never waits on them."""
    clock = [10.0 + 3600 + 5000]
    with BatchStore(str(tmp_path / "q")) as s:
        batch = wire.Batch("n", "air", 0, 0, (wire.ChannelData("t", "C", 0.01, (0,), (2100,), ()),))
        unsynced = [
            (*r[:3], wire.encode(batch), *r[4:]) for r in queue(300, boot="this", start=5100.0, unsynced=True)
        ]
        fill(s, queue(5000, boot="this", start=10.0) + unsynced)
        sampler = _sampler(tmp_path, s, clock)
        slot = sampler.slots[0]
        slot.driver = Thermometer(clock)
        sampler.sample(slot)
        statements: list[str] = []
        s._db.set_trace_callback(statements.append)
        assert sampler.seal() == 1
        s._db.set_trace_callback(None)
        seal = next(i for i, q in enumerate(statements) if q.startswith("INSERT INTO batches"))
        committed = next(i for i, q in enumerate(statements) if q == "COMMIT" and i > seal)
        upkeep = [
            i for i, q in enumerate(statements) if q.startswith(("UPDATE batches", "DELETE FROM batches"))
        ]
        assert upkeep and committed < min(upkeep)
        assert sampler.restamped == RESTAMP_PER_SEAL and s.losses() == {"air": {"expired": EXPIRE_CHUNK}}


def test_restamping_looks_through_its_own_index(tmp_path):
    with BatchStore(str(tmp_path / "q")) as s:
        fill(s, queue(20_000, boot="this") + queue(300, boot="this", start=30_000.0, unsynced=True))
        plan = s._db.execute(
            "EXPLAIN QUERY PLAN SELECT id, payload, wall_offset_ms FROM batches INDEXED BY batches_unsynced "
            "WHERE clock_unsynced = 1 AND boot_id = ? ORDER BY id LIMIT ?",
            ("this", 5),
        ).fetchall()
        assert "USING INDEX batches_unsynced (boot_id=?)" in " ".join(r[3] for r in plan)
        assert s.restamp_unsynced("this", 0, lambda p, shift: p, limit=RESTAMP_PER_SEAL) == RESTAMP_PER_SEAL
        counter = Steps(s._db)
        assert s.restamp_unsynced("other", 0, lambda p, shift: p) == 0
        assert counter.n < 50  # nothing to restamp costs next to nothing, whatever the queue
        assert s.restamp_unsynced("this", 0, lambda p, shift: p) == 300 - RESTAMP_PER_SEAL


def test_a_version_1_store_gets_the_index_once_and_then_opens_without_writing(tmp_path):
    path = tmp_path / "q"
    with BatchStore(str(path)) as s:
        fill(s, queue(100, unsynced=True))
        s._db.execute("DROP INDEX batches_unsynced")
        s._db.execute("PRAGMA user_version=1")
        s.checkpoint()
    db = store_file.open_checked(str(path))
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
    names = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert "batches_unsynced" in names
    assert (
        db.execute(
            "SELECT count(*) FROM batches INDEXED BY batches_unsynced WHERE clock_unsynced = 1"
        ).fetchone()[0]
        == 100
    )
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    before = path.read_bytes()
    store_file.open_checked(str(path)).close()
    assert path.read_bytes() == before
