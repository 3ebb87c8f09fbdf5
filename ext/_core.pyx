# cython: language_level=3
"""Compiled signal core: streaming stages over (time, value) samples, chained per channel.

The pure-Python twin in ``edge_agent/_dsp_py.py`` has the same API and gives the
same results bit for bit (same IEEE operations in the same order); it is the
oracle in the tests. A chain lives in one C array of stage states, so a whole
chain runs in compiled code with no return to Python between stages, and the
batch call releases the GIL. Stages and their bounds: see ``edge_agent/dsp.py``.
"""

cimport cython
from libc.math cimport INFINITY, fabs, isfinite, isnan, log2
from libc.stdint cimport int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free, malloc
from libc.string cimport memcpy, memmove, memset

from edge_agent.dsp.chain import LOSSY, MAD_SCALE, MAX_POLY, MAX_WINDOW, check_spec
from edge_agent.errors import WireFormatError

cdef enum:
    K_CALIBRATE = 1
    K_RANGE
    K_MEDIAN
    K_HAMPEL
    K_MEAN
    K_EMA
    K_KALMAN
    K_THROTTLE
    K_DEADBAND
    K_SWING

_KINDS = {"calibrate": K_CALIBRATE, "range": K_RANGE, "median": K_MEDIAN, "hampel": K_HAMPEL,
          "mean": K_MEAN, "ema": K_EMA, "kalman": K_KALMAN, "throttle": K_THROTTLE,
          "deadband": K_DEADBAND, "swing": K_SWING}

cdef double _MAD_SCALE = MAD_SCALE


cdef struct Stage:
    int kind
    int np                 # parameters given
    double p[8]            # parameters (coefficients for calibrate)
    # windows (median, hampel, mean)
    int window
    int count
    int head
    double* ring
    double* srt            # the window sorted (and a spare slot after it: see win_replace_small)
    double* srt2           # the other buffer win_replace_small builds into
    double* block          # srt's and srt2's allocation
    double sum
    # scalar state
    bint has            # has a value / an archive point
    double a_t, a_y     # ema/kalman value (a_y), throttle/deadband time (a_t) and value, swing archive
    double pk           # kalman variance
    bint has_p          # swing: a sample since the archive
    double p_t, p_x
    double lo, hi


cdef inline int lower_bound(const double* a, int lo, int hi, double x) noexcept nogil:
    """The first index in [lo, hi) whose value is not below x (hi when none is)."""
    cdef int mid
    while lo < hi:
        mid = (lo + hi) >> 1
        if a[mid] < x:
            lo = mid + 1
        else:
            hi = mid
    return lo


cdef inline int upper_bound(const double* a, int lo, int hi, double x) noexcept nogil:
    """The first index in [lo, hi) whose value is above x (hi when none is)."""
    cdef int mid
    while lo < hi:
        mid = (lo + hi) >> 1
        if x < a[mid]:
            hi = mid
        else:
            lo = mid + 1
    return lo


cdef enum:
    SMALL_WINDOW = 24     # windows up to this size are kept sorted branch-free


cdef inline void win_replace_small(Stage* s, double old, double x) noexcept nogil:
    """A full window of at most SMALL_WINDOW values: what the twin does, del
    srt[bisect_left(srt, old)] then insort_right(srt, x), without a branch on the data.
    Both positions are counts of comparisons; the new order
    is built into the other buffer by index arithmetic: slot j takes t_j below x's place q
    and t_(j-1) above it, t being the sorted values without old (t_k = srt[k + (k >= i)];
    srt[n], a spare slot, is read for slot q only, which x then takes)."""
    cdef int n = s.count, i = 0, q = 0, j, k
    cdef const double* a = s.srt
    cdef double* b = s.srt2
    for j in range(n):
        i += a[j] < old
        q += a[j] <= x
    q -= old <= x
    for j in range(n):
        k = j - (j > q)
        b[j] = a[k + (k >= i)]
    b[q] = x
    s.srt2 = s.srt
    s.srt = b


cdef inline void win_push_small(Stage* s, double x) noexcept nogil:
    """x into a full window of at most SMALL_WINDOW values, in place of the oldest."""
    win_replace_small(s, s.ring[s.head], x)
    s.ring[s.head] = x
    s.head = s.head + 1 if s.head + 1 < s.window else 0


cdef inline void win_add(Stage* s, double x) noexcept nogil:
    """Add x to the window, dropping the oldest value once it is full; srt stays sorted
    (windows hold finite values only: see stage_step). A full short window: win_push_small.
    Else the oldest value's slot in srt takes x, which then moves to its place, so only
    the values between the old and the new position move (a sample rarely moves far in a
    slowly changing signal). x goes after the values equal to it on its left and before
    those on its right, like the twin's remove-then-insert."""
    cdef int n = s.count
    cdef int i, j
    cdef double* srt = s.srt
    if n == s.window:
        if n <= SMALL_WINDOW:
            win_push_small(s, x)
            return
        i = lower_bound(srt, 0, n, s.ring[s.head])
        if i > 0 and srt[i - 1] > x:  # left: after the values <= x, the rest move up
            j = upper_bound(srt, 0, i, x)
            memmove(&srt[j + 1], &srt[j], (i - j) * sizeof(double))
            i = j
        elif i < n - 1 and srt[i + 1] < x:  # right: before the values >= x, those between move down
            j = lower_bound(srt, i + 1, n, x)
            memmove(&srt[i], &srt[i + 1], (j - 1 - i) * sizeof(double))
            i = j - 1
        srt[i] = x
    else:
        i = upper_bound(srt, 0, n, x)
        memmove(&srt[i + 1], &srt[i], (n - i) * sizeof(double))
        srt[i] = x
        s.count = n + 1
    s.ring[s.head] = x
    s.head += 1
    if s.head == s.window:
        s.head = 0


cdef inline double dmin(double a, double b) noexcept nogil:
    return a if a < b else b


cdef inline double dmax(double a, double b) noexcept nogil:
    return b if a < b else a


cdef inline double med3(double a, double b, double c) noexcept nogil:
    return dmax(dmin(a, b), dmin(dmax(a, b), c))


cdef inline double med5(double a, double b, double c, double d, double e) noexcept nogil:
    """Median of five: med3(e, max(min(a,b), min(c,d)), min(max(a,b), max(c,d)))."""
    return med3(e, dmax(dmin(a, b), dmin(c, d)), dmin(dmax(a, b), dmax(c, d)))


cdef inline double median_of(double* srt, int n) noexcept nogil:
    if n & 1:
        return srt[n >> 1]
    return (srt[(n >> 1) - 1] + srt[n >> 1]) / 2.0


cdef inline double mad_odd(const double* srt, int h, double m) noexcept nogil:
    """Median of |srt[i] - m| for an odd window of 2h + 1 around its median m = srt[h],
    with no search: below m the deviations L_i = |srt[h - i] - m| grow with i, above it
    R_j = |srt[h + j] - m| grow with j, and the (h + 1)-th smallest of {0} + L + R is the
    h-th smallest of L and R together, min over i of max(L_i, R_{h - i}) (a merge's
    k-th element; L_0 = R_0 = -inf). Branch-free: min/max only; O(h), for short windows."""
    cdef int i
    cdef double mad = dmin(fabs(srt[0] - m), fabs(srt[2 * h] - m))
    for i in range(1, h):
        mad = dmin(mad, dmax(fabs(srt[h - i] - m), fabs(srt[2 * h - i] - m)))
    return mad


