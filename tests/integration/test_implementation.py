"""The one decision, compiled core or pure-Python twin (edge_agent/implementation.py), seen
from a fresh interpreter: EDGE_AGENT_PUREPYTHON and EDGE_AGENT_REQUIRE_EXT are honoured, and
the core is chosen whichever module a process imports first."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from importlib.util import find_spec

import pytest
from twins import compiled_core


def test_selector_honours_purepython_and_require_ext():
    code = "import edge_agent.dsp as d; print(d.IMPLEMENTATION)"
    env = dict(os.environ, EDGE_AGENT_PUREPYTHON="1")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "python"
    env = {k: v for k, v in os.environ.items() if k != "EDGE_AGENT_PUREPYTHON"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    if importlib.util.find_spec("edge_agent._core") is not None:  # built, so chosen
        assert out.stdout.strip() == "cython"
    hide = "import sys; sys.modules['edge_agent._core'] = None; " + code
    out = subprocess.run(
        [sys.executable, "-c", hide],
        env=dict(env, EDGE_AGENT_REQUIRE_EXT="0"),
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "python"
    out = subprocess.run(
        [sys.executable, "-c", hide],
        env=dict(env, EDGE_AGENT_REQUIRE_EXT="1"),
        capture_output=True,
        text=True,
    )
    assert out.returncode != 0 and "EDGE_AGENT_REQUIRE_EXT=1" in out.stderr


@pytest.mark.parametrize(
    "first",
    [
        "edge_agent.implementation",
        "edge_agent.wire",
        "edge_agent.dsp",
        "edge_agent.dsp.stages",
        "edge_agent._core",
    ],
)
def test_the_compiled_core_is_chosen_whichever_module_a_process_imports_first(first):
    """The core once imported the twin's package at load, which imports the selector: a
    process that imported the selector first got the twin, silently (a cycle)."""
    if importlib.util.find_spec("edge_agent._core") is None:
        compiled_core()  # skips, or fails under EDGE_AGENT_REQUIRE_EXT=1
    code = f"import {first}; import edge_agent.implementation as i; print(i.IMPLEMENTATION)"
    env = {k: v for k, v in os.environ.items() if k != "EDGE_AGENT_PUREPYTHON"}
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=dict(env, EDGE_AGENT_REQUIRE_EXT="1"),
        capture_output=True,
        text=True,
    )
    assert (out.returncode, out.stdout.strip()) == (0, "cython"), out.stderr


def test_the_compiled_core_is_bound_whichever_module_is_imported_first():
    """edge_agent._core once imported edge_agent.dsp as it loaded, and a process that imported
    edge_agent.implementation first silently got the twins; it now reads the stages at the
    first Chain. Checked from each module that binds the core."""
    if os.environ.get("EDGE_AGENT_PUREPYTHON") == "1" or find_spec("edge_agent._core") is None:
        compiled_core()  # not in use: a skip (a failure under EDGE_AGENT_REQUIRE_EXT=1)
    for first in (
        "edge_agent.implementation",
        "edge_agent.wire.kernels",
        "edge_agent.wire.decoder",
        "edge_agent.wire",
    ):
        code = (
            f"import {first}; import edge_agent._core as c, edge_agent.wire.kernels as k; "
            "assert k.pack_simple8b is c.pack_simple8b and k.crc32c is c.crc32c, 'the twins are bound'"
        )
        subprocess.run([sys.executable, "-c", code], check=True)
