"""Plantower PMSA003I particulate sensor over I2C (datasheet: PMSA003I series, v2.2).

Runs the Adafruit CircuitPython driver (``adafruit_pm25``) through the busio adapter. Each
read is a 32-byte frame: "BM", frame length 28, twelve big-endian words (PM1.0, PM2.5,
PM10 at standard particle and in atmospheric environment, in µg/m³; particle counts
beyond 0.3/0.5/1.0/2.5/5.0/10 µm per 0.1 L of air), a reserved word and a checksum (the
sum of the first 30 bytes). A failed checksum is a ChecksumError. The fan and laser need
about 30 s after power-on before readings are stable: ``warming_up`` says so.
"""

from __future__ import annotations

import time

from adafruit_pm25.i2c import PM25_I2C

from drivers.base import READING_WARMING_UP, ChannelSpec, ChecksumError, ChipNotFound, Reading, Sensor
from drivers.bus import I2CBus
from drivers.busio_adapter import BusioI2C

WARM_UP_S = 30.0


_FIELDS = (
    ("pm1_0", "pm10 env"),
    ("pm2_5", "pm25 env"),
    ("pm10", "pm100 env"),
    ("particles_0_3um", "particles 03um"),
    ("particles_0_5um", "particles 05um"),
    ("particles_1_0um", "particles 10um"),
    ("particles_2_5um", "particles 25um"),
    ("particles_5_0um", "particles 50um"),
    ("particles_10um", "particles 100um"),
)


class Pmsa003i(Sensor):
    TYPE = "pmsa003i"
    DEFAULT_ADDRESS = 0x12
    ADDRESSES = (0x12,)
    CHANNELS = tuple(ChannelSpec(name, "µg/m³", 1.0, 0.0, 1000.0) for name, _ in _FIELDS[:3]) + tuple(
        ChannelSpec(name, "/0.1L", 1.0, 0.0, 65535.0) for name, _ in _FIELDS[3:]
    )

    def __init__(self, *, bus: I2CBus, address: int = DEFAULT_ADDRESS, clock=time.monotonic) -> None:
        if not bus.probe(address):
            raise ChipNotFound(f"pmsa003i: nothing answers at 0x{address:02x} on {bus.name}")
        self._dev = PM25_I2C(BusioI2C(bus), address=address)
        self.clock = clock
        self.started = clock()

    @property
    def warming_up(self) -> bool:
        return self.clock() - self.started < WARM_UP_S

    @classmethod
    def identify(cls, bus: I2CBus, address: int) -> str | None:
        try:
            frame = bus.read(address, 32)
        except OSError:
            return None
        if frame[:4] == b"BM\x00\x1c" and sum(frame[:30]) == int.from_bytes(frame[30:32], "big"):
            return "frame header 'BM', length 28, checksum valid"
        return None

    def read(self) -> Reading:
        t, mono = time.time(), time.monotonic()
        try:
            data = self._dev.read()
        except RuntimeError as exc:  # adafruit_pm25: header, length or checksum wrong, or I/O
            if isinstance(exc.__cause__, OSError):
                raise exc.__cause__ from None
            raise ChecksumError(f"pmsa003i: {exc}") from exc
        return Reading(
            t=t,
            mono=mono,
            values={name: float(data[key]) for name, key in _FIELDS},
            quality=READING_WARMING_UP if self.warming_up else 0,
        )
