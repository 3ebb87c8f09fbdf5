"""The operator's commands (`edge-agent fleet push-config | command | status`, cli/fleet_ops.py)
against a running simulated node through a real Mosquitto: status before and after, a
configuration pushed and applied, one that no node would take refused before anything is
sent, a command answered, a node that does not exist reported as silent. Each command is a
process of its own, as an operator runs it; bounded by their --wait and by events."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from helpers import agent_cmd, kill_agent, stop_agent, wait_for_log
from test_remote_config import NODE, PREFIX, node_yaml

from edge_agent.fleet.release import NAME_ENV, ROOT_ENV, Layout

pytestmark = pytest.mark.broker


def fleet(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(agent_cmd("fleet", *args), capture_output=True, text=True, timeout=180)


def test_the_operator_pushes_commands_and_reads_status(broker, tmp_path: Path):
    keys = tmp_path / "keys"
    assert subprocess.run(agent_cmd("keys", "new", "--out", str(keys)), capture_output=True).returncode == 0
    trust = tmp_path / "trust"
    trust.mkdir()
    (trust / "operator.pub").write_bytes((keys / "operator.pub").read_bytes())
    state = tmp_path / "state"
    cfg = tmp_path / "node.yaml"
    cfg.write_text(node_yaml(broker.url, state))
    err = tmp_path / "agent.err"
    common = ["--broker", broker.url, "--prefix", PREFIX]
    signed = [*common, "--key", str(keys / "operator.key")]
    # as the launcher runs it: release 1.0-1, after 1.1-2 failed its trial and was rolled back
    layout = Layout(tmp_path / "releases")
    for name, status in (
        ("1.0-1", {"status": "good"}),
        ("1.1-2", {"status": "failed", "reason": "never READY"}),
    ):
        layout.release(name).mkdir(parents=True)
        layout.write_state(name, version=name[:3], **status)
    env = {**os.environ, ROOT_ENV: str(layout.root), NAME_ENV: "1.0-1"}
    with open(err, "wb") as log:
        agent = subprocess.Popen(
            agent_cmd("run", "--simulate", "--config", str(cfg), "--trust-dir", str(trust)),
            stderr=log,
            env=env,
        )
    try:
        wait_for_log(agent, err, lambda t: "event=uplink_connected" in t, timeout=60)
        out = fleet("status", *common, "--wait", "1", "--json")
        assert out.returncode == 0, out.stderr
        seen = json.loads(out.stdout)
        assert seen[NODE]["status"]["state"] == "online" and "config/state" not in seen[NODE]
        release = {
            "name": "1.0-1",
            "status": "good",
            "last_trial": {"release": "1.1-2", "status": "failed", "reason": "never READY"},
        }
        assert seen[NODE]["status"]["release"] == release
        out = fleet("status", *common, "--wait", "1")
        assert "release=1.0-1 (good), last trial 1.1-2 failed: never READY" in out.stdout, out.stdout

        new = tmp_path / "new.yaml"
        new.write_text(node_yaml(broker.url, state, flush="2s"))
        out = fleet("push-config", str(new), "--node", NODE, *signed)
        assert out.returncode == 0 and f"{NODE}: applied" in out.stdout, out.stdout + out.stderr

        bad = tmp_path / "bad.yaml"
        bad.write_text(node_yaml(broker.url, state).replace("bme680", "bme999"))
        out = fleet("push-config", str(bad), "--node", NODE, *signed)
        assert out.returncode == 2 and f"{bad}: sensors[0].type" in out.stderr, out.stderr

        out = fleet("command", "report", "--node", NODE, *signed, "--json")
        assert out.returncode == 0, out.stdout + out.stderr
        reply = json.loads(out.stdout)["reply"]
        assert reply["outcome"] == "done" and reply["result"]["sensors"]["air"]["state"] == "up"

        # signed once for a group: the node of district-7 runs it, one for another group it refuses
        out = fleet("command", "health", "--group", "district-7", "--node", NODE, *signed)
        assert out.returncode == 0 and f"{NODE}: done" in out.stdout, out.stdout + out.stderr
        out = fleet("command", "health", "--group", "district-9", "--node", NODE, *signed, "--wait", "3")
        assert out.returncode == 1 and f"{NODE}: no answer" in out.stdout, out.stdout  # (its id unread)
        wait_for_log(agent, err, lambda t: "reason=wrong_target" in t)

        kid = subprocess.run(
            agent_cmd("keys", "show", str(keys / "operator.pub")), capture_output=True, text=True
        )
        out = fleet("revoke-key", kid.stdout.split()[0], "--node", NODE, *signed)  # its only key
        assert out.returncode == 1 and f"{NODE}: refused (revocation)" in out.stdout, out.stdout + out.stderr

        out = fleet("command", "flush", "--node", "ghost-9", *signed, "--wait", "2")
        assert out.returncode == 1 and "ghost-9: no answer within 2 s" in out.stdout

        out = fleet("status", *common, "--wait", "1", "--json")
        state_seen = json.loads(out.stdout)[NODE]["config/state"]
        assert state_seen["outcome"] == "applied"
        assert "event=reloaded config=remote configuration" in err.read_text()
    finally:
        rc = stop_agent(agent, err) if agent.poll() is None else agent.returncode
        kill_agent(agent, err)
    assert rc == 0
