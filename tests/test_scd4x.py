"""SCD4x through the unmodified Adafruit driver on its command-level simulator."""

from __future__ import annotations

import pytest

from drivers.base import ChecksumError
from drivers.bus import I2CBus
from drivers.scd4x import Scd4x
from drivers.sim.bus import SimulatedSMBus
from drivers.sim.profiles import Wave
from drivers.sim.scd4x import Scd4xSim, crc8


class Clock:
    t = 0.0

    def __call__(self):
        return self.t


def setup(asc=1.0, **env):
    clock = Clock()
    sim = Scd4xSim({k: Wave(v) for k, v in env.items()}, period_s=5.0, clock=clock)
    sm = SimulatedSMBus()
    sm.attach(0x62, sim)
    return Scd4x(bus=I2CBus(sm, name="sim"), asc=asc), sim, clock


def test_crc8_matches_the_datasheet_example():
    assert crc8(b"\xbe\xef") == 0x92


def test_periodic_results_every_5_s_within_the_chips_rounding():
    d, _sim, clock = setup(co2=812.0, temperature=23.4, humidity=55.5)
    assert d.read().values == {}  # nothing before the first 5 s result
    clock.t = 5.01
    r = d.read().values
    assert r["co2"] == 812.0
    assert r["temperature"] == pytest.approx(23.4, abs=175 / 65535)
    assert r["humidity"] == pytest.approx(55.5, abs=100 / 65535)
    assert d.read().values == {}  # the same result is not given twice
    assert [c.unit for c in Scd4x.CHANNELS] == ["ppm", "°C", "%"]


def test_asc_follows_the_configuration_and_commands_are_refused_while_measuring():
    _, sim_on, _ = setup(asc=1.0)
    _, sim_off, _ = setup(asc=0.0)
    assert sim_on.asc and not sim_off.asc
    with pytest.raises(OSError):  # setting ASC during periodic measurement is not acknowledged
        sim_off.i2c_write(bytes([0x24, 0x16, 0x00, 0x01, crc8(b"\x00\x01")]))


def test_a_bad_crc_is_a_checksum_error_not_data():
    d, sim, clock = setup()
    clock.t = 5.01
    sim.corrupt_next = 1
    with pytest.raises(ChecksumError, match="CRC"):
        d.read()
    clock.t = 10.01
    assert d.read().values["co2"] == 420.0


def test_the_driver_and_the_simulator_compute_the_same_crc():
    from drivers.scd4x import crc8 as driver_crc8

    assert driver_crc8(b"\xbe\xef") == 0x92
    assert all(
        driver_crc8(bytes((w >> 8, w & 0xFF))) == crc8(bytes((w >> 8, w & 0xFF)))
        for w in range(0, 0x10000, 257)
    )


def bus_with(sim, address=0x62):
    sm = SimulatedSMBus()
    sm.attach(address, sim)
    return I2CBus(sm, name="sim")


def test_identify_reads_the_serial_number_with_its_crcs():
    sim = Scd4xSim(serial=0x0123_4567_89AB)
    assert sim.i2c_write(b"\x36\x82") is None
    reply = sim.i2c_read(9)  # three words, each followed by its CRC, as the datasheet has it
    assert [reply[i : i + 2] for i in (0, 3, 6)] == [b"\x01\x23", b"\x45\x67", b"\x89\xab"]
    assert all(crc8(reply[i : i + 2]) == reply[i + 2] for i in (0, 3, 6))
    bus = bus_with(Scd4xSim(serial=0x0123_4567_89AB))
    assert Scd4x.identify(bus, 0x62) == "serial number 0x0123456789ab (get_serial_number, CRC-8 valid)"


def test_identify_refuses_a_bad_crc_and_other_addresses():
    sim = Scd4xSim()
    bus = bus_with(sim)
    sim.corrupt_next = 1  # one word of the serial number: the data-ready status still answers
    assert Scd4x.identify(bus, 0x62).startswith("data-ready status")
    sim.corrupt_next = 4  # the serial's three words and the data-ready status: all wrong
    assert Scd4x.identify(bus, 0x62) is None
    assert Scd4x.identify(bus, 0x62).startswith("serial number 0xbeef12345678")
    assert Scd4x.identify(bus_with(Scd4xSim(), address=0x63), 0x63) is None  # never a command there


def test_identify_a_measuring_chip_by_its_data_ready_status():
    sim = Scd4xSim(clock=Clock())
    bus = bus_with(sim)
    Scd4x(bus=bus)  # starts periodic measurement: get_serial_number is refused now
    assert sim.periodic
    evidence = Scd4x.identify(bus, 0x62)
    assert evidence is not None and evidence.startswith("data-ready status, CRC-8 valid")
    assert sim.periodic  # still measuring: identify changed nothing


def test_first_reading_waits_for_the_first_result():
    from edge_agent.node.hardware import POLL, first_reading

    d, sim, clock = setup(co2=650.0)
    polls = []

    def sleep(s):
        polls.append(s)
        clock.t += s

    r = first_reading(d, 12.0, clock=clock, sleep=sleep)
    assert r.values["co2"] == 650.0
    assert sim.conversions == 1  # the one result of the first period, read once
    assert len(polls) == int(5.0 / POLL)  # polled on data-ready until the 5 s result was there


def test_first_reading_gives_up_after_its_bound():
    from edge_agent.node.hardware import POLL, first_reading

    d, sim, clock = setup()
    sim.period_s = 1e9  # the chip never has a result
    polls = []

    def sleep(s):
        polls.append(s)
        clock.t += s

    assert first_reading(d, 2.0, clock=clock, sleep=sleep).values == {}
    assert sim.conversions == 0 and len(polls) == int(2.0 / POLL)


def test_the_ambient_pressure_corrects_the_co2_read_at_altitude():
    """1,500 m up (845 hPa) the chip, untold, reads CO2 low by the pressures' ratio (it
    assumes 1,013 hPa); told the pressure (set_ambient_pressure, 0xE000, taken while
    measuring), it reads what is there. Told again the same, nothing is sent."""
    d, sim, clock = setup(co2=420.0, pressure=845.0)
    clock.t = 5.01
    assert d.read().values["co2"] == round(420 * 845 / 1013)  # 350 ppm: 17 % low
    d.set_input("pressure", 845.3)
    assert sim.pressure_set == 845 and d.pressure_set == 845
    clock.t = 10.01
    assert d.read().values["co2"] == 420.0
    sim.pressure_set = 999  # had the chip been told something else, the driver would not know ...
    d.set_input("pressure", 845.0)  # ... and it sends only when the value moved
    assert sim.pressure_set == 999
    d.set_input("pressure", 900.0)
    assert sim.pressure_set == 900
    with pytest.raises(ValueError, match=r"outside 700\.\.1200 hPa"):
        d.set_input("pressure", 1250.0)
    with pytest.raises(NotImplementedError):
        d.set_input("temperature", 20.0)


def test_a_chip_restarted_after_a_reset_is_told_the_pressure_again():
    d, sim, _ = setup(pressure=845.0)
    d.set_input("pressure", 845.0)
    sim.unplug()
    sim.replug()  # powered on from reset: 1,013 hPa again, measuring stopped
    assert sim.pressure_set == 1013
    with pytest.raises(OSError, match="periodic measurement started again"):
        d._restart(d._last_data + Scd4x.STALE_AFTER + 1)  # what read() does past STALE_AFTER
    assert d.pressure_set is None  # so the next set_input sends it
    d.set_input("pressure", 845.0)
    assert sim.pressure_set == 845
