"""Derived streams (``derived:``): what the configuration accepts and refuses, by key path,
and what the node computes from its inputs (edge_agent/config/derived.py, node/derived.py)."""

from __future__ import annotations

import pytest
import yaml

from edge_agent import wire
from edge_agent.config import parse_config
from edge_agent.dsp import aqhi, aqi
from edge_agent.errors import ConfigError
from edge_agent.node.derived import DerivedStream, Window

SENSORS = """\
node: {id: n-1}
mqtt: {broker: "mqtt://127.0.0.1:1883"}
sensors:
  - {name: air, type: bme680}
  - {name: dust, type: pmsa003i}
  - {name: mains, type: ina226, interval: 2s}
"""


def config(derived: str):
    return parse_config(yaml.safe_load(SENSORS + "derived:\n" + derived), "node.yaml")


def test_a_full_configuration():
    cfg = config("""\
  - {name: aqi, kind: us_aqi, inputs: {pm2_5: dust.pm2_5, pm10: dust.pm10, humidity: air.humidity},
     correction: epa2021, channels: {aqi: {deadband: 0}, pm10_nowcast: {enabled: false}}}
  - {name: power-use, kind: energy, inputs: {power: mains.power}, period: 1h, emission_factor: 233}
""")
    aq, energy = cfg.derived
    assert (aq.kind, aq.interval, aq.correction) == ("us_aqi", 60.0, "epa2021")
    assert [c.name for c in aq.channels] == [
        "aqi",
        "aqi_pm2_5",
        "pm2_5_nowcast",
        "aqi_pm10",
        "pm2_5_corrected",
    ]
    assert aq.channels[0].reconstruction == "hold" and aq.channels[1].reconstruction == "every"
    assert aq.source("humidity") == ("air", "humidity", "%")
    assert (energy.interval, energy.emission_factor, energy.max_gap) == (3600.0, 233.0, 7.0)  # 3 x 2 s + 1 s
    assert [(c.name, c.unit) for c in energy.channels] == [
        ("energy_period", "Wh"),
        ("co2e_period", "g"),
        ("uncovered", "s"),
    ]


def test_channels_follow_the_inputs_and_options():
    (aq,) = config("  - {kind: us_aqi, inputs: {pm10: dust.pm10}}\n").derived
    assert [c.name for c in aq.channels] == ["aqi", "aqi_pm10", "pm10_nowcast"]
    (e,) = config("  - {kind: energy, inputs: {power: mains.power}}\n").derived
    assert [c.name for c in e.channels] == ["energy_period", "uncovered"]  # no factor: no co2e
    assert e.interval == 900.0 and e.name == "energy"


@pytest.mark.parametrize(
    ("derived", "says"),
    [
        ("  - {kind: aqi, inputs: {}}\n", "derived[0].kind: expected one of energy, hk_aqhi, us_aqi"),
        ("  - {kind: us_aqi}\n", "derived[0].inputs: expected this key to be present"),
        ("  - {kind: us_aqi, inputs: {pm2_5: dust}}\n", "derived[0].inputs.pm2_5: expected SENSOR.CHANNEL"),
        (
            "  - {kind: us_aqi, inputs: {pm2_5: soot.pm2_5}}\n",
            "derived[0].inputs.pm2_5: expected a configured sensor's channel (sensors: air, dust, mains)",
        ),
        ("  - {kind: us_aqi, inputs: {pm2_5: dust.pm25}}\n", "expected an enabled channel of dust"),
        (
            "  - {kind: us_aqi, inputs: {pm2_5: air.temperature}}\n",
            "derived[0].inputs.pm2_5: expected a channel in µg/m³ for us_aqi's pm2_5 (air.temperature is in °C)",
        ),
        ("  - {kind: us_aqi, inputs: {humidity: air.humidity}}\n", "expected pm2_5 or pm10"),
        (
            "  - {kind: us_aqi, inputs: {pm2_5: dust.pm2_5}, correction: epa2021}\n",
            "expected pm2_5 and humidity: the epa2021 correction needs both",
        ),
        (
            "  - {kind: us_aqi, inputs: {pm2_5: dust.pm2_5}, correction: purple}\n",
            "one of none, epa2021, epa2022",
        ),
        (
            "  - {kind: hk_aqhi, inputs: {pm2_5: dust.pm2_5, pm10: dust.pm10}}\n",
            (
                "derived[0].inputs: expected no2, o3 and so2 (missing: no2, o3, so2): the AQHI is never computed "
                "from particulates alone"
            ),
        ),
        ("  - {kind: energy, inputs: {power: mains.current}}\n", "a channel in W for energy's power"),
        ("  - {kind: energy, inputs: {}}\n", "derived[0].inputs: expected power"),
        (
            "  - {kind: energy, inputs: {power: mains.power}, interval: 1h}\n",
            "derived[0].interval: expected no such key",
        ),
        (
            "  - {kind: energy, inputs: {power: mains.power}, period: 0.5s}\n",
            "derived[0].period: expected at least 1s",
        ),
        ("  - {name: dust, kind: us_aqi, inputs: {pm10: dust.pm10}}\n", "a stream name not used by a sensor"),
        (
            "  - {kind: us_aqi, inputs: {pm10: dust.pm10}}\n  - {kind: us_aqi, inputs: {pm10: dust.pm10}}\n",
            "derived[1].name: expected a stream name not used by another derived stream",
        ),
        (
            "  - {kind: us_aqi, inputs: {pm10: dust.pm10}, channels: {aqi_pm2_5: {}}}\n",
            "derived[0].channels.aqi_pm2_5: expected a channel us_aqi gives here (aqi, aqi_pm10, pm10_nowcast)",
        ),
        ("  - {kind: us_aqi, inputs: {pm10: dust.pm10}, sim: {speed: 0.5}}\n", "derived[0].sim.speed"),
    ],
)
def test_a_derived_stream_that_cannot_work_is_refused_by_key_path(derived, says):
    with pytest.raises(ConfigError) as exc:
        config(derived)
    assert says in str(exc.value) and str(exc.value).startswith("node.yaml: derived")


