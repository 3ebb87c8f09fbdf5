"""edge-agent: sensor node agent (drivers, signal core, durable queue, MQTT uplink)."""

__version__ = "0.1.0"
