"""INA219 / INA226 drivers on their register-level simulators, against the datasheets."""

from __future__ import annotations

import textwrap

import pytest

from drivers import ina2xx
from drivers.base import ChipNotFound
from drivers.bus import I2CBus
from drivers.ina2xx import Ina219, Ina226, calibration
from drivers.sim.bme680 import Bme680Sim
from drivers.sim.bus import SimulatedSMBus
from drivers.sim.ina2xx import Ina219Sim, Ina226Sim
from edge_agent.config import load_config
from edge_agent.errors import ConfigError
from edge_agent.node.hardware import SimulatedHardware


def bus_with(sim, address=0x40):
    sm = SimulatedSMBus()
    sm.attach(address, sim)
    return I2CBus(sm, name="sim")


def test_ina219_calibration_matches_the_datasheet_example():
    # SBOS448 8.5.1: 0.1 ohm shunt, Current_LSB 100 uA -> Cal = 4096, Power_LSB = 2 mW
    cal, lsb = calibration("ina219", 0.1, 100e-6 * 32768)
    assert (cal, lsb) == (4096, 100e-6)
    d = Ina219(bus=bus_with(Ina219Sim(shunt_ohms=0.1)), shunt_ohms=0.1, max_current=100e-6 * 32768)
    assert d.power_lsb == pytest.approx(0.002)


def test_ina226_calibration_formula():
    cal, lsb = calibration("ina226", 0.002, 10.0)
    assert lsb == 10.0 / 32768 and cal == int(0.00512 / (lsb * 0.002))
    with pytest.raises(ValueError, match="out of range"):
        calibration("ina226", 1e-6, 0.001)


@pytest.mark.parametrize(
    "Driver, Sim, shunt, max_i, volts, amps, tol_v, tol_i",
    [
        (Ina219, Ina219Sim, 0.1, 3.2, 12.34, 1.234, 0.004, 0.0002),
        (Ina219, Ina219Sim, 0.1, 3.2, 5.0, -0.25, 0.004, 0.0002),
        (Ina226, Ina226Sim, 0.01, 8.0, 24.5, 4.2, 0.00125, 0.001),  # 2 LSB: Cal and register truncation
    ],
)
def test_readings_match_the_simulated_load(Driver, Sim, shunt, max_i, volts, amps, tol_v, tol_i):
    sim = Sim(shunt_ohms=shunt)
    sim.set(bus_voltage=volts, current=amps)
    r = Driver(bus=bus_with(sim), shunt_ohms=shunt, max_current=max_i).read().values
    assert r["bus_voltage"] == pytest.approx(volts, abs=tol_v)
    assert r["current"] == pytest.approx(amps, abs=tol_i)
    assert r["shunt_voltage"] == pytest.approx(amps * shunt * 1000, abs=0.01)
    assert r["power"] == pytest.approx(abs(volts * amps), rel=0.01)


def test_ina226_shunt_saturates_like_the_chip():
    sim = Ina226Sim(shunt_ohms=0.1)
    sim.set(current=2.0)  # 200 mV across the shunt: beyond the 81.92 mV range
    r = Ina226(bus=bus_with(sim), shunt_ohms=0.1, max_current=2.0).read().values
    assert r["shunt_voltage"] == pytest.approx(81.9175)


def test_energy_is_integrated_across_readings(monkeypatch):
    sim = Ina219Sim(shunt_ohms=0.1)
    sim.set(bus_voltage=10.0, current=1.0)  # 10 W
    clock = [1000.0]
    monkeypatch.setattr(ina2xx.time, "monotonic", lambda: clock[0])
    d = Ina219(bus=bus_with(sim), shunt_ohms=0.1, max_current=3.2)
    assert d.read().values["energy"] == 0.0
    clock[0] += 360.0  # a tenth of an hour at 10 W
    assert d.read().values["energy"] == pytest.approx(1.0, rel=0.01)


