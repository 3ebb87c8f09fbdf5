"""The US EPA AQI for PM (May 2024 breakpoints), the NowCast and the PurpleAir correction,
against the sources' worked examples and their band edges (edge_agent/dsp/aqi.py)."""

from __future__ import annotations

import itertools

import pytest

from edge_agent.dsp import aqi


@pytest.mark.parametrize(
    ("concentration", "index"),
    [
        (0.0, 0),
        (9.0, 50),  # the 2024 top of Good (was 12.0)
        (9.05, 50),  # truncated to 9.0 first: not between the bands
        (9.1, 51),
        (12.0, 56),  # Good before 2024, Moderate since
        (35.4, 100),
        (35.5, 101),
        (35.9, 102),  # 49 / 19.9 * 0.4 + 101 = 101.98, rounded (a band unchanged in 2024)
        (55.4, 150),
        (55.5, 151),
        (125.4, 200),
        (125.5, 201),
        (225.4, 300),
        (225.5, 301),
        (325.4, 500),
    ],
)
def test_pm25_sub_index_at_the_2024_breakpoints(concentration, index):
    assert aqi.sub_index("pm2_5", concentration) == index


@pytest.mark.parametrize(
    ("concentration", "index"),
    [
        (54.0, 50),
        (54.9, 50),
        (55.0, 51),
        (154.0, 100),
        (155.0, 101),
        (254.0, 150),
        (255.0, 151),
        (354.0, 200),
        (355.0, 201),
        (424.0, 300),
        (425.0, 301),
        (604.0, 500),
    ],
)
def test_pm10_sub_index_truncates_to_whole_micrograms(concentration, index):
    assert aqi.sub_index("pm10", concentration) == index


def test_beyond_the_index_the_last_band_goes_on_and_negative_is_zero():
    assert aqi.sub_index("pm2_5", 425.4) == 699  # 301 + 199 / 99.9 * 199.9 = 699.2
    assert aqi.sub_index("pm2_5", -3.0) == 0
    assert aqi.category(50) == "Good" and aqi.category(51) == "Moderate" and aqi.category(501) == "Hazardous"


def test_truncation_survives_float_arithmetic():
    assert aqi.truncate(35.4, "0.1") == 35.4
    assert aqi.truncate(0.1 + 0.2, "0.1") == 0.3  # 0.30000000000000004
    assert aqi.truncate(17.4139, "0.1") == 17.4 and aqi.truncate(154.99, "1") == 154.0


# AirNow's worked example ("Computing the NowCast"): the 12 hours oldest first, the
# weight factor 1 - 80 / 90 is below 0.5 so 0.5 is used, and the NowCast is 17.4 µg/m³
EXAMPLE_OLDEST_FIRST = [50, 80, 75, 90, 82, 53, 64, 74, 21, 10, 16, 13]


def test_nowcast_worked_example():
    hourly = list(reversed(EXAMPLE_OLDEST_FIRST))
    assert aqi.nowcast(hourly) == 17.4
    assert aqi.sub_index("pm2_5", 17.4) == 66


def test_nowcast_of_steady_air_is_the_twelve_hour_mean():
    assert aqi.nowcast([10.0] * 12) == 10.0
    assert aqi.nowcast([0.0] * 12) == 0.0
    # w = 8 / 10 = 0.8: every hour weighted 0.8 ** i
    hours = [10.0, 8.0] * 6
    expected = sum(c * 0.8**i for i, c in enumerate(hours)) / sum(0.8**i for i in range(12))
    assert aqi.nowcast(hours) == aqi.truncate(expected, "0.1")


def test_nowcast_needs_two_of_the_three_most_recent_hours():
    assert aqi.nowcast([None, None, 10.0, 10.0]) is None
    assert aqi.nowcast([None, 12.0, None] + [50.0] * 9) is None
    # a missing hour keeps the others' weights by their age: w = 12 / 20, and
    # (12 * w + 20 * w ** 2) / (w + w ** 2)
    got = aqi.nowcast([None, 12.0, 20.0])
    assert got == aqi.truncate((12 * 0.6 + 20 * 0.36) / 0.96, "0.1") == 15.0
    assert aqi.nowcast([5.0, 7.0]) is not None and aqi.nowcast([]) is None


def test_pm10_nowcast_truncates_to_whole_micrograms():
    assert aqi.nowcast([60.9] * 12, "pm10") == 60.0


def test_epa_2021_correction():
    # Barkjohn et al. 2021: 0.524 * PA - 0.0862 * RH + 5.75
    assert aqi.epa_correction(20.0, 50.0) == pytest.approx(0.524 * 20 - 0.0862 * 50 + 5.75)
    assert aqi.epa_correction(20.0, 50.0) == pytest.approx(11.92)
    assert aqi.epa_correction(0.0, 100.0) == 0.0  # 5.75 - 8.62 is below 0: none
    assert aqi.epa_correction(20.0, 140.0) == aqi.epa_correction(20.0, 100.0)  # RH within 0..100


def test_epa_2022_extension_joins_the_line_and_the_quadratic():
    # 300 µg/m³ at 570 and 50 % RH; the quadratic gives 400 at 611 (the paper's "up to 300,
    # a quadratic above 400"): the blend runs between them, its weight 0.0244 * PA - 13.9
    # (0.008 at 570, 1.008 at 611: the published rounding leaves steps below 1 µg/m³)
    assert aqi.epa_correction(569.9, 50.0, "epa2022") == pytest.approx(300.1, abs=0.1)
    assert aqi.epa_correction(570.0, 50.0, "epa2022") == pytest.approx(300.6, abs=0.1)
    assert aqi.epa_correction(611.0, 50.0, "epa2022") == pytest.approx(400.1, abs=0.1)
    assert aqi.epa_correction(300.0, 50.0, "epa2022") == aqi.epa_correction(300.0, 50.0, "epa2021")
    values = [aqi.epa_correction(pa / 10, 50.0, "epa2022") for pa in range(5600, 6200)]
    assert values[-1] > values[0] + 100  # rises; no step of 1 µg/m³ either way at 570 or 611
    assert max(abs(b - a) for a, b in itertools.pairwise(values)) < 1.0
    with pytest.raises(ValueError, match="epa2021, epa2022"):
        aqi.epa_correction(1.0, 1.0, "purple")
