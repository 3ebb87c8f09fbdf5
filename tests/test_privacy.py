"""Privacy levels (docs/privacy.md): the ``privacy:`` block and its errors, a private
channel's period statistics (node/privacy.py), the wire's level bits and statistic names,
check-config's warning and the health message's levels."""

from __future__ import annotations

import json

import pytest
import spec_decoder
import yaml

from edge_agent import wire
from edge_agent.cli import main
from edge_agent.config import parse_config
from edge_agent.config.model import ChannelConfig, PrivacyConfig
from edge_agent.errors import ConfigError, WireFormatError
from edge_agent.node.privacy import PeriodStats

BASE = """\
node: {id: flat-7}
mqtt: {broker: "mqtt://127.0.0.1:1883"}
sensors:
  - name: mains
    type: ina226
    shunt_ohms: 0.002
    max_current: 20
"""


def config(extra: str = "", derived: str = ""):
    return parse_config(yaml.safe_load(BASE + extra + derived), "node.yaml")


def error_of(extra: str, derived: str = "") -> str:
    with pytest.raises(ConfigError) as exc:
        config(extra, derived)
    return str(exc.value)


# 1. The configuration


def test_raw_is_the_default_and_levels_take_their_default_periods():
    assert config().sensors[0].privacy is None
    assert config("    privacy: {level: raw}\n").sensors[0].privacy is None
    agg = config("    privacy: {level: aggregate}\n").sensors[0].privacy
    total = config("    privacy: {level: total}\n").sensors[0].privacy
    assert agg == PrivacyConfig("aggregate", 900.0, (), 4.0)  # 15 min; max_gap 3 intervals + 1 s
    assert total is not None and (total.level, total.period) == ("total", 86400.0)


def test_round_is_one_step_for_every_channel_or_a_step_per_channel():
    one = config("    privacy: {level: aggregate, period: 1h, round: 0.1}\n").sensors[0].privacy
    assert one is not None and dict(one.rounding)["power"] == 0.1 and dict(one.rounding)["current"] == 0.1
    each = config("    privacy: {level: total, round: {power: 100}}\n").sensors[0].privacy
    assert each is not None and each.rounding == (("power", 100.0),)


@pytest.mark.parametrize(
    ("extra", "where", "what"),
    [
        ("    privacy: {level: secret}\n", "sensors[0].privacy.level", "one of raw, aggregate, total"),
        ("    privacy: {period: 1h}\n", "sensors[0].privacy.level", "present"),
        ("    privacy: {level: raw, period: 1h}\n", "sensors[0].privacy.period", "no period at level raw"),
        ("    privacy: {level: aggregate, period: 30s}\n", "sensors[0].privacy.period", "at least 1min"),
        ("    privacy: {level: total, round: {gas: 1}}\n", "sensors[0].privacy.round.gas", "no such key"),
        ("    privacy: {level: total, round: 0}\n", "sensors[0].privacy.round", ""),
        (
            "    privacy: {level: aggregate}\n    channels: {power: {deadband: 1}}\n",
            "sensors[0].privacy",
            "deadband",
        ),
        (
            "    privacy: {level: total}\n    channels: {power: {enabled: false}, energy: {enabled: false}}\n",
            "sensors[0].privacy.level",
            "have no total: use aggregate",
        ),
    ],
)
def test_a_bad_privacy_block_is_named_by_its_key_path(extra, where, what):
    msg = error_of(extra)
    assert f"node.yaml: {where}: expected" in msg and what in msg


DERIVED = """\
derived:
  - {{name: use, kind: energy, inputs: {{power: mains.power}}{more}}}
"""


def test_a_derived_stream_of_a_private_input_must_be_as_private():
    private = "    privacy: {level: aggregate, period: 1h}\n"
    for more in ("", ", privacy: {level: aggregate, period: 30min}"):
        msg = error_of(private, DERIVED.format(more=more))
        assert "derived[0].privacy: expected a privacy level of at least aggregate over 3600s" in msg
        assert "mains.power is private" in msg
    cfg = config(private, DERIVED.format(more=", privacy: {level: total, period: 1d}"))
    assert cfg.derived[0].privacy is not None and cfg.derived[0].privacy.level == "total"
    assert config("", DERIVED.format(more="")).derived[0].privacy is None  # a raw input: raw is allowed


# 2. A channel's periods


