"""Configuration: valid files load into frozen objects; every error names file, key path and expectation."""

from __future__ import annotations

import dataclasses

import pytest
import yaml
from config_data import GOOD, write

from edge_agent.config import default_node_yaml, load_config, with_overrides
from edge_agent.errors import ConfigError


def test_good_file_loads_into_frozen_typed_objects(tmp_path):
    cfg = load_config(write(tmp_path, GOOD))
    assert cfg.node_id == "lamp-0042"
    assert cfg.flush_interval == 30.0
    assert cfg.mqtt.broker.tls and cfg.mqtt.broker.port == 8883 and cfg.mqtt.topic_prefix == "city/north"
    (air,) = cfg.sensors
    assert (air.name, air.address, air.interval) == ("air", 0x76, 2.0)
    names = [c.name for c in air.channels]
    assert names == ["temperature", "humidity", "pressure"]  # gas disabled
    temp = air.channels[0]
    assert temp.resolution == 0.1
    assert temp.chain_spec() == [("median", 5.0), ("ema", 0.3), ("deadband", 0.1, 0.0, 0.0)]
    assert temp.error_bound == pytest.approx(0.1 + 0.05)
    assert air.channels[1].chain_spec() == [("median", 5.0), ("ema", 0.3)]
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.node_id = "other"
    assert cfg.groups == ()


def test_node_groups_are_kept_in_their_order(tmp_path):
    doc = yaml.safe_load(GOOD)
    doc["node"]["groups"] = ["district-7", "pilot.2026", "lamps_led"]
    assert load_config(write(tmp_path, yaml.safe_dump(doc))).groups == (
        "district-7",
        "pilot.2026",
        "lamps_led",
    )


def test_builtin_default_node_has_one_simulated_bme680():
    cfg = load_config(None)
    assert [(s.type, s.name) for s in cfg.sensors] == [("bme680", "bme680")]
    assert cfg.flush_interval == 10.0
    assert cfg.mqtt.broker.url == "mqtt://127.0.0.1:1883"
    assert set(cfg.sensors[0].sim) == {"temperature", "humidity", "pressure", "gas"}
    assert yaml.safe_load(default_node_yaml())["node"]["id"].startswith("sim-")


