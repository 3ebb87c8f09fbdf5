"""The signal core: each stage against a plain definition, error bounds as properties, and the
compiled core against its pure-Python twin, bit for bit."""

from __future__ import annotations

import array
import math
import random
import statistics

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twins import compiled_core

from edge_agent import dsp
from edge_agent.dsp import chain as twin
from edge_agent.implementation import compiled


@pytest.fixture(params=[twin, compiled], ids=["twin", "compiled"])
def impl(request):
    """Each implementation as a module: the twin, and the compiled core (skipped loudly when
    it is not built, a failure under EDGE_AGENT_REQUIRE_EXT=1)."""
    return request.param or compiled_core()


@pytest.fixture
def Chain(impl):
    return impl.Chain


def values(chain, xs, dt=1.0):
    out = []
    for i, x in enumerate(xs):
        r = chain.push(i * dt, x)
        out.append(None if r is None else r[1])
    return out


def test_median_matches_statistics_median(Chain):
    xs = [5.0, 1.0, 4.0, 4.0, 9.0, -2.0, 7.5, 3.25, 3.25, 0.0, 11.0]
    for window in (1, 2, 3, 4, 5, 7):
        got = values(Chain([("median", window)]), xs)
        assert got == [statistics.median(xs[max(0, i - window + 1) : i + 1]) for i in range(len(xs))]


def test_mean_matches_a_plain_mean(Chain):
    xs = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0]
    got = values(Chain([("mean", 3)]), xs)
    assert got == pytest.approx([statistics.fmean(xs[max(0, i - 2) : i + 1]) for i in range(len(xs))])


def test_ema_follows_its_recurrence(Chain):
    assert values(Chain([("ema", 0.25)]), [10.0, 20.0, 20.0, 0.0]) == [10.0, 12.5, 14.375, 10.78125]


def test_kalman_converges_and_weighs_by_noise(Chain):
    xs = [10.0] + [20.0] * 200
    got = values(Chain([("kalman", 0.01, 1.0)]), xs)
    assert got[0] == 10.0 and abs(got[-1] - 20.0) < 1e-3
    slow = values(Chain([("kalman", 0.0001, 1.0)]), xs)[5]
    fast = values(Chain([("kalman", 1.0, 1.0)]), xs)[5]
    assert 10.0 < slow < fast < 20.0  # more process noise: trusts the new measurement more


def test_hampel_replaces_an_outlier_and_keeps_ordinary_samples(Chain):
    xs = [10.0, 10.2, 9.9, 10.1, 10.0, 55.0, 10.1, 9.8, 10.3]
    got = values(Chain([("hampel", 5, 3.0)]), xs)
    assert got[5] == statistics.median(xs[1:6])  # the spike became the window's median
    assert [g for i, g in enumerate(got) if i != 5] == [x for i, x in enumerate(xs) if i != 5]


def test_calibrate_and_range(Chain):
    assert values(Chain([("calibrate", 1.0, 2.0, 0.5)]), [0.0, 2.0]) == [1.0, 7.0]
    assert values(Chain([("range", -40.0, 85.0, 0.0)]), [-50.0, 20.0, 90.0]) == [None, 20.0, None]
    assert values(Chain([("range", -40.0, 85.0, 1.0)]), [-50.0, 20.0, 90.0]) == [-40.0, 20.0, 85.0]


def test_throttle_passes_at_most_every_interval(Chain):
    c = Chain([("throttle", 1.0)])
    got = [c.push(t, 1.0) for t in (0.0, 0.4, 0.99, 1.0, 1.5, 2.2)]
    assert [g[0] for g in got if g] == [0.0, 1.0, 2.2]


