"""What every sensor driver shares: channel descriptions, readings, the base class."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from drivers.options import Option, OptionValue


class DriverError(Exception):
    """Base of the errors drivers raise on purpose."""


class ChipNotFound(DriverError, OSError):
    """Nothing answered at the address, or the chip ID register holds another chip's ID."""


class ChecksumError(DriverError, OSError):
    """A frame or word whose checksum/CRC (or header) is wrong: not data. Counted apart."""


@dataclass(frozen=True)
class ChannelSpec:
    """One measured quantity of a sensor: its name, unit, default resolution and physical range."""

    name: str
    unit: str
    resolution: float
    low: float
    high: float


# Reading.quality bits a driver may set for the whole reading (the wire's quality flags).
READING_WARMING_UP = 0x08  # the chip says, or its datasheet, that it is not yet stable


@dataclass(frozen=True)
class Reading:
    """One reading of a sensor: Unix time (s), monotonic time (s), values by channel name,
    and quality flags for the whole reading (0: good)."""

    t: float
    mono: float
    values: dict[str, float]
    quality: int = 0


class Sensor:
    """Base class of sensor drivers: one chip, one subclass, one line in drivers/registry.py.

    The configuration loader (edge_agent/config) knows no sensor type: everything that
    depends on the chip comes from these declarations, so a new driver needs no change
    there.

    Descendents *must* set:

    - ``TYPE``: the configuration's ``type`` (``type: ina226``) and the registry key;
    - ``CHANNELS``: a tuple of ChannelSpec, what ``read()`` returns (name, unit, default
      resolution, the chip's physical range);
    - for an I2C chip, ``DEFAULT_ADDRESS``, the address when the configuration names none;

    and override ``read()``. The constructor takes its hardware as keyword-only arguments,
    never a global: ``bus=`` and ``address=`` for an I2C chip, ``pin_factory=`` for a GPIO
    device; then one keyword per declared option.

    Descendents *may* set:

    - ``BUS``: "i2c" (the default) or "gpio" (no bus or address in the configuration);
    - ``ADDRESSES``: every I2C address the chip can be strapped to (empty: any), so that
      the configuration refuses an address where this chip cannot be;
    - ``OPTIONS``: the settings a configuration may give, name -> an option type of
      drivers/options.py (Int, Float, Bool, Choice, Duration, Mapping) with its default,
      bounds and a ``doc`` line. The loader checks each value against its declaration
      and passes it to the constructor (and to the simulator) as the keyword
      ``Option.keyword``, by default the key path joined by "_". The constructor's own
      defaults must equal the declared ones (tests/test_options.py checks).

    and may override ``identify()`` (for ``edge-agent probe``), ``close()`` (when it holds
    a resource), ``get_state()``/``set_state()`` (what must survive a restart) and
    ``default_resolution()`` (when a channel's step depends on an option). A driver whose
    chip can be told a quantity another sensor measures (an SCD4x the ambient pressure)
    declares it in ``INPUTS`` (name -> unit) and takes it in ``set_input()``; the
    configuration's ``inputs:`` says which sensor's channel feeds it.
    """

    TYPE: ClassVar[str] = ""
    BUS: ClassVar[str] = "i2c"
    CHANNELS: ClassVar[tuple[ChannelSpec, ...]] = ()
    DEFAULT_ADDRESS: ClassVar[int] = 0
    ADDRESSES: ClassVar[tuple[int, ...]] = ()
    OPTIONS: ClassVar[dict[str, Option]] = {}
    INPUTS: ClassVar[dict[str, str]] = {}

    def read(self) -> Reading:  # pragma: no cover - abstract
        raise NotImplementedError

    @classmethod
    def check_options(cls, options: dict[str, OptionValue]) -> None:
        """Refuse (ValueError, saying what and how to mend it) options that each pass their
        bounds but together cannot run (an INA2xx's shunt with its maximum current); the
        configuration calls it, so that what it accepts the driver can make."""

    def set_input(self, name: str, value: float) -> None:
        """Tell the chip ``value`` (in ``INPUTS[name]``'s unit), before a read; an OSError
        is a bus error, a ValueError a value the chip cannot take."""
        raise NotImplementedError(f"{self.TYPE} takes no input {name!r}")

    @classmethod
    def identify(cls, bus, address: int) -> str | None:
        """What the chip at ``address`` says it is, read from its ID registers without
        changing its state (e.g. "chip ID 0x61"), or None if it is not this chip."""
        return None

    def close(self) -> None:
        """Release what the driver holds (the shared bus stays open for others)."""

    def get_state(self) -> dict | None:
        """What the driver must keep across restarts (e.g. an energy total), or None."""
        return None

    def set_state(self, state: dict) -> None:
        """Take back what get_state() gave, after a restart."""

    @classmethod
    def default_resolution(cls, name: str, options: dict[str, OptionValue]) -> float:
        """The resolution of channel ``name`` when the configuration gives none, under the
        driver's options as configured (keyword -> value, defaults filled in): the
        ChannelSpec's, unless the step depends on an option (an S0 meter's pulse)."""
        return cls.channel(name).resolution

    @classmethod
    def channel(cls, name: str) -> ChannelSpec:
        for spec in cls.CHANNELS:
            if spec.name == name:
                return spec
        raise KeyError(name)
