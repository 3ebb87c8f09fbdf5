# stages.pxi: the stage kinds, the C state of one stage (Stage), and one stage's work on one
# sample (stage_step) and on a block of samples (stage_block, the same results with less
# dispatch). Twin: the _Stage classes in edge_agent/dsp/chain.py; the kinds and limits are
# edge_agent/dsp/stages.py's.

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

cdef double _MAD_SCALE = 0.0  # edge_agent.dsp.stages.MAD_SCALE, set by _stage_rules
cdef object _rules = None


cdef object _stage_rules():
    """edge_agent.dsp.stages (kinds, limits, check_spec), imported at the first Chain rather
    than when this module loads: importing it runs edge_agent.dsp's __init__, which imports
    edge_agent.implementation, which may be the module importing this one; in that cycle
    this import would fail and the twin would run without a word."""
    global _rules, _MAD_SCALE
    if _rules is None:
        from edge_agent.dsp import stages
        if stages.MAX_POLY > 8:  # the coefficients a Stage holds (p[8])
            raise ImportError(f"edge_agent.dsp.stages.MAX_POLY is {stages.MAX_POLY}; the core holds 8")
        if set(stages.ARITY) != set(_KINDS):
            raise ImportError(f"the compiled core's stages {sorted(_KINDS)} are not "
                              f"edge_agent.dsp.stages' {sorted(stages.ARITY)}: rebuild the core")
        _MAD_SCALE = stages.MAD_SCALE
        _rules = stages
    return _rules


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
