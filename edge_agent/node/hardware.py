"""Where drivers get their hardware: real buses and GPIO, or the simulated ones.

One object with a lifetime hands out drivers for sensor configurations and owns what
they share (gpiozero's pin factories are the model)::

    with SimulatedHardware(cfg) as hw:
        air = hw.make(cfg.sensor("air"))
        hw.sims["air"].spike("temperature", 99.0)

    with Hardware() as hw:               # /dev/i2c-N through smbus2, gpiozero's pins
        meter = hw.make(cfg.sensor("meter"))

Leaving the block (or ``close()``) stops the simulators and closes the buses; the
drivers made are the caller's to close first. A device that is not there, a bus that
does not open and a machine without a GPIO chip are all an ``OSError`` from ``make()``,
which the sampler counts and retries and the command line prints.
"""

from __future__ import annotations

import errno
import time
import warnings
from collections.abc import Callable
from types import TracebackType
from typing import Any, Protocol, runtime_checkable

from drivers.base import Reading, Sensor
from drivers.bus import I2CBus
from drivers.registry import SENSOR_TYPES, SIMULATORS
from drivers.sim.bus import SimulatedSMBus
from drivers.sim.chip import SimChip
from edge_agent.config import AgentConfig, SensorConfig

FIRST_READING_WAIT = 12.0  # s: an SCD4x has its first result 5 s after it starts measuring
POLL = 0.25  # s between reads while a sensor has no result yet


@runtime_checkable
class SignalledDevice(Protocol):
    """A device with nothing to read an ID from (a pulse output on a GPIO line): only its
    signal shows that it is connected. Its driver says whether one came, what the signal
    is called ("pulse") and what to check when none did."""

    SIGNAL: str
    NO_SIGNAL_HINT: str

    def present(self) -> bool: ...


def location(sc: SensorConfig) -> str:
    """Where the sensor is connected, as a technician finds it: "0x77 on i2c-1", "GPIO 17"."""
    if SENSOR_TYPES[sc.type].BUS == "gpio":
        return f"GPIO {int(dict(sc.options)['pin'])}"
    return f"0x{sc.address:02x} on i2c-{sc.bus}"


def shown_present(driver: Sensor) -> bool:
    """Whether the device has shown that it is there. A chip on a bus did when its driver
    was made (it answered at its address, with its ID); a signalled device only once its
    signal came."""
    return driver.present() if isinstance(driver, SignalledDevice) else True


def first_reading(
    driver: Sensor,
    wait: float = FIRST_READING_WAIT,
    *,
    until_present: bool = False,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Reading:
    """The driver's first reading with values, polled every POLL s for at most ``wait`` s
    (an SCD4x gives none until its first 5 s result), or the last, empty one. With
    ``until_present`` a signalled device is polled until it shows itself too, within the
    same bound."""
    deadline = clock() + wait
    while True:
        reading = driver.read()
        if reading.values and (shown_present(driver) or not until_present):
            return reading
        if clock() >= deadline:
            return reading
        sleep(POLL)


class _Hardware:
    """What both kinds share: ``make()`` and the context manager. A subclass must
    override ``bus()`` and ``pin_factory()``, and may extend ``close()``."""

    def __init__(self) -> None:
        self.buses: dict[int, I2CBus] = {}
        self._closed = False

    def bus(self, number: int) -> I2CBus:  # pragma: no cover - abstract
        raise NotImplementedError

    def pin_factory(self) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def make(self, sc: SensorConfig) -> Sensor:
        """A driver for the configured sensor, on this hardware; OSError if it is not there."""
        cls = SENSOR_TYPES[sc.type]
        if cls.BUS == "gpio":
            return cls(pin_factory=self.pin_factory(), **sc.driver_kwargs())  # type: ignore[call-arg]
        return cls(bus=self.bus(sc.bus), address=sc.address, **sc.driver_kwargs())  # type: ignore[call-arg]

    def close(self) -> None:
        """Close the buses (idempotent)."""
        if self._closed:
            return
        self._closed = True
        for bus in self.buses.values():
            bus.close()
        self.buses.clear()

    def __enter__(self) -> _Hardware:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class Hardware(_Hardware):
    """The node's own hardware: /dev/i2c-N through smbus2, each opened on first use and
    shared by every driver on it; GPIO through gpiozero's default pin factory (the
    ``GPIOZERO_PIN_FACTORY`` environment variable chooses another)."""

    def bus(self, number: int) -> I2CBus:
        """The bus /dev/i2c-<number>; OSError (ENOENT, EACCES) when it does not open."""
        bus = self.buses.get(number)
        if bus is None:
            bus = self.buses[number] = I2CBus.open(number)
        return bus

    def pin_factory(self) -> Any:
        """gpiozero's pin factory; OSError (ENODEV) on a machine where none loads, with
        why each candidate failed."""
        from gpiozero import Device
        from gpiozero.exc import BadPinFactory

        with warnings.catch_warnings(record=True) as fallbacks:
            warnings.simplefilter("always")
            try:
                return Device.ensure_pin_factory()
            except BadPinFactory as exc:
                why = "; ".join(str(w.message) for w in fallbacks)
                raise OSError(errno.ENODEV, f"no GPIO: {exc}" + (f" ({why})" if why else "")) from None


class SimulatedHardware(_Hardware):
    """Simulated buses with a simulator at each configured chip's address, and GPIO devices
    on gpiozero's MockFactory driven by their simulators (started here, stopped by
    ``close()``). ``sims`` maps each present sensor's name to its simulator, for
    injecting faults; a sensor with ``sim: {absent: true}`` has none, and nothing answers
    at its address."""

    def __init__(self, cfg: AgentConfig) -> None:
        from gpiozero.pins.mock import MockFactory

        super().__init__()
        self.smbuses: dict[int, SimulatedSMBus] = {}
        self.sims: dict[str, SimChip] = {}
        self.pins = MockFactory()
        self._running: list[Any] = []
        for s in cfg.sensors:
            if SENSOR_TYPES[s.type].BUS == "i2c":
                self.bus(s.bus)
                sm = self.smbuses[s.bus]
                if s.sim_absent:
                    continue
                if s.address not in sm.devices:
                    sm.attach(s.address, SIMULATORS[s.type](s.sim, **s.driver_kwargs()))
                self.sims[s.name] = sm.devices[s.address]  # type: ignore[assignment]
            elif not s.sim_absent:
                sim = SIMULATORS[s.type](s.sim, **s.driver_kwargs())
                sim.start(self.pins)
                self._running.append(sim)
                self.sims[s.name] = sim

    def bus(self, number: int) -> I2CBus:
        """The simulated bus <number> (made empty if no configured chip is on it)."""
        bus = self.buses.get(number)
        if bus is None:
            sm = self.smbuses[number] = SimulatedSMBus()
            bus = self.buses[number] = I2CBus(sm, name=f"sim-i2c-{number}")
        return bus

    def pin_factory(self) -> Any:
        return self.pins

    def close(self) -> None:
        """Stop the simulators, close the buses and the mock pins."""
        if self._closed:
            return
        for sim in self._running:
            sim.stop()
        self._running.clear()
        super().close()
        self.pins.close()
