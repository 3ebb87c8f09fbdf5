"""The ``derived:`` list: streams the node computes from other sensors' channels (the US
EPA AQI with its NowCast, Hong Kong's AQHI, energy and CO2e per period).

Each kind declares its inputs (with the units each takes), which of them it needs, and the
channels it gives; an input is ``SENSOR.CHANNEL`` of a configured sensor's enabled channel,
checked here with the whole ``sensors:`` list, every error naming its key path. The
computing is edge_agent/node/derived.py's, the formulas edge_agent/dsp's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from drivers.base import ChannelSpec
from edge_agent.config.document import NAME, Document
from edge_agent.config.filters import parse_filters
from edge_agent.config.model import ChannelConfig, DerivedConfig, SensorConfig
from edge_agent.config.privacy import check_derived, parse_privacy
from edge_agent.config.sensors import CHANNEL_KEYS, parse_channel
from edge_agent.dsp.aqi import CORRECTIONS

UG = "µg/m³"


@dataclass(frozen=True)
class Kind:
    inputs: dict[str, tuple[str, ...]]  # input -> the units it takes
    outputs: tuple[tuple[str, str, float], ...]  # (channel, unit, default resolution)
    options: tuple[str, ...]  # keys beyond the common ones
    interval_key: str = "interval"
    interval: str = "1min"


KINDS = {
    "us_aqi": Kind(
        {"pm2_5": (UG,), "pm10": (UG,), "humidity": ("%",)},
        (
            ("aqi", "", 1.0),
            ("aqi_pm2_5", "", 1.0),
            ("pm2_5_nowcast", UG, 0.1),
            ("aqi_pm10", "", 1.0),
            ("pm10_nowcast", UG, 1.0),
            ("pm2_5_corrected", UG, 0.1),
        ),
        ("correction",),
    ),
    "hk_aqhi": Kind(
        {"no2": ("ppb", UG), "so2": ("ppb", UG), "o3": ("ppb", UG), "pm2_5": (UG,), "pm10": (UG,)},
        (("aqhi", "", 1.0), ("aqhi_risk", "%", 0.01)),
        (),
    ),
    "energy": Kind(
        {"power": ("W",)},
        (("energy_period", "Wh", 0.01), ("co2e_period", "g", 0.01), ("uncovered", "s", 0.1)),
        ("emission_factor", "max_gap"),
        interval_key="period",
        interval="15min",
    ),
}
_COMMON = {"name", "kind", "inputs", "filters", "channels", "sim", "privacy"}


def outputs(
    kind: str, inputs: set[str], correction: str, emission_factor: float
) -> list[tuple[str, str, float]]:
    """The channels a derived stream gives with these inputs and options."""
    keep = {
        "aqi_pm2_5": "pm2_5" in inputs,
        "pm2_5_nowcast": "pm2_5" in inputs,
        "aqi_pm10": "pm10" in inputs,
        "pm10_nowcast": "pm10" in inputs,
        "pm2_5_corrected": correction != "none",
        "co2e_period": emission_factor > 0,
    }
    return [o for o in KINDS[kind].outputs if keep.get(o[0], True)]


def parse_derived(doc: Document, raw: Any, sensors: tuple[SensorConfig, ...]) -> tuple[DerivedConfig, ...]:
    if not isinstance(raw, list):
        raise doc.fail("derived", "a list of derived streams", raw)
    out: list[DerivedConfig] = []
    taken = {s.name: "a sensor" for s in sensors}
    for i, item in enumerate(raw):
        d = _parse_one(doc, item, f"derived[{i}]", sensors)
        if d.name in taken:
            raise doc.fail(f"derived[{i}].name", f"a stream name not used by {taken[d.name]}", d.name)
        taken[d.name] = "another derived stream"
        out.append(d)
    return tuple(out)


def _parse_one(doc: Document, raw: Any, path: str, sensors: tuple[SensorConfig, ...]) -> DerivedConfig:
    if not isinstance(raw, dict):
        raise doc.fail(path, "a mapping", raw)
    kind_name = raw.get("kind")
    if not isinstance(kind_name, str) or kind_name not in KINDS:
        raise doc.fail(
            f"{path}.kind", "one of " + ", ".join(sorted(KINDS)), kind_name, show_got="kind" in raw
        )
    kind = KINDS[kind_name]
    m = doc.mapping(raw, path, _COMMON | {kind.interval_key} | set(kind.options), {"kind", "inputs"})
    name = doc.string(
        m.get("name", kind_name),
        f"{path}.name",
        pattern=NAME,
        what="a name of letters, digits, '.', '_' or '-'",
    )
    interval = doc.duration(m.get(kind.interval_key, kind.interval), f"{path}.{kind.interval_key}")
    if interval < 1.0:
        raise doc.fail(f"{path}.{kind.interval_key}", "at least 1s", m.get(kind.interval_key))
    inputs = _parse_inputs(doc, m["inputs"], f"{path}.inputs", kind_name, kind, sensors)
    names = {i[0] for i in inputs}
    correction = m.get("correction", "none")
    if not isinstance(correction, str) or correction not in CORRECTIONS:
        raise doc.fail(f"{path}.correction", "one of " + ", ".join(CORRECTIONS), correction)
    _check_needs(doc, path, kind_name, names, correction)
    factor = float(doc.number(m.get("emission_factor", 0.0), f"{path}.emission_factor", low=0.0))
    max_gap = 0.0
    if kind_name == "energy":
        src = next(s for s in sensors if s.name == inputs[0][1])
        default_gap = 3 * src.interval + 1.0
        max_gap = doc.duration(m.get("max_gap", default_gap), f"{path}.max_gap")
    filters = parse_filters(doc, m.get("filters", []), f"{path}.filters")
    specs = outputs(kind_name, names, correction, factor)
    channels = _parse_channels(doc, m.get("channels", {}), f"{path}.channels", kind_name, specs, filters)
    sim = doc.mapping(m.get("sim", {}), f"{path}.sim", {"speed"})
    speed = float(doc.number(sim.get("speed", 1.0), f"{path}.sim.speed", low=1.0, high=86400.0))
    privacy = parse_privacy(doc, m.get("privacy"), f"{path}.privacy", channels, interval)
    by_name = {s.name: s for s in sensors}
    check_derived(doc, path, privacy, [(f"{i[1]}.{i[2]}", by_name[i[1]].privacy) for i in inputs])
    return DerivedConfig(
        name, kind_name, interval, inputs, channels, correction, factor, max_gap, speed, privacy
    )


def _check_needs(doc: Document, path: str, kind: str, names: set[str], correction: str) -> None:
    if kind == "us_aqi" and not names & {"pm2_5", "pm10"}:
        raise doc.fail(f"{path}.inputs", "pm2_5 or pm10 (or both)", show_got=False)
    if correction != "none" and not {"pm2_5", "humidity"} <= names:
        raise doc.fail(
            f"{path}.inputs", f"pm2_5 and humidity: the {correction} correction needs both", show_got=False
        )
    if kind == "hk_aqhi":
        missing = [g for g in ("no2", "o3", "so2") if g not in names]
        if missing:
            raise doc.fail(
                f"{path}.inputs",
                f"no2, o3 and so2 (missing: {', '.join(missing)}): the AQHI is never computed from "
                "particulates alone (docs/derived.md)",
                show_got=False,
            )
        if not names & {"pm2_5", "pm10"}:
            raise doc.fail(f"{path}.inputs", "pm2_5 or pm10 as well as the gases", show_got=False)
    if kind == "energy" and "power" not in names:
        raise doc.fail(f"{path}.inputs", "power (a channel in W)", show_got=False)


def _parse_inputs(
    doc: Document, raw: Any, path: str, kind_name: str, kind: Kind, sensors: tuple[SensorConfig, ...]
) -> tuple[tuple[str, str, str, str], ...]:
    """``{pm2_5: dust.pm2_5}``: (input, sensor, channel, unit), each a configured sensor's
    enabled channel in a unit the input takes."""
    m = doc.mapping(raw, path, set(kind.inputs))
    by_name = {s.name: s for s in sensors}
    out = []
    for name, ref in m.items():
        where = f"{path}.{name}"
        sensor, dot, channel = ref.partition(".") if isinstance(ref, str) else ("", "", "")
        if not dot or not NAME.fullmatch(sensor) or not NAME.fullmatch(channel):
            raise doc.fail(where, "SENSOR.CHANNEL, e.g. dust.pm2_5", ref)
        src = by_name.get(sensor)
        if src is None:
            names = ", ".join(sorted(by_name)) or "none"
            raise doc.fail(where, f"a configured sensor's channel (sensors: {names})", ref)
        units = {c.name: c.unit for c in src.channels}
        if channel not in units:
            raise doc.fail(where, f"an enabled channel of {sensor} ({', '.join(units)})", ref)
        want = kind.inputs[name]
        if units[channel] not in want:
            raise doc.fail(
                where,
                f"a channel in {' or '.join(want)} for {kind_name}'s {name} ({ref} is in {units[channel]})",
                show_got=False,
            )
        out.append((name, sensor, channel, units[channel]))
    return tuple(out)


def _parse_channels(
    doc: Document,
    raw: Any,
    path: str,
    kind: str,
    specs: list[tuple[str, str, float]],
    filters: list,
) -> tuple[ChannelConfig, ...]:
    """Per channel the settings a sensor's channel takes (resolution, filters, deadband, swing,
    bound, enabled); a channel not named gets the kind's resolution and the stream's filters."""
    if not isinstance(raw, dict):
        raise doc.fail(path, "a mapping of channel name to settings", raw)
    known = {name for name, _, _ in specs}
    for cname in raw:
        if cname not in known:
            raise doc.fail(
                f"{path}.{cname}", f"a channel {kind} gives here ({', '.join(sorted(known))})", show_got=False
            )
    channels = []
    for name, unit, resolution in specs:
        cpath = f"{path}.{name}"
        cm = doc.mapping(raw.get(name) or {}, cpath, CHANNEL_KEYS)
        if doc.boolean(cm.get("enabled", True), f"{cpath}.enabled"):
            spec = ChannelSpec(name, unit, resolution, float("-inf"), float("inf"))
            channels.append(parse_channel(doc, cm, cpath, spec, resolution, filters))
    if not channels:
        raise doc.fail(path, "at least one enabled channel", show_got=False)
    return tuple(channels)
