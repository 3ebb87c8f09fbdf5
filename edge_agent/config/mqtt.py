"""The ``mqtt:`` block: brokers, TLS, credentials, the session and the uplink's pacing."""

from __future__ import annotations

import ipaddress
import re
from typing import Any
from urllib.parse import urlsplit

from edge_agent.config.document import Document
from edge_agent.config.model import BrokerConfig, MqttConfig

_MQTT_KEYS = {
    "broker",
    "topic_prefix",
    "client_id",
    "keepalive",
    "protocol",
    "inflight",
    "allow_insecure",
    "ca_file",
    "cert_file",
    "key_file",
    "username",
    "password_file",
    "session_expiry",
    "backlog_rate",
    "no_subscribers",
    "reconnect",
    "wire_version",
}
# The payload versions wire.encode writes: 4 by default, 3 or 2 for a backbone whose
# decoders are older (version 1 is decoded, never written by a node).
WIRE_VERSIONS = (2, 3, 4)
_TOPIC_PREFIX = re.compile(r"^[^#+\s/][^#+\s]*[^#+\s/]$|^[^#+\s/]$")


# MQTT's own limits: keepalive is a 16-bit count of seconds (0 turns it off, which a node
# must not), the session expiry interval a 32-bit one.
KEEPALIVE_MAX = 65535.0
SESSION_EXPIRY_MAX = float(2**32 - 1)


# MQTT's strings: UTF-8 of at most 65535 bytes, no U+0000, and (SHOULD) no control characters.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
PREFIX_MAX = 1024  # bytes: the prefix leaves room in a topic for /{node}/data/{stream}


def _mqtt_string(doc: Document, value: str, path: str, most: int = 65535) -> str:
    if _CONTROL.search(value):
        raise doc.fail(path, "no control characters (MQTT strings may not carry them)", value)
    if len(value.encode()) > most:
        raise doc.fail(path, f"at most {most} bytes of UTF-8", value)
    return value


def _at_most(doc: Document, seconds: float, most: float, path: str, raw: Any) -> float:
    if seconds > most:
        raise doc.fail(path, f"a duration of at most {most:.0f}s (MQTT's limit)", raw)
    return seconds


