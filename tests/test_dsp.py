"""The signal core: each stage against a plain definition, and the compiled core against its twin."""

from __future__ import annotations

import array
import math
import os
import statistics
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent import _dsp_py, dsp

try:
    from edge_agent import _dsp as _compiled
except ImportError:  # pragma: no cover - depends on the build
    _compiled = None

IMPLS = [pytest.param(_dsp_py.Chain, id="python")]
IMPLS.append(pytest.param(_compiled.Chain if _compiled else None, id="cython"))


@pytest.fixture(params=IMPLS)
def Chain(request):
    if request.param is None:
        msg = "the compiled core edge_agent._dsp is not built"
        if os.environ.get("EDGE_AGENT_REQUIRE_EXT") == "1":
            pytest.fail(msg + " (EDGE_AGENT_REQUIRE_EXT=1)")
        pytest.skip(msg)
    return request.param


def run_all(chain, xs):
    return [chain.push(x) for x in xs]


def test_median_matches_statistics_median(Chain):
    xs = [5.0, 1.0, 4.0, 4.0, 9.0, -2.0, 7.5, 3.25, 3.25, 0.0, 11.0]
    for window in (1, 2, 3, 4, 5, 7):
        got = run_all(Chain([("median", window)]), xs)
        want = [statistics.median(xs[max(0, i - window + 1):i + 1]) for i in range(len(xs))]
        assert got == want, window


def test_ema_follows_its_recurrence(Chain):
    got = run_all(Chain([("ema", 0.25)]), [10.0, 20.0, 20.0, 0.0])
    assert got == [10.0, 12.5, 14.375, 10.78125]


def test_deadband_passes_only_changes_beyond_width(Chain):
    got = run_all(Chain([("deadband", 0.5)]), [1.0, 1.2, 1.5, 1.51, 0.9, 0.99, 2.0])
    assert got == [1.0, None, None, 1.51, 0.9, None, 2.0]


def test_nan_is_dropped_without_touching_state(Chain):
    c = Chain([("median", 3), ("ema", 0.5)])
    assert c.push(1.0) == 1.0
    assert c.push(math.nan) is None
    assert c.push(3.0) == 1.5  # median(1, 3) = 2, ema 1 + 0.5 * (2 - 1)


def test_reset_forgets_state(Chain):
    c = Chain([("median", 3), ("ema", 0.5), ("deadband", 1.0)])
    first = run_all(c, [1.0, 5.0, 9.0])
    c.reset()
    assert run_all(c, [1.0, 5.0, 9.0]) == first


@pytest.mark.parametrize("spec, message", [
    ([("median", 0)], "median window"),
    ([("median", 256)], "median window"),
    ([("median", 2.5)], "median window"),
    ([("ema", 0.0)], "ema alpha"),
    ([("ema", 1.5)], "ema alpha"),
    ([("deadband", -1.0)], "deadband width"),
    ([("kalman", 1.0)], "unknown stage"),
])
def test_bad_stage_parameters_are_refused(Chain, spec, message):
    with pytest.raises(ValueError, match=message):
        Chain(spec)


def test_error_bound_is_the_sum_of_deadband_widths(Chain):
    assert Chain([("median", 3), ("deadband", 0.25)]).error_bound == 0.25
    assert Chain([("ema", 0.5)]).error_bound == 0.0


def test_batch_call_equals_per_sample_calls(Chain):
    xs = array.array("d", [math.sin(i / 7.0) * 10 + (i % 5) for i in range(500)])
    spec = [("median", 5), ("ema", 0.3), ("deadband", 0.4)]
    per_sample = [(i, y) for i, y in enumerate(run_all(Chain(spec), xs)) if y is not None]
    out = array.array("d", bytes(8 * len(xs)))
    idx = array.array("q", bytes(8 * len(xs)))
    n = Chain(spec).run(xs, out, idx)
    assert list(zip(idx[:n], out[:n])) == per_sample
    assert 0 < n < len(xs)


def test_batch_call_refuses_short_output(Chain):
    with pytest.raises(ValueError):
        Chain([("ema", 0.5)]).run(array.array("d", [1.0, 2.0]), array.array("d", [0.0]),
                                  array.array("q", [0, 0]))


finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)
stage = st.one_of(
    st.tuples(st.just("median"), st.integers(1, 255)),
    st.tuples(st.just("ema"), st.floats(min_value=0.01, max_value=1.0)),
    st.tuples(st.just("deadband"), st.floats(min_value=0.0, max_value=50.0)),
)


@settings(max_examples=200, deadline=None)
@given(spec=st.lists(stage, min_size=1, max_size=4), xs=st.lists(finite, max_size=300))
def test_compiled_core_agrees_with_twin_bit_for_bit(spec, xs):
    if _compiled is None:
        if os.environ.get("EDGE_AGENT_REQUIRE_EXT") == "1":
            pytest.fail("the compiled core is not built (EDGE_AGENT_REQUIRE_EXT=1)")
        pytest.skip("the compiled core edge_agent._dsp is not built")
    a, b = _compiled.Chain(spec), _dsp_py.Chain(spec)
    assert run_all(a, xs) == run_all(b, xs)


@settings(max_examples=200, deadline=None)
@given(width=st.floats(min_value=0.0, max_value=10.0), xs=st.lists(finite, min_size=1, max_size=300))
def test_deadband_hold_reconstruction_stays_within_width(width, xs):
    """Holding each kept value reconstructs every input within the stated bound."""
    chain = dsp.Chain([("deadband", width)])
    held = None
    for x in xs:
        y = chain.push(x)
        if y is not None:
            held = y
        assert abs(x - held) <= chain.error_bound


def test_selector_honours_purepython_and_require_ext():
    code = "import edge_agent.dsp as d; print(d.IMPLEMENTATION)"
    env = dict(os.environ, EDGE_AGENT_PUREPYTHON="1")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "python"
    env = {k: v for k, v in os.environ.items() if k != "EDGE_AGENT_PUREPYTHON"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    if _compiled is not None:
        assert out.stdout.strip() == "cython"
    # Hide the compiled module: with REQUIRE_EXT the selector must fail, without it fall back.
    hide = ("import sys; sys.modules['edge_agent._dsp'] = None; " + code)
    out = subprocess.run([sys.executable, "-c", hide], env=dict(env, EDGE_AGENT_REQUIRE_EXT="0"),
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "python"
    out = subprocess.run([sys.executable, "-c", hide], env=dict(env, EDGE_AGENT_REQUIRE_EXT="1"),
                         capture_output=True, text=True)
    assert out.returncode != 0 and "EDGE_AGENT_REQUIRE_EXT=1" in out.stderr
