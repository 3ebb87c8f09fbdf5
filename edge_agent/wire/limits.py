"""The limits of a batch (docs/wire-format.md, "Limits"), checked the same way by the
encoder (which raises ValueError) and the decoder (WireFormatError): each function
returns what is wrong, or None."""

from __future__ import annotations

import re

from edge_agent.wire.format import (
    FLAG_LEVEL_MASK,
    FLAG_LEVEL_SHIFT,
    LEVELS,
    MAX_CHANNELS,
    MAX_NAME,
    MAX_PERIOD_MS,
    MAX_SEQ,
    MAX_TIME_MS,
    MAX_UNIT,
    NAME_PATTERN,
    STATISTICS,
)

_NAME = re.compile(NAME_PATTERN)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def name_problem(text: str, what: str) -> str | None:
    """A node id, stream or channel name: 1 to MAX_NAME characters of NAME_PATTERN."""
    if _NAME.fullmatch(text) is None:
        return (
            f"{what} {_shown(text)} is not 1 to {MAX_NAME} characters of A-Z a-z 0-9 . _ - "
            "starting with a letter or digit"
        )
    return None


def unit_problem(text: str, what: str) -> str | None:
    """A unit: at most MAX_UNIT bytes of UTF-8, no control characters (may be empty)."""
    try:
        raw = text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: no UTF-8 holds it
        return f"{what} {_shown(text)} is not text (a lone surrogate)"
    if len(raw) > MAX_UNIT or _CONTROL.search(text):
        return f"{what} {_shown(text)} is not at most {MAX_UNIT} bytes of text without control characters"
    return None


def header_problem(seq: int, t0_ms: int, period_ms: int, nchannels: int, epoch: int) -> str | None:
    """The batch's numbers: sequence, time base, schedule, channel count, epoch."""
    if not 0 <= seq <= MAX_SEQ:
        return f"sequence number {seq} is outside 0..{MAX_SEQ}"
    if not 0 <= t0_ms <= MAX_TIME_MS:
        return f"time base {t0_ms} ms is outside 0..{MAX_TIME_MS}"
    if not 1 <= period_ms <= MAX_PERIOD_MS:
        return f"period {period_ms} ms is outside 1..{MAX_PERIOD_MS}"
    if nchannels > MAX_CHANNELS:
        return f"{nchannels} channels: at most {MAX_CHANNELS} in a batch"
    if not 0 <= epoch < 1 << 32:
        return f"epoch {epoch} is not a 32-bit number"
    return None


def level_of(flags: int) -> str | None:
    """The privacy level that flag bits 3-4 name, or None for the undefined 3."""
    code = (flags & FLAG_LEVEL_MASK) >> FLAG_LEVEL_SHIFT
    return LEVELS[code] if code < len(LEVELS) else None


def level_problem(flags: int) -> str | None:
    if level_of(flags) is None:
        return "flags: privacy level 3 (flag bits 3-4) is not defined"
    return None


def statistic_problem(flags: int, name: str, what: str) -> str | None:
    """Above raw, a channel is BASE.STATISTIC with a statistic of the batch's level."""
    level = level_of(flags)
    if level is None or level == "raw":
        return None
    base, dot, stat = name.rpartition(".")
    if not dot or not base or stat not in STATISTICS[level]:
        return (
            f"{what} {_shown(name)} in a batch of privacy level {level} is not BASE.STATISTIC "
            f"with a statistic of {', '.join(STATISTICS[level])}"
        )
    return None


def time_problem(t_ms: int, what: str) -> str | None:
    if not 0 <= t_ms <= MAX_TIME_MS:
        return f"{what}: time {t_ms} ms is outside 0..{MAX_TIME_MS}"
    return None


def _shown(text: str) -> str:
    return repr(text if len(text) <= 80 else text[:80] + "...")
