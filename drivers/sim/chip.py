"""What every simulator shares: the environment it measures and the faults tests inject.

A simulator subclasses ``SimChip``, names its inputs in ``ENVIRONMENT`` (channel -> the
default Wave), calls ``measure()`` once per conversion the real chip makes, calls
``check_transfer()`` at the start of every I2C transfer, asks ``take_corrupt()`` where the
chip sends a CRC or checksum, and resets its registers in ``power_on()``.

The faults, the same on every chip:

- ``nack = True``: the chip holds the bus but acknowledges nothing (EREMOTEIO);
- ``fail_next(n, errno)``: the next n transfers fail with that errno (EIO by default);
- ``corrupt_next = n``: the next n CRCs or checksums sent are wrong (chips that send one);
- ``stick()`` / ``unstick()``: the chip keeps converting but returns the same raw value,
  the one of the moment it stuck (a frozen ADC, a blocked sensor inlet);
- ``spike(channel, value, count=1)``: the next ``count`` conversions read ``value`` on
  that channel (a glitch on the line, a burst of dust, a switching load);
- ``unplug()`` / ``replug()``: the chip leaves the bus (no acknowledge at its address,
  ENXIO, as an empty address answers) and comes back powered on from reset: registers at
  their reset values, measurement stopped, everything a driver set up lost.
"""

from __future__ import annotations

import errno as _errno
import os
import threading
import time
from collections.abc import Callable
from typing import ClassVar

from drivers.sim.profiles import Wave


class SimChip:
    ENVIRONMENT: ClassVar[dict[str, Wave]] = {}

    def __init__(
        self, environment: dict[str, Wave] | None = None, *, wall: Callable[[], float] = time.time
    ) -> None:
        unknown = set(environment or {}) - set(self.ENVIRONMENT)
        if unknown:
            raise KeyError(f"{type(self).__name__} has no input {sorted(unknown)[0]!r}")
        self.environment = {**self.ENVIRONMENT, **(environment or {})}
        self.wall = wall
        self.nack = False
        self.plugged = True
        self.corrupt_next = 0
        self.conversions = 0
        self._fail_next = 0
        self._fail_errno = _errno.EIO
        self._stuck: dict[str, float] | None = None
        self._spikes: dict[str, list] = {}  # channel -> [value, conversions left]
        self._fault_lock = threading.Lock()

    # --- what tests set ------------------------------------------------------------------
    def set(self, **values: float) -> None:
        """Constant inputs, e.g. ``set(temperature=22.5)``."""
        for name, value in values.items():
            if name not in self.ENVIRONMENT:
                raise KeyError(f"{type(self).__name__} has no input {name!r}")
            self.environment[name] = Wave(float(value))

    def fail_next(self, count: int, err: int = _errno.EIO) -> None:
        """The next ``count`` transfers fail with OSError(err)."""
        with self._fault_lock:
            self._fail_next, self._fail_errno = count, err

    def stick(self) -> None:
        """From now on every conversion returns what the inputs are now."""
        with self._fault_lock:
            self._stuck = self._inputs(self.wall())

    def unstick(self) -> None:
        with self._fault_lock:
            self._stuck = None

    def spike(self, channel: str, value: float, count: int = 1) -> None:
        """The next ``count`` conversions read ``value`` on ``channel``."""
        if channel not in self.ENVIRONMENT:
            raise KeyError(f"{type(self).__name__} has no input {channel!r}")
        with self._fault_lock:
            self._spikes[channel] = [float(value), count]

    def unplug(self) -> None:
        self.plugged = False

    def replug(self) -> None:
        """Back on the bus, from power-on reset."""
        self.power_on()
        self.plugged = True

    # --- what the chip models call -----------------------------------------------------------
    def power_on(self) -> None:
        """Registers and modes to their power-on values (each chip overrides)."""

    def check_transfer(self) -> None:
        """Raise the injected fault of this transfer, if any."""
        if not self.plugged:
            raise OSError(_errno.ENXIO, f"{os.strerror(_errno.ENXIO)} (unplugged)")
        if self.nack:
            raise OSError(_errno.EREMOTEIO, os.strerror(_errno.EREMOTEIO))
        with self._fault_lock:
            if self._fail_next > 0:
                self._fail_next -= 1
                raise OSError(self._fail_errno, os.strerror(self._fail_errno))

    def take_corrupt(self) -> bool:
        """True when this CRC or checksum is to be sent wrong."""
        with self._fault_lock:
            if self.corrupt_next > 0:
                self.corrupt_next -= 1
                return True
            return False

    def _inputs(self, t: float) -> dict[str, float]:
        return {name: wave.at(t) for name, wave in self.environment.items()}

    def measure(self) -> dict[str, float]:
        """The inputs one conversion sees now, with the stuck and spike faults applied."""
        with self._fault_lock:
            values = dict(self._stuck) if self._stuck is not None else self._inputs(self.wall())
            for name, spike in list(self._spikes.items()):
                values[name] = spike[0]
                spike[1] -= 1
                if spike[1] <= 0:
                    del self._spikes[name]
            self.conversions += 1
            return values
