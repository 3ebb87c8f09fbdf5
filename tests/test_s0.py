"""S0 pulse meter on gpiozero's MockFactory, driven by a simulated meter."""

from __future__ import annotations

import textwrap
import time

import pytest
from gpiozero.pins.mock import MockFactory

from drivers.s0 import S0Meter
from drivers.sim.profiles import Wave
from drivers.sim.s0 import S0MeterSim
from edge_agent.config import load_config
from edge_agent.errors import ConfigError
from edge_agent.node.sampler import Sampler
from edge_agent.node.store import BatchStore


def test_pulses_power_and_energy_from_a_simulated_meter():
    pins = MockFactory()
    # 3600 W at 1000 imp/kWh: a pulse every second; 1800 W: every 2 s
    sim = S0MeterSim({"power": Wave(36000.0)}, pin=5, pulses_per_kwh=1000)  # a pulse per 0.1 s
    meter = S0Meter(pin_factory=pins, pin=5, pulses_per_kwh=1000)
    sim.start(pins)
    try:
        time.sleep(1.05)
        r = meter.read().values
    finally:
        sim.stop()
        meter.close()
    # ~10 pulses in a second; fewer on a loaded machine, never more than were sent
    assert abs(r["pulses"] - sim.sent) <= 1 and 5 <= r["pulses"] <= 11
    assert r["energy"] == r["pulses"]  # Wh: one per pulse at 1000 imp/kWh
    assert r["power"] == pytest.approx(36000.0, rel=0.5)  # from one pulse interval: scheduler jitter


def test_bounces_are_not_counted():
    """Edges within debounce_ms of a counted one are bounces. The driver's clock is the
    test's (gpiozero's mock pins call back in the thread that drives them), so a loaded
    machine cannot stretch a bounce past the debounce time."""
    pins = MockFactory()
    clock = [100.0]
    meter = S0Meter(pin_factory=pins, pin=6, pulses_per_kwh=1000, debounce_ms=20, clock=lambda: clock[0])
    pin = pins.pin(6)
    for _ in range(3):
        pin.drive_low()
        pin.drive_high()
        clock[0] += 0.001
        pin.drive_low()  # contact bounce 1 ms after the pulse's edge
        clock[0] += 0.03
        pin.drive_high()
        clock[0] += 0.03
    assert meter.pulses == 3 and meter.bounces == 3
    clock[0] += 0.019  # 80 ms after the last counted edge: a pulse
    pin.drive_low()
    assert (meter.pulses, meter.bounces) == (4, 3)
    pin.drive_high()
    clock[0] += 0.019  # 19 ms after that one: a bounce
    pin.drive_low()
    assert (meter.pulses, meter.bounces) == (4, 4)
    meter.close()


def test_power_falls_when_pulses_stop():
    pins = MockFactory()
    clock = [100.0]
    meter = S0Meter(pin_factory=pins, pin=7, pulses_per_kwh=1000, clock=lambda: clock[0])
    pin = pins.pin(7)
    for step in (0.0, 1.0):
        clock[0] += step
        pin.drive_low()
        pin.drive_high()
    time.sleep(0.05)
    assert meter.read().values["power"] == pytest.approx(3600.0)
    clock[0] += 10.0  # no pulse for 10 s: at most 360 W now
    assert meter.read().values["power"] == pytest.approx(360.0)
    meter.close()


def test_energy_total_survives_a_restart(tmp_path):
    cfg_path = tmp_path / "n.yaml"
    cfg_path.write_text(
        textwrap.dedent("""\
        node: {id: meter-node}
        mqtt: {broker: "mqtt://127.0.0.1:1883"}
        sensors:
          - {name: mains, type: s0, pin: 12, pulses_per_kwh: 1000}
    """)
    )
    cfg = load_config(cfg_path)
    pins = MockFactory()
    store_path = str(tmp_path / "q")

    def run_once(pulses):
        with BatchStore(store_path) as store:
            s = Sampler(cfg, store, lambda c: S0Meter(pin_factory=pins, **c.driver_kwargs()))
            slot = s.slots[0]
            s._bring_up(slot, 0.0)
            pin = pins.pin(12)
            for _ in range(pulses):
                pin.drive_low()
                time.sleep(0.025)
                pin.drive_high()
            time.sleep(0.05)
            s.sample(slot)
            energy = slot.channels["energy"].values_q[-1] * slot.channels["energy"].cfg.resolution
            s.seal()
            s.save_states()
            slot.driver.close()
            return energy

    assert run_once(3) == pytest.approx(3.0)  # Wh
    assert run_once(2) == pytest.approx(5.0)  # the total went on from where it was


def test_config_of_a_gpio_device(tmp_path):
    p = tmp_path / "n.yaml"
    p.write_text(
        textwrap.dedent("""\
        node: {id: n}
        mqtt: {broker: "mqtt://127.0.0.1:1883"}
        sensors:
          - {name: mains, type: s0, pin: 12, pulses_per_kwh: 800, address: 0x40}
    """)
    )
    with pytest.raises(ConfigError, match=r"sensors\[0\]\.address: expected no address for a GPIO device"):
        load_config(p)
    p.write_text(p.read_text().replace(", address: 0x40", ""))
    s = load_config(p).sensors[0]
    assert s.driver_kwargs() == {"pin": 12, "pulses_per_kwh": 800.0, "debounce_ms": 20.0}
    assert [c.name for c in s.channels] == ["power", "energy", "pulses"]
