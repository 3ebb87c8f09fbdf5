"""The predictors: each rebuilds what it predicted, binned residuals stay within half a bin,
the bins are as wide as a bound allows, the season is a day, and the compiled core's
predictors give the twin's residuals."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from twins import implementations

from edge_agent import wire
from edge_agent.wire import predict

impl = implementations(predict)


def test_each_predictor_decodes_what_it_encoded():
    qs = [5, 9, 14, 18, 25, 24, 30, 31, 29, 40, 41, 39]
    for kind in range(len(wire.PREDICTORS)):
        residuals, rebuilt = predict.residuals(qs, kind, season=3)
        assert rebuilt == qs and predict.values_from(residuals, kind, season=3) == qs
    smooth = [round(1000 + 0.5 * i * i) for i in range(50)]  # a parabola: the line predicts it best
    _block, kind, _ = wire.value_block(smooth)
    assert wire.PREDICTORS[kind] == "linear"


def test_the_season_is_a_day_of_whole_periods_in_a_batch_of_more_than_two():
    hour = 3_600_000
    assert predict.season_for(hour, 24 * 10) == 24
    assert predict.season_for(hour, 48) == 0  # not more than two days: not tried
    assert predict.season_for(7_000, 10**6) == 0  # a day is not a whole number of periods
    assert predict.season_for(1, 10**9) == 0  # no schedule


@settings(max_examples=300, deadline=None)
@given(
    bound=st.floats(0, 1000, allow_nan=False), resolution=st.sampled_from([0.001, 0.01, 0.1, 0.5, 1.0, 3.0])
)
def test_bins_are_odd_and_as_wide_as_the_bound_allows(bound, resolution):
    w = predict.bin_width_for(bound, resolution)
    half = w // 2
    assert w % 2 == 1  # an even bin rebuilds within W/2 on one side only: a step wasted
    # within the bound, and one more step would break it: up to the 1e-9 of a step that
    # bin_width_for allows for a bound written as a decimal (0.3 / 0.1 = 2.9999999999999996)
    tol = 1e-9 * resolution + 1e-12 * bound
    assert half * resolution <= bound + tol
    assert (half + 1) * resolution > bound - tol


@settings(max_examples=300, deadline=None)
@given(
    qs=st.lists(st.one_of(st.integers(-300, 300), st.integers(-(2**39), 2**39)), max_size=80),
    kind=st.integers(0, 5),
    width=st.sampled_from([1, 2, 3, 11, 1001]),
    season=st.integers(1, 30),
)
def test_the_compiled_predictors_give_the_twins_residuals(impl, qs, kind, width, season):
    residuals, rebuilt = impl.residuals(qs, kind, width, season)
    assert (residuals, rebuilt) == predict.residuals(qs, kind, width, season)
    assert predict.values_from(residuals, kind, width, season) == rebuilt
    assert all(abs(r - q) <= width // 2 for r, q in zip(rebuilt, qs)) and len(rebuilt) == len(qs)