cdef inline double mad_of_sorted(double* srt, int n, double m) noexcept nogil:
    """Median of |srt[i] - m| in O(log n): the K = n//2 + 1 values closest to m form a run
    of the sorted window, found by a binary search on its left end (where the run's left
    neighbour is farther from m than its right end); the K-th smallest deviation is the
    larger of the run's ends, and the one before it (even n) the larger of the other end
    and the largest end's inner neighbour. The same order statistics as sorting the
    deviations, each computed as fabs(srt[i] - m)."""
    cdef int k = (n >> 1) + 1, lo = 0, hi = n - k, mid, r
    cdef double dl, dr
    if n & 1 and n <= SMALL_WINDOW:
        return mad_odd(srt, n >> 1, m)
    while lo < hi:
        mid = (lo + hi) >> 1
        if m - srt[mid] > srt[mid + k] - m:
            lo = mid + 1
        else:
            hi = mid
    r = lo + k - 1
    dl = fabs(srt[lo] - m)
    dr = fabs(srt[r] - m)
    if n & 1:
        return dmax(dl, dr)
    if dr >= dl:
        return (dmax(dl, fabs(srt[r - 1] - m)) + dr) / 2.0
    return (dmax(dr, fabs(srt[lo + 1] - m)) + dl) / 2.0


cdef inline bint swing_close(Stage* s, double* ot, double* oy) noexcept nogil:
    cdef double sl = (s.lo + s.hi) / 2.0
    cdef double y
    if sl > s.hi or sl < s.lo or isnan(sl):
        ot[0] = s.p_t
        oy[0] = s.p_x
        return True
    y = s.a_y + sl * (s.p_t - s.a_t)
    if fabs(y - s.p_x) > s.p[0]:
        ot[0] = s.p_t
        oy[0] = s.p_x
        return True
    ot[0] = s.p_t
    oy[0] = y
    return True


cdef inline bint stage_step(Stage* s, double* t, double* x) noexcept nogil:
    """Run one sample through one stage in place; False when nothing comes out."""
    cdef int i, n
    cdef double y, m, mad, limit, dt, up, dn, lo, hi, pp, k, ct, cy
    cdef bint too_long
    if s.kind == K_CALIBRATE:
        y = 0.0
        i = s.np - 1
        while i >= 0:
            y = y * x[0] + s.p[i]
            i -= 1
        x[0] = y
        return True
    if s.kind == K_RANGE:
        if x[0] < s.p[0]:
            if s.p[2] == 0.0:
                return False
            x[0] = s.p[0]
        elif x[0] > s.p[1]:
            if s.p[2] == 0.0:
                return False
            x[0] = s.p[1]
        return True
    if s.kind == K_MEDIAN or s.kind == K_HAMPEL:
        if not isfinite(x[0]):
            return False  # an overflow upstream (calibrate): kept out of the window, like a NaN read
        # -0.0 becomes 0.0: equal values in a window are then the same bits, so which of
        # them is the median does not depend on the order they came in (see med5)
        x[0] = x[0] + 0.0
    if s.kind == K_MEDIAN:
        if s.count == s.window and (s.window == 5 or s.window == 3):
            # a full small window: the median straight from the ring by a min/max network
            # (branch-free; no sorted copy to keep), the same element as sorting would give
            s.ring[s.head] = x[0]
            s.head += 1
            if s.head == s.window:
                s.head = 0
            if s.window == 5:
                x[0] = med5(s.ring[0], s.ring[1], s.ring[2], s.ring[3], s.ring[4])
            else:
                x[0] = med3(s.ring[0], s.ring[1], s.ring[2])
            return True
        win_add(s, x[0])
        x[0] = median_of(s.srt, s.count)
        return True
    if s.kind == K_HAMPEL:
        win_add(s, x[0])
        n = s.count
        m = median_of(s.srt, n)
        mad = mad_of_sorted(s.srt, n, m)
        if fabs(x[0] - m) > s.p[1] * _MAD_SCALE * mad:
            x[0] = m
        return True
    if s.kind == K_MEAN:
        if s.count == s.window:
            s.sum = s.sum - s.ring[s.head]
        else:
            s.count += 1
        s.ring[s.head] = x[0]
        s.sum = s.sum + x[0]
        s.head += 1
        if s.head == s.window:
            s.head = 0
        x[0] = s.sum / s.count
        return True
    if s.kind == K_EMA:
        if s.has:
            s.a_y = (1.0 - s.p[0]) * s.a_y + s.p[0] * x[0]
        else:
            s.a_y = x[0]
            s.has = True
        x[0] = s.a_y
        return True
    if s.kind == K_KALMAN:
        if not s.has:
            s.a_y = x[0]
            s.pk = s.p[1]
            s.has = True
            return True
        pp = s.pk + s.p[0]
        k = pp / (pp + s.p[1])
        s.a_y = s.a_y + k * (x[0] - s.a_y)
        s.pk = (1.0 - k) * pp
        x[0] = s.a_y
        return True
    if s.kind == K_THROTTLE:
        if s.has and t[0] - s.a_t < s.p[0]:
            return False
        s.a_t = t[0]
        s.has = True
        return True
    if s.kind == K_DEADBAND:
        if s.has:
            limit = s.p[0] * fabs(s.a_y) if s.p[1] != 0.0 else s.p[0]
            if fabs(x[0] - s.a_y) <= limit and not (s.p[2] > 0 and t[0] - s.a_t >= s.p[2]):
                return False
        s.a_t = t[0]
        s.a_y = x[0]
        s.has = True
        return True
    # K_SWING
    if not s.has:
        s.a_t = t[0]
        s.a_y = x[0]
        s.has = True
        s.has_p = False
        s.lo = -INFINITY
        s.hi = INFINITY
        return True
    dt = t[0] - s.a_t
    if dt <= 0:
        return False
    up = (x[0] + s.p[0] - s.a_y) / dt
    dn = (x[0] - s.p[0] - s.a_y) / dt
    hi = s.hi if s.hi < up else up
    lo = s.lo if s.lo > dn else dn
    too_long = s.p[1] > 0 and dt > s.p[1]
    if (lo > hi or too_long) and s.has_p:
        swing_close(s, &ct, &cy)
        s.a_t = ct
        s.a_y = cy
        dt = t[0] - ct
        s.hi = (x[0] + s.p[0] - cy) / dt
        s.lo = (x[0] - s.p[0] - cy) / dt
        s.has_p = True
        s.p_t = t[0]
        s.p_x = x[0]
        t[0] = ct
        x[0] = cy
        return True
    s.lo = lo
    s.hi = hi
    s.has_p = True
    s.p_t = t[0]
    s.p_x = x[0]
    return False


cdef enum:
    RUN_BLOCK = 256


