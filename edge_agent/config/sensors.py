"""Configuration: YAML validated on load into frozen, typed objects.

Every error names the file, the key path (``sensors[0].filters[1].window``) and
what was expected. Unknown keys are errors. Durations and sizes are written as
people write them (``10s``, ``512MiB``). See docs/configuration.md.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
import os
import re
import socket
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from drivers.base import Sensor
from drivers.registry import SENSOR_TYPES
from drivers.sim.profiles import Wave
from edge_agent.dsp import LOSSY, MAX_POLY, MAX_WINDOW, STAGE_KINDS
from edge_agent.errors import ConfigError
from edge_agent.durations import parse_duration, parse_size
from edge_agent.wire import bin_width_for

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True)
class StageConfig:
    """One stage of a channel's chain: ``kind`` and its parameters (see edge_agent.dsp)."""

    kind: str
    params: tuple[float, ...]


@dataclass(frozen=True)
class ChannelConfig:
    name: str
    unit: str
    resolution: float
    filters: tuple[StageConfig, ...]
    bin_width: int = 1  # error-bounded encoding (`bound`): residual bins this many steps wide

    def chain_spec(self) -> list[tuple]:
        return [(s.kind, *s.params) for s in self.filters]

    @property
    def error_bound(self) -> float:
        """Largest difference between a filtered sample and its decoded reconstruction:
        the lossy stage's bound plus half the resolution (a relative deadband: +inf)."""
        if self.bin_width > 1:
            return (self.bin_width // 2) * self.resolution + self.resolution / 2
        lossy = [s for s in self.filters if s.kind in LOSSY]
        if not lossy:
            return self.resolution / 2
        last = lossy[-1]
        if last.kind == "deadband" and last.params[1]:
            return math.inf
        return last.params[0] + self.resolution / 2


@dataclass(frozen=True)
class SensorConfig:
    name: str
    type: str
    bus: int
    address: int
    interval: float
    channels: tuple[ChannelConfig, ...]
    options: tuple[tuple[str, float], ...] = ()  # the driver's OPTIONS, as configured
    stuck_after: float = 0.0  # s of an unchanged raw value before samples are flagged stuck (0: off)
    sim: dict[str, Wave] = field(default_factory=dict)
    sim_absent: bool = False  # with --simulate: the chip is not there (to rehearse a missing sensor)

    def driver_kwargs(self) -> dict:
        """Keyword arguments for the driver (and its simulator) beyond bus and address."""
        return dict(self.options)


@dataclass(frozen=True)
class BrokerConfig:
    url: str
    scheme: str
    host: str
    port: int

    @property
    def tls(self) -> bool:
        return self.scheme == "mqtts"


@dataclass(frozen=True)
class MqttConfig:
    brokers: tuple[BrokerConfig, ...]  # tried in turn; the first is the preferred one
    topic_prefix: str = "edge"
    client_id: str = ""
    keepalive: float = 30.0
    protocol: str = "5"
    inflight: int = 20
    allow_insecure: bool = False
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    username: str | None = None
    password_file: str | None = None
    session_expiry: float = 3600.0   # s the broker keeps our session after a disconnect (MQTT 5)
    backlog_rate: float = 50.0       # batches/s at most from the backlog after an outage
    wire_version: int = 3            # highest payload version sent (2 until the backbone reads 3)
    reconnect_min: float = 1.0       # s, backoff base (full jitter)
    reconnect_max: float = 120.0     # s, backoff cap

    @property
    def broker(self) -> BrokerConfig:
        return self.brokers[0]


@dataclass(frozen=True)
class StoreConfig:
    path: str
    max_size: int = 256 * 1024**2   # bytes of payload waiting
    policy: str = "drop_oldest"     # or "refuse_newest", when max_size is reached
    ttl: float = 30 * 86400.0       # s a batch may wait before it expires


@dataclass(frozen=True)
class AgentConfig:
    node_id: str
    flush_interval: float
    state_dir: str
    mqtt: MqttConfig
    store: StoreConfig
    sensors: tuple[SensorConfig, ...]
    health_interval: float = 60.0
    clock_hold: float = 120.0  # s after start that batches stamped on an unsynced clock wait for sync
    source: str = "<built-in default>"
    config_hash: str = ""  # first 16 hex digits of the SHA-256 of the file's bytes

    def sensor(self, name: str) -> SensorConfig:
        for s in self.sensors:
            if s.name == name:
                return s
        raise KeyError(name)


def _default_state_dir() -> str:
    # systemd's StateDirectory= sets STATE_DIRECTORY; elsewhere the FHS place.
    return os.environ.get("STATE_DIRECTORY", "/var/lib/edge-agent").split(":")[0]


DEFAULT_NODE_YAML = """\
# The built-in default node: one simulated BME680, used by `edge-agent run --simulate`
# when no configuration file is given.
node:
  id: sim-{host}
flush_interval: 10s
clock:
  hold_unsynced: 0s   # a simulated node sends at once; its batches say if the clock was unsynced
mqtt:
  broker: mqtt://127.0.0.1:1883
  topic_prefix: edge
sensors:
  - name: bme680
    type: bme680
    bus: 1
    address: 0x77
    interval: 1s
    filters:
      - {{type: median, window: 5}}
      - {{type: ema, alpha: 0.5}}
    channels:
      temperature: {{resolution: 0.01, deadband: 0.02}}
      humidity:    {{resolution: 0.01, deadband: 0.05}}
      pressure:    {{resolution: 0.01, deadband: 0.02}}
      gas:         {{resolution: 1, deadband: 200}}
    sim:
      temperature: {{mean: 21.0, amplitude: 2.0, period: 10min}}
      humidity:    {{mean: 45.0, amplitude: 5.0, period: 15min}}
      pressure:    {{mean: 1013.25, amplitude: 0.5, period: 30min}}
      gas:         {{mean: 50000, amplitude: 5000, period: 20min}}
"""


def default_node_yaml() -> str:
    host = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname())[:40] or "node"
    return DEFAULT_NODE_YAML.format(host=host)


