"""The MQTT topics of a node, and the data topic read back."""

from __future__ import annotations

from edge_agent import wire


def test_topics_and_the_data_topic_read_back():
    assert wire.data_topic("city", "lamp-0042", "air") == "city/lamp-0042/data/air"
    assert wire.status_topic("city", "lamp-0042") == "city/lamp-0042/status"
    assert wire.health_topic("city/north", "lamp-0042") == "city/north/lamp-0042/health"
    assert wire.parse_data_topic("city/north/lamp-0042/data/air") == ("lamp-0042", "air")
    assert wire.parse_data_topic("city/lamp-0042/status") is None
    assert wire.parse_data_topic("lamp-0042/data/air") is None  # a data topic has a prefix
