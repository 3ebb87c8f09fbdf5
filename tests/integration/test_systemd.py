"""systemd integration: the agent speaks sd_notify over a socket the test creates, and
systemd-analyze checks the unit files (the agent's and the ingest workers')."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO, agent_cmd, receive, require_tool


def test_agent_notifies_ready_status_watchdog_and_stopping(notify_socket, tmp_path):
    path, sock = notify_socket
    env = dict(os.environ, NOTIFY_SOCKET=path, WATCHDOG_USEC="1000000")
    proc = subprocess.Popen(
        agent_cmd(
            "run",
            "--simulate",
            "--state-dir",
            str(tmp_path / "s"),
            "--flush-interval",
            "1s",
            "--broker",
            "mqtt://127.0.0.1:9",
        ),
        env=env,
        stderr=subprocess.PIPE,
    )
    try:
        messages = receive(sock, 4.0)
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    messages += receive(sock, 0.5)
    ready = [m for m in messages if m.startswith("READY=1")]
    assert len(ready) == 1, messages
    assert re.search(
        r"STATUS=queue=\d+ batches \(\d+ B\), link=down, delivered=0, sensors=1/1 up$", ready[0], re.M
    )
    pings = [m for m in messages if m.startswith("WATCHDOG=1")]
    assert len(pings) >= 4, messages  # every 0.5 s while the pipeline moves
    assert messages[-1] == "STOPPING=1"
    assert proc.returncode == 0, err.decode()


def analyze(*args: str) -> subprocess.CompletedProcess:
    binary = require_tool("systemd-analyze", "the systemd package")
    return subprocess.run([binary, *args], capture_output=True, text=True)


# The agent's unit and the ingest workers' template (systemd/edge-agent-ingest@.service).
CHECKED_UNITS = ["edge-agent.service", "edge-agent-ingest@.service"]


@pytest.mark.parametrize("name", CHECKED_UNITS)
def test_unit_exposure_score_is_at_most_1_5(name):
    out = analyze("security", "--offline=true", str(REPO / "systemd" / name))
    stem = re.escape(name.removesuffix(".service"))  # a template is shown as an instance of it
    m = re.search(rf"Overall exposure level for {stem}\S*\.service: ([0-9.]+)", out.stdout)
    assert m, out.stdout + out.stderr
    assert float(m.group(1)) <= 1.5


@pytest.mark.parametrize("name", CHECKED_UNITS)
def test_unit_verifies_without_warnings(name, tmp_path):
    # verify checks ExecStart= exists: point it at this checkout's console script.
    exe = Path(sys.executable).with_name("edge-agent")
    unit = tmp_path / name
    unit.write_text((REPO / "systemd" / name).read_text().replace("/opt/edge-agent/bin/edge-agent", str(exe)))
    out = analyze("verify", str(unit))
    assert out.returncode == 0
    lines = [ln for ln in (out.stdout + out.stderr).splitlines() if ln.strip()]
    assert lines == [], lines
