"""Hong Kong's Air Quality Health Index (AQHI): the added health risk (%AR) of the 3-hour
moving means of NO2, SO2, O3 and particulate matter, banded 1 to 10 and 10+. Pure
formulas, stdlib only.

Source: the Environmental Protection Department's AQHI FAQ (aqhi.gov.hk):
``%AR = %AR(NO2) + %AR(SO2) + %AR(O3) + %AR(PM)``, ``%AR(PM)`` the higher of PM10's and
PM2.5's, each ``%AR(X) = (exp(beta(X) * C(X)) - 1) * 100`` with ``C`` in µg/m³. Why the node
never computes it from particulates alone: docs/derived.md (PM2.5 alone needs some 252
µg/m³ for band 4, ``pm_alone_for_band``).
"""

from __future__ import annotations

import math

# the FAQ's risk factors (regression coefficients), per µg/m³
BETA = {
    "no2": 0.0004462559,
    "so2": 0.0001393235,
    "o3": 0.0005116328,
    "pm10": 0.0002821751,
    "pm2_5": 0.0002180567,
}
# the highest %AR of bands 1..10; above the last: band 11, reported "10+"
BAND_TOPS = (1.88, 3.76, 5.64, 7.52, 9.41, 11.29, 12.91, 15.07, 17.22, 19.37)
# µg/m³ per ppb at 25 °C and 1013.25 hPa (molar mass / 24.45 L/mol)
PPB_TO_UGM3 = {"no2": 46.0055 / 24.45, "so2": 64.066 / 24.45, "o3": 47.9982 / 24.45}
GASES = ("no2", "so2", "o3")


def added_risk(pollutant: str, concentration: float) -> float:
    """%AR of one pollutant's 3-hour mean (µg/m³); a negative mean counts as 0."""
    return math.expm1(BETA[pollutant] * max(0.0, concentration)) * 100.0


def total_risk(no2: float, so2: float, o3: float, pm10: float | None, pm2_5: float | None) -> float:
    """The summed %AR: the three gases and the higher of the particulates given (at least one)."""
    if pm10 is None and pm2_5 is None:
        raise ValueError("the AQHI needs PM10 or PM2.5 as well as NO2, SO2 and O3")
    pm = max(added_risk(p, c) for p, c in (("pm10", pm10), ("pm2_5", pm2_5)) if c is not None)
    return added_risk("no2", no2) + added_risk("so2", so2) + added_risk("o3", o3) + pm


def band(risk: float) -> int:
    """The AQHI band of a %AR: 1 to 10, 11 for "10+"."""
    for i, top in enumerate(BAND_TOPS, start=1):
        if risk <= top:
            return i
    return 11


def pm_alone_for_band(target: int, pollutant: str = "pm2_5") -> float:
    """The concentration (µg/m³) of ``pollutant`` alone, the gases at 0, whose %AR first
    reaches band ``target`` (2..11): for PM2.5 and band 4, some 252 µg/m³."""
    floor = BAND_TOPS[target - 2]
    return math.log1p(floor / 100.0) / BETA[pollutant]
