# rangecoder.pxi: adaptive binary range coding of residuals (rc_encode, rc_decode, and
# _rc_block, the framing that value_block shares). Twin: edge_agent/wire/rangecoder.py.

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
    """The coded block of signed integer residuals (each |r| < 2**60); see edge_agent/wire/rangecoder.py."""
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
            raise _WireFormatError(f"{what}: a coded residual of more than {RC_MAX_BITS} bits")
        return [out[k] for k in range(n)]
    finally:
        free(out)
        free(model)
