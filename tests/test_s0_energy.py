"""An S0 meter's energy in Wh, like every driver's: its default resolution from the meter's
pulses, and a total saved in kWh by an older agent carried on in Wh with the same energy."""

from __future__ import annotations

import json
import textwrap

import pytest
from gpiozero.pins.mock import MockFactory

from drivers.registry import SENSOR_TYPES
from drivers.s0 import S0Meter
from edge_agent import wire
from edge_agent.config import load_config
from edge_agent.node.sampler import Sampler
from edge_agent.node.store import DRIVER_STATE, BatchStore


def test_every_energy_channel_is_in_wh():
    """One unit per quantity across drivers: a backbone adds up energies without asking
    which chip counted them."""
    units = {(c.name, c.unit) for driver in SENSOR_TYPES.values() for c in driver.CHANNELS}
    assert {u for name, u in units if name == "energy"} == {"Wh"}
    per_name: dict[str, set[str]] = {}
    for name, unit in units:
        per_name.setdefault(name, set()).add(unit)
    assert {n: u for n, u in per_name.items() if len(u) > 1} == {}


@pytest.mark.parametrize(
    ("pulses_per_kwh", "resolution"),
    [(1000, 1.0), (800, 1.0), (2000, 0.1), (10000, 0.1), (100, 10.0), (1_000_000, 0.001)],
)
def test_energy_resolution_is_the_power_of_ten_under_one_pulse(pulses_per_kwh, resolution):
    assert S0Meter.default_resolution("energy", {"pulses_per_kwh": float(pulses_per_kwh)}) == resolution
    assert S0Meter.default_resolution("power", {"pulses_per_kwh": float(pulses_per_kwh)}) == 1.0


def _config(tmp_path, channels: str = "", filters: str = ""):
    p = tmp_path / "n.yaml"
    p.write_text(
        textwrap.dedent(f"""\
        node: {{id: meter-node}}
        mqtt: {{broker: "mqtt://127.0.0.1:1883"}}
        sensors:
          - {{name: mains, type: s0, pin: 12, pulses_per_kwh: 10000{filters}{channels}}}
    """)
    )
    return load_config(p)


def test_the_configuration_takes_the_resolution_from_the_meter(tmp_path):
    energy = _config(tmp_path).sensors[0].channels[1]
    assert (energy.name, energy.unit, energy.resolution) == ("energy", "Wh", 0.1)
    energy = _config(tmp_path, channels=", channels: {energy: {resolution: 10}}").sensors[0].channels[1]
    assert energy.resolution == 10.0  # the configuration's own still wins


def test_a_state_saved_in_kwh_goes_on_in_wh():
    pins = MockFactory()
    clock = [100.0]
    meter = S0Meter(pin_factory=pins, pin=13, pulses_per_kwh=1000, clock=lambda: clock[0])
    try:
        meter.set_state({"energy_kwh": 12.345})  # what an older agent saved
        assert meter.read().values["energy"] == pytest.approx(12345.0)
        pin = pins.pin(13)
        for _ in range(3):
            clock[0] += 1.0
            pin.drive_low()
            pin.drive_high()
        assert meter.read().values["energy"] == pytest.approx(12348.0)
        state = meter.get_state()
        assert state == pytest.approx({"energy_wh": 12348.0, "energy_kwh": 12.348})
        # Wh wins where both are; the 3 pulses since the start go on top, once (given again)
        meter.set_state({"energy_wh": 20000.0, "energy_kwh": 1.0})
        meter.set_state({"energy_wh": 20000.0, "energy_kwh": 1.0})
        assert meter.read().values["energy"] == pytest.approx(20003.0)
    finally:
        meter.close()


def test_an_upgraded_node_continues_the_kwh_total_in_wh(tmp_path):
    """The store as the kWh agent left it: the meter's total as ``energy_kwh`` and, from the
    same boot a minute ago, a median window of kWh values on the energy channel. The new
    agent sends Wh from the same energy on: no step back, no jump by 1000."""
    cfg = _config(tmp_path, filters=", filters: [{type: median, window: 3}]")
    store_path = str(tmp_path / "q")
    with BatchStore(store_path) as store:
        old_spec = json.dumps([("median", 3.0)])  # the old code's key: the chain alone
        store.save_chain_states(
            [
                ("mains", DRIVER_STATE, "", json.dumps({"energy_kwh": 12.345})),
                ("mains", "energy", old_spec, json.dumps([[2, 12.3449, 12.345]])),
            ],
            "boot-A",
            40.0,
        )
    pins = MockFactory()
    clock = [100.0]
    with BatchStore(store_path) as store:
        s = Sampler(
            cfg,
            store,
            lambda c: S0Meter(pin_factory=pins, clock=lambda: clock[0], **c.driver_kwargs()),
            clock=lambda: clock[0],
            wall=lambda: 1_700_000_000.0 + clock[0],
            boot_id="boot-A",
        )
        assert s.restored_states == 0  # the kWh window is not taken for Wh
        slot = s.slots[0]
        s._bring_up(slot, clock[0])
        pin = pins.pin(12)
        for _ in range(4):
            clock[0] += 1.0
            pin.drive_low()
            pin.drive_high()
            s.sample(slot)
        s.seal()
        payload = store.oldest(1)[0].payload
        slot.driver.close()
    energy = next(c for c in wire.decode(payload).channels if c.name == "energy")
    assert energy.unit == "Wh" and energy.resolution == 0.1
    # 10000 imp/kWh: 0.1 Wh a pulse on top of 12345 Wh, through a fresh median of 3
    values = energy.values()
    assert values == sorted(values) and values[0] == pytest.approx(12345.1)
    assert values[2:] == pytest.approx([12345.2, 12345.3])