def test_deadband_absolute_relative_and_heartbeat(Chain):
    assert values(Chain([("deadband", 0.5, 0.0, 0.0)]), [1.0, 1.2, 1.5, 1.51, 0.9, 0.99, 2.0]) == [
        1.0,
        None,
        None,
        1.51,
        0.9,
        None,
        2.0,
    ]
    assert values(Chain([("deadband", 0.1, 1.0, 0.0)]), [100.0, 109.0, 111.0, 10.0]) == [
        100.0,
        None,
        111.0,
        10.0,
    ]
    c = Chain([("deadband", 1.0, 0.0, 5.0)])
    kept = [c.push(t, 3.0) for t in range(12)]
    assert [k[0] for k in kept if k] == [0.0, 5.0, 10.0]  # a heartbeat every 5 s without change


def test_flush_makes_the_next_batch_start_with_a_point(Chain):
    c = Chain([("deadband", 1.0, 0.0, 0.0)])
    assert c.push(0.0, 5.0) == (0.0, 5.0)
    assert c.push(1.0, 5.1) is None
    assert c.flush() is None
    assert c.push(2.0, 5.1) == (2.0, 5.1)  # the new batch's first sample


def test_swing_keeps_lines_and_closes_at_flush(Chain):
    c = Chain([("swing", 0.1, 0.0)])
    kept = [c.push(float(t), 2.0 * t) for t in range(10)]  # a straight line: nothing in between
    assert kept[0] == (0.0, 0.0) and all(k is None for k in kept[1:])
    assert c.flush() == (9.0, 18.0)
    c = Chain([("swing", 0.1, 0.0)])
    pts = [c.push(float(t), x) for t, x in enumerate([0.0, 1.0, 2.0, 3.0, 3.0, 3.0, 3.0])]
    assert [p for p in pts if p] == [(0.0, 0.0), (3.0, 3.0)]  # the corner is kept


def test_nan_is_dropped_without_touching_state(Chain):
    c = Chain([("median", 3), ("ema", 0.5)])
    assert c.push(0.0, 1.0) == (0.0, 1.0)
    assert c.push(1.0, math.nan) is None
    assert c.push(2.0, 3.0) == (2.0, 1.5)


@pytest.mark.parametrize(
    "spec, message",
    [
        ([("median", 0)], "median window"),
        ([("median", 256)], "median window"),
        ([("hampel", 4, 3.0)], "odd integer"),
        ([("ema", 0.0)], "ema alpha"),
        ([("deadband", -1.0, 0.0, 0.0)], "deadband width"),
        ([("swing", 0.1, 0.0), ("ema", 0.5)], "lossy stage must be the last"),
        ([("range", 2.0, 1.0, 0.0)], "low <= high"),
        ([("calibrate",) + (1.0,) * 9], "takes 1..8"),
        ([("kalmann", 1.0)], "unknown stage"),
    ],
)
def test_bad_stage_parameters_are_refused(Chain, spec, message):
    with pytest.raises(ValueError, match=message):
        Chain(spec)


def test_error_bound(Chain):
    assert Chain([("median", 3), ("deadband", 0.25, 0.0, 0.0)]).error_bound == 0.25
    assert Chain([("swing", 0.5, 10.0)]).error_bound == 0.5
    c = Chain([("deadband", 0.02, 1.0, 0.0)])
    assert c.error_bound == 0.0 and c.relative_bound == 0.02
    assert Chain([("ema", 0.5)]).error_bound == 0.0


def test_batch_call_equals_per_sample_calls(Chain):
    n = 500
    ts = array.array("d", [i * 0.5 for i in range(n)])
    xs = array.array("d", [math.sin(i / 7.0) * 10 + (i % 5) for i in range(n)])
    spec = [("hampel", 7, 3.0), ("median", 5), ("ema", 0.3), ("swing", 0.4, 30.0)]
    c = Chain(spec)
    per_sample = [p for p in (c.push(t, x) for t, x in zip(ts, xs)) if p is not None]
    out_t, out_y = array.array("d", bytes(8 * n)), array.array("d", bytes(8 * n))
    k = Chain(spec).run(ts, xs, out_t, out_y)
    assert list(zip(out_t[:k], out_y[:k])) == per_sample
    assert 0 < k < n


