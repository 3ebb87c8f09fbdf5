"""The faults every simulator can inject (drivers/sim/chip.py), each seen through the real
driver: no acknowledge, failed transfers, a stuck value, spikes, and unplug/replug from
power-on reset, which every driver that configures its chip must notice and undo."""

from __future__ import annotations

import errno
import time

import pytest
from gpiozero.pins.mock import MockFactory

from drivers.bme680 import Bme680
from drivers.bus import I2CBus
from drivers.ina2xx import Ina219, Ina226
from drivers.pmsa003i import Pmsa003i
from drivers.s0 import S0Meter
from drivers.scd4x import Scd4x
from drivers.sim.bme680 import Bme680Sim
from drivers.sim.bus import SimulatedSMBus
from drivers.sim.ina2xx import Ina219Sim, Ina226Sim
from drivers.sim.pmsa003i import Pmsa003iSim
from drivers.sim.profiles import Wave
from drivers.sim.s0 import S0MeterSim
from drivers.sim.scd4x import Scd4xSim


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class Rig:
    """One driver on its simulator; ``read()`` advances the chip's clock past a conversion
    first, so every read sees a fresh result."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.clock = Clock()
        sm = SimulatedSMBus()
        self.bus = I2CBus(sm, name="sim")
        if kind == "bme680":
            self.sim, self.address, self.channel, self.step = Bme680Sim(), 0x77, "temperature", 0.0
            self.sim.set(temperature=21.0)
            sm.attach(self.address, self.sim)
            self.driver = Bme680(bus=self.bus, address=self.address, heater_temp=320, heater_ms=30)
            self.tolerance = 0.01
        elif kind in ("ina219", "ina226"):
            sim_cls, drv_cls = (Ina219Sim, Ina219) if kind == "ina219" else (Ina226Sim, Ina226)
            self.sim = sim_cls(shunt_ohms=0.1, clock=self.clock)
            self.sim.set(current=0.5, bus_voltage=12.0)
            self.address, self.channel, self.step = 0x40, "current", 0.01
            sm.attach(self.address, self.sim)
            self.driver = drv_cls(bus=self.bus, address=self.address, shunt_ohms=0.1, max_current=3.2)
            self.tolerance = 0.002
        elif kind == "pmsa003i":
            self.sim, self.address, self.channel, self.step = Pmsa003iSim(), 0x12, "pm2_5", 0.0
            self.sim.set(pm2_5=8.0)
            sm.attach(self.address, self.sim)
            self.driver = Pmsa003i(bus=self.bus, address=self.address)
            self.tolerance = 0.0
        elif kind == "scd4x":
            self.sim = Scd4xSim(clock=self.clock)
            self.sim.set(co2=420.0)
            self.address, self.channel, self.step = 0x62, "co2", 5.01
            sm.attach(self.address, self.sim)
            self.driver = Scd4x(bus=self.bus, address=self.address, asc=0.0)
            self.tolerance = 0.0

    def read(self) -> dict[str, float]:
        self.clock.t += self.step
        if self.kind == "bme680":
            time.sleep(0.021)  # the Adafruit driver serves reads within 20 ms from its cache
        return self.driver.read().values


I2C_KINDS = ["bme680", "ina219", "ina226", "pmsa003i", "scd4x"]
SPIKES = {
    "temperature": 60.0,
    "current": 0.75,  # the INA226 reads up to 81.92 mV / 0.1 Ω
    "pm2_5": 900.0,
    "co2": 5000.0,
}


@pytest.fixture(params=I2C_KINDS)
def rig(request):
    r = Rig(request.param)
    yield r
    r.driver.close()


def test_a_spike_reads_through_once_and_then_the_signal_returns(rig):
    normal = rig.read()[rig.channel]
    spike = SPIKES[rig.channel]
    rig.sim.spike(rig.channel, spike)
    assert rig.read()[rig.channel] == pytest.approx(spike, abs=max(rig.tolerance, spike * 1e-3))
    assert rig.read()[rig.channel] == pytest.approx(normal, abs=rig.tolerance)


def test_a_stuck_chip_repeats_the_value_of_the_moment_it_stuck(rig):
    before = rig.read()[rig.channel]
    rig.sim.stick()
    rig.sim.set(**{rig.channel: SPIKES[rig.channel] / 2})
    stuck = [rig.read()[rig.channel] for _ in range(3)]
    assert stuck == [pytest.approx(before, abs=rig.tolerance)] * 3
    rig.sim.unstick()
    assert rig.read()[rig.channel] == pytest.approx(
        SPIKES[rig.channel] / 2, abs=max(rig.tolerance, 1e-3 * SPIKES[rig.channel])
    )


@pytest.mark.parametrize("err", [errno.EIO, errno.EREMOTEIO, errno.ETIMEDOUT])
def test_failed_transfers_fail_the_read_with_their_errno_and_then_it_reads_again(rig, err):
    rig.read()
    rig.sim.fail_next(1, err)
    with pytest.raises(OSError) as exc:
        rig.read()
    assert exc.value.errno == err
    assert rig.channel in rig.read()


def test_no_acknowledge_fails_every_read_until_it_clears(rig):
    rig.sim.nack = True
    for _ in range(2):
        with pytest.raises(OSError) as exc:
            rig.read()
        assert exc.value.errno == errno.EREMOTEIO
    rig.sim.nack = False
    assert rig.channel in rig.read()


def test_an_unplugged_chip_is_absent_and_comes_back_configured_after_replug(rig, monkeypatch):
    monkeypatch.setattr(Scd4x, "STALE_AFTER", 0.0)  # the driver's own wall time, not the rig's
    normal = rig.read()[rig.channel]
    rig.sim.unplug()
    with pytest.raises(OSError) as exc:
        rig.read()
    assert exc.value.errno == errno.ENXIO
    assert not rig.bus.probe(rig.address)
    rig.sim.replug()  # from power-on reset: everything the driver set up is gone
    assert rig.bus.probe(rig.address)
    values, errors = {}, []
    for _ in range(3):
        try:
            values = rig.read()
        except OSError as e:
            errors.append(str(e))
            continue
        if rig.channel in values:
            break
    assert values[rig.channel] == pytest.approx(normal, abs=rig.tolerance)
    # The drivers that configure their chip saw the reset, said so once, and set it up again.
    if rig.kind.startswith("ina"):
        assert rig.sim.regs[0x05] == rig.driver.cal and len(errors) == 1 and "calibration" in errors[0]
    elif rig.kind == "bme680":
        assert rig.sim._regs[0x64] != 0 and len(errors) == 1 and "heater" in errors[0]
        assert rig.driver.read().values["gas"] == pytest.approx(rig.sim.environment["gas"].mean, rel=0.02)
    elif rig.kind == "scd4x":
        assert rig.sim.periodic and rig.sim.asc is False  # ASC off again, as configured
        assert len(errors) == 1 and "started again" in errors[0]
    else:
        assert errors == []  # the PMSA003I keeps no configuration to lose


def test_checksum_faults_only_exist_where_the_chip_sends_one():
    for sim in (Pmsa003iSim(), Scd4xSim()):
        sim.corrupt_next = 2
        assert sim.take_corrupt() and sim.take_corrupt() and not sim.take_corrupt()


def test_simulators_refuse_inputs_they_do_not_have():
    with pytest.raises(KeyError, match="no input 'co3'"):
        Scd4xSim({"co3": Wave(1.0)})
    with pytest.raises(KeyError, match="no input 'voltage'"):
        Ina226Sim().spike("voltage", 1.0)


def _pulses_in(sim: S0MeterSim, seconds: float) -> int:
    before = sim.sent
    time.sleep(seconds)
    return sim.sent - before


def test_s0_meter_unplugged_sends_no_pulses_and_a_spike_shortens_the_next_ones():
    pins = MockFactory()
    # 36 kW at 10000 imp/kWh: a pulse every 10 ms (5 ms low)
    sim = S0MeterSim({"power": Wave(36000.0)}, pin=8, pulses_per_kwh=10000, pulse_ms=5)
    meter = S0Meter(pin_factory=pins, pin=8, pulses_per_kwh=10000, debounce_ms=1)
    sim.start(pins)
    try:
        assert _pulses_in(sim, 0.3) > 5
        sim.unplug()
        time.sleep(0.05)  # a pulse under way ends
        counted = meter.read().values["pulses"]
        assert _pulses_in(sim, 0.3) == 0
        assert meter.read().values["pulses"] == counted
        assert pins.pin(8).state  # the line rests high
        sim.replug()
        assert _pulses_in(sim, 0.3) > 5
        # The power a pulse is timed by is what the meter measured: a spike to a tenth for
        # the next three pulses makes them come ten times further apart.
        sim.spike("power", 3600.0, count=3)
        time.sleep(0.03)  # the pulse already timed comes
        assert _pulses_in(sim, 0.2) <= 2
    finally:
        sim.stop()
        meter.close()
