"""A simulated S0 electricity meter: it pulses a gpiozero MockFactory pin at the rate its
power profile implies (one pulse per 1000 / pulses_per_kwh Wh, each 30 ms low), on its own
thread; ``energy_wh`` is what it has pulsed out, in the driver's unit (Wh, like every
driver's energy). ``bounces`` adds that many short extra edges to each pulse (contact bounce).

Faults (``drivers.sim.chip``): ``unplug()`` leaves the line high, as an open S0 output
with its pull-up does, and no pulse comes; ``stick()`` freezes the power the pulses are
timed by; ``spike("power", w, n)`` times the next n pulses by ``w``. The bus faults
(nack, failed transfers, checksums) have no meaning on a pulse line."""

from __future__ import annotations

import threading
from typing import ClassVar

from drivers.sim.chip import SimChip
from drivers.sim.profiles import Wave


class S0MeterSim(SimChip):
    ENVIRONMENT: ClassVar[dict[str, Wave]] = {"power": Wave(2000.0)}

    def __init__(
        self,
        environment: dict[str, Wave] | None = None,
        *,
        pin: float = 17,
        pulses_per_kwh: float = 1000.0,
        pulse_ms: float = 30.0,
        bounces: int = 0,
        **_driver_options,
    ) -> None:
        super().__init__(environment)
        self.pin_number = int(pin)
        self.pulses_per_kwh = pulses_per_kwh
        self.pulse_s = pulse_ms / 1000.0
        self.bounces = bounces
        self.sent = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, factory) -> None:
        """Drive pin ``pin`` of a gpiozero MockFactory until stop()."""
        pin = factory.pin(self.pin_number)
        pin.drive_high()

        def run() -> None:
            while not self._stop.is_set():
                if not self.plugged:
                    self._stop.wait(0.05)
                    continue
                watts = max(self.measure()["power"], 0.0)
                if watts <= 0:
                    self._stop.wait(0.5)
                    continue
                period = 3.6e6 / (self.pulses_per_kwh * watts)
                if self._stop.wait(max(period - self.pulse_s, 0.0)):
                    break
                if not self.plugged:
                    continue
                pin.drive_low()
                for _ in range(self.bounces):
                    pin.drive_high()
                    pin.drive_low()
                self.sent += 1
                self._stop.wait(self.pulse_s)
                pin.drive_high()

        self._thread = threading.Thread(target=run, name=f"s0-sim-{self.pin_number}", daemon=True)
        self._thread.start()

    @property
    def energy_wh(self) -> float:
        """Energy the pulses sent so far stand for (Wh): what a driver counting them reads."""
        return self.sent * 1000.0 / self.pulses_per_kwh

    @property
    def running(self) -> bool:
        """Whether its thread drives the pin (from start() until stop())."""
        return self._thread is not None and self._thread.is_alive()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
