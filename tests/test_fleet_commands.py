"""Signed commands (edge_agent/fleet/commands.py) with a recording agent: each of the fixed
list runs once and is answered; a replay, a forgery, an unknown name, a bad id, one for
another node and an expired one are refused with their reasons and run nothing."""

from __future__ import annotations

import json
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_fleet_remote_config import NOW, OPERATOR, STRANGER, text

from edge_agent.config import parse_config_text
from edge_agent.fleet.commands import NAMES, Commands, command_topic, reply_topic
from edge_agent.fleet.counters import CounterStore
from edge_agent.fleet.keys import TrustStore
from edge_agent.fleet.refusal import REASONS
from edge_agent.fleet.signed import Audience, sign
from edge_agent.node.control import ControlChannel, Message


class Agent:
    def __init__(self, cfg) -> None:
        self.cfg = cfg
        self.control = ControlChannel([])
        self.ran: list[str] = []

    def command(self, name: str):
        self.ran.append(name)
        return {"sensors": {"air": {"up": True}}} if name == "report" else None


def replies(agent) -> list[dict]:
    out = []

    class C:
        def publish(self, topic, payload, qos, retain):
            assert topic == reply_topic(agent.cfg) and not retain and qos == 1
            out.append(json.loads(payload))

        def subscribe(self, topics):
            pass

    agent.control.connected(C())
    return out


@pytest.fixture
def node(tmp_path):
    agent = Agent(parse_config_text(text(str(tmp_path / "state")), "node.yaml"))
    counters = CounterStore(tmp_path / "state" / "fleet" / "counters.json")
    cmds = Commands(agent, TrustStore([OPERATOR.public]), Audience("lamp-0042"), counters, now=lambda: NOW)
    return cmds, agent


def command(
    name, counter, *, key=OPERATOR, target="node:lamp-0042", ident="op-1", expires=NOW + 60, body=None
):
    return sign(
        "command",
        {"name": name, "id": ident} if body is None else body,
        key=key,
        target=target,
        counter=counter,
        expires=expires,
        issued=NOW - 1,
    )


def test_each_command_of_the_list_runs_once_and_is_answered(node):
    cmds, agent = node
    for i, name in enumerate(NAMES, start=1):
        cmds.handle(Message(command_topic(agent.cfg), command(name, i, ident=f"op-{i}"), False))
        (reply,) = replies(agent)
        assert (reply["id"], reply["name"], reply["counter"], reply["outcome"]) == (
            f"op-{i}",
            name,
            i,
            "done",
        )
        assert ("result" in reply) == (name == "report")
    assert agent.ran == list(NAMES)


@pytest.mark.parametrize(
    "make, reason",
    [
        (lambda: command("flush", 9, key=STRANGER), "unknown_key"),
        (lambda: command("shell", 9), "unknown_command"),
        (lambda: command(["flush"], 9), "unknown_command"),
        (lambda: command("flush", 9, ident="../x"), "malformed"),
        (lambda: command("flush", 9, ident=""), "malformed"),
        (lambda: command("flush", 9, body={"name": "flush", "id": "a", "args": "rm -rf /"}), "malformed"),
        (lambda: command("flush", 9, target="node:lamp-0043"), "wrong_target"),
        (lambda: command("flush", 9, expires=NOW), "expired"),
        (lambda: command("flush", 9, body="flush"), "malformed"),
        (lambda: b"\x00" * 100, "malformed"),
    ],
)
def test_refused_commands_run_nothing_and_say_why(node, make, reason):
    cmds, agent = node
    cmds.handle(Message(command_topic(agent.cfg), make(), False))
    (reply,) = replies(agent)
    assert reply["outcome"] == "refused" and reply["reason"] == reason, reply
    assert agent.ran == []


