"""S0 pulse output of an electricity meter (IEC 62053-31) on a GPIO pin, through gpiozero.

The meter closes an open-collector output for at least 30 ms per unit of energy
(``pulses_per_kwh``, printed on the meter, e.g. 1000 imp/kWh). The pin is pulled up,
so a pulse is a falling edge. Edges closer than ``debounce_ms`` to the last counted
one are bounces and only counted as such.

Channels: ``power`` (W) from the interval between the last two pulses (falling as
time passes without a pulse, so a load switched off reads towards zero), ``energy``
(Wh, like every driver's energy: the running total, which the agent keeps across
restarts through ``get_state``/``set_state``, stored with every sealed batch, so after a
power cut it goes on from at least the last total sent) and ``pulses`` (since the
driver started).

Energy's default resolution is the largest power of ten not above one pulse's energy
(1000 / pulses_per_kwh Wh): 1 Wh for the common 1000 imp/kWh, 0.1 Wh for 10000. A pulse
is the finest step the meter tells, so a finer step would only carry digits that are
never set, and a coarser one would hide single pulses; a power of ten keeps the values
short decimals, exact on the wire.

An older agent sent and saved the total in kWh (state ``energy_kwh``): ``set_state``
takes that form too (x 1000), so an upgraded node goes on with the same energy in the
new unit. The state keeps ``energy_kwh`` beside ``energy_wh``, for a node rolled back.
"""

from __future__ import annotations

import math
import threading
import time
from decimal import Decimal
from typing import ClassVar

from gpiozero import DigitalInputDevice

from drivers.base import ChannelSpec, Reading, Sensor
from drivers.options import Float, Int, Option, OptionValue

WH_PER_KWH = 1000.0


class S0Meter(Sensor):
    TYPE = "s0"
    BUS = "gpio"
    DEFAULT_ADDRESS = 0
    CHANNELS = (
        ChannelSpec("power", "W", 1.0, 0.0, 1.0e6),
        ChannelSpec("energy", "Wh", 1.0, 0.0, 1.0e12),  # at 1000 imp/kWh: see default_resolution
        ChannelSpec("pulses", "", 1.0, 0.0, 1.0e15),
    )
    OPTIONS: ClassVar[dict[str, Option]] = {
        "pin": Int(17, 0, 27, doc="the GPIO pin, BCM number (0..27 on the 40-pin header)"),
        "pulses_per_kwh": Float(  # meters print 1 to 100,000 imp/kWh; beyond is a typo
            1000.0,
            min=0.01,
            max=1e6,
            doc="pulses per kWh, printed on the meter (e.g. 1000 imp/kWh), 0.01 to 1,000,000",
        ),
        "debounce_ms": Float(20.0, min=0.0, doc="ms after a counted edge in which further edges are bounces"),
    }

    def __init__(
        self,
        *,
        pin_factory=None,
        pin: int = 17,
        pulses_per_kwh: float = 1000.0,
        debounce_ms: float = 20.0,
        clock=time.monotonic,
    ) -> None:
        self.pulses_per_kwh = pulses_per_kwh
        self.debounce = debounce_ms / 1000.0
        self.clock = clock
        self._lock = threading.Lock()
        self.pulses = 0
        self.bounces = 0
        self.base_wh = 0.0  # energy counted before this driver started (set_state)
        self._last: float | None = None  # monotonic time of the last counted pulse
        self._interval: float | None = None  # seconds between the last two pulses
        self._dev = DigitalInputDevice(int(pin), pull_up=True, pin_factory=pin_factory)
        self._dev.when_activated = self._edge  # pulled up: active = pulled low = a pulse

    @classmethod
    def default_resolution(cls, name: str, options: dict[str, OptionValue]) -> float:
        """Energy: the largest power of ten (Wh) not above one pulse (see the module's text)."""
        if name != "energy":
            return super().default_resolution(name, options)
        pulse_wh = WH_PER_KWH / float(options.get("pulses_per_kwh", 1000.0))
        return float(Decimal(10) ** math.floor(math.log10(pulse_wh) + 1e-9))

    @property
    def wh_per_pulse(self) -> float:
        return WH_PER_KWH / self.pulses_per_kwh

    SIGNAL = "pulse"
    NO_SIGNAL_HINT = (
        "check the S0 wiring (S0+ to the pin, S0- to ground); a meter with no load "
        "sends no pulses: switch a load on and run commission again"
    )

    def present(self) -> bool:
        """Whether a pulse came since the driver started: a pulse line has no ID to read,
        so nothing else tells a meter from a loose wire."""
        with self._lock:
            return self.pulses > 0

    def _edge(self) -> None:  # gpiozero's thread: count and return
        now = self.clock()
        with self._lock:
            if self._last is not None and now - self._last < self.debounce:
                self.bounces += 1
                return
            if self._last is not None:
                self._interval = now - self._last
            self._last = now
            self.pulses += 1

    def read(self) -> Reading:
        t, mono = time.time(), self.clock()
        with self._lock:
            pulses, last, interval = self.pulses, self._last, self._interval
        power = 0.0
        if interval:
            # no pulse for longer than the last interval: the load is at most this
            since = mono - last if last is not None else 0.0
            power = 3.6e6 / (self.pulses_per_kwh * max(interval, since))
        return Reading(
            t=t,
            mono=mono,
            values={
                "power": power,
                "energy": self.base_wh + pulses * self.wh_per_pulse,
                "pulses": float(pulses),
            },
        )

    def get_state(self) -> dict:
        with self._lock:
            wh = self.base_wh + self.pulses * self.wh_per_pulse
        return {"energy_wh": wh, "energy_kwh": wh / WH_PER_KWH}

    def set_state(self, state: dict) -> None:
        """The total saved before (Wh; an older agent's kWh, converted), and the pulses
        counted since this driver started on top of it."""
        if "energy_wh" in state:
            wh = float(state["energy_wh"])
        else:
            wh = float(state.get("energy_kwh", 0.0)) * WH_PER_KWH
        if not math.isfinite(wh) or wh < 0:
            raise ValueError(f"s0: a saved energy total must be a number >= 0 Wh, got {wh!r}")
        with self._lock:
            self.base_wh = wh  # read() adds the pulses counted since the start, as INA2xx does

    def close(self) -> None:
        self._dev.close()
