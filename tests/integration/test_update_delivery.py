"""An update delivered through the backbone, end to end: a node run by the launcher (release
0.1.0, through its trial) gets `fleet push-update` for 0.2.0 over a real Mosquitto, fetches the
bundle from an HTTPS server on loopback (the link cut halfway: resumed with a range request),
installs it, restarts into its trial, which passes; `fleet status` then says 0.2.0 runs. A push
whose served bytes are not the signed bundle is refused and writes nothing outside staging. No
sequence number is lost across both releases."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from bundle_server import BundleServer
from helpers import REPO, Sink, agent_cmd, terminate, wait_for_log
from test_update_apply import NODE_ID, OPERATOR, Node, outside_staging

from edge_agent import wire
from edge_agent.keyfile import SECRET_TAG, b64
from edge_agent.node.store import BatchStore

pytestmark = pytest.mark.broker

CONFIG = """\
node: {{id: {node}}}
flush_interval: 500ms
clock: {{hold_unsynced: 0s}}
mqtt: {{broker: "{broker}", topic_prefix: upd, ca_file: "{ca}", reconnect: {{min: 200ms, max: 1s}}}}
sensors:
  - name: air
    type: bme680
    interval: 100ms
"""


def fleet(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(agent_cmd("fleet", *args), capture_output=True, text=True, timeout=300)


def test_an_update_pushed_through_the_broker_is_fetched_installed_and_tried(broker, pki, tmp_path):
    node = Node(tmp_path / "node")
    cfg = tmp_path / "node.yaml"
    cfg.write_text(CONFIG.format(node=NODE_ID, broker=broker.url, ca=pki / "ca.pem"))
    key = tmp_path / "operator.key"
    key.write_text(f"{SECRET_TAG} {b64(bytes(range(32)))}\n")  # OPERATOR's seed
    key.chmod(0o600)
    assert OPERATOR.public.id in {p.stem for p in node.trust.iterdir()}
    node.apply(node.bundle("0.1.0"))
    first = f"0.1.0-{node.counter}"
    log = tmp_path / "launcher.err"
    argv = [sys.executable, "-m", "edge_agent.fleet.launcher", "--root", str(node.releases)]
    argv += ["--watchdog-sec", "8", "--trial-window", "60", "--trial-hold", "2", "--", "run", "--simulate"]
    argv += ["--config", str(cfg), "--state-dir", str(node.state), "--trust-dir", str(node.trust)]
    server = BundleServer(pki)
    sink = Sink(broker.port, "upd/#")
    proc = subprocess.Popen(argv, stderr=open(log, "ab"), cwd=REPO)
    try:
        wait_for_log(proc, log, lambda t: f"event=trial_passed release={first}" in t, timeout=120)
        common = ["--broker", broker.url, "--prefix", "upd", "--node", NODE_ID, "--key", str(key)]

        # served bytes that are not the signed bundle: refused, nothing outside staging written
        bad = node.bundle("0.2.0")
        data = bytearray(bad.read_bytes())
        data[len(data) // 3] ^= 0xFF  # (its end is a tar's zero padding)
        server.files["/bad.tar"] = bytes(data)
        before = outside_staging(node.releases)
        out = fleet("push-update", str(bad), "--url", server.url("/bad.tar"), *common, "--wait", "120")
        assert out.returncode == 1 and "refused (corrupt_download)" in out.stdout, out.stdout + out.stderr
        assert outside_staging(node.releases) == before

        bundle = node.bundle("0.2.0")
        second = f"0.2.0-{node.counter}"
        server.files["/0.2.0.tar"] = bundle.read_bytes()
        server.cut_after[:] = [bundle.stat().st_size // 2]  # the link breaks halfway
        out = fleet("push-update", str(bundle), "--url", server.url("/0.2.0.tar"), *common, "--wait", "120")
        assert out.returncode == 0, out.stdout + out.stderr
        assert f"{NODE_ID}: done: installed edge-agent 0.2.0 as release {second}" in out.stdout, out.stdout
        ranges = [r for path, r in server.seen if path == "/0.2.0.tar"]
        assert ranges == [None, f"bytes={bundle.stat().st_size // 2}-"], ranges
        text = wait_for_log(proc, log, lambda t: f"event=trial_passed release={second}" in t, timeout=120)
        assert f"event=child_exited release={first}" in text
        assert node.layout.link("current") == second and node.layout.link("previous") == first
        assert not any((node.releases / "staging" / "downloads").iterdir())  # nothing left behind

        out = fleet("status", "--broker", broker.url, "--prefix", "upd", "--wait", "1", "--json")
        status = json.loads(out.stdout)[NODE_ID]["status"]
        assert status["release"]["name"] == second and status["release"]["last_trial"]["release"] == second
    finally:
        terminate(proc, timeout=60)
        server.close()
        sink.close()
    with BatchStore(str(node.state / "queue.sqlite3")) as s:
        last = s.next_seq("air") - 1
        left = s.depth()[0]
    seqs = {wire.decode(p).seq for t, p in sink.messages if "/data/" in t}
    assert seqs >= set(range(last + 1 - left)) and last > 0, (last, left, sorted(set(range(last + 1)) - seqs))


def test_the_key_file_written_here_is_the_operator_s(tmp_path):
    from edge_agent.fleet.keys import OperatorKey

    key = tmp_path / "k"
    key.write_text(f"{SECRET_TAG} {b64(bytes(range(32)))}\n")
    os.chmod(key, 0o600)
    assert OperatorKey.read(key).public.id == OPERATOR.public.id
