"""The ``busio.I2C`` interface on top of our shared I2CBus.

The Adafruit CircuitPython drivers (through ``adafruit_bus_device.I2CDevice``)
only need ``try_lock``/``unlock``, ``writeto``, ``readfrom_into``,
``writeto_then_readfrom`` and ``scan``. Giving them those over ``I2CBus`` lets
the same unmodified Adafruit driver run on a real Pi and on a simulated bus,
and share the bus lock with our own drivers.
"""

from __future__ import annotations

from drivers.bus import I2CBus


class BusioI2C:
    """A ``busio.I2C`` look-alike bound to one I2CBus."""

    def __init__(self, bus: I2CBus) -> None:
        self._bus = bus

    def try_lock(self) -> bool:
        # A short wait instead of busio's instant answer keeps I2CDevice's
        # retry loop (`while not try_lock(): sleep(0)`) from spinning hot.
        return self._bus.lock.acquire(timeout=0.005)

    def unlock(self) -> None:
        self._bus.lock.release()

    def scan(self) -> list[int]:
        return self._bus.scan()

    def writeto(self, address: int, buffer, *, start: int = 0, end: int | None = None) -> None:
        self._bus.write(address, bytes(buffer[start:end]))

    def readfrom_into(self, address: int, buffer, *, start: int = 0, end: int | None = None) -> None:
        end = len(buffer) if end is None else end
        buffer[start:end] = self._bus.read(address, end - start)

    def writeto_then_readfrom(
        self,
        address: int,
        buffer_out,
        buffer_in,
        *,
        out_start: int = 0,
        out_end: int | None = None,
        in_start: int = 0,
        in_end: int | None = None,
    ) -> None:
        in_end = len(buffer_in) if in_end is None else in_end
        buffer_in[in_start:in_end] = self._bus.write_read(
            address, bytes(buffer_out[out_start:out_end]), in_end - in_start
        )

    def deinit(self) -> None:
        """The bus is shared; closing it is its owner's job."""

    def __enter__(self) -> BusioI2C:
        return self

    def __exit__(self, *exc) -> None:
        self.deinit()
