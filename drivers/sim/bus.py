"""A simulated I2C bus: the ``i2c_rdwr`` of smbus2, routed to simulated chips.

Devices attach at an address and implement ``i2c_write(data)`` and
``i2c_read(length) -> bytes``. An address with no device answers as a real bus
does: OSError with errno ENXIO (no acknowledge). A chip can raise OSError itself
to model NACK/EIO faults.
"""

from __future__ import annotations

import ctypes
import errno
import os
from typing import Protocol

from smbus2.smbus2 import I2C_M_RD


class SimulatedDevice(Protocol):
    """What a simulated chip implements to sit on the bus."""

    def i2c_write(self, data: bytes) -> None: ...

    def i2c_read(self, length: int) -> bytes: ...


class SimulatedSMBus:
    """Stands in for ``smbus2.SMBus`` (its ``i2c_rdwr``) with simulated chips attached."""

    def __init__(self) -> None:
        self.devices: dict[int, SimulatedDevice] = {}
        self.transfers = 0

    def attach(self, address: int, device: SimulatedDevice) -> None:
        if address in self.devices:
            raise ValueError(f"address 0x{address:02x} already has a device")
        self.devices[address] = device

    def detach(self, address: int) -> None:
        self.devices.pop(address, None)

    def i2c_rdwr(self, *msgs) -> None:
        for msg in msgs:
            self.transfers += 1
            dev = self.devices.get(msg.addr)
            if dev is None:
                raise OSError(errno.ENXIO, f"{os.strerror(errno.ENXIO)} (no ACK at 0x{msg.addr:02x})")
            if msg.flags & I2C_M_RD:
                data = bytes(dev.i2c_read(msg.len))
                if len(data) != msg.len:
                    raise OSError(errno.EIO, "short read from simulated chip")
                ctypes.memmove(msg.buf, data, msg.len)
            else:
                dev.i2c_write(ctypes.string_at(msg.buf, msg.len))

    def close(self) -> None:
        """Nothing to release."""
