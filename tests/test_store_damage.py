"""Random damage to the queue file, its WAL and its index (shm), many seeds: whatever the
bytes, opening the store for the agent never raises, never crash-loops, and leaves a store
that takes new batches; what it could not read is moved aside and reported, never deleted.
(One in about 200 random damages once gave a UnicodeDecodeError at open, and a crash loop.)"""

from __future__ import annotations

import os
import random
import shutil
import sqlite3

import pytest

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
    shutil.copy(src + "-shm", src + ".shm")
    s.close()


@pytest.fixture(scope="module")
def crashed(tmp_path_factory):
    d = tmp_path_factory.mktemp("crashed")
    _crashed_store(str(d / "q.sqlite3"))
    return d


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
    store = BatchStore(q, recover=True)  # never raises, whatever the damage
    try:
        before = store.depth()[0]
        _, stored = store.seal("air", lambda seq: b"EA-after-the-damage", 0.0)
        assert stored > 0 and store.depth()[0] == before + 1
        rows = store.oldest(1000)
        assert rows[-1].payload == b"EA-after-the-damage"
        assert len({(r.stream, r.seq) for r in rows}) == len(rows)  # no sequence number twice
        if store.recovery is not None:  # moved aside, kept, and said
            assert os.path.exists(store.recovery.moved_to)
            assert store.recovery.salvaged == before
        else:
            ok = store._db.execute("PRAGMA quick_check").fetchone()[0]
            assert ok == "ok"
    except sqlite3.DatabaseError as exc:  # damage SQLite only finds later is still a clear error
        pytest.fail(f"seed {seed}: {target or 'main'} {how}: the store broke after open: {exc}")
    finally:
        store.close()
