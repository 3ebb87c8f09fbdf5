"""The predictors of a channel's values, the residuals they leave and the values rebuilt
from them (docs/wire-format.md, "Values").

A predictor sees only the values the decoder has already rebuilt, so binned (lossy)
residuals never drift: every rebuilt value is within ``width // 2`` steps of the one given.
``residuals`` and ``values_from`` are the pure-Python twins of the compiled core's; edge_agent.wire.kernels binds
the one in use (the twin also takes integers beyond int64).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from edge_agent.wire.format import DAY_MS, PREDICTOR_SEASONAL, PREDICTOR_ZERO
from edge_agent.wire.varint import unzigzag


def predict(kind: int, hist: list[int], i: int, season: int = 0) -> int:
    """The prediction of value i from the values before it (``hist``), known to the decoder:
    0 the previous value; 1 the line through the two before (the previous one for i = 1);
    2 the mean of up to eight before, rounded half up (noisy, slowly moving signals);
    3 the least-squares line through up to eight before, one step on, rounded half up
    (noisy signals with a trend); 4 zero (values that mostly sit at one level, e.g. rain);
    5 the previous value plus the step between the same two samples one ``season`` earlier
    (the previous value while i <= season): a daily cycle repeats."""
    if i == 0 or kind == PREDICTOR_ZERO:
        return 0
    if kind == PREDICTOR_SEASONAL:
        return hist[i - 1] + hist[i - season] - hist[i - season - 1] if i > season else hist[i - 1]
    if kind == 0 or (kind == 1 and i == 1):
        return hist[i - 1]
    if kind == 1:
        return 2 * hist[i - 1] - hist[i - 2]
    window = hist[max(0, i - 8) : i]
    m = len(window)
    if kind == 2 or m < 2:
        return (2 * sum(window) + m) // (2 * m)
    # 3: the least-squares line through them (x = 0 .. m-1), one step on, in integers
    sx, sxx = m * (m - 1) // 2, (m - 1) * m * (2 * m - 1) // 6
    sy = sum(window)
    sxy = sum(x * y for x, y in enumerate(window))
    d = m * sxx - sx * sx
    num = sy * d + (m * sxy - sx * sy) * (m * m - sx)
    den = d * m
    return (2 * num + den) // (2 * den)


def residuals(qs: Sequence[int], kind: int, width: int = 1, season: int = 0) -> tuple[list[int], list[int]]:
    """(signed residuals, the values the decoder will rebuild). With width > 1 the residual
    is in bins of ``width`` steps around the prediction (SZ-style error-bounded
    quantisation): every rebuilt value is within width // 2 steps of the one given."""
    out: list[int] = []
    rebuilt: list[int] = []
    for i, q in enumerate(qs):
        pred = predict(kind, rebuilt, i, season)
        b = (q - pred + width // 2) // width if width > 1 else q - pred
        rebuilt.append(pred + width * b)
        out.append(b)
    return out, rebuilt


def values_from(
    residuals: Sequence[int], kind: int, width: int = 1, season: int = 0, zigzag: bool = False
) -> list[int]:
    """The values the decoder rebuilds from a predictor's residuals (zigzag-coded when
    ``zigzag``, as Simple-8b and Rice carry them)."""
    if zigzag:
        residuals = [unzigzag(z) for z in residuals]
    out: list[int] = []
    for i, r in enumerate(residuals):
        out.append(predict(kind, out, i, season) + width * r)
    return out


def season_for(period_ms: int, n: int) -> int:
    """The seasonal predictor's period in samples for a batch of ``n`` on a ``period_ms``
    schedule: one day when it is a whole number of periods and the batch holds more than
    two days; else 0 (not tried)."""
    if period_ms > 1 and DAY_MS % period_ms == 0 and n > 2 * (DAY_MS // period_ms):
        return DAY_MS // period_ms
    return 0


def bin_width_for(bound: float, resolution: float) -> int:
    """The widest bin (in resolution steps) that keeps every value within ``bound``: odd,
    as a bin of W steps rebuilds within floor(W / 2) of them on one side and
    W - 1 - floor(W / 2) on the other, so an even width wastes a step."""
    return 2 * math.floor(bound / resolution + 1e-9) + 1
