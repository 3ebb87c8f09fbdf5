"""The agent publishes its health report with the system facts of a fake /sys, /proc and /run
tree."""

from __future__ import annotations

import hashlib
import json
import os
import queue
import re
import signal
import subprocess

import paho.mqtt.client as mqtt
import pytest
from fake_sysroot import fake_root
from helpers import agent_cmd
from paho.mqtt.enums import CallbackAPIVersion


def collect(broker, topic: str, count: int, timeout: float) -> list[tuple[str, bytes]]:
    got: queue.Queue = queue.Queue()
    c = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    c.on_connect = lambda cl, u, f, rc, p: cl.subscribe(topic, qos=1)
    c.on_message = lambda cl, u, m: got.put((m.topic, m.payload))
    c.connect("127.0.0.1", broker.port)
    c.loop_start()
    out = []
    try:
        while len(out) < count:
            out.append(got.get(timeout=timeout))
    except queue.Empty:
        pass
    finally:
        c.disconnect()
        c.loop_stop()
    return out


@pytest.mark.broker
def test_agent_publishes_health_with_system_facts(broker, tmp_path):
    root = fake_root(tmp_path)
    cfg = tmp_path / "node.yaml"
    cfg.write_text(f"""\
node: {{id: health-node}}
flush_interval: 1s
health_interval: 1s
mqtt: {{broker: "{broker.url}", topic_prefix: hx}}
sensors:
  - {{name: air, type: bme680, interval: 200ms, heater: {{duration: 30ms}}}}
""")
    env = dict(os.environ, EDGE_AGENT_SYSROOT=str(root))
    agent = subprocess.Popen(
        agent_cmd("run", "--simulate", "--config", str(cfg), "--state-dir", str(tmp_path / "state")),
        env=env,
        stderr=subprocess.PIPE,
    )
    try:
        messages = collect(broker, "hx/health-node/health", 2, timeout=15)
    finally:
        os.kill(agent.pid, signal.SIGTERM)
        _, err = agent.communicate(timeout=20)
    assert agent.returncode == 0, err.decode()
    assert len(messages) == 2, err.decode()
    h = json.loads(messages[-1][1])
    assert h["node"] == "health-node" and h["core"] in ("cython", "python")
    assert h["config_hash"] == hashlib.sha256(cfg.read_bytes()).hexdigest()[:16]
    assert h["cpu_temp_c"] == 48.312
    assert h["throttled"]["under_voltage"] and h["throttled"]["under_voltage_since_boot"]
    assert h["boot_id"] == "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
    assert h["load"] == [0.42, 0.3, 0.12]
    assert h["memory"]["available_bytes"] == 251200 * 1024
    assert h["clock"] == {"synchronized": True, "source": "timesyncd"}
    assert h["uplink"]["state"] == "connected"
    assert h["sensors"]["air"]["state"] == "up" and h["sensors"]["air"]["samples"] > 0
    assert h["disk"]["free_bytes"] > 0
    assert set(h["store"]) == {
        "epoch",
        "batches",
        "bytes",
        "max_bytes",
        "oldest_age_s",
        "losses",
        "unstored_since_start",
        "recovery",
        "wal_loss",
    }
    assert h["store"]["losses"] == {} and h["store"]["recovery"] is None and h["store"]["wal_loss"] is None
    # the epoch of this run's batches: 8 hex digits, as the start event logged it
    assert re.fullmatch(r"[0-9a-f]{8}", h["store"]["epoch"])
    assert "event=start " in err.decode() and f" epoch={h['store']['epoch']} " in err.decode()
    assert h["uptime_s"] >= 0 and h["disk_writes"]["write_bytes"] == 0
    assert h["disk_writes"]["durable_commits"] >= 1  # at least one batch sealed before the 2nd report
