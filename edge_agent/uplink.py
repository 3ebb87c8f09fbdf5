"""The uplink: store -> MQTT (paho-mqtt 2.x, QoS 1), oldest first.

The uplink thread owns its own store connection and all bookkeeping. paho's
callbacks run on paho's network thread; they only put small tuples on a queue
and never block or raise. A batch leaves the store only on a PUBACK whose
reason code is not a failure. At most ``mqtt.inflight`` batches are in flight,
so paho's own in-memory queue stays small: the store is the queue.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import socket
import ssl
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.packettypes import PacketTypes

from edge_agent import __version__, dsp, wire
from edge_agent.config import AgentConfig
from edge_agent.health import HealthReport
from edge_agent.store import BatchStore

log = logging.getLogger("edge_agent.uplink")

FAILED_RETRY_DELAY = 5.0      # s before a batch whose PUBACK failed is offered again
OFFLINE_LOG_INTERVAL = 30.0   # s between "still offline" log lines


def read_secret(path: str) -> str:
    """A secret from a file (first line, without its newline); the value is never logged."""
    with open(path, encoding="utf-8") as f:
        return f.readline().rstrip("\r\n")


def make_client(cfg: AgentConfig, client_id: str, *, clean_start: bool = True) -> mqtt.Client:
    """A paho client set up from the config: protocol, TLS, credentials. Not yet connected."""
    m = cfg.mqtt
    protocol = mqtt.MQTTv5 if m.protocol == "5" else mqtt.MQTTv311
    kwargs = {}
    if protocol == mqtt.MQTTv311:
        kwargs["clean_session"] = clean_start
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol, **kwargs)
    if m.broker.tls:
        ctx = ssl.create_default_context(cafile=m.ca_file)  # verifies chain and host name
        client.tls_set_context(ctx)
    if m.username is not None:
        password = read_secret(m.password_file) if m.password_file else None
        client.username_pw_set(m.username, password)
    return client


class Uplink(threading.Thread):
    """Publishes stored batches; deletes each on a successful PUBACK."""

    def __init__(self, cfg: AgentConfig, store_path: str) -> None:
        super().__init__(name="uplink", daemon=True)
        self.cfg = cfg
        self.store_path = store_path
        self.events: queue.SimpleQueue = queue.SimpleQueue()
        self._stop_requested = threading.Event()
        self.connected = False
        self.inflight: dict[int, int] = {}     # mid -> store row id
        self.hold: dict[int, float] = {}       # row id -> monotonic time it may be retried
        self.delivered = 0
        self.failed_acks = 0
        self.reconnects = 0
        self._drain_deadline: float | None = None
        self.last_tick = time.monotonic()  # the loop's last turn, for the watchdog
        self.started = time.monotonic()
        self.status_topic = wire.status_topic(cfg.mqtt.topic_prefix, cfg.node_id)
        self.health_topic = wire.health_topic(cfg.mqtt.topic_prefix, cfg.node_id)
        self.health = HealthReport(cfg)
        self._pending_health: dict | None = None  # sensor part of a report not yet published

    # --- paho's thread: hand over and return --------------------------------------------
    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        self.events.put(("connect", reason_code))

    def _on_connect_fail(self, client, userdata) -> None:
        self.events.put(("connect_fail", None))

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self.events.put(("disconnect", reason_code))

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        self.events.put(("puback", (mid, reason_code)))

    # --- the sampler's thread ---------------------------------------------------------------
    def notify(self) -> None:
        """Something new was sealed into the store."""
        self.events.put(("sealed", None))

    def post_health(self, part: dict) -> None:
        """Time for a health message; ``part`` is the sampler's share of it."""
        self.events.put(("health", part))

    def stop(self, drain_timeout: float = 5.0) -> None:
        """Finish: wait up to drain_timeout for in-flight and queued batches, then disconnect."""
        self._drain_deadline = time.monotonic() + drain_timeout
        self._stop_requested.set()
        self.events.put(("stop", None))

    # --- the uplink's own thread ---------------------------------------------------------------
    def _status_payload(self, state: str) -> bytes:
        return json.dumps({"node": self.cfg.node_id, "state": state, "version": __version__,
                           "core": dsp.IMPLEMENTATION}, separators=(",", ":")).encode()

    def run(self) -> None:
        m = self.cfg.mqtt
        client = make_client(self.cfg, m.client_id or f"edge-agent-{self.cfg.node_id}")
        client.max_inflight_messages_set(m.inflight)
        client.will_set(self.status_topic, self._status_payload("offline"), qos=1, retain=True)
        client.reconnect_delay_set(1, 60)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        store = BatchStore(self.store_path)
        props = None
        if m.protocol == "5":
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = 0
        log.info("event=uplink_start broker=%s protocol=%s inflight=%d", m.broker.url, m.protocol, m.inflight)
        client.connect_async(m.broker.host, m.broker.port, keepalive=int(m.keepalive),
                             clean_start=True, properties=props)
        client.loop_start()
        # First "offline" line 2 s after start if the broker is not there; then every 30 s.
        last_offline_log = time.monotonic() - OFFLINE_LOG_INTERVAL + 2.0
        try:
            while True:
                self.last_tick = time.monotonic()
                try:
                    kind, arg = self.events.get(timeout=0.5)
                    self._handle(client, store, kind, arg)
                    while True:  # drain everything already queued before publishing more
                        kind, arg = self.events.get_nowait()
                        self._handle(client, store, kind, arg)
                except queue.Empty:
                    pass
                if self.connected:
                    self._fill_window(client, store)
                elif time.monotonic() - last_offline_log >= OFFLINE_LOG_INTERVAL:
                    last_offline_log = time.monotonic()
                    n, size = store.depth()
                    log.warning("event=uplink_offline broker=%s backlog_batches=%d backlog_bytes=%d",
                                m.broker.url, n, size)
                if self._stop_requested.is_set():
                    held = time.monotonic() - self.started < self.cfg.clock_hold
                    drained = not self.inflight and (
                        not self.connected or not store.oldest(1, self.hold, hold_unsynced=held))
                    if drained or time.monotonic() >= (self._drain_deadline or 0):
                        break
        finally:
            if self.connected:
                info = client.publish(self.status_topic, self._status_payload("offline"), qos=1, retain=True)
                try:
                    info.wait_for_publish(timeout=2.0)
                except (RuntimeError, ValueError):
                    pass
            client.disconnect()
            client.loop_stop()
            n, _ = store.depth()
            store.close()
            log.info("event=uplink_stop delivered=%d pending=%d", self.delivered, n)

    def _handle(self, client: mqtt.Client, store: BatchStore, kind: str, arg) -> None:
        if kind == "connect":
            if arg.is_failure:
                log.warning("event=uplink_refused broker=%s reason=%r", self.cfg.mqtt.broker.url, str(arg))
                return
            self.connected = True
            log.info("event=uplink_connected broker=%s", self.cfg.mqtt.broker.url)
            client.publish(self.status_topic, self._status_payload("online"), qos=1, retain=True)
            if self._pending_health is not None:
                self._publish_health(client, store, self._pending_health)
        elif kind == "health":
            if self.connected:
                self._publish_health(client, store, arg)
            else:
                self._pending_health = arg  # the newest waits for the link; older ones are stale
        elif kind == "disconnect":
            if self.connected:
                self.reconnects += 1
                log.warning("event=uplink_disconnected broker=%s reason=%r inflight=%d",
                            self.cfg.mqtt.broker.url, str(arg), len(self.inflight))
            self.connected = False
        elif kind == "connect_fail":
            log.debug("event=uplink_connect_failed broker=%s", self.cfg.mqtt.broker.url)
        elif kind == "puback":
            mid, reason = arg
            row_id = self.inflight.pop(mid, None)
            if row_id is None:
                return  # the birth/offline status message, or an ack we already handled
            if reason.is_failure:
                self.failed_acks += 1
                self.hold[row_id] = time.monotonic() + FAILED_RETRY_DELAY
                log.warning("event=puback_failed row=%d reason=%r retry_in=%ds", row_id, str(reason),
                            FAILED_RETRY_DELAY)
            else:
                store.delete(row_id)
                self.delivered += 1

    def _publish_health(self, client: mqtt.Client, store: BatchStore, part: dict) -> None:
        uplink = {"state": "connected" if self.connected else "disconnected",
                  "broker": self.cfg.mqtt.broker.url, "reconnects": self.reconnects,
                  "delivered": self.delivered, "failed_acks": self.failed_acks,
                  "inflight": len(self.inflight)}
        report = self.health.build(sampler=part, uplink=uplink, store=store)
        client.publish(self.health_topic, json.dumps(report, separators=(",", ":")).encode(), qos=1)
        self._pending_health = None

    def _fill_window(self, client: mqtt.Client, store: BatchStore) -> None:
        room = self.cfg.mqtt.inflight - len(self.inflight)
        if room <= 0:
            return
        now = time.monotonic()
        for row_id, until in list(self.hold.items()):
            if until <= now:
                del self.hold[row_id]
        busy = set(self.inflight.values()) | set(self.hold)
        # Batches stamped on an unsynchronised clock wait a while for the sync that restamps them.
        hold_unsynced = now - self.started < self.cfg.clock_hold
        for batch in store.oldest(room, busy, hold_unsynced=hold_unsynced):
            topic = wire.data_topic(self.cfg.mqtt.topic_prefix, self.cfg.node_id, batch.stream)
            info = client.publish(topic, batch.payload, qos=1)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                return  # not connected after all: try again on the next event
            self.inflight[info.mid] = batch.id
