# crc32c.pxi: CRC-32C (Castagnoli), slicing-by-8, for the wire's checksums.
# Twin: edge_agent/wire/crc32c.py.

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
