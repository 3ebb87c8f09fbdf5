"""Sensirion SCD40/SCD41 CO2 sensor (datasheet: SCD4x, v1.x), through the Adafruit
``adafruit_scd4x`` driver on the busio adapter.

Commands are 16-bit words; every data word read back carries a CRC-8 (polynomial 0x31,
init 0xFF). The chip has one address, 0x62, and no ID register: ``identify`` asks for its
serial number (get_serial_number, 0x3682: three words, each CRC-checked), refused while it
measures, and then for its data-ready status (0xE4B8), which it answers in both modes. The sensor runs in periodic measurement mode (a new result every 5 s);
``read()`` returns the new result when one is ready and no values otherwise. Automatic
self-calibration (ASC) is switched on or off from the configuration (``asc``).
"""

from __future__ import annotations

import errno
import time
from typing import ClassVar

import adafruit_scd4x

from drivers.base import ChannelSpec, ChecksumError, ChipNotFound, Reading, Sensor
from drivers.bus import I2CBus
from drivers.busio_adapter import BusioI2C
from drivers.options import Bool, Option

_CMD_GET_SERIAL_NUMBER = 0x3682
_CMD_GET_DATA_READY_STATUS = 0xE4B8
_COMMAND_TIME = 0.001  # s: execution time of both commands before the reply can be read (datasheet)


def crc8(data: bytes) -> int:
    """Sensirion CRC-8 of a data word: polynomial 0x31, init 0xFF (datasheet: 0xBEEF -> 0x92)."""
    crc = 0xFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = ((crc << 1) ^ 0x31) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


def _command_words(bus: I2CBus, address: int, command: int, count: int) -> list[int] | None:
    """The ``count`` words the chip answers to a read command, or None when it refuses
    the command or a word's CRC is wrong (not an SCD4x, or not one ready for it)."""
    try:
        bus.write(address, command.to_bytes(2, "big"))
        time.sleep(_COMMAND_TIME)
        raw = bus.read(address, 3 * count)
    except OSError:
        return None
    words = [raw[i : i + 3] for i in range(0, len(raw), 3)]
    if any(crc8(w[:2]) != w[2] for w in words):
        return None
    return [int.from_bytes(w[:2], "big") for w in words]


class Scd4x(Sensor):
    TYPE = "scd4x"
    DEFAULT_ADDRESS = 0x62
    ADDRESSES = (0x62,)
    CHANNELS = (
        ChannelSpec("co2", "ppm", 1.0, 0.0, 40000.0),
        ChannelSpec("temperature", "°C", 0.01, -10.0, 60.0),
        ChannelSpec("humidity", "%", 0.01, 0.0, 100.0),
    )
    OPTIONS: ClassVar[dict[str, Option]] = {
        "asc": Bool(
            True,
            doc="automatic self-calibration: on for a sensor that sees outdoor air "
            "(about 400 ppm) at least once a week, off otherwise",
        )
    }
    STALE_AFTER = 16.0  # seconds without a result (one every 5 s) before the chip is restarted
    # The chip computes CO2 from the gas's density at the ambient pressure it was told
    # (101,300 Pa until told): 1,500 m up, ~845 hPa, it reads about 17 % low without it.
    INPUTS: ClassVar[dict[str, str]] = {"pressure": "hPa"}
    PRESSURE_RANGE = (700, 1200)  # hPa the set_ambient_pressure command takes (datasheet)

    def __init__(self, *, bus: I2CBus, address: int = DEFAULT_ADDRESS, asc: float = 1.0) -> None:
        if not bus.probe(address):
            raise ChipNotFound(f"scd4x: nothing answers at 0x{address:02x} on {bus.name}")
        self.address, self.asc = address, bool(asc)
        self.pressure_set: int | None = None  # hPa last told (the chip forgets it at a reset)
        try:
            self._dev = adafruit_scd4x.SCD4X(BusioI2C(bus), address)  # stops any periodic mode
            self.serial = self._dev.serial_number
            self._start()
        except RuntimeError as exc:
            raise ChipNotFound(f"scd4x at 0x{address:02x}: {exc}") from exc

    def _start(self) -> None:
        self._dev.self_calibration_enabled = self.asc
        self.pressure_set = None
        self._dev.start_periodic_measurement()
        self._last_data = time.monotonic()

    @classmethod
    def identify(cls, bus: I2CBus, address: int) -> str | None:
        # Only at the chip's one address: a command written elsewhere could set another
        # chip's register. Neither command changes the SCD4x's state.
        if address != cls.DEFAULT_ADDRESS:
            return None
        serial = _command_words(bus, address, _CMD_GET_SERIAL_NUMBER, 3)
        if serial is not None:
            number = (serial[0] << 32) | (serial[1] << 16) | serial[2]
            return f"serial number 0x{number:012x} (get_serial_number, CRC-8 valid)"
        if _command_words(bus, address, _CMD_GET_DATA_READY_STATUS, 1) is not None:
            return "data-ready status, CRC-8 valid (measuring: its serial number is read only when idle)"
        return None

    def read(self) -> Reading:
        t, mono = time.time(), time.monotonic()
        try:
            d = self._dev
            if not d.data_ready:
                if mono - self._last_data > self.STALE_AFTER:
                    self._restart(mono)
                return Reading(t=t, mono=mono, values={})
            self._last_data = mono
            # CO2 reads the new frame; temperature and humidity then come from the same frame
            values = {"co2": float(d.CO2), "temperature": d.temperature, "humidity": d.relative_humidity}
        except RuntimeError as exc:
            if isinstance(exc.__cause__, OSError):
                raise exc.__cause__ from None  # the bus error itself, not the wrapper
            raise ChecksumError(f"scd4x: {exc}") from exc
        return Reading(t=t, mono=mono, values=values)

    def set_input(self, name: str, value: float) -> None:
        """The ambient pressure (hPa) for the chip's CO2 compensation (set_ambient_pressure,
        0xE000, taken while measuring); sent only when it moved by a whole hPa."""
        if name != "pressure":
            super().set_input(name, value)
        hpa = round(value)
        low, high = self.PRESSURE_RANGE
        if not low <= hpa <= high:
            raise ValueError(f"scd4x: an ambient pressure of {value:g} hPa is outside {low}..{high} hPa")
        if hpa != self.pressure_set:
            try:
                self._dev.ambient_pressure = hpa
            except RuntimeError as exc:
                if isinstance(exc.__cause__, OSError):
                    raise exc.__cause__ from None
                raise ChecksumError(f"scd4x: {exc}") from exc
            self.pressure_set = hpa

    def _restart(self, mono: float) -> None:
        """No result for three periods: the chip lost power and came back idle (and with
        ASC at its stored default). Start it again; the command is refused (an OSError)
        if it is in fact measuring, and then that error is what this read reports."""
        idle = mono - self._last_data
        self._start()
        raise OSError(
            errno.EIO,
            f"scd4x at 0x{self.address:02x}: no result for {idle:.0f} s "
            "(chip reset?); periodic measurement started again",
        )

    def close(self) -> None:
        try:
            self._dev.stop_periodic_measurement()
        except RuntimeError:
            pass