def stats(level: str, name: str = "power", unit: str = "W", period: float = 60.0, **kw) -> PeriodStats:
    cfg = ChannelConfig(name, unit, 0.001, ())
    return PeriodStats(cfg, PrivacyConfig(level, period, kw.get("rounding", ()), kw.get("max_gap", 4.0)))


def values(ps: PeriodStats) -> dict[str, list[float]]:
    return {c.name: c.values() for c in ps.take(0)}


def test_aggregate_gives_mean_min_max_count_per_period_stamped_at_its_end():
    ps = stats("aggregate")
    for t in range(181):  # 0..180 s at 1 Hz: three whole periods, a fourth just opened
        ps.add(float(t), 100.0 + (t % 60))
    out = {c.name: (c.times_ms, c.values()) for c in ps.take(5)}
    assert sorted(out) == ["power.count", "power.max", "power.mean", "power.min"]
    assert out["power.mean"] == ((60_005, 120_005, 180_005), [129.5] * 3)
    assert out["power.min"][1] == [100.0] * 3 and out["power.max"][1] == [159.0] * 3
    assert out["power.count"][1] == [60.0] * 3
    assert ps.take(0) == ()  # taken: the open period stays open, unsent


def test_total_of_power_is_its_integral_in_wh_and_of_a_counter_its_increase():
    power, counter = stats("total"), stats("total", "energy", "Wh")
    for t in range(121):
        power.add(float(t), 3600.0)  # 1 Wh a second
        counter.add(float(t), 1000.0 + 2.0 * t)  # 2 Wh a second
    (p,) = power.take(0)
    (e,) = counter.take(0)
    assert (p.name, p.unit, p.values()) == ("power.total", "Wh", [60.0, 60.0])
    assert (e.name, e.unit, e.values()) == ("energy.total", "Wh", [118.0, 120.0])  # from the first reading


def test_a_counter_that_goes_back_adds_nothing():
    ps = stats("total", "energy", "Wh")
    for t, v in ((0, 50.0), (10, 60.0), (20, 3.0), (30, 8.0), (65, 9.0)):
        ps.add(float(t), v)
    assert values(ps) == {}  # 30 s covered of 60 is enough, but 30..65 is a gap: nothing closed covered
    ps = stats("total", "energy", "Wh", max_gap=40.0)
    for t, v in ((0, 50.0), (10, 60.0), (20, 3.0), (30, 8.0), (65, 9.0)):
        ps.add(float(t), v)
    assert values(ps) == {"energy.total": [15.0]}  # +10, reset, +5; the +1 at 65 s is the next period's


def test_a_period_seen_for_less_than_half_of_it_is_dropped_not_sent():
    ps = stats("aggregate")
    for t in range(35, 130):  # the first period seen for 25 s of 60: dropped
        ps.add(float(t), 7.0)
    assert values(ps) == {"power.mean": [7.0], "power.min": [7.0], "power.max": [7.0], "power.count": [60.0]}
    assert ps.health() == {"periods": 1, "dropped": 1}


def test_round_coarsens_in_the_unit_sent():
    ps = stats("total", rounding=(("power", 5.0),))
    for t in range(61):
        ps.add(float(t), 3600.0 + 7 * 60)  # 67 Wh in the period
    (p,) = ps.take(0)
    assert p.resolution == 5.0 and p.values() == [65.0]


# 3. The wire


def private_batch(level: str, names: tuple[str, ...]) -> wire.Batch:
    channels = tuple(wire.ChannelData(n, "W", 0.1, (900_000,), (1234,)) for n in names)
    flags = wire.LEVELS.index(level) << wire.FLAG_LEVEL_SHIFT
    return wire.Batch("n", "mains", 0, 900_000, channels, flags=flags, period_ms=900_000)


@pytest.mark.parametrize("version", [2, 3, 4])
def test_the_level_and_period_travel_and_old_decoders_read_the_channels_by_name(version):
    payload = wire.encode(private_batch("total", ("power.total",)), version=version)
    b = wire.decode(payload)
    assert (b.privacy, b.period_ms, b.channels[0].name) == ("total", 900_000, "power.total")
    assert next(b.rows())["privacy"] == "total" and next(b.rows())["period"] == 900.0
    doc = spec_decoder.decode(payload)
    assert doc["privacy"] == "total" and doc["flags"] == 0
    # a decoder from before the level bits ignores them (reserved): the layout does not depend
    # on them, so it reads the same channels, by name, as the payload without them
    assert payload[3] & wire.FLAG_LEVEL_MASK == 0x10
    old = bytearray(payload[:-4])
    old[3] &= ~wire.FLAG_LEVEL_MASK
    old += wire.kernels.crc32c(bytes(old)).to_bytes(4, "little")
    seen = wire.decode(bytes(old))
    assert seen.privacy == "raw" and seen.channels == b.channels and seen.period_ms == 900_000


