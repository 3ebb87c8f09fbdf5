"""systemd integration: the agent speaks sd_notify over a socket the test creates, and
systemd-analyze checks the unit file."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from helpers import REPO, agent_cmd, receive, require_tool

UNIT = REPO / "systemd" / "edge-agent.service"


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


def test_unit_exposure_score_is_at_most_1_5():
    out = analyze("security", "--offline=true", str(UNIT))
    m = re.search(r"Overall exposure level for edge-agent\.service: ([0-9.]+)", out.stdout)
    assert m, out.stdout + out.stderr
    assert float(m.group(1)) <= 1.5


def test_unit_verifies_without_warnings(tmp_path):
    # verify checks ExecStart= exists: point it at this checkout's console script.
    exe = Path(sys.executable).with_name("edge-agent")
    unit = tmp_path / "edge-agent.service"
    unit.write_text(UNIT.read_text().replace("/opt/edge-agent/bin/edge-agent", str(exe)))
    out = analyze("verify", str(unit))
    assert out.returncode == 0
    lines = [ln for ln in (out.stdout + out.stderr).splitlines() if ln.strip()]
    assert lines == [], lines
