"""Simulated SCD4x: 16-bit commands, CRC-8 on every data word (checked on writes, sent on
reads), idle and periodic measurement modes (commands the chip refuses while measuring
are not acknowledged), a result every ``period_s`` (5 s on the chip), automatic
self-calibration setting, and the 48-bit serial number that get_serial_number (0x3682)
answers in idle mode only, as three words each with its CRC. Faults: those of every simulator
(``drivers.sim.chip``); ``corrupt_next`` sends words with a wrong CRC."""

from __future__ import annotations

import errno as _errno
import os
import time
from collections.abc import Callable
from typing import ClassVar

from drivers.sim.chip import SimChip
from drivers.sim.profiles import Wave

_STOP, _START, _READY, _READ = 0x3F86, 0x21B1, 0xE4B8, 0xEC05
_SET_ASC, _GET_ASC, _SERIAL = 0x2416, 0x2313, 0x3682
_PRESSURE = 0xE000  # set_ambient_pressure with a word (hPa), get_ambient_pressure without
_WHILE_MEASURING = {_STOP, _READY, _READ, _PRESSURE}
DEFAULT_PRESSURE = 1013  # hPa the chip assumes until told (101,300 Pa)


def crc8(data: bytes) -> int:
    """Sensirion CRC-8: polynomial 0x31, init 0xFF (datasheet example: 0xBEEF -> 0x92)."""
    crc = 0xFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = ((crc << 1) ^ 0x31) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


class Scd4xSim(SimChip):
    ENVIRONMENT: ClassVar[dict[str, Wave]] = {
        "co2": Wave(420.0),
        "temperature": Wave(22.0),
        "humidity": Wave(40.0),
        "pressure": Wave(1013.0),  # the air's (hPa): by default what the chip assumes untold
    }

    def __init__(
        self,
        environment: dict[str, Wave] | None = None,
        *,
        period_s: float = 5.0,
        serial: int = 0xBEEF_1234_5678,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        **_driver_options,
    ) -> None:
        super().__init__(environment, wall=wall)
        self.period_s, self.serial, self.clock = period_s, serial, clock
        self.power_on()

    def power_on(self) -> None:
        self.periodic = False
        self.started = 0.0
        self.taken = 0  # results read out since the start of periodic mode
        self.asc = True  # the EEPROM default (persist_settings is not modelled)
        self.pressure_set = DEFAULT_PRESSURE
        self.reply = b""

    def _words(self, *words: int) -> bytes:
        out = bytearray()
        for w in words:
            pair = bytes(((w >> 8) & 0xFF, w & 0xFF))
            crc = crc8(pair)
            if self.take_corrupt():
                crc ^= 0xFF
            out += pair + bytes([crc])
        return bytes(out)

    def _available(self) -> int:
        if not self.periodic:
            return 0
        return int((self.clock() - self.started) / self.period_s) - self.taken

    def i2c_write(self, data: bytes) -> None:
        self.check_transfer()
        if len(data) < 2:
            raise OSError(_errno.EREMOTEIO, os.strerror(_errno.EREMOTEIO))
        cmd = (data[0] << 8) | data[1]
        if self.periodic and cmd not in _WHILE_MEASURING:
            raise OSError(_errno.EREMOTEIO, "command refused in periodic measurement mode")
        if len(data) == 5 and crc8(data[2:4]) != data[4]:
            raise OSError(_errno.EREMOTEIO, "CRC of the written word is wrong")
        self.reply = b""
        if cmd == _STOP:
            self.periodic = False
        elif cmd == _START:
            self.periodic, self.started, self.taken = True, self.clock(), 0
        elif cmd == _READY:
            self.reply = self._words(0x0006 if self._available() > 0 else 0x8000)
        elif cmd == _READ:
            if self._available() <= 0:
                raise OSError(_errno.EREMOTEIO, "no measurement ready")
            self.taken += 1
            m = self.measure()
            # the NDIR cell sees the CO2 molecules' density: at a lower pressure than it
            # was told, fewer of them, and a reading low by the ratio
            co2 = max(0, min(40000, round(m["co2"] * m["pressure"] / self.pressure_set)))
            temp = round((m["temperature"] + 45) * 65535 / 175)
            rh = round(m["humidity"] * 65535 / 100)
            self.reply = self._words(co2, max(0, min(65535, temp)), max(0, min(65535, rh)))
        elif cmd == _SET_ASC:
            self.asc = bool((data[2] << 8) | data[3])
        elif cmd == _PRESSURE and len(data) == 5:
            self.pressure_set = (data[2] << 8) | data[3]
        elif cmd == _PRESSURE:
            self.reply = self._words(self.pressure_set)
        elif cmd == _GET_ASC:
            self.reply = self._words(int(self.asc))
        elif cmd == _SERIAL:
            self.reply = self._words(
                (self.serial >> 32) & 0xFFFF, (self.serial >> 16) & 0xFFFF, self.serial & 0xFFFF
            )
        else:
            raise OSError(_errno.EREMOTEIO, f"command 0x{cmd:04x} not simulated")

    def i2c_read(self, length: int) -> bytes:
        self.check_transfer()
        return (self.reply + bytes(length))[:length]
