"""The queue's bounds and failures: cap and policy, time to live, corrupt files, a full disk."""

from __future__ import annotations

import dataclasses
import os
import random
import shutil

import pytest

from drivers.base import Reading
from edge_agent.config import load_config
from edge_agent.node.sampler import Sampler
from edge_agent.node.store import BatchStore


def fill(store, stream, n, size=100, **kw):
    return [store.seal(stream, lambda q: bytes([q % 256]) * size, 1000.0 + i, **kw) for i in range(n)]


def test_drop_oldest_keeps_the_cap_and_counts_per_stream(tmp_path):
    with BatchStore(str(tmp_path / "q"), max_size=1000, policy="drop_oldest") as s:
        fill(s, "air", 6)
        fill(s, "power", 6)
        n, size = s.depth()
        assert size <= 1000 and n == 10
        assert s.losses() == {"air": {"dropped": 2}}
        assert [r.seq for r in s.oldest(100) if r.stream == "air"] == [2, 3, 4, 5]
        fill(s, "power", 5)
        assert s.losses() == {"air": {"dropped": 6}, "power": {"dropped": 1}}
        assert s.depth() == (10, 1000)


def test_refuse_newest_uses_up_the_number_so_the_gap_shows(tmp_path):
    with BatchStore(str(tmp_path / "q"), max_size=500, policy="refuse_newest") as s:
        results = fill(s, "air", 7)
        assert [size for _, size in results] == [100] * 5 + [0, 0]
        assert [r.seq for r in s.oldest(100)] == [0, 1, 2, 3, 4]
        assert s.losses() == {"air": {"refused": 2}}
        for r in s.oldest(2):
            s.delete_many([r.id])
        assert s.seal("air", lambda q: b"x" * 100, 0.0) == (7, 100)  # seq 5 and 6 are the gap


def test_losses_survive_reopening(tmp_path):
    path = str(tmp_path / "q")
    with BatchStore(path, max_size=300) as s:
        fill(s, "air", 5)
    with BatchStore(path) as s:
        assert s.losses() == {"air": {"dropped": 2}}
        assert s.depth() == (3, 300)


def test_ttl_runs_on_the_monotonic_clock_within_a_boot(tmp_path):
    with BatchStore(str(tmp_path / "q")) as s:
        s.seal("air", lambda q: b"a", 1000.0, boot_id="A", sealed_mono=100.0)
        s.seal("air", lambda q: b"b", 1000.0, boot_id="A", sealed_mono=200.0)
        # the wall clock jumped a year ahead: nothing of this boot expires early
        assert s.expire(3600, now=1000.0 + 365 * 86400, now_mono=250.0, boot_id="A", wall_trusted=True) == {}
        assert s.expire(3600, now=0.0, now_mono=100.0 + 3600.5, boot_id="A", wall_trusted=True) == {"air": 1}
        assert s.losses() == {"air": {"expired": 1}}
        assert [r.payload for r in s.oldest(5)] == [b"b"]


def test_ttl_of_earlier_boots_needs_a_trusted_wall_clock(tmp_path):
    with BatchStore(str(tmp_path / "q")) as s:
        s.seal("air", lambda q: b"old", 1000.0, boot_id="A", sealed_mono=5.0)
        s.seal("air", lambda q: b"unsynced", 1000.0, boot_id="A", sealed_mono=6.0, clock_unsynced=True)
        assert s.expire(60, now=5000.0, now_mono=10.0, boot_id="B", wall_trusted=False) == {}
        assert s.expire(60, now=5000.0, now_mono=10.0, boot_id="B", wall_trusted=True) == {"air": 1}
        assert [r.payload for r in s.oldest(5)] == [b"unsynced"]  # no trustworthy age: kept


def test_random_bytes_file_is_moved_aside_and_a_fresh_store_used(tmp_path):
    path = tmp_path / "q.sqlite3"
    junk = random.Random(3).randbytes(50_000)
    path.write_bytes(junk)
    with pytest.raises(Exception, match="cannot open the queue"):
        BatchStore(str(path))  # without recover=True it refuses, and touches nothing
    assert path.read_bytes() == junk
    with BatchStore(str(path), recover=True) as s:
        rec = s.recovery
        assert rec is not None and rec.salvaged == 0
        assert os.path.basename(rec.moved_to).startswith("q.sqlite3.corrupt-")
        assert open(rec.moved_to, "rb").read() == junk  # kept, never deleted
        assert s.seal("air", lambda q: b"new", 0.0) == (0, 3)


