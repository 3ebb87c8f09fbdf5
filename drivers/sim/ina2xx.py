"""Register-level simulators of the INA219 and INA226: pointer register, 16-bit big-endian
registers, reset, and current/power computed from the shunt register and the calibration
as the chips do. The load is a Wave per quantity: ``bus_voltage`` (V) and ``current`` (A).

The chips convert continuously; the simulated one makes a new conversion when a data
register is read more than one conversion time (``conversion_s``) after the last, so the
registers a driver reads together come from one conversion. Faults: those of every
simulator (``drivers.sim.chip``); these chips send no CRC."""

from __future__ import annotations

import errno as _errno
import struct
import time
from collections.abc import Callable
from typing import ClassVar

from drivers.sim.chip import SimChip
from drivers.sim.profiles import Wave


class _Ina2xxSim(SimChip):
    CONFIG_RESET = 0
    SHUNT_LSB = 0.0
    BUS_LSB = 0.0
    BUS_SHIFT = 0
    BUS_MAX = 0
    CURRENT_DIV = 1
    POWER_DIV = 1
    IDS: ClassVar[dict[int, int]] = {}
    ENVIRONMENT: ClassVar[dict[str, Wave]] = {"bus_voltage": Wave(12.0), "current": Wave(0.5)}

    def __init__(
        self,
        environment: dict[str, Wave] | None = None,
        *,
        shunt_ohms: float = 0.1,
        conversion_s: float = 0.002,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        **_driver_options,
    ) -> None:
        super().__init__(environment, wall=wall)
        self.shunt_ohms = shunt_ohms
        self.conversion_s = conversion_s
        self.clock = clock
        self.power_on()

    def power_on(self) -> None:
        self.regs = {0x00: self.CONFIG_RESET, 0x05: 0}
        self.pointer = 0
        self._sample: dict[str, float] | None = None
        self._sampled_at = 0.0

    def _conversion(self) -> dict[str, float]:
        now = self.clock()
        if self._sample is None or now - self._sampled_at >= self.conversion_s:
            self._sample, self._sampled_at = self.measure(), now
        return self._sample

    def _value(self, reg: int) -> int:
        if reg in self.IDS:
            return self.IDS[reg]
        if reg in (0x00, 0x05):
            return self.regs[reg]
        inputs = self._conversion()
        amps, volts = inputs["current"], inputs["bus_voltage"]
        shunt = max(-32768, min(32767, round(amps * self.shunt_ohms / self.SHUNT_LSB)))
        bus = max(0, min(self.BUS_MAX, round(volts / self.BUS_LSB)))  # the ADC's full scale
        current = int(shunt * self.regs[0x05] / self.CURRENT_DIV)
        if reg == 0x01:
            return shunt & 0xFFFF
        if reg == 0x02:
            return (bus << self.BUS_SHIFT) | (0x2 if self.BUS_SHIFT else 0)  # INA219: CNVR set
        if reg == 0x04:
            return current & 0xFFFF
        if reg == 0x03:
            return min(0xFFFF, abs(int(current * bus / self.POWER_DIV)))
        raise OSError(_errno.EIO, f"register 0x{reg:02x} does not exist")

    def i2c_write(self, data: bytes) -> None:
        self.check_transfer()
        if not data:
            return
        self.pointer = data[0]
        if len(data) >= 3:
            value = struct.unpack(">H", data[1:3])[0]
            if self.pointer == 0x00:
                self.regs[0x00] = self.CONFIG_RESET if value & 0x8000 else value
                if value & 0x8000:
                    self.regs[0x05] = 0
            elif self.pointer == 0x05:
                self.regs[0x05] = value & (0xFFFE if self.BUS_SHIFT else 0x7FFF)

    def i2c_read(self, length: int) -> bytes:
        self.check_transfer()
        return (struct.pack(">H", self._value(self.pointer)) * ((length + 1) // 2))[:length]


class Ina219Sim(_Ina2xxSim):
    CONFIG_RESET = 0x399F
    SHUNT_LSB = 10e-6
    BUS_LSB = 4e-3
    BUS_SHIFT = 3
    BUS_MAX = 8000  # 32 V range (BRNG = 1)
    CURRENT_DIV = 4096  # Current = Shunt * Cal / 4096
    POWER_DIV = 5000  # Power = Current * Bus / 5000


class Ina226Sim(_Ina2xxSim):
    CONFIG_RESET = 0x4127
    SHUNT_LSB = 2.5e-6
    BUS_LSB = 1.25e-3
    BUS_SHIFT = 0
    BUS_MAX = 0x7FFF  # 40.96 V full scale (36 V rated)
    CURRENT_DIV = 2048  # Current = Shunt * Cal / 2048
    POWER_DIV = 20000  # Power = Current * Bus / 20000
    IDS: ClassVar[dict[int, int]] = {0xFE: 0x5449, 0xFF: 0x2260}
