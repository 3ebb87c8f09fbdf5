"""Time to READY on a damaged queue, whatever its highest row id: the old code path beside
the new, in one run.

    .venv/bin/python bench/bench_salvage.py [--tops 1000000,10000000] [--rows 2000]
        [--salvage-rows 100000] [--cap-rows 4100000] [--dir DIR]

Row ids are AUTOINCREMENT and never reused, so a node that sealed TOP batches in its life
has ids up to TOP however few wait. For each TOP: a queue of ROWS batches with the newest
ids up to TOP (six streams, 65-byte payloads, one transaction with sqlite_sequence set),
checkpointed, then damaged: the first leaf page of its table zeroed (the head of the queue,
the old path's worst case: its scan stops at once and it looks up every id up to TOP).

- old: what the agent did before READY: PRAGMA quick_check of the whole file, the file
  moved aside, and the salvage (a scan to the first damaged page, then one lookup per id
  up to the highest ever given, each row copied in a commit of its own), all in the
  agent's opening, from a cold cache;
- new: BatchStore(recover=True) up to its return, which is what READY waits for (the
  bounded check, the file moved aside, store_salvage.prepare), from a cold cache; then
  the salvage behind READY to its end;
- the agent end to end on the last: `edge-agent run --simulate` on the damaged queue,
  from the process's start to its event=ready line.

Then the salvage of SALVAGE_ROWS batches behind READY: its rate, its chunks' transactions
(a seal's commit they wait for included), and a seal every 20 ms meanwhile, how long each
waited for the lock (what the salvage adds to the loss window), beside the same seals with
no salvage running. And at the store's default cap (256 MiB of payload: CAP_ROWS batches
of 65 bytes) the full check against the bounded one, from a cold cache (the file's pages
dropped with posix_fadvise) and a warm one, and the agent's time to READY on it, whole and
damaged, cold. Figures only: times depend on the machine, its load and its disk (SD cards
are slower; --dir puts the files there).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from edge_agent.node import store_check, store_file, store_salvage
from edge_agent.node.store import BatchStore
from edge_agent.node.store_pages import COLUMNS

STREAMS = 6
PAYLOAD = 65
BOOT = "0b6f1c2e-4d3a-4e5f-9a8b-7c6d5e4f3a2b"


def build(path: str, rows: int, top: int) -> None:
    """``rows`` batches with the ids up to ``top``, six streams, checkpointed."""
    with BatchStore(path) as s:
        db = s._db
        payload = os.urandom(PAYLOAD)
        first = top - rows + 1
        db.execute("BEGIN")
        db.executemany(
            f"INSERT INTO batches (id, {COLUMNS}) VALUES (?, ?, ?, ?, ?, 0, ?, 0, ?)",
            (
                (i, f"s{i % STREAMS}", i // STREAMS, 1.7e9 + i / STREAMS, payload, BOOT, i / STREAMS)
                for i in range(first, top + 1)
            ),
        )
        db.execute(
            "INSERT OR REPLACE INTO stream_seq SELECT stream, max(seq) + 1 FROM batches GROUP BY stream"
        )
        db.execute("UPDATE sqlite_sequence SET seq = ? WHERE name = 'batches'", (top,))
        db.execute("COMMIT")
        s.checkpoint()


def damage_head(path: str) -> None:
    """Zero the leaf page that holds the queue's oldest batches."""
    db = sqlite3.connect(path)
    (page,) = db.execute(
        "SELECT pageno FROM dbstat WHERE name = 'batches' AND pagetype = 'leaf' ORDER BY path LIMIT 1"
    ).fetchone()
    size = db.execute("PRAGMA page_size").fetchone()[0]
    db.close()
    with open(path, "r+b") as f:
        f.seek((page - 1) * size)
        f.write(bytes(size))


def drop_cache(path: str) -> None:
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            fd = os.open(path + suffix, os.O_RDONLY)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            os.close(fd)


def old_open(path: str) -> dict[str, float]:
    """The agent's opening as it was: the full check, then the salvage, all before READY
    (each row copied in a transaction of its own, as it was); its phases' times, and the
    batches salvaged."""
    out: dict[str, float] = {}
    t = time.perf_counter()
    db = store_file.connect(path)
    try:
        ok = db.execute("PRAGMA quick_check").fetchone()[0] == "ok"
    except sqlite3.DatabaseError:
        ok = False
    db.close()
    assert not ok, "the damage must fail the check"
    out["check"] = time.perf_counter() - t
    aside = path + ".corrupt-old"
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.replace(path + suffix, aside + suffix)
    store_file.create_private(path)
    db = store_file.open_checked(path, check=False)
    old = sqlite3.connect(f"file:{aside}?mode=ro", uri=True)
    salvaged = 0
    try:
        for stream, next_seq in old.execute("SELECT stream, next_seq FROM stream_seq"):
            db.execute("INSERT OR REPLACE INTO stream_seq VALUES (?, ?)", (stream, next_seq))
        t = time.perf_counter()
        ids = old_readable_ids(old)
        out["search"] = time.perf_counter() - t
        t = time.perf_counter()
        for row_id in ids:
            try:
                row = old.execute(f"SELECT {COLUMNS} FROM batches WHERE id = ?", (row_id,)).fetchone()
                db.execute(f"INSERT OR IGNORE INTO batches ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", row)
                db.execute(
                    "INSERT INTO stream_seq (stream, next_seq) VALUES (?, ?) ON CONFLICT "
                    "(stream) DO UPDATE SET next_seq = max(next_seq, excluded.next_seq)",
                    (row[0], row[1] + 1),
                )
                salvaged += 1
            except (sqlite3.DatabaseError, ValueError):
                pass
    finally:
        old.close()
        db.close()
    out["copy"] = time.perf_counter() - t
    out["salvaged"] = salvaged
    return out


