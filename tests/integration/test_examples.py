"""examples/: every node configuration a user starts from is valid, and its sensors come up
on the simulation with the options as written."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
from gpiozero.pins.mock import MockFactory
from helpers import REPO, agent_cmd, free_port, stop_agent, wait_for_log

from drivers.bus import I2CBus
from drivers.registry import SENSOR_TYPES, SIMULATORS
from drivers.sim.bus import SimulatedSMBus
from edge_agent.config import load_config

EXAMPLES = REPO / "examples"
FILES = sorted(EXAMPLES.glob("*.yaml"))


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "edge_agent.cli", *args], capture_output=True, text=True, timeout=60
    )


def test_the_examples_are_there_and_the_readme_names_each():
    names = {p.name for p in FILES}
    assert {"air-quality-lamp-post.yaml", "power-node.yaml", "production-uplink.yaml"} <= names
    readme = (EXAMPLES / "README.md").read_text()
    assert all(name in readme for name in names)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_check_config_passes(path):
    out = cli("check-config", str(path))
    assert out.returncode == 0, out.stderr
    assert f"{path}: valid" in out.stdout


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_every_sensor_comes_up_on_the_simulation_with_its_options(path):
    """Each sensor's driver is built on its simulator with the keywords the options give,
    and one reading names only the sensor's channels."""
    cfg = load_config(path)
    pins = MockFactory()
    for s in cfg.sensors:
        cls = SENSOR_TYPES[s.type]
        sim = SIMULATORS[s.type](s.sim, **s.driver_kwargs())
        if cls.BUS == "gpio":
            sim.start(pins)
            driver = cls(pin_factory=pins, **s.driver_kwargs())
        else:
            sm = SimulatedSMBus()
            sm.attach(s.address, sim)
            driver = cls(bus=I2CBus(sm, name="sim"), address=s.address, **s.driver_kwargs())
        try:
            reading = driver.read()
        finally:
            driver.close()
            if cls.BUS == "gpio":
                sim.stop()
        assert set(reading.values) <= {c.name for c in cls.CHANNELS}, s.name


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_probe_finds_every_i2c_sensor_on_the_simulated_buses(path):
    cfg = load_config(path)
    out = cli("probe", "--simulate", "--config", str(path), "--json")
    assert out.returncode == 0, out.stderr
    found = {(f["bus"], int(f["address"], 16)): f["chip"] for f in json.loads(out.stdout)}
    wanted = {(s.bus, s.address): s.type for s in cfg.sensors if SENSOR_TYPES[s.type].BUS == "i2c"}
    assert set(found) == set(wanted)
    assert all(found[k] in (t, None) for k, t in wanted.items())  # None: a chip probe cannot name


@pytest.mark.parametrize("name", ["air-quality-lamp-post.yaml", "power-node.yaml"])
def test_the_agent_runs_the_example_simulated(tmp_path, name):
    """`edge-agent run --simulate` on the file as it is (only the broker, unreachable here, the
    state directory and a short flush interval from the command line): every sensor comes up
    and seals a batch (the SCD4x gives its first result after 5 s)."""
    path = EXAMPLES / name
    streams = {s.name for s in load_config(path).sensors}
    err = tmp_path / "agent.err"
    with open(err, "wb") as log:
        proc = subprocess.Popen(
            agent_cmd(
                "run",
                "--simulate",
                "--config",
                str(path),
                "--state-dir",
                str(tmp_path / "state"),
                "--flush-interval",
                "1s",
                "--broker",
                f"mqtt://127.0.0.1:{free_port()}",
            ),
            stderr=log,
        )
        try:
            text = wait_for_log(
                proc,
                err,
                lambda t: set(re.findall(r"event=batch_sealed stream=(\S+)", t)) >= streams,
                timeout=60,
            )
        finally:
            assert stop_agent(proc, err) == 0, err.read_text()
    assert "event=sensor_down" not in text


def test_the_lamp_post_sends_what_it_says():
    cfg = load_config(EXAMPLES / "air-quality-lamp-post.yaml")
    assert [s.type for s in cfg.sensors] == ["bme680", "pmsa003i", "scd4x"]
    air, particles, co2 = cfg.sensors
    assert air.driver_kwargs() == {"heater_temp": 320, "heater_ms": 150.0}
    gas = next(c for c in air.channels if c.name == "gas")
    assert gas.chain_spec()[-1] == ("deadband", 0.02, 1.0, 600.0)  # relative, a heartbeat every 10 min
    assert [c.name for c in particles.channels] == ["pm1_0", "pm2_5", "pm10", "particles_0_3um"]
    assert particles.channels[1].bin_width > 1 and particles.channels[1].error_bound == pytest.approx(1.5)
    assert [c.name for c in co2.channels] == ["co2"] and co2.driver_kwargs() == {"asc": True}


def test_the_power_node_has_a_dc_monitor_and_a_pulse_meter():
    cfg = load_config(EXAMPLES / "power-node.yaml")
    battery, mains = cfg.sensors
    assert battery.driver_kwargs() == {"shunt_ohms": 0.002, "max_current": 20.0}
    assert (mains.type, mains.bus, mains.address) == ("s0", 0, 0)
    assert mains.driver_kwargs() == {"pin": 17, "pulses_per_kwh": 1000.0, "debounce_ms": 20.0}
    energy = [c for c in (*battery.channels, *mains.channels) if c.name == "energy"]
    assert [(c.unit, c.resolution) for c in energy] == [("Wh", 0.001), ("Wh", 1.0)]
    assert [(c.reconstruction, c.bound) for c in energy] == [("linear", 0.01), ("linear", 1.0)]


def test_the_production_uplink_is_mutual_tls_with_a_password_file_and_two_brokers():
    m = load_config(EXAMPLES / "production-uplink.yaml").mqtt
    assert [b.tls for b in m.brokers] == [True, True] and len({b.host for b in m.brokers}) == 2
    assert m.protocol == "5" and not m.allow_insecure
    assert m.ca_file and m.cert_file and m.key_file and m.username and m.password_file
