"""The US EPA Air Quality Index for particulate matter, its NowCast, and the EPA's humidity
correction for PurpleAir-type (Plantower) optical sensors. Pure formulas, stdlib only.

Sources (docs/derived.md cites them with their worked examples):

* The AQI's breakpoints for PM2.5 as revised in May 2024 (the EPA's Technical Assistance
  Document for the Reporting of Daily Air Quality, "TAD"), for PM10 unchanged; equation 1,
  ``I = (I_hi - I_lo) / (BP_hi - BP_lo) * (C - BP_lo) + I_lo``, on the concentration
  truncated (PM2.5 to 0.1 µg/m³, PM10 to 1 µg/m³), the index rounded to the nearest
  whole number. Above the top breakpoint the last segment goes on ("beyond the AQI").
* The NowCast for PM (AirNow): a weighted mean of the last 12 hourly means, the weight
  factor ``w = min / max`` of those hours, at least 0.5; the mean of hour ``i`` (0 the most
  recent) weighted ``w ** i``; valid only when at least 2 of the 3 most recent hours are;
  computed on the hourly means as they are, the result truncated like a concentration.
* The US-wide correction of PurpleAir PM2.5 (cf_1) with relative humidity, Barkjohn,
  Gantt and Clements, AMT 14, 4617 (2021): ``0.524 * PA - 0.0862 * RH + 5.75``; and its
  extension to smoke, Barkjohn et al., Sensors 22, 9669 (2022): that line up to 570
  µg/m³, a quadratic ``4.21e-4 * PA**2 + 0.392 * PA + 3.44`` from 611, and a blend between.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from decimal import ROUND_DOWN, Decimal

# (C_lo, C_hi, I_lo, I_hi): µg/m³ and index
PM25_BREAKPOINTS = (
    (0.0, 9.0, 0, 50),
    (9.1, 35.4, 51, 100),
    (35.5, 55.4, 101, 150),
    (55.5, 125.4, 151, 200),
    (125.5, 225.4, 201, 300),
    (225.5, 325.4, 301, 500),
)
PM10_BREAKPOINTS = (
    (0.0, 54.0, 0, 50),
    (55.0, 154.0, 51, 100),
    (155.0, 254.0, 101, 150),
    (255.0, 354.0, 151, 200),
    (355.0, 424.0, 201, 300),
    (425.0, 604.0, 301, 500),
)
CATEGORIES = (
    (50, "Good"),
    (100, "Moderate"),
    (150, "Unhealthy for Sensitive Groups"),
    (200, "Unhealthy"),
    (300, "Very Unhealthy"),
    (math.inf, "Hazardous"),
)
POLLUTANTS = {"pm2_5": (PM25_BREAKPOINTS, "0.1"), "pm10": (PM10_BREAKPOINTS, "1")}
NOWCAST_HOURS = 12
NOWCAST_MIN_WEIGHT = 0.5  # PM; the ozone NowCast is another method
CORRECTIONS = ("none", "epa2021", "epa2022")


def truncate(value: float, step: str) -> float:
    """``value`` cut down to a multiple of ``step`` ("0.1", "1"), as the TAD truncates a
    concentration; on its decimal form to nine places, so 35.4 stays 35.4 whatever float
    arithmetic left it at (35.39999999999999)."""
    d = Decimal(repr(round(value, 9)))
    return float(d.quantize(Decimal(step), rounding=ROUND_DOWN))


def sub_index(pollutant: str, concentration: float) -> int:
    """The AQI of one concentration (µg/m³) of ``pm2_5`` or ``pm10``: truncated, then
    equation 1 in its band, rounded half up; above the last breakpoint the last band's line
    goes on. A negative concentration (a corrected value below 0) counts as 0."""
    table, step = POLLUTANTS[pollutant]
    c = truncate(max(0.0, concentration), step)
    band = table[-1]
    for row in table:
        if c <= row[1]:
            band = row
            break
    c_lo, c_hi, i_lo, i_hi = band
    index = (i_hi - i_lo) / (c_hi - c_lo) * (c - c_lo) + i_lo
    return math.floor(index + 0.5)


def category(aqi: int) -> str:
    """The AQI's category name (Good ... Hazardous)."""
    return next(name for top, name in CATEGORIES if aqi <= top)


def nowcast(hourly: Sequence[float | None], pollutant: str = "pm2_5") -> float | None:
    """The NowCast of up to 12 hourly means (µg/m³), the most recent first, ``None`` for an
    hour without a valid mean; ``None`` when fewer than 2 of the 3 most recent hours are
    valid. Truncated like a concentration of ``pollutant`` (PM2.5: 0.1, PM10: 1 µg/m³)."""
    hours = list(hourly[:NOWCAST_HOURS])
    if sum(c is not None for c in hours[:3]) < 2:
        return None
    present = [(i, c) for i, c in enumerate(hours) if c is not None]
    values = [c for _, c in present]
    cmax = max(values)
    w = 1.0 if cmax <= 0 else max(NOWCAST_MIN_WEIGHT, min(values) / cmax)
    num = sum(c * w**i for i, c in present)
    den = sum(w**i for i, _ in present)
    return truncate(max(0.0, num / den), POLLUTANTS[pollutant][1])


def epa_correction(pa: float, rh: float, method: str = "epa2021") -> float:
    """PM2.5 (µg/m³) from a PurpleAir-type sensor's cf_1 PM2.5 ``pa`` and relative humidity
    ``rh`` (%), by the EPA's US-wide correction: ``epa2021`` the line of 2021 (fitted up to
    some 300 µg/m³), ``epa2022`` the same with its extension for smoke; never below 0."""
    if method not in ("epa2021", "epa2022"):
        raise ValueError(f"no correction {method!r} (one of epa2021, epa2022)")
    rh = min(100.0, max(0.0, rh))
    line = 0.524 * pa - 0.0862 * rh + 5.75
    if method == "epa2021" or pa < 570.0:
        return max(0.0, line)
    quadratic = 4.21e-4 * pa * pa + 0.392 * pa + 3.44
    if pa >= 611.0:
        return quadratic
    blend = 0.0244 * pa - 13.9  # 0 at 570, 1 at 611
    return max(0.0, blend * quadratic + (1.0 - blend) * line)
