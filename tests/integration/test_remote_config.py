"""A signed configuration pushed to a running `edge-agent run --simulate` through a real
Mosquitto (docs/fleet.md, "Remote configuration"): applied through the reload path and
confirmed on config/state; a forged one rejected with its reason; one whose broker is
unreachable reverted when its trial ends, the node back on its broker. The queue is never
recreated: the sequence numbers the subscriber receives go on without a gap across every
change. Bounded by events (the states and the batches received), never by the clock."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from helpers import agent_cmd, free_port, kill_agent, stop_agent, wait_for_log

from edge_agent import wire
from edge_agent.fleet.keys import OperatorKey
from edge_agent.fleet.signed import sign

pytestmark = pytest.mark.broker

OPERATOR = OperatorKey(bytes(range(32)))
STRANGER = OperatorKey(bytes(range(1, 33)))
NODE = "remote-1"
PREFIX = "rc"


def node_yaml(broker_url: str, state: Path, flush: str = "1s") -> str:
    return f"""\
node: {{id: {NODE}, groups: [district-7]}}
state_dir: {state}
flush_interval: {flush}
clock: {{hold_unsynced: 0s}}
mqtt: {{broker: "{broker_url}", topic_prefix: {PREFIX}, reconnect: {{min: 200ms, max: 1s}}}}
sensors:
  - {{name: air, type: bme680, interval: 200ms}}
"""


def offer(text: str, counter: int, key: OperatorKey = OPERATOR, target: str = f"node:{NODE}") -> bytes:
    now = int(time.time())
    return sign(
        "config", {"yaml": text}, key=key, target=target, counter=counter, expires=now + 600, issued=now
    )


class Operator:
    """The operator's side: publishes offers (retained), watches config/state and the data."""

    def __init__(self, port: int) -> None:
        self.lock = threading.Condition()
        self.states: list[dict] = []
        self.replies: list[dict] = []
        self.health = 0
        self.seqs: list[int] = []
        subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="operator")
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.connect("127.0.0.1", port)
        topics = ("config/state", "data/air", "cmd/reply", "health")
        self.client.subscribe([(f"{PREFIX}/{NODE}/{t}", 1) for t in topics])
        self.client.loop_start()
        assert subscribed.wait(10)

    def _on_message(self, _c, _u, msg) -> None:
        with self.lock:
            if msg.topic.endswith("/config/state"):
                self.states.append(json.loads(msg.payload))
            elif msg.topic.endswith("/cmd/reply"):
                self.replies.append(json.loads(msg.payload))
            elif msg.topic.endswith("/health"):
                self.health += 1
            else:
                self.seqs.append(wire.decode(msg.payload).seq)
            self.lock.notify_all()

    def command(self, envelope: bytes) -> None:
        self.client.publish(f"{PREFIX}/{NODE}/cmd", envelope, qos=1).wait_for_publish(10)

    def push(self, envelope: bytes) -> None:
        self.client.publish(f"{PREFIX}/{NODE}/config/set", envelope, qos=1, retain=True).wait_for_publish(10)

    def wait(self, done, what: str, agent, timeout: float = 150.0):
        deadline = time.monotonic() + timeout
        with self.lock:
            while not done(self):
                assert agent.poll() is None, f"the agent ended while waiting for {what}"
                assert time.monotonic() < deadline, f"no {what}: states {self.states}"
                self.lock.wait(0.2)

    def state(self, outcome: str, counter: int | None):
        return lambda op: any(s["outcome"] == outcome and s["counter"] == counter for s in op.states)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def test_pushed_configurations_are_applied_rejected_and_reverted(broker, tmp_path: Path):
    trust = tmp_path / "trust"
    trust.mkdir()
    (trust / "operator.pub").write_bytes(OPERATOR.public.line())
    state = tmp_path / "state"
    cfg = tmp_path / "node.yaml"
    cfg.write_text(node_yaml(broker.url, state))
    err = tmp_path / "agent.err"
    op = Operator(broker.port)
    with open(err, "wb") as log:
        agent = subprocess.Popen(
            agent_cmd("run", "--simulate", "--config", str(cfg), "--trust-dir", str(trust)), stderr=log
        )
    try:
        wait_for_log(agent, err, lambda t: "event=uplink_connected" in t, timeout=60)
        op.wait(lambda o: len(o.seqs) >= 2, "batches", agent)

        # 1. a good one: a new flush interval, applied through the reload path, confirmed
        op.push(offer(node_yaml(broker.url, state, flush="2s"), 1))
        op.wait(op.state("applied", 1), "applied 1", agent)
        assert "event=reloaded config=remote configuration 1" in err.read_text()
        # (its trial may be confirmed before the state "trial" left: the newest state wins)
        assert [s["outcome"] for s in op.states if s["counter"] == 1] in (["trial", "applied"], ["applied"])
        assert "event=remote_config_trial counter=1" in err.read_text()

        # 2. forged (a key the node does not trust), then for another node: rejected, said why
        op.push(offer(node_yaml(broker.url, state, flush="3s"), 2, key=STRANGER))
        op.wait(lambda o: any(s.get("reason") == "unknown_key" for s in o.states), "unknown_key", agent)
        op.push(offer(node_yaml(broker.url, state, flush="3s"), 3, target="node:remote-2"))
        op.wait(lambda o: any(s.get("reason") == "wrong_target" for s in o.states), "wrong_target", agent)

        # 3. one that breaks the link (its broker answers nowhere): reverted when the trial ends
        seen = len(op.seqs)
        dead = f"mqtt://127.0.0.1:{free_port()}"
        op.push(offer(node_yaml(dead, state, flush="2s"), 4, target="group:district-7"))
        op.wait(op.state("trial", 4), "trial 4", agent)
        pushed = time.monotonic()
        op.wait(op.state("reverted", 4), "reverted 4", agent, timeout=240)
        print(
            f"remote configuration: link lost to reverted state received in {time.monotonic() - pushed:.1f} s"
        )
        op.wait(lambda o: len(o.seqs) >= seen + 3, "batches after the revert", agent)
        text = err.read_text()
        assert "event=remote_config_reverted counter=4" in text
        # a SIGHUP while a remote configuration is good keeps it, and says so
        os.kill(agent.pid, signal.SIGHUP)
        wait_for_log(agent, err, lambda t: "remote configuration 1 (key" in t and "event=reload_ignored" in t)
    finally:
        rc = stop_agent(agent, err) if agent.poll() is None else agent.returncode
        kill_agent(agent, err)
        op.close()
    assert rc == 0, err.read_text()
    # the queue was never recreated: one epoch, its sequence numbers without a hole
    seqs = sorted(set(op.seqs))
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), seqs
    text = err.read_text()
    assert "Traceback" not in text
    # the good configuration (counter 1) is what the node holds for its next start
    good = json.loads((state / "fleet" / "config-good.json").read_text())
    assert good["counter"] == 1
    # ...and runs at the next start, in place of the file (flush 2s, not the file's 1s)
    with open(err, "wb") as log:
        agent = subprocess.Popen(
            agent_cmd("run", "--simulate", "--config", str(cfg), "--trust-dir", str(trust)), stderr=log
        )
    try:
        text = wait_for_log(agent, err, lambda t: "event=ready" in t, timeout=60)
        assert "config=remote configuration 1 (key" in text and "flush_interval=2s" in text, text
        assert stop_agent(agent, err) == 0
    finally:
        kill_agent(agent, err)
