"""What every sensor driver shares: channel descriptions, readings, the base class."""

from __future__ import annotations

from dataclasses import dataclass


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
    """Base class of sensor drivers.

    A subclass must set ``TYPE`` (the config ``type``), ``CHANNELS`` (a tuple of
    ChannelSpec) and ``DEFAULT_ADDRESS``, and override ``read()``. It may override
    ``close()`` when it holds a resource. Its constructor takes the bus as a
    keyword-only argument (``bus=``), never a global.
    """

    TYPE: str = ""
    BUS: str = "i2c"  # or "gpio": a GPIO device takes pin_factory= instead of bus=/address=
    CHANNELS: tuple[ChannelSpec, ...] = ()
    DEFAULT_ADDRESS: int = 0
    #: numeric options the configuration may give: name -> (default, lowest, lowest excluded)
    OPTIONS: dict[str, tuple[float, float, bool]] = {}

    def read(self) -> Reading:  # pragma: no cover - abstract
        raise NotImplementedError

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
    def channel(cls, name: str) -> ChannelSpec:
        for spec in cls.CHANNELS:
            if spec.name == name:
                return spec
        raise KeyError(name)
