"""The salvage of a damaged queue: every batch SQLite can still read is copied, the work is
bounded by the rows and the damaged pages (counted in queries and SQLite steps, never
timed) and not by the highest row id, the search ends on any damage, no salvaged (stream,
seq) is sealed again, and a salvage stopped half-way goes on at the next opening."""

from __future__ import annotations

import os
import random
import re
import shutil
import sqlite3

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_agent.node import store_check, store_file, store_migrate, store_pages, store_salvage
from edge_agent.node.store import BatchStore
from edge_agent.node.store_pages import COLUMNS, Pages, Walk, readable_rows

STREAMS = 3
LEGACY_SCHEMA = re.sub(
    r"(sealed_mono REAL) ( *--[^\n]*\n)", r"\1,\2    UNIQUE (stream, seq)\n", store_file._SCHEMA
)
assert LEGACY_SCHEMA != store_file._SCHEMA


def legacy_queue(path: str) -> None:
    """An empty queue file of version 2's layout: its UNIQUE (stream, seq) index."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA page_size=512")
    db.execute("PRAGMA journal_mode=WAL")
    db.executescript(LEGACY_SCHEMA + "PRAGMA user_version=2;")
    db.close()


def build(
    path: str, ids: list[int], payload: int = 40, wal_from: int | None = None, legacy: bool = False
) -> None:
    """Rows at the given ids (stream s{id % 3}, its seq in id order), checkpointed; with
    ``wal_from``, the rows from that index on are left in the WAL; ``legacy``, in a file
    of version 2's layout."""
    if legacy:
        legacy_queue(path)
    with BatchStore(path) as s:
        db = s._db
        db.execute("PRAGMA wal_autocheckpoint=0")
        seqs: dict[str, int] = {}
        rows = []
        for n, i in enumerate(ids):  # times by position, so only the ids differ between two queues
            stream = f"s{i % STREAMS}"
            seqs[stream] = seqs.get(stream, -1) + 1
            rows.append(
                (i, stream, seqs[stream], 1.7e9 + n, random.Random(n).randbytes(payload), 0, "b", 0, float(n))
            )
        cut = len(rows) if wal_from is None else wal_from
        parts = [rows[:cut]] + [rows[at : at + 150] for at in range(cut, len(rows), 150)]
        for n, part in enumerate(parts):  # the first checkpointed, the rest in the WAL
            db.execute("BEGIN")
            db.executemany(f"INSERT INTO batches (id, {COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", part)
            db.execute(
                "INSERT OR REPLACE INTO stream_seq SELECT stream, max(seq) + 1 FROM batches GROUP BY stream"
            )
            db.execute("COMMIT")
            if n == 0:
                s.checkpoint()
        shutil.copy(path, path + ".keep")  # the WAL as it is: close() would checkpoint it
        if os.path.exists(path + "-wal"):
            shutil.copy(path + "-wal", path + ".keep-wal")
    os.replace(path + ".keep", path)
    if os.path.exists(path + ".keep-wal"):
        os.replace(path + ".keep-wal", path + "-wal")


def btree(path: str, name: str = "batches") -> list[tuple[int, str, str, int]]:
    """(page, path, type, cells) of each page of a b-tree (dbstat), before any damage."""
    db = sqlite3.connect(path)
    rows = db.execute("SELECT pageno, path, pagetype, ncell FROM dbstat WHERE name = ?", (name,)).fetchall()
    db.close()
    return rows


def rows_under(tree: list[tuple[int, str, str, int]], pages: list[int]) -> int:
    """The rows in the leaves under the given pages."""
    paths = [p for pg, p, _, _ in tree if pg in pages]
    return sum(n for _, p, kind, n in tree if kind == "leaf" and any(p.startswith(q) for q in paths))


def page_size(path: str) -> int:
    with open(path, "rb") as f:
        f.seek(16)
        size = int.from_bytes(f.read(2), "big")
    return 65536 if size == 1 else size


