"""A stored row whose bytes the damage changed (the integrity check reads pages, not payloads):
the uplink goes on with the others. A historical batch that was not a batch any more ended
the uplink's thread in ``mark_historical`` (found by the stop soak on a damaged store), for
good: every restart read the same row again."""

from __future__ import annotations

import logging

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from uplink_node import RecordingClient as Client
from uplink_node import make_uplink

from edge_agent.node.store import StoredBatch


def test_a_historical_batch_that_is_no_batch_is_sent_as_stored(tmp_path, caplog):
    window = make_uplink(tmp_path)[0].window
    client = Client()
    for row, payload in enumerate((b"not a batch", b"EA", b""), start=1):
        with caplog.at_level(logging.ERROR, logger="edge_agent.uplink"):
            assert window.publish(client, StoredBatch(row, "air", row, payload), historical=True)
        assert client.sent[-1] == ("up/up-node/data/air", payload)
        assert window.inflight[row] == row
    assert caplog.text.count("event=batch_unreadable") == 3


def test_a_stream_name_that_is_no_topic_is_held_and_the_others_go_on(tmp_path, caplog):
    window = make_uplink(tmp_path)[0].window
    paho = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="t")  # refuses the topic itself
    with caplog.at_level(logging.ERROR, logger="edge_agent.uplink"):
        assert window.publish(paho, StoredBatch(1, "a#r", 0, b"x"), historical=False)
    assert 1 in window.hold and not window.inflight
    assert "event=batch_unsendable" in caplog.text
    client = Client()
    assert window.publish(client, StoredBatch(2, "air", 1, b"y"), historical=False)
    assert window.inflight == {1: 2}
