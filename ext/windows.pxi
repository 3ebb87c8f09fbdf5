# windows.pxi: the sorted windows of the median and Hampel stages (a ring in arrival order
# and the same values sorted, kept sorted as one value comes and the oldest goes), and the
# median and MAD of a sorted window. Twin: _Window and _median_sorted in edge_agent/dsp/chain.py.

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
