"""Home Assistant's MQTT discovery against a real Mosquitto: the retained device-based
discovery message carries what Home Assistant's schema requires (device, origin,
components with platform, unique id, state topic and template, the right device classes
and units, energy as total_increasing) and availability from the node's status topic; the
state messages parse and carry every channel; the energy shown never decreases across a
restart of the agent; with discovery off nothing is published for Home Assistant."""

from __future__ import annotations

import json
import queue
import subprocess

import paho.mqtt.client as mqtt
import pytest
from helpers import agent_cmd, kill_agent, stop_agent, wait_for_log
from paho.mqtt.enums import CallbackAPIVersion

CONFIG = """\
node: {{id: ha.node-7}}
flush_interval: 200ms
clock: {{hold_unsynced: 0s}}
http: {{listen: ""}}
home_assistant: {{discovery: {discovery}}}
mqtt: {{broker: "{broker}"}}
sensors:
  - {{name: air, type: bme680, interval: 100ms, heater: {{duration: 30ms}}}}
  - {{name: particles, type: pmsa003i, interval: 200ms}}
  - {{name: co2, type: scd4x, interval: 1s}}
  - {{name: mains, type: s0, pin: 5, pulses_per_kwh: 10000, interval: 100ms, sim: {{power: 7200}}}}
  - {{name: dc, type: ina226, address: 0x40, shunt_ohms: 0.01, max_current: 8, interval: 100ms}}
"""

WANT = {  # (stream, channel): (device class, unit, state class)
    ("air", "temperature"): ("temperature", "°C", "measurement"),
    ("air", "humidity"): ("humidity", "%", "measurement"),
    ("air", "pressure"): ("pressure", "hPa", "measurement"),
    ("particles", "pm1_0"): ("pm1", "µg/m³", "measurement"),
    ("particles", "pm2_5"): ("pm25", "µg/m³", "measurement"),
    ("particles", "pm10"): ("pm10", "µg/m³", "measurement"),
    ("co2", "co2"): ("carbon_dioxide", "ppm", "measurement"),
    ("dc", "bus_voltage"): ("voltage", "V", "measurement"),
    ("dc", "current"): ("current", "A", "measurement"),
    ("dc", "power"): ("power", "W", "measurement"),
    ("dc", "energy"): ("energy", "Wh", "total_increasing"),
    ("mains", "power"): ("power", "W", "measurement"),
    ("mains", "energy"): ("energy", "Wh", "total_increasing"),
}


class Listener:
    """Every message on the given filters, retained ones included, as they come."""

    def __init__(self, broker, *filters: str) -> None:
        self.messages: queue.Queue = queue.Queue()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_connect = lambda cl, u, f, rc, p: [cl.subscribe(t, qos=1) for t in filters]
        self.client.on_message = lambda cl, u, m: self.messages.put((m.topic, m.payload, m.retain))
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()

    def until(self, done, limit: int = 20_000) -> list[tuple[str, bytes, bool]]:
        """Messages until ``done(messages)``; fails after ``limit`` of them or 60 s without one."""
        out: list[tuple[str, bytes, bool]] = []
        while not done(out):
            assert len(out) < limit, out[-5:]
            out.append(self.messages.get(timeout=60))
        return out

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def start(tmp_path, broker, discovery: bool = True) -> tuple[subprocess.Popen, object]:
    cfg = tmp_path / "node.yaml"
    cfg.write_text(CONFIG.format(broker=broker.url, discovery="true" if discovery else "false"))
    log = tmp_path / f"agent-{len(list(tmp_path.glob('agent-*')))}.err"
    proc = subprocess.Popen(
        agent_cmd("run", "--simulate", "--config", str(cfg), "--state-dir", str(tmp_path / "state")),
        stderr=open(log, "wb"),
    )
    return proc, log


def energies(messages, stream: str) -> list[float]:
    return [json.loads(p)["energy"] for t, p, _ in messages if t == f"edge/ha.node-7/ha/{stream}" and p]


