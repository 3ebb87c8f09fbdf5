"""Tests that hold a compiled kernel to its pure-Python twin take both as modules of the same
names: ``impl = implementations(packing)`` makes a fixture ``impl`` whose two parameters are
the twin module and the compiled core (edge_agent.implementation.compiled).

The compiled one is skipped when the core is not in use (quietly under EDGE_AGENT_PUREPYTHON=1,
loudly when it is not built), and fails under EDGE_AGENT_REQUIRE_EXT=1. The fixture is
module-scoped: hypothesis draws many examples per test, and a module does not change between
them.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import edge_agent.wire  # noqa: F401  (binds the core through dsp: see edge_agent/wire/kernels.py)
from edge_agent.implementation import compiled

# The compiled core's stub, and Cython's own module attributes (not the core's API)
CORE_STUB = Path(__file__).resolve().parent.parent / "edge_agent" / "_core.pyi"
CYTHON_NAMES = {"__reduce_cython__", "__setstate_cython__", "__test__"}


def compiled_core() -> ModuleType:
    """The compiled core module, or a skip: quiet when EDGE_AGENT_PUREPYTHON=1 chose the twin
    (the compiled run checks the core), loud when the core is not built, and a failure where
    EDGE_AGENT_REQUIRE_EXT=1 requires the core."""
    if compiled is None:
        if os.environ.get("EDGE_AGENT_PUREPYTHON") == "1":
            pytest.skip("EDGE_AGENT_PUREPYTHON=1: the twin runs alone (the compiled run checks the core)")
        reason = "the compiled core edge_agent._core is not built"
        if os.environ.get("EDGE_AGENT_REQUIRE_EXT") == "1":
            pytest.fail(reason + "; EDGE_AGENT_REQUIRE_EXT=1 makes this a failure")
        print(f"\n*** SKIPPING: {reason} ***", file=sys.stderr)
        pytest.skip(reason)
    return compiled


def implementations(twin: ModuleType) -> Any:
    """A module-scoped fixture over [the twin module, the compiled core]."""

    @pytest.fixture(scope="module", params=["twin", "compiled"])
    def impl(request: pytest.FixtureRequest) -> ModuleType:
        return twin if request.param == "twin" else compiled_core()

    return impl
