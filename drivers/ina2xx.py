"""TI INA219 (datasheet SBOS448) and INA226 (SBOS547) current/power monitors, on smbus2.

No maintained CircuitPython driver fits our shared bus and energy integration, so these
are written on the bus directly: 16-bit big-endian registers behind a pointer byte.
The calibration register is computed as the datasheets give it:

* INA219: ``Current_LSB = max_current / 2^15``, ``Cal = trunc(0.04096 / (Current_LSB * R_shunt))``,
  ``Power_LSB = 20 * Current_LSB``; shunt voltage LSB 10 µV, bus voltage LSB 4 mV (bits 15..3).
* INA226: ``Cal = trunc(0.00512 / (Current_LSB * R_shunt))``, ``Power_LSB = 25 * Current_LSB``;
  shunt voltage LSB 2.5 µV, bus voltage LSB 1.25 mV.

Energy (Wh) is integrated on the node across readings (trapezoids of power over the
monotonic clock), since neither chip accumulates it. The total is kept across restarts
through ``get_state``/``set_state`` (``energy_wh``, like the S0 meter's): the agent stores it
with every sealed batch, so after a power cut it goes on from at least the last total sent.
"""

from __future__ import annotations

import errno
import math
import struct
import time
from typing import ClassVar

from drivers.base import ChannelSpec, ChipNotFound, Reading, Sensor
from drivers.bus import I2CBus
from drivers.options import Float, Option, OptionValue

_REG_CONFIG = 0x00
_REG_SHUNT = 0x01
_REG_BUS = 0x02
_REG_POWER = 0x03
_REG_CURRENT = 0x04
_REG_CALIBRATION = 0x05
_REG_MANUFACTURER_ID = 0xFE
_REG_DIE_ID = 0xFF

INA219_CONFIG_RESET = 0x399F
INA226_MANUFACTURER_ID = 0x5449  # "TI"
INA226_DIE_ID = 0x2260


def calibration(chip: str, shunt_ohms: float, max_current: float) -> tuple[int, float]:
    """(calibration register value, current LSB in A) for a shunt and an expected maximum current."""
    current_lsb = max_current / 32768.0
    scale = 0.04096 if chip == "ina219" else 0.00512
    cal = int(scale / (current_lsb * shunt_ohms))
    if not 1 <= cal <= 0xFFFE:
        raise ValueError(
            f"{chip}: calibration {cal} out of range for shunt {shunt_ohms} Ω and max current {max_current} A"
        )
    return cal, current_lsb


class _Ina2xx(Sensor):
    """Shared code of the two chips; a subclass sets the chip's constants."""

    DEFAULT_ADDRESS = 0x40
    ADDRESSES = tuple(range(0x40, 0x50))  # A0 and A1 each to GND, VS, SDA or SCL
    CHANNELS = (
        ChannelSpec("bus_voltage", "V", 0.001, 0.0, 36.0),
        ChannelSpec("shunt_voltage", "mV", 0.001, -327.68, 327.68),
        ChannelSpec("current", "A", 0.0001, -100.0, 100.0),
        ChannelSpec("power", "W", 0.001, 0.0, 3600.0),
        ChannelSpec("energy", "Wh", 0.001, 0.0, 1e12),
    )
    SHUNT_LSB_V = 0.0
    BUS_LSB_V = 0.0
    POWER_LSB_FACTOR = 0
    BUS_SHIFT = 0

    OPTIONS: ClassVar[dict[str, Option]] = {
        "shunt_ohms": Float(0.1, min=0.0, min_exclusive=True, doc="the shunt resistor in Ω"),
        "max_current": Float(
            3.2,
            min=0.0,
            min_exclusive=True,
            doc="the largest current expected, in A (sets the current LSB: max_current / 2^15)",
        ),
    }

    @classmethod
    def check_options(cls, options: dict[str, OptionValue]) -> None:
        """The calibration register must hold 1..0xFFFE: the shunt's voltage at max_current
        (shunt_ohms x max_current) within the chip's range for it."""
        shunt, most = float(options["shunt_ohms"]), float(options["max_current"])
        try:
            calibration(cls.TYPE, shunt, most)
        except ValueError:
            scale = 0.04096 if cls.TYPE == "ina219" else 0.00512
            low, high = scale * 32768 / 0xFFFE, scale * 32768
            raise ValueError(
                f"shunt_ohms x max_current (the shunt's voltage at the largest current) from "
                f"{low:.4g} to {high:.4g} V for the {cls.TYPE}, got {shunt:g} x {most:g} = {shunt * most:.4g} V"
            ) from None

    def __init__(
        self,
        *,
        bus: I2CBus,
        address: int = DEFAULT_ADDRESS,
        shunt_ohms: float = 0.1,
        max_current: float = 3.2,
    ) -> None:
        self.bus, self.address = bus, address
        self.cal, self.current_lsb = calibration(self.TYPE, shunt_ohms, max_current)
        self.power_lsb = self.POWER_LSB_FACTOR * self.current_lsb
        if not bus.probe(address):
            raise ChipNotFound(f"{self.TYPE}: nothing answers at 0x{address:02x} on {bus.name}")
        self._identify()
        self._write(_REG_CALIBRATION, self.cal)
        self.energy_wh = 0.0  # the running total: what set_state gave, and what was integrated since
        self._restored = 0.0  # the part of it that set_state gave
        self._last: tuple[float, float] | None = None  # (monotonic s, power W)

    def _read(self, reg: int) -> int:
        return struct.unpack(">H", self.bus.write_read(self.address, bytes([reg]), 2))[0]

    def _write(self, reg: int, value: int) -> None:
        self.bus.write(self.address, bytes([reg]) + struct.pack(">H", value))

    def _check_calibration(self) -> None:
        """A chip that lost power comes back with calibration 0, and then reads current
        and power as 0 whatever flows (the check of Linux's ina2xx driver, done where
        it matters: when both read 0). Write it again and fail this read."""
        cal = self._read(_REG_CALIBRATION)
        if cal != self.cal:
            self._write(_REG_CALIBRATION, self.cal)
            raise OSError(
                errno.EIO,
                f"{self.TYPE} at 0x{self.address:02x}: calibration register read "
                f"0x{cal:04x}, not 0x{self.cal:04x} (chip reset?); written again",
            )

    def _identify(self) -> None:  # pragma: no cover - each chip overrides
        raise NotImplementedError

    def read(self) -> Reading:
        t, mono = time.time(), time.monotonic()
        raw_shunt = struct.unpack(">h", struct.pack(">H", self._read(_REG_SHUNT)))[0]
        raw_bus = self._read(_REG_BUS) >> self.BUS_SHIFT
        raw_current = struct.unpack(">h", struct.pack(">H", self._read(_REG_CURRENT)))[0]
        raw_power = self._read(_REG_POWER)
        if raw_current == 0 and raw_power == 0:
            self._check_calibration()
        power = raw_power * self.power_lsb
        if self._last is not None:
            dt = mono - self._last[0]
            self.energy_wh += (self._last[1] + power) / 2.0 * dt / 3600.0
        self._last = (mono, power)
        return Reading(
            t=t,
            mono=mono,
            values={
                "bus_voltage": raw_bus * self.BUS_LSB_V,
                "shunt_voltage": raw_shunt * self.SHUNT_LSB_V * 1000.0,
                "current": raw_current * self.current_lsb,
                "power": power,
                "energy": self.energy_wh,
            },
        )

    def get_state(self) -> dict:
        return {"energy_wh": self.energy_wh}

    def set_state(self, state: dict) -> None:
        """The total saved before, with the energy integrated since this driver started on top
        (nothing, when the agent gives it back at once, as it does)."""
        wh = float(state["energy_wh"])
        if not math.isfinite(wh) or wh < 0:
            raise ValueError(f"{self.TYPE}: a saved energy total must be a number >= 0 Wh, got {wh!r}")
        self.energy_wh += wh - self._restored
        self._restored = wh