class _Ctx:
    """Where we are in the document, for error messages."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, path: str, expected: str, got: Any = None, *, show_got: bool = True) -> ConfigError:
        where = f"{self.source}: {path}" if path else self.source
        msg = f"{where}: expected {expected}"
        if show_got:
            msg += f", got {got!r}"
        return ConfigError(msg)

    def mapping(self, value: Any, path: str, allowed: set[str], required: set[str] = frozenset()) -> dict:
        if not isinstance(value, dict):
            raise self.fail(path, "a mapping", value)
        for key in value:
            if key not in allowed:
                sub = f"{path}.{key}" if path else str(key)
                raise self.fail(sub, "no such key (allowed: " + ", ".join(sorted(allowed)) + ")",
                                show_got=False)
        for key in required:
            if key not in value:
                sub = f"{path}.{key}" if path else key
                raise self.fail(sub, "this key to be present", show_got=False)
        return value

    def number(self, value: Any, path: str, *, low: float | None = None, high: float | None = None,
               integer: bool = False, low_open: bool = False) -> float:
        kind = "an integer" if integer else "a number"
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not isinstance(value, int)):
            raise self.fail(path, kind, value)
        if value != value or (low is not None and (value < low or (low_open and value == low))) \
                or (high is not None and value > high):
            rng = f"{'(' if low_open else '['}{low if low is not None else '-inf'}, " \
                  f"{high if high is not None else 'inf'}]"
            raise self.fail(path, f"{kind} in {rng}", value)
        return value

    def duration(self, value: Any, path: str, *, positive: bool = True) -> float:
        try:
            seconds = parse_duration(value)
        except ValueError as exc:
            raise ConfigError(f"{self.source}: {path}: {exc}") from None
        if positive and seconds <= 0:
            raise self.fail(path, "a duration greater than zero", value)
        return seconds

    def size(self, value: Any, path: str) -> int:
        try:
            return parse_size(value)
        except ValueError as exc:
            raise ConfigError(f"{self.source}: {path}: {exc}") from None

    def string(self, value: Any, path: str, *, pattern: re.Pattern | None = None, what: str = "a string") -> str:
        if not isinstance(value, str) or (pattern is not None and not pattern.match(value)):
            raise self.fail(path, what, value)
        return value

    def boolean(self, value: Any, path: str) -> bool:
        if not isinstance(value, bool):
            raise self.fail(path, "true or false", value)
        return value


def parse_broker_url(url: str) -> BrokerConfig:
    """``mqtt://host[:port]`` (default 1883) or ``mqtts://host[:port]`` (default 8883)."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise ValueError(f"expected a broker URL such as mqtt://127.0.0.1:1883 or mqtts://host:8883, got {url!r}")
    if parts.path not in ("", "/") or parts.query or parts.username or parts.password:
        raise ValueError(f"a broker URL carries only scheme, host and port (credentials go in "
                         f"mqtt.username / mqtt.password_file), got {url!r}")
    try:
        port = parts.port or (8883 if parts.scheme == "mqtts" else 1883)
    except ValueError:
        raise ValueError(f"bad port in broker URL {url!r}") from None
    return BrokerConfig(url=url, scheme=parts.scheme, host=parts.hostname, port=port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


_FILTER_KEYS = {  # type: (allowed keys, required keys)
    "calibrate": ({"coefficients", "offset", "scale"}, set()),
    "range": ({"low", "high", "action"}, {"low", "high"}),
    "hampel": ({"window", "k"}, set()),
    "median": ({"window"}, {"window"}),
    "mean": ({"window"}, {"window"}),
    "ema": ({"alpha"}, {"alpha"}),
    "kalman": ({"process_noise", "measurement_noise"}, {"process_noise", "measurement_noise"}),
    "throttle": ({"interval"}, {"interval"}),
    "deadband": ({"width", "relative", "max_interval"}, {"width"}),
    "swing": ({"deviation", "max_interval"}, {"deviation"}),
}


def _parse_filters(ctx: _Ctx, raw: Any, path: str) -> list[StageConfig]:
    if not isinstance(raw, list):
        raise ctx.fail(path, "a list of filters", raw)
    out = []
    for i, item in enumerate(raw):
        p = f"{path}[{i}]"
        if not isinstance(item, dict) or "type" not in item:
            raise ctx.fail(p, "a mapping with a 'type' (one of " + ", ".join(STAGE_KINDS) + ")", item)
        kind = item["type"]
        if kind not in _FILTER_KEYS:
            raise ctx.fail(f"{p}.type", "one of " + ", ".join(STAGE_KINDS), kind)
        allowed, required = _FILTER_KEYS[kind]
        ctx.mapping(item, p, allowed | {"type"}, required)

        def num(key, default=None, **kw):
            return float(ctx.number(item.get(key, default), f"{p}.{key}", **kw))

        if kind in ("median", "mean"):
            params = (num("window", low=1, high=MAX_WINDOW, integer=True),)
        elif kind == "hampel":
            w = num("window", 7, low=3, high=MAX_WINDOW, integer=True)
            if int(w) % 2 == 0:
                raise ctx.fail(f"{p}.window", "an odd window", int(w))
            params = (w, num("k", 3.0, low=0.0, low_open=True))
        elif kind == "ema":
            params = (num("alpha", low=0.0, high=1.0, low_open=True),)
        elif kind == "kalman":
            params = (num("process_noise", low=0.0), num("measurement_noise", low=0.0, low_open=True))
        elif kind == "calibrate":
            if "coefficients" in item and ("offset" in item or "scale" in item):
                raise ctx.fail(p, "either coefficients or offset/scale, not both", show_got=False)
            if "coefficients" in item:
                coeffs = item["coefficients"]
                if not isinstance(coeffs, list) or not 1 <= len(coeffs) <= MAX_POLY:
                    raise ctx.fail(f"{p}.coefficients", f"a list of 1 to {MAX_POLY} numbers (c0 + c1*x + ...)",
                                   coeffs)
                params = tuple(float(ctx.number(c, f"{p}.coefficients[{j}]")) for j, c in enumerate(coeffs))
            else:
                params = (num("offset", 0.0), num("scale", 1.0))
        elif kind == "range":
            low, high = num("low"), num("high")
            if low > high:
                raise ctx.fail(f"{p}.high", f"at least low ({low:g})", item["high"])
            action = item.get("action", "reject")
            if action not in ("reject", "clamp"):
                raise ctx.fail(f"{p}.action", "reject or clamp", action)
            params = (low, high, 1.0 if action == "clamp" else 0.0)
        elif kind == "throttle":
            params = (ctx.duration(item["interval"], f"{p}.interval"),)
        elif kind == "deadband":
            params = (num("width", low=0.0), 1.0 if ctx.boolean(item.get("relative", False), f"{p}.relative") else 0.0,
                      ctx.duration(item.get("max_interval", 0), f"{p}.max_interval", positive=False))
        else:  # swing
            params = (num("deviation", low=0.0),
                      ctx.duration(item.get("max_interval", 0), f"{p}.max_interval", positive=False))
        if kind in LOSSY and i != len(raw) - 1:
            raise ctx.fail(p, "a lossy stage (deadband, swing) only as the last filter", show_got=False)
        out.append(StageConfig(kind, params))
    return out


def _parse_wave(ctx: _Ctx, raw: Any, path: str) -> Wave:
    if isinstance(raw, (int, float)) and not isinstance(raw, bool):
        return Wave(float(raw))
    m = ctx.mapping(raw, path, {"mean", "amplitude", "period"}, {"mean"})
    return Wave(float(ctx.number(m["mean"], f"{path}.mean")),
                float(ctx.number(m.get("amplitude", 0.0), f"{path}.amplitude", low=0.0)),
                ctx.duration(m.get("period", "1h"), f"{path}.period"))


def _parse_sensor(ctx: _Ctx, raw: Any, path: str) -> SensorConfig:
    m = ctx.mapping(raw, path, {"name", "type", "bus", "address", "interval", "filters", "channels",
                                "heater", "sim", "stuck_after"} | set(SENSOR_TYPES.get(raw.get("type") if isinstance(raw, dict)
                                                                       else None, Sensor).OPTIONS)
                    - {"heater_temp", "heater_ms"}, {"type"})
    stype = m["type"]
    if stype not in SENSOR_TYPES:
        raise ctx.fail(f"{path}.type", "one of " + ", ".join(sorted(SENSOR_TYPES)), stype)
    driver = SENSOR_TYPES[stype]
    name = ctx.string(m.get("name", stype), f"{path}.name", pattern=_NAME,
                      what="a name of letters, digits, '.', '_' or '-' (at most 64)")
    if driver.BUS == "gpio":
        for key in ("bus", "address"):
            if key in m:
                raise ctx.fail(f"{path}.{key}", f"no {key} for a GPIO device ({stype}); it takes a pin",
                               show_got=False)
        bus, address = 0, 0
    else:
        bus = int(ctx.number(m.get("bus", 1), f"{path}.bus", low=0, high=255, integer=True))
        address = int(ctx.number(m.get("address", driver.DEFAULT_ADDRESS), f"{path}.address",
                                 low=0x08, high=0x77, integer=True))
    interval = ctx.duration(m.get("interval", "1s"), f"{path}.interval")
    default_filters = _parse_filters(ctx, m.get("filters", []), f"{path}.filters")

    raw_channels = m.get("channels", {})
    if not isinstance(raw_channels, dict):
        raise ctx.fail(f"{path}.channels", "a mapping of channel name to settings", raw_channels)
    known = {c.name for c in driver.CHANNELS}
    for cname in raw_channels:
        if cname not in known:
            raise ctx.fail(f"{path}.channels.{cname}", f"a channel of {stype} ({', '.join(sorted(known))})",
                           show_got=False)
    channels = []
    for spec in driver.CHANNELS:
        cpath = f"{path}.channels.{spec.name}"
        craw = raw_channels.get(spec.name) or {}
        cm = ctx.mapping(craw, cpath, {"resolution", "filters", "deadband", "swing", "bound", "enabled"})
        if not ctx.boolean(cm.get("enabled", True), f"{cpath}.enabled"):
            continue
        resolution = float(ctx.number(cm.get("resolution", spec.resolution), f"{cpath}.resolution",
                                      low=0.0, low_open=True))
        filters = (_parse_filters(ctx, cm["filters"], f"{cpath}.filters") if "filters" in cm
                   else list(default_filters))
        if sum(k in cm for k in ("deadband", "swing", "bound")) > 1:
            raise ctx.fail(cpath, "one of deadband, swing or bound", show_got=False)
        if "deadband" in cm:
            width = float(ctx.number(cm["deadband"], f"{cpath}.deadband", low=0.0))
            filters = [f for f in filters if f.kind not in LOSSY] + [StageConfig("deadband", (width, 0.0, 0.0))]
        if "swing" in cm:
            eps = float(ctx.number(cm["swing"], f"{cpath}.swing", low=0.0))
            filters = [f for f in filters if f.kind not in LOSSY] + [StageConfig("swing", (eps, 0.0))]
        bin_width = 1
        if "bound" in cm:  # every sample sent, in bins: within `bound` (+ resolution / 2) by construction
            bound = float(ctx.number(cm["bound"], f"{cpath}.bound", low=0.0))
            bin_width = bin_width_for(bound, resolution)
            filters = [f for f in filters if f.kind not in LOSSY]
        channels.append(ChannelConfig(spec.name, spec.unit, resolution, tuple(filters), bin_width))
    if not channels:
        raise ctx.fail(f"{path}.channels", "at least one enabled channel", show_got=False)

    options = []
    if stype == "bme680":
        heater = ctx.mapping(m.get("heater", {}), f"{path}.heater", {"temperature", "duration"})
        heater_temp = int(ctx.number(heater.get("temperature", 320), f"{path}.heater.temperature",
                                     low=200, high=400, integer=True))
        heater_ms = round(ctx.duration(heater.get("duration", "150ms"), f"{path}.heater.duration") * 1000)
        if heater_ms > 4032:
            raise ctx.fail(f"{path}.heater.duration", "at most 4032ms (the chip's longest gas wait)",
                           heater.get("duration"))
        options = [("heater_temp", float(heater_temp)), ("heater_ms", float(heater_ms))]
    elif "heater" in m:
        raise ctx.fail(f"{path}.heater", f"no heater on a {stype}", show_got=False)
    else:
        for key, (default, low, exclusive) in driver.OPTIONS.items():
            options.append((key, float(ctx.number(m.get(key, default), f"{path}.{key}", low=low,
                                                  low_open=exclusive))))
    sim_raw = ctx.mapping(m.get("sim", {}), f"{path}.sim", set(known) | {"absent"})
    sim_absent = sim_raw.pop("absent", False)
    if not isinstance(sim_absent, bool):
        raise ctx.fail(f"{path}.sim.absent", "true or false", sim_absent)
    sim = {k: _parse_wave(ctx, v, f"{path}.sim.{k}") for k, v in sim_raw.items()}
    return SensorConfig(name=name, type=stype, bus=bus, address=address, interval=interval,
                        channels=tuple(channels), options=tuple(options), sim=sim, sim_absent=sim_absent,
                        stuck_after=ctx.duration(m.get("stuck_after", 0), f"{path}.stuck_after", positive=False))


def _parse_mqtt(ctx: _Ctx, raw: Any, node_id: str) -> MqttConfig:
    m = ctx.mapping(raw, "mqtt", {"broker", "topic_prefix", "client_id", "keepalive", "protocol",
                                  "inflight", "allow_insecure", "ca_file", "cert_file", "key_file",
                                  "username", "password_file", "session_expiry", "backlog_rate",
                                  "reconnect", "wire_version"},
                    {"broker"})
    raw_brokers = m["broker"]
    if isinstance(raw_brokers, str):
        raw_brokers, paths = [raw_brokers], ["mqtt.broker"]
    elif isinstance(raw_brokers, list) and raw_brokers:
        paths = [f"mqtt.broker[{i}]" for i in range(len(raw_brokers))]
    else:
        raise ctx.fail("mqtt.broker", "a broker URL or a non-empty list of them", raw_brokers)
    allow_insecure = ctx.boolean(m.get("allow_insecure", False), "mqtt.allow_insecure")
    brokers = []
    for url, path in zip(raw_brokers, paths):
        try:
            broker = parse_broker_url(ctx.string(url, path))
        except ValueError as exc:
            raise ConfigError(f"{ctx.source}: {path}: {exc}") from None
        if not broker.tls and not is_loopback(broker.host) and not allow_insecure:
            raise ConfigError(f"{ctx.source}: {path}: plaintext mqtt:// to {broker.host} would send data "
                              f"and credentials unencrypted; use mqtts:// or set mqtt.allow_insecure: true")
        brokers.append(broker)
    prefix = ctx.string(m.get("topic_prefix", "edge"), "mqtt.topic_prefix",
                        pattern=re.compile(r"^[^#+\s/][^#+\s]*[^#+\s/]$|^[^#+\s/]$"),
                        what="a topic prefix without '#', '+', spaces, or a leading/trailing '/'")
    protocol = str(m.get("protocol", "5"))
    if protocol not in ("5", "3.1.1"):
        raise ctx.fail("mqtt.protocol", "5 or 3.1.1", m.get("protocol"))
    cert_file = ctx.string(m["cert_file"], "mqtt.cert_file") if "cert_file" in m else None
    key_file = ctx.string(m["key_file"], "mqtt.key_file") if "key_file" in m else None
    if (cert_file is None) != (key_file is None):
        raise ctx.fail("mqtt.cert_file" if cert_file is None else "mqtt.key_file",
                       "both cert_file and key_file for mutual TLS, or neither", show_got=False)
    if "password_file" in m and "username" not in m:
        raise ctx.fail("mqtt.username", "a username to go with mqtt.password_file", show_got=False)
    reconnect = ctx.mapping(m.get("reconnect", {}), "mqtt.reconnect", {"min", "max"})
    rmin = ctx.duration(reconnect.get("min", "1s"), "mqtt.reconnect.min")
    rmax = ctx.duration(reconnect.get("max", "2min"), "mqtt.reconnect.max")
    if rmax < rmin:
        raise ctx.fail("mqtt.reconnect.max", f"at least mqtt.reconnect.min ({rmin:g}s)", reconnect.get("max"))
    return MqttConfig(
        brokers=tuple(brokers), topic_prefix=prefix,
        client_id=ctx.string(m.get("client_id", f"edge-agent-{node_id}"), "mqtt.client_id"),
        keepalive=ctx.duration(m.get("keepalive", "30s"), "mqtt.keepalive"),
        protocol=protocol,
        inflight=int(ctx.number(m.get("inflight", 20), "mqtt.inflight", low=1, high=1000, integer=True)),
        allow_insecure=allow_insecure,
        ca_file=ctx.string(m["ca_file"], "mqtt.ca_file") if "ca_file" in m else None,
        cert_file=cert_file, key_file=key_file,
        username=ctx.string(m["username"], "mqtt.username") if "username" in m else None,
        password_file=ctx.string(m["password_file"], "mqtt.password_file") if "password_file" in m else None,
        session_expiry=ctx.duration(m.get("session_expiry", "1h"), "mqtt.session_expiry", positive=False),
        backlog_rate=float(ctx.number(m.get("backlog_rate", 50), "mqtt.backlog_rate", low=0.0, low_open=True)),
        reconnect_min=rmin, reconnect_max=rmax,
        wire_version=int(ctx.number(m.get("wire_version", 3), "mqtt.wire_version", low=2, high=3, integer=True)),
    )


def parse_config(doc: Any, source: str) -> AgentConfig:
    """Validate a parsed YAML document into an AgentConfig (raises ConfigError)."""
    ctx = _Ctx(source)
    m = ctx.mapping(doc, "", {"node", "flush_interval", "state_dir", "mqtt", "store", "sensors",
                              "health_interval", "clock"},
                    {"node", "mqtt", "sensors"})
    node = ctx.mapping(m["node"], "node", {"id"}, {"id"})
    node_id = ctx.string(node["id"], "node.id", pattern=_NAME,
                         what="a node id of letters, digits, '.', '_' or '-' (at most 64)")
    state_dir = ctx.string(m.get("state_dir", _default_state_dir()), "state_dir")
    store = ctx.mapping(m.get("store", {}), "store", {"path", "max_size", "policy", "ttl"})
    policy = store.get("policy", "drop_oldest")
    if policy not in ("drop_oldest", "refuse_newest"):
        raise ctx.fail("store.policy", "drop_oldest or refuse_newest", policy)
    max_size = ctx.size(store.get("max_size", "256MiB"), "store.max_size")
    if max_size < 64 * 1024:
        raise ctx.fail("store.max_size", "at least 64KiB", store.get("max_size"))
    store_cfg = StoreConfig(path=ctx.string(store.get("path", ""), "store.path"), max_size=max_size,
                            policy=policy, ttl=ctx.duration(store.get("ttl", "30d"), "store.ttl"))
    clock = ctx.mapping(m.get("clock", {}), "clock", {"hold_unsynced"})
    clock_hold = ctx.duration(clock.get("hold_unsynced", "2min"), "clock.hold_unsynced", positive=False)
    sensors_raw = m["sensors"]
    if not isinstance(sensors_raw, list) or not sensors_raw:
        raise ctx.fail("sensors", "a non-empty list of sensors", sensors_raw)
    sensors = tuple(_parse_sensor(ctx, s, f"sensors[{i}]") for i, s in enumerate(sensors_raw))
    names = [s.name for s in sensors]
    for i, n in enumerate(names):
        if n in names[:i]:
            raise ctx.fail(f"sensors[{i}].name", "a name not used by another sensor", n)
    return AgentConfig(
        node_id=node_id,
        flush_interval=ctx.duration(m.get("flush_interval", "10s"), "flush_interval"),
        health_interval=ctx.duration(m.get("health_interval", "60s"), "health_interval"),
        clock_hold=clock_hold,
        state_dir=state_dir,
        mqtt=_parse_mqtt(ctx, m["mqtt"], node_id),
        store=store_cfg,
        sensors=sensors,
        source=source,
    )


def load_config(path: str | os.PathLike | None = None) -> AgentConfig:
    """Load and validate a YAML file; without a path, the built-in default node."""
    if path is None:
        text = default_node_yaml()
        cfg = parse_config(yaml.safe_load(text), "<built-in default>")
        return replace(cfg, config_hash=hashlib.sha256(text.encode()).hexdigest()[:16])
    source = str(path)
    try:
        raw = Path(path).read_bytes()
        text = raw.decode("utf-8")
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{source}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{source}: not valid YAML{where}: {problem}") from None
    return replace(parse_config(doc, source), config_hash=hashlib.sha256(raw).hexdigest()[:16])


def with_overrides(cfg: AgentConfig, *, broker: str | None = None, state_dir: str | None = None,
                   flush_interval: str | None = None) -> AgentConfig:
    """Apply command-line flags on top of a loaded configuration, validated the same way."""
    ctx = _Ctx("command line")
    if broker is not None:
        try:
            b = parse_broker_url(broker)
        except ValueError as exc:
            raise ConfigError(f"command line: --broker: {exc}") from None
        if not b.tls and not is_loopback(b.host) and not cfg.mqtt.allow_insecure:
            raise ConfigError(f"command line: --broker: plaintext mqtt:// to {b.host} is refused "
                              f"unless the config sets mqtt.allow_insecure: true")
        cfg = replace(cfg, mqtt=replace(cfg.mqtt, brokers=(b,)))
    if state_dir is not None:
        cfg = replace(cfg, state_dir=state_dir)
    if flush_interval is not None:
        cfg = replace(cfg, flush_interval=ctx.duration(flush_interval, "--flush-interval"))
    return cfg


def store_path(cfg: AgentConfig) -> str:
    return cfg.store.path or os.path.join(cfg.state_dir, "queue.sqlite3")
