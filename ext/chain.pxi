# chain.pxi: Chain, a configured chain of stages in one C array, run sample by sample or a
# batch at a time (the batch without the GIL). Twin: Chain in edge_agent/dsp/chain.py.

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
        rules = _stage_rules()
        self.spec = rules.check_spec(spec)
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
        lossy = last is not None and last[0] in rules.LOSSY
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
