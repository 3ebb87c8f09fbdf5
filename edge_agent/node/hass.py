"""Home Assistant's MQTT discovery (opt-in: ``home_assistant: {discovery: true}``).

One device-based discovery message (Home Assistant 2024.11 and later), retained, on
``{prefix}/device/{node}/config``: the node as a device, and a ``sensor`` component per
channel with its device class, unit and state class; availability is the node's own
retained status topic (``online``/``offline``, the birth and the will). Each stream's
values go as one JSON object on ``{topic_prefix}/{node}/ha/{stream}`` after every seal,
retained (the binary batches on the data topics stay the backbone's). An energy total is
``total_increasing`` and never decreases across restarts: it is the driver's total, kept
in the queue with the batch that carries it.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from edge_agent import __version__
from edge_agent.config import AgentConfig
from edge_agent.wire import status_topic

# channel -> Home Assistant's device class (its units are the ones the drivers give)
DEVICE_CLASSES = {
    "pm1_0": "pm1",
    "pm2_5": "pm25",
    "pm10": "pm10",
    "co2": "carbon_dioxide",
    "temperature": "temperature",
    "humidity": "humidity",
    "pressure": "pressure",
    "bus_voltage": "voltage",
    "shunt_voltage": "voltage",
    "current": "current",
    "power": "power",
    "energy": "energy",
}
TOTALS = {"energy"}  # total_increasing: the node's total never goes back


def _decimals(resolution: float) -> int:
    """The decimals a value at this resolution needs (0.01 -> 2, 10 -> 0)."""
    return max(0, -math.floor(math.log10(resolution) + 1e-9))


def object_id(text: str) -> str:
    """A discovery topic's and unique id's part: letters, digits, '_' and '-' only."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", text)


def state_topic(cfg: AgentConfig, stream: str) -> str:
    return f"{cfg.mqtt.topic_prefix}/{cfg.node_id}/ha/{stream}"


def discovery(cfg: AgentConfig) -> tuple[str, bytes]:
    """(topic, payload) of the node's discovery message, to be published retained."""
    node = object_id(cfg.node_id)
    components: dict[str, dict[str, Any]] = {}
    for s in cfg.sensors:
        for c in s.channels if s.privacy is None else ():  # a private stream's values stay on the node
            uid = f"edge_agent_{node}_{object_id(s.name)}_{object_id(c.name)}"
            comp: dict[str, Any] = {
                "platform": "sensor",
                "unique_id": uid,
                "name": f"{s.name} {c.name}",
                "state_topic": state_topic(cfg, s.name),
                "value_template": f"{{{{ value_json.{c.name} }}}}",
                "unit_of_measurement": c.unit or None,
                "state_class": "total_increasing" if c.name in TOTALS else "measurement",
                "suggested_display_precision": _decimals(c.resolution),
            }
            if c.name in DEVICE_CLASSES:
                comp["device_class"] = DEVICE_CLASSES[c.name]
            components[uid] = {k: v for k, v in comp.items() if v is not None}
    payload = {
        "device": {
            "identifiers": [f"edge-agent-{cfg.node_id}"],
            "name": cfg.node_id,
            "manufacturer": "edge-agent",
            "model": "edge-agent sensor node",
            "sw_version": __version__,
        },
        "origin": {"name": "edge-agent", "sw_version": __version__},
        "availability": [
            {
                "topic": status_topic(cfg.mqtt.topic_prefix, cfg.node_id),
                "value_template": "{{ value_json.state }}",
                "payload_available": "online",
                "payload_not_available": "offline",
            }
        ],
        "components": components,
        "qos": 1,
    }
    topic = f"{cfg.home_assistant.prefix}/device/{node}/config"
    return topic, json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


def states(cfg: AgentConfig, sampler: Any) -> list[tuple[str, bytes]]:
    """Each stream's last good values as (topic, JSON), on the sampler's thread."""
    out = []
    for slot in sampler.slots:
        if slot.cfg.privacy is not None:
            continue  # its raw values are never published (docs/privacy.md)
        values = {
            name: round(pipe.last[1], _decimals(pipe.cfg.resolution))
            for name, pipe in slot.channels.items()
            if pipe.last is not None and not pipe.last[2] and math.isfinite(pipe.last[1])
        }
        if values:
            out.append((state_topic(cfg, slot.cfg.name), json.dumps(values, separators=(",", ":")).encode()))
    return out
