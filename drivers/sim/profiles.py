"""Simulated environments: what a simulated sensor "sees" at a given Unix time."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Wave:
    """``mean + amplitude * sin(2*pi*t/period)`` at Unix time t (s). Amplitude 0 is a constant."""

    mean: float
    amplitude: float = 0.0
    period: float = 3600.0

    def at(self, t: float) -> float:
        if self.amplitude == 0.0:
            return self.mean
        return self.mean + self.amplitude * math.sin(2.0 * math.pi * t / self.period)

    def max_slope(self) -> float:
        """Largest rate of change (units per second)."""
        return abs(self.amplitude) * 2.0 * math.pi / self.period
