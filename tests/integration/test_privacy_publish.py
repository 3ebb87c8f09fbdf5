"""A private stream of a simulated node (`edge-agent run --simulate`) through a real
Mosquitto: what is published on its data topic is statistics per period, flagged with the
level and period, never samples; its raw twin on the same node publishes every sample.
The test subscribes itself (paho) and reads the payloads' bytes as published."""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from helpers import agent_cmd

from edge_agent import wire

STATISTICS = {"power.mean", "power.min", "power.max", "power.count", "energy.total", "energy.count"}


def node_yaml(broker_url: str) -> str:
    return f"""\
node: {{id: priv-node}}
flush_interval: 1s
clock: {{hold_unsynced: 0s}}
mqtt: {{broker: "{broker_url}", topic_prefix: e2e}}
sensors:
  - {{name: mains, type: ina226, interval: 200ms, shunt_ohms: 0.002, max_current: 20,
     channels: {{bus_voltage: {{enabled: false}}, shunt_voltage: {{enabled: false}}, current: {{enabled: false}}}},
     privacy: {{level: aggregate, period: 1min}},
     sim: {{bus_voltage: 24.0, current: {{mean: 7.5, amplitude: 2.0, period: 20s}}}}}}
  - {{name: twin, type: ina226, address: 0x41, interval: 200ms, shunt_ohms: 0.002, max_current: 20,
     channels: {{bus_voltage: {{enabled: false}}, shunt_voltage: {{enabled: false}}, current: {{enabled: false}}}},
     sim: {{bus_voltage: 24.0, current: {{mean: 7.5, amplitude: 2.0, period: 20s}}}}}}
"""


@pytest.mark.broker
def test_a_private_stream_publishes_statistics_per_period_only(broker, tmp_path: Path):
    got: dict[str, list[bytes]] = {"mains": [], "twin": []}
    lock, subscribed, enough = threading.Lock(), threading.Event(), threading.Event()

    def on_message(_c, _u, msg) -> None:
        stream = msg.topic.rsplit("/", 1)[-1]
        with lock:
            got.setdefault(stream, []).append(bytes(msg.payload))
            if len(got["mains"]) >= 2:
                enough.set()

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="privacy-probe")
    client.on_message = on_message
    client.on_subscribe = lambda *_: subscribed.set()
    client.connect("127.0.0.1", broker.port)
    client.subscribe("e2e/priv-node/data/#", qos=1)
    client.loop_start()
    cfg = tmp_path / "node.yaml"
    cfg.write_text(node_yaml(broker.url))
    err = tmp_path / "agent.err"
    agent = None
    try:
        assert subscribed.wait(15)
        agent = subprocess.Popen(
            agent_cmd("run", "--simulate", "--config", str(cfg), "--state-dir", str(tmp_path / "state")),
            stderr=open(err, "wb"),
        )
        # the first whole minute, or a first one seen for at least half of it, then the next
        assert enough.wait(200), err.read_text()[-2000:]
    finally:
        if agent is not None:
            agent.terminate()
            assert agent.wait(timeout=30) == 0, err.read_text()
        client.loop_stop()
        client.disconnect()
    log = err.read_text()
    assert "Traceback" not in log
    with lock:
        private, raw = [wire.decode(p) for p in got["mains"]], [wire.decode(p) for p in got["twin"]]
    assert {(b.privacy, b.period_ms) for b in private} == {("aggregate", 60_000)}
    assert all({c.name for c in b.channels} == STATISTICS for b in private)
    periods = sum(len(b.channels[0].times_ms) for b in private)
    points = sum(len(c.times_ms) for b in private for c in b.channels)
    assert periods >= 2 and points == 6 * periods  # one point per statistic and period
    counts = [v for b in private for c in b.channels if c.name == "power.count" for v in c.values()]
    assert all(150 <= n <= 301 for n in counts)  # 5 a second: half a minute's or a minute's samples
    samples = sum(len(c.times_ms) for b in raw for c in b.channels if c.name == "power")
    assert samples >= 300 * (periods - 1)  # the twin: every sample, over the same time
    means = [v for b in private for c in b.channels if c.name == "power.mean" for v in c.values()]
    assert all(130 < m < 230 for m in means)  # 24 V x (7.5 +- 2 A), a minute's mean
    assert all(b.stream == "mains" and b.node == "priv-node" for b in private)