def test_batch_call_refuses_short_output(Chain):
    with pytest.raises(ValueError):
        Chain([("ema", 0.5)]).run(
            array.array("d", [0.0, 1.0]),
            array.array("d", [1.0, 2.0]),
            array.array("d", [0.0]),
            array.array("d", [0.0]),
        )


finite = st.floats(min_value=-1e4, max_value=1e4, allow_nan=False, allow_infinity=False)
stage = st.one_of(
    st.tuples(st.just("calibrate"), finite, finite),
    st.tuples(st.just("range"), st.just(-5e3), st.just(5e3), st.sampled_from([0.0, 1.0])),
    st.tuples(st.just("hampel"), st.sampled_from([3, 5, 7, 11]), st.floats(0.5, 5.0)),
    st.tuples(st.just("median"), st.integers(1, 255)),
    st.tuples(st.just("mean"), st.integers(1, 64)),
    st.tuples(st.just("ema"), st.floats(min_value=0.01, max_value=1.0)),
    st.tuples(st.just("kalman"), st.floats(0.0, 10.0), st.floats(0.01, 10.0)),
    st.tuples(st.just("throttle"), st.floats(0.0, 5.0)),
)
lossy = st.one_of(
    st.tuples(st.just("deadband"), st.floats(0.0, 50.0), st.sampled_from([0.0, 1.0]), st.floats(0.0, 20.0)),
    st.tuples(st.just("swing"), st.floats(0.0, 50.0), st.floats(0.0, 20.0)),
)
times = st.lists(st.floats(0.001, 10.0), min_size=1, max_size=300).map(
    lambda steps: [sum(steps[: i + 1]) for i in range(len(steps))]
)


def run_with_flushes(chain, ts, xs, every):
    out = []
    for i, (t, x) in enumerate(zip(ts, xs)):
        out.append(chain.push(t, x))
        if every and i % every == every - 1:
            out.append(("flush", chain.flush()))
    out.append(("flush", chain.flush()))
    return out


@settings(max_examples=300, deadline=None)
@given(spec=st.tuples(st.lists(stage, max_size=4), st.one_of(st.none(), lossy)), data=st.data())
def test_compiled_core_agrees_with_twin_bit_for_bit(spec, data):
    core = compiled_core()
    stages = list(spec[0]) + ([spec[1]] if spec[1] else [])
    ts = data.draw(times)
    xs = data.draw(st.lists(finite, min_size=len(ts), max_size=len(ts)))
    every = data.draw(st.integers(0, 20))
    a, b = core.Chain(stages), twin.Chain(stages)
    assert run_with_flushes(a, ts, xs, every) == run_with_flushes(b, ts, xs, every)
    assert a.get_state() == b.get_state()


@settings(max_examples=300, deadline=None)
@given(data=st.data(), eps=st.floats(0.0, 10.0), max_interval=st.floats(0.0, 20.0))
def test_swinging_door_reconstructs_every_sample_within_eps(data, eps, max_interval):
    ts = data.draw(times)
    xs = data.draw(st.lists(finite, min_size=len(ts), max_size=len(ts)))
    chain = dsp.Chain([("swing", eps, max_interval)])
    kept = [p for p in (chain.push(t, x) for t, x in zip(ts, xs)) if p is not None]
    end = chain.flush()
    if end is not None:
        kept.append(end)
    assert kept[0] == (ts[0], xs[0])
    for t, x in zip(ts, xs):
        # the segment [k0, k1] that holds t, and the line between its points
        j = max(i for i, (kt, _) in enumerate(kept) if kt <= t)
        if j == len(kept) - 1:
            y = kept[j][1]
            assert kept[j][0] == t  # only the very last sample sits at the last point
        else:
            (t0, y0), (t1, y1) = kept[j], kept[j + 1]
            y = y0 + (y1 - y0) * (t - t0) / (t1 - t0)
        assert abs(y - x) <= eps + 1e-9 * (1 + abs(x)), (t, x, y, kept)


