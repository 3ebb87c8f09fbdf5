"""Rebuilding a channel's series from its points, as its reconstruction says, with the
bound the payload promises at each time (docs/backbone.md, "Rebuilding a channel").

A lossy stage keeps few points; the decoded channel says how they stand for the samples
they came from (ChannelData.reconstruction, version 4; versions 1-3 say "every"):

- ``hold``: a deadband. Each point holds until the next: at time t, the last point at or
  before t; None before the first. After the last point the value still holds: the
  channel covers its batch, and a time past the batch's end is the caller's to avoid.
- ``linear``: a swinging door. Between two points, the line through them; at a point's
  time, the point; None before the first and after the last.
- ``every``: every sample is a point (lossless at the resolution, or binned): the value
  at a point's exact time, None at any other time (there was no sample there).

Flagged samples (quality != 0) are the raw values as read, kept outside the filter chain:
they are never part of the reconstruction. Where two points share a time, the later one
counts (points are in the order the node kept them).

The bound at a time is ChannelData.max_error of the value there: the stated bound (times
|value| when relative) plus half the resolution; between two points of ``linear``, the
larger of the two ends'.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass

from edge_agent.wire.format import RECONSTRUCTIONS
from edge_agent.wire.model import ChannelData


@dataclass(frozen=True)
class Rebuilt:
    """A channel's value at one time: None where the reconstruction says nothing, and
    how far (in the channel's unit) a sample at that time may be from it."""

    t_ms: int
    value: float | None
    bound: float | None


def points(ch: ChannelData) -> tuple[list[int], list[float]]:
    """The channel's unflagged points (times in Unix ms, values), in time order."""
    flagged = {i for i, q in ch.flags if q}
    kept = sorted(
        ((t, v) for i, (t, v) in enumerate(zip(ch.times_ms, ch.values())) if i not in flagged),
        key=lambda p: p[0],  # stable: points at one time stay in the order they were kept
    )
    return [t for t, _ in kept], [v for _, v in kept]


def rebuild(ch: ChannelData, times_ms: Iterable[int], how: str | None = None) -> list[Rebuilt]:
    """The channel at each of ``times_ms`` (Unix ms), by its reconstruction or by ``how``
    (one of RECONSTRUCTIONS: for a version 1-3 payload whose node's chain the caller
    knows). ValueError for a reconstruction that is none of them."""
    how = ch.reconstruction if how is None else how
    if how not in RECONSTRUCTIONS:
        raise ValueError(f"reconstruction {how!r} is not one of {', '.join(RECONSTRUCTIONS)}")
    ts, vs = points(ch)
    out = []
    for t in times_ms:
        j = bisect_right(ts, t) - 1  # the last point at or before t
        value: float | None = None
        bound: float | None = None
        if j < 0:
            pass
        elif ts[j] == t or how == "hold":
            value = vs[j]
            bound = ch.max_error(value)
        elif how == "linear" and j + 1 < len(ts):
            a, b = vs[j], vs[j + 1]
            value = a + (b - a) * (t - ts[j]) / (ts[j + 1] - ts[j])
            bound = max(ch.max_error(a), ch.max_error(b))
        out.append(Rebuilt(t, value, bound))
    return out
