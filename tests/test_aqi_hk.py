"""Hong Kong's AQHI against the EPD's published risk factors and bands (edge_agent/dsp/aqhi.py)."""

from __future__ import annotations

import math

import pytest

from edge_agent.dsp import aqhi


def test_the_published_coefficients():
    assert aqhi.BETA == {
        "no2": 0.0004462559,
        "so2": 0.0001393235,
        "o3": 0.0005116328,
        "pm10": 0.0002821751,
        "pm2_5": 0.0002180567,
    }


def test_added_risk_is_the_faq_formula():
    assert aqhi.added_risk("no2", 100.0) == pytest.approx((math.exp(0.04462559) - 1) * 100)
    assert aqhi.added_risk("no2", 100.0) == pytest.approx(4.5636, abs=1e-4)
    assert aqhi.added_risk("o3", -5.0) == 0.0


def test_total_takes_the_higher_particulate_risk():
    gases = (40.0, 10.0, 60.0)
    pm10, pm25 = 50.0, 40.0  # PM10's %AR (1.42) above PM2.5's (0.88)
    total = aqhi.total_risk(*gases, pm10, pm25)
    expected = sum(aqhi.added_risk(p, c) for p, c in zip(("no2", "so2", "o3"), gases))
    assert total == pytest.approx(expected + aqhi.added_risk("pm10", pm10))
    assert aqhi.total_risk(*gases, None, pm25) == pytest.approx(expected + aqhi.added_risk("pm2_5", pm25))
    with pytest.raises(ValueError, match=r"PM10 or PM2\.5"):
        aqhi.total_risk(*gases, None, None)


@pytest.mark.parametrize(
    ("risk", "band"),
    [
        (0.0, 1),
        (1.88, 1),
        (1.89, 2),
        (3.76, 2),
        (5.64, 3),
        (5.65, 4),
        (7.52, 4),
        (9.41, 5),
        (11.29, 6),
        (12.91, 7),
        (15.07, 8),
        (17.22, 9),
        (19.37, 10),
        (19.38, 11),
        (40.0, 11),
    ],
)
def test_bands(risk, band):
    assert aqhi.band(risk) == band


def test_a_typical_roadside_hour():
    """NO2 120, SO2 10, O3 30, PM10 60, PM2.5 35 µg/m³ (3-hour means): %AR 8.89, band 5."""
    risk = aqhi.total_risk(120.0, 10.0, 30.0, 60.0, 35.0)
    assert risk == pytest.approx(8.89, abs=0.01) and aqhi.band(risk) == 5


def test_particulates_alone_need_252_micrograms_for_band_4():
    c = aqhi.pm_alone_for_band(4)
    assert round(c) == 252
    assert aqhi.band(aqhi.total_risk(0, 0, 0, None, c + 0.1)) == 4
    assert aqhi.band(aqhi.total_risk(0, 0, 0, None, c - 0.5)) == 3
    # the WHO's 24-hour guideline (15 µg/m³) a dozen times over still reads band 1..3
    assert aqhi.band(aqhi.total_risk(0, 0, 0, None, 180.0)) == 3
    assert round(aqhi.pm_alone_for_band(4, "pm10")) == 194


def test_ppb_conversion_at_25_degrees():
    assert aqhi.PPB_TO_UGM3["no2"] == pytest.approx(1.88, abs=0.01)
    assert aqhi.PPB_TO_UGM3["o3"] == pytest.approx(1.96, abs=0.01)
    assert aqhi.PPB_TO_UGM3["so2"] == pytest.approx(2.62, abs=0.01)
