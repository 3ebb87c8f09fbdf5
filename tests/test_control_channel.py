"""node/control.py: the control channel's bounds and its answers' resending, with a recording
client in place of paho's (the uplink's use of it runs against Mosquitto elsewhere)."""

from __future__ import annotations

from types import SimpleNamespace

from edge_agent.node import control
from edge_agent.node.control import ControlChannel

SET = "city/lamp-1/config/set"
STATE = "city/lamp-1/config/state"


class Client:
    def __init__(self) -> None:
        self.subscribed: list = []
        self.published: list[tuple[str, bytes, int, bool]] = []
        self.on_message = None

    def subscribe(self, topics):
        self.subscribed.append(topics)

    def publish(self, topic, payload, qos=0, retain=False):
        self.published.append((topic, payload, qos, retain))


def test_messages_reach_the_agent_in_order_and_only_from_the_current_client():
    ch = ControlChannel([SET, "city/lamp-1/cmd"])
    old, new = Client(), Client()
    ch.attach(old, lambda gen: gen == 2)
    ch.attach(new, lambda gen: gen == 2)
    old.on_message(old, 1, SimpleNamespace(topic=SET, payload=b"stale", retain=1))
    new.on_message(new, 2, SimpleNamespace(topic=SET, payload=b"a", retain=1))
    new.on_message(new, 2, SimpleNamespace(topic="city/lamp-1/cmd", payload=b"b", retain=0))
    new.on_message(new, 2, SimpleNamespace(topic="city/lamp-2/config/set", payload=b"c", retain=0))
    taken = ch.take()
    assert [(m.topic, m.payload, m.retained) for m in taken] == [
        (SET, b"a", True),
        ("city/lamp-1/cmd", b"b", False),
    ]
    assert ch.take() == []


def test_a_flood_is_bounded_in_number_and_size_and_counted():
    ch = ControlChannel([SET])
    assert not ch.received(SET, b"x" * (control.MAX_MESSAGE + 1), True)
    for i in range(control.MAX_PENDING + 5):
        ch.received(SET, b"%d" % i, False)
    taken = ch.take()
    assert [m.payload for m in taken] == [b"%d" % i for i in range(control.MAX_PENDING)]
    assert ch.dropped == 1 + 5
    assert ch.received(SET, b"again", False)  # taken: room again


def test_answers_newest_per_topic_retained_ones_again_at_each_connect():
    ch = ControlChannel([SET])
    woken = []
    ch.wake = lambda: woken.append(1)
    ch.answer(STATE, b"trial", retain=True)
    ch.answer(STATE, b"applied", retain=True)  # replaces the trial before it left
    ch.answer("city/lamp-1/cmd/reply", b"done", retain=False)
    assert len(woken) == 3
    c = Client()
    ch.connected(c)
    assert c.subscribed == [[(SET, 1)]]
    assert sorted(c.published) == [("city/lamp-1/cmd/reply", b"done", 1, False), (STATE, b"applied", 1, True)]
    c.published.clear()
    ch.send(c)  # nothing new
    assert c.published == []
    ch.answer(STATE, b"reverted", retain=True)
    ch.send(c)
    assert c.published == [(STATE, b"reverted", 1, True)]
    c2 = Client()
    ch.connected(c2)  # a new link: the retained state again, the reply not (sent once)
    assert c2.published == [(STATE, b"reverted", 1, True)]


def test_replies_are_each_sent_once_in_order_the_oldest_dropped_past_the_bound():
    ch = ControlChannel([])
    for i in range(control.MAX_PENDING + 3):
        ch.answer("r", b"%d" % i, retain=False)
    c = Client()
    ch.send(c)
    assert [p for _, p, _, _ in c.published] == [b"%d" % i for i in range(3, control.MAX_PENDING + 3)]
    ch.send(c)
    assert len(c.published) == control.MAX_PENDING
