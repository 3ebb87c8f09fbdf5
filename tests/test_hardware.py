"""node.hardware: the simulated and the real hardware objects, their lifetime and errors."""

from __future__ import annotations

import errno
import textwrap
import time

import pytest

from drivers.s0 import S0Meter
from drivers.sim.bme680 import Bme680Sim
from drivers.sim.s0 import S0MeterSim
from edge_agent.config import load_config
from edge_agent.node.hardware import Hardware, SimulatedHardware, location, shown_present

NODE = textwrap.dedent("""\
    node: {id: n}
    mqtt: {broker: "mqtt://127.0.0.1:1883"}
    sensors:
      - {name: air, type: bme680, sim: {temperature: 18.5}}
      - {name: gone, type: bme680, address: 0x76, bus: 2, sim: {absent: true}}
      - {name: meter, type: s0, pin: 6, sim: {power: 360000}}
""")


@pytest.fixture
def cfg(tmp_path):
    p = tmp_path / "n.yaml"
    p.write_text(NODE)
    return load_config(p)


def test_simulated_hardware_makes_drivers_on_its_simulators_and_stops_them(cfg):
    with SimulatedHardware(cfg) as hw:
        assert isinstance(hw.sims["air"], Bme680Sim) and isinstance(hw.sims["meter"], S0MeterSim)
        assert "gone" not in hw.sims and sorted(hw.buses) == [1, 2]
        hw.sims["air"].spike("temperature", 99.0)
        air = hw.make(cfg.sensor("air"))
        assert air.read().values["temperature"] == pytest.approx(99.0, abs=0.01)
        with pytest.raises(OSError):  # nothing answers where the chip is absent
            hw.make(cfg.sensor("gone"))
        meter = hw.make(cfg.sensor("meter"))
        assert isinstance(meter, S0Meter)
        sim = hw.sims["meter"]
        assert sim.running
        for _ in range(1000):  # 10 pulses a second at 360 kW and 1000 imp/kWh
            if shown_present(meter):
                break
            time.sleep(0.01)
        assert shown_present(meter) and meter.read().values["pulses"] >= 1
        meter.close()
        air.close()
    assert not sim.running and hw.buses == {}
    hw.close()  # a second close does nothing


def test_real_hardware_says_what_is_missing(cfg):
    with Hardware() as hw:
        with pytest.raises(OSError) as bus:
            hw.bus(250)
        assert bus.value.errno == errno.ENOENT
        with pytest.raises(OSError) as gpio:  # no GPIO chip on this machine
            hw.make(cfg.sensor("meter"))
        assert gpio.value.errno == errno.ENODEV and "no GPIO" in str(gpio.value)


def test_location_is_what_a_technician_finds(cfg):
    assert location(cfg.sensor("air")) == "0x77 on i2c-1"
    assert location(cfg.sensor("gone")) == "0x76 on i2c-2"
    assert location(cfg.sensor("meter")) == "GPIO 6"