def old_readable_ids(old: sqlite3.Connection) -> list[int]:
    """store_file._readable_ids as it was."""
    ids: list[int] = []
    try:
        for (row_id,) in old.execute("SELECT id FROM batches ORDER BY id"):
            ids.append(row_id)
        return ids
    except sqlite3.DatabaseError:
        pass
    row = old.execute("SELECT seq FROM sqlite_sequence WHERE name = 'batches'").fetchone()
    top = row[0] if row else 0
    for row_id in range((ids[-1] if ids else 0) + 1, top + 1):
        try:
            if old.execute("SELECT 1 FROM batches WHERE id = ?", (row_id,)).fetchone():
                ids.append(row_id)
        except sqlite3.DatabaseError:
            continue
    return ids


def lock_waits(store: BatchStore, until: threading.Event | None, n: int = 100) -> list[float]:
    """How long each of ``n`` seals (one every 20 ms), or as many as come before ``until``,
    waited for the write lock (its BEGIN IMMEDIATE): what another writer adds to a seal."""
    waits: list[float] = []
    plain = store._transaction

    @contextmanager
    def timed() -> Iterator[sqlite3.Connection]:
        t = time.perf_counter()
        with plain() as db:
            waits.append(time.perf_counter() - t)
            yield db

    store._transaction = timed  # type: ignore[method-assign]
    try:
        for i in range(n):
            if until is not None and until.is_set() and i >= 10:
                break
            store.seal(f"s{i % STREAMS}", lambda q: os.urandom(PAYLOAD), time.time())
            time.sleep(0.02)
    finally:
        store._transaction = plain  # type: ignore[method-assign]
    return waits


def timed_commits(salvage: store_salvage.Salvage) -> list[float]:
    """The salvage's transactions (a chunk each), from BEGIN IMMEDIATE (its wait for a seal
    holding the lock included) to the end of COMMIT."""
    holds: list[float] = []
    plain = salvage._commit

    def timed(*args, **kwargs):
        t = time.perf_counter()
        try:
            return plain(*args, **kwargs)
        finally:
            holds.append(time.perf_counter() - t)

    salvage._commit = timed  # type: ignore[method-assign]
    return holds


def new_open(path: str, seals: bool = False) -> dict[str, float]:
    """The new opening's time to READY, then its salvage to the end; with ``seals``, one
    every 20 ms meanwhile, and their waits for the write lock beside the salvage's holds."""
    out: dict[str, float] = {}
    t = time.perf_counter()
    store = BatchStore(path, recover=True)
    out["ready"] = time.perf_counter() - t
    assert store.recovery is not None and store.background is not None and store.background.salvage
    salvage = store.background.salvage
    holds = timed_commits(salvage)
    t = time.perf_counter()
    salvage.start()
    waits = lock_waits(store, salvage.done, n=1_000_000) if seals else []
    salvage.done.wait()
    out["salvage"] = time.perf_counter() - t
    out["salvaged"] = store.recovery.salvaged
    out["queries"] = salvage.walk.queries
    out["hold max"], out["hold median"] = max(holds), statistics.median(holds)
    if seals:
        out["wait max"], out["wait median"] = max(waits), statistics.median(waits)
        out["wait p99"] = sorted(waits)[int(len(waits) * 0.99)]
        out["seals"] = len(waits)
        idle = lock_waits(store, None, n=100)
        out["idle max"], out["idle median"] = max(idle), statistics.median(idle)
    store.close()
    return out


def agent_ready(state: str, top: str) -> float:
    """Seconds from the agent's start to its event=ready line."""
    err = os.path.join(top, "agent.err")
    cmd = [sys.executable, "-m", "edge_agent", "run", "--simulate", "--state-dir", state]
    cmd += ["--broker", "mqtt://127.0.0.1:9", "--flush-interval", "1s"]
    t = time.perf_counter()
    with open(err, "wb") as f:
        proc = subprocess.Popen(cmd, stderr=f)
    try:
        while "event=ready" not in open(err, errors="replace").read():
            if proc.poll() is not None or time.perf_counter() - t > 300:
                raise RuntimeError(open(err, errors="replace").read()[-2000:])
            time.sleep(0.01)
        return time.perf_counter() - t
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=120)


