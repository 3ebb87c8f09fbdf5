"""Pure-Python twin of the compiled signal core's chain (``ext/chain.pxi`` and the parts it
uses: ``stages.pxi``, ``windows.pxi``).

Same API, same stages, same IEEE operations in the same order, so the two agree
bit for bit; this module is the oracle in the tests and the fallback where no
compiler was available. The stages' kinds and limits are in ``edge_agent.dsp.stages``;
what each stage does and its error bound is described in ``edge_agent.dsp``.
"""

from __future__ import annotations

import math
from bisect import bisect_left, insort_right
from collections.abc import Sequence

from edge_agent.dsp.stages import LOSSY, MAD_SCALE, check_spec


def _median_sorted(srt: list[float]) -> float:
    n = len(srt)
    if n & 1:
        return srt[n >> 1]
    return (srt[(n >> 1) - 1] + srt[n >> 1]) / 2.0


class _Window:
    """Last ``w`` values in arrival order and sorted."""

    __slots__ = ("head", "ring", "srt", "w")

    def __init__(self, w: int) -> None:
        self.w = w
        self.ring: list[float] = []
        self.srt: list[float] = []
        self.head = 0

    def add(self, x: float) -> None:
        if len(self.ring) == self.w:
            old = self.ring[self.head]
            del self.srt[bisect_left(self.srt, old)]
            self.ring[self.head] = x
        else:
            self.ring.append(x)
        insort_right(self.srt, x)
        self.head = (self.head + 1) % self.w

    def state(self) -> list:
        return [self.head, *self.ring]

    def load(self, st: list) -> None:
        self.head = int(st[0]) if st else 0  # [] as from a fresh window: empty
        self.ring = [float(v) + 0.0 for v in st[1:]]  # no -0.0 in a window (see _Median)
        self.srt = sorted(self.ring)


class _Stage:
    """step(t, x) -> (t, y) or None; flush() -> (t, y) or None; state()/load()."""

    def flush(self):
        return None

    def state(self) -> list:
        return []

    def load(self, st: list) -> None:
        pass


class _Calibrate(_Stage):
    def __init__(self, *c):
        self.c = c

    def step(self, t, x):
        y = 0.0
        for c in reversed(self.c):  # Horner
            y = y * x + c
        return t, y


class _Range(_Stage):
    def __init__(self, low, high, clamp):
        self.low, self.high, self.clamp = low, high, clamp

    def step(self, t, x):
        if x < self.low:
            return (t, self.low) if self.clamp else None
        if x > self.high:
            return (t, self.high) if self.clamp else None
        return t, x


class _Median(_Stage):
    def __init__(self, w):
        self.win = _Window(int(w))

    def step(self, t, x):
        if not math.isfinite(x):
            return None  # an overflow upstream (calibrate): kept out of the window, like a NaN read
        x += 0.0  # -0.0 becomes 0.0: equal values in a window are the same bits
        self.win.add(x)
        return t, _median_sorted(self.win.srt)

    def state(self):
        return self.win.state()

    def load(self, st):
        self.win.load(st)


class _Hampel(_Stage):
    def __init__(self, w, k):
        self.win, self.k = _Window(int(w)), k

    def step(self, t, x):
        if not math.isfinite(x):
            return None  # as _Median
        x += 0.0
        self.win.add(x)
        m = _median_sorted(self.win.srt)
        mad = _median_sorted(sorted(abs(v - m) for v in self.win.ring))
        if abs(x - m) > self.k * MAD_SCALE * mad:
            return t, m
        return t, x

    def state(self):
        return self.win.state()

    def load(self, st):
        self.win.load(st)


class _Mean(_Stage):
    def __init__(self, w):
        self.w, self.ring, self.head, self.sum = int(w), [], 0, 0.0

    def step(self, t, x):
        if len(self.ring) == self.w:
            self.sum = self.sum - self.ring[self.head]
            self.ring[self.head] = x
        else:
            self.ring.append(x)
        self.sum = self.sum + x
        self.head = (self.head + 1) % self.w
        return t, self.sum / len(self.ring)

    def state(self):
        return [self.head, self.sum, *self.ring]

    def load(self, st):
        self.head, self.sum, self.ring = int(st[0]), float(st[1]), [float(v) for v in st[2:]]


