"""Loading a node's configuration: the file, its top-level keys, the built-in default node,
and the command line's overrides."""

from __future__ import annotations

import hashlib
import ipaddress
import os
import re
import socket
from dataclasses import replace
from typing import Any

import yaml

from edge_agent.config.derived import parse_derived
from edge_agent.config.document import NAME, Document
from edge_agent.config.model import AgentConfig, HomeAssistantConfig, HttpConfig, StoreConfig
from edge_agent.config.mqtt import is_loopback, parse_broker_url, parse_mqtt
from edge_agent.config.sensors import check_inputs, parse_sensor
from edge_agent.config.yamlfile import load_yaml
from edge_agent.errors import ConfigError
from edge_agent.files import CONFIG_MAX, TooLarge, read_at_most

_TOP_KEYS = {
    "node",
    "flush_interval",
    "state_dir",
    "mqtt",
    "store",
    "sensors",
    "health_interval",
    "clock",
    "http",
    "home_assistant",
    "derived",
}
TOPIC_PART = re.compile(r"[A-Za-z0-9._/-]{1,64}")  # no MQTT wildcard, no empty level at the ends


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


def _parse_store(doc: Document, raw: Any) -> StoreConfig:
    store = doc.mapping(raw, "store", {"path", "max_size", "policy", "ttl"})
    policy = store.get("policy", "drop_oldest")
    if policy not in ("drop_oldest", "refuse_newest"):
        raise doc.fail("store.policy", "drop_oldest or refuse_newest", policy)
    max_size = doc.size(store.get("max_size", "256MiB"), "store.max_size")
    if max_size < 64 * 1024:
        raise doc.fail("store.max_size", "at least 64KiB", store.get("max_size"))
    return StoreConfig(
        path=doc.string(store.get("path", ""), "store.path"),
        max_size=max_size,
        policy=policy,
        ttl=doc.duration(store.get("ttl", "30d"), "store.ttl"),
    )


