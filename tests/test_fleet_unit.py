"""systemd/edge-agent-launcher.service: the launcher as the main process of a Type=notify unit,
with every hardening line of edge-agent.service, and checked by systemd-analyze when present."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import pytest
from helpers import REPO

LAUNCHER = REPO / "systemd" / "edge-agent-launcher.service"
AGENT = REPO / "systemd" / "edge-agent.service"


def _service_lines(text: str) -> list[str]:
    section = text[text.index("[Service]") : text.index("[Install]")]
    return [ln for ln in section.splitlines() if ln and not ln.startswith("#")]


def test_the_launcher_unit_runs_the_launcher_with_the_agent_s_hardening():
    text = LAUNCHER.read_text()
    for line in ("Type=notify", "NotifyAccess=main", "Restart=always", "Conflicts=edge-agent.service"):
        assert line in text, line
    exec_start = re.search(r"^ExecStart=(.*)$", text, re.M)
    assert exec_start and "-m edge_agent.fleet.launcher" in exec_start.group(1)
    assert "--root /var/lib/edge-agent-releases" in exec_start.group(1)
    assert "StateDirectory=edge-agent edge-agent-releases" in text
    launcher = set(_service_lines(text))
    skip = ("ExecStart=", "WatchdogSec=", "TimeoutStartSec=", "StateDirectory=")
    missing = [
        ln for ln in _service_lines(AGENT.read_text()) if ln not in launcher and not ln.startswith(skip)
    ]
    assert missing == []


def test_systemd_analyze_passes_the_launcher_unit(tmp_path):
    binary = shutil.which("systemd-analyze")
    if binary is None:
        pytest.skip("systemd-analyze is not installed")
    out = subprocess.run(
        [binary, "security", "--offline=true", str(LAUNCHER)], capture_output=True, text=True
    )
    m = re.search(r"Overall exposure level for edge-agent-launcher\.service: ([0-9.]+)", out.stdout)
    assert m and float(m.group(1)) <= 1.5, out.stdout + out.stderr
    unit = tmp_path / "edge-agent-launcher.service"
    unit.write_text(LAUNCHER.read_text().replace("/opt/edge-agent/bin/python", sys.executable))
    out = subprocess.run([binary, "verify", str(unit)], capture_output=True, text=True)
    assert out.returncode == 0 and not (out.stdout + out.stderr).strip(), out.stdout + out.stderr