def test_identification_by_registers_not_address():
    with pytest.raises(ChipNotFound, match="IDs"):
        Ina226(bus=bus_with(Ina219Sim()))  # an INA219 has no ID registers that say TI/2260
    sim = Ina226Sim()
    with pytest.raises(ChipNotFound, match="configuration after reset is 0x4127"):
        Ina219(bus=bus_with(sim))  # an INA226 resets to 0x4127, not 0x399F
    with pytest.raises(ChipNotFound, match="nothing answers"):
        Ina219(bus=bus_with(Bme680Sim(), address=0x77))


def test_config_and_simulated_hardware(tmp_path):
    p = tmp_path / "n.yaml"
    p.write_text(
        textwrap.dedent("""\
        node: {id: power-node}
        mqtt: {broker: "mqtt://127.0.0.1:1883"}
        sensors:
          - {name: mains, type: ina226, address: 0x41, shunt_ohms: 0.002, max_current: 20,
             sim: {bus_voltage: 24.0, current: 7.5}}
    """)
    )
    cfg = load_config(p)
    s = cfg.sensors[0]
    assert s.driver_kwargs() == {"shunt_ohms": 0.002, "max_current": 20.0}
    assert [c.unit for c in s.channels] == ["V", "mV", "A", "W", "Wh"]
    with SimulatedHardware(cfg) as hw:
        r = hw.make(s).read().values
    assert r["current"] == pytest.approx(7.5, abs=0.001) and r["bus_voltage"] == pytest.approx(
        24.0, abs=0.002
    )
    p.write_text(p.read_text().replace("shunt_ohms: 0.002", "shunt_ohms: 0"))
    with pytest.raises(ConfigError, match=r"sensors\[0\]\.shunt_ohms: expected a number in \(0"):
        load_config(p)
    p.write_text(p.read_text().replace("shunt_ohms: 0,", "heater: {temperature: 300},"))
    with pytest.raises(ConfigError, match=r"sensors\[0\]\.heater"):
        load_config(p)


@pytest.mark.parametrize(("shunt", "most"), [(9.0, 20.0), (0.0001, 0.01), (100.0, 100.0)])
def test_a_shunt_and_current_the_chip_cannot_calibrate_for_are_refused_by_the_configuration(
    tmp_path, shunt, most
):
    """Each within its own bounds, together past the calibration register (1..0xFFFE):
    check-config used to pass them, and the agent then died bringing the driver up."""
    from edge_agent.config import load_config
    from edge_agent.errors import ConfigError

    path = tmp_path / "n.yaml"
    path.write_text(
        "node: {id: n}\nmqtt: {broker: 'mqtt://127.0.0.1:1883'}\n"
        f"sensors:\n  - {{type: ina226, shunt_ohms: {shunt}, max_current: {most}}}\n"
    )
    with pytest.raises(
        ConfigError, match=r"sensors\[0\]: shunt_ohms x max_current .* from 0\.00256 to 167\.8 V"
    ):
        load_config(path)


def test_a_driver_that_refuses_at_bring_up_leaves_the_sensor_down_not_the_node(tmp_path, caplog):
    """Whatever a driver raises at construction (here a ValueError), the sensor is down and
    retried, and the others and the node go on."""
    from edge_agent.config import load_config
    from edge_agent.node.sampler import Sampler
    from edge_agent.node.store import BatchStore

    path = tmp_path / "n.yaml"
    path.write_text("node: {id: n}\nmqtt: {broker: 'mqtt://127.0.0.1:1883'}\nsensors:\n  - {type: ina226}\n")
    cfg = load_config(path)

    def refusing(sc):
        raise ValueError("ina226: a driver's own refusal")

    with BatchStore(str(tmp_path / "q")) as store:
        sampler = Sampler(cfg, store, refusing)
        sampler._bring_up(sampler.slots[0], 0.0)
        slot = sampler.slots[0]
        assert slot.state == "down" and slot.errors_by_kind == {"init": 1} and slot.next_init > 0.0
    assert "event=sensor_down sensor=ina226" in caplog.text and "a driver's own refusal" in caplog.text
