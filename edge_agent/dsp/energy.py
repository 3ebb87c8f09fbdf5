"""Energy per period from power samples, and its carbon (CO2e). Pure formulas, stdlib only.

The energy between two samples is the trapezoid ``(p0 + p1) / 2 * dt``: exact for power
that moves linearly between them. Two samples farther apart than ``max_gap`` are a gap:
nothing is integrated across it (no guess at what the load did), the gap is counted and its
time is reported as not covered, so a period's energy is a lower bound whose coverage is
known. A segment that straddles a period's end is split there, the power at the end
interpolated on the same line.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Period:
    """One closed period: its end (s, the samples' clock), energy (Wh), CO2e (g), the
    seconds of it that no pair of samples covered, and the gaps that began in it."""

    end: float
    wh: float
    co2e_g: float
    uncovered: float
    gaps: int


def trapezoid_wh(samples: list[tuple[float, float]], max_gap: float) -> tuple[float, float, int]:
    """(Wh, seconds covered, gaps) of time-ordered (s, W) samples."""
    wh, covered, gaps = 0.0, 0.0, 0
    for (t0, p0), (t1, p1) in itertools.pairwise(samples):
        dt = t1 - t0
        if dt > max_gap:
            gaps += 1
        elif dt > 0:
            wh += (p0 + p1) / 2.0 * dt / 3600.0
            covered += dt
    return wh, covered, gaps


class EnergyPeriods:
    """Streams power samples into consecutive periods of ``period`` seconds (aligned on the
    samples' clock: ends at whole multiples of ``period``). ``push`` returns the periods
    the sample closed, in order; a period with no sample at all is still closed (energy 0,
    all of it uncovered), so a sensor that was down shows as a hole, never as no use."""

    def __init__(self, period: float, max_gap: float, grams_per_kwh: float = 0.0) -> None:
        if period <= 0 or max_gap <= 0:
            raise ValueError("period and max_gap must be positive")
        self.period = period
        self.max_gap = max_gap
        self.factor = grams_per_kwh
        self.last: tuple[float, float] | None = None
        self.end: float | None = None  # the open period's end
        self.wh = 0.0
        self.covered = 0.0
        self.gaps = 0
        self.total_gaps = 0

    def _close(self) -> Period:
        assert self.end is not None
        done = Period(
            self.end,
            self.wh,
            self.wh / 1000.0 * self.factor,
            max(0.0, self.period - self.covered),
            self.gaps,
        )
        self.end += self.period
        self.wh, self.covered, self.gaps = 0.0, 0.0, 0
        return done

    def _add(self, t0: float, p0: float, t1: float, p1: float) -> None:
        dt = t1 - t0
        self.wh += (p0 + p1) / 2.0 * dt / 3600.0
        self.covered += dt

    def push(self, t: float, watts: float) -> list[Period]:
        """One sample: time (s, increasing) and power (W). Returns the periods it closed."""
        if not math.isfinite(watts):
            return []
        if self.end is None:
            self.end = (math.floor(t / self.period) + 1) * self.period
        closed: list[Period] = []
        last, self.last = self.last, (t, watts)
        if last is not None and t <= last[0]:
            self.last = last
            return []
        bridged = last is not None and t - last[0] <= self.max_gap
        if last is not None and not bridged:
            self.gaps += 1
            self.total_gaps += 1
        t0, p0 = last if last is not None else (t, watts)
        while t >= self.end:
            if bridged:
                pe = p0 + (watts - p0) * (self.end - t0) / (t - t0)
                self._add(t0, p0, self.end, pe)
                t0, p0 = self.end, pe
            closed.append(self._close())
        if bridged:
            self._add(t0, p0, t, watts)
        return closed
