"""The ``sensors:`` list: each sensor's bus, address, channels, filters, driver options and simulation.

Nothing here knows a sensor type: what depends on it comes from the driver's declarations
in the registry (``BUS``, ``DEFAULT_ADDRESS``, ``ADDRESSES``, ``CHANNELS`` with their units and default
resolutions (``default_resolution`` under the options), ``OPTIONS``, and the simulator's ``ENVIRONMENT``
for the ``sim:`` block).
"""

from __future__ import annotations

from typing import Any

from drivers.base import ChannelSpec, Sensor
from drivers.options import OptionValue
from drivers.registry import SENSOR_TYPES, SIMULATORS
from drivers.sim.chip import SimChip
from drivers.sim.profiles import Wave
from edge_agent.config.document import NAME, Document
from edge_agent.config.filters import parse_filters
from edge_agent.config.model import ChannelConfig, SensorConfig, StageConfig
from edge_agent.config.options import parse_options
from edge_agent.config.privacy import parse_privacy
from edge_agent.dsp import LOSSY
from edge_agent.wire import bin_width_for

# keys every sensor block may hold; a driver's OPTIONS add their own
_SENSOR_KEYS = {
    "name",
    "type",
    "bus",
    "address",
    "interval",
    "filters",
    "channels",
    "sim",
    "stuck_after",
    "inputs",
    "privacy",
}
CHANNEL_KEYS = {"resolution", "filters", "deadband", "swing", "bound", "enabled"}


def parse_sensor(doc: Document, raw: Any, path: str) -> SensorConfig:
    if not isinstance(raw, dict):
        raise doc.fail(path, "a mapping", raw)
    if "type" not in raw:
        raise doc.fail(f"{path}.type", "this key to be present", show_got=False)
    stype = raw["type"]
    if not isinstance(stype, str) or stype not in SENSOR_TYPES:
        raise doc.fail(f"{path}.type", "one of " + ", ".join(sorted(SENSOR_TYPES)), stype)
    driver = SENSOR_TYPES[stype]
    m = doc.mapping(raw, path, _SENSOR_KEYS | set(driver.OPTIONS))
    name = doc.string(
        m.get("name", stype),
        f"{path}.name",
        pattern=NAME,
        what="a name of letters, digits, '.', '_' or '-' (at most 64)",
    )
    if driver.BUS == "gpio":
        for key in ("bus", "address"):
            if key in m:
                raise doc.fail(
                    f"{path}.{key}", f"no {key} for a GPIO device ({stype}); it takes a pin", show_got=False
                )
        bus, address = 0, 0
    else:
        bus = int(doc.number(m.get("bus", 1), f"{path}.bus", low=0, high=255, integer=True))
        address = int(
            doc.number(
                m.get("address", driver.DEFAULT_ADDRESS), f"{path}.address", low=0x08, high=0x77, integer=True
            )
        )
        if driver.ADDRESSES and address not in driver.ADDRESSES:
            raise doc.fail(
                f"{path}.address",
                f"one of the {stype}'s addresses ({_addresses(driver.ADDRESSES)}), got 0x{address:02x}",
                show_got=False,
            )
    interval = doc.duration(m.get("interval", "1s"), f"{path}.interval")
    default_filters = parse_filters(doc, m.get("filters", []), f"{path}.filters")
    options = parse_options(doc, driver.OPTIONS, m, path)
    try:
        driver.check_options(dict(options))
    except ValueError as exc:
        raise doc.error(path, str(exc)) from None
    channels = _parse_channels(
        doc, m.get("channels", {}), f"{path}.channels", stype, driver, default_filters, dict(options)
    )
    # the simulator's inputs (drivers/sim), which need not be the channels: an INA226 is
    # simulated by its bus voltage and current, and computes power and energy like the chip
    inputs = {c.name for c in driver.CHANNELS}
    if stype in SIMULATORS:
        simulator: type[SimChip] = SIMULATORS[stype]
        inputs = set(simulator.ENVIRONMENT)
    sim_raw = dict(doc.mapping(m.get("sim", {}), f"{path}.sim", inputs | {"absent"}))
    sim_absent = doc.boolean(sim_raw.pop("absent", False), f"{path}.sim.absent")
    sim = {k: _parse_wave(doc, v, f"{path}.sim.{k}") for k, v in sim_raw.items()}
    feeds = _parse_inputs(doc, m.get("inputs", {}), f"{path}.inputs", stype, driver)
    return SensorConfig(
        name=name,
        type=stype,
        bus=bus,
        address=address,
        interval=interval,
        channels=channels,
        options=options,
        sim=sim,
        sim_absent=sim_absent,
        inputs=feeds,
        stuck_after=doc.duration(m.get("stuck_after", 0), f"{path}.stuck_after", positive=False),
        privacy=parse_privacy(doc, m.get("privacy"), f"{path}.privacy", channels, interval),
    )


def _parse_inputs(
    doc: Document, raw: Any, path: str, stype: str, driver: type[Sensor]
) -> tuple[tuple[str, str, str], ...]:
    """``inputs: {pressure: bme680.pressure}``: (input, sensor, channel) for each input the
    driver declares; which sensor and channel exist is checked with the whole list."""
    if not driver.INPUTS:
        if raw:
            raise doc.fail(path, f"nothing: a {stype} takes no input from other sensors", show_got=False)
        return ()
    m = doc.mapping(raw, path, set(driver.INPUTS))
    out = []
    for name, source in m.items():
        sensor, dot, channel = source.partition(".") if isinstance(source, str) else ("", "", "")
        if not dot or not NAME.fullmatch(sensor) or not NAME.fullmatch(channel):
            raise doc.fail(f"{path}.{name}", "SENSOR.CHANNEL, e.g. bme680.pressure", source)
        out.append((name, sensor, channel))
    return tuple(out)


