"""``edge-agent commission``: one pass/fail report for the technician at the node.

Each check says what it found and, when it fails, what to do. The report passes only
when every check passes: each configured sensor answers by its ID and reads plausible
values, the store's directory is writable with room, the clock is synchronised, the
broker answers (TLS verified when the link is mqtts), and a commissioning message
published to the node's own topic comes back through a subscription.

The backbone's ACL must let the node publish and subscribe to
``{prefix}/{node}/commission/#`` for the round trip.
"""

from __future__ import annotations

import dataclasses
import math
import os
import ssl
import tempfile
import threading
import time
import uuid
from collections.abc import Callable

import paho.mqtt.client as mqtt

from drivers.base import Sensor
from drivers.registry import SENSOR_TYPES
from edge_agent.config import AgentConfig, BrokerConfig, SensorConfig
from edge_agent.node.hardware import SignalledDevice, first_reading, location, shown_present
from edge_agent.node.mqtt import LinkLog, closed_before_connack, explain, make_client
from edge_agent.node.sysinfo import SystemProbe, disk_space

MIN_FREE = 64 * 1024 * 1024  # bytes the store's file system must have free


@dataclasses.dataclass
class Check:
    name: str
    ok: bool
    detail: str
    hint: str = ""

    def line(self) -> str:
        text = f"{'PASS' if self.ok else 'FAIL'}  {self.name}: {self.detail}"
        return text + (f"\n      -> {self.hint}" if self.hint and not self.ok else "")


def check_sensors(cfg: AgentConfig, make: Callable[[SensorConfig], Sensor], wait: float) -> list[Check]:
    """One check per configured sensor: ``make`` (a hardware object's) finds it, its first
    reading comes within ``wait`` s (an SCD4x's after 5 s), a device with no ID shows its
    signal (a pulse meter, its first pulse), and the values are within the chip's range."""
    out = []
    for sc in cfg.sensors:
        cls = SENSOR_TYPES[sc.type]
        name = f"sensor {sc.name} ({sc.type} at {location(sc)})"
        try:
            driver = make(sc)
        except OSError as exc:
            out.append(
                Check(
                    name,
                    False,
                    f"not found: {exc.strerror or exc}",
                    "check the wiring and the address (edge-agent probe lists what answers), "
                    "and that the chip has power",
                )
            )
            continue
        try:
            values = first_reading(driver, wait, until_present=True).values
            present = shown_present(driver)
        except OSError as exc:
            out.append(
                Check(
                    name,
                    False,
                    f"found, but a read failed: {exc.strerror or exc}",
                    "reseat the cable; a chip that fails reads repeatedly needs replacing",
                )
            )
            continue
        finally:
            driver.close()
        if not values:
            out.append(
                Check(
                    name,
                    False,
                    f"found, but no reading within {wait:.0f} s",
                    "the sensor may still be starting: run commission again in a minute",
                )
            )
            continue
        if not present and isinstance(driver, SignalledDevice):
            out.append(Check(name, False, f"no {driver.SIGNAL} within {wait:.0f} s", driver.NO_SIGNAL_HINT))
            continue
        specs = {c.name: c for c in cls.CHANNELS}
        bad = [
            f"{k}={v:.6g} {specs[k].unit} (range {specs[k].low:g}..{specs[k].high:g})"
            for k, v in values.items()
            if k in specs and not (specs[k].low <= v <= specs[k].high and math.isfinite(v))
        ]
        shown = ", ".join(f"{k}={v:.4g} {specs[k].unit}" for k, v in values.items() if k in specs)
        if bad:
            out.append(
                Check(
                    name,
                    False,
                    f"implausible: {', '.join(bad)}",
                    "a value outside what the chip can measure: a damaged or wrong chip",
                )
            )
        else:
            out.append(Check(name, True, shown))
    return out


def check_store(cfg: AgentConfig) -> Check:
    d = cfg.state_dir
    name = f"store ({d})"
    try:
        os.makedirs(d, mode=0o700, exist_ok=True)
        fd, path = tempfile.mkstemp(prefix=".commission-", dir=d)
        try:
            os.write(fd, b"x" * 4096)
            os.fsync(fd)
        finally:
            os.close(fd)
            os.unlink(path)
    except OSError as exc:
        return Check(
            name,
            False,
            f"not writable: {exc.strerror or exc}",
            "the card may be read-only or full; check `df` and the service user's rights",
        )
    space = disk_space(d) or {"free_bytes": 0}
    free = space["free_bytes"]
    mib = free / 1024 / 1024
    if free < MIN_FREE:
        return Check(
            name,
            False,
            f"writable, but only {mib:.0f} MiB free (at least {MIN_FREE >> 20} MiB needed)",
            "free space on the card, or use a larger card",
        )
    note = (
        ""
        if free >= cfg.store.max_size
        else f" (less than the {cfg.store.max_size >> 20} MiB queue cap: an outage holds less)"
    )
    return Check(name, True, f"writable, {mib:.0f} MiB free{note}")


