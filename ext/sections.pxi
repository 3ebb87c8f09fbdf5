# sections.pxi: a channel's sections of a batch: value_block (the search for the smallest
# predictor and shape) and times_section (times as slots of the batch's schedule).
# Twin: edge_agent/wire/sections.py.

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
    their forms, as the twin (wire/sections.py) chooses (the same bytes, ties to the
    earlier), in one call and without the GIL. OverflowError when the values or the bin
    width are beyond the compiled predictors: the caller then uses the twin."""
    cdef Py_ssize_t n = len(qs), i, k, nk = len(kinds), nonzero, blen, clen, best_len = -1, nruns, run
    cdef Py_ssize_t rice_bits, pad, head
    cdef int kind, best_kind = 0, best_shape = 0, shape
    cdef int64_t limit = (<int64_t> 1) << RES_LIMIT_BITS
    cdef int64_t widest, zmax, too_wide = 0
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
            if widest >= (<int64_t> 1) << 59:  # beyond every form: another predictor may do
                too_wide = widest
                continue
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
        if best_len < 0 and too_wide:
            raise ValueError(f"a residual of {too_wide} steps: values too far apart to encode")
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


# A channel's times as slots of the batch's schedule.

cdef enum:
    TIMES_LIMIT_BITS = 60  # |t|, |t0| and the period below 2**60: every slot difference fits int64


def times_section(times, int64_t t0, int64_t period):
    """(regular, has exceptions, bytes) of a channel's times, as the twin (wire/sections.py)
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
