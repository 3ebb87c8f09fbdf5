"""Simulated PMSA003I: every read returns a 32-byte frame of the current environment, with
its checksum. Faults: those of every simulator (``drivers.sim.chip``); ``corrupt_next``
sends frames with a wrong checksum."""

from __future__ import annotations

import struct
import time
from collections.abc import Callable
from typing import ClassVar

from drivers.sim.chip import SimChip
from drivers.sim.profiles import Wave

_CHANNELS = (
    "pm1_0",
    "pm2_5",
    "pm10",
    "particles_0_3um",
    "particles_0_5um",
    "particles_1_0um",
    "particles_2_5um",
    "particles_5_0um",
    "particles_10um",
)


class Pmsa003iSim(SimChip):
    ENVIRONMENT: ClassVar[dict[str, Wave]] = {
        "pm1_0": Wave(5.0),
        "pm2_5": Wave(8.0),
        "pm10": Wave(12.0),
        "particles_0_3um": Wave(900.0),
        "particles_0_5um": Wave(250.0),
        "particles_1_0um": Wave(60.0),
        "particles_2_5um": Wave(8.0),
        "particles_5_0um": Wave(2.0),
        "particles_10um": Wave(1.0),
    }

    def __init__(
        self,
        environment: dict[str, Wave] | None = None,
        *,
        wall: Callable[[], float] = time.time,
        **_driver_options,
    ) -> None:
        super().__init__(environment, wall=wall)

    def frame(self) -> bytes:
        v = {k: max(0, min(65535, round(x))) for k, x in self.measure().items()}
        words = (
            v["pm1_0"],
            v["pm2_5"],
            v["pm10"],
            v["pm1_0"],
            v["pm2_5"],
            v["pm10"],
            *(v[k] for k in _CHANNELS[3:]),
        )
        body = b"BM" + struct.pack(">H", 28) + struct.pack(">12H", *words) + b"\x97\x00"
        check = sum(body)
        if self.take_corrupt():
            check ^= 0x5A5A
        return body + struct.pack(">H", check & 0xFFFF)

    def i2c_write(self, data: bytes) -> None:
        self.check_transfer()

    def i2c_read(self, length: int) -> bytes:
        self.check_transfer()
        return (self.frame() * (length // 32 + 1))[:length]
