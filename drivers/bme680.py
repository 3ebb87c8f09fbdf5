"""Bosch BME680 temperature, humidity, pressure and gas sensor (datasheet BST-BME680-DS001).

Runs the unmodified Adafruit CircuitPython driver (``adafruit_bme680``) on our
shared I2C bus through the ``busio.I2C`` adapter, so the same code serves a real
Pi and the register-level simulator in ``drivers/sim/bme680.py``.
"""

from __future__ import annotations

import time

import adafruit_bme680

from drivers.base import ChannelSpec, ChipNotFound, Reading, Sensor
from drivers.bus import I2CBus
from drivers.busio_adapter import BusioI2C


class Bme680(Sensor):
    """One BME680 on an I2C bus; ``read()`` does one forced-mode measurement."""

    TYPE = "bme680"
    DEFAULT_ADDRESS = 0x77
    OPTIONS = {"heater_temp": (320.0, 200.0, False), "heater_ms": (150.0, 1.0, False)}
    CHANNELS = (
        ChannelSpec("temperature", "°C", 0.01, -40.0, 85.0),
        ChannelSpec("humidity", "%", 0.01, 0.0, 100.0),
        ChannelSpec("pressure", "hPa", 0.01, 300.0, 1100.0),
        ChannelSpec("gas", "Ω", 1.0, 0.0, 1.0e7),
    )

    def __init__(self, *, bus: I2CBus, address: int = DEFAULT_ADDRESS,
                 heater_temp: int = 320, heater_ms: int = 150) -> None:
        self.address = address
        try:
            # At 50 readings/s the driver measures afresh on read()'s first
            # property and serves the other three from that same measurement.
            self._dev = adafruit_bme680.Adafruit_BME680_I2C(BusioI2C(bus), address, refresh_rate=50)
        except ValueError as exc:  # adafruit_bus_device: "No I2C device at address"
            raise ChipNotFound(f"BME680: nothing answers at 0x{address:02x} on {bus.name}") from exc
        except RuntimeError as exc:  # "Failed to find BME680! Chip ID 0x.."
            raise ChipNotFound(f"BME680 at 0x{address:02x} on {bus.name}: {exc}") from exc
        if not self._dev.set_gas_heater(int(heater_temp), int(heater_ms)):
            raise OSError(f"BME680 at 0x{address:02x}: could not configure the gas heater")

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
        values = {
            "temperature": float(dev.temperature),
            "humidity": float(dev.relative_humidity),
            "pressure": float(dev.pressure),
            "gas": float(dev.gas),
        }
        return Reading(t=t, mono=mono, values=values)