@pytest.mark.broker
def test_discovery_and_state_messages_for_home_assistant(tmp_path, broker):
    listener = Listener(broker, "homeassistant/#", "edge/ha.node-7/ha/#", "edge/ha.node-7/status")
    proc, log = start(tmp_path, broker)
    try:
        streams = {"air", "particles", "co2", "mains", "dc"}

        def every_stream_twice(out) -> bool:
            seen = [t.rsplit("/", 1)[1] for t, _, _ in out if "/ha/" in t]
            return any(t.endswith("/config") for t, _, _ in out) and all(seen.count(s) >= 2 for s in streams)

        first = listener.until(every_stream_twice)
        assert stop_agent(proc, log) == 0
        proc, log = start(tmp_path, broker)  # again on the same queue: the totals go on
        wait_for_log(proc, log, lambda t: "event=uplink_connected" in t)
        again = listener.until(lambda out: len(energies(out, "mains")) >= 3 and len(energies(out, "dc")) >= 3)
        assert stop_agent(proc, log) == 0
    finally:
        kill_agent(proc, log)
        listener.close()
    late = Listener(broker, "homeassistant/#", "edge/ha.node-7/status", "edge/ha.node-7/ha/mains")
    try:  # the node is stopped: what Home Assistant finds when it starts is what was retained
        kept = late.until(lambda out: len(out) >= 3)
    finally:
        late.close()
    assert all(r for _, _, r in kept) and {t.rsplit("/", 1)[1] for t, _, _ in kept} == {
        "config",
        "status",
        "mains",
    }
    assert json.loads(next(p for t, p, _ in kept if t.endswith("/status")))["state"] == "offline"
    config_topic, payload, _ = next(m for m in first if m[0].endswith("/config"))
    assert config_topic == "homeassistant/device/ha_node-7/config"  # '.' is not for an object id
    d = json.loads(payload)
    assert d["device"]["identifiers"] == ["edge-agent-ha.node-7"] and d["device"]["name"] == "ha.node-7"
    assert d["origin"]["name"] == "edge-agent" and d["qos"] == 1
    avail = d["availability"][0]
    assert avail["topic"] == "edge/ha.node-7/status" and avail["payload_available"] == "online"
    comps = d["components"]
    assert len({c["unique_id"] for c in comps.values()}) == len(comps) == 4 + 9 + 3 + 3 + 5  # every channel
    by_channel = {}
    for c in comps.values():
        assert c["platform"] == "sensor" and c["state_topic"].startswith("edge/ha.node-7/ha/")
        stream = c["state_topic"].rsplit("/", 1)[1]
        channel = c["value_template"].removeprefix("{{ value_json.").removesuffix(" }}")
        by_channel[(stream, channel)] = c
    for key, (device_class, unit, state_class) in WANT.items():
        c = by_channel[key]
        assert (c.get("device_class"), c["unit_of_measurement"], c["state_class"]) == (
            device_class,
            unit,
            state_class,
        )
    assert "device_class" not in by_channel[("air", "gas")]  # no class for a resistance
    # every state message parses, and carries channels its components read
    for t, p, _ in first:
        if "/ha/" in t:
            stream = t.rsplit("/", 1)[1]
            values = json.loads(p)
            assert values and all((stream, ch) in by_channel for ch in values), (t, values)
            assert all(isinstance(v, int | float) for v in values.values())
    statuses = [json.loads(p)["state"] for t, p, _ in first if t.endswith("/status")]
    assert "online" in statuses
    for stream in ("mains", "dc"):
        shown = energies(first, stream) + energies(again, stream)  # in the order they came
        assert shown == sorted(shown), f"{stream}: the energy shown went back across a restart"
        assert shown[-1] > shown[0]


@pytest.mark.broker
def test_without_discovery_nothing_is_published_for_home_assistant(tmp_path, broker):
    listener = Listener(broker, "homeassistant/#", "edge/ha.node-7/#")
    proc, log = start(tmp_path, broker, discovery=False)
    try:
        out = listener.until(lambda msgs: sum("/data/" in t for t, _, _ in msgs) >= 10)
        assert stop_agent(proc, log) == 0
    finally:
        kill_agent(proc, log)
        listener.close()
    assert not [t for t, _, _ in out if t.startswith("homeassistant/") or "/ha/" in t]


def test_the_discovery_prefix_is_a_topic_level_path(tmp_path):
    from edge_agent.config import load_config
    from edge_agent.errors import ConfigError

    for bad in ("home/+/assistant", "#", "/ha", "ha/", "a//b", ""):
        path = tmp_path / "n.yaml"
        text = CONFIG.format(broker="mqtt://127.0.0.1:1883", discovery="true")
        path.write_text(text.replace("{discovery: true}", f"{{discovery: true, prefix: {json.dumps(bad)}}}"))
        with pytest.raises(ConfigError, match=r"home_assistant\.prefix"):
            load_config(path)
