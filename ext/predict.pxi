# predict.pxi: the wire format's predictors and their residuals (kinds 0..5 of the spec).
# Twin: edge_agent/wire/predict.py.

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
    """(signed residuals, the values the decoder will rebuild), as the twin (wire/predict.py)
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


@cython.cdivision(True)
cdef bint _values_into(const int64_t* r, Py_ssize_t n, int kind, int64_t width, Py_ssize_t season,
                       bint zigzag, int64_t* out) noexcept nogil:
    """The values rebuilt from residuals r[0:n] (zigzag-coded when ``zigzag``) into out; False
    when a residual's step or a value reaches 2**40 (the twin then answers)."""
    cdef Py_ssize_t i
    cdef int64_t limit = (<int64_t> 1) << RES_LIMIT_BITS, b
    cdef int64_t most = (limit - 1) // width  # the largest |b| with |width * b| < 2**40
    for i in range(n):
        b = r[i]
        if zigzag:
            b = <int64_t> ((<uint64_t> b) >> 1) ^ -(b & 1)
        if b > most or b < -most:
            return False
        out[i] = _predict(kind, out, i, season) + width * b
        if out[i] >= limit or out[i] <= -limit:
            return False
    return True


def values_from(residuals, int kind, int64_t width=1, Py_ssize_t season=0, bint zigzag=False):
    """The values rebuilt from a predictor's residuals (zigzag-coded when ``zigzag``), as the
    twin (wire/predict.py) rebuilds them, while every step and value stays below 2**40
    (OverflowError beyond: the caller then uses the twin, whose integers have no bound)."""
    cdef Py_ssize_t n = len(residuals), i
    cdef int64_t limit = (<int64_t> 1) << RES_LIMIT_BITS
    cdef bint fits
    if not 0 < width < limit or (kind == 5 and season < 1):
        raise OverflowError("bin width beyond the compiled predictors' range")
    cdef int64_t* r = _int64_array(residuals, n, -((<int64_t> 1) << 62), (<int64_t> 1) << 62,
                                   "the compiled predictors", OverflowError)
    cdef int64_t* out = <int64_t*> malloc((n + 1) * sizeof(int64_t))
    if out == NULL:
        free(r)
        raise MemoryError()
    try:
        with nogil:
            fits = _values_into(r, n, kind, width, season, zigzag, out)
        if not fits:
            raise OverflowError("values beyond the compiled predictors' range")
        return [out[i] for i in range(n)]
    finally:
        free(r)
        free(out)