class _Ema(_Stage):
    def __init__(self, alpha):
        self.alpha, self.beta, self.y = alpha, 1.0 - alpha, None

    def step(self, t, x):
        self.y = x if self.y is None else self.beta * self.y + self.alpha * x
        return t, self.y

    def state(self):
        return [] if self.y is None else [self.y]

    def load(self, st):
        self.y = float(st[0]) if st else None


class _Kalman(_Stage):
    """1-D random-walk Kalman filter: process noise q, measurement noise r (variances)."""

    def __init__(self, q, r):
        self.q, self.r, self.x, self.p = q, r, None, 0.0

    def step(self, t, z):
        if self.x is None:
            self.x, self.p = z, self.r
            return t, z
        p = self.p + self.q
        k = p / (p + self.r)
        self.x = self.x + k * (z - self.x)
        self.p = (1.0 - k) * p
        return t, self.x

    def state(self):
        return [] if self.x is None else [self.x, self.p]

    def load(self, st):
        self.x, self.p = (float(st[0]), float(st[1])) if st else (None, 0.0)


class _Throttle(_Stage):
    def __init__(self, interval):
        self.interval, self.last = interval, None

    def step(self, t, x):
        if self.last is not None and t - self.last < self.interval:
            return None
        self.last = t
        return t, x

    def state(self):
        return [] if self.last is None else [self.last]

    def load(self, st):
        self.last = float(st[0]) if st else None


class _Deadband(_Stage):
    """Hold reconstruction within ``width`` (or ``width * |held|`` when relative)."""

    def __init__(self, width, relative, max_interval):
        self.width, self.relative, self.max_interval = width, relative, max_interval
        self.held = None  # (t, y) of the last value passed on

    def step(self, t, x):
        h = self.held
        if h is not None:
            limit = self.width * abs(h[1]) if self.relative else self.width
            if abs(x - h[1]) <= limit and not (self.max_interval > 0 and t - h[0] >= self.max_interval):
                return None
        self.held = (t, x)
        return t, x

    def flush(self):
        # Close the batch: the next one starts with its own first sample, so it decodes alone.
        self.held = None
        return None

    def state(self):
        return [] if self.held is None else list(self.held)

    def load(self, st):
        self.held = (float(st[0]), float(st[1])) if st else None


class _Swing(_Stage):
    """Swinging door with a strict bound: kept points may sit up to ``eps`` off the samples,
    chosen on a line that keeps every sample in between within ``eps``."""

    def __init__(self, eps, max_interval):
        self.eps, self.max_interval = eps, max_interval
        self.a: tuple[float, float] | None = None  # archived (kept) point (t, y)
        self.p: tuple[float, float] | None = None  # last sample since the archive (t, x)
        self.lo = -math.inf
        self.hi = math.inf

    def _close(self):
        """The point on the feasible line at the last sample: where the segment ends."""
        assert self.a is not None and self.p is not None  # a segment is open
        at, ay = self.a
        pt, px = self.p
        s = (self.lo + self.hi) / 2.0
        if s > self.hi or s < self.lo or math.isnan(s):  # an unbounded side: stay on the sample
            return pt, px
        y = ay + s * (pt - at)
        if abs(y - px) > self.eps:
            return pt, px
        return pt, y

    def step(self, t, x):
        if self.a is None:
            self.a, self.p, self.lo, self.hi = (t, x), None, -math.inf, math.inf
            return t, x
        at, ay = self.a
        dt = t - at
        if dt <= 0:
            return None  # a sample not after the kept point adds nothing
        up = (x + self.eps - ay) / dt
        dn = (x - self.eps - ay) / dt
        hi = min(self.hi, up)
        lo = max(self.lo, dn)
        too_long = self.max_interval > 0 and dt > self.max_interval
        if (lo > hi or too_long) and self.p is not None:
            out = self._close()
            self.a, self.p = out, None
            self.lo, self.hi = -math.inf, math.inf
            at, ay = out
            dt = t - at
            self.hi = (x + self.eps - ay) / dt
            self.lo = (x - self.eps - ay) / dt
            self.p = (t, x)
            return out
        self.lo, self.hi, self.p = lo, hi, (t, x)
        return None

    def flush(self):
        out = self._close() if self.a is not None and self.p is not None else None
        self.a, self.p, self.lo, self.hi = None, None, -math.inf, math.inf
        return out

    def state(self):
        if self.a is None:
            return []
        return list(self.a) + [self.lo, self.hi] + (list(self.p) if self.p else [])

    def load(self, st):
        if not st:
            self.a, self.p, self.lo, self.hi = None, None, -math.inf, math.inf
            return
        self.a, self.lo, self.hi = (float(st[0]), float(st[1])), float(st[2]), float(st[3])
        self.p = (float(st[4]), float(st[5])) if len(st) == 6 else None


