"""`edge-agent status` against a running `edge-agent run --simulate` process: the node's
facts from its own listener, exit 1 while the queue grows with the link down, 0 once a
real Mosquitto takes the batches; a clear message when no agent answers."""

from __future__ import annotations

import json
import re
import subprocess

from helpers import Sink, agent_cmd, free_port, kill_agent, stop_agent, wait_for_log

CONFIG = """\
node: {{id: status-node}}
flush_interval: 200ms
clock: {{hold_unsynced: 0s}}
http: {{listen: "127.0.0.1:0"}}
mqtt: {{broker: "{broker}"}}
sensors:
  - {{name: air, type: bme680, interval: 100ms, heater: {{duration: 30ms}}}}
"""


def status(listen: str, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        agent_cmd("status", "--listen", listen, *extra), capture_output=True, text=True, timeout=60
    )


def start(tmp_path, broker_url: str) -> tuple[subprocess.Popen, str, object]:
    cfg = tmp_path / "node.yaml"
    cfg.write_text(CONFIG.format(broker=broker_url))
    log = tmp_path / "agent.err"
    proc = subprocess.Popen(
        agent_cmd("run", "--simulate", "--config", str(cfg), "--state-dir", str(tmp_path / "state")),
        stderr=open(log, "wb"),
    )
    text = wait_for_log(
        proc, log, lambda t: "event=http_listening" in t and t.count("event=batch_sealed") >= 3
    )
    listen = re.search(r"event=http_listening listen=(\S+)", text).group(1)
    return proc, listen, log


def test_status_says_the_queue_grows_with_the_link_down(tmp_path):
    proc, listen, log = start(tmp_path, f"mqtt://127.0.0.1:{free_port()}")
    try:
        # the page shows the sampler's last snapshot, which may be older than the log's seals
        # on a loaded machine: asked until it has caught up (by count, not by time)
        for _ in range(200):
            j = status(listen, "--json")
            facts = json.loads(j.stdout)
            if facts["sensors"]["air"]["samples"] >= 3 and facts["store"]["batches"] and facts["problems"]:
                break
        assert j.returncode == 1 and facts["ok"] is False and facts["store"]["batches"] >= 1
        assert facts["sensors"]["air"]["samples"] >= 3, facts["sensors"]
        r = status(listen)
        assert r.returncode == 1, r
        assert "status-node: PROBLEMS" in r.stdout and "queue growing with the link down" in r.stdout
        assert "sensor air (bme680): up; temperature" in r.stdout and "Traceback" not in r.stderr
        assert stop_agent(proc, log) == 0
    finally:
        kill_agent(proc, log)
    gone = status(listen)
    assert gone.returncode == 1 and "no status from" in gone.stderr and "is the agent running?" in gone.stderr
    assert "Traceback" not in gone.stderr


def test_status_says_when_the_broker_has_nobody_for_the_data(tmp_path, broker):
    proc, listen, log = start(tmp_path, broker.url)
    try:
        wait_for_log(proc, log, lambda t: "event=no_subscribers" in t)
        for _ in range(200):  # asked until a snapshot taken after the event is shown (by count)
            r = status(listen, "--json")
            facts = json.loads(r.stdout)
            if facts["uplink"]["unrouted_acks"]:
                break
        assert r.returncode == 1 and facts["uplink"]["no_subscribers"], facts
        assert "the broker has no subscriber for the data" in " ".join(facts["problems"])
        assert facts["uplink"]["unrouted_acks"] >= 1 and facts["uplink"]["delivered"] == 0
        assert stop_agent(proc, log) == 0
    finally:
        kill_agent(proc, log)


def test_status_is_ok_when_the_broker_takes_the_batches(tmp_path, broker):
    sink = Sink(broker.port)
    proc, listen, log = start(tmp_path, broker.url)
    try:
        wait_for_log(proc, log, lambda t: "event=uplink_connected" in t)
        for _ in range(200):  # asked until the delivered batches are acknowledged (by count)
            r = status(listen, "--json")
            facts = json.loads(r.stdout)
            if facts["uplink"]["delivered"] >= 3 and facts["ok"]:
                break
        assert r.returncode == 0 and facts["ok"], facts["problems"]
        assert facts["uplink"]["state"] == "connected" and facts["uplink"]["last_ack"] is not None
        assert stop_agent(proc, log) == 0
    finally:
        kill_agent(proc, log)
        sink.close()


def test_status_with_bad_arguments_exits_2(tmp_path):
    r = status("localhost:9180")
    assert r.returncode == 2 and "not a name" in r.stderr and "Traceback" not in r.stderr
    cfg = tmp_path / "off.yaml"
    cfg.write_text(CONFIG.format(broker="mqtt://127.0.0.1:1").replace('"127.0.0.1:0"', '""'))
    off = subprocess.run(
        agent_cmd("status", "--config", str(cfg)), capture_output=True, text=True, timeout=60
    )
    assert off.returncode == 2 and "turns the status listener off" in off.stderr
