"""The uplink's delivery parts, without a broker: backoff with full jitter, the backlog's rate,
the historical flag, the deleter, and acknowledgements gathered while batches are in flight
(against a broker: integration/test_uplink.py)."""

from __future__ import annotations

import os
import random
import sqlite3

from hypothesis import given, settings
from hypothesis import strategies as st
from uplink_node import make_uplink

from edge_agent import wire
from edge_agent.node.delivery import TokenBucket
from edge_agent.node.store import BatchStore
from edge_agent.node.uplink import Backoff


def test_backoff_is_full_jitter_exponential_and_capped():
    b = Backoff(1.0, 60.0, random.Random(7))
    delays = [
        [b.next_delay() for _ in range(10)]
        for b in [Backoff(1.0, 60.0, random.Random(s)) for s in range(200)]
    ]
    for n in range(10):
        column = [d[n] for d in delays]
        ceiling = min(60.0, 2.0**n)
        assert all(0.0 <= x <= ceiling for x in column)
        assert max(column) > 0.8 * ceiling  # spread over the whole range...
        assert min(column) < 0.2 * ceiling  # ...not bunched at the top
    b.reset()
    assert b.next_delay() <= 1.0


def test_token_bucket_limits_the_rate():
    bucket = TokenBucket(rate=5.0, burst=5.0)
    t = bucket.at
    taken = sum(bucket.take(t + i * 0.01) for i in range(1000))  # 10 s of asking every 10 ms
    assert 5 + 50 - 1 <= taken <= 5 + 50 + 1


def test_mark_historical_sets_the_flag_and_keeps_the_checksum_valid():
    payload = bytes.fromhex(
        open(os.path.join(os.path.dirname(__file__), "vectors", "v1-two-channels.hex")).read().strip()
    )
    marked = wire.mark_historical(payload)
    b = wire.decode(marked)
    assert b.flags & wire.FLAG_HISTORICAL and b.seq == 7
    assert wire.mark_historical(marked) == marked
    assert all(r["historical"] for r in b.rows())


@settings(max_examples=100, deadline=None)
@given(body=st.binary(max_size=600), flags=st.integers(0, 255).filter(lambda f: not f & wire.FLAG_HISTORICAL))
def test_marking_updates_the_checksum_as_a_recomputation_would_and_keeps_corruption(body, flags):
    from edge_agent.wire.crc32c import crc32c

    head = wire.MAGIC + bytes((3, flags)) + body
    payload = head + crc32c(head).to_bytes(4, "little")
    marked = wire.mark_historical(payload)
    want = bytearray(head)
    want[3] |= wire.FLAG_HISTORICAL
    assert marked == bytes(want) + crc32c(bytes(want)).to_bytes(4, "little")
    corrupt = payload[:-5] + bytes((payload[-5] ^ 0x10,)) + payload[-4:] if body else None
    if corrupt is not None:  # a byte changed in the store: still caught after marking
        bad = wire.mark_historical(corrupt)
        assert crc32c(bad[:-4]).to_bytes(4, "little") != bad[-4:]


def _failing_deletes(monkeypatch, failures):
    real = BatchStore.delete_many
    calls = {"n": 0}

    def delete_many(self, ids):
        calls["n"] += 1
        if calls["n"] <= failures:
            raise sqlite3.OperationalError("database or disk is full")
        return real(self, ids)

    monkeypatch.setattr(BatchStore, "delete_many", delete_many)
    return calls


def test_the_deleter_retries_a_failed_delete_and_reports_the_rows_when_gone(tmp_path, monkeypatch, caplog):
    from edge_agent.node.delivery import Deleter as _Deleter

    path = str(tmp_path / "q.sqlite3")
    with BatchStore(path) as s:
        for i in range(3):
            s.seal("air", lambda q, i=i: b"p%d" % i, 0.0)
        ids = [b.id for b in s.oldest(10)]
    monkeypatch.setattr(_Deleter, "RETRY", 0.05)
    calls = _failing_deletes(monkeypatch, failures=2)
    d = _Deleter(path)
    d.start()
    d.requests.put(ids[:2])
    d.requests.put(ids[2:])
    done = []
    while sorted(done) != ids:
        done += d.done.get(timeout=5)
    d.requests.put(None)
    d.join(timeout=5)
    assert not d.is_alive() and calls["n"] >= 3
    with BatchStore(path) as s:
        assert s.depth() == (0, 0)
    assert caplog.text.count("event=delete_failed") == 2


def test_the_deleter_does_not_hang_a_stop_on_a_full_disk(tmp_path, monkeypatch):
    from edge_agent.node.delivery import Deleter as _Deleter

    path = str(tmp_path / "q.sqlite3")
    with BatchStore(path) as s:
        s.seal("air", lambda q: b"x", 0.0)
        ids = [b.id for b in s.oldest(10)]
    monkeypatch.setattr(_Deleter, "RETRY", 0.05)
    _failing_deletes(monkeypatch, failures=10**6)
    d = _Deleter(path)
    d.start()
    d.requests.put(ids)
    d.requests.put(None)
    d.join(timeout=5)
    assert not d.is_alive()
    with BatchStore(path) as s:  # delivered but kept: sent again later, and deduplicated
        assert s.depth()[0] == 1


def test_acknowledgements_gather_while_batches_are_in_flight_and_go_at_once_when_none_are(tmp_path):
    from edge_agent.node.delivery import DELETE_EVERY

    up, _ = make_uplink(tmp_path)
    now = 1000.0
    w = up.window
    w.acked, w.inflight = [1, 2], {7: 3}
    w.hand_over_deletes(now)  # the first goes at once, and starts the clock
    assert up.deleter.requests.get_nowait() == [1, 2] and w.deleting == {1, 2}
    w.acked = [4]
    w.hand_over_deletes(now + DELETE_EVERY / 2)
    assert up.deleter.requests.empty() and w.acked == [4]  # gathering: row 3 still in flight
    w.acked.append(5)
    w.hand_over_deletes(now + DELETE_EVERY)
    assert up.deleter.requests.get_nowait() == [4, 5]
    w.acked, w.inflight = [3], {}
    w.hand_over_deletes(now + DELETE_EVERY * 1.1)  # nothing in flight: no reason to wait
    assert up.deleter.requests.get_nowait() == [3]
    w.acked = [6]
    w.stopping = True
    w.hand_over_deletes(now + DELETE_EVERY * 1.15)  # stopping: no reason to wait
    assert up.deleter.requests.get_nowait() == [6]
    w.stopping = False
    up.deleter.done.put([1, 2, 4])
    w.hand_over_deletes(now + DELETE_EVERY * 1.2)
    assert w.deleting == {5, 3, 6}
