"""systemd/edge-agent-launcher.service: the launcher as the main process of a Type=notify unit,
with every hardening line of edge-agent.service (systemd-analyze: integration/test_update_launcher.py)."""

from __future__ import annotations

import re

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
