"""The settings a driver declares (``Sensor.OPTIONS``): types, defaults and bounds, as data.

A driver says what its configuration block may hold, for example the BME680's gas heater::

    OPTIONS = {"heater": Mapping(temperature=Int(320, 200, 400, keyword="heater_temp"),
                                 duration=Duration("150ms", "1ms", "4032ms", unit="ms",
                                                   keyword="heater_ms"))}

and the configuration loader (``edge_agent.config``) validates a sensor's block against
that declaration, names the key path of anything wrong, and passes each value to the
driver's constructor as a keyword. Nothing here parses or validates: the drivers import
nothing from ``edge_agent``, so durations stay written as people write them ("150ms") and
the loader interprets them.

Every type takes ``doc`` (one line for a user: what the setting does, in which unit) and
``keyword``: the constructor keyword that receives the value; by default the option's key
path joined by ``_`` (``shunt_ohms``, ``heater_temperature``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

#: What a driver's constructor receives for one option.
OptionValue = bool | int | float | str


@dataclass(frozen=True)
class Option:
    """Base of the option types (not used on its own)."""

    doc: str = field(default="", kw_only=True)
    keyword: str | None = field(default=None, kw_only=True)


@dataclass(frozen=True)
class Int(Option):
    """An integer between ``min`` and ``max`` inclusive (None: unbounded)."""

    default: int
    min: int | None = None
    max: int | None = None


@dataclass(frozen=True)
class Float(Option):
    """A number between ``min`` and ``max`` (None: unbounded); ``min_exclusive``: above ``min``."""

    default: float
    min: float | None = None
    max: float | None = None
    min_exclusive: bool = False


@dataclass(frozen=True)
class Bool(Option):
    """true or false (0 and 1 are taken too, as people write them for a switch)."""

    default: bool


@dataclass(frozen=True)
class Choice(Option):
    """One of a few words."""

    default: str
    choices: tuple[str, ...] = ()


@dataclass(frozen=True)
class Duration(Option):
    """A duration written as people write them ("150ms", "10s"; a bare number is seconds),
    between ``min`` and ``max`` inclusive; the driver receives it as a number in ``unit``
    ("s" or "ms")."""

    default: str | float
    min: str | float | None = None
    max: str | float | None = None
    unit: str = "s"


@dataclass(frozen=True, init=False)
class Mapping(Option):
    """A block of named options (``heater: {temperature: 320, duration: 150ms}``); each
    field is passed to the driver as a keyword of its own."""

    fields: tuple[tuple[str, Option], ...] = ()

    def __init__(self, *, doc: str = "", **fields: Option) -> None:
        object.__setattr__(self, "doc", doc)
        object.__setattr__(self, "keyword", None)
        object.__setattr__(self, "fields", tuple(fields.items()))


def leaves(
    options: dict[str, Option], prefix: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], Option]]:
    """Every option that holds a value, with its key path: (("heater", "duration"), Duration(...))."""
    for name, option in options.items():
        if isinstance(option, Mapping):
            yield from leaves(dict(option.fields), (*prefix, name))
        else:
            yield (*prefix, name), option


def keyword(path: tuple[str, ...], option: Option) -> str:
    """The constructor keyword that receives the option at ``path``."""
    return option.keyword or "_".join(path)