@pytest.mark.parametrize(
    "mutate, path, expected",
    [
        (
            lambda d: d["sensors"][0]["filters"][0].update(window=0),
            "sensors[0].filters[0].window",
            "an integer in [1, 255]",
        ),
        (
            lambda d: d["sensors"][0]["filters"][1].update(alpha="fast"),
            "sensors[0].filters[1].alpha",
            "a number",
        ),
        (
            lambda d: d["sensors"][0]["filters"].append({"type": "wavelet"}),
            "sensors[0].filters[2].type",
            "one of calibrate, range, hampel, median, mean, ema, kalman, throttle, deadband, swing",
        ),
        (
            lambda d: d["sensors"][0]["filters"].append({"type": "hampel", "window": 6}),
            "sensors[0].filters[2].window",
            "an odd window",
        ),
        (
            lambda d: d["sensors"][0]["filters"].insert(0, {"type": "swing", "deviation": 0.1}),
            "sensors[0].filters[0]",
            "only as the last filter",
        ),
        (
            lambda d: d["sensors"][0]["filters"].append({"type": "range", "low": 5, "high": 1}),
            "sensors[0].filters[2].high",
            "at least low",
        ),
        (
            lambda d: d["sensors"][0]["filters"].append({"type": "kalman", "process_noise": 0.1}),
            "sensors[0].filters[2].measurement_noise",
            "this key to be present",
        ),
        (
            lambda d: d["sensors"][0]["channels"].update(humidity={"deadband": 1, "swing": 1}),
            "sensors[0].channels.humidity",
            "one of deadband, swing or bound",
        ),
        (lambda d: d.update(flush_interval="10 parsecs"), "flush_interval", "expected a duration"),
        (lambda d: d.update(colour="blue"), "colour", "no such key"),
        (lambda d: d["sensors"][0].update(adress=0x76), "sensors[0].adress", "no such key"),
        (
            lambda d: d["sensors"][0]["channels"].update(co2={}),
            "sensors[0].channels.co2",
            "a channel of bme680",
        ),
        (lambda d: d["sensors"][0].update(type="bme999"), "sensors[0].type", "one of bme680"),
        (lambda d: d["node"].update(id="lamp/42"), "node.id", "a node id"),
        (lambda d: d["mqtt"].update(broker="http://x"), "mqtt.broker", "a broker URL"),
        (lambda d: d["mqtt"].update(broker="mqtt://10.0.0.5"), "mqtt.broker", "allow_insecure"),
        (lambda d: d["mqtt"].update(protocol=4), "mqtt.protocol", "5 or 3.1.1"),
        (lambda d: d["mqtt"].update(wire_version=1), "mqtt.wire_version", "2, 3 or 4, got 1"),
        (lambda d: d["mqtt"].update(wire_version=5), "mqtt.wire_version", "2, 3 or 4, got 5"),
        (lambda d: d["mqtt"].update(wire_version=4.0), "mqtt.wire_version", "2, 3 or 4, got 4.0"),
        (lambda d: d["mqtt"].update(wire_version=True), "mqtt.wire_version", "2, 3 or 4, got True"),
        (lambda d: d["mqtt"].update(no_subscribers="drop"), "mqtt.no_subscribers", "hold or delete"),
        (lambda d: d["mqtt"].update(no_subscribers=["hold"]), "mqtt.no_subscribers", "hold or delete"),
        (lambda d: d["sensors"].append(dict(d["sensors"][0])), "sensors[1].name", "not used by another"),
        (lambda d: d.update(sensors=[]), "sensors", "a non-empty list"),
        (lambda d: d["sensors"][0].update(address=0x99), "sensors[0].address", "[8, 119]"),
        (
            lambda d: d["sensors"][0].update(address=0x40),
            "sensors[0].address",
            "one of the bme680's addresses (0x76, 0x77), got 0x40",
        ),
        (
            lambda d: d["sensors"].append({"type": "ina226", "address": 0x76}),
            "sensors[1].address",
            "one of the ina226's addresses (0x40..0x4f), got 0x76",
        ),
        # the driver's declared options (drivers/bme680.py OPTIONS): bounds, types, unknown keys
        (
            lambda d: d["sensors"][0].update(heater={"temperature": 450}),
            "sensors[0].heater.temperature",
            "an integer in [200, 400], got 450",
        ),
        (
            lambda d: d["sensors"][0].update(heater={"duration": "5s"}),
            "sensors[0].heater.duration",
            "a duration of at most 4032ms, got '5s'",
        ),
        (
            lambda d: d["sensors"][0].update(heater={"temperature": "hot"}),
            "sensors[0].heater.temperature",
            "an integer, got 'hot'",
        ),
        (
            lambda d: d["sensors"][0].update(heater={"temp": 300}),
            "sensors[0].heater.temp",
            "no such key (allowed: duration, temperature)",
        ),
        (lambda d: d["sensors"][0].update(heater=320), "sensors[0].heater", "a mapping, got 320"),
        (lambda d: d["sensors"][0].update(shunt_ohms=0.1), "sensors[0].shunt_ohms", "no such key"),
        (
            lambda d: d["sensors"].append({"name": "mains", "type": "ina226", "shunt_ohms": 0}),
            "sensors[1].shunt_ohms",
            "a number in (0.0, inf], got 0",
        ),
        (
            lambda d: d["sensors"].append({"name": "mains", "type": "ina226", "heater": {}}),
            "sensors[1].heater",
            "no such key",
        ),
        (lambda d: d["sensors"].append({"type": "scd4x", "asc": "yes"}), "sensors[1].asc", "true or false"),
        (lambda d: d["sensors"].append({"type": "s0", "pin": 40}), "sensors[1].pin", "an integer in [0, 27]"),
        (
            lambda d: d["sensors"].append({"type": "s0", "address": 0x40}),
            "sensors[1].address",
            "no address for a GPIO device",
        ),
        # sim: names the simulator's inputs, which for an INA226 are not all its channels
        (
            lambda d: d["sensors"].append({"type": "ina226", "sim": {"power": 100}}),
            "sensors[1].sim.power",
            "no such key (allowed: absent, bus_voltage, current)",
        ),
        # values that once passed and then broke the agent (issue 14)
        (
            lambda d: d["sensors"][0].update(type=["bme680"]),
            "sensors[0].type",
            "one of bme680, ina219, ina226, pmsa003i, s0, scd4x, got ['bme680']",
        ),
        (
            lambda d: d["mqtt"].update(keepalive=100000),
            "mqtt.keepalive",
            "a duration of at most 65535s (MQTT's limit), got 100000",
        ),
        (lambda d: d.update(flush_interval=10**400), "flush_interval", "a duration of at most 3650d"),
        (lambda d: d.update(store={"max_size": 10**400}), "store.max_size", "a size of at most 8PiB"),
        (lambda d: d["mqtt"].update(broker="mqtt://10.0.0.1:0"), "mqtt.broker", "a broker port is 1..65535"),
        (lambda d: d["mqtt"].update(client_id="node\x00x"), "mqtt.client_id", "no control characters"),
        (lambda d: d["mqtt"].update(client_id="x" * 65536), "mqtt.client_id", "at most 65535 bytes"),
        (lambda d: d["mqtt"].update(username="a\tb"), "mqtt.username", "no control characters"),
        (lambda d: d["mqtt"].update(topic_prefix="city\x00"), "mqtt.topic_prefix", "no control characters"),
        (lambda d: d["mqtt"].update(topic_prefix="c" * 1025), "mqtt.topic_prefix", "at most 1024 bytes"),
        # node.groups: the names signed fleet objects may target (docs/fleet.md)
        (lambda d: d["node"].update(groups="district-7"), "node.groups", "a list of group names"),
        (lambda d: d["node"].update(groups=["district 7"]), "node.groups[0]", "a group name of letters"),
        (lambda d: d["node"].update(groups=["a", ["b"]]), "node.groups[1]", "a group name of letters"),
        (lambda d: d["node"].update(groups=["a", "b", "a"]), "node.groups[2]", "a group not already listed"),
        (lambda d: d["node"].update(group=["a"]), "node.group", "no such key (allowed: groups, id)"),
    ],
)
def test_errors_name_file_key_path_and_expectation(tmp_path, mutate, path, expected):
    doc = yaml.safe_load(GOOD)
    mutate(doc)
    p = write(tmp_path, yaml.safe_dump(doc))
    with pytest.raises(ConfigError) as err:
        load_config(p)
    msg = str(err.value)
    assert msg.startswith(f"{p}: {path}:"), msg
    assert expected in msg