cdef inline bint all_finite(const double* x, Py_ssize_t m) noexcept nogil:
    """No NaN or infinity among x[0:m] (x - x is 0 for finite x, NaN otherwise); four sums,
    so the additions do not wait for each other."""
    cdef double a0 = 0.0, a1 = 0.0, a2 = 0.0, a3 = 0.0
    cdef Py_ssize_t j = 0
    while j + 4 <= m:
        a0 += x[j] - x[j]
        a1 += x[j + 1] - x[j + 1]
        a2 += x[j + 2] - x[j + 2]
        a3 += x[j + 3] - x[j + 3]
        j += 4
    while j < m:
        a0 += x[j] - x[j]
        j += 1
    return a0 + a1 + a2 + a3 == 0.0


cdef Py_ssize_t stage_block(Stage* s, double* t, double* x, Py_ssize_t m) noexcept nogil:
    """One stage over m samples in place; returns how many come out (first ones kept)."""
    cdef Py_ssize_t j, w = 0, first = 0
    cdef double y, a, b, tt, xx, k3
    cdef double* ring
    cdef int h
    if s.kind == K_EMA:
        if m == 0:
            return 0
        if not s.has:
            s.a_y = x[0]
            s.has = True
            first = 1
        a = s.p[0]
        b = 1.0 - a
        y = s.a_y
        for j in range(first, m):
            y = b * y + a * x[j]  # one multiply and one add on the recurrence's path
            x[j] = y
        s.a_y = y
        return m
    if ((s.kind == K_HAMPEL or (s.kind == K_MEDIAN and s.window != 3)) and s.count == s.window
            and s.window <= SMALL_WINDOW and all_finite(x, m)):
        # stage_step on a full short window without its dispatch per sample (a median of 3
        # keeps no sorted copy: stage_step's network)
        if s.kind == K_MEDIAN and s.window == 5:  # the network, the ring position in a register
            ring = s.ring
            h = s.head
            for j in range(m):
                ring[h] = x[j] + 0.0  # as stage_step: no -0.0 in a window
                h = h + 1 if h < 4 else 0
                x[j] = med5(ring[0], ring[1], ring[2], ring[3], ring[4])
            s.head = h
        elif s.kind == K_MEDIAN:
            for j in range(m):
                win_push_small(s, x[j] + 0.0)
                x[j] = median_of(s.srt, s.window)
        else:
            h = s.window >> 1
            k3 = s.p[1] * _MAD_SCALE
            for j in range(m):
                xx = x[j] + 0.0
                win_push_small(s, xx)
                y = s.srt[h]
                x[j] = y if fabs(xx - y) > k3 * mad_odd(s.srt, h, y) else xx
        return m
    for j in range(m):
        tt = t[j]
        xx = x[j]
        if stage_step(s, &tt, &xx):
            t[w] = tt
            x[w] = xx
            w += 1
    return w


cdef class Chain:
    """A configured chain of stages, e.g. ``Chain([("median", 5), ("swing", 0.05, 60)])``."""

    cdef Stage* stages
    cdef int n
    cdef readonly tuple spec
    cdef readonly double error_bound
    cdef readonly double relative_bound

    def __cinit__(self, spec):
        self.stages = NULL
        self.n = 0

    def __init__(self, spec):
        cdef int i, j, w
        cdef Stage* s
        self.spec = check_spec(spec)
        self.n = len(self.spec)
        self.stages = <Stage*> calloc(max(self.n, 1), sizeof(Stage))
        if self.stages == NULL:
            raise MemoryError()
        for i, stage in enumerate(self.spec):
            kind = stage[0]
            params = stage[1:]
            s = &self.stages[i]
            s.kind = _KINDS[kind]
            s.np = len(params)
            for j, v in enumerate(params):
                s.p[j] = v
            if kind in ("median", "hampel", "mean"):
                w = int(params[0])
                s.window = w
                s.ring = <double*> malloc(w * sizeof(double))
                s.block = <double*> calloc(2 * w + 2, sizeof(double))
                if s.ring == NULL or s.block == NULL:
                    raise MemoryError()
                s.srt = s.block
                s.srt2 = s.block + w + 1
            s.lo = -INFINITY
            s.hi = INFINITY
        last = self.spec[len(self.spec) - 1] if self.spec else None  # (wraparound is off)
        lossy = last is not None and last[0] in LOSSY
        relative = lossy and last[0] == "deadband" and last[2] == 1.0
        self.error_bound = float(last[1]) if lossy and not relative else 0.0
        self.relative_bound = float(last[1]) if relative else 0.0

    def __dealloc__(self):
        cdef int i
        if self.stages != NULL:
            for i in range(self.n):
                free(self.stages[i].ring)
                free(self.stages[i].block)
            free(self.stages)

    cdef inline bint _from(self, int first, double* t, double* x) noexcept nogil:
        cdef int i
        for i in range(first, self.n):
            if not stage_step(&self.stages[i], t, x):
                return False
        return True

    def push(self, double t, double x):
        """One sample (time in s, value) through the chain: the point that comes out, or None.
        A value that is not a finite number (NaN, an infinity: no reading) is dropped."""
        if not isfinite(x):
            return None
        if self._from(0, &t, &x):
            return (t, x)
        return None

    def flush(self):
        """Close open segments (at a seal): the point that completes this batch, or None."""
        cdef int i
        cdef Stage* s
        cdef double t, y
        for i in range(self.n):
            s = &self.stages[i]
            if s.kind == K_DEADBAND:
                s.has = False
            elif s.kind == K_SWING:
                emit = s.has and s.has_p
                if emit:
                    swing_close(s, &t, &y)
                s.has = False
                s.has_p = False
                s.lo = -INFINITY
                s.hi = INFINITY
                if emit:
                    if self._from(i + 1, &t, &y):
                        return (t, y)
                    return None
        return None

    def run(self, const double[::1] ts, const double[::1] xs, double[::1] out_t, double[::1] out_y):
        """Run a batch; write the points that come out; return how many."""
        cdef Py_ssize_t i, k = 0, n = xs.shape[0]
        cdef double t, x
        if ts.shape[0] != n:
            raise ValueError("times and values differ in length")
        if out_t.shape[0] < n or out_y.shape[0] < n:
            raise ValueError("output buffers are shorter than the input")
        cdef Py_ssize_t start, end, m, j
        cdef int st
        with nogil:
            # Stage by stage over blocks that stay in L1: a stage's state lives in registers
            # for a whole block instead of going through memory between stages per sample.
            # Each stage sees the same sequence as sample by sample: the same results.
            start = 0
            while start < n:
                end = start + RUN_BLOCK if n - start > RUN_BLOCK else n
                m = 0
                for j in range(start, end):
                    x = xs[j]
                    if isfinite(x):
                        out_t[k + m] = ts[j]
                        out_y[k + m] = x
                        m += 1
                for st in range(self.n):
                    m = stage_block(&self.stages[st], &out_t[k], &out_y[k], m)
                k += m
                start = end
        return k

    def get_state(self):
        """The filter state, per stage, as plain numbers (the same for both implementations)."""
        cdef int i, j
        cdef Stage* s
        out = []
        for i in range(self.n):
            s = &self.stages[i]
            if s.kind in (K_MEDIAN, K_HAMPEL):
                out.append([float(s.head)] + [s.ring[j] for j in range(s.count)])
            elif s.kind == K_MEAN:
                out.append([float(s.head), s.sum] + [s.ring[j] for j in range(s.count)])
            elif s.kind == K_EMA:
                out.append([s.a_y] if s.has else [])
            elif s.kind == K_KALMAN:
                out.append([s.a_y, s.pk] if s.has else [])
            elif s.kind == K_THROTTLE:
                out.append([s.a_t] if s.has else [])
            elif s.kind == K_DEADBAND:
                out.append([s.a_t, s.a_y] if s.has else [])
            elif s.kind == K_SWING:
                out.append(([s.a_t, s.a_y, s.lo, s.hi] + ([s.p_t, s.p_x] if s.has_p else [])) if s.has else [])
            else:
                out.append([])
        return out

    def set_state(self, state):
        cdef int i, j
        cdef Stage* s
        if len(state) != self.n:
            raise ValueError(f"state has {len(state)} stages, the chain {self.n}")
        for i in range(self.n):
            s = &self.stages[i]
            st = [float(v) for v in state[i]]
            if s.kind in (K_MEDIAN, K_HAMPEL, K_MEAN):
                base = 2 if s.kind == K_MEAN else 1
                values = st[base:] if st else []
                if len(values) > s.window:
                    raise ValueError(f"stage {i}: {len(values)} values for a window of {s.window}")
                s.count = 0
                s.head = 0
                s.sum = 0.0
                if s.kind == K_MEAN:
                    for j, v in enumerate(values):
                        s.ring[j] = v
                    s.count = len(values)
                    s.sum = st[1] if st else 0.0
                else:
                    # rebuild ring and sorted order exactly as the twin's load() does
                    if not all(isfinite(v) for v in values):
                        raise ValueError(f"stage {i}: window values must be finite")
                    values = [v + 0.0 for v in values]  # no -0.0 in a window (see stage_step)
                    for j, v in enumerate(values):
                        s.ring[j] = v
                    s.count = len(values)
                    srt = sorted(values)
                    for j, v in enumerate(srt):
                        s.srt[j] = v
                s.head = int(st[0]) if st else 0
            elif s.kind == K_EMA:
                s.has = bool(st)
                s.a_y = st[0] if st else 0.0
            elif s.kind == K_KALMAN:
                s.has = bool(st)
                s.a_y, s.pk = (st[0], st[1]) if st else (0.0, 0.0)
            elif s.kind == K_THROTTLE:
                s.has = bool(st)
                s.a_t = st[0] if st else 0.0
            elif s.kind == K_DEADBAND:
                s.has = bool(st)
                s.a_t, s.a_y = (st[0], st[1]) if st else (0.0, 0.0)
            elif s.kind == K_SWING:
                s.has = bool(st)
                s.has_p = len(st) == 6
                if st:
                    s.a_t, s.a_y, s.lo, s.hi = st[0], st[1], st[2], st[3]
                else:
                    s.lo, s.hi = -INFINITY, INFINITY
                if s.has_p:
                    s.p_t, s.p_x = st[4], st[5]

    def reset(self):
        """Forget all filter state, as if the chain were new."""
        cdef int i
        cdef Stage* s
        for i in range(self.n):
            s = &self.stages[i]
            s.count = 0
            s.head = 0
            s.sum = 0.0
            s.has = False
            s.has_p = False
            s.lo = -INFINITY
            s.hi = INFINITY


