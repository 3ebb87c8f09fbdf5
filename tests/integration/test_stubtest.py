"""mypy's stubtest holds edge_agent/_core.pyi to the compiled core it describes."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest
from twins import CORE_STUB as STUB
from twins import CYTHON_NAMES, compiled_core


def test_mypy_stubtest_finds_the_stub_and_the_module_consistent(tmp_path):
    """stubtest imports the built module and checks every name and type in the stub. The core
    must be built (a loud skip, or a failure under EDGE_AGENT_REQUIRE_EXT=1); mypy is a dev
    tool (`pip install -e '.[dev]'`, `make check`), so without it this is a loud skip."""
    if importlib.util.find_spec("edge_agent._core") is None:
        compiled_core()  # skips or fails as the environment says
        pytest.skip("EDGE_AGENT_PUREPYTHON=1 and the compiled core is not built")
    if importlib.util.find_spec("mypy") is None:
        print("\n*** SKIPPING: mypy is not installed (the dev extra) ***", file=sys.stderr)
        pytest.skip("mypy is not installed (pip install -e '.[dev]')")
    allowlist = tmp_path / "allowlist.txt"
    allowlist.write_text("".join(f"edge_agent._core.{name}\n" for name in sorted(CYTHON_NAMES)))
    env = {k: v for k, v in os.environ.items() if k != "EDGE_AGENT_PUREPYTHON"}
    # Whether stubtest reports Cython's names depends on the mypy configuration it reads
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy.stubtest",
            "--allowlist",
            str(allowlist),
            "--ignore-unused-allowlist",
            "edge_agent._core",
        ],
        env=env,
        capture_output=True,
        text=True,
        cwd=STUB.parent.parent,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Success" in out.stdout, out.stdout
