"""The uplink's parts: backoff with full jitter, the backlog's rate, the historical flag,
broker failover, failed PUBACKs, MQTT 3.1.1."""

from __future__ import annotations

import os
import random
import re
import sqlite3

import pytest
from helpers import run_agent_for
from hypothesis import given, settings
from hypothesis import strategies as st

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


CONFIG = """\
node: {{id: up-node}}
flush_interval: 300ms
clock: {{hold_unsynced: 0s}}
mqtt:
  broker: {brokers}
  topic_prefix: up
  protocol: "{protocol}"
  reconnect: {{min: 200ms, max: 1s}}
sensors:
  - name: air
    type: bme680
    interval: 100ms
    heater: {{duration: 30ms}}
    channels: {{temperature: {{deadband: 0}}}}
    sim: {{temperature: {{mean: 20, amplitude: 5, period: 5s}}}}
"""


def run_agent(tmp_path, brokers, seconds, protocol="5"):
    return run_agent_for(tmp_path, CONFIG.format(brokers=brokers, protocol=protocol), seconds)


@pytest.mark.broker
@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_failover_to_the_second_broker(broker, tmp_path, protocol):
    dead = f"mqtt://127.0.0.1:{broker.port + 1 if broker.port < 65535 else 1}"
    log = run_agent(tmp_path, f'["{dead}", "{broker.url}"]', 4, protocol)
    assert f"event=uplink_connected broker={broker.url}" in log
    sealed = len(re.findall(r"event=batch_sealed", log))
    assert re.search(rf"event=uplink_stop delivered={sealed} ", log), log
    with BatchStore(str(tmp_path / "state" / "queue.sqlite3")) as s:
        assert s.depth() == (0, 0)


@pytest.mark.broker
def test_a_failed_puback_keeps_the_batch_without_a_hot_loop(broker, tmp_path):
    # An ACL that lets the agent publish its status but not its data: MQTT 5 PUBACK 0x87.
    acl = tmp_path / "acl"
    acl.write_text("topic readwrite up/up-node/status\ntopic readwrite up/up-node/health\n")
    broker.stop()
    broker.conf.write_text(broker.conf.read_text() + f"acl_file {acl}\n")
    broker.start()
    log = run_agent(tmp_path, f'"{broker.url}"', 3)
    failed = len(re.findall(r"event=puback_failed", log)) + sum(
        int(n) for n in re.findall(r"event=puback_failed .*suppressed=(\d+)", log)
    )
    assert "event=uplink_connected" in log
    assert re.search(r"event=uplink_stop delivered=0 ", log), log
    with BatchStore(str(tmp_path / "state" / "queue.sqlite3")) as s:
        n, _ = s.depth()
    sealed = len(re.findall(r"event=batch_sealed", log))
    assert n == sealed >= 5  # every refused batch is still in the store
    # each batch was offered about once in 3 s (retry after 5 s), not in a hot loop
    assert 1 <= failed <= 2 * sealed, log


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


def _uplink(tmp_path, broker_url="mqtt://127.0.0.1:1883"):
    from edge_agent.config import load_config
    from edge_agent.node.uplink import Uplink

    conf = tmp_path / "node.yaml"
    conf.write_text(CONFIG.format(brokers=f'"{broker_url}"', protocol="5"))
    cfg = load_config(conf)
    path = str(tmp_path / "q.sqlite3")
    BatchStore(path).close()
    return Uplink(cfg, path), path


def test_acknowledgements_gather_while_batches_are_in_flight_and_go_at_once_when_none_are(tmp_path):
    from edge_agent.node.delivery import DELETE_EVERY

    up, _ = _uplink(tmp_path)
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


@pytest.mark.broker
def test_publishes_wait_for_the_loops_write_and_leave_together(broker, tmp_path):
    # paho alone sends each packet the moment it is queued: a TCP segment, and a wake-up of
    # the broker, per message. The uplink's turn writes what the turn queued, back to back.
    import time

    up, path = _uplink(tmp_path, broker.url)
    with BatchStore(path) as s:
        for i in range(3):
            s.seal(
                "air",
                lambda q, i=i: wire.encode(wire.Batch("up-node", "air", q, 1_767_225_600_000 + i, ())),
                0.0,
            )
    store = BatchStore(path)
    try:
        up._start_attempt(time.monotonic())
        assert up.client.want_write()  # the CONNECT waits for the loop...
        deadline = time.monotonic() + 10
        while not up.connected:
            assert time.monotonic() < deadline
            up._network(0.1)  # ...which sends it and reads the CONNACK
            while not up.events.empty():
                up._handle(store, *up.events.get_nowait())
        up._network(0.1)  # the "online" status
        assert not up.client.want_write()
        for batch in store.oldest(3):
            assert up.window.publish(up.client, batch, historical=True)
        assert len(up.client._out_packet) == 3  # queued, none sent yet
        up._network(0.0)
        assert not up.client.want_write()  # all three in one turn
        while up.delivered < 3:
            assert time.monotonic() < deadline
            up._network(0.1)
        assert up.delivered_historical == 3 and sorted(up.window.acked) == [b.id for b in store.oldest(3)]
    finally:
        up._drop_client()
        store.close()
