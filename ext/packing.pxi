# packing.pxi: Simple-8b and Rice packing of non-negative integers, zigzag mapping, and
# _int64_array, the checked copy of a Python sequence that every wire kernel starts from.
# Twin: edge_agent/wire/packing.py.

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
    """Rice codes as the twin, edge_agent/wire/packing.py, writes them (values below 2**24)."""
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
    """[zigzag(v) for v in values] (the twin in edge_agent/wire/varint.py), for values of int64."""
    cdef Py_ssize_t n = len(values), i
    cdef int64_t v
    out = [None] * n
    for i in range(n):
        v = values[i]
        out[i] = (<uint64_t> v << 1) ^ <uint64_t> (v >> 63)
    return out