def test_a_replayed_or_older_command_never_runs_again(node):
    cmds, agent = node
    sent = command("restart", 5)
    cmds.handle(Message(command_topic(agent.cfg), sent, False))
    cmds.handle(Message(command_topic(agent.cfg), sent, False))
    cmds.handle(Message(command_topic(agent.cfg), command("flush", 4), False))
    assert agent.ran == ["restart"]
    assert [r.get("reason") for r in replies(agent)] == [None, "replayed", "older"]  # each answered


def _update_body(**over):
    body = {
        "name": "update",
        "id": "up-1",
        "url": "https://bundles.example/b.tar",
        "sha256": "a" * 64,
        "size": 1000,
    }
    body.update(over)
    return body


@pytest.mark.parametrize(
    "over, reason",
    [
        ({"size": 0}, "malformed"),
        ({"size": True}, "malformed"),
        ({"size": "1000"}, "malformed"),
        ({"size": 10**12}, "oversize"),
        ({"url": "http://bundles.example/b.tar"}, "malformed"),
        ({"url": "https://" + "a" * 3000}, "malformed"),
        ({"sha256": "A" * 64}, "malformed"),
        ({"sha256": "a" * 63}, "malformed"),
        ({"extra": 1}, "malformed"),
    ],
)
def test_a_malformed_update_is_refused_and_spends_no_counter(tmp_path, over, reason):
    from edge_agent.fleet.release import ROOT_ENV
    from edge_agent.fleet.updates import Updates

    agent = Agent(parse_config_text(text(str(tmp_path / "state")), "node.yaml"))
    counters = CounterStore(tmp_path / "state" / "fleet" / "counters.json")
    trust, audience = TrustStore([OPERATOR.public]), Audience("lamp-0042")
    updates = Updates(trust, audience, counters, env={ROOT_ENV: str(tmp_path / "releases")})
    cmds = Commands(agent, trust, audience, counters, now=lambda: NOW, updates=updates)
    cmds.handle(Message(command_topic(agent.cfg), command("update", 5, body=_update_body(**over)), False))
    (reply,) = replies(agent)
    assert (reply["outcome"], reply["reason"]) == ("refused", reason), reply
    assert updates.job is None and not (tmp_path / "releases").exists() and agent.ran == []
    cmds.handle(Message(command_topic(agent.cfg), command("flush", 5), False))  # counter 5 still free
    assert agent.ran == ["flush"]


def test_an_update_without_the_launcher_or_during_another_is_refused(tmp_path):
    from edge_agent.fleet.release import ROOT_ENV
    from edge_agent.fleet.updates import Updates

    agent = Agent(parse_config_text(text(str(tmp_path / "state")), "node.yaml"))
    counters = CounterStore(tmp_path / "state" / "fleet" / "counters.json")
    trust, audience = TrustStore([OPERATOR.public]), Audience("lamp-0042")
    for env, reason in (({}, "unsupported"), ({ROOT_ENV: str(tmp_path / "r")}, "busy")):
        updates = Updates(trust, audience, counters, env=env)
        if env:
            updates.job = type("Running", (), {"command_id": "up-0", "is_alive": lambda self: True})()
        cmds = Commands(agent, trust, audience, counters, now=lambda: NOW, updates=updates)
        cmds.handle(Message(command_topic(agent.cfg), command("update", 7, body=_update_body()), False))
        cmds.tick()  # a job still running is not answered
        assert [(r["outcome"], r["reason"]) for r in replies(agent)] == [("refused", reason)]
    cmds = Commands(agent, trust, audience, counters, now=lambda: NOW)  # a node with no updates part
    cmds.handle(Message(command_topic(agent.cfg), command("update", 8, body=_update_body()), False))
    assert [r["reason"] for r in replies(agent)] == ["unsupported"]


