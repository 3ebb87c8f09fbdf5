"""The uplink: store -> MQTT (paho-mqtt 2.x, QoS 1).

One thread owns the uplink: its own store connection for reading, all bookkeeping,
and paho's network work, driven through paho's interface for external event loops
(``socket()``, ``loop_read()``, ``loop_write()``, ``loop_misc()``), so paho's callbacks
run on this thread (they never block or raise); the sampler reaches it only through a
queue of small events. Deleting acknowledged rows is a second thread's, with its own
connection: SQLite works without the GIL (see ``Deleter``).

Measured on a 2-core VM (bench/bench_drain.py): a paho network thread plus ours drained
a backlog at about 0.6x a bare paho publish loop, the two fighting over the GIL; one
thread doing it all, 0.55-0.86x. What closed the rest: paho's writes wait for the end of
each turn (``on_socket_register_write``), so the publishes a burst of PUBACKs releases
leave back to back and the kernel coalesces them (A/B in one run: median 0.79x -> 1.02x);
the store is read a window's worth of rows at a time; acknowledged rows go to the deleter
ten times a second while batches are in flight, not every turn.

Which batches are on the wire, their acknowledgements and their deletion are the
delivery window's (edge_agent/node/delivery.py); this module is the connection loop.

Connections: brokers are tried in turn with exponential backoff and full jitter
(a city of nodes must not reconnect in the same second when the backbone comes
back). Each attempt uses a fresh paho client, so nothing of an old connection
is re-sent behind our back; what was in flight when a link dropped is sent
again from the store (the backbone deduplicates by node, stream, epoch and sequence).
"""

from __future__ import annotations

import json
import logging
import queue
import random
import sqlite3
import ssl
import threading
import time
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode

from edge_agent import __version__, dsp, wire
from edge_agent.config import AgentConfig, BrokerConfig
from edge_agent.node import hass, store_alarm
from edge_agent.node.control import ControlChannel
from edge_agent.node.delivery import Backoff, DeliveryWindow  # Backoff lived here: kept importable
from edge_agent.node.health import HealthReport, ReleaseFacts

# make_client and read_secret lived here before node/mqtt.py: kept importable
from edge_agent.node.mqtt import (  # noqa: F401
    CLOSED_BEFORE_CONNACK,
    ClientSettings,
    connect,
    explain,
    make_client,
    network_turn,
    new_client,
    read_secret,
    write_later,
)
from edge_agent.node.status_facts import uplink_part
from edge_agent.node.store import BatchStore

log = logging.getLogger("edge_agent.uplink")

OFFLINE_LOG_INTERVAL = 30.0  # s between "still offline" log lines
CONNECT_TIMEOUT = 10.0  # s for TCP + TLS + CONNACK before an attempt counts as failed
POLL = 0.05  # s the network wait may last while nothing else happens
OFFLINE_WAIT = 2.0  # s at a stop for the broker to acknowledge the retained "offline" status

Event = tuple[str, int | None, Any]  # (kind, client generation or None, argument)


