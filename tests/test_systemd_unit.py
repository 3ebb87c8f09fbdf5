"""The unit file's hardening, read as text (systemd-analyze's checks are in
integration/test_systemd.py)."""

from __future__ import annotations

import re

from helpers import REPO

UNIT = REPO / "systemd" / "edge-agent.service"


def test_unit_hardening_essentials():
    text = UNIT.read_text()
    for line in (
        "Type=notify",
        "WatchdogSec=",
        "Restart=always",
        "StartLimitIntervalSec=0",
        "DeviceAllow=char-i2c rw",
        "DeviceAllow=char-gpiochip rw",
        "StateDirectory=edge-agent",
        "ConfigurationDirectory=edge-agent",
        "User=edge-agent",
        "NoNewPrivileges=yes",
    ):
        assert line in text, line
    sysusers = (REPO / "systemd" / "edge-agent.sysusers.conf").read_text()
    assert re.search(r"^u edge-agent ", sysusers, re.M)
    assert re.search(r"^m edge-agent i2c$", sysusers, re.M) and re.search(
        r"^m edge-agent gpio$", sysusers, re.M
    )
