"""The checks every part of the configuration uses; each error names the file and the key path."""

from __future__ import annotations

import math
import re
from typing import Any

from edge_agent.durations import parse_duration, parse_size
from edge_agent.errors import ConfigError

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def shown(value: Any, limit: int = 120) -> str:
    """A value for an error message, cut short: a long list or a number of hundreds of digits
    says what it is without flooding a terminal (or the journal)."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}... ({len(text)} characters)"


class Document:
    """One configuration being validated (``source``: its file name, for error messages).

    Every check takes the value and its key path (``sensors[0].filters[1].window``) and
    returns the value, or raises ConfigError: "FILE: PATH: expected WHAT, got VALUE".
    """

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, path: str, expected: str, got: Any = None, *, show_got: bool = True) -> ConfigError:
        where = f"{self.source}: {path}" if path else self.source
        msg = f"{where}: expected {expected}"
        if show_got:
            msg += f", got {shown(got)}"
        return ConfigError(msg)

    def error(self, path: str, message: str) -> ConfigError:
        """An error in words of its own (a parser's message), at ``path``."""
        return ConfigError(f"{self.source}: {path}: {message}")

    def mapping(
        self, value: Any, path: str, allowed: set[str], required: set[str] | frozenset[str] = frozenset()
    ) -> dict:
        if not isinstance(value, dict):
            raise self.fail(path, "a mapping", value)
        for key in value:
            if key not in allowed:
                sub = f"{path}.{key}" if path else str(key)
                raise self.fail(
                    sub, "no such key (allowed: " + ", ".join(sorted(allowed)) + ")", show_got=False
                )
        for key in sorted(required):
            if key not in value:
                sub = f"{path}.{key}" if path else key
                raise self.fail(sub, "this key to be present", show_got=False)
        return value

    def number(
        self,
        value: Any,
        path: str,
        *,
        low: float | None = None,
        high: float | None = None,
        integer: bool = False,
        low_open: bool = False,
    ) -> float:
        kind = "an integer" if integer else "a number"
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or (integer and not isinstance(value, int))
        ):
            raise self.fail(path, kind, value)
        if isinstance(value, int) and abs(value) > 1 << 53:  # past a double's integers (or its range)
            raise self.fail(path, f"{kind} of at most 2**53 in size", value)
        if (
            (isinstance(value, float) and not math.isfinite(value))
            or (low is not None and (value < low or (low_open and value == low)))
            or (high is not None and value > high)
        ):
            rng = (
                f"{'(' if low_open else '['}{low if low is not None else '-inf'}, "
                f"{high if high is not None else 'inf'}]"
            )
            raise self.fail(path, f"{kind} in {rng}", value)
        return value

    def duration(self, value: Any, path: str, *, positive: bool = True) -> float:
        try:
            seconds = parse_duration(value)
        except ValueError as exc:
            raise self.error(path, str(exc)) from None
        if positive and seconds <= 0:
            raise self.fail(path, "a duration greater than zero", value)
        return seconds

    def size(self, value: Any, path: str) -> int:
        try:
            return parse_size(value)
        except ValueError as exc:
            raise self.error(path, str(exc)) from None

    def string(
        self, value: Any, path: str, *, pattern: re.Pattern | None = None, what: str = "a string"
    ) -> str:
        # fullmatch: a pattern's $ would let a trailing newline through ("lamp-1\n")
        if not isinstance(value, str) or (pattern is not None and not pattern.fullmatch(value)):
            raise self.fail(path, what, value)
        return value

    def boolean(self, value: Any, path: str) -> bool:
        if not isinstance(value, bool):
            raise self.fail(path, "true or false", value)
        return value

    def optional_string(self, m: dict, key: str, path: str) -> str | None:
        return self.string(m[key], path) if key in m else None