def zero_pages(path: str, pages: list[int]) -> None:
    """Whole pages of the file zeroed (of its own page size)."""
    size = page_size(path)
    with open(path, "r+b") as f:
        for page in pages:
            f.seek((page - 1) * size)
            f.write(bytes(size))


def rows_sqlite_reads(path: str, ids) -> set[tuple]:
    """(stream, seq, payload) of every row SQLite still reads, looked up id by id."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    rows: set[tuple] = set()
    for i in ids:
        try:
            rows |= set(db.execute("SELECT stream, seq, payload FROM batches WHERE id = ?", (i,)).fetchall())
        except sqlite3.DatabaseError:
            pass
    db.close()
    return rows


def damage(path: str, pages: list[int], rnd: random.Random, size: int | None = None) -> None:
    size = size or page_size(path)
    with open(path, "r+b") as f:
        for page in pages:
            how = rnd.choice(["zero", "random", "64 bytes", "cell pointers"])
            at = (page - 1) * size
            if how == "zero":
                f.seek(at)
                f.write(bytes(size))
            elif how == "random":
                f.seek(at)
                f.write(rnd.randbytes(size))
            elif how == "64 bytes":
                f.seek(at + rnd.randrange(size - 64))
                f.write(rnd.randbytes(64))
            else:
                f.seek(at + 8)
                f.write(rnd.randbytes(16))


def oracle(path: str, ids: list[int]) -> set[int]:
    """The ids whose whole row SQLite reads, looked up one by one (what the old salvage did)."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    db.text_factory = bytes
    out = set()
    for i in ids:
        try:
            if db.execute(f"SELECT id, {COLUMNS} FROM batches WHERE id = ?", (i,)).fetchone():
                out.add(i)
        except sqlite3.DatabaseError:
            pass
    db.close()
    return out


class Counted:
    """readable_rows over a file, its queries and SQLite's steps (VM instructions) counted."""

    def __init__(self, path: str) -> None:
        self.old = store_pages.open_old(path)
        assert self.old is not None
        self.steps = 0
        self.statements = 0

        def step() -> int:
            self.steps += 100
            return 0

        self.old.set_progress_handler(step, 100)
        self.old.set_trace_callback(lambda sql: setattr(self, "statements", self.statements + 1))
        self.walk = Walk()
        root = store_pages.root_page(self.old)
        self.statements = 0
        self.ids = [r[0] for r in readable_rows(self.old, lambda: Pages(path), root, self.walk)]
        self.old.close()