# --- CRC-32C (Castagnoli), slicing-by-8 ------------------------------------------------------
# Same results as edge_agent/crc32c.py (its pure-Python twin); used for wire checksums.

cdef unsigned int _crc_table[8][256]
cdef bint _crc_ready = False
cdef unsigned int _CRC_POLY = 0x82F63B78u  # reflected Castagnoli polynomial


cdef void _crc_init() noexcept nogil:
    cdef unsigned int c, n, k
    for n in range(256):
        c = n
        for k in range(8):
            c = (c >> 1) ^ _CRC_POLY if c & 1 else c >> 1
        _crc_table[0][n] = c
    for n in range(256):
        c = _crc_table[0][n]
        for k in range(1, 8):
            c = _crc_table[0][c & 0xFF] ^ (c >> 8)
            _crc_table[k][n] = c


def crc32c(const unsigned char[::1] data, unsigned int crc=0):
    """CRC-32C of a bytes-like object, continuing from ``crc``."""
    global _crc_ready
    cdef Py_ssize_t i = 0, n = data.shape[0]
    cdef unsigned int c = crc ^ 0xFFFFFFFF
    cdef unsigned int lo, hi
    if not _crc_ready:
        _crc_init()
        _crc_ready = True
    with nogil:
        while n - i >= 8:
            lo = c ^ (data[i] | (<unsigned int> data[i + 1] << 8) | (<unsigned int> data[i + 2] << 16)
                      | (<unsigned int> data[i + 3] << 24))
            hi = data[i + 4] | (<unsigned int> data[i + 5] << 8) | (<unsigned int> data[i + 6] << 16) \
                | (<unsigned int> data[i + 7] << 24)
            c = (_crc_table[7][lo & 0xFF] ^ _crc_table[6][(lo >> 8) & 0xFF]
                 ^ _crc_table[5][(lo >> 16) & 0xFF] ^ _crc_table[4][lo >> 24]
                 ^ _crc_table[3][hi & 0xFF] ^ _crc_table[2][(hi >> 8) & 0xFF]
                 ^ _crc_table[1][(hi >> 16) & 0xFF] ^ _crc_table[0][hi >> 24])
            i += 8
        while i < n:
            c = _crc_table[0][(c ^ data[i]) & 0xFF] ^ (c >> 8)
            i += 1
    return c ^ 0xFFFFFFFF


cdef int64_t* _int64_array(values, Py_ssize_t n, int64_t low, int64_t high, str what,
                           exc=ValueError) except NULL:
    """A malloc'ed copy of n Python integers, each in [low, high) (else ``exc``); the caller
    frees it."""
    cdef int64_t* a = <int64_t*> malloc((n + 1) * sizeof(int64_t))
    cdef Py_ssize_t i
    if a == NULL:
        raise MemoryError()
    for i in range(n):
        v = values[i]
        if not low <= v < high:
            free(a)
            raise exc(f"value {v} does not fit {what}")
        a[i] = v
    return a


# ---- Adaptive binary range coding of residuals: the twin of edge_agent/entropy.py ----

cdef enum:
    RC_PROB_BITS = 11
    RC_P_MIN = 32
    RC_P_MAX = 2016
    RC_TOP = 16777216  # 1 << 24
    RC_LEN_BITS = 6
    RC_MANT_BITS = 6
    RC_MAX_BITS = 60
    RC_HALF = 16384  # 1024 << 4
    RC_MANT_SIZE = 3904  # (RC_MAX_BITS + 1) * 64

cdef uint8_t _RC_SHIFT[9]
_RC_SHIFT[:] = [2, 2, 3, 3, 4, 4, 4, 4, 5]


cdef struct RcModel:
    uint16_t lens[64]
    uint16_t mant[RC_MANT_SIZE]
    uint16_t signs[3]


cdef void _rc_model_init(RcModel* m) noexcept nogil:
    cdef int i
    for i in range(64):
        m.lens[i] = RC_HALF
    m.lens[1] = 2000 << 4
    m.lens[2] = 1950 << 4
    m.lens[3] = 1950 << 4
    for i in range(4, 8):
        m.lens[i] = 1700 << 4
    for i in range(RC_MANT_SIZE):
        m.mant[i] = RC_HALF
    for i in range(3):
        m.signs[i] = RC_HALF