def parse_broker_url(url: str) -> BrokerConfig:
    """``mqtt://host[:port]`` (default 1883) or ``mqtts://host[:port]`` (default 8883)."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise ValueError(
            f"expected a broker URL such as mqtt://127.0.0.1:1883 or mqtts://host:8883, got {url!r}"
        )
    if parts.path not in ("", "/") or parts.query or parts.username or parts.password:
        raise ValueError(
            f"a broker URL carries only scheme, host and port (credentials go in "
            f"mqtt.username / mqtt.password_file), got {url!r}"
        )
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"bad port in broker URL {url!r}") from None
    if port is None:
        port = 8883 if parts.scheme == "mqtts" else 1883
    elif not 1 <= port <= 65535:  # urlsplit takes 0, which connect() would not
        raise ValueError(f"a broker port is 1..65535, got {port} in {url!r}")
    return BrokerConfig(url=url, scheme=parts.scheme, host=parts.hostname, port=port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _parse_brokers(doc: Document, raw: Any, allow_insecure: bool) -> tuple[BrokerConfig, ...]:
    if isinstance(raw, str):
        raw, paths = [raw], ["mqtt.broker"]
    elif isinstance(raw, list) and raw:
        paths = [f"mqtt.broker[{i}]" for i in range(len(raw))]
    else:
        raise doc.fail("mqtt.broker", "a broker URL or a non-empty list of them", raw)
    brokers = []
    for url, path in zip(raw, paths):
        try:
            broker = parse_broker_url(doc.string(url, path))
        except ValueError as exc:
            raise doc.error(path, str(exc)) from None
        if not broker.tls and not is_loopback(broker.host) and not allow_insecure:
            raise doc.error(
                path,
                f"plaintext mqtt:// to {broker.host} would send data and credentials "
                f"unencrypted; use mqtts:// or set mqtt.allow_insecure: true",
            )
        brokers.append(broker)
    return tuple(brokers)


def parse_mqtt(doc: Document, raw: Any, node_id: str) -> MqttConfig:
    m = doc.mapping(raw, "mqtt", _MQTT_KEYS, {"broker"})
    allow_insecure = doc.boolean(m.get("allow_insecure", False), "mqtt.allow_insecure")
    brokers = _parse_brokers(doc, m["broker"], allow_insecure)
    prefix = doc.string(
        m.get("topic_prefix", "edge"),
        "mqtt.topic_prefix",
        pattern=_TOPIC_PREFIX,
        what="a topic prefix without '#', '+', spaces, or a leading/trailing '/'",
    )
    _mqtt_string(doc, prefix, "mqtt.topic_prefix", PREFIX_MAX)
    protocol = str(m.get("protocol", "5"))
    if protocol not in ("5", "3.1.1"):
        raise doc.fail("mqtt.protocol", "5 or 3.1.1", m.get("protocol"))
    cert_file = doc.optional_string(m, "cert_file", "mqtt.cert_file")
    key_file = doc.optional_string(m, "key_file", "mqtt.key_file")
    if (cert_file is None) != (key_file is None):
        raise doc.fail(
            "mqtt.cert_file" if cert_file is None else "mqtt.key_file",
            "both cert_file and key_file for mutual TLS, or neither",
            show_got=False,
        )
    if "password_file" in m and "username" not in m:
        raise doc.fail("mqtt.username", "a username to go with mqtt.password_file", show_got=False)
    reconnect = doc.mapping(m.get("reconnect", {}), "mqtt.reconnect", {"min", "max"})
    rmin = doc.duration(reconnect.get("min", "1s"), "mqtt.reconnect.min")
    rmax = doc.duration(reconnect.get("max", "2min"), "mqtt.reconnect.max")
    if rmax < rmin:
        raise doc.fail("mqtt.reconnect.max", f"at least mqtt.reconnect.min ({rmin:g}s)", reconnect.get("max"))
    return MqttConfig(
        brokers=brokers,
        topic_prefix=prefix,
        client_id=_mqtt_string(
            doc, doc.string(m.get("client_id", f"edge-agent-{node_id}"), "mqtt.client_id"), "mqtt.client_id"
        ),
        keepalive=_at_most(
            doc,
            doc.duration(m.get("keepalive", "30s"), "mqtt.keepalive"),
            KEEPALIVE_MAX,
            "mqtt.keepalive",
            m.get("keepalive"),
        ),
        protocol=protocol,
        inflight=int(doc.number(m.get("inflight", 20), "mqtt.inflight", low=1, high=1000, integer=True)),
        allow_insecure=allow_insecure,
        ca_file=doc.optional_string(m, "ca_file", "mqtt.ca_file"),
        cert_file=cert_file,
        key_file=key_file,
        username=None
        if "username" not in m
        else _mqtt_string(doc, doc.string(m["username"], "mqtt.username"), "mqtt.username"),
        password_file=doc.optional_string(m, "password_file", "mqtt.password_file"),
        session_expiry=_at_most(
            doc,
            doc.duration(m.get("session_expiry", "1h"), "mqtt.session_expiry", positive=False),
            SESSION_EXPIRY_MAX,
            "mqtt.session_expiry",
            m.get("session_expiry"),
        ),
        backlog_rate=float(
            doc.number(m.get("backlog_rate", 50), "mqtt.backlog_rate", low=0.0, low_open=True)
        ),
        no_subscribers=_no_subscribers(doc, m.get("no_subscribers", "hold")),
        reconnect_min=rmin,
        reconnect_max=rmax,
        wire_version=_wire_version(doc, m.get("wire_version", WIRE_VERSIONS[-1])),
    )


def _wire_version(doc: Document, raw: Any) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int) or raw not in WIRE_VERSIONS:
        allowed = ", ".join(map(str, WIRE_VERSIONS[:-1])) + f" or {WIRE_VERSIONS[-1]}"
        raise doc.fail("mqtt.wire_version", f"a payload version the node writes: {allowed}", raw)
    return int(raw)


def _no_subscribers(doc: Document, raw: Any) -> str:
    # "delete" for a broker that answers 0x10 although something takes the data (a rule
    # engine that is no subscriber): otherwise the node would keep every batch for ever.
    if raw not in ("hold", "delete"):
        raise doc.fail("mqtt.no_subscribers", "hold or delete (what a PUBACK 0x10 does to a batch)", raw)
    return str(raw)