def checks(path: str) -> dict[str, float]:
    """Full and bounded checks of a whole file, cold and warm."""

    def run(full: bool) -> float:
        db = sqlite3.connect(path)
        t = time.perf_counter()
        try:
            db.execute("PRAGMA quick_check").fetchone() if full else store_check.bounded_check(db)
        except sqlite3.DatabaseError:
            pass  # a damaged file: the check failing is its answer
        t = time.perf_counter() - t
        db.close()
        return t

    out = {}
    for name, full in (("full", True), ("bounded", False)):
        drop_cache(path)
        out[f"{name} cold"] = run(full)
        out[f"{name} warm"] = run(full)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tops", default="1000000,10000000", help="highest row ids, comma-separated")
    ap.add_argument("--rows", type=int, default=2_000, help="batches waiting in each queue")
    ap.add_argument("--salvage-rows", type=int, default=100_000, help="batches of the salvage measured")
    ap.add_argument("--cap-rows", type=int, default=4_100_000, help="batches at the default cap (0: skip)")
    ap.add_argument("--dir", help="where the queue files go (default: a temporary directory)")
    a = ap.parse_args()
    tops = [int(t) for t in a.tops.split(",")]
    top_dir = tempfile.mkdtemp(prefix="bench-salvage-", dir=a.dir)
    ms = lambda x: f"{x * 1000:.1f} ms"  # noqa: E731

    def queue(name: str, rows: int, top: int) -> str:
        q = os.path.join(top_dir, name, "queue.sqlite3")
        os.makedirs(os.path.dirname(q))
        build(q, rows, top)
        damage_head(q)
        return q

    try:
        print(f"queues of {a.rows:,} batches, the oldest leaf page zeroed; time to READY:")
        print(f"{'highest id':>14}{'old':>13}{'new':>13}{'old/new':>10}   new: then the salvage behind READY")
        for top in tops:
            src = queue(f"src-{top}", a.rows, top)
            q_old, q_new = (os.path.join(top_dir, f"{w}-{top}", "queue.sqlite3") for w in ("old", "new"))
            for q in (q_old, q_new):
                os.makedirs(os.path.dirname(q))
                shutil.copy(src, q)
            drop_cache(q_old)
            t = time.perf_counter()
            phases = old_open(q_old)
            old = time.perf_counter() - t
            drop_cache(q_new)
            new = new_open(q_new)
            print(
                f"{top:>14,}{old * 1000:>10.1f} ms{new['ready'] * 1000:>10.1f} ms{old / new['ready']:>9.0f}x   "
                f"{new['salvage']:.2f} s, {new['salvaged']:,.0f} batches (old: {phases['salvaged']:,.0f}), "
                f"{new['queries']:.0f} queries"
            )
            print(
                f"{'':>14}   old: quick_check {phases['check']:.2f} s, id search {phases['search']:.2f} s "
                f"({top:,} lookups), copy {phases['copy']:.2f} s (a commit a row)"
            )
        state = os.path.dirname(src)
        drop_cache(src)
        print(f"the agent on the last: event=ready {agent_ready(state, top_dir):.2f} s after its start")

        q = queue("salvage", a.salvage_rows, tops[-1])
        drop_cache(q)
        new = new_open(q, seals=True)
        print(
            f"\nthe salvage of {a.salvage_rows:,} batches behind READY: {new['salvage']:.1f} s "
            f"({new['salvaged'] / new['salvage']:,.0f} batches/s), {new['queries']:.0f} queries; "
            f"a chunk's transaction (its wait for the lock, the copy, the commit): longest {ms(new['hold max'])}, median {ms(new['hold median'])}"
        )
        print(
            f"  a seal every 20 ms meanwhile waited for the lock: longest {ms(new['wait max'])}, 99th "
            f"percentile {ms(new['wait p99'])}, median {ms(new['wait median'])} of {new['seals']:.0f} "
            f"(no salvage: longest {ms(new['idle max'])}, median {ms(new['idle median'])})"
        )
        if a.cap_rows:
            cap = os.path.join(top_dir, "cap", "queue.sqlite3")
            os.makedirs(os.path.dirname(cap))
            build(cap, a.cap_rows, a.cap_rows)
            mib = os.path.getsize(cap) / 2**20
            c = checks(cap)
            print(f"\nthe default cap: {a.cap_rows:,} batches of {PAYLOAD} B, {mib:.0f} MiB")
            for what in ("full", "bounded"):
                name = "PRAGMA quick_check (old, before READY)" if what == "full" else "bounded check (new)"
                print(f"  {name:42} cold {c[what + ' cold']:8.2f} s   warm {c[what + ' warm']:8.3f} s")
            drop_cache(cap)
            print(
                f"  the agent on it, whole, cold: event=ready {agent_ready(os.path.dirname(cap), top_dir):.2f} s"
            )
            damage_head(cap)
            drop_cache(cap)
            print(
                f"  the agent on it, damaged, cold: event=ready {agent_ready(os.path.dirname(cap), top_dir):.2f} s"
            )
            c = checks(os.path.join(top_dir, f"old-{tops[-1]}", "queue.sqlite3.corrupt-old"))
            print(
                f"  PRAGMA quick_check at {tops[-1]:,} ids ({a.rows:,} batches): cold {c['full cold']:.3f} s"
            )
    finally:
        shutil.rmtree(top_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