def test_statistic_names_must_match_the_level_both_ways():
    with pytest.raises(ValueError, match=r"power.* is not BASE\.STATISTIC"):
        wire.encode(private_batch("aggregate", ("power",)))
    with pytest.raises(ValueError, match="with a statistic of total"):
        wire.encode(private_batch("total", ("power.mean",)))
    with pytest.raises(ValueError, match="needs version 2 or later"):
        wire.encode_v1(private_batch("total", ("power.total",)))
    good = wire.encode(private_batch("aggregate", ("power.mean",)), deflate=False)
    name_at = good.index(b"power.mean")
    bad = bytearray(good[:-4])
    bad[name_at : name_at + 10] = b"power_mean"
    bad += wire.kernels.crc32c(bytes(bad)).to_bytes(4, "little")
    with pytest.raises(WireFormatError, match=r"is not BASE\.STATISTIC"):
        wire.decode(bytes(bad))
    with pytest.raises(ValueError, match="no statistic"):
        spec_decoder.decode(bytes(bad))
    level3 = bytearray(good[:-4])
    level3[3] |= 0x18
    level3 += wire.kernels.crc32c(bytes(level3)).to_bytes(4, "little")
    with pytest.raises(WireFormatError, match="byte 3: flags: privacy level 3"):
        wire.decode(bytes(level3))
    with pytest.raises(ValueError, match="privacy level 3"):
        spec_decoder.decode(bytes(level3))


def test_marking_historical_and_restamping_keep_the_level():
    payload = wire.encode(private_batch("aggregate", ("power.mean", "power.count")))
    b = wire.decode(wire.mark_historical(payload))
    assert b.privacy == "aggregate" and b.flags & wire.FLAG_HISTORICAL
    assert wire.decode(wire.encode(wire.restamp(b, 1000))).privacy == "aggregate"


# 4. check-config and the health message


def test_check_config_warns_about_power_sent_raw_and_not_once_private(tmp_path, capsys):
    raw = tmp_path / "raw.yaml"
    raw.write_text(BASE + DERIVED.format(more=""))
    assert main(["check-config", "--json", str(raw)]) == 0
    warnings = json.loads(capsys.readouterr().out)["warnings"]
    assert len(warnings) == 2
    assert warnings[0].startswith("sensors[0] (mains) sends power, energy raw")
    assert "sensors[0].privacy: {level: aggregate}" in warnings[0]
    assert warnings[1].startswith("derived[0] (use) sends energy_period raw")
    private = tmp_path / "private.yaml"
    private.write_text(
        BASE + "    privacy: {level: total}\n" + DERIVED.format(more=", privacy: {level: total}")
    )
    assert main(["check-config", "--json", str(private)]) == 0
    assert json.loads(capsys.readouterr().out)["warnings"] == []


def test_a_private_derived_energy_stream_sums_its_periods_into_the_privacy_period():
    from edge_agent.node.derived import DerivedStream

    cfg = config(
        "    privacy: {level: total, period: 1h}\n",
        "derived:\n  - {name: use, kind: energy, period: 1min, emission_factor: 500, inputs: {power: mains.power},"
        " privacy: {level: total, period: 1h}}\n",
    )
    stream = DerivedStream(cfg.derived[0], {"mains": 1.0})
    # 3600 W: 60 Wh a minute; the point at 3600 s is the first hour's, the one at 7260 s closes the second
    for t in range(2 * 3600 + 61):
        stream.observe("power", float(t), 3600.0, 0)
    out = {c.name: (c.unit, c.times_ms, c.values()) for p in stream.channels.values() for c in p.take_all(0)}
    assert out["energy_period.total"] == ("Wh", (3_600_000, 7_200_000), [3600.0, 3600.0])
    assert out["co2e_period.total"] == ("g", (3_600_000, 7_200_000), [1800.0, 1800.0])
    assert out["uncovered.total"][2] == [0.0, 0.0]