@settings(max_examples=300, deadline=None)
@given(data=st.data(), width=st.floats(0.0, 10.0), every=st.integers(0, 30))
def test_deadband_hold_reconstruction_stays_within_width(data, width, every):
    ts = data.draw(times)
    xs = data.draw(st.lists(finite, min_size=len(ts), max_size=len(ts)))
    chain = dsp.Chain([("deadband", width, 0.0, 0.0)])
    held = None
    for i, (t, x) in enumerate(zip(ts, xs)):
        p = chain.push(t, x)
        if p is not None:
            held = p[1]
        assert held is not None and abs(x - held) <= chain.error_bound
        if every and i % every == every - 1:
            assert chain.flush() is None
            held = None  # each batch must start with its own point


@settings(max_examples=100, deadline=None)
@given(
    spec=st.tuples(st.lists(stage, max_size=3), st.one_of(st.none(), lossy)),
    data=st.data(),
    cut=st.integers(0, 100),
    restore_into=st.sampled_from(["python", "cython"]),
)
def test_state_saved_and_restored_continues_exactly(spec, data, cut, restore_into):
    stages = list(spec[0]) + ([spec[1]] if spec[1] else [])
    ts = data.draw(times)
    xs = data.draw(st.lists(finite, min_size=len(ts), max_size=len(ts)))
    cut = min(cut, len(ts))
    whole = dsp.Chain(stages)
    expected = [whole.push(t, x) for t, x in zip(ts, xs)]
    first = dsp.Chain(stages)
    got = [first.push(t, x) for t, x in zip(ts[:cut], xs[:cut])]
    state = first.get_state()
    Impl = twin.Chain if restore_into == "python" else compiled_core().Chain
    second = Impl(stages)
    second.set_state(state)
    got += [second.push(t, x) for t, x in zip(ts[cut:], xs[cut:])]
    assert got == expected


@settings(max_examples=60, deadline=None)
@given(
    spec=st.sampled_from(
        [
            [("median", 5)],
            [("median", 3), ("ema", 0.25)],
            [("ema", 0.5)],
            [("hampel", 7, 3.0), ("median", 5), ("ema", 0.5), ("swing", 0.05, 0.0)],
            [("ema", 0.2), ("median", 5), ("deadband", 0.1, 0.0, 0.0)],
            [("hampel", 11, 2.0), ("median", 61)],
        ]
    ),
    xs=st.lists(
        st.one_of(st.floats(-100, 100), st.just(math.nan), st.integers(-3, 3).map(float)), max_size=1500
    ),
    cut=st.floats(0, 1),
)
def test_the_compiled_batch_call_in_any_pieces_equals_the_twin_sample_by_sample(spec, xs, cut):
    """The batch call runs stage by stage over blocks (and some stages in their own loops):
    across block and call boundaries, with NaNs dropped, it gives the twin's points."""
    core = compiled_core()
    n = len(xs)
    ts = [float(i) for i in range(n)]
    oracle = twin.Chain(spec)
    want = [p for p in (oracle.push(t, x) for t, x in zip(ts, xs)) if p is not None]
    chain, got, k = core.Chain(spec), [], round(cut * n)
    out_t, out_y = array.array("d", bytes(8 * n)), array.array("d", bytes(8 * n))
    for lo, hi in ((0, k), (k, n)):
        m = chain.run(array.array("d", ts[lo:hi]), array.array("d", xs[lo:hi]), out_t, out_y)
        got += list(zip(out_t[:m], out_y[:m]))
    assert got == want


