"""A driver's declared options (``Sensor.OPTIONS``, drivers/options.py) read from a sensor's block.

The declaration is data; this is where it is interpreted: each value is checked against its
type and bounds (durations parsed with edge_agent.durations), defaults fill in what is not
given, and the result is the (constructor keyword, value) pairs the driver is built with.
"""

from __future__ import annotations

from typing import Any

from drivers.options import Bool, Choice, Duration, Float, Int, Mapping, Option, OptionValue, keyword
from edge_agent.config.document import Document
from edge_agent.durations import parse_duration

_UNITS = {"s": 1.0, "ms": 1e-3}
_MISSING = object()


def parse_options(
    doc: Document, declared: dict[str, Option], block: dict, path: str
) -> tuple[tuple[str, OptionValue], ...]:
    """Every declared option of a sensor, from ``block`` (the sensor's mapping, whose other
    keys the caller checks) or its default: ((keyword, value), ...) in declaration order."""
    out: list[tuple[str, OptionValue]] = []
    for name, option in declared.items():
        _parse(doc, option, block.get(name, _MISSING), f"{path}.{name}", (name,), out)
    return tuple(out)


def _parse(
    doc: Document,
    option: Option,
    raw: Any,
    path: str,
    names: tuple[str, ...],
    out: list[tuple[str, OptionValue]],
) -> None:
    if isinstance(option, Mapping):
        fields = dict(option.fields)
        block = doc.mapping({} if raw is _MISSING else raw, path, set(fields))
        for name, field in fields.items():
            _parse(doc, field, block.get(name, _MISSING), f"{path}.{name}", (*names, name), out)
        return
    value = _value(doc, option, _default(option) if raw is _MISSING else raw, path)
    out.append((keyword(names, option), value))


def _default(option: Option) -> Any:
    if not isinstance(option, (Int, Float, Bool, Choice, Duration)):
        raise TypeError(f"{type(option).__name__} is not an option type of drivers.options")
    return option.default


def _value(doc: Document, option: Option, raw: Any, path: str) -> OptionValue:
    if isinstance(option, Int):
        return int(doc.number(raw, path, low=option.min, high=option.max, integer=True))
    if isinstance(option, Float):
        return float(doc.number(raw, path, low=option.min, high=option.max, low_open=option.min_exclusive))
    if isinstance(option, Bool):
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, int) and raw in (0, 1):
            return bool(raw)
        raise doc.fail(path, "true or false", raw)
    if isinstance(option, Choice):
        if raw not in option.choices:
            raise doc.fail(path, "one of " + ", ".join(option.choices), raw)
        return str(raw)
    if isinstance(option, Duration):
        return _duration(doc, option, raw, path)
    raise TypeError(f"{path}: {type(option).__name__} is not an option type of drivers.options")


def _duration(doc: Document, option: Duration, raw: Any, path: str) -> float:
    seconds = doc.duration(raw, path, positive=False)
    if option.min is not None and seconds < parse_duration(option.min):
        raise doc.fail(path, f"a duration of at least {option.min}", raw)
    if option.max is not None and seconds > parse_duration(option.max):
        raise doc.fail(path, f"a duration of at most {option.max}", raw)
    # the driver's unit, without the float noise of the division ("150ms" is 150, not 150.00000000000003)
    return round(seconds / _UNITS[option.unit], 9)
