"""Signed commands to a running `edge-agent run --simulate` through a real Mosquitto
(edge_agent/fleet/commands.py): flush seals now (a batch arrives long before the hour's
flush interval), health and report answer with what the node knows, an unknown command and a
replay are refused and run nothing, restart stops the agent cleanly. Bounded by events."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from helpers import agent_cmd, kill_agent, stop_agent, wait_for_log
from test_remote_config import NODE, OPERATOR, Operator, node_yaml

from edge_agent.fleet.signed import sign

pytestmark = pytest.mark.broker


def command(name: str, counter: int, ident: str) -> bytes:
    now = int(time.time())
    return sign(
        "command",
        {"name": name, "id": ident},
        key=OPERATOR,
        target=f"node:{NODE}",
        counter=counter,
        expires=now + 600,
        issued=now,
    )


def test_commands_run_once_each_and_are_answered(broker, tmp_path: Path):
    trust = tmp_path / "trust"
    trust.mkdir()
    (trust / "operator.pub").write_bytes(OPERATOR.public.line())
    cfg = tmp_path / "node.yaml"
    cfg.write_text(node_yaml(broker.url, tmp_path / "state", flush="1h"))
    err = tmp_path / "agent.err"
    op = Operator(broker.port)
    with open(err, "wb") as log:
        agent = subprocess.Popen(
            agent_cmd("run", "--simulate", "--config", str(cfg), "--trust-dir", str(trust)), stderr=log
        )
    try:
        wait_for_log(agent, err, lambda t: "event=uplink_connected" in t and "event=ready" in t, timeout=60)

        def answered(ident: str):
            return lambda o: any(r["id"] == ident for r in o.replies)

        def reply(ident: str) -> dict:
            return next(r for r in op.replies if r["id"] == ident)

        # flush: with an hour's interval, a batch arrives only because of it
        assert op.seqs == []
        op.command(command("flush", 1, "c-flush"))
        op.wait(answered("c-flush"), "the flush's reply", agent)
        op.wait(lambda o: len(o.seqs) >= 1, "the flushed batch", agent)
        assert reply("c-flush")["outcome"] == "done"

        health_before = op.health
        op.command(command("health", 2, "c-health"))
        op.wait(lambda o: o.health > health_before, "a health message", agent)

        op.command(command("report", 3, "c-report"))
        op.wait(answered("c-report"), "the report", agent)
        assert reply("c-report")["result"]["sensors"]["air"]["state"] == "up", reply("c-report")

        op.command(command("shell", 4, "c-shell"))
        op.command(command("flush", 1, "c-flush"))  # a replay
        op.wait(lambda o: len(o.replies) >= 5, "the refusals", agent)
        assert {(r["id"], r.get("reason")) for r in op.replies[3:]} == {
            ("c-shell", "unknown_command"),
            ("c-flush", "older"),  # (replayed: the last accepted, again)
        }
        assert len(op.seqs) == 1  # the replayed flush sealed nothing

        op.command(command("restart", 5, "c-restart"))
        op.wait(answered("c-restart"), "the restart's reply", agent)
        assert agent.wait(timeout=60) == 0
    finally:
        rc = stop_agent(agent, err) if agent.poll() is None else agent.returncode
        kill_agent(agent, err)
        op.close()
    assert rc == 0
    text = err.read_text()
    assert "event=command name=restart id=c-restart" in text and "Traceback" not in text
