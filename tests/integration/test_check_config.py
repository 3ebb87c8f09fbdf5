"""`edge-agent check-config`: exit code 0 and "valid" for a good file, 2 and the key path for a bad one."""

from __future__ import annotations

import subprocess
import sys

from config_data import GOOD, write


def test_check_config_exit_codes(tmp_path):
    good = write(tmp_path, GOOD)
    bad = write(tmp_path, GOOD.replace("window: 5", "window: -5"), "bad.yaml")
    ok = subprocess.run(
        [sys.executable, "-m", "edge_agent.cli", "check-config", str(good)], capture_output=True, text=True
    )
    assert ok.returncode == 0 and "valid" in ok.stdout
    ko = subprocess.run(
        [sys.executable, "-m", "edge_agent.cli", "check-config", str(bad)], capture_output=True, text=True
    )
    assert ko.returncode == 2
    assert "sensors[0].filters[0].window" in ko.stderr
