"""The one place that chooses the signal core's implementation.

``EDGE_AGENT_PUREPYTHON=1`` forces the pure-Python twin; otherwise the compiled
module ``edge_agent._dsp`` is used, and the twin only when that module is missing.
With ``EDGE_AGENT_REQUIRE_EXT=1`` a missing compiled module is an ImportError
instead of a silent fallback. ``IMPLEMENTATION`` tells which one runs
(``"cython"`` or ``"python"``); the agent logs it at start.
"""

from __future__ import annotations

import os

if os.environ.get("EDGE_AGENT_PUREPYTHON") == "1":
    from edge_agent._dsp_py import MAX_MEDIAN_WINDOW, Chain

    IMPLEMENTATION = "python"
else:
    try:
        from edge_agent._dsp import MAX_MEDIAN_WINDOW, Chain  # type: ignore[no-redef]

        IMPLEMENTATION = "cython"
    except ImportError as exc:
        if os.environ.get("EDGE_AGENT_REQUIRE_EXT") == "1":
            raise ImportError(
                "EDGE_AGENT_REQUIRE_EXT=1 but the compiled core edge_agent._dsp "
                f"cannot be imported: {exc}") from exc
        from edge_agent._dsp_py import MAX_MEDIAN_WINDOW, Chain  # type: ignore[no-redef]

        IMPLEMENTATION = "python"

STAGE_KINDS = ("median", "ema", "deadband")

__all__ = ["Chain", "IMPLEMENTATION", "MAX_MEDIAN_WINDOW", "STAGE_KINDS"]
