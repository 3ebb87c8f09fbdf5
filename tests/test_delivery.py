"""The uplink's delivery parts, without a broker: backoff with full jitter, the backlog's rate,
the historical flag, the deleter, and acknowledgements gathered while batches are in flight
(against a broker: integration/test_uplink.py)."""

from __future__ import annotations

import itertools
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


def _sealed(path, n):
    with BatchStore(path) as s:
        for i in range(n):
            s.seal(
                "air",
                lambda q, i=i: wire.encode(wire.Batch("up-node", "air", q, 1_767_225_600_000 + i, ())),
                0.0,
            )


def test_a_batch_the_broker_took_for_nobody_stays_and_goes_again_when_a_subscriber_is_back(
    tmp_path, monkeypatch
):
    # PUBACK 0x10 (no matching subscribers) is a success code: a broker whose workers are not
    # subscribed yet (Mosquitto 2.0 after a restart, docs/backbone.md) hands the batch to nobody.
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.reasoncodes import ReasonCode
    from uplink_node import RecordingClient

    from edge_agent.node import delivery

    clock = [1000.0]
    monkeypatch.setattr(delivery.time, "monotonic", lambda: clock[0])
    nobody, ok = ReasonCode(PacketTypes.PUBACK, identifier=0x10), ReasonCode(PacketTypes.PUBACK, identifier=0)
    up, path = make_uplink(tmp_path)
    _sealed(path, 30)
    store, client, w = BatchStore(path), RecordingClient(), up.window
    w.connected(store)
    w.live_from_id = 0  # all of them live, no backlog rate
    w.fill(client, store)
    assert len(client.sent) == 30
    for mid in list(w.inflight):
        w.acknowledge(mid, nobody)
    assert w.delivered == 0 and w.unrouted_acks == 30 and not w.acked  # nothing to delete
    probes = []
    for _ in range(200):  # 200 turns of 1 s with nobody subscribed: a probe now and then
        clock[0] += 1.0
        before = len(client.sent)
        w.fill(client, store)
        assert len(client.sent) - before <= 1 and len(w.inflight) <= 1
        if len(client.sent) > before:
            probes.append(clock[0])
            w.acknowledge(max(w.inflight), nobody)
    gaps = [b - a for a, b in itertools.pairwise(probes)]
    assert probes[0] - 1000.0 == delivery.PROBE_FIRST
    assert gaps[:4] == [10.0, 20.0, 40.0, 60.0] and set(gaps[4:]) == {60.0}, gaps
    assert w.delivered == 0 and store.depth()[0] == 30
    clock[0] += 60.0
    w.fill(client, store)  # the next probe finds a subscriber: the rest go at once
    w.acknowledge(max(w.inflight), ok)
    clock[0] += 1.0
    w.fill(client, store)
    assert len(w.inflight) == 29, (
        w.hold,
        w.unrouted,
        w.probe_at,
        w.acked,
        w.cursor_live,
        w.next_rescan,
        clock,
    )
    for mid in list(w.inflight):
        w.acknowledge(mid, ok)
    assert w.delivered == 30 and sorted(w.acked) == list(range(1, 31))
    store.close()


def test_no_subscribers_delete_keeps_the_old_behaviour(tmp_path):
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.reasoncodes import ReasonCode
    from uplink_node import RecordingClient

    from edge_agent.config import load_config

    up, path = make_uplink(tmp_path)
    conf = tmp_path / "node.yaml"
    conf.write_text(
        conf.read_text().replace("  topic_prefix: up\n", "  topic_prefix: up\n  no_subscribers: delete\n")
    )
    up.window.cfg = load_config(conf)
    _sealed(path, 3)
    store, client, w = BatchStore(path), RecordingClient(), up.window
    w.connected(store)
    w.live_from_id = 0
    w.fill(client, store)
    for mid in list(w.inflight):
        w.acknowledge(mid, ReasonCode(PacketTypes.PUBACK, identifier=0x10))
    assert w.delivered == 3 and w.unrouted_acks == 0
    store.close()
