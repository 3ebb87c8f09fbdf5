"""Durations and sizes written as people write them: ``10s``, ``5min``, ``512MiB``."""

from __future__ import annotations

import re

_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "sec": 1.0, "min": 60.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_SIZE_UNITS = {
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
}
MAX_DURATION = 3650 * 86400.0  # s: ten years; a key with a tighter bound checks it itself
MAX_SIZE = (1 << 53) - 1  # bytes: exact in a double and in SQLite's integers
_NUM_UNIT = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([A-Za-z]*)\s*$")


def _shown(value: object) -> str:
    """A value for an error message, cut short: a number of hundreds of digits stays readable."""
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:37]}... ({len(text)} characters)"


def parse_duration(value: str | int | float) -> float:
    """Seconds from ``"10s"``, ``"250ms"``, ``"5min"``, ``"2h"``, ``"1d"`` or a bare number of seconds."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration such as 10s or 5min, got {value!r}")
    try:
        if isinstance(value, (int, float)):
            seconds = float(value)
        else:
            m = _NUM_UNIT.match(str(value))
            if not m or m.group(2).lower() not in _DURATION_UNITS | {"": 1.0}:
                raise ValueError(f"expected a duration such as 10s, 250ms or 5min, got {value!r}")
            seconds = float(m.group(1)) * _DURATION_UNITS.get(m.group(2).lower(), 1.0)
    except OverflowError:  # an integer of hundreds of digits
        seconds = float("inf")
    if seconds != seconds or seconds < 0:
        raise ValueError(f"expected a non-negative duration, got {value!r}")
    if seconds > MAX_DURATION:
        raise ValueError(f"expected a duration of at most 3650d, got {_shown(value)}")
    return seconds


def parse_size(value: str | int) -> int:
    """Bytes from ``"512MiB"``, ``"10 MB"``, ``"4096"`` (bare numbers are bytes)."""
    if isinstance(value, bool):
        raise ValueError(f"expected a size such as 64MiB, got {value!r}")
    if isinstance(value, int):
        size = value
    else:
        m = _NUM_UNIT.match(str(value))
        unit = m.group(2).lower() if m else None
        if not m or (unit and unit not in _SIZE_UNITS):
            raise ValueError(f"expected a size such as 64MiB or 500MB, got {value!r}")
        try:
            size = int(float(m.group(1)) * (_SIZE_UNITS[unit] if unit else 1))
        except OverflowError:  # hundreds of digits: a float infinity
            size = MAX_SIZE + 1
    if size < 0:
        raise ValueError(f"expected a non-negative size, got {value!r}")
    if size > MAX_SIZE:
        raise ValueError(f"expected a size of at most 8PiB, got {_shown(value)}")
    return size
