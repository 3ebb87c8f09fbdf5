"""The uplink against a real broker: failover to the second broker (MQTT 5 and 3.1.1), failed
PUBACKs, and publishes that leave together in one turn of the loop."""

from __future__ import annotations

import re

import pytest
from helpers import Sink, run_agent_for
from uplink_node import CONFIG, make_uplink

from edge_agent import wire
from edge_agent.node.store import BatchStore


def run_agent(tmp_path, brokers, seconds, protocol="5"):
    return run_agent_for(tmp_path, CONFIG.format(brokers=brokers, protocol=protocol), seconds)


@pytest.mark.broker
@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_failover_to_the_second_broker(broker, tmp_path, protocol):
    dead = f"mqtt://127.0.0.1:{broker.port + 1 if broker.port < 65535 else 1}"
    with Sink(broker.port):
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


@pytest.mark.broker
def test_publishes_wait_for_the_loops_write_and_leave_together(broker, tmp_path):
    # paho alone sends each packet the moment it is queued: a TCP segment, and a wake-up of
    # the broker, per message. The uplink's turn writes what the turn queued, back to back.
    import time

    sink = Sink(broker.port)
    up, path = make_uplink(tmp_path, broker.url)
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
        sink.close()


@pytest.mark.broker
def test_batches_the_broker_has_nobody_for_stay_until_a_subscriber_comes(broker, tmp_path):
    # Mosquitto answers a publish nobody subscribes to with PUBACK 0x10, a success code: the
    # node used to delete what no worker had. Now it keeps them, probes, and sends them all
    # once a subscriber is there; every sealed batch arrives, in order of seq, none missing.
    import subprocess
    import threading

    import paho.mqtt.client as mqtt
    from helpers import agent_cmd, kill_agent, stop_agent, wait_for_log

    cfg = tmp_path / "node.yaml"
    cfg.write_text(CONFIG.format(brokers=f'"{broker.url}"', protocol="5"))
    err, state = tmp_path / "agent.err", tmp_path / "state"
    seqs: list[int] = []
    got = threading.Event()

    def on_message(client, userdata, msg):
        seqs.append(wire.decode(msg.payload).seq)
        got.set()

    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="late-worker", protocol=mqtt.MQTTv5)
    sub.on_message = on_message
    with open(err, "wb") as log:
        proc = subprocess.Popen(
            agent_cmd("run", "--simulate", "--config", str(cfg), "--state-dir", str(state)), stderr=log
        )
        try:
            wait_for_log(
                proc, err, lambda t: "event=no_subscribers" in t and t.count("event=batch_sealed") >= 8
            )
            assert "event=subscriber_back" not in err.read_text()
            sub.connect("127.0.0.1", broker.port)
            sub.subscribe("up/up-node/data/#", qos=1)
            sub.loop_start()
            # the next probe (at most a minute away) finds the subscriber, the rest follow
            wait_for_log(proc, err, lambda t: "event=subscriber_back" in t, timeout=90)
            assert got.wait(10)
            assert stop_agent(proc, err) == 0, err.read_text()
        finally:
            kill_agent(proc, err)
            sub.loop_stop()
            sub.disconnect()
    text = err.read_text()
    sealed = text.count("event=batch_sealed")
    with BatchStore(str(state / "queue.sqlite3")) as s:
        left = s.depth()[0]
    # what the stop left unsent stays queued; all else arrived, the same batch at most twice
    assert sorted(set(seqs)) == list(range(sealed - left)), (seqs, sealed, left)
    assert re.search(r"event=uplink_stop delivered=\d+ ", text)