def check_clock(probe: SystemProbe) -> Check:
    state = probe.clock()
    if state.synchronized:
        return Check("clock", True, f"synchronised ({state.source})")
    return Check(
        "clock",
        False,
        f"not synchronised ({state.source})",
        "the node needs network time (NTP, UDP 123) to stamp samples; check the network, "
        "then `timedatectl timesync-status`",
    )


def _tls_detail(cfg: AgentConfig, broker: BrokerConfig) -> tuple[bool, str]:
    if broker.tls:
        return True, f"TLS verified against {cfg.mqtt.ca_file or 'the system CAs'}" + (
            ", client certificate" if cfg.mqtt.cert_file else ""
        )
    if broker.host in ("127.0.0.1", "::1", "localhost"):
        return True, "plaintext, loopback only"
    return False, "plaintext over the network (allow_insecure)"


def check_broker(cfg: AgentConfig, timeout: float) -> list[Check]:
    """Connect to the first broker that answers, then the round trip through it."""
    failures = []
    for broker in cfg.mqtt.brokers:
        name = f"broker {broker.url}"
        tls_ok, tls = _tls_detail(cfg, broker)
        connected = threading.Event()
        result: dict = {}
        nonce = uuid.uuid4().hex
        topic = f"{cfg.mqtt.topic_prefix}/{cfg.node_id}/commission/{nonce}"
        try:
            client = make_client(cfg, f"edge-agent-commission-{cfg.node_id}-{nonce[:8]}", broker)
        except (OSError, ssl.SSLError, ValueError) as exc:
            failures.append(
                Check(
                    name,
                    False,
                    f"cannot set up the client: {exc}",
                    "check ca_file, cert_file, key_file and password_file in the configuration",
                )
            )
            continue

        def on_connect(c, u, flags, rc, props, result=result, connected=connected, topic=topic):
            result["rc"] = rc
            connected.set()
            if not rc.is_failure:
                c.subscribe(topic, qos=1)

        def on_subscribe(c, u, mid, rcs, props, result=result, topic=topic, nonce=nonce):
            result["sent_at"] = time.monotonic()
            c.publish(topic, nonce.encode(), qos=1)

        def on_message(c, u, msg, result=result, nonce=nonce):
            if msg.payload == nonce.encode():
                result["rtt"] = time.monotonic() - result.get("sent_at", time.monotonic())

        def on_disconnect(c, u, flags, rc, props, result=result, connected=connected):
            if not connected.is_set():
                result["closed"] = True  # before any CONNACK: the TLS or listener side said no

        client.on_connect, client.on_subscribe, client.on_message = on_connect, on_subscribe, on_message
        client.on_disconnect = on_disconnect
        try:
            client.connect(broker.host, broker.port, keepalive=30)
        except (OSError, ssl.SSLError) as exc:
            failures.append(Check(name, False, *explain(exc, broker)))
            continue
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline and "rtt" not in result and "closed" not in result:
                if client.loop(timeout=0.1) != mqtt.MQTT_ERR_SUCCESS and connected.is_set():
                    break
        finally:
            client.disconnect()
            client.loop(timeout=0.1)
        rc = result.get("rc")
        if rc is None:
            if result.get("closed"):
                link = client.on_log
                why = link.explain() if isinstance(link, LinkLog) else closed_before_connack(broker)
                failures.append(Check(name, False, *why))
            else:
                failures.append(
                    Check(
                        name,
                        False,
                        f"no answer to CONNECT within {timeout:.0f} s",
                        "a firewall may drop the port; check with the backbone team",
                    )
                )
            continue
        if rc.is_failure:
            failures.append(
                Check(
                    name,
                    False,
                    f"refused: {rc}",
                    "check username and password_file, or the client certificate",
                )
            )
            continue
        checks = [
            Check(
                name, tls_ok, f"connected, {tls}", "use mqtts:// to the backbone; plaintext is for tests only"
            )
        ]
        if "rtt" in result:
            checks.append(
                Check("round trip", True, f"published and received back in {result['rtt'] * 1000:.0f} ms")
            )
        else:
            checks.append(
                Check(
                    "round trip",
                    False,
                    f"nothing came back on {topic} within {timeout:.0f} s",
                    "the backbone's ACL must allow this node to publish and subscribe to "
                    f"{cfg.mqtt.topic_prefix}/{cfg.node_id}/commission/#",
                )
            )
        return checks
    return [*failures, Check("round trip", False, "no broker reached", "fix the broker check above first")]


def commission(
    cfg: AgentConfig,
    make: Callable[[SensorConfig], Sensor],
    *,
    probe: SystemProbe | None = None,
    timeout: float = 10.0,
    sensor_wait: float = 7.0,
) -> list[Check]:
    """Every check, in the report's order; ``make`` is a hardware object's (``hw.make``)."""
    checks = check_sensors(cfg, make, sensor_wait)
    checks.append(check_store(cfg))
    checks.append(check_clock(probe or SystemProbe()))
    checks.extend(check_broker(cfg, timeout))
    return checks
