"""drivers/ imports nothing from edge_agent, checked in a fresh interpreter."""

from __future__ import annotations

import subprocess
import sys


def test_drivers_import_nothing_from_edge_agent():
    code = (
        "import sys, drivers.options, drivers.base, drivers.registry; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'edge_agent'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
