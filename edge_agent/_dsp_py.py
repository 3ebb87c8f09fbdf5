"""Pure-Python twin of the compiled signal core (``ext/_dsp.pyx``).

Same API, same stages, same IEEE operations in the same order, so the two agree
bit for bit; this module is the oracle in the tests and the fallback where no
compiler was available. See the compiled module's docstring for the stages and
their error bounds.
"""

from __future__ import annotations

import math
from bisect import bisect_left, insort_right
from collections.abc import Sequence

MAX_MEDIAN_WINDOW = 255


def _check_stage(kind: str, param: float) -> None:
    if kind == "median":
        if int(param) != param or not 1 <= param <= MAX_MEDIAN_WINDOW:
            raise ValueError(f"median window must be an integer in 1..{MAX_MEDIAN_WINDOW}, got {param!r}")
    elif kind == "ema":
        if not 0.0 < param <= 1.0:
            raise ValueError(f"ema alpha must be in (0, 1], got {param!r}")
    elif kind == "deadband":
        if not param >= 0.0:
            raise ValueError(f"deadband width must be >= 0, got {param!r}")
    else:
        raise ValueError(f"unknown stage {kind!r} (expected median, ema or deadband)")


class _Median:
    __slots__ = ("window", "ring", "sorted", "head")

    def __init__(self, window: int) -> None:
        self.window = window
        self.ring: list[float] = []
        self.sorted: list[float] = []
        self.head = 0

    def step(self, x: float) -> float:
        srt = self.sorted
        if len(srt) == self.window:
            old = self.ring[self.head]
            del srt[bisect_left(srt, old)]
            self.ring[self.head] = x
        else:
            self.ring.append(x)
        insort_right(srt, x)
        self.head = (self.head + 1) % self.window
        n = len(srt)
        if n & 1:
            return srt[n >> 1]
        return (srt[(n >> 1) - 1] + srt[n >> 1]) / 2.0


class _Ema:
    __slots__ = ("alpha", "last")

    def __init__(self, alpha: float) -> None:
        self.alpha = alpha
        self.last: float | None = None

    def step(self, x: float) -> float:
        if self.last is None:
            self.last = x
        else:
            self.last = self.last + self.alpha * (x - self.last)
        return self.last


class _Deadband:
    __slots__ = ("width", "last")

    def __init__(self, width: float) -> None:
        self.width = width
        self.last: float | None = None

    def step(self, x: float) -> float | None:
        if self.last is not None and abs(x - self.last) <= self.width:
            return None
        self.last = x
        return x


_STAGES = {"median": lambda p: _Median(int(p)), "ema": _Ema, "deadband": _Deadband}


class Chain:
    """A configured chain of stages, e.g. ``Chain([("median", 5), ("ema", 0.3)])``."""

    def __init__(self, spec: Sequence[Sequence]) -> None:
        spec = tuple(tuple(stage) for stage in spec)
        for kind, param in spec:
            _check_stage(kind, param)
        self.spec = spec
        self.error_bound = float(sum(p for k, p in spec if k == "deadband"))
        self._stages = [_STAGES[k](float(p)) for k, p in spec]

    def push(self, x: float) -> float | None:
        """Run one sample through the chain: the value that comes out, or None."""
        x = float(x)
        if math.isnan(x):
            return None
        y: float | None = x
        for stage in self._stages:
            y = stage.step(y)
            if y is None:
                return None
        return y

    def run(self, xs, out_values, out_index) -> int:
        """Run a batch; write kept values and their input indices; return how many."""
        n = len(xs)
        if len(out_values) < n or len(out_index) < n:
            raise ValueError("output buffers are shorter than the input")
        k = 0
        for i in range(n):
            y = self.push(xs[i])
            if y is not None:
                out_values[k] = y
                out_index[k] = i
                k += 1
        return k

    def reset(self) -> None:
        """Forget all filter state, as if the chain were new."""
        self._stages = [_STAGES[k](float(p)) for k, p in self.spec]
