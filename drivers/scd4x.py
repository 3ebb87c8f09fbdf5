"""Sensirion SCD40/SCD41 CO2 sensor (datasheet: SCD4x, v1.x), through the Adafruit
``adafruit_scd4x`` driver on the busio adapter.

Commands are 16-bit words; every data word read back carries a CRC-8 (polynomial 0x31,
init 0xFF). The sensor runs in periodic measurement mode (a new result every 5 s);
``read()`` returns the new result when one is ready and no values otherwise. Automatic
self-calibration (ASC) is switched on or off from the configuration (``asc``).
"""

from __future__ import annotations

import time

import adafruit_scd4x

from drivers.base import ChannelSpec, ChecksumError, ChipNotFound, Reading, Sensor
from drivers.bus import I2CBus
from drivers.busio_adapter import BusioI2C


class Scd4x(Sensor):
    TYPE = "scd4x"
    DEFAULT_ADDRESS = 0x62
    CHANNELS = (
        ChannelSpec("co2", "ppm", 1.0, 0.0, 40000.0),
        ChannelSpec("temperature", "°C", 0.01, -10.0, 60.0),
        ChannelSpec("humidity", "%", 0.01, 0.0, 100.0),
    )
    OPTIONS = {"asc": (1.0, 0.0, False)}

    def __init__(self, *, bus: I2CBus, address: int = DEFAULT_ADDRESS, asc: float = 1.0) -> None:
        if not bus.probe(address):
            raise ChipNotFound(f"scd4x: nothing answers at 0x{address:02x} on {bus.name}")
        try:
            self._dev = adafruit_scd4x.SCD4X(BusioI2C(bus), address)  # stops any periodic mode
            self.serial = self._dev.serial_number
            self._dev.self_calibration_enabled = bool(asc)
            self._dev.start_periodic_measurement()
        except RuntimeError as exc:
            raise ChipNotFound(f"scd4x at 0x{address:02x}: {exc}") from exc

    @classmethod
    def identify(cls, bus: I2CBus, address: int) -> str | None:
        return None  # reading its serial needs a command the chip refuses while measuring

    def read(self) -> Reading:
        t, mono = time.time(), time.monotonic()
        try:
            d = self._dev
            if not d.data_ready:
                return Reading(t=t, mono=mono, values={})
            # CO2 reads the new frame; temperature and humidity then come from the same frame
            values = {"co2": float(d.CO2), "temperature": d.temperature, "humidity": d.relative_humidity}
        except RuntimeError as exc:
            if isinstance(exc.__cause__, OSError):
                raise exc.__cause__
            raise ChecksumError(f"scd4x: {exc}") from exc
        return Reading(t=t, mono=mono, values=values)

    def close(self) -> None:
        try:
            self._dev.stop_periodic_measurement()
        except RuntimeError:
            pass