cdef inline uint16_t _rc_update(uint16_t state, int bit) noexcept nogil:
    cdef int p = state >> 4
    cdef int count = state & 15
    cdef int shift = _RC_SHIFT[count]
    if bit:
        p -= p >> shift
        if p < RC_P_MIN:
            p = RC_P_MIN
    else:
        p += (2048 - p) >> shift
        if p > RC_P_MAX:
            p = RC_P_MAX
    if count < 8:
        count += 1
    return <uint16_t> ((p << 4) | count)


cdef struct RcEnc:
    uint64_t low
    uint32_t range
    uint32_t cache
    Py_ssize_t pending
    unsigned char* out
    Py_ssize_t pos


cdef inline void _rc_shift(RcEnc* e) noexcept nogil:
    cdef uint32_t carry
    cdef uint32_t b
    if (e.low >> 24) < 0xFF or (e.low >> 32) != 0:
        carry = <uint32_t> (e.low >> 32)
        b = e.cache
        while True:
            e.out[e.pos] = <unsigned char> ((b + carry) & 0xFF)
            e.pos += 1
            b = 0xFF
            e.pending -= 1
            if e.pending == 0:
                break
        e.cache = <uint32_t> ((e.low >> 24) & 0xFF)
    e.pending += 1
    e.low = (e.low & 0x00FFFFFFu) << 8


cdef inline void _rc_bit(RcEnc* e, uint16_t* probs, int i, int bit) noexcept nogil:
    cdef uint16_t state = probs[i]
    cdef uint32_t bound = (e.range >> RC_PROB_BITS) * (state >> 4)
    if bit:
        e.low += bound
        e.range -= bound
    else:
        e.range = bound
    probs[i] = _rc_update(state, bit)
    while e.range < RC_TOP:
        e.range <<= 8
        _rc_shift(e)


cdef inline void _rc_direct(RcEnc* e, uint64_t value, int nbits) noexcept nogil:
    cdef int k
    for k in range(nbits - 1, -1, -1):
        e.range >>= 1
        if (value >> k) & 1:
            e.low += e.range
        while e.range < RC_TOP:
            e.range <<= 8
            _rc_shift(e)


cdef inline int _bit_length(uint64_t m) noexcept nogil:
    return 0 if m == 0 else 64 - __builtin_clzll(m)


cdef extern from *:
    int __builtin_clzll(unsigned long long) nogil


cdef Py_ssize_t _rc_encode(const int64_t* rs, Py_ssize_t n, unsigned char* out, RcModel* model) noexcept nogil:
    cdef RcEnc e
    cdef Py_ssize_t j
    cdef int64_t r
    cdef uint64_t m, v, mask
    cdef int nbits, k, b, node, nb, adaptive, base, neg, sctx = 0, nbytes
    e.low = 0
    e.range = <uint32_t> 0xFFFFFFFFu
    e.cache = 0
    e.pending = 1
    e.out = out
    e.pos = 0
    _rc_model_init(model)
    for j in range(n):
        r = rs[j]
        m = <uint64_t> (-r) if r < 0 else <uint64_t> r
        nbits = _bit_length(m)
        node = 1
        for k in range(RC_LEN_BITS - 1, -1, -1):
            b = (nbits >> k) & 1
            _rc_bit(&e, model.lens, node, b)
            node = (node << 1) | b
        if nbits > 1:
            nb = nbits - 1
            adaptive = nb if nb < RC_MANT_BITS else RC_MANT_BITS
            base = nbits << RC_MANT_BITS
            node = 1
            for k in range(nb - 1, nb - 1 - adaptive, -1):
                b = <int> ((m >> k) & 1)
                _rc_bit(&e, model.mant, base + node, b)
                node = (node << 1) | b
            if nb > adaptive:
                _rc_direct(&e, m, nb - adaptive)
        if nbits:
            neg = 1 if r < 0 else 0
            _rc_bit(&e, model.signs, sctx, neg)
            sctx = 1 + neg
    for nbytes in range(1, 5):
        mask = (<uint64_t> 1 << (32 - 8 * nbytes)) - 1
        v = (e.low + mask) & ~mask
        if v < e.low + e.range:
            e.low = v
            break
    for k in range(5):
        _rc_shift(&e)
    return e.pos


cdef Py_ssize_t _rc_block(const int64_t* rs, Py_ssize_t n, unsigned char* out, RcModel* model) noexcept nogil:
    """The coded block of rs[0:n] at out (room for 17 n + 16 bytes): the coder's output
    without its first byte (always 0) and without trailing zero bytes (the decoder reads
    zeros past the end); its length."""
    cdef Py_ssize_t end = _rc_encode(rs, n, out, model)
    while end > 1 and out[end - 1] == 0:
        end -= 1
    if end <= 1:
        return 0
    memmove(out, out + 1, end - 1)
    return end - 1


def rc_encode(residuals):
    """The coded block of signed integer residuals (each |r| < 2**60); see edge_agent/entropy.py."""
    cdef Py_ssize_t n = len(residuals), end
    cdef int64_t* rs = _int64_array(residuals, n, 1 - (1 << 60), 1 << 60, "the range coder (|r| < 2**60)")
    cdef RcModel* model = <RcModel*> malloc(sizeof(RcModel))
    cdef unsigned char* out = <unsigned char*> malloc(n * 17 + 16)
    if model == NULL or out == NULL:
        free(rs)
        free(model)
        free(out)
        raise MemoryError()
    try:
        with nogil:
            end = _rc_block(rs, n, out, model)
        return out[:end]
    finally:
        free(rs)
        free(model)
        free(out)


cdef struct RcDec:
    uint32_t range
    uint32_t code
    const unsigned char* data
    Py_ssize_t size
    Py_ssize_t pos


cdef inline uint32_t _rc_next(RcDec* d) noexcept nogil:
    cdef Py_ssize_t pos = d.pos
    d.pos += 1
    return d.data[pos] if pos < d.size else 0


cdef inline int _rc_dbit(RcDec* d, uint16_t* probs, int i) noexcept nogil:
    cdef uint16_t state = probs[i]
    cdef uint32_t bound = (d.range >> RC_PROB_BITS) * (state >> 4)
    cdef int b
    if d.code < bound:
        d.range = bound
        b = 0
    else:
        d.code -= bound
        d.range -= bound
        b = 1
    probs[i] = _rc_update(state, b)
    while d.range < RC_TOP:
        d.range <<= 8
        d.code = (d.code << 8) | _rc_next(d)
    return b


