# cython: language_level=3
"""Compiled signal core: streaming stages over doubles, chained per channel.

The pure-Python twin in ``edge_agent/_dsp_py.py`` has the same API and gives the
same results bit for bit (same IEEE operations in the same order); it is the
oracle in the tests. A chain lives in one C array of stage states, so a whole
chain runs in compiled code with no return to Python between stages, and the
batch call releases the GIL.

Stages (``kind`` and its parameter):

* ``("median", window)``: moving median over the last ``window`` samples
  (1..255); before the window has filled, the median of what came so far.
  For an even count, the mean of the two middle values.
* ``("ema", alpha)``: exponential moving average ``y += alpha * (x - y)``,
  0 < alpha <= 1, started at the first sample.
* ``("deadband", width)``: passes a value on only when it differs from the last
  value passed on by more than ``width`` (the first value always passes).
  Error bound: holding each kept value until the next kept one reconstructs
  every value that reached the stage within ``width``.

A NaN input is dropped at the chain's entry (a failed read never enters filter state).
"""

from libc.math cimport fabs, isnan
from libc.stdlib cimport calloc, free, malloc

cdef enum:
    K_MEDIAN = 1
    K_EMA = 2
    K_DEADBAND = 3
MAX_MEDIAN_WINDOW = 255

cdef struct StageState:
    int kind
    int window
    int count
    int head
    double* ring
    double* sorted
    double param
    double last
    bint has_last


cdef inline double median_step(StageState* s, double x) noexcept nogil:
    cdef int n = s.count
    cdef int i, lo, hi, mid
    cdef double old
    if n == s.window:
        # remove the oldest value from the sorted window
        old = s.ring[s.head]
        lo = 0
        hi = n
        while lo < hi:
            mid = (lo + hi) >> 1
            if s.sorted[mid] < old:
                lo = mid + 1
            else:
                hi = mid
        for i in range(lo, n - 1):
            s.sorted[i] = s.sorted[i + 1]
        n -= 1
    # insert x after equal values (bisect_right), shifting the tail up
    lo = 0
    hi = n
    while lo < hi:
        mid = (lo + hi) >> 1
        if x < s.sorted[mid]:
            hi = mid
        else:
            lo = mid + 1
    i = n
    while i > lo:
        s.sorted[i] = s.sorted[i - 1]
        i -= 1
    s.sorted[lo] = x
    n += 1
    s.count = n
    s.ring[s.head] = x
    s.head = (s.head + 1) % s.window
    if n & 1:
        return s.sorted[n >> 1]
    return (s.sorted[(n >> 1) - 1] + s.sorted[n >> 1]) / 2.0


cdef inline bint stage_step(StageState* s, double x, double* y) noexcept nogil:
    if s.kind == K_MEDIAN:
        y[0] = median_step(s, x)
        return True
    if s.kind == K_EMA:
        if s.has_last:
            s.last = s.last + s.param * (x - s.last)
        else:
            s.last = x
            s.has_last = True
        y[0] = s.last
        return True
    # deadband
    if s.has_last and fabs(x - s.last) <= s.param:
        return False
    s.last = x
    s.has_last = True
    y[0] = x
    return True


cdef class Chain:
    """A configured chain of stages, e.g. ``Chain([("median", 5), ("ema", 0.3)])``."""

    cdef StageState* stages
    cdef int n
    cdef readonly tuple spec
    cdef readonly double error_bound

    def __cinit__(self, spec):
        self.stages = NULL
        self.n = 0

    def __init__(self, spec):
        cdef int i
        cdef StageState* s
        spec = tuple(tuple(stage) for stage in spec)
        for kind, param in spec:
            _check_stage(kind, param)
        self.spec = spec
        self.n = len(spec)
        self.stages = <StageState*> calloc(max(self.n, 1), sizeof(StageState))
        if self.stages == NULL:
            raise MemoryError()
        bound = 0.0
        for i, (kind, param) in enumerate(spec):
            s = &self.stages[i]
            s.param = param
            if kind == "median":
                s.kind = K_MEDIAN
                s.window = int(param)
                s.ring = <double*> malloc(s.window * sizeof(double))
                s.sorted = <double*> malloc(s.window * sizeof(double))
                if s.ring == NULL or s.sorted == NULL:
                    raise MemoryError()
            elif kind == "ema":
                s.kind = K_EMA
            else:
                s.kind = K_DEADBAND
                bound += param
        self.error_bound = bound

    def __dealloc__(self):
        cdef int i
        if self.stages != NULL:
            for i in range(self.n):
                free(self.stages[i].ring)
                free(self.stages[i].sorted)
            free(self.stages)

    cdef inline bint _push(self, double x, double* y) noexcept nogil:
        cdef int i
        if isnan(x):
            return False
        y[0] = x
        for i in range(self.n):
            if not stage_step(&self.stages[i], y[0], y):
                return False
        return True

    def push(self, double x):
        """Run one sample through the chain: the value that comes out, or None."""
        cdef double y
        if self._push(x, &y):
            return y
        return None

    def run(self, const double[::1] xs, double[::1] out_values, long long[::1] out_index):
        """Run a batch; write kept values and their input indices; return how many.

        ``out_values`` and ``out_index`` must be at least as long as ``xs``.
        """
        cdef Py_ssize_t i, k = 0, n = xs.shape[0]
        cdef double y
        if out_values.shape[0] < n or out_index.shape[0] < n:
            raise ValueError("output buffers are shorter than the input")
        with nogil:
            for i in range(n):
                if self._push(xs[i], &y):
                    out_values[k] = y
                    out_index[k] = i
                    k += 1
        return k

    def reset(self):
        """Forget all filter state, as if the chain were new."""
        cdef int i
        for i in range(self.n):
            self.stages[i].count = 0
            self.stages[i].head = 0
            self.stages[i].has_last = False
            self.stages[i].last = 0.0


def _check_stage(kind, param):
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
