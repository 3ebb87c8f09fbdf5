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
    d, sim, clock = setup(co2=812.0, temperature=23.4, humidity=55.5)
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
