"""A shared, locked I2C bus over smbus2 (or a simulated bus with the same ``i2c_rdwr``).

One ``I2CBus`` per /dev/i2c-N, shared by every driver on that bus (the hardware
object that opens it keeps it): they all go through its lock, so two threads never
interleave their transfers. Transfers use ``i2c_rdwr`` so a
register read is one combined write/read with a repeated start, as the chips want.
"""

from __future__ import annotations

import errno
import threading

from smbus2 import SMBus, i2c_msg

# 7-bit addresses a scan visits (0x00-0x07 and 0x78-0x7F are reserved).
SCAN_RANGE = range(0x08, 0x78)


class I2CBus:
    """A locked I2C bus. ``smbus`` is an ``smbus2.SMBus`` or anything with its ``i2c_rdwr``."""

    def __init__(self, smbus, *, name: str = "i2c") -> None:
        self._smbus = smbus
        self.name = name
        self.lock = threading.RLock()

    @classmethod
    def open(cls, number: int) -> I2CBus:
        """/dev/i2c-<number> opened (OSError when it does not exist or is not ours to open)."""
        return cls(SMBus(number), name=f"/dev/i2c-{number}")

    def write(self, address: int, data: bytes) -> None:
        """One write transfer (START, address+W, data, STOP)."""
        with self.lock:
            self._smbus.i2c_rdwr(i2c_msg.write(address, bytes(data)))

    def read(self, address: int, length: int) -> bytes:
        """One read transfer of ``length`` bytes."""
        msg = i2c_msg.read(address, length)
        with self.lock:
            self._smbus.i2c_rdwr(msg)
        return bytes(msg)

    def write_read(self, address: int, data: bytes, length: int) -> bytes:
        """Write then read with a repeated start in between (no STOP): a register read."""
        rd = i2c_msg.read(address, length)
        with self.lock:
            self._smbus.i2c_rdwr(i2c_msg.write(address, bytes(data)), rd)
        return bytes(rd)

    def probe(self, address: int) -> bool:
        """True when a device acknowledges its address (a one-byte read, as i2cdetect -r does)."""
        try:
            self.read(address, 1)
        except OSError as exc:
            if exc.errno in (errno.ENXIO, errno.EREMOTEIO, errno.EIO, errno.ETIMEDOUT):
                return False
            raise
        return True

    def scan(self) -> list[int]:
        """Addresses that acknowledge, in ascending order."""
        return [a for a in SCAN_RANGE if self.probe(a)]

    def close(self) -> None:
        with self.lock:
            close = getattr(self._smbus, "close", None)
            if close is not None:
                close()
