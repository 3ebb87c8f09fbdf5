"""Driver option declarations (drivers/options.py) and their interpretation (edge_agent/config/options.py)."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from drivers.options import Bool, Choice, Duration, Float, Int, Mapping, Option, keyword, leaves
from drivers.registry import SENSOR_TYPES, SIMULATORS
from edge_agent.config import parse_config
from edge_agent.config.document import Document
from edge_agent.config.options import parse_options
from edge_agent.config.sensors import _SENSOR_KEYS
from edge_agent.durations import parse_duration
from edge_agent.errors import ConfigError


def node(sensor: dict) -> dict:
    return {"node": {"id": "n"}, "mqtt": {"broker": "mqtt://127.0.0.1"}, "sensors": [sensor]}


@pytest.mark.parametrize("stype", sorted(SENSOR_TYPES))
def test_each_driver_declares_well_formed_options(stype):
    driver = SENSOR_TYPES[stype]
    assert not set(driver.OPTIONS) & _SENSOR_KEYS, "an option may not shadow a common sensor key"
    if driver.BUS == "i2c":
        assert not driver.ADDRESSES or driver.DEFAULT_ADDRESS in driver.ADDRESSES
        assert all(0x08 <= a <= 0x77 for a in driver.ADDRESSES)
    for path, option in leaves(driver.OPTIONS):
        assert isinstance(option, (Int, Float, Bool, Choice, Duration)), path
        assert option.doc, f"{stype}: {'.'.join(path)} has no doc line for the user"
        if isinstance(option, Duration):
            assert option.unit in ("s", "ms")
            parse_duration(option.default)  # a duration as people write them
        if isinstance(option, Choice):
            assert option.default in option.choices


@pytest.mark.parametrize("stype", sorted(SENSOR_TYPES))
def test_declared_defaults_load_and_match_the_constructors(stype):
    """A sensor block with no options gets the declared defaults, and those are the
    driver's own keyword defaults: a driver built without a configuration agrees."""
    cfg = parse_config(node({"type": stype}), "t.yaml")
    kwargs = cfg.sensors[0].driver_kwargs()
    driver = SENSOR_TYPES[stype]
    assert set(kwargs) == {keyword(p, o) for p, o in leaves(driver.OPTIONS)}
    params = inspect.signature(driver.__init__).parameters
    for key, value in kwargs.items():
        assert key in params and params[key].kind is inspect.Parameter.KEYWORD_ONLY, key
        assert params[key].default == value, (key, params[key].default, value)
    SIMULATORS[stype](cfg.sensors[0].sim, **kwargs)  # the simulator takes the same keywords


def test_mapping_fields_become_keywords_named_by_their_path():
    declared = {
        "heater": Mapping(
            temperature=Int(320, 200, 400), duration=Duration("150ms", unit="ms", keyword="heater_ms")
        )
    }
    assert parse_options(Document("t"), declared, {}, "s") == (
        ("heater_temperature", 320),
        ("heater_ms", 150.0),
    )
    got = parse_options(Document("t"), declared, {"heater": {"duration": "2s"}}, "s")
    assert got == (("heater_temperature", 320), ("heater_ms", 2000.0))


DECLARED: dict[str, Option] = {
    "gain": Int(1, 1, 16),
    "shunt": Float(0.1, min=0.0, min_exclusive=True),
    "on": Bool(True),
    "mode": Choice("fast", ("fast", "slow")),
    "settle": Duration("10ms", min="1ms", max="1s", unit="ms"),
    "block": Mapping(depth=Float(2.0, max=10.0)),
}


@pytest.mark.parametrize(
    "given, path, expected",
    [
        ({"gain": 17}, "s.gain", "an integer in [1, 16], got 17"),
        ({"gain": 2.5}, "s.gain", "an integer, got 2.5"),
        ({"shunt": 0}, "s.shunt", "a number in (0.0, inf], got 0"),
        ({"shunt": "0.1"}, "s.shunt", "a number, got '0.1'"),
        ({"on": "yes"}, "s.on", "true or false, got 'yes'"),
        ({"on": 2}, "s.on", "true or false, got 2"),
        ({"mode": "medium"}, "s.mode", "one of fast, slow, got 'medium'"),
        ({"settle": "2s"}, "s.settle", "a duration of at most 1s, got '2s'"),
        ({"settle": "500us"}, "s.settle", "expected a duration"),
        ({"settle": 0}, "s.settle", "a duration of at least 1ms, got 0"),
        ({"block": {"depth": 11}}, "s.block.depth", "a number in [-inf, 10.0], got 11"),
        ({"block": {"width": 1}}, "s.block.width", "no such key (allowed: depth)"),
        ({"block": 3}, "s.block", "a mapping, got 3"),
    ],
)
def test_option_errors_name_the_key_path_and_the_expectation(given, path, expected):
    with pytest.raises(ConfigError) as err:
        parse_options(Document("t.yaml"), DECLARED, given, "s")
    msg = str(err.value)
    assert msg.startswith(f"t.yaml: {path}: "), msg
    assert expected in msg, msg


def test_option_values_reach_the_driver_in_its_types_and_units():
    got = dict(
        parse_options(
            Document("t"),
            DECLARED,
            {"gain": 4, "shunt": 1, "on": 0, "mode": "slow", "settle": "0.25s", "block": {"depth": 3}},
            "s",
        )
    )
    assert got == {"gain": 4, "shunt": 1.0, "on": False, "mode": "slow", "settle": 250.0, "block_depth": 3.0}
    assert [type(v) for v in got.values()] == [int, float, bool, str, float, float]


def test_the_configuration_reference_names_every_type_and_option():
    text = (Path(__file__).resolve().parent.parent / "docs" / "configuration.md").read_text()
    for stype, driver in SENSOR_TYPES.items():
        assert f"`{stype}`" in text, stype
        for path, _ in leaves(driver.OPTIONS):
            assert path[-1] in text, (stype, path)
