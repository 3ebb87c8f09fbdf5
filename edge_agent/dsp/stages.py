"""The stages a chain is made of: their kinds, parameter counts and limits, and the check
of a chain's spec. Both implementations take these from here (the compiled core imports
them at load), so a limit is changed in one place; this module imports nothing from the
project.

``ARITY`` maps each kind to its (fewest, most) parameters; ``LOSSY`` are the kinds that
may only come last; ``MAD_SCALE`` turns a median absolute deviation into a standard
deviation for Hampel's test. What each stage does: ``edge_agent.dsp``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

MAX_WINDOW = 255
MAX_POLY = 8
MAD_SCALE = 1.4826  # MAD of a normal distribution -> its standard deviation
LOSSY = ("deadband", "swing")
ARITY = {
    "calibrate": (1, MAX_POLY),
    "range": (3, 3),
    "hampel": (2, 2),
    "median": (1, 1),
    "mean": (1, 1),
    "ema": (1, 1),
    "kalman": (2, 2),
    "throttle": (1, 1),
    "deadband": (3, 3),
    "swing": (2, 2),
}


def check_spec(spec: Sequence[Sequence]) -> tuple[tuple, ...]:
    """Validate a chain spec; raise ValueError saying which stage and parameter is wrong."""
    out = []
    for i, stage in enumerate(spec):
        kind, *params = stage
        if kind not in ARITY:
            raise ValueError(f"stage {i}: unknown stage {kind!r} (expected one of {', '.join(ARITY)})")
        lo, hi = ARITY[kind]
        if not lo <= len(params) <= hi:
            raise ValueError(f"stage {i} ({kind}): takes {lo}..{hi} parameters, got {len(params)}")
        p = [float(v) for v in params]
        if any(math.isnan(v) for v in p):
            raise ValueError(f"stage {i} ({kind}): NaN parameter")
        broken = _broken_rule(kind, p)
        if broken is not None:
            raise ValueError(f"stage {i} ({kind}): {broken}, got {tuple(params)!r}")
        if kind in LOSSY and i != len(spec) - 1:
            raise ValueError(f"stage {i} ({kind}): a lossy stage must be the last of the chain")
        out.append((kind, *p))
    return tuple(out)


def _broken_rule(kind: str, p: list[float]) -> str | None:
    """The first rule that a stage's parameters (as many as ARITY allows, none NaN) break,
    or None."""
    if kind in ("median", "mean"):
        if not (p[0] == int(p[0]) and 1 <= p[0] <= MAX_WINDOW):
            return f"{kind} window must be an integer in 1..{MAX_WINDOW}"
    elif kind == "hampel":
        if not (p[0] == int(p[0]) and 3 <= p[0] <= MAX_WINDOW and int(p[0]) % 2 == 1):
            return f"hampel window must be an odd integer in 3..{MAX_WINDOW}"
        if not p[1] > 0:
            return "hampel k must be > 0"
    elif kind == "ema":
        if not 0.0 < p[0] <= 1.0:
            return "ema alpha must be in (0, 1]"
    elif kind == "kalman":
        if not (p[0] >= 0 and p[1] > 0):
            return "kalman process noise must be >= 0 and measurement noise > 0"
    elif kind == "range":
        if not (p[0] <= p[1] and p[2] in (0.0, 1.0)):
            return "range needs low <= high and mode 0 (reject) or 1 (clamp)"
    elif kind == "throttle":
        if not p[0] >= 0:
            return "throttle interval must be >= 0"
    elif kind == "deadband":
        if not (p[0] >= 0 and p[1] in (0.0, 1.0) and p[2] >= 0):
            return "deadband width must be >= 0, relative 0 or 1, max interval >= 0 (0: none)"
    elif kind == "swing":
        if not (p[0] >= 0 and p[1] >= 0):
            return "swing deviation must be >= 0, max interval >= 0 (0: none)"
    return None
