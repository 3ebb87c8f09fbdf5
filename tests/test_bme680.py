"""The unmodified Adafruit BME680 driver on our bus adapter and the register-level simulator."""

from __future__ import annotations

import errno
import threading
import time

import adafruit_bme680
import pytest

from drivers.base import ChipNotFound
from drivers.bme680 import Bme680
from drivers.bus import I2CBus
from drivers.busio_adapter import BusioI2C
from drivers.sim.bme680 import CHIP_ID, Bme680Sim
from drivers.sim.bus import SimulatedSMBus


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def sim_bus(sim=None, address=0x77):
    sm = SimulatedSMBus()
    sim = sim or Bme680Sim()
    sm.attach(address, sim)
    return I2CBus(sm, name="sim"), sim, sm


@pytest.mark.parametrize(
    "env",
    [
        {"temperature": 21.5, "humidity": 45.0, "pressure": 1013.25, "gas": 50000.0},
        {"temperature": -35.0, "humidity": 3.0, "pressure": 350.0, "gas": 2000.0},
        {"temperature": 80.0, "humidity": 97.0, "pressure": 1095.0, "gas": 900000.0},
    ],
)
def test_adafruit_driver_reads_what_the_simulator_was_set_to(env):
    bus, sim, _ = sim_bus()
    sim.set(**env)
    dev = adafruit_bme680.Adafruit_BME680_I2C(BusioI2C(bus), 0x77, refresh_rate=1000)
    # Compensation rounding: t_fine steps are 0.0002 °C; pressure and humidity ADC steps
    # are ~0.001 hPa and ~0.002 %RH; the 10-bit gas ADC resolves to well under 1 %.
    assert dev.temperature == pytest.approx(env["temperature"], abs=0.001)
    assert dev.pressure == pytest.approx(env["pressure"], abs=0.01)
    assert dev.relative_humidity == pytest.approx(env["humidity"], abs=0.01)
    assert dev.gas == pytest.approx(env["gas"], rel=0.01)


def test_our_driver_returns_a_reading_with_all_channels():
    bus, sim, _ = sim_bus()
    sim.set(temperature=18.25, humidity=60.0, pressure=990.0, gas=120000.0)
    r = Bme680(bus=bus).read()
    assert set(r.values) == {"temperature", "humidity", "pressure", "gas"}
    assert r.values["temperature"] == pytest.approx(18.25, abs=0.001)
    assert sim.conversions == 1
    assert [c.unit for c in Bme680.CHANNELS] == ["°C", "%", "hPa", "Ω"]


def test_wrong_chip_id_and_absent_chip_fail_loudly():
    bus, sim, _ = sim_bus()
    sim._regs[0xD0] = 0x58  # a BMP280 answering at the address
    sim._load_nvm = lambda: None  # keep the wrong ID across the driver's soft reset
    with pytest.raises(ChipNotFound, match="Chip ID 0x58"):
        Bme680(bus=bus)
    empty = I2CBus(SimulatedSMBus(), name="sim-empty")
    with pytest.raises(ChipNotFound, match="nothing answers at 0x77"):
        Bme680(bus=empty)


def test_forced_mode_timing_follows_oversampling_and_heater():
    clock = FakeClock()
    bus, _sim, _ = sim_bus(Bme680Sim(clock=clock))
    # osrs_h x2 (0x72), gas wait 100 ms with the heater on, run_gas
    bus.write(0x77, bytes([0x72, 0x02, 0x64, 0x59, 0x70, 0x00, 0x71, 0x10]))
    bus.write(0x77, bytes([0x74, (0b100 << 5) | (0b011 << 2) | 0x01]))  # osrs_t x8, osrs_p x4, forced
    status = bus.write_read(0x77, b"\x1d", 1)[0]
    assert status & 0x20 and not status & 0x80  # measuring, no new data yet
    # (8 + 4 + 2) cycles * 1.963 ms + 5.793 ms overhead + 100 ms heater = 133.3 ms
    clock.t += 0.133
    assert not bus.write_read(0x77, b"\x1d", 1)[0] & 0x80
    clock.t += 0.001
    assert bus.write_read(0x77, b"\x1d", 1)[0] & 0x80
    assert bus.write_read(0x77, b"\x74", 1)[0] & 0x03 == 0  # back in sleep mode
    gas_lsb = bus.write_read(0x77, b"\x2b", 1)[0]
    assert gas_lsb & 0x20  # gas_valid


def test_heater_stability_flag_needs_hot_enough_and_long_enough():
    clock = FakeClock()
    bus, sim, _ = sim_bus(Bme680Sim(clock=clock))

    def measure(res_heat, wait):
        bus.write(0x77, bytes([0x5A, res_heat, 0x64, wait, 0x71, 0x10, 0x74, 0x01 | (1 << 5)]))
        clock.t += 10
        return bus.write_read(0x77, b"\x2b", 1)[0]

    hot = sim._res_heat(320)
    assert measure(hot, 0x59) & 0x10  # 320 °C for 100 ms: stable
    assert not measure(hot, 0x05) & 0x10  # 5 ms is too short
    assert not measure(sim._res_heat(100), 0x59) & 0x10  # too cold


def test_soft_reset_and_id_registers():
    bus, _sim, _ = sim_bus()
    bus.write(0x77, bytes([0x74, 0x55]))
    bus.write(0x77, bytes([0xE0, 0xB6]))
    assert bus.write_read(0x77, b"\x74", 1)[0] == 0
    assert bus.write_read(0x77, b"\xd0", 1)[0] == CHIP_ID
    assert bus.write_read(0x77, b"\xf0", 1)[0] == 0x00


def test_injected_faults_reach_the_driver_as_oserror():
    bus, sim, _ = sim_bus()
    drv = Bme680(bus=bus)
    sim.fail_next(1, errno.EIO)
    with pytest.raises(OSError) as err:
        drv.read()
    assert err.value.errno == errno.EIO
    assert drv.read().values["temperature"] == pytest.approx(21.0, abs=0.001)
    sim.nack = True
    time.sleep(0.03)  # past the driver's 20 ms reuse window
    with pytest.raises(OSError):
        drv.read()


def test_scan_and_probe():
    bus, _, sm = sim_bus()
    sm.attach(0x76, Bme680Sim())
    assert bus.scan() == [0x76, 0x77]
    assert BusioI2C(bus).scan() == [0x76, 0x77]
    assert not bus.probe(0x40)


def test_busio_adapter_shares_the_bus_lock():
    bus, _, _ = sim_bus()
    adapter = BusioI2C(bus)
    assert adapter.try_lock()
    got = []
    t = threading.Thread(target=lambda: got.append(BusioI2C(bus).try_lock()))
    t.start()
    t.join()
    assert got == [False]  # another thread cannot take the bus while we hold it
    adapter.unlock()
    buf = bytearray(3)
    adapter.writeto_then_readfrom(0x77, b"\xd0", buf, in_start=1, in_end=2)
    assert buf == bytearray([0, CHIP_ID, 0])


def test_every_read_is_a_new_measurement_even_back_to_back():
    sim = Bme680Sim()
    sm = SimulatedSMBus()
    sm.attach(0x77, sim)
    d = Bme680(bus=I2CBus(sm, name="sim"), address=0x77, heater_temp=320, heater_ms=1)
    before = sim.conversions
    d.read()
    d.read()  # within the Adafruit driver's cache time: it must not serve the last one again
    assert sim.conversions - before == 2
