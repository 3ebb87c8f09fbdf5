"""A stream's ``privacy:`` block: what of it may leave the node (docs/privacy.md).

``raw`` (the default) sends the samples; ``aggregate`` only statistics over each ``period``;
``total`` only a total per period. What a channel gives at each level depends on its kind
(``channel_kind``): a rate (W) is integrated, a counter (a running energy or pulse total)
differenced, an amount (a derived period's energy) summed; any other channel (a level: V,
A, °C) has statistics but no total, so it is not sent at ``total``. The node's side is
edge_agent/node/privacy.py, the wire's flag bits 3-4 (docs/wire-format.md).
"""

from __future__ import annotations

from typing import Any

from edge_agent.config.document import Document
from edge_agent.config.model import ChannelConfig, PrivacyConfig

LEVELS = ("raw", "aggregate", "total")
DEFAULT_PERIOD = {"aggregate": "15min", "total": "1d"}
MIN_PERIOD = 60.0  # s
RATE, COUNTER, AMOUNT, LEVEL = "rate", "counter", "amount", "level"
COUNTERS = {("energy", "Wh"), ("energy", "kWh"), ("pulses", "")}
AMOUNTS = {("energy_period", "Wh"), ("co2e_period", "g"), ("uncovered", "s")}
# what each kind of channel sends at each level
STATISTICS = {
    "aggregate": {
        RATE: ("mean", "min", "max", "count"),
        LEVEL: ("mean", "min", "max", "count"),
        COUNTER: ("total", "count"),
        AMOUNT: ("total", "count"),
    },
    "total": {RATE: ("total",), COUNTER: ("total",), AMOUNT: ("total",), LEVEL: ()},
}
# channels whose raw series is personal data: check-config warns when they are sent raw
ENERGY_UNITS = {"W", "Wh", "kWh"}


def channel_kind(name: str, unit: str) -> str:
    if unit == "W":
        return RATE
    if (name, unit) in COUNTERS:
        return COUNTER
    if (name, unit) in AMOUNTS:
        return AMOUNT
    return LEVEL


def sent(ch: ChannelConfig, level: str) -> list[tuple[str, str, str]]:
    """(statistic, channel name, unit) of what the channel sends at ``level``."""
    kind = channel_kind(ch.name, ch.unit)
    out = []
    for stat in STATISTICS[level][kind]:
        unit = "" if stat == "count" else ("Wh" if kind == RATE and stat == "total" else ch.unit)
        out.append((stat, f"{ch.name}.{stat}", unit))
    return out


def parse_privacy(
    doc: Document, raw: Any, path: str, channels: tuple[ChannelConfig, ...], interval: float
) -> PrivacyConfig | None:
    """``{level: aggregate, period: 15min, round: 0.1}``; None for raw (no block, or level raw).
    ``round`` is one step for every channel, or a mapping of channel to step, in the unit
    the channel is sent in (Wh for a power channel's total)."""
    if raw is None:
        return None
    m = doc.mapping(raw, path, {"level", "period", "round"}, {"level"})
    level = m["level"]
    if not isinstance(level, str) or level not in LEVELS:
        raise doc.fail(f"{path}.level", "one of " + ", ".join(LEVELS), level)
    if level == "raw":
        for key in ("period", "round"):
            if key in m:
                raise doc.fail(
                    f"{path}.{key}", f"no {key} at level raw: every sample is sent", show_got=False
                )
        return None
    period = doc.duration(m.get("period", DEFAULT_PERIOD[level]), f"{path}.period")
    if period < max(MIN_PERIOD, 2 * interval):
        raise doc.fail(
            f"{path}.period",
            f"at least 1min and two of the stream's intervals ({interval:g}s)",
            m.get("period"),
        )
    names = [c.name for c in channels]
    raw_round = m.get("round", {})
    if isinstance(raw_round, dict):
        steps = doc.mapping(raw_round, f"{path}.round", set(names))
        rounding = {
            n: float(doc.number(v, f"{path}.round.{n}", low=0.0, low_open=True)) for n, v in steps.items()
        }
    else:
        step = float(doc.number(raw_round, f"{path}.round", low=0.0, low_open=True))
        rounding = dict.fromkeys(names, step)
    if not any(sent(c, level) for c in channels):
        raise doc.fail(
            f"{path}.level",
            f"a level this stream's channels have ({', '.join(names)} have no total: use aggregate)",
            level,
        )
    for c in channels:
        if c.reconstruction != "every" or c.bin_width > 1:
            raise doc.fail(
                f"{path}",
                f"no deadband, swing or bound on a private stream's channel ({c.name}): "
                "it sends one statistic per period",
                show_got=False,
            )
    return PrivacyConfig(level, period, tuple(sorted(rounding.items())), 3 * interval + 1.0)


def check_derived(
    doc: Document, path: str, own: PrivacyConfig | None, sources: list[tuple[str, PrivacyConfig | None]]
) -> None:
    """A derived stream fed by a private sensor is private too: at its level or above, over
    its period or longer (else the derived stream would send what the sensor may not)."""
    for ref, src in sources:
        if src is None:
            continue
        if own is None or LEVELS.index(own.level) < LEVELS.index(src.level) or own.period < src.period:
            raise doc.fail(
                f"{path}.privacy",
                f"a privacy level of at least {src.level} over {src.period:g}s or longer: its input {ref} "
                "is private",
                show_got=False,
            )