def _peek(bus: I2CBus, address: int, reg: int) -> int | None:
    try:
        return struct.unpack(">H", bus.write_read(address, bytes([reg]), 2))[0]
    except OSError:
        return None


class Ina219(_Ina2xx):
    """INA219: 12-bit, bus up to 26 V. It has no ID register: it is recognised by the
    power-on value of its configuration register (0x399F) after a reset (bit 15)."""

    TYPE = "ina219"
    SHUNT_LSB_V = 10e-6
    BUS_LSB_V = 4e-3
    POWER_LSB_FACTOR = 20
    BUS_SHIFT = 3

    @classmethod
    def identify(cls, bus: I2CBus, address: int) -> str | None:
        # No ID register: the configuration at its power-on value is the signature we can
        # read without resetting a chip that may be in use.
        if _peek(bus, address, _REG_MANUFACTURER_ID) == INA226_MANUFACTURER_ID:
            return None
        config = _peek(bus, address, _REG_CONFIG)
        return (
            "configuration register at its power-on value 0x399F" if config == INA219_CONFIG_RESET else None
        )

    def _identify(self) -> None:
        self._write(_REG_CONFIG, 0x8000)  # reset: the configuration returns to its power-on value
        config = self._read(_REG_CONFIG)
        if config != INA219_CONFIG_RESET:
            raise ChipNotFound(
                f"ina219 at 0x{self.address:02x}: configuration after reset is 0x{config:04x}, "
                f"not 0x{INA219_CONFIG_RESET:04x}"
            )


class Ina226(_Ina2xx):
    """INA226: 16-bit, bus up to 36 V; manufacturer ID 0x5449 and die ID 0x2260."""

    TYPE = "ina226"
    SHUNT_LSB_V = 2.5e-6
    BUS_LSB_V = 1.25e-3
    POWER_LSB_FACTOR = 25
    BUS_SHIFT = 0

    @classmethod
    def identify(cls, bus: I2CBus, address: int) -> str | None:
        mid, die = _peek(bus, address, _REG_MANUFACTURER_ID), _peek(bus, address, _REG_DIE_ID)
        if (mid, die) == (INA226_MANUFACTURER_ID, INA226_DIE_ID):
            return "manufacturer ID 0x5449 (TI), die ID 0x2260"
        return None

    def _identify(self) -> None:
        try:
            mid, die = self._read(_REG_MANUFACTURER_ID), self._read(_REG_DIE_ID)
        except OSError as exc:
            raise ChipNotFound(
                f"ina226 at 0x{self.address:02x}: ID registers unreadable ({exc}): "
                f"IDs 0x5449/0x2260 not found"
            ) from exc
        if (mid, die) != (INA226_MANUFACTURER_ID, INA226_DIE_ID):
            raise ChipNotFound(
                f"ina226 at 0x{self.address:02x}: IDs 0x{mid:04x}/0x{die:04x}, "
                f"expected 0x{INA226_MANUFACTURER_ID:04x}/0x{INA226_DIE_ID:04x}"
            )