def test_a_revoked_key_is_trusted_no_more_now_and_after_a_restart_but_never_the_last(tmp_path):
    from edge_agent.fleet.keys import REVOKED, TrustStore, read_revoked

    trust_dir = tmp_path / "trust"
    trust_dir.mkdir()
    for k in (OPERATOR, STRANGER):
        (trust_dir / f"{k.public.id}.pub").write_bytes(k.public.line())
    revoked = str(tmp_path / "state" / "fleet" / REVOKED)
    trust = TrustStore.load(trust_dir, revoked)
    agent = Agent(parse_config_text(text(str(tmp_path / "state")), "node.yaml"))
    counters = CounterStore(tmp_path / "state" / "fleet" / "counters.json")
    cmds = Commands(agent, trust, Audience("lamp-0042"), counters, now=lambda: NOW, revoked=revoked)

    def send(counter, body, key=OPERATOR):
        cmds.handle(
            Message(command_topic(agent.cfg), command(body["name"], counter, key=key, body=body), False)
        )

    send(1, {"name": "revoke", "id": "r-1", "key": "0" * 16})  # not a key it trusts
    send(2, {"name": "revoke", "id": "r-2", "key": STRANGER.public.id, "more": 1})
    send(2, {"name": "revoke", "id": "r-3", "key": STRANGER.public.id})  # counter 2 was not spent
    send(3, {"name": "flush", "id": "f-1"}, key=STRANGER)  # revoked: refused at once
    send(4, {"name": "revoke", "id": "r-4", "key": OPERATOR.public.id})  # the last one: never
    got = [(r["id"], r["outcome"], r.get("reason")) for r in replies(agent)]
    assert got == [
        ("r-1", "refused", "revocation"),
        ("r-2", "refused", "malformed"),
        ("r-3", "done", None),
        (None, "refused", "unknown_key"),
        ("r-4", "refused", "revocation"),
    ], got
    assert agent.ran == [] and trust.ids == [OPERATOR.public.id]
    assert read_revoked(revoked) == [STRANGER.public.id]
    assert TrustStore.load(trust_dir, revoked).ids == [OPERATOR.public.id]  # after a restart too
    assert oct(os.stat(revoked).st_mode & 0o777) == "0o600"


@pytest.mark.parametrize("content", [b"[]", b'{"revoked": "x"}', b'{"revoked": [1]}', b"\xff", b"[" * 5000])
def test_a_damaged_revoked_file_is_an_error_that_says_where(tmp_path, content):
    from edge_agent.fleet.keys import TrustStore
    from edge_agent.keyfile import KeyFileError

    (tmp_path / "trust").mkdir()
    bad = tmp_path / "revoked.json"
    bad.write_bytes(content)
    with pytest.raises(KeyFileError, match=str(bad)):
        TrustStore.load(tmp_path / "trust", bad)


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53 - 1), 2**53 - 1) | st.text(max_size=20),  # signable
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(alphabet="abcxyz_", min_size=1, max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    name=st.sampled_from(["update", "revoke", "flush"]),
    extra=st.dictionaries(st.sampled_from(["url", "sha256", "size", "key", "other"]), _JSON, max_size=5),
)
def test_any_body_of_update_or_revoke_is_answered_never_raised(tmp_path_factory, name, extra):
    from edge_agent.fleet.keys import REVOKED
    from edge_agent.fleet.release import ROOT_ENV
    from edge_agent.fleet.updates import Updates

    tmp = tmp_path_factory.mktemp("n")
    agent = Agent(parse_config_text(text(str(tmp / "state")), "node.yaml"))
    counters = CounterStore(tmp / "state" / "fleet" / "counters.json")
    trust, audience = TrustStore([OPERATOR.public, STRANGER.public]), Audience("lamp-0042")
    updates = Updates(trust, audience, counters, env={ROOT_ENV: str(tmp / "releases")})
    cmds = Commands(
        agent, trust, audience, counters, now=lambda: NOW, updates=updates, revoked=str(tmp / REVOKED)
    )
    body = {**extra, "name": name, "id": "fz-1"}
    cmds.handle(Message(command_topic(agent.cfg), command(name, 1, body=body), False))
    (reply,) = replies(agent)
    assert reply["outcome"] in ("refused", "started", "done"), reply
    if reply["outcome"] == "refused":
        assert reply["reason"] in REASONS and updates.job is None
    assert len(trust.ids) >= 1