def check_inputs(doc: Document, sensors: tuple[SensorConfig, ...]) -> None:
    """Each input names another configured sensor's enabled channel, in the unit it needs."""
    by_name = {s.name: s for s in sensors}
    for i, s in enumerate(sensors):
        for name, sensor, channel in s.inputs:
            where = f"sensors[{i}].inputs.{name}"
            src = by_name.get(sensor)
            if src is None or src is s:
                others = ", ".join(sorted(n for n in by_name if n != s.name)) or "none"
                raise doc.fail(
                    where, f"another configured sensor's channel (sensors: {others})", f"{sensor}.{channel}"
                )
            unit = {c.name: c.unit for c in src.channels}.get(channel)
            want = SENSOR_TYPES[s.type].INPUTS[name]
            if unit is None:
                raise doc.fail(where, f"an enabled channel of {sensor}", f"{sensor}.{channel}")
            if unit != want:
                raise doc.fail(
                    where, f"a channel in {want} ({sensor}.{channel} is in {unit})", show_got=False
                )


def _addresses(addresses: tuple[int, ...]) -> str:
    """0x76, 0x77; runs of three or more as 0x40..0x4f."""
    runs: list[list[int]] = []
    for a in sorted(addresses):
        if runs and a == runs[-1][-1] + 1:
            runs[-1].append(a)
        else:
            runs.append([a])
    return ", ".join(
        f"0x{r[0]:02x}..0x{r[-1]:02x}" if len(r) > 2 else ", ".join(f"0x{a:02x}" for a in r) for r in runs
    )


def _parse_channels(
    doc: Document,
    raw: Any,
    path: str,
    stype: str,
    driver: type[Sensor],
    default_filters: list[StageConfig],
    options: dict[str, OptionValue],
) -> tuple[ChannelConfig, ...]:
    """The enabled channels, in the driver's order; a channel not named gets the defaults
    (its resolution the driver's under the sensor's options)."""
    specs = driver.CHANNELS
    if not isinstance(raw, dict):
        raise doc.fail(path, "a mapping of channel name to settings", raw)
    known = {c.name for c in specs}
    for cname in raw:
        if cname not in known:
            raise doc.fail(
                f"{path}.{cname}", f"a channel of {stype} ({', '.join(sorted(known))})", show_got=False
            )
    channels = []
    for spec in specs:
        cpath = f"{path}.{spec.name}"
        cm = doc.mapping(raw.get(spec.name) or {}, cpath, CHANNEL_KEYS)
        if doc.boolean(cm.get("enabled", True), f"{cpath}.enabled"):
            resolution = driver.default_resolution(spec.name, options)
            channels.append(parse_channel(doc, cm, cpath, spec, resolution, default_filters))
    if not channels:
        raise doc.fail(path, "at least one enabled channel", show_got=False)
    return tuple(channels)


def parse_channel(
    doc: Document,
    cm: dict,
    cpath: str,
    spec: ChannelSpec,
    default_resolution: float,
    default_filters: list[StageConfig],
) -> ChannelConfig:
    resolution = float(
        doc.number(cm.get("resolution", default_resolution), f"{cpath}.resolution", low=0.0, low_open=True)
    )
    filters = (
        parse_filters(doc, cm["filters"], f"{cpath}.filters") if "filters" in cm else list(default_filters)
    )
    if sum(k in cm for k in ("deadband", "swing", "bound")) > 1:
        raise doc.fail(cpath, "one of deadband, swing or bound", show_got=False)
    lossless = [f for f in filters if f.kind not in LOSSY]
    if "deadband" in cm:
        width = float(doc.number(cm["deadband"], f"{cpath}.deadband", low=0.0))
        filters = [*lossless, StageConfig("deadband", (width, 0.0, 0.0))]
    if "swing" in cm:
        eps = float(doc.number(cm["swing"], f"{cpath}.swing", low=0.0))
        filters = [*lossless, StageConfig("swing", (eps, 0.0))]
    bin_width = 1
    if "bound" in cm:  # every sample sent, in bins: within `bound` (+ resolution / 2) by construction
        bound = float(doc.number(cm["bound"], f"{cpath}.bound", low=0.0))
        bin_width = bin_width_for(bound, resolution)
        filters = lossless
    return ChannelConfig(spec.name, spec.unit, resolution, tuple(filters), bin_width)


def _parse_wave(doc: Document, raw: Any, path: str) -> Wave:
    if isinstance(raw, (int, float)) and not isinstance(raw, bool):
        return Wave(float(doc.number(raw, path)))  # a constant: bounded like every number
    m = doc.mapping(raw, path, {"mean", "amplitude", "period"}, {"mean"})
    return Wave(
        float(doc.number(m["mean"], f"{path}.mean")),
        float(doc.number(m.get("amplitude", 0.0), f"{path}.amplitude", low=0.0)),
        doc.duration(m.get("period", "1h"), f"{path}.period"),
    )
