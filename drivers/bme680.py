"""Bosch BME680 temperature, humidity, pressure and gas sensor (datasheet BST-BME680-DS001).

Runs the unmodified Adafruit CircuitPython driver (``adafruit_bme680``) on our
shared I2C bus through the ``busio.I2C`` adapter, so the same code serves a real
Pi and the register-level simulator in ``drivers/sim/bme680.py``.
"""

from __future__ import annotations

import errno
import math
import time
from typing import ClassVar

import adafruit_bme680

from drivers.base import ChannelSpec, ChipNotFound, Reading, Sensor
from drivers.bus import I2CBus
from drivers.busio_adapter import BusioI2C
from drivers.options import Duration, Int, Mapping, Option

_REG_GAS_WAIT_0 = 0x64


class Bme680(Sensor):
    """One BME680 on an I2C bus; ``read()`` does one forced-mode measurement."""

    TYPE = "bme680"
    DEFAULT_ADDRESS = 0x77
    ADDRESSES = (0x76, 0x77)  # SDO to GND: 0x76, to VDDIO: 0x77
    OPTIONS: ClassVar[dict[str, Option]] = {
        "heater": Mapping(
            doc="the gas sensor's hot plate, heated before every gas measurement",
            temperature=Int(320, 200, 400, keyword="heater_temp", doc="plate temperature in °C"),
            duration=Duration(
                "150ms",
                min="1ms",
                max="4032ms",
                unit="ms",
                keyword="heater_ms",
                doc="how long the plate is held at temperature (the chip's gas wait: at most 4032ms)",
            ),
        )
    }
    CHANNELS = (
        ChannelSpec("temperature", "°C", 0.01, -40.0, 85.0),
        ChannelSpec("humidity", "%", 0.01, 0.0, 100.0),
        ChannelSpec("pressure", "hPa", 0.01, 300.0, 1100.0),
        ChannelSpec("gas", "Ω", 1.0, 0.0, 1.0e7),
    )

    def __init__(
        self, *, bus: I2CBus, address: int = DEFAULT_ADDRESS, heater_temp: int = 320, heater_ms: int = 150
    ) -> None:
        self.address = address
        try:
            # The driver measures on the first property read and serves the others from
            # that measurement while it is younger than 1/refresh_rate; read() starts
            # every reading with a fresh measurement (see there).
            self._dev = adafruit_bme680.Adafruit_BME680_I2C(BusioI2C(bus), address, refresh_rate=10)
        except ValueError as exc:  # adafruit_bus_device: "No I2C device at address"
            raise ChipNotFound(f"BME680: nothing answers at 0x{address:02x} on {bus.name}") from exc
        except RuntimeError as exc:  # "Failed to find BME680! Chip ID 0x.."
            raise ChipNotFound(f"BME680 at 0x{address:02x} on {bus.name}: {exc}") from exc
        if not hasattr(self._dev, "_last_reading"):
            raise RuntimeError(
                "adafruit_bme680 has changed: no _last_reading to start a fresh measurement by"
            )
        self.bus = bus
        self.heater = (int(heater_temp), int(heater_ms))
        self._set_heater()

    def _set_heater(self) -> None:
        if not self._dev.set_gas_heater(*self.heater):
            raise OSError(errno.EIO, f"BME680 at 0x{self.address:02x}: could not configure the gas heater")
        self._gas_wait = self.bus.write_read(self.address, bytes([_REG_GAS_WAIT_0]), 1)[0]

    def _check_heater(self) -> None:
        """A chip that lost power comes back with a heater profile of zeros and then
        measures gas with a cold plate; the Adafruit driver writes the other settings
        on every reading, but not these. Set them again and fail this read."""
        if self.bus.write_read(self.address, bytes([_REG_GAS_WAIT_0]), 1)[0] != self._gas_wait:
            self._set_heater()
            raise OSError(
                errno.EIO,
                f"BME680 at 0x{self.address:02x}: gas heater settings lost (chip reset?); set again",
            )

    @classmethod
    def identify(cls, bus: I2CBus, address: int) -> str | None:
        try:
            chip_id = bus.write_read(address, b"\xd0", 1)[0]
            variant = bus.write_read(address, b"\xf0", 1)[0]
        except OSError:
            return None
        if chip_id != 0x61:
            return None
        return f"chip ID 0x61, variant 0x{variant:02x} ({'BME688' if variant == 0x01 else 'BME680'})"

    def read(self) -> Reading:
        t, mono = time.time(), time.monotonic()
        dev = self._dev
        self._check_heater()
        # Two read()s closer than the driver's cache time must not return one measurement twice.
        dev._last_reading = -math.inf
        values = {
            "temperature": float(dev.temperature),
            "humidity": float(dev.relative_humidity),
            "pressure": float(dev.pressure),
            "gas": float(dev.gas),
        }
        return Reading(t=t, mono=mono, values=values)
