"""A private channel's open period: what stands in for its kept points (docs/privacy.md).

A channel of a stream at level ``aggregate`` or ``total`` (edge_agent/config/privacy.py)
keeps no samples: each filtered sample updates the open period's running figures (count,
sum, min, max, the seconds its pairs of samples cover, a rate's trapezoid integral, a
counter's increase, an amount's sum), held in memory only. When a sample falls past the
period's end, the period closes: its statistics become one point each, stamped with the
period's end, and the figures start again. Nothing of the open period is sealed, saved
with the filter states, or published; at a stop, a reload or a restart it is dropped.

A period is sent only when its samples cover at least MIN_COVERAGE of it (pairs of samples
no further apart than ``max_gap``): a period the node saw for one minute would say what the
load did in that minute. Periods are consecutive spans of the monotonic clock (whole
multiples of the period, as the derived energy stream's), not aligned to the wall clock.
"""

from __future__ import annotations

import math

from edge_agent import wire
from edge_agent.config.model import ChannelConfig, PrivacyConfig
from edge_agent.config.privacy import AMOUNT, COUNTER, RATE, channel_kind, sent

MIN_COVERAGE = 0.5  # of a period that its samples must cover for it to be sent


class PeriodStats:
    """One private channel: the open period's figures and the closed periods' points."""

    def __init__(self, cfg: ChannelConfig, privacy: PrivacyConfig, lag: float = 0.0) -> None:
        self.cfg = cfg
        self.period = privacy.period
        self.max_gap = privacy.max_gap
        self.lag = lag  # a derived point stands for the interval before it: counted half of it earlier
        self.kind = channel_kind(cfg.name, cfg.unit)
        steps = dict(privacy.rounding)
        # (statistic, name, unit, resolution)
        self.outputs = [
            (stat, name, unit, 1.0 if stat == "count" else steps.get(cfg.name, cfg.resolution))
            for stat, name, unit in sent(cfg, privacy.level)
        ]
        self.k: int | None = None  # the open period's index (its span: [k, k + 1) periods)
        self.last: tuple[float, float] | None = None
        self.ends_ms: list[int] = []  # the closed periods' ends (monotonic ms)
        self.values: dict[str, list[int]] = {stat: [] for stat, _, _, _ in self.outputs}
        self.closed = 0  # periods sent
        self.dropped = 0  # periods with samples that covered too little of them
        self._reset()

    def _reset(self) -> None:
        self.n, self.sum, self.lo, self.hi = 0, 0.0, math.inf, -math.inf
        self.covered, self.total = 0.0, 0.0

    def _segment(self, t0: float, y0: float, t1: float, y1: float) -> None:
        self.covered += t1 - t0
        if self.kind == RATE:
            self.total += (y0 + y1) / 2.0 * (t1 - t0) / 3600.0  # W over s: Wh

    def _close(self) -> None:
        assert self.k is not None
        if self.n and self.covered >= MIN_COVERAGE * self.period:
            figures = {
                "mean": self.sum / self.n,
                "min": self.lo,
                "max": self.hi,
                "count": float(self.n),
                "total": self.total,
            }
            self.ends_ms.append(round((self.k + 1) * self.period * 1000))
            for stat, _, _, resolution in self.outputs:
                self.values[stat].append(wire.quantise(figures[stat], resolution))
            self.closed += 1
        elif self.n:
            self.dropped += 1
        self._reset()

    def add(self, t: float, y: float) -> None:
        """One filtered sample: monotonic time (s) and value."""
        t -= self.lag
        last = self.last
        if not math.isfinite(y) or (last is not None and t <= last[0]):
            return
        k = math.floor(t / self.period)
        if self.k is None:
            self.k = k
        bridged = last is not None and t - last[0] <= self.max_gap
        t0, y0 = last if last is not None else (t, y)
        while k > self.k:
            if not bridged:
                self._close()
                self.k = k
                break
            end = (self.k + 1) * self.period
            ye = y0 + (y - y0) * (end - t0) / (t - t0)
            self._segment(t0, y0, end, ye)
            t0, y0 = end, ye
            self._close()
            self.k += 1
        if bridged:
            self._segment(t0, y0, t, y)
        self.n += 1
        self.sum += y
        self.lo, self.hi = min(self.lo, y), max(self.hi, y)
        if self.kind == COUNTER and last is not None:
            self.total += max(0.0, y - last[1])  # a counter that went back (a reset) adds nothing
        elif self.kind == AMOUNT:
            self.total += y
        self.last = (t, y)

    def take(self, wall_offset_ms: int) -> tuple[wire.ChannelData, ...]:
        """The closed periods as one channel per statistic, stamped ``end + wall_offset``."""
        if not self.ends_ms:
            return ()
        times = tuple(t + wall_offset_ms for t in self.ends_ms)
        out = tuple(
            wire.ChannelData(name, unit, resolution, times, tuple(self.values[stat]))
            for stat, name, unit, resolution in self.outputs
        )
        self.ends_ms = []
        self.values = {stat: [] for stat in self.values}
        return out

    def health(self) -> dict:
        return {"periods": self.closed, "dropped": self.dropped}