def test_driver_options_reach_the_driver_as_its_keywords(tmp_path):
    doc = yaml.safe_load(GOOD)
    doc["sensors"][0]["heater"] = {"temperature": 300, "duration": "1s"}
    doc["sensors"].append({"name": "co2", "type": "scd4x", "asc": 0})
    cfg = load_config(write(tmp_path, yaml.safe_dump(doc)))
    assert cfg.sensor("air").driver_kwargs() == {"heater_temp": 300, "heater_ms": 1000.0}
    assert cfg.sensor("co2").driver_kwargs() == {"asc": False}
    assert load_config(write(tmp_path, GOOD)).sensor("air").driver_kwargs() == {
        "heater_temp": 320,
        "heater_ms": 150.0,
    }


def test_every_filter_type_loads_into_a_chain_spec(tmp_path):
    doc = yaml.safe_load(GOOD)
    doc["sensors"][0]["filters"] = [
        {"type": "calibrate", "offset": -0.5, "scale": 1.01},
        {"type": "calibrate", "coefficients": [0, 1, 0.001]},
        {"type": "range", "low": -40, "high": 85, "action": "clamp"},
        {"type": "hampel", "window": 7, "k": 3},
        {"type": "median", "window": 5},
        {"type": "mean", "window": 4},
        {"type": "ema", "alpha": 0.3},
        {"type": "kalman", "process_noise": 0.01, "measurement_noise": 0.5},
        {"type": "throttle", "interval": "2s"},
        {"type": "swing", "deviation": 0.05, "max_interval": "5min"},
    ]
    doc["sensors"][0]["channels"] = {"humidity": {"deadband": 0.2}}
    cfg = load_config(write(tmp_path, yaml.safe_dump(doc)))
    temp, hum = cfg.sensors[0].channels[:2]
    assert temp.chain_spec() == [
        ("calibrate", -0.5, 1.01),
        ("calibrate", 0.0, 1.0, 0.001),
        ("range", -40.0, 85.0, 1.0),
        ("hampel", 7.0, 3.0),
        ("median", 5.0),
        ("mean", 4.0),
        ("ema", 0.3),
        ("kalman", 0.01, 0.5),
        ("throttle", 2.0),
        ("swing", 0.05, 300.0),
    ]
    assert temp.error_bound == pytest.approx(0.05 + 0.005)
    assert hum.chain_spec()[-1] == ("deadband", 0.2, 0.0, 0.0)  # replaces the swing for this channel
    from edge_agent import dsp

    dsp.Chain(temp.chain_spec())  # the core takes it


def test_plaintext_remote_broker_allowed_only_when_asked(tmp_path):
    doc = yaml.safe_load(GOOD)
    doc["mqtt"].update(broker="mqtt://10.0.0.5", allow_insecure=True)
    assert load_config(write(tmp_path, yaml.safe_dump(doc))).mqtt.broker.host == "10.0.0.5"


def test_yaml_syntax_error_names_line(tmp_path):
    p = write(tmp_path, "node: {id: x\nmqtt: [\n")
    with pytest.raises(ConfigError, match=rf"^{p}: not valid YAML at line \d+, column \d+"):
        load_config(p)


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.yaml")


def test_overrides_are_validated(tmp_path):
    cfg = load_config(write(tmp_path, GOOD))
    cfg2 = with_overrides(cfg, broker="mqtt://127.0.0.1:1999", flush_interval="2s", state_dir="/tmp/s")
    assert (cfg2.mqtt.broker.port, cfg2.flush_interval, cfg2.state_dir) == (1999, 2.0, "/tmp/s")
    with pytest.raises(ConfigError, match="--flush-interval"):
        with_overrides(cfg, flush_interval="soon")
    with pytest.raises(ConfigError, match="allow_insecure"):
        with_overrides(cfg, broker="mqtt://192.0.2.1")
