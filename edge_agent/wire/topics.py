"""The MQTT topics a node publishes on: ``{prefix}/{node}/data/{stream}`` for batches,
``{prefix}/{node}/status`` and ``{prefix}/{node}/health``."""

from __future__ import annotations


def data_topic(prefix: str, node: str, stream: str) -> str:
    return f"{prefix}/{node}/data/{stream}"


def status_topic(prefix: str, node: str) -> str:
    return f"{prefix}/{node}/status"


def health_topic(prefix: str, node: str) -> str:
    return f"{prefix}/{node}/health"


def parse_data_topic(topic: str) -> tuple[str, str] | None:
    """(node, stream) from ``{prefix}/{node}/data/{stream}``, or None if it is not a data topic."""
    parts = topic.split("/")
    if len(parts) >= 4 and parts[-2] == "data":
        return parts[-3], parts[-1]
    return None