cdef Py_ssize_t _rc_decode(RcDec* d, Py_ssize_t n, int64_t* out, RcModel* model) noexcept nogil:
    """Decodes n residuals; returns n, or the index of a residual longer than 60 bits."""
    cdef Py_ssize_t j
    cdef int k, node, nbits, nb, adaptive, base, neg, sctx = 0
    cdef uint64_t m
    _rc_model_init(model)
    for j in range(n):
        node = 1
        for k in range(RC_LEN_BITS):
            node = (node << 1) | _rc_dbit(d, model.lens, node)
        nbits = node - 64
        if nbits > RC_MAX_BITS:
            return j
        m = 1 if nbits else 0
        if nbits > 1:
            nb = nbits - 1
            adaptive = nb if nb < RC_MANT_BITS else RC_MANT_BITS
            base = nbits << RC_MANT_BITS
            node = 1
            for k in range(adaptive):
                node = (node << 1) | _rc_dbit(d, model.mant, base + node)
            m = <uint64_t> node
            for k in range(nb - adaptive):
                d.range >>= 1
                m <<= 1
                if d.code >= d.range:
                    d.code -= d.range
                    m |= 1
                while d.range < RC_TOP:
                    d.range <<= 8
                    d.code = (d.code << 8) | _rc_next(d)
        if nbits:
            neg = _rc_dbit(d, model.signs, sctx)
            sctx = 1 + neg
            out[j] = -<int64_t> m if neg else <int64_t> m
        else:
            out[j] = 0
    return n


def rc_decode(const unsigned char[::1] block, Py_ssize_t n, what="block"):
    """The ``n`` residuals of a coded block."""
    cdef RcDec d
    cdef Py_ssize_t got, k
    cdef int64_t* out = <int64_t*> malloc((n + 1) * sizeof(int64_t))
    cdef RcModel* model = <RcModel*> malloc(sizeof(RcModel))
    if out == NULL or model == NULL:
        free(out)
        free(model)
        raise MemoryError()
    try:
        d.range = <uint32_t> 0xFFFFFFFFu
        d.data = &block[0] if block.shape[0] else NULL
        d.size = block.shape[0]
        d.pos = 0
        d.code = 0
        for k in range(4):
            d.code = (d.code << 8) | _rc_next(&d)
        with nogil:
            got = _rc_decode(&d, n, out, model)
        if got < n:
            raise WireFormatError(f"{what}: a coded residual of more than {RC_MAX_BITS} bits")
        return [out[k] for k in range(n)]
    finally:
        free(out)
        free(model)


# ---- The wire format's predictors: the twin of edge_agent.wire._residuals ----

cdef enum:
    RES_LIMIT_BITS = 40  # values and bin widths below 2**40: every product below fits int64


@cython.cdivision(True)
cdef inline int64_t _floordiv(int64_t a, int64_t b) noexcept nogil:
    """Python's a // b for b > 0 (C's division truncates towards zero)."""
    cdef int64_t q = a // b
    if (a % b) != 0 and a < 0:
        q -= 1
    return q


cdef int64_t _predict(int kind, const int64_t* h, Py_ssize_t i, Py_ssize_t season) noexcept nogil:
    cdef Py_ssize_t lo, m, x
    cdef int64_t s = 0, sxy = 0, sx, sxx, d, num, den
    if i == 0 or kind == 4:
        return 0
    if kind == 5:
        return h[i - 1] + h[i - season] - h[i - season - 1] if i > season else h[i - 1]
    if kind == 0 or (kind == 1 and i == 1):
        return h[i - 1]
    if kind == 1:
        return 2 * h[i - 1] - h[i - 2]
    lo = i - 8 if i > 8 else 0
    m = i - lo
    for x in range(m):
        s += h[lo + x]
        sxy += x * h[lo + x]
    if kind == 2 or m < 2:
        return _floordiv(2 * s + m, 2 * m)
    sx = m * (m - 1) // 2
    sxx = (m - 1) * m * (2 * m - 1) // 6
    d = m * sxx - sx * sx
    num = s * d + (m * sxy - sx * s) * (m * m - sx)
    den = d * m
    return _floordiv(2 * num + den, 2 * den)


