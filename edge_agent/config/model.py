"""The configuration as the agent uses it: frozen, typed objects, every duration in seconds."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from decimal import Decimal

from drivers.options import OptionValue
from drivers.sim.profiles import Wave
from edge_agent.dsp import LOSSY


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

    def __post_init__(self) -> None:
        if self.bin_width > 1 and self._lossy() is not None:  # the loader never makes one
            raise ValueError(f"channel {self.name}: a binned bound and a lossy stage do not combine")

    def chain_spec(self) -> list[tuple]:
        return [(s.kind, *s.params) for s in self.filters]

    def _lossy(self) -> StageConfig | None:
        """The lossy stage (deadband, swing: at most one, and last), or None."""
        last = self.filters[-1] if self.filters else None
        return last if last is not None and last.kind in LOSSY else None

    @property
    def reconstruction(self) -> str:
        """How a decoder rebuilds the samples from the points sent (wire.RECONSTRUCTIONS):
        "hold" each point until the next (a deadband), "linear" between them (a swinging
        door), or "every" sample is a point (no lossy stage, or a binned ``bound``)."""
        lossy = self._lossy()
        if lossy is None:
            return "every"
        return "hold" if lossy.kind == "deadband" else "linear"

    @property
    def bound(self) -> float:
        """The lossy part's error bound as the wire states it, in the channel's unit (a
        fraction of the held value when ``bound_relative``): the deadband's width or the
        door's deviation; binned, ``bin_width // 2`` steps; lossless, 0. What
        quantisation adds (resolution / 2) is not in it."""
        lossy = self._lossy()
        if lossy is not None:
            return lossy.params[0]
        if self.bin_width > 1:  # in decimal, as values decode: 3 x 0.1 is 0.3, not 0.30000000000000004
            return float(Decimal(repr(self.resolution)) * (self.bin_width // 2))
        return 0.0

    @property
    def bound_relative(self) -> bool:
        """Whether ``bound`` is a fraction of the held value's magnitude (a relative deadband;
        false for a zero width, which the wire states as no bound at all)."""
        lossy = self._lossy()
        return lossy is not None and lossy.kind == "deadband" and bool(lossy.params[1]) and self.bound > 0

    @property
    def error_bound(self) -> float:
        """Largest difference between a filtered sample and its decoded reconstruction:
        the lossy stage's bound plus half the resolution (a relative deadband: +inf)."""
        if self.bound_relative:
            return math.inf
        return self.bound + self.resolution / 2


@dataclass(frozen=True)
class PrivacyConfig:
    """A stream's privacy level (``privacy:``, edge_agent/config/privacy.py, docs/privacy.md):
    ``aggregate`` or ``total`` (a raw stream has none); only statistics over each ``period``
    (s) leave the node, each coarsened to ``rounding`` (channel -> step in the sent unit)."""

    level: str
    period: float
    rounding: tuple[tuple[str, float], ...] = ()
    max_gap: float = 0.0  # s between samples beyond which a period is not covered (nor integrated)


@dataclass(frozen=True)
class SensorConfig:
    name: str
    type: str
    bus: int
    address: int
    interval: float
    channels: tuple[ChannelConfig, ...]
    # the driver's OPTIONS as configured: (constructor keyword, value), defaults filled in
    options: tuple[tuple[str, OptionValue], ...] = ()
    stuck_after: float = 0.0  # s of an unchanged raw value before samples are flagged stuck (0: off)
    sim: dict[str, Wave] = field(default_factory=dict)
    sim_absent: bool = False  # with --simulate: the chip is not there (to rehearse a missing sensor)
    # (the driver's input, the sensor and its channel that feed it): an SCD4x's ambient pressure
    inputs: tuple[tuple[str, str, str], ...] = ()
    privacy: PrivacyConfig | None = None  # None: raw

    def driver_kwargs(self) -> dict[str, OptionValue]:
        """Keyword arguments for the driver (and its simulator) beyond bus and address."""
        return dict(self.options)


@dataclass(frozen=True)
class DerivedConfig:
    """A derived stream (``derived:``, edge_agent/config/derived.py): channels the node computes
    from other sensors' channels (edge_agent/node/derived.py)."""

    name: str  # the stream it travels as
    kind: str  # us_aqi, hk_aqhi, energy
    interval: float  # s between its points (energy: the period)
    # (the kind's input, the sensor, its channel, the channel's unit)
    inputs: tuple[tuple[str, str, str, str], ...]
    channels: tuple[ChannelConfig, ...]
    correction: str = "none"  # us_aqi: the humidity correction of PM2.5 (edge_agent.dsp.aqi)
    emission_factor: float = 0.0  # energy: g CO2e per kWh (0: no co2e channel)
    max_gap: float = 0.0  # energy: s between power samples beyond which nothing is integrated
    sim_speed: float = 1.0  # with --simulate only: its hours run this many times faster (a rehearsal)
    privacy: PrivacyConfig | None = None  # None: raw

    def source(self, name: str) -> tuple[str, str, str] | None:
        """(sensor, channel, unit) feeding the input ``name``, or None."""
        return next((i[1:] for i in self.inputs if i[0] == name), None)


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
    session_expiry: float = 3600.0  # s the broker keeps our session after a disconnect (MQTT 5)
    backlog_rate: float = 50.0  # batches/s at most from the backlog after an outage
    no_subscribers: str = "hold"  # a PUBACK 0x10 keeps the batch ("hold") or deletes it ("delete")
    wire_version: int = 4  # highest payload version sent (3 or 2 for a backbone whose decoders are older)
    reconnect_min: float = 1.0  # s, backoff base (full jitter)
    reconnect_max: float = 120.0  # s, backoff cap

    @property
    def broker(self) -> BrokerConfig:
        return self.brokers[0]


@dataclass(frozen=True)
class StoreConfig:
    path: str
    max_size: int = 256 * 1024**2  # bytes of payload waiting
    policy: str = "drop_oldest"  # or "refuse_newest", when max_size is reached
    ttl: float = 30 * 86400.0  # s a batch may wait before it expires


@dataclass(frozen=True)
class HttpConfig:
    """The node's own status page and metrics (node/status_http.py)."""

    host: str = "127.0.0.1"  # an IP address literal; "": no listener
    port: int = 9180  # 0: a free port, logged (for tests)
    token_file: str | None = None  # the token the page's actions need (first line); none: no actions

    @property
    def enabled(self) -> bool:
        return self.host != ""

    @property
    def listen(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class HomeAssistantConfig:
    """MQTT discovery for Home Assistant (node/hass.py): off unless asked for."""

    discovery: bool = False
    prefix: str = "homeassistant"  # Home Assistant's discovery prefix


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
    http: HttpConfig = HttpConfig()
    home_assistant: HomeAssistantConfig = HomeAssistantConfig()
    derived: tuple[DerivedConfig, ...] = ()
    groups: tuple[str, ...] = ()  # node.groups: the fleet groups signed objects may target
    source: str = "<built-in default>"
    config_hash: str = ""  # first 16 hex digits of the SHA-256 of the file's bytes

    def sensor(self, name: str) -> SensorConfig:
        for s in self.sensors:
            if s.name == name:
                return s
        raise KeyError(name)
