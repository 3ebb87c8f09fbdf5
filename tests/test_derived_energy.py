"""Energy per period from power samples: the trapezoid, gaps, period ends (edge_agent/dsp/energy.py)."""

from __future__ import annotations

import pytest

from edge_agent.dsp.energy import EnergyPeriods, trapezoid_wh


def test_trapezoid_of_a_ramp_is_exact():
    samples = [(float(t), 100.0 + t) for t in range(0, 3601, 10)]  # 100 W rising to 3700 W over an hour
    wh, covered, gaps = trapezoid_wh(samples, max_gap=30)
    assert wh == pytest.approx(1900.0) and covered == 3600 and gaps == 0


def test_a_gap_is_not_integrated_and_is_counted():
    samples = [(0.0, 1000.0), (10.0, 1000.0), (100.0, 1000.0), (110.0, 1000.0)]
    wh, covered, gaps = trapezoid_wh(samples, max_gap=30)
    assert (wh, covered, gaps) == (pytest.approx(20000 / 3600), 20.0, 1)


def test_periods_split_at_their_ends():
    e = EnergyPeriods(period=60.0, max_gap=30.0, grams_per_kwh=250.0)
    closed = []
    for t in range(5, 200, 10):  # 3600 W steady, one sample per 10 s
        closed += e.push(float(t), 3600.0)
    assert [p.end for p in closed] == [60.0, 120.0, 180.0]
    first, second = closed[0], closed[1]
    assert first.wh == pytest.approx(55.0)  # from the first sample at 5 s: 55 s at 1 Wh/s
    assert first.uncovered == pytest.approx(5.0)
    assert second.wh == pytest.approx(60.0) and second.uncovered == pytest.approx(0.0)
    assert second.co2e_g == pytest.approx(60.0 / 1000 * 250.0)
    assert all(p.gaps == 0 for p in closed)


def test_a_sensor_down_for_periods_leaves_them_empty_and_uncovered():
    e = EnergyPeriods(period=60.0, max_gap=30.0)
    assert e.push(0.0, 600.0) == [] and e.push(30.0, 600.0) == []
    closed = e.push(250.0, 600.0)  # 220 s without a sample: one gap, three periods end
    assert [p.end for p in closed] == [60.0, 120.0, 180.0, 240.0]
    assert closed[0].wh == pytest.approx(5.0) and closed[0].gaps == 1
    assert [p.wh for p in closed[1:]] == [0.0, 0.0, 0.0]
    assert [p.uncovered for p in closed[1:]] == [60.0, 60.0, 60.0]
    assert e.total_gaps == 1


def test_samples_out_of_order_or_not_finite_are_ignored():
    e = EnergyPeriods(period=60.0, max_gap=30.0)
    e.push(10.0, 100.0)
    assert e.push(5.0, 100.0) == [] and e.push(20.0, float("nan")) == []
    e.push(20.0, 100.0)
    assert e.wh == pytest.approx(100 * 10 / 3600)
    with pytest.raises(ValueError):
        EnergyPeriods(0.0, 1.0)