@settings(max_examples=400, deadline=None)
@given(
    window=st.integers(1, 40),
    k=st.floats(0.5, 5.0),
    hampel=st.booleans(),
    xs=st.lists(
        st.sampled_from([0.0, -0.0, 1.0, -1.0, 2.5, 1e300, math.inf, -math.inf, 3.0, 1.0]), max_size=700
    ),  # beyond a block of the batch call (256): its loops for full windows
    batch=st.booleans(),
)
def test_windows_with_ties_signed_zeros_and_non_finite_values_agree_with_the_twin(
    window, k, hampel, xs, batch
):
    """Short windows are kept sorted branch-free and their MAD taken without a search, longer
    ones by binary searches: every path gives the twin's values, down to which of two equal
    zeros (0.0, -0.0) is the median. Infinities are dropped at the entry, and what the
    calibration makes infinite (1e300 -> 1e10 * 1e600) is kept out of the window."""
    core = compiled_core()
    stage = ("hampel", max(3, window | 1), k) if hampel else ("median", window)
    spec = [("calibrate", -0.0, 1.0, 1e10), stage]  # keeps the sign of a zero (+ -0.0)
    ts = [float(i) for i in range(len(xs))]
    oracle = twin.Chain(spec)
    want = [p for p in (oracle.push(t, x) for t, x in zip(ts, xs)) if p is not None]
    chain = core.Chain(spec)
    if batch:
        n = len(xs)
        out_t, out_y = array.array("d", bytes(8 * n)), array.array("d", bytes(8 * n))
        m = chain.run(array.array("d", ts), array.array("d", xs), out_t, out_y)
        got = list(zip(out_t[:m], out_y[:m]))
    else:
        got = [p for p in (chain.push(t, x) for t, x in zip(ts, xs)) if p is not None]
    assert repr(got) == repr(want)  # repr: NaN equals NaN, -0.0 differs from 0.0
    assert repr(chain.get_state()) == repr(oracle.get_state())


def test_a_saved_window_with_a_non_finite_value_is_refused_and_minus_zero_is_zero(Chain):
    chain = Chain([("median", 3), ("hampel", 3, 2.0)])
    for bad in ([[0.0, 1.0, math.inf], []], [[], [0.0, math.nan]]):
        with pytest.raises(ValueError, match="window values must be finite"):
            chain.set_state(bad)
    chain.set_state([[1.0, 1.0, 2.0], [0.0, 5.0]])
    assert chain.push(0.0, 3.0) == (0.0, 2.0)
    chain.set_state([[0.0, -0.0, -0.0, 1.0], []])  # a window takes -0.0 as 0.0
    assert repr(chain.get_state()[0]) == "[0.0, 0.0, 0.0, 1.0]"


@pytest.mark.parametrize(
    "stage", [("median", w) for w in range(1, 31)] + [("hampel", w, 2.0) for w in range(3, 31, 2)]
)
def test_the_batch_calls_window_loops_agree_with_the_twin_across_blocks(stage):
    """1,000 samples: four blocks of the batch call, so the loops for full windows run (short
    windows kept sorted branch-free, the median-of-5 network), with ties, signed zeros and
    values the calibration overflows into infinities, which the block checks for."""
    core = compiled_core()
    rnd = random.Random(repr(stage))
    pool = [0.0, -0.0, 1.0, -1.0, 2.5, 3.0, 7.25]
    xs = [rnd.choice(pool) if rnd.random() < 0.5 else rnd.gauss(0, 3) for _ in range(1000)]
    xs[rnd.randrange(300, 1000)] = 1e300  # one overflow in a later block only
    spec = [("calibrate", -0.0, 1.0, 1e10), stage]
    ts = [float(i) for i in range(len(xs))]
    oracle = twin.Chain(spec)
    want = [p for p in (oracle.push(t, x) for t, x in zip(ts, xs)) if p is not None]
    out_t, out_y = array.array("d", bytes(8 * len(xs))), array.array("d", bytes(8 * len(xs)))
    m = core.Chain(spec).run(array.array("d", ts), array.array("d", xs), out_t, out_y)
    assert repr(list(zip(out_t[:m], out_y[:m]))) == repr(want)