class Uplink(threading.Thread):
    """Publishes stored batches; deletes each on a successful PUBACK."""

    def __init__(
        self,
        cfg: AgentConfig,
        store_path: str,
        *,
        rng: random.Random | None = None,
        restamping: threading.Event | None = None,
        control: ControlChannel | None = None,
        release: ReleaseFacts | None = None,
    ) -> None:
        super().__init__(name="uplink", daemon=True)
        self.cfg = cfg
        self.control = control  # the fleet's topics (node/control.py), when it has any
        if control is not None:
            control.wake = lambda: self.events.put(("answers", None, None))
        self.store_path = store_path
        self.events: queue.SimpleQueue[Event] = queue.SimpleQueue()
        self._stop_requested = threading.Event()
        self.connected = False
        self.started = time.monotonic()
        self.window = DeliveryWindow(cfg, store_path, started=self.started, restamping=restamping)
        self.deleter = self.window.deleter
        self.reconnects = 0
        self.connect_failures = 0
        self._drain_deadline: float | None = None
        self.last_tick = time.monotonic()  # the loop's last turn, for the watchdog
        self.status_topic = wire.status_topic(cfg.mqtt.topic_prefix, cfg.node_id)
        self.health_topic = wire.health_topic(cfg.mqtt.topic_prefix, cfg.node_id)
        self.health = HealthReport(cfg, release=release)
        self._pending_health: dict | None = None  # the sampler's part of a report not yet published
        self.backoff = Backoff(cfg.mqtt.reconnect_min, cfg.mqtt.reconnect_max, rng)
        client_id = cfg.mqtt.client_id or f"edge-agent-{cfg.node_id}"
        self.settings = ClientSettings.from_config(cfg.mqtt, client_id)
        self.broker_index = 0
        self.client: mqtt.Client | None = None
        self.generation = 0  # which client the events belong to
        self.attempt_started: float | None = None
        self.next_attempt = 0.0

    @property
    def broker(self) -> BrokerConfig:
        return self.cfg.mqtt.brokers[self.broker_index]

    @property
    def delivered(self) -> int:
        return self.window.delivered

    @property
    def delivered_historical(self) -> int:
        return self.window.delivered_historical

    @property
    def failed_acks(self) -> int:
        return self.window.failed_acks

    @property
    def unrouted_acks(self) -> int:
        return self.window.unrouted_acks

    @property
    def no_subscribers(self) -> bool:
        return bool(self.window.probe_at)

    @property
    def inflight(self) -> dict[int, int]:
        return self.window.inflight

    # --- paho's callbacks: they run inside _network(), on the uplink's own thread ---------------
    def _on_connect(
        self, client: mqtt.Client, gen: int, flags: Any, reason_code: ReasonCode, properties: Any
    ) -> None:
        self.events.put(("connect", gen, reason_code))

    def _on_connect_fail(self, client: mqtt.Client, gen: int) -> None:
        self.events.put(("connect_fail", gen, None))

    def _on_disconnect(
        self, client: mqtt.Client, gen: int, flags: Any, reason_code: ReasonCode, properties: Any
    ) -> None:
        self.events.put(("disconnect", gen, reason_code))

    def _on_publish(
        self, client: mqtt.Client, gen: int, mid: int, reason_code: ReasonCode, properties: Any
    ) -> None:
        # Runs inside _network() on the uplink thread: book the ack directly (no queue).
        if gen == self.generation:
            self.window.acknowledge(mid, reason_code)

    # --- other threads ---------------------------------------------------------------------
    def notify(self) -> None:
        """Something new was sealed into the store."""
        self.events.put(("sealed", None, None))

    def post_states(self, messages: list[tuple[str, bytes]]) -> None:
        """Home Assistant's state messages (node/hass.py) after a seal: sent if connected
        (QoS 0, retained: a newer one follows), else dropped."""
        self.events.put(("states", None, messages))

    def post_health(self, part: dict) -> None:
        """Time for a health message; ``part`` is the sampler's share of it."""
        self.events.put(("health", None, part))

    def stop(self, drain_timeout: float = 5.0) -> None:
        """Finish: wait up to drain_timeout for in-flight and queued batches, then disconnect."""
        self._drain_deadline = time.monotonic() + drain_timeout
        self.window.stopping = True
        self._stop_requested.set()
        self.events.put(("stop", None, None))

    # --- the uplink's own thread ---------------------------------------------------------------
    def _status_payload(self, state: str) -> bytes:
        status: dict[str, object] = {
            "node": self.cfg.node_id,
            "state": state,
            "version": __version__,
            "core": dsp.IMPLEMENTATION,
        }
        release = self.health.release()
        if release is not None:  # under the launcher (docs/fleet.md): what it runs, the last trial
            status["release"] = release
        return json.dumps(status, separators=(",", ":")).encode()

    def _start_attempt(self, now: float) -> None:
        m = self.cfg.mqtt
        self.generation += 1
        broker = self.broker
        try:
            client = new_client(self.settings, broker)
        except (OSError, ssl.SSLError, ValueError) as exc:
            # unreadable CA, client certificate, key or password file: say so, and retry later
            log.error("event=uplink_setup_failed broker=%s error=%r", broker.url, str(exc))
            self._schedule_retry(now)
            return
        client.user_data_set(self.generation)
        client.max_inflight_messages_set(m.inflight)
        client.will_set(self.status_topic, self._status_payload("offline"), qos=1, retain=True)
        client.reconnect_delay_set(3600, 3600)  # reconnecting is ours to schedule, not paho's
        client.connect_timeout = CONNECT_TIMEOUT
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        if self.control is not None:
            self.control.attach(client, lambda gen: gen == self.generation)
        # Writes wait for _network(): without this, paho sends each packet the moment it is
        # queued, from inside publish() and from each PUBACK it reads (see _network).
        client.on_socket_register_write = write_later
        # Connect here rather than in paho's thread: a failure (refused, unreachable, TLS
        # verification) then comes back as an exception whose message we can log.
        try:
            connect(client, broker, self.settings)
        except (OSError, ssl.SSLError, ValueError) as exc:
            self.connect_failures += 1
            what, hint = explain(exc, broker)
            log.warning("event=uplink_connect_failed broker=%s error=%r hint=%r", broker.url, what, hint)
            self.client = client
            self._schedule_retry(now)
            return
        self.client = client
        self.attempt_started = now
        log.debug("event=uplink_connecting broker=%s attempt=%d", broker.url, self.backoff.attempt)

    def _network(self, timeout: float) -> int:
        return network_turn(self.client, timeout)

    def _drop_client(self) -> None:
        client, self.client = self.client, None
        self.attempt_started = None
        if client is not None:
            client.disconnect()
            if client.socket() is not None:
                client.loop_write()  # let the DISCONNECT go out

    def _schedule_retry(self, now: float) -> None:
        """After a failed attempt or a lost link: the next broker, after a jittered wait."""
        self._drop_client()
        self.window.lost()
        if len(self.cfg.mqtt.brokers) > 1:
            self.broker_index = (self.broker_index + 1) % len(self.cfg.mqtt.brokers)
        delay = self.backoff.next_delay()
        self.next_attempt = now + delay
        log.debug("event=uplink_retry broker=%s in=%.1fs", self.broker.url, delay)

    def run(self) -> None:
        m = self.cfg.mqtt
        self.deleter.start()
        log.info(
            "event=uplink_start brokers=%s protocol=%s inflight=%d session_expiry=%gs",
            ",".join(b.url for b in m.brokers),
            m.protocol,
            m.inflight,
            m.session_expiry,
        )
        # First "offline" line 2 s after start if no broker answers; then every 30 s.
        self.last_offline_log = time.monotonic() - OFFLINE_LOG_INTERVAL + 2.0
        store = None
        try:
            store = BatchStore(self.store_path)
            while not self._turn(store):
                pass
        except (sqlite3.DatabaseError, UnicodeDecodeError) as exc:
            # Damage: told to the agent, which recovers the file and starts a new uplink.
            if not store_alarm.met(self.store_path, "uplink", exc):
                raise
        finally:
            self._finish(store)

    def _turn(self, store: BatchStore) -> bool:
        """One turn of the loop; True when it is over (stopped, and drained or out of time)."""
        now = self.last_tick = time.monotonic()
        if self.client is None and not self._stop_requested.is_set() and now >= self.next_attempt:
            self._start_attempt(now)
        elif (
            not self.connected
            and self.attempt_started is not None
            and now - self.attempt_started > CONNECT_TIMEOUT + 2.0
        ):
            self.connect_failures += 1
            self._schedule_retry(now)
        if self.client is not None:
            # paho's network work happens here, on this thread: its callbacks queue
            # their events, which are handled right below. The select() inside is
            # also this loop's sleep; POLL bounds how late a new batch waits.
            self._network(0.0 if self.events.qsize() else POLL)
        try:
            if self.client is None:
                self._handle(store, *self.events.get(timeout=max(0.05, min(0.5, self.next_attempt - now))))
            while True:  # everything already queued before publishing more
                self._handle(store, *self.events.get_nowait())
        except queue.Empty:
            pass
        self.window.hand_over_deletes(now)
        if self.connected and self.client is not None:
            self.window.fill(self.client, store)
        elif time.monotonic() - self.last_offline_log >= OFFLINE_LOG_INTERVAL:
            self.last_offline_log = time.monotonic()
            n, size = store.depth()
            log.warning(
                "event=uplink_offline broker=%s backlog_batches=%d backlog_bytes=%d failed_attempts=%d",
                self.broker.url,
                n,
                size,
                self.connect_failures,
            )
        if self._stop_requested.is_set():
            drained = self.window.drained(store, connected=self.connected)
            return drained or time.monotonic() >= (self._drain_deadline or 0)
        return False

    def _finish(self, store: BatchStore | None) -> None:
        """The "offline" status out, the link down, the deleter's last deletes, the store closed."""
        if self.connected and self.client is not None:
            info = self.client.publish(self.status_topic, self._status_payload("offline"), qos=1, retain=True)
            deadline = time.monotonic() + OFFLINE_WAIT
            while not info.is_published() and time.monotonic() < deadline:
                if self._network(0.1) != mqtt.MQTT_ERR_SUCCESS:
                    break
        self._drop_client()
        self.deleter.finish(self.deleter.STOP)
        n = -1  # unknown: the store did not open, or its count is damaged
        if store is not None:
            with store_alarm.guard(self.store_path, "uplink"):
                n = store.depth()[0]
            store.close()
        log.info(
            "event=uplink_stop delivered=%d historical=%d pending=%d",
            self.delivered,
            self.delivered_historical,
            n,
        )

    def _handle(self, store: BatchStore, kind: str, gen: int | None, arg) -> None:
        if gen is not None and gen != self.generation:
            return  # from a client we already dropped
        now = time.monotonic()
        if kind == "connect":
            if arg.is_failure:
                self.connect_failures += 1
                log.warning(
                    "event=uplink_refused broker=%s reason=%r hint=%r",
                    self.broker.url,
                    str(arg),
                    "check mqtt.username and mqtt.password_file, or that the broker's ACL lets this client id in",
                )
                self._schedule_retry(now)
                return
            self.connected = True
            self.attempt_started = None
            self.backoff.reset()
            backlog_from = self.window.connected(store)
            log.info("event=uplink_connected broker=%s backlog_from_id=%d", self.broker.url, backlog_from)
            assert self.client is not None  # the connect event came from it
            self.client.publish(self.status_topic, self._status_payload("online"), qos=1, retain=True)
            if self.cfg.home_assistant.discovery:
                self.client.publish(*hass.discovery(self.cfg), qos=1, retain=True)
            if self._pending_health is not None:
                self._publish_health(store, self._pending_health)
            if self.control is not None:
                self.control.connected(self.client)
        elif kind == "answers":
            if self.connected and self.client is not None and self.control is not None:
                self.control.send(self.client)
        elif kind == "states":
            if self.connected and self.client is not None:  # else dropped: newer ones follow
                for topic, payload in arg:
                    self.client.publish(topic, payload, qos=0, retain=True)
        elif kind == "health":
            if self.connected:
                self._publish_health(store, arg)
            else:
                self._pending_health = arg  # the newest waits for the link; older ones are stale
        elif kind in ("disconnect", "connect_fail"):
            if self.connected:
                self.reconnects += 1
                log.warning(
                    "event=uplink_disconnected broker=%s reason=%r inflight=%d",
                    self.broker.url,
                    str(arg),
                    len(self.inflight),
                )
                self.backoff.reset()
            else:
                self.connect_failures += 1
                log.warning(
                    "event=uplink_connect_failed broker=%s error=%r hint=%r",
                    self.broker.url,
                    f"closed before CONNACK ({arg})" if arg is not None else "closed before CONNACK",
                    CLOSED_BEFORE_CONNACK,
                )
            self.connected = False
            self._schedule_retry(now)

    def _publish_health(self, store: BatchStore, part: dict) -> None:
        report = self.health.build(sampler=part, uplink=uplink_part(self), store=store)
        assert self.client is not None  # only while connected
        self.client.publish(self.health_topic, json.dumps(report, separators=(",", ":")).encode(), qos=1)
        self._pending_health = None