def test_derived_must_be_a_list():
    with pytest.raises(ConfigError, match="derived: expected a list of derived streams"):
        parse_config(yaml.safe_load(SENSORS + "derived: {kind: us_aqi}\n"), "node.yaml")


# AirNow's NowCast example, oldest hour first: 17.4 µg/m³ (tests/test_aqi.py)
EXAMPLE = [50, 80, 75, 90, 82, 53, 64, 74, 21, 10, 16, 13]


def aqi_stream(derived: str = "  - {kind: us_aqi, inputs: {pm2_5: dust.pm2_5}}\n") -> DerivedStream:
    cfg = config(derived)
    return DerivedStream(cfg.derived[0], {s.name: s.interval for s in cfg.sensors})


def last(stream: DerivedStream, channel: str) -> tuple[float, float, int]:
    got = stream.channels[channel].last
    assert got is not None, channel
    return got


def test_the_nowcast_of_a_day_fed_minute_by_minute_is_the_epa_example():
    s = aqi_stream()
    for minute in range(12 * 60):
        s.observe("pm2_5", minute * 60 + 30.0, float(EXAMPLE[minute // 60]), 0)
    s.observe("pm2_5", 12 * 3600 + 30.0, 13.0, 0)  # the next reading makes the point due at 12 h
    assert last(s, "pm2_5_nowcast") == (43200.0, 17.4, 0)
    assert last(s, "aqi_pm2_5")[1] == last(s, "aqi")[1] == aqi.sub_index("pm2_5", 17.4) == 66
    # a point a minute once 2 of the 3 most recent hours hold three quarters of their
    # minutes: from 1 h 45 min on, none before
    assert s.skipped == 104 and s.points == 12 * 60 - 104
    data = s.channels["pm2_5_nowcast"].take(0)
    assert data is not None and len(data.times_ms) == s.points and data.times_ms[-1] == 43_200_000


def test_hours_missing_stop_the_points_until_two_of_three_are_back():
    s = aqi_stream()
    for minute in range(3 * 60):
        s.observe("pm2_5", minute * 60 + 30.0, 10.0, 0)
    times = []
    for minute in range(5 * 60, 7 * 60):  # 2 hours without a reading, then readings again
        s.observe("pm2_5", minute * 60 + 30.0, 10.0, 0)
        times.append(last(s, "pm2_5_nowcast")[0])
    # points go on while 2 of the 3 most recent hours are valid: to 1 h 15 min after the last
    # reading (the hour before three quarters full), then none until that holds again: the
    # readings' second hour three quarters full, at 6 h 45 min
    assert times[0] == 4 * 3600 + 15 * 60 and set(times[:105]) == {times[0]}
    assert times[105] == 6 * 3600 + 45 * 60 and times[-1] == 7 * 3600 - 60
    assert s.skipped == 104 + 149  # 4 h 16 min to 6 h 44 min


def test_a_point_from_flagged_inputs_only_carries_their_flags():
    s = aqi_stream()
    for second in range(0, 3 * 3600, 20):
        s.observe("pm2_5", float(second), 8.0, 0)
    for second in range(3 * 3600, 3 * 3600 + 60, 20):  # a minute of warming-up samples only
        s.observe("pm2_5", float(second), 500.0, wire.QUALITY_WARMING_UP)
    s.observe("pm2_5", 3 * 3600 + 61.0, 8.0, 0)
    pipe = s.channels["pm2_5_nowcast"]
    assert last(s, "pm2_5_nowcast") == (3 * 3600 + 60.0, 8.0, wire.QUALITY_WARMING_UP)
    assert pipe.flags[-1][1] == wire.QUALITY_WARMING_UP
    s.observe("pm2_5", 3 * 3600 + 125.0, 8.0, 0)
    assert last(s, "pm2_5_nowcast")[2] == 0  # good samples again: no flag


def test_the_humidity_correction_applies_to_each_sample():
    s = aqi_stream(
        "  - {kind: us_aqi, inputs: {pm2_5: dust.pm2_5, humidity: air.humidity}, correction: epa2021}\n"
    )
    s.observe("pm2_5", 1.0, 20.0, 0)  # no humidity yet: left out
    for second in range(2, 3 * 3600 + 5):
        s.observe("humidity", float(second), 60.0, 0)
        s.observe("pm2_5", second + 0.5, 20.0, 0)
    expected = aqi.epa_correction(20.0, 60.0)
    assert last(s, "pm2_5_corrected")[1] == pytest.approx(expected)
    assert last(s, "pm2_5_nowcast")[1] == aqi.truncate(expected, "0.1")


def test_the_aqhi_from_three_hour_means_of_gases_in_ppb():
    cfg = parse_config(
        yaml.safe_load("""\
node: {id: n-1}
mqtt: {broker: "mqtt://127.0.0.1:1883"}
sensors: [{name: dust, type: pmsa003i}]
derived: [{kind: hk_aqhi, inputs: {no2: dust.pm1_0, so2: dust.pm10, o3: dust.pm2_5, pm2_5: dust.pm2_5}}]
"""),
        "node.yaml",
    )
    d = cfg.derived[0]
    # the inputs are given in µg/m³ here; ppb would be converted (PPB_TO_UGM3)
    s = DerivedStream(d, {"dust": 1.0})
    for second in range(0, 3 * 3600 + 70, 10):
        for name, value in (("no2", 120.0), ("so2", 10.0), ("o3", 30.0), ("pm2_5", 35.0)):
            s.observe(name, float(second), value, 0)
    risk = aqhi.total_risk(120.0, 10.0, 30.0, None, 35.0)
    assert last(s, "aqhi_risk")[1] == pytest.approx(risk)
    assert last(s, "aqhi")[1] == aqhi.band(risk) == 5
    assert s.skipped == 134  # until three quarters of the 3 hours held readings


def test_ppb_inputs_are_converted_to_micrograms():
    from edge_agent.config.model import DerivedConfig

    d = config("  - {kind: us_aqi, inputs: {pm10: dust.pm10}}\n").derived[0]
    gas = DerivedConfig(
        "aqhi",
        "hk_aqhi",
        60.0,
        (
            ("no2", "g", "no2", "ppb"),
            ("so2", "g", "so2", "ppb"),
            ("o3", "g", "o3", "ppb"),
            ("pm10", "g", "pm", "µg/m³"),
        ),
        d.channels,
    )
    s = DerivedStream(gas, {"g": 1.0})
    s.observe("no2", 1.0, 10.0, 0)
    assert s.windows["no2"].buckets[-1][1] == pytest.approx(10.0 * aqhi.PPB_TO_UGM3["no2"])


def test_energy_per_period_with_its_carbon():
    cfg = config("  - {kind: energy, inputs: {power: mains.power}, period: 1min, emission_factor: 250}\n")
    s = DerivedStream(cfg.derived[0], {"mains": 2.0})
    for t in range(0, 181, 2):
        s.observe("power", float(t), 3600.0, 0)  # 1 Wh per second
    assert last(s, "energy_period") == (180.0, pytest.approx(60.0), 0)
    assert last(s, "co2e_period")[1] == pytest.approx(15.0)  # 60 Wh at 250 g/kWh
    assert last(s, "uncovered")[1] == pytest.approx(0.0)
    s.observe("power", 300.0, 3600.0, 0)  # 120 s without a reading: a gap, not integrated
    assert last(s, "energy_period") == (300.0, pytest.approx(0.0), 0)
    assert last(s, "uncovered")[1] == pytest.approx(60.0)
    assert s.health() == {"kind": "energy", "points": 5, "skipped": 0, "gaps": 1}


def test_a_window_needs_three_quarters_of_its_buckets():
    w = Window(60.0, 7200.0)
    for minute in range(44):
        w.add(minute * 60.0, 1.0)
    assert w.mean(0.0, 3600.0) is None
    w.add(44 * 60.0, 1.0)
    assert w.mean(0.0, 3600.0) == 1.0
    w.add(3 * 3600.0, 5.0)  # older buckets beyond keep are dropped
    assert w.buckets[0][0] >= 60


def test_a_derived_channel_goes_through_its_own_chain():
    """``channels: {aqi: {deadband: 0}}``: a steady AQI is kept once, not once a minute."""
    s = aqi_stream("  - {kind: us_aqi, inputs: {pm2_5: dust.pm2_5}, channels: {aqi: {deadband: 0}}}\n")
    for minute in range(4 * 60):
        s.observe("pm2_5", minute * 60 + 30.0, 12.0, 0)
    kept = s.channels["aqi"].take(0)
    every = s.channels["aqi_pm2_5"].take(0)
    assert kept is not None and every is not None
    assert len(every.times_ms) == s.points > 100 and len(kept.times_ms) == 1
    assert kept.reconstruction == "hold" and every.reconstruction == "every"