_STAGES = {
    "calibrate": _Calibrate,
    "range": _Range,
    "median": _Median,
    "hampel": _Hampel,
    "mean": _Mean,
    "ema": _Ema,
    "kalman": _Kalman,
    "throttle": _Throttle,
    "deadband": _Deadband,
    "swing": _Swing,
}


class Chain:
    """A configured chain of stages, e.g. ``Chain([("median", 5), ("swing", 0.05, 60)])``."""

    def __init__(self, spec: Sequence[Sequence]) -> None:
        self.spec = check_spec(spec)
        last = self.spec[-1] if self.spec else ("",)
        lossy = last[0] in LOSSY
        relative = lossy and last[0] == "deadband" and last[2] == 1.0
        #: largest |sample - reconstruction| in the stage's units (0 when lossless)
        self.error_bound = float(last[1]) if lossy and not relative else 0.0
        #: for a relative deadband: the bound as a fraction of the held value
        self.relative_bound = float(last[1]) if relative else 0.0
        self._stages = [_STAGES[k](*p) for k, *p in self.spec]

    def _from(self, i: int, t: float, x: float):
        for stage in self._stages[i:]:
            r = stage.step(t, x)
            if r is None:
                return None
            t, x = r
        return t, x

    def push(self, t: float, x: float):
        """One sample (time in s, value) through the chain: the point that comes out, or None.
        A value that is not a finite number (NaN, an infinity: no reading) is dropped."""
        x = float(x)
        if not math.isfinite(x):
            return None
        return self._from(0, float(t), x)

    def flush(self):
        """Close open segments (at a seal): the point that completes this batch, or None."""
        for i, stage in enumerate(self._stages):
            r = stage.flush()
            if r is not None:
                return self._from(i + 1, *r)
        return None

    def run(self, ts, xs, out_t, out_y) -> int:
        """Run a batch; write the points that come out; return how many."""
        n = len(xs)
        if len(ts) != n:
            raise ValueError("times and values differ in length")
        if len(out_t) < n or len(out_y) < n:
            raise ValueError("output buffers are shorter than the input")
        k = 0
        for i in range(n):
            r = self.push(ts[i], xs[i])
            if r is not None:
                out_t[k], out_y[k] = r
                k += 1
        return k

    def get_state(self) -> list[list[float]]:
        """The filter state, per stage, as plain numbers (the same for both implementations)."""
        return [[float(v) for v in s.state()] for s in self._stages]

    def set_state(self, state: Sequence[Sequence[float]]) -> None:
        if len(state) != len(self._stages):
            raise ValueError(f"state has {len(state)} stages, the chain {len(self._stages)}")
        for i, (s, st) in enumerate(zip(self._stages, state)):
            if isinstance(s, (_Median, _Hampel)) and not all(math.isfinite(float(v)) for v in list(st)[1:]):
                raise ValueError(f"stage {i}: window values must be finite")
            s.load(list(st))

    def reset(self) -> None:
        """Forget all filter state, as if the chain were new."""
        self._stages = [_STAGES[k](*p) for k, *p in self.spec]