def make_store_with_rows(path, n=400, size=300):
    with BatchStore(str(path)) as s:
        for i in range(n):
            s.seal("air", lambda q: (b"%06d" % q) * (size // 6), float(i))


def test_corrupt_pages_are_salvaged_as_far_as_sqlite_reads_them(tmp_path):
    path = tmp_path / "q.sqlite3"
    make_store_with_rows(path)
    data = bytearray(path.read_bytes())
    page = 4096
    mid = len(data) // page // 2
    data[mid * page : (mid + 3) * page] = random.Random(1).randbytes(3 * page)  # three pages of garbage
    path.write_bytes(bytes(data))
    with BatchStore(str(path), recover=True) as s:
        rec = s.recovery
        assert rec is not None and s.background is not None and s.background.finish_salvage(60)
        n, _ = s.depth()
        assert 0 < rec.salvaged == n < 400  # the rows on the damaged pages are gone, the rest is back
        rows = s.oldest(1000)
        assert all(r.payload == (b"%06d" % r.seq) * 50 for r in rows)  # what was salvaged is intact
        assert s.seal("air", lambda q: b"x", 0.0)[0] == 400  # numbers are never reused


def test_truncated_wal_loses_only_uncommitted_frames(tmp_path):
    path = tmp_path / "q.sqlite3"
    s = BatchStore(str(path))
    s._db.execute("PRAGMA wal_autocheckpoint=0")  # keep everything in the WAL
    for i in range(50):
        s.seal("air", lambda q: b"%05d" % q * 40, float(i))
    copy = tmp_path / "copy.sqlite3"
    shutil.copy(path, copy)
    wal = (tmp_path / "q.sqlite3-wal").read_bytes()
    s.close()
    (tmp_path / "copy.sqlite3-wal").write_bytes(wal[: len(wal) * 2 // 3])  # cut mid-frame
    with BatchStore(str(copy), recover=True) as c:
        assert c.recovery is None  # a torn WAL is SQLite's normal crash case, not corruption
        rows = c.oldest(100)
        assert 0 < len(rows) < 50
        assert [r.seq for r in rows] == list(range(len(rows)))  # a prefix of the commits
        assert c.next_seq("air") == len(rows)


class OneSensor:
    def __init__(self):
        self.t = 0.0

    def read(self):
        self.t += 1.0
        return Reading(t=1_800_000_000 + self.t, mono=self.t, values={"temperature": self.t})

    def close(self):
        pass


def test_a_full_disk_is_counted_and_storing_resumes(tmp_path):
    base = load_config(None)
    sc = dataclasses.replace(
        base.sensors[0], channels=(dataclasses.replace(base.sensors[0].channels[0], filters=()),)
    )
    cfg = dataclasses.replace(base, sensors=(sc,))
    store = BatchStore(str(tmp_path / "q"))
    sensor = OneSensor()
    s = Sampler(cfg, store, lambda c: sensor, clock=lambda: sensor.t, wall=lambda: 1_800_000_000 + sensor.t)
    s.slots[0].driver = sensor
    pages = store._db.execute("PRAGMA page_count").fetchone()[0]
    store._db.execute(f"PRAGMA max_page_count={pages}")  # the "disk" is full now
    full_errors = 0
    for _ in range(200):
        for _ in range(20):
            s.sample(s.slots[0])
        s.seal()
        full_errors = s.unstored.get("bme680", 0)
        if full_errors >= 3:
            break
    assert full_errors >= 3  # sampling went on; the batches that did not fit were counted
    store._db.execute("PRAGMA max_page_count=1000000")  # space returns
    before = store.depth()[0]
    s.sample(s.slots[0])
    assert s.seal() == 1 and store.depth()[0] == before + 1
    seqs = [r.seq for r in store.oldest(10_000)]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    store.close()
