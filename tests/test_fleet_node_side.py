"""The fleet's handler of a running agent's control channel (edge_agent/fleet/node_side.py),
with a recording agent and a counted clock: an offer applied and tried, confirmed when the
link is up, reverted (to the good one, else the file) when the trial ends without it; one
offer at a time; each outcome answered, retained, on config/state."""

from __future__ import annotations

import json

from test_fleet_remote_config import NOW, OPERATOR, STRANGER, offer_bytes, text

from edge_agent.config import parse_config_text
from edge_agent.fleet.keys import TrustStore
from edge_agent.fleet.node_side import FleetNode, config_set_topic
from edge_agent.fleet.remote_config import RemoteConfig
from edge_agent.fleet.signed import Audience
from edge_agent.node.control import ControlChannel, Message


class Agent:
    def __init__(self, cfg) -> None:
        self.cfg = cfg
        self.control = ControlChannel([])
        self.link = True
        self.applied: list = []

    def apply_config(self, new) -> None:
        self.applied.append(new)
        self.cfg = new

    def link_up(self) -> bool:
        return self.link


class Clock:
    t = 0.0

    def __call__(self) -> float:
        return self.t


def make(tmp_path):
    state = str(tmp_path / "state")
    local = parse_config_text(text(state), "node.yaml")
    rc = RemoteConfig(state, TrustStore([OPERATOR.public]), Audience("lamp-0042"), now=lambda: NOW)
    agent, clock = Agent(local), Clock()
    return FleetNode(agent, rc, local, trial=60.0, clock=clock), agent, clock, state


def states(agent) -> list[dict]:
    out = []

    class C:
        def publish(self, topic, payload, qos, retain):
            assert topic.endswith("/config/state") and retain and qos == 1
            out.append(json.loads(payload))

        def subscribe(self, topics):
            pass

    agent.control.connected(C())
    return out


def msg(cfg, payload: bytes) -> Message:
    return Message(config_set_topic(cfg), payload, True)


def test_an_offer_is_tried_then_kept_when_the_link_is_up(tmp_path):
    node, agent, clock, state = make(tmp_path)
    assert node.topics(agent.cfg) == [f"{agent.cfg.mqtt.topic_prefix}/lamp-0042/config/set"]
    agent.link = False
    node.handle(msg(agent.cfg, offer_bytes(text(state, flush="20s"), 1)))
    assert [c.flush_interval for c in agent.applied] == [20.0]
    assert states(agent)[-1]["outcome"] == "trial" and node.holds().startswith("remote configuration 1")
    clock.t = 59.0
    node.tick(clock.t)
    assert node.deadline is not None  # not yet
    agent.link = True
    node.tick(clock.t)
    assert states(agent)[-1] == {
        "outcome": "applied",
        "counter": 1,
        "config_hash": agent.applied[0].config_hash,
        "detail": "the uplink came back",
        "at": NOW,
    }
    assert node.deadline is None and len(agent.applied) == 1


def test_a_trial_without_the_link_is_reverted_to_the_good_one_then_the_file(tmp_path):
    node, agent, clock, state = make(tmp_path)
    node.handle(msg(agent.cfg, offer_bytes(text(state, flush="20s"), 1)))
    node.tick(0.0)  # link up: 20s is good
    agent.link = False
    node.handle(msg(agent.cfg, offer_bytes(text(state, flush="30s"), 2)))
    # a third while the second is on trial waits (it comes again, retained, at a connect)
    node.handle(msg(agent.cfg, offer_bytes(text(state, flush="40s"), 3)))
    assert [c.flush_interval for c in agent.applied] == [20.0, 30.0]
    clock.t = 60.0
    node.tick(clock.t)
    assert [c.flush_interval for c in agent.applied] == [20.0, 30.0, 20.0]  # back to the good one
    last = states(agent)[-1]
    assert last["outcome"] == "reverted" and last["counter"] == 2 and "within 60 s" in last["detail"]
    # the reverted one never again: it comes back retained, and is not applied
    node.handle(msg(agent.cfg, offer_bytes(text(state, flush="30s"), 2)))
    assert len(agent.applied) == 3


def test_refusals_are_answered_and_empty_or_foreign_messages_ignored(tmp_path):
    node, agent, _clock, state = make(tmp_path)
    node.handle(msg(agent.cfg, b""))  # the operator cleared the retained topic
    node.handle(Message("city/other/config/set", offer_bytes(text(state), 1), True))
    assert agent.applied == [] and states(agent) == []
    node.handle(msg(agent.cfg, offer_bytes(text(state), 1, key=STRANGER)))
    assert states(agent)[-1]["reason"] == "unknown_key"
    node.handle(msg(agent.cfg, b"{not json"))
    assert states(agent)[-1]["reason"] == "malformed"
    node.handle(msg(agent.cfg, offer_bytes(text(state).replace("lamp-0042", "lamp-0043"), 4)))
    assert states(agent)[-1]["reason"] == "immutable"
    assert node.holds() is None and agent.applied == []
