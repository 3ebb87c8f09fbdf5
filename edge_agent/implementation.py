"""The one decision: the compiled core ``edge_agent._core`` or the pure-Python twins.

``EDGE_AGENT_PUREPYTHON=1`` forces the twins; otherwise the compiled module is used, and
the twins only when it is missing. With ``EDGE_AGENT_REQUIRE_EXT=1`` a missing compiled
module is an ImportError instead of a silent fallback (images that must never ship
without it set this).

Nothing else imports ``edge_agent._core``: each package binds its names once, from
``compiled`` (the module, or None) in one ``kernels``-style module of its own.
``IMPLEMENTATION`` says which runs (``"cython"`` or ``"python"``); the agent logs it.
"""

from __future__ import annotations

import os
from types import ModuleType


def _choose() -> ModuleType | None:
    if os.environ.get("EDGE_AGENT_PUREPYTHON") == "1":
        return None
    try:
        from edge_agent import _core
    except ImportError as exc:
        if os.environ.get("EDGE_AGENT_REQUIRE_EXT") == "1":
            raise ImportError(
                f"EDGE_AGENT_REQUIRE_EXT=1 but the compiled core edge_agent._core cannot be imported: {exc}"
            ) from exc
        return None
    return _core


compiled: ModuleType | None = _choose()
IMPLEMENTATION = "cython" if compiled is not None else "python"

__all__ = ["IMPLEMENTATION", "compiled"]
