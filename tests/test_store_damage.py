"""Random damage to the queue file, its WAL and a -shm an older version left, many seeds: whatever the
bytes, opening the store for the agent never raises, never crash-loops, and leaves a store
that takes new batches; what it could not read is moved aside and reported, never deleted,
and every batch SQLite can still read from it (looked up by id, one by one: the oracle) is
salvaged. (One in about 200 random damages once gave a UnicodeDecodeError at open, and a
crash loop.) The store is opened as the agent does: the bounded check at opening, then the
whole file's check and the salvage, here on the test's thread."""

from __future__ import annotations

import os
import random
import shutil
import sqlite3

import pytest

from edge_agent.node import store_vfs
from edge_agent.node.store import BatchStore

SEEDS = range(200)


def _crashed_store(src: str) -> None:
    """A store as a kill leaves it: batches in the main file and in a WAL not checkpointed."""
    s = BatchStore(src)
    for i in range(60):
        s.seal("air" if i % 3 else "dust", lambda seq, i=i: b"EA" + bytes([i]) * 300, 0.0)
    s._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    for i in range(60, 90):  # these stay in the WAL
        s.seal("air", lambda seq, i=i: b"EA" + bytes([i]) * 300, 0.0)
    shutil.copy(src, src + ".main")
    shutil.copy(src + "-wal", src + ".wal")
    # The WAL's index is in the agent's memory (store_vfs): a -shm beside the queue is one
    # an older version left, never read; damage to it must change nothing.
    assert not os.path.exists(src + "-shm")
    with open(src + ".shm", "wb") as f:
        f.write(random.Random(1).randbytes(32768))
    s.close()


@pytest.fixture(scope="module")
def crashed(tmp_path_factory):
    d = tmp_path_factory.mktemp("crashed")
    _crashed_store(str(d / "q.sqlite3"))
    return d


def readable(q: str) -> set[tuple[str, int, bytes]]:
    """What SQLite can read of a (damaged) queue, one lookup per id up to the highest given."""
    tmp = q + ".oracle"
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(q + suffix):
            shutil.copy(q + suffix, tmp + suffix)
    out: set[tuple[str, int, bytes]] = set()
    try:
        db = sqlite3.connect(store_vfs.uri(tmp, readonly=True), uri=True)  # as the agent reads it
        for row_id in range(1, 200):  # _crashed_store seals fewer
            try:
                row = db.execute(
                    "SELECT stream, seq, payload FROM batches WHERE id = ?", (row_id,)
                ).fetchone()
            except (sqlite3.DatabaseError, ValueError):
                continue
            if row is not None:
                out.add(row)
        db.close()
    except sqlite3.DatabaseError:
        pass
    return out


def open_as_the_agent(q: str) -> BatchStore:
    """BatchStore(recover=True), then what the agent runs behind READY, to its end."""
    store = BatchStore(q, recover=True)
    assert store.background is not None
    assert store.background.finish_salvage(60)
    store.background.check.run()  # the whole file's check
    if store.background.damage is not None:
        store.recover_now()
        assert store.background.finish_salvage(60)
    return store


@pytest.mark.parametrize("seed", SEEDS)
def test_any_damage_opens_and_the_store_goes_on(tmp_path, crashed, seed):
    rnd = random.Random(seed)
    q = str(tmp_path / "queue.sqlite3")
    shutil.copy(crashed / "q.sqlite3.main", q)
    shutil.copy(crashed / "q.sqlite3.wal", q + "-wal")
    shutil.copy(crashed / "q.sqlite3.shm", q + "-shm")
    target = rnd.choice(["", "-wal", "-shm", "", "-wal"]) + ""
    path = q + target
    size = os.path.getsize(path)
    how = rnd.choice(["bytes", "bytes", "truncate", "zero-page"])
    with open(path, "r+b") as f:
        if how == "bytes":  # 64 random bytes somewhere in it
            at = rnd.randrange(max(1, size - 64))
            f.seek(at)
            f.write(rnd.randbytes(64))
        elif how == "truncate":
            f.truncate(rnd.randrange(size))
        else:
            f.seek(rnd.randrange(max(1, size // 1024)) * 1024)
            f.write(bytes(1024))
    oracle = readable(q)
    store = open_as_the_agent(q)  # never raises, whatever the damage
    try:
        before = store.depth()[0]
        kept = {(r.stream, r.seq, r.payload) for r in store.oldest(1000)}
        assert oracle <= kept, f"seed {seed}: readable batches not salvaged: {sorted(oracle - kept)[:3]}"
        _, stored = store.seal("air", lambda seq: b"EA-after-the-damage", 0.0)
        assert stored > 0 and store.depth()[0] == before + 1
        rows = store.oldest(1000)
        assert rows[-1].payload == b"EA-after-the-damage"
        assert len({(r.stream, r.seq) for r in rows}) == len(rows)  # no sequence number twice
        if store.recovery is not None:  # moved aside, kept, and said
            assert os.path.exists(store.recovery.moved_to)
            assert store.recovery.complete and store.recovery.salvaged == before
            if store.recovery.expected is not None:  # its own count, where readable, said 90
                assert (store.recovery.expected, store.recovery.unreadable) == (90, 90 - before)
        else:
            ok = store._db.execute("PRAGMA quick_check").fetchone()[0]
            assert ok == "ok"
    except sqlite3.DatabaseError as exc:  # damage SQLite only finds later is still a clear error
        pytest.fail(f"seed {seed}: {target or 'main'} {how}: the store broke after open: {exc}")
    finally:
        store.close()