def parse_listen(text: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` with an IP address literal (a name would be looked up
    at every start, and could point off the node): (host, port); raises ValueError."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError("host:port with a port of 0 (any free one) to 65535")
    bracketed = host.startswith("[") and host.endswith("]")
    try:
        addr = ipaddress.ip_address(host[1:-1] if bracketed else host)
    except ValueError:
        raise ValueError("host:port with an IP address, not a name (127.0.0.1:9180, [::1]:9180)") from None
    if (addr.version == 6) != bracketed:
        raise ValueError("an IPv6 address in brackets ([::1]:9180), an IPv4 one without")
    return str(addr), int(port)


TOKEN = re.compile(r"[A-Za-z0-9._~+/=-]{16,256}")


def check_token(text: str) -> str:
    """A status page token as a file's first line gives it: 16 to 256 of the characters a
    base64, hex or URL-safe token is written in; raises ValueError saying what it must be."""
    if not TOKEN.fullmatch(text):
        raise ValueError(
            "a status page token is 16 to 256 letters, digits or . _ ~ + / = - on the first line "
            "(for instance: openssl rand -hex 24)"
        )
    return text


def _parse_http(doc: Document, raw: Any) -> HttpConfig:
    http = doc.mapping(raw, "http", {"listen", "token_file"})
    listen = doc.string(http.get("listen", "127.0.0.1:9180"), "http.listen")
    token_file = doc.optional_string(http, "token_file", "http.token_file")
    if listen == "":
        return HttpConfig(host="", port=0, token_file=token_file)
    try:
        host, port = parse_listen(listen)
    except ValueError as exc:
        raise doc.fail("http.listen", f'{exc}, or "" for no page', listen) from None
    return HttpConfig(host=host, port=port, token_file=token_file)


def _parse_home_assistant(doc: Document, raw: Any) -> HomeAssistantConfig:
    ha = doc.mapping(raw, "home_assistant", {"discovery", "prefix"})
    prefix = doc.string(
        ha.get("prefix", "homeassistant"),
        "home_assistant.prefix",
        pattern=TOPIC_PART,
        what="a topic prefix of 1 to 64 letters, digits, '.', '_', '-' or '/'",
    )
    if prefix.startswith("/") or prefix.endswith("/") or "//" in prefix:
        raise doc.fail("home_assistant.prefix", "a topic prefix with no empty level", prefix)
    return HomeAssistantConfig(doc.boolean(ha.get("discovery", False), "home_assistant.discovery"), prefix)


def _parse_groups(doc: Document, raw: Any) -> tuple[str, ...]:
    """``node.groups``: the fleet groups a signed update, configuration or command may name
    this node by (``group:NAME``, docs/fleet.md), each a name as a node id is."""
    if not isinstance(raw, list):
        raise doc.fail("node.groups", "a list of group names", raw)
    groups = []
    for i, g in enumerate(raw):
        name = doc.string(
            g,
            f"node.groups[{i}]",
            pattern=NAME,
            what="a group name of letters, digits, '.', '_' or '-' (at most 64)",
        )
        if name in groups:
            raise doc.fail(f"node.groups[{i}]", "a group not already listed", name)
        groups.append(name)
    return tuple(groups)


def parse_config(raw: Any, source: str) -> AgentConfig:
    """Validate a parsed YAML document into an AgentConfig (raises ConfigError)."""
    doc = Document(source)
    m = doc.mapping(raw, "", _TOP_KEYS, {"node", "mqtt", "sensors"})
    node = doc.mapping(m["node"], "node", {"id", "groups"}, {"id"})
    node_id = doc.string(
        node["id"], "node.id", pattern=NAME, what="a node id of letters, digits, '.', '_' or '-' (at most 64)"
    )
    groups = _parse_groups(doc, node.get("groups", []))
    state_dir = doc.string(m.get("state_dir", _default_state_dir()), "state_dir")
    store = _parse_store(doc, m.get("store", {}))
    clock = doc.mapping(m.get("clock", {}), "clock", {"hold_unsynced"})
    clock_hold = doc.duration(clock.get("hold_unsynced", "2min"), "clock.hold_unsynced", positive=False)
    sensors_raw = m["sensors"]
    if not isinstance(sensors_raw, list) or not sensors_raw:
        raise doc.fail("sensors", "a non-empty list of sensors", sensors_raw)
    sensors = tuple(parse_sensor(doc, s, f"sensors[{i}]") for i, s in enumerate(sensors_raw))
    names = [s.name for s in sensors]
    for i, n in enumerate(names):
        if n in names[:i]:
            raise doc.fail(f"sensors[{i}].name", "a name not used by another sensor", n)
    check_inputs(doc, sensors)
    return AgentConfig(
        node_id=node_id,
        groups=groups,
        flush_interval=doc.duration(m.get("flush_interval", "10s"), "flush_interval"),
        health_interval=doc.duration(m.get("health_interval", "60s"), "health_interval"),
        clock_hold=clock_hold,
        state_dir=state_dir,
        mqtt=parse_mqtt(doc, m["mqtt"], node_id),
        store=store,
        sensors=sensors,
        http=_parse_http(doc, m.get("http", {})),
        home_assistant=_parse_home_assistant(doc, m.get("home_assistant", {})),
        derived=parse_derived(doc, m.get("derived", []), sensors),
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
        raw = read_at_most(path, CONFIG_MAX)
        text = raw.decode("utf-8")
    except TooLarge as exc:
        raise ConfigError(f"{source}: {exc}: not a node configuration") from None
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{source}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    return parse_config_text(text, source)


def parse_config_text(text: str, source: str) -> AgentConfig:
    """A node configuration's YAML text, validated as a file of it is (a remote one too);
    ConfigError naming ``source`` and where."""
    if len(text.encode("utf-8")) > CONFIG_MAX:
        raise ConfigError(f"{source}: more than {CONFIG_MAX:,} bytes: not a node configuration")
    try:
        doc = load_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{source}: not valid YAML{where}: {problem}") from None
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
    return replace(parse_config(doc, source), config_hash=digest)


def with_overrides(
    cfg: AgentConfig,
    *,
    broker: str | None = None,
    state_dir: str | None = None,
    flush_interval: str | None = None,
) -> AgentConfig:
    """Apply command-line flags on top of a loaded configuration, validated the same way."""
    doc = Document("command line")
    if broker is not None:
        try:
            b = parse_broker_url(broker)
        except ValueError as exc:
            raise doc.error("--broker", str(exc)) from None
        if not b.tls and not is_loopback(b.host) and not cfg.mqtt.allow_insecure:
            raise doc.error(
                "--broker",
                f"plaintext mqtt:// to {b.host} is refused unless the config sets mqtt.allow_insecure: true",
            )
        cfg = replace(cfg, mqtt=replace(cfg.mqtt, brokers=(b,)))
    if state_dir is not None:
        cfg = replace(cfg, state_dir=state_dir)
    if flush_interval is not None:
        cfg = replace(cfg, flush_interval=doc.duration(flush_interval, "--flush-interval"))
    return cfg


def store_path(cfg: AgentConfig) -> str:
    return cfg.store.path or os.path.join(cfg.state_dir, "queue.sqlite3")