LAYOUTS = {
    "dense": lambda rnd: list(range(1, 2001)),
    "sparse": lambda rnd: sorted(rnd.sample(range(1, 400_000), 2000)),
    "near 10 M": lambda rnd: list(range(10_000_000 - 1999, 10_000_001)),
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("seed", range(40))
def test_every_readable_row_is_found_and_the_queries_are_bounded_by_the_damage(tmp_path, layout, seed):
    rnd = random.Random(seed)
    q = str(tmp_path / "q.sqlite3")
    ids = LAYOUTS[layout](rnd)
    build(q, ids)
    tree = btree(q)
    hit = [pg for pg, *_ in rnd.sample(tree, rnd.randint(1, 4))]
    damage(q, hit, rnd)
    want = oracle(q, ids)
    got = Counted(q)
    assert want <= set(got.ids), f"not found: {sorted(want - set(got.ids))[:5]}"
    # Ascending and once each but where the damage made ids or pointed twice at a page.
    assert len(set(got.ids) - set(ids)) + len(got.ids) - len(set(got.ids)) <= 100 * len(hit)
    assert sum(a >= b for a, b in zip(got.ids, got.ids[1:])) <= 100 * len(hit)
    # A scan per damaged range and one after each, plus a lookup per row listed under a
    # damaged page: nothing grows with the span of the ids.
    assert got.walk.queries == got.statements
    assert got.walk.queries <= 3 * (len(hit) + 1) + rows_under(tree, hit) + 100 * len(hit)


@pytest.mark.parametrize("leaf", [0, 10, -1], ids=["head", "middle", "newest"])
def test_the_work_does_not_grow_with_the_highest_id(tmp_path, leaf):
    """The same queue and the same damage at ids from 3 M and from 201 M (the same varint
    sizes, so the same pages): the same queries and the same SQLite steps, to the step.
    (The old salvage looked up every id from its first damage to the highest: 67 times
    the work at the larger.)"""
    counts = []
    for base in (3_000_000, 201_000_000):
        q = str(tmp_path / f"q{base}.sqlite3")
        build(q, list(range(base, base + 3000)))
        leaves = [pg for pg, _, kind, _ in sorted(btree(q), key=lambda r: r[1]) if kind == "leaf"]
        zero_pages(q, [leaves[leaf]])
        got = Counted(q)
        assert set(got.ids) == oracle(q, list(range(base, base + 3000)))
        counts.append((got.walk.queries, got.steps, len(got.ids)))
    assert counts[0] == counts[1]
    queries, steps, rows = counts[0]
    assert queries <= 3 + 100 and steps <= 40 * rows + 2000 * queries


def test_a_damaged_root_costs_a_lookup_per_row_and_no_more(tmp_path):
    q = str(tmp_path / "q.sqlite3")
    ids = list(range(5_000_000, 5_003_000))
    build(q, ids)
    root = next(pg for pg, path, *_ in btree(q) if path == "/")
    with open(q, "r+b") as f:  # garbage over part of the root's cells: SQLite's scans fail
        f.seek((root - 1) * page_size(q) + 40)
        f.write(random.Random(5).randbytes(200))
    got = Counted(q)
    assert oracle(q, ids) <= set(got.ids)
    assert got.walk.queries <= len(ids) + 10


@given(
    hits=st.lists(
        st.tuples(
            st.floats(0, 1, exclude_max=True),
            st.integers(1, 2048),
            st.sampled_from(["random", "zero", "cut"]),
        ),
        min_size=1,
        max_size=4,
    ),
    seed=st.integers(0, 2**32),
)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_the_search_ends_on_any_damage(tmp_path_factory, hits, seed):
    """Damage anywhere in the file and its WAL (any page: the schema, interior pages,
    indexes, the WAL's frames), and the file cut short: the salvage ends, its queries bounded
    by the rows and the damage, and the store opens and takes batches."""
    d = tmp_path_factory.mktemp("any")
    q = str(d / "queue.sqlite3")
    ids = list(range(9_000_000, 9_002_500))
    build(q, ids, wal_from=2000)
    rnd = random.Random(seed)
    for where, length, how in hits:
        path = q + rnd.choice(["", "", "-wal"])
        size = os.path.getsize(path)
        with open(path, "r+b") as f:
            if how == "cut":
                f.truncate(int(where * size))
                continue
            f.seek(int(where * size))
            f.write(rnd.randbytes(length) if how == "random" else bytes(length))
    if store_pages.open_old(q) is not None:
        try:
            got = Counted(q)
            assert got.walk.queries <= 3 * (len(hits) * 2 + 1) + 2 * len(ids)
        except sqlite3.DatabaseError:
            pass  # the schema itself unreadable: SQLite cannot even start a query
    s = BatchStore(q, recover=True)
    try:
        assert s.background is not None and s.background.finish_salvage(60)
        s.background.check.run()
        if s.background.damage is not None:
            s.recover_now()
            assert s.background.finish_salvage(60)
        before = s.depth()[0]
        s.seal("s0", lambda seq: b"after", 0.0)
        assert s.depth()[0] == before + 1
        if s.recovery is not None:
            assert s.recovery.complete and os.path.exists(s.recovery.moved_to)
    finally:
        s.close()


def test_pages_read_the_wal_as_sqlite_does(tmp_path):
    """The ids every leaf lists, read by store_pages from the file and its WAL, are the ids
    SQLite reads: with pages in the WAL, with the WAL cut mid-frame, with a frame damaged
    (SQLite stops at the first frame whose checksum fails, and so do the pages)."""
    q = str(tmp_path / "q.sqlite3")
    build(q, list(range(1, 3001)), wal_from=1500)
    wal = open(q + "-wal", "rb").read()
    frame = 24 + page_size(q)
    frames = (len(wal) - 32) // frame
    cases = {"whole": wal, "cut": wal[: 32 + frames // 2 * frame + 500], "damaged frame": bytearray(wal)}
    cases["damaged frame"][32 + frames // 3 * frame + 100] ^= 0xFF
    for name, data in cases.items():
        c = str(tmp_path / f"{name}.sqlite3")
        shutil.copy(q, c)
        open(c + "-wal", "wb").write(bytes(data))
        db = sqlite3.connect(f"file:{c}?mode=ro", uri=True)
        sqlite_ids = [r[0] for r in db.execute("SELECT id FROM batches ORDER BY id")]
        root = db.execute("SELECT rootpage FROM sqlite_master WHERE name = 'batches'").fetchone()[0]
        db.close()
        pages = Pages(c)
        assert list(pages._ids_under(root, None, None)) == sqlite_ids, name
        assert len(sqlite_ids) == 3000 if name == "whole" else 1500 < len(sqlite_ids) < 3000, name
        pages.close()


def recovered(tmp_path, n: int = 600, *, extra: tuple[str, ...] = ()) -> tuple[str, set[tuple], BatchStore]:
    """A queue of ``n`` batches whose oldest leaf (and ``extra`` b-trees: "stream_seq", the
    "index", the "newest" leaf) is zeroed, opened as the agent does; (its path, what SQLite
    can read of it, the store, its salvage not yet run)."""
    q = str(tmp_path / "queue.sqlite3")
    build(q, list(range(1, n + 1)), payload=200, legacy="index" in extra)
    tree = sorted(btree(q), key=lambda r: r[1])
    leaves = [pg for pg, _, kind, _ in tree if kind == "leaf"]
    hit = [leaves[0]]
    if "stream_seq" in extra:
        hit += [pg for pg, *_ in btree(q, "stream_seq")]
    if "index" in extra:
        hit += [pg for pg, _, kind, _ in btree(q, store_migrate.LEGACY_INDEX) if kind == "leaf"]
        assert hit[1:]
    if "newest" in extra:
        hit += leaves[-2:]
    zero_pages(q, hit)
    readable = rows_sqlite_reads(q, range(1, n + 1))
    s = BatchStore(q, recover=True)
    assert s.recovery is not None and not s.recovery.complete
    return q, readable, s


@pytest.mark.parametrize(
    "extra",
    [(), ("stream_seq",), ("stream_seq", "index"), ("stream_seq", "index", "newest")],
    ids=["counters read", "stream_seq damaged", "and the index", "and the newest rows"],
)
def test_no_salvaged_number_is_sealed_again(tmp_path, extra):
    """Batches are sealed before the salvage copies a row (READY comes first): their numbers
    come after every readable one of their stream, from stream_seq, else from each stream's
    end in the (stream, seq) index of a version 2 file, else from the newest rows SQLite can
    read. The salvage's own index is there while it copies, and gone after."""
    _, readable, s = recovered(tmp_path, extra=extra)
    try:
        for i in range(30):
            s.seal(f"s{i % STREAMS}", lambda seq: b"new", 0.0)
        assert s.background is not None and s.background.finish_salvage(60)
        rows = s.oldest(10_000)
        keys = [(r.stream, r.seq) for r in rows]
        assert len(keys) == len(set(keys))
        new = [r for r in rows if r.payload == b"new"]
        assert len(new) == 30 and [r.payload for r in rows[-30:]] == [b"new"] * 30  # each keeps its place
        assert {(r.stream, r.seq, r.payload) for r in rows if r.payload != b"new"} == readable
        for stream in {r.stream for r in new}:
            assert min(r.seq for r in new if r.stream == stream) > max(
                q for st_, q, _ in readable if st_ == stream
            )
        rec = s.recovery
        assert rec is not None and rec.complete and rec.salvaged == len(readable)
        assert rec.expected == 600 and rec.unreadable == 600 - len(readable)  # every loss counted
        assert store_migrate.seq_index(s._db) is None
    finally:
        s.close()


def test_a_number_the_damage_hid_everywhere_is_counted_not_dropped(tmp_path, caplog):
    """A stream that sealed long ago and seals again, its counter, its index entries and
    the head leaf damaged: its new batches take numbers the salvage then finds taken. Each
    is counted unreadable and logged; nothing is dropped silently, no (stream, seq) twice."""
    q = str(tmp_path / "queue.sqlite3")
    build(q, list(range(1, 601)), payload=200, legacy=True)
    db = sqlite3.connect(q)  # the first 60 batches of a stream of their own
    db.execute("UPDATE batches SET stream = 'early', seq = id - 1 WHERE id <= 60")
    db.execute("INSERT OR REPLACE INTO stream_seq VALUES ('early', 60)")
    db.commit()
    db.close()
    leaves = [pg for pg, _, kind, _ in sorted(btree(q), key=lambda r: r[1]) if kind == "leaf"]
    hit = [leaves[0]] + [pg for pg, *_ in btree(q, "stream_seq")]
    hit += [pg for pg, _, kind, _ in btree(q, store_migrate.LEGACY_INDEX) if kind == "leaf"]
    zero_pages(q, hit)
    s = BatchStore(q, recover=True)
    try:
        for _ in range(20):
            s.seal("early", lambda seq: b"new", 0.0)
        assert s.background is not None and s.background.finish_salvage(60)
        rows = s.oldest(10_000)
        keys = [(r.stream, r.seq) for r in rows]
        assert len(keys) == len(set(keys)) and sum(r.payload == b"new" for r in rows) == 20
        rec = s.recovery
        assert rec is not None and rec.complete
        collisions = [r for r in caplog.records if "event=salvage_collision" in r.getMessage()]
        assert collisions and rec.salvaged + rec.unreadable == 600
        assert rec.salvaged == len(rows) - 20
    finally:
        s.close()


def test_a_salvage_stopped_half_way_goes_on_at_the_next_opening(tmp_path, monkeypatch):
    monkeypatch.setattr(store_salvage, "CHUNK", 16)
    q, readable, s = recovered(tmp_path, n=2000)
    assert s.background is not None and s.background.salvage is not None
    salvage = s.background.salvage
    commits = salvage._commit
    count = [0]

    def stop_after_some(*args, **kwargs):
        got = commits(*args, **kwargs)
        count[0] += 1
        if count[0] == 20:
            salvage._stop.set()  # as a kill would, between two chunks
        return got

    salvage._commit = stop_after_some  # type: ignore[method-assign]
    salvage.run()
    aside = s.recovery.moved_to
    part = s.recovery.salvaged
    assert 0 < part < len(readable) and not s.recovery.complete
    s.close()
    assert os.path.exists(aside)  # kept until the salvage is done, and after
    s = BatchStore(q, recover=True)
    try:
        assert s.recovery is not None and s.recovery.moved_to == aside
        assert not s.recovery.complete and s.recovery.salvaged == part
        assert s.background is not None and s.background.finish_salvage(60)
        rows = s.oldest(10_000)
        assert {(r.stream, r.seq, r.payload) for r in rows} == readable  # all of it, once
        assert len(rows) == len(readable) == s.recovery.salvaged and s.recovery.complete
        assert s._db.execute("SELECT count(*) FROM salvage").fetchone()[0] == 0
    finally:
        s.close()
    with BatchStore(q, recover=True) as s:
        assert s.recovery is None  # done: the next start has nothing to go on with


def test_the_check_at_opening_costs_the_same_whatever_the_queues_size(tmp_path):
    """The bounded check's SQLite steps at 10,000 and at 60,000 batches are the same (it
    reads HEAD_CHECK of them), where the full check's grow with the file."""
    steps = {}
    for n in (10_000, 60_000):
        q = str(tmp_path / f"q{n}.sqlite3")
        build(q, list(range(1, n + 1)))
        for what in ("bounded", "full"):
            db = sqlite3.connect(q)
            count = [0]

            def step(count: list[int] = count) -> int:
                count[0] += 1
                return 0

            db.set_progress_handler(step, 100)
            if what == "bounded":
                assert store_check.bounded_check(db) == "ok"
            else:
                assert db.execute("PRAGMA quick_check").fetchone()[0] == "ok"
            db.close()
            steps[what, n] = count[0]
    assert steps["bounded", 60_000] <= steps["bounded", 10_000] * 1.05 + 10
    assert steps["full", 60_000] > 4 * steps["full", 10_000]


def test_damage_the_opening_does_not_read_is_found_behind_ready_and_salvaged(tmp_path):
    q = str(tmp_path / "queue.sqlite3")
    ids = list(range(1, 20_001))
    build(q, ids)
    leaves = [pg for pg, _, kind, _ in sorted(btree(q), key=lambda r: r[1]) if kind == "leaf"]
    zero_pages(q, [leaves[len(leaves) // 2]])  # the middle of the queue: past the head the opening reads
    want = oracle(q, ids)
    s = BatchStore(q, recover=True)
    try:
        assert s.recovery is None and s.background is not None  # the opening's check passed
        s.background.check.run()  # as the agent runs it behind READY
        assert s.background.damage is not None and "integrity check failed" in s.background.damage
        epoch = s.epoch
        s.recover_now()
        assert s.epoch != epoch and s.recovery is not None
        assert s.background is not None and s.background.finish_salvage(60)
        assert s.recovery.complete and s.recovery.salvaged == len(want) and s.recovery.expected == 20_000
        assert s.recovery.unreadable == 20_000 - len(want)
        assert len(s.oldest(30_000)) == len(want)
    finally:
        s.close()


def test_the_opening_of_a_damaged_queue_costs_the_same_whatever_its_size_or_ids(tmp_path, monkeypatch):
    """What READY waits for on a damaged queue (the move aside, store_salvage.prepare: the
    counters, the highest id, the small tables), counted in SQLite steps on the damaged file:
    the same at ids from 3 M and from 201 M, about the same at ten times the batches."""
    steps: list[int] = []
    real = store_pages.open_old

    def counted(aside, stop=None):
        old = real(aside, stop)
        if old is not None:

            def step() -> int:
                steps[-1] += 1
                return 0

            old.set_progress_handler(step, 100)
        return old

    monkeypatch.setattr(store_salvage, "open_old", counted)
    for rows, base in ((2_000, 3_000_000), (2_000, 201_000_000), (20_000, 3_000_000)):
        q = str(tmp_path / f"{rows}-{base}" / "queue.sqlite3")
        os.makedirs(os.path.dirname(q))
        build(q, list(range(base, base + rows)))
        leaves = [pg for pg, _, kind, _ in sorted(btree(q), key=lambda r: r[1]) if kind == "leaf"]
        zero_pages(q, [leaves[0]])
        steps.append(0)
        with BatchStore(q, recover=True) as s:
            assert s.recovery is not None and not s.recovery.complete and s.recovery.expected == rows
            assert s.next_seq("s0") == rows // STREAMS + (rows % STREAMS > 0)
    assert steps[0] == steps[1] > 0
    assert steps[2] <= 1.5 * steps[0]