cdef void _residuals_into(const int64_t* q, Py_ssize_t n, int kind, int64_t width, Py_ssize_t season,
                          int64_t* reb, int64_t* res) noexcept nogil:
    """The residuals of q[0:n] under a predictor (res) and the values the decoder rebuilds (reb)."""
    cdef Py_ssize_t i
    cdef int64_t pred, v, b
    for i in range(n):
        pred = _predict(kind, reb, i, season)
        v = q[i] - pred
        b = _floordiv(v + width // 2, width) if width > 1 else v
        reb[i] = pred + width * b
        res[i] = b


def residuals(qs, int kind, int64_t width=1, Py_ssize_t season=0):
    """(signed residuals, the values the decoder will rebuild), as edge_agent.wire._residuals
    computes them, for values and bin widths below 2**40 (OverflowError beyond: the caller
    then uses the twin, whose integers have no bound)."""
    cdef Py_ssize_t n = len(qs), i
    cdef int64_t limit = (<int64_t> 1) << RES_LIMIT_BITS
    if not 0 < width < limit or (kind == 5 and season < 1):
        raise OverflowError("bin width beyond the compiled predictors' range")
    cdef int64_t* q = _int64_array(qs, n, 1 - limit, limit, "the compiled predictors (|q| < 2**40)",
                                   OverflowError)
    cdef int64_t* reb = <int64_t*> malloc((n + 1) * sizeof(int64_t))
    cdef int64_t* res = <int64_t*> malloc((n + 1) * sizeof(int64_t))
    if reb == NULL or res == NULL:
        free(q)
        free(reb)
        free(res)
        raise MemoryError()
    try:
        with nogil:
            _residuals_into(q, n, kind, width, season, reb, res)
        return [res[i] for i in range(n)], [reb[i] for i in range(n)]
    finally:
        free(q)
        free(reb)
        free(res)


# ---- Simple-8b and Rice packing: the twins of edge_agent.wire.pack_simple8b / pack_rice ----

cdef int _S8B_COUNT[16]
cdef int _S8B_BITS[16]
_S8B_COUNT[:] = [240, 120, 60, 30, 20, 15, 12, 10, 8, 7, 6, 5, 4, 3, 2, 1]
_S8B_BITS[:] = [0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 15, 20, 30, 60]


cdef Py_ssize_t _s8b_write(const int64_t* a, Py_ssize_t n, unsigned char* out) noexcept nogil:
    """Simple-8b of a[0:n] into out (room for 8 * n + 16 bytes): its length, or -1 for a
    negative value, -2 for one of 2**60 or more."""
    cdef Py_ssize_t i = 0, z, end, k, runs, last_word = -1, pos = 0
    cdef int sel, bits
    cdef uint64_t word, limit
    for z in range(n):
        if a[z] < 0:
            return -1
    while i < n:
        if a[i] == 0:
            z = i
            while z < n and z - i < 16 * 240 and a[z] == 0:
                z += 1
            z -= i
            if z >= 240 or i + z == n:
                runs = (16 if (z + 239) // 240 > 16 else (z + 239) // 240) if i + z == n else z // 240
                out[pos] = <unsigned char> ((runs - 1) << 4)
                pos += 1
                i = n if i + runs * 240 > n else i + runs * 240
                last_word = -1
                continue
            if z >= 120:
                out[pos] = 1
                pos += 1
                i += 120
                last_word = -1
                continue
        # the first selector whose width all its values fit: each try stops at the first
        # value too wide, and starts no narrower than the first value needs
        sel = 16
        k = 2
        while k < 16 and <uint64_t> a[i] >= (<uint64_t> 1 << _S8B_BITS[k]):
            k += 1
        while k < 16:
            end = i + _S8B_COUNT[k] if i + _S8B_COUNT[k] < n else n
            limit = <uint64_t> 1 << _S8B_BITS[k]
            z = i + 1
            while z < end and <uint64_t> a[z] < limit:
                z += 1
            if z == end:
                sel = k
                break
            k += 1
        if sel == 16:
            return -2
        bits = _S8B_BITS[sel]
        end = i + _S8B_COUNT[sel] if i + _S8B_COUNT[sel] < n else n
        word = <uint64_t> sel
        k = 4
        for z in range(i, end):
            word |= (<uint64_t> a[z]) << k
            k += bits
        last_word = pos
        for k in range(8):
            out[pos] = <unsigned char> ((word >> (8 * k)) & 0xFF)
            pos += 1
        i = end
    if last_word >= 0:
        while pos > last_word and out[pos - 1] == 0:
            pos -= 1
    return pos


def pack_simple8b(values):
    """Non-negative integers below 2**60, packed; the decoder needs their number."""
    cdef Py_ssize_t n = len(values), pos
    cdef int64_t* a = _int64_array(values, n, -(1 << 62), 1 << 60, "Simple-8b (at most 2**60 - 1)")
    cdef unsigned char* out = <unsigned char*> malloc(8 * n + 16)
    if out == NULL:
        free(a)
        raise MemoryError()
    try:
        pos = _s8b_write(a, n, out)
        if pos == -1:
            raise ValueError("Simple-8b holds non-negative integers")
        if pos == -2:
            raise ValueError("a value does not fit Simple-8b (at most 2**60 - 1)")
        return out[:pos] if pos else b""
    finally:
        free(a)
        free(out)


cdef Py_ssize_t _rice_plan(const int64_t* a, Py_ssize_t n, int part_size, int* ks) noexcept nogil:
    """Each partition's Rice parameter into ks; the length of the whole string in bits."""
    cdef Py_ssize_t start, end, i, total = 0
    cdef int k, k0, kk, best_k, j = 0
    cdef int64_t s, cost, best
    cdef double mean
    start = 0
    while start < n:
        end = start + part_size if start + part_size < n else n
        s = 0
        for i in range(start, end):
            s += a[i]
        mean = <double> s / <double> (end - start)
        k0 = <int> log2(mean + 1.0) - 1
        if k0 < 0:
            k0 = 0
        best_k = -1
        best = 0
        kk = k0 + 4 if k0 + 4 < 61 else 61
        for k in range(k0, kk):
            cost = 0
            for i in range(start, end):
                cost += a[i] >> k
            cost += (end - start) * (k + 1)
            if best_k < 0 or cost < best:
                best, best_k = cost, k
        ks[j] = best_k
        j += 1
        total += 6 + best
        start = end
    return total


cdef void _rice_write(const int64_t* a, Py_ssize_t n, int part_size, const int* ks,
                      unsigned char* out) noexcept nogil:
    """The Rice string that _rice_plan planned, into out (zeroed, (bits + 7) // 8 bytes)."""
    cdef Py_ssize_t start, end, i, bitpos = 0
    cdef int k, kk, j = 0
    cdef uint64_t q
    start = 0
    while start < n:
        end = start + part_size if start + part_size < n else n
        k = ks[j]
        j += 1
        for kk in range(5, -1, -1):
            if (k >> kk) & 1:
                out[bitpos >> 3] |= 0x80 >> (bitpos & 7)
            bitpos += 1
        for i in range(start, end):
            q = <uint64_t> (a[i] >> k)
            while q:
                out[bitpos >> 3] |= 0x80 >> (bitpos & 7)
                bitpos += 1
                q -= 1
            bitpos += 1  # the zero that ends the unary part
            for kk in range(k - 1, -1, -1):
                if (a[i] >> kk) & 1:
                    out[bitpos >> 3] |= 0x80 >> (bitpos & 7)
                bitpos += 1
        start = end


def pack_rice(values, int part_size=64):
    """Rice codes as edge_agent.wire.pack_rice writes them (values below 2**24)."""
    cdef Py_ssize_t n = len(values), total
    cdef int64_t* a = _int64_array(values, n, 0, 1 << 24, "Rice codes (below 2**24)")
    cdef int* ks = <int*> malloc(((n + part_size - 1) // part_size + 1) * sizeof(int))
    cdef unsigned char* out = NULL
    if ks == NULL:
        free(a)
        raise MemoryError()
    try:
        total = _rice_plan(a, n, part_size, ks)
        if total == 0:
            return b""
        out = <unsigned char*> calloc((total + 7) // 8 + 1, 1)
        if out == NULL:
            raise MemoryError()
        _rice_write(a, n, part_size, ks, out)
        return out[:(total + 7) // 8]
    finally:
        free(a)
        free(ks)
        free(out)


def zigzags(values):
    """[zigzag(v) for v in values] (edge_agent.wire.zigzag), for values of int64."""
    cdef Py_ssize_t n = len(values), i
    cdef int64_t v
    out = [None] * n
    for i in range(n):
        v = values[i]
        out[i] = (<uint64_t> v << 1) ^ <uint64_t> (v >> 63)
    return out


# ---- The search for a channel's value block: the twin of edge_agent.wire._value_block_py ----

cdef inline Py_ssize_t _put_uvarint(unsigned char* out, Py_ssize_t pos, uint64_t v) noexcept nogil:
    while v > 0x7F:
        out[pos] = <unsigned char> ((v & 0x7F) | 0x80)
        pos += 1
        v >>= 7
    out[pos] = <unsigned char> v
    return pos + 1


cdef enum:
    VB_SHAPE_RUNS = 0x40
    VB_SHAPE_RICE = 0x80
    VB_SHAPE_CODED = 0xC0
    VB_PREDICTOR_ZERO = 4
    VB_PREDICTOR_SEASONAL = 5
    VB_RICE_PART = 64
    VB_MAX_PER_BYTE = 3840


def value_block(qs, int64_t width, kinds, Py_ssize_t season, bint coded):
    """(block, predictor, shape bits): the smallest of the predictors ``kinds`` in each of
    their forms, as edge_agent.wire._value_block_py chooses (the same bytes, ties to the
    earlier), in one call and without the GIL. OverflowError when the values or the bin
    width are beyond the compiled predictors: the caller then uses the twin."""
    cdef Py_ssize_t n = len(qs), i, k, nk = len(kinds), nonzero, blen, clen, best_len = -1, nruns, run
    cdef Py_ssize_t rice_bits, pad, head
    cdef int kind, best_kind = 0, best_shape = 0, shape
    cdef int64_t limit = (<int64_t> 1) << RES_LIMIT_BITS
    cdef int64_t widest, zmax
    cdef uint64_t z
    if not 0 < width < limit:
        raise OverflowError("bin width beyond the compiled predictors' range")
    for kd in kinds:
        if not 0 <= kd <= VB_PREDICTOR_SEASONAL or (kd == VB_PREDICTOR_SEASONAL and season < 1):
            raise OverflowError("a predictor the compiled search does not take")
    cdef int* kind_of = <int*> malloc((nk + 1) * sizeof(int))
    if kind_of == NULL:
        raise MemoryError()
    for k in range(nk):
        kind_of[k] = kinds[k]
    cdef int64_t* q
    try:
        q = _int64_array(qs, n, 1 - limit, limit, "the compiled predictors (|q| < 2**40)", OverflowError)
    except BaseException:
        free(kind_of)
        raise
    cdef int64_t* reb = <int64_t*> malloc((n + 1) * sizeof(int64_t))
    cdef int64_t* res = <int64_t*> malloc((n + 1) * sizeof(int64_t))
    cdef int64_t* zz = <int64_t*> malloc((n + 1) * sizeof(int64_t))
    cdef int64_t* runs = <int64_t*> malloc((2 * n + 2) * sizeof(int64_t))
    cdef int* ks = <int*> malloc((n // VB_RICE_PART + 2) * sizeof(int))
    cdef RcModel* model = <RcModel*> malloc(sizeof(RcModel))
    # room for the larger of: Simple-8b (8n + 16) then the runs form behind it (10 + 16n + 24);
    # the coded form (20 + 17n + 16)
    cdef Py_ssize_t cap = 33 * n + 64
    cdef unsigned char* cand = <unsigned char*> malloc(cap)   # the form being tried
    cdef unsigned char* best = <unsigned char*> malloc(cap)   # the smallest so far
    try:
        if not (reb and res and zz and runs and ks and model and cand and best):
            raise MemoryError()
        for k in range(nk):
            kind = kind_of[k]
            with nogil:
                _residuals_into(q, n, kind, width, season, reb, res)
                widest = 0
                for i in range(n):
                    if res[i] > widest:
                        widest = res[i]
                    elif -res[i] > widest:
                        widest = -res[i]
            if widest >= (<int64_t> 1) << 59:
                raise ValueError(f"a residual of {widest} steps: values too far apart to encode")
            with nogil:
                if kind < VB_PREDICTOR_ZERO:
                    # version 2's forms: Simple-8b of the zigzags, runs of zeros, Rice codes
                    nonzero = 0
                    zmax = 0
                    for i in range(n):
                        z = (<uint64_t> res[i] << 1) ^ <uint64_t> (res[i] >> 63)
                        zz[i] = <int64_t> z
                        nonzero += z != 0
                        if <int64_t> z > zmax:
                            zmax = <int64_t> z
                    blen = _s8b_write(zz, n, cand)
                    shape = kind << 3
                    if nonzero * 4 <= n:
                        nruns = 0
                        run = 0
                        for i in range(n):
                            if zz[i]:
                                runs[nruns] = run
                                runs[nruns + 1] = zz[i] - 1
                                nruns += 2
                                run = 0
                            else:
                                run += 1
                        runs[nruns] = run
                        nruns += 1
                        # lay the runs form out after the Simple-8b one, keep the smaller
                        head = _put_uvarint(cand, blen, <uint64_t> nonzero) - blen
                        clen = _s8b_write(runs, nruns, cand + blen + head)
                        if head + clen < blen:
                            memmove(cand, cand + blen, head + clen)
                            blen = head + clen
                            shape = kind << 3 | VB_SHAPE_RUNS
                    if n and zmax < (1 << 24):
                        rice_bits = _rice_plan(zz, n, VB_RICE_PART, ks)
                        if (rice_bits + 7) // 8 < blen:
                            blen = (rice_bits + 7) // 8
                            memset(cand, 0, blen + 1)
                            _rice_write(zz, n, VB_RICE_PART, ks, cand)
                            shape = kind << 3 | VB_SHAPE_RICE
                    if best_len < 0 or blen < best_len:
                        memcpy(best, cand, blen)
                        best_len = blen
                        best_kind = kind
                        best_shape = shape
                if coded:
                    # version 3's coded form: predictor, season, range-coded residuals padded
                    head = _put_uvarint(cand, 0, <uint64_t> kind)
                    if kind == VB_PREDICTOR_SEASONAL:
                        head = _put_uvarint(cand, head, <uint64_t> season)
                    clen = _rc_block(res, n, cand + head, model)
                    pad = (n + VB_MAX_PER_BYTE - 1) // VB_MAX_PER_BYTE
                    if clen < pad:
                        memset(cand + head + clen, 0, pad - clen)
                        clen = pad
                    if best_len < 0 or head + clen < best_len:
                        memcpy(best, cand, head + clen)
                        best_len = head + clen
                        best_kind = kind
                        best_shape = VB_SHAPE_CODED
        return best[:best_len] if best_len > 0 else b"", best_kind, best_shape
    finally:
        free(kind_of)
        free(q)
        free(reb)
        free(res)
        free(zz)
        free(runs)
        free(ks)
        free(model)
        free(cand)
        free(best)


# ---- A channel's times as slots of the batch's schedule: the twin of edge_agent.wire._times_py ----

cdef enum:
    TIMES_LIMIT_BITS = 60  # |t|, |t0| and the period below 2**60: every slot difference fits int64


def times_section(times, int64_t t0, int64_t period):
    """(regular, has exceptions, bytes) of a channel's times, as edge_agent.wire._times_py
    writes them; OverflowError beyond 2**60 ms (the caller then uses the twin)."""
    cdef Py_ssize_t n = len(times), i, pos = 0, nexc = 0, prev, blen
    cdef int64_t limit = (<int64_t> 1) << TIMES_LIMIT_BITS
    cdef int64_t d
    cdef bint regular
    if not 0 < period < limit or not -limit < t0 < limit:
        raise OverflowError("times beyond the compiled encoder's range")
    cdef int64_t* t = _int64_array(times, n, 1 - limit, limit, "the compiled time encoder (|t| < 2**60 ms)",
                                   OverflowError)
    cdef int64_t* ks = <int64_t*> malloc((n + 1) * sizeof(int64_t))
    cdef int64_t* gaps = <int64_t*> malloc((n + 1) * sizeof(int64_t))
    cdef unsigned char* out = <unsigned char*> malloc(8 * n + 20 * n + 64)
    try:
        if ks == NULL or gaps == NULL or out == NULL:
            raise MemoryError()
        with nogil:
            regular = n > 0
            for i in range(n):
                ks[i] = _floordiv(t[i] - t0 + period // 2, period)
                if t[i] - t0 - ks[i] * period:
                    nexc += 1
                if i and ks[i] - ks[i - 1] != 1:
                    regular = False
            if n and ks[0] < 0:
                regular = False
            if regular:
                pos = _put_uvarint(out, 0, <uint64_t> ks[0])
            else:
                for i in range(n):
                    d = ks[i] - (ks[i - 1] if i else -1) - 1
                    gaps[i] = <int64_t> ((<uint64_t> d << 1) ^ <uint64_t> (d >> 63))
                blen = _s8b_write(gaps, n, out + 10)
        if not regular and blen < 0:
            raise OverflowError("a gap beyond Simple-8b: the twin says which")
        with nogil:
            if not regular:
                pos = _put_uvarint(out, 0, <uint64_t> blen)
                memmove(out + pos, out + 10, blen)
                pos += blen
            if nexc:
                pos = _put_uvarint(out, pos, <uint64_t> nexc)
                prev = -1
                for i in range(n):
                    d = t[i] - t0 - ks[i] * period
                    if d:
                        pos = _put_uvarint(out, pos, <uint64_t> (i - prev - 1))
                        pos = _put_uvarint(out, pos, (<uint64_t> d << 1) ^ <uint64_t> (d >> 63))
                        prev = i
        return regular, nexc > 0, out[:pos] if pos else b""
    finally:
        free(t)
        free(ks)
        free(gaps)
        free(out)
