"""The uplink tests' node: its configuration and an Uplink built on it (no connection made)."""

from __future__ import annotations

from types import SimpleNamespace

import paho.mqtt.client as mqtt

from edge_agent.config import load_config
from edge_agent.node.store import BatchStore
from edge_agent.node.uplink import Uplink

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


def make_uplink(tmp_path, broker_url="mqtt://127.0.0.1:1883"):
    conf = tmp_path / "node.yaml"
    conf.write_text(CONFIG.format(brokers=f'"{broker_url}"', protocol="5"))
    cfg = load_config(conf)
    path = str(tmp_path / "q.sqlite3")
    BatchStore(path).close()
    return Uplink(cfg, path), path


class RecordingClient:
    """What the delivery window needs of paho's client: it takes every message, in order."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []

    def publish(self, topic: str, payload: bytes, qos: int) -> SimpleNamespace:
        self.sent.append((topic, payload))
        return SimpleNamespace(rc=mqtt.MQTT_ERR_SUCCESS, mid=len(self.sent))
