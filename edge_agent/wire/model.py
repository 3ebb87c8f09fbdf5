"""What a batch holds: its channels as Unix milliseconds and quantised integers, and the
arithmetic of a channel's resolution (quantise, its decimal places, its exact decimal form).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

from edge_agent.wire.format import (
    ENCODING_DELTA_VARINT,
    FLAG_CLOCK_UNSYNCED,
    FLAG_HISTORICAL,
    FLAG_LEVEL_MASK,
    FLAG_LEVEL_SHIFT,
    LEVELS,
    RESOLUTION_EXP,
    VERSION,
)


def quantise(value: float, resolution: float) -> int:
    """The integer step nearest to value at the channel's resolution (value = q * resolution)."""
    return round(value / resolution)


def decimals_of(resolution: float) -> int:
    """Decimal places of the shortest representation of resolution (0.01 -> 2, 0.25 -> 2, 1 -> 0)."""
    text = repr(float(resolution))
    if "e" in text or "E" in text:
        mant, exp = text.lower().split("e")
        places = len(mant.split(".")[1].rstrip("0")) if "." in mant else 0
        return max(0, places - int(exp))
    return len(text.split(".")[1].rstrip("0"))


@dataclass(frozen=True)
class ChannelData:
    """One channel of a batch: samples as Unix milliseconds and quantised integers."""

    name: str
    unit: str
    resolution: float
    times_ms: tuple[int, ...]
    values_q: tuple[int, ...]
    flags: tuple[tuple[int, int], ...] = ()  # (sample index, quality flags), only where non-zero
    encoding: int = field(default=ENCODING_DELTA_VARINT, compare=False)  # as decoded: the payload's version
    bin_width: int = (
        1  # versions 2, 3, error-bounded: each value within bin_width // 2 steps of its quantised value
    )
    predictor: int | None = field(default=None, compare=False)  # as decoded; re-encoding keeps it
    season: int = field(default=0, compare=False)  # as decoded: the seasonal predictor's period in samples
    form: str | None = field(default=None, compare=False)  # as decoded (versions 2-4): one of FORMS
    # Version 4: how the points stand for the samples they came from (RECONSTRUCTIONS), and
    # the lossy part's error bound in the channel's unit (a fraction of the held value when
    # ``bound_relative``); quantisation adds resolution / 2 to it. Versions 1-3 carry
    # neither: decoded, they say "every" and 0, which is what the payload promises.
    reconstruction: str = "every"
    bound: float = 0.0
    bound_relative: bool = False

    def values(self) -> list[float]:
        d = decimals_of(self.resolution)
        return [round(q * self.resolution, d) for q in self.values_q]

    def max_error(self, value: float = 0.0) -> float:
        """How far a sample that went through the chain may be from this channel's
        reconstruction at its time: the stated bound plus half the resolution. A relative
        bound is a fraction of the value the node held before quantising it, which may be
        half a step further from 0 than the decoded ``value``."""
        if self.bound_relative:
            return self.bound * (abs(value) + self.resolution / 2) + self.resolution / 2
        return self.bound + self.resolution / 2


@dataclass(frozen=True)
class Batch:
    node: str
    stream: str
    seq: int
    t0_ms: int
    channels: tuple[ChannelData, ...]
    flags: int = 0
    version: int = field(default=VERSION, compare=False)  # as decoded; encode() chooses its own
    period_ms: int = 1  # the sampling schedule (version 2): times are t0 + k * period (+ exceptions);
    #                     1: every millisecond is a slot, i.e. no schedule
    epoch: int = 0  # version 4: drawn at each start of the node (EPOCH_BITS); 0 in versions 1-3

    @property
    def privacy(self) -> str:
        """The stream's privacy level (flag bits 3-4): ``raw``, or ``aggregate`` or ``total``,
        whose channels are statistics over each ``period_ms`` (docs/privacy.md)."""
        code = (self.flags & FLAG_LEVEL_MASK) >> FLAG_LEVEL_SHIFT
        return LEVELS[code] if code < len(LEVELS) else "undefined"

    @property
    def key(self) -> tuple[str, str, int, int]:
        """The dedupe key: (node, stream, epoch, seq)."""
        return self.node, self.stream, self.epoch, self.seq

    def rows(self) -> Iterator[dict[str, Any]]:
        """One dict per sample, in channel order: node, stream, epoch, seq, channel, unit,
        t, value, reconstruction, bound (the channel's max_error at that value);
        ``quality`` where the sample carries flags, ``historical`` and ``clock_unsynced``
        where the batch does."""
        for ch in self.channels:
            qflags = dict(ch.flags)
            for i, (t_ms, value) in enumerate(zip(ch.times_ms, ch.values())):
                row = {
                    "node": self.node,
                    "stream": self.stream,
                    "epoch": self.epoch,
                    "seq": self.seq,
                    "channel": ch.name,
                    "unit": ch.unit,
                    "t": t_ms / 1000.0,
                    "value": value,
                    "reconstruction": ch.reconstruction,
                    "bound": ch.max_error(value),
                }
                if i in qflags:
                    row["quality"] = qflags[i]
                if self.flags & FLAG_HISTORICAL:
                    row["historical"] = True
                if self.flags & FLAG_LEVEL_MASK:  # a statistic over the period that ends at t
                    row["privacy"] = self.privacy
                    row["period"] = self.period_ms / 1000.0
                if self.flags & FLAG_CLOCK_UNSYNCED:
                    row["clock_unsynced"] = True  # the node's clock was not known good: t may be wrong
                yield row


def restamp(batch: Batch, shift_ms: int) -> Batch:
    """The batch with every time moved by ``shift_ms`` and its clock_unsynced flag cleared."""
    channels = tuple(replace(c, times_ms=tuple(t + shift_ms for t in c.times_ms)) for c in batch.channels)
    return replace(
        batch, t0_ms=batch.t0_ms + shift_ms, channels=channels, flags=batch.flags & ~FLAG_CLOCK_UNSYNCED
    )


def decimal_resolution(resolution: float) -> tuple[int, int]:
    """(m, e) with resolution == m * 10**e exactly as a float, or (0, 0) when there is none short
    (m below 2**32, |e| at most RESOLUTION_EXP: the decoder refuses a longer exponent)."""
    sign, digits, exp = Decimal(repr(float(resolution))).as_tuple()
    if not isinstance(exp, int):  # not finite: the encoder has refused it already
        return 0, 0
    m = int("".join(map(str, digits)))
    while m and m % 10 == 0:
        m, exp = m // 10, exp + 1
    if sign or m == 0 or m >= 1 << 32 or abs(exp) > RESOLUTION_EXP or resolution_of(m, exp) != resolution:
        return 0, 0
    return m, exp


def resolution_of(m: int, e: int) -> float:
    """The double nearest to the decimal m x 10**e (ties to even), as the spec says: Python
    rounds an int's conversion and an int's true division once, correctly."""
    return float(m * 10**e) if e >= 0 else m / 10**-e
