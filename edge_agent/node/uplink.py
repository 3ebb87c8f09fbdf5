"""The uplink: store -> MQTT (paho-mqtt 2.x, QoS 1).

One thread owns the uplink: its own store connection for reading, all
bookkeeping, and paho's network work, which it drives through paho's interface
for external event loops (``socket()``, ``loop_read()``, ``loop_write()``,
``loop_misc()``) rather than a separate paho thread. paho's callbacks therefore
run on this thread (they never block or raise); the sampler reaches it only
through a queue of small events. Deleting acknowledged rows is handed to a
second thread with its own connection: SQLite works without the GIL, so that
cost leaves the network thread's path (see ``_Deleter``).

Measured on a 2-core VM (bench/bench_drain.py): a paho network thread plus ours,
handing each PUBACK over a queue, drained a backlog at about 0.6x a bare paho
publish loop, the two threads fighting over the GIL; one thread doing it all,
0.55-0.86x. What closed the rest: paho's writes wait for the end of each turn
(``on_socket_register_write``), so the publishes a burst of PUBACKs releases
leave back to back and the kernel coalesces them, where paho alone sends each
the moment it is queued, a segment and a broker wake-up per message (A/B in one
run: median 0.79x -> 1.02x); the store is read a window's worth of rows at a
time; acknowledged rows go to the deleter ten times a second while batches are
in flight, so it takes the GIL from this thread that often, not every turn.

A batch leaves the store only on a PUBACK whose reason code is not a failure.
At most ``mqtt.inflight`` batches are unacknowledged on the wire, and up to
four times as many more wait in paho's queue behind them, so a PUBACK is
followed by the next publish at once; the store stays the queue.

Connections: brokers are tried in turn with exponential backoff and full jitter
(a city of nodes must not reconnect in the same second when the backbone comes
back). Each attempt uses a fresh paho client, so nothing of an old connection
is re-sent behind our back; what was in flight when a link dropped is sent
again from the store (the backbone deduplicates by node, stream and sequence).

Live first: batches sealed after the link came up go out as they are sealed;
the backlog from before drains behind them, oldest first, at most
``mqtt.backlog_rate`` batches per second, flagged ``historical``.
"""

from __future__ import annotations

import json
import logging
import queue
import random
import select
import sqlite3
import ssl
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge_agent import __version__, dsp, wire
from edge_agent.config import AgentConfig, BrokerConfig
from edge_agent.node.health import HealthReport
from edge_agent.node.store import BatchStore

log = logging.getLogger("edge_agent.uplink")

FAILED_RETRY_DELAY = 5.0      # s before a batch whose PUBACK failed is offered again
RESCAN_INTERVAL = 5.0         # s between reads of the whole queue for rows passed over
OFFLINE_LOG_INTERVAL = 30.0   # s between "still offline" log lines
CONNECT_TIMEOUT = 10.0        # s for TCP + TLS + CONNACK before an attempt counts as failed
DELETE_EVERY = 0.1            # s acknowledgements gather while batches are in flight
POLL = 0.05                   # s the network wait may last while nothing else happens


def read_secret(path: str) -> str:
    """A secret from a file (first line, without its newline); the value is never logged."""
    with open(path, encoding="utf-8") as f:
        return f.readline().rstrip("\r\n")


def make_client(cfg: AgentConfig, client_id: str, broker: BrokerConfig, *,
                persistent: bool = False) -> mqtt.Client:
    """A paho client set up from the config: protocol, TLS, credentials. Not yet connected."""
    m = cfg.mqtt
    protocol = mqtt.MQTTv5 if m.protocol == "5" else mqtt.MQTTv311
    kwargs = {"clean_session": not persistent} if protocol == mqtt.MQTTv311 else {}
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol, **kwargs)
    if broker.tls:
        ctx = ssl.create_default_context(cafile=m.ca_file)  # verifies the chain and the host name
        if m.cert_file:
            ctx.load_cert_chain(m.cert_file, m.key_file)
        client.tls_set_context(ctx)
    if m.username is not None:
        password = read_secret(m.password_file) if m.password_file else None
        client.username_pw_set(m.username, password)
    return client


def _write_later(client, userdata, sock) -> None:
    """paho's hook for an external loop that a write is waiting: _network() looks itself."""


class Backoff:
    """Exponential backoff with full jitter: the n-th wait is uniform in [0, min(cap, base * 2^n)]."""

    def __init__(self, base: float, cap: float, rng: random.Random | None = None) -> None:
        self.base, self.cap = base, cap
        self.attempt = 0
        self.rng = rng or random.Random()

    def next_delay(self) -> float:
        ceiling = min(self.cap, self.base * (2 ** min(self.attempt, 30)))
        self.attempt += 1
        return self.rng.uniform(0.0, ceiling)

    def reset(self) -> None:
        self.attempt = 0


class TokenBucket:
    """At most ``rate`` per second on average, bursts up to ``burst``, on the monotonic clock."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst = rate, burst
        self.tokens = burst
        self.at = time.monotonic()

    def take(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class _Deleter(threading.Thread):
    """Deletes acknowledged rows on its own store connection.

    SQLite does its work without holding the GIL, so the deletes (most of the store's
    cost per batch) run beside the network thread instead of between its publishes.
    Requests are lists of row ids; each completed list comes back on ``done``. A delete
    that fails (a full disk: the WAL cannot grow) is retried every second; its rows stay
    "deleting", so they are not sent again meanwhile.
    """

    RETRY = 1.0

    def __init__(self, store_path: str) -> None:
        super().__init__(name="uplink-delete", daemon=True)
        self.store_path = store_path
        self.requests: queue.SimpleQueue = queue.SimpleQueue()
        self.done: queue.SimpleQueue = queue.SimpleQueue()

    def run(self) -> None:
        store = BatchStore(self.store_path)
        store.relax_durability()
        pending: list[int] = []
        stopping = False
        try:
            while not stopping or pending:
                try:
                    ids = self.requests.get(timeout=self.RETRY if pending else None)
                    while True:  # everything queued meanwhile, in one transaction
                        if ids is None:
                            stopping = True
                        else:
                            pending.extend(ids)
                        ids = self.requests.get_nowait()
                except queue.Empty:
                    pass
                if not pending:
                    continue
                try:
                    store.delete_many(pending)
                except sqlite3.OperationalError as exc:
                    log.error("event=delete_failed rows=%d error=%r retry_in=%gs", len(pending), str(exc),
                              self.RETRY)
                    if stopping:
                        break  # delivered but not deleted: sent again next time, deduplicated
                    time.sleep(self.RETRY)
                    continue
                self.done.put(pending)
                pending = []
        finally:
            store.close()


class Uplink(threading.Thread):
    """Publishes stored batches; deletes each on a successful PUBACK."""

    def __init__(self, cfg: AgentConfig, store_path: str, *, rng: random.Random | None = None) -> None:
        super().__init__(name="uplink", daemon=True)
        self.cfg = cfg
        self.store_path = store_path
        self.events: queue.SimpleQueue = queue.SimpleQueue()
        self._stop_requested = threading.Event()
        self.connected = False
        self.inflight: dict[int, int] = {}     # mid -> store row id, for the current connection
        self.hold: dict[int, float] = {}       # row id -> monotonic time it may be retried
        self.delivered = 0
        self.delivered_historical = 0
        self.failed_acks = 0
        self.reconnects = 0
        self.connect_failures = 0
        self._drain_deadline: float | None = None
        self.last_tick = time.monotonic()  # the loop's last turn, for the watchdog
        self.started = time.monotonic()
        self.status_topic = wire.status_topic(cfg.mqtt.topic_prefix, cfg.node_id)
        self.health_topic = wire.health_topic(cfg.mqtt.topic_prefix, cfg.node_id)
        self.health = HealthReport(cfg)
        self._pending_health: dict | None = None  # the sampler's part of a report not yet published
        self.backoff = Backoff(cfg.mqtt.reconnect_min, cfg.mqtt.reconnect_max, rng)
        self.backlog_bucket = TokenBucket(cfg.mqtt.backlog_rate, max(1.0, cfg.mqtt.backlog_rate))
        self.broker_index = 0
        self.client: mqtt.Client | None = None
        self.generation = 0                # which client the events belong to
        self.attempt_started: float | None = None
        self.next_attempt = 0.0
        self.live_from_id = 0              # rows with a larger id were sealed while connected: live
        # Read cursors: the highest row id handed to paho from each part of the queue, so a
        # turn reads only new rows. A rescan every RESCAN_INTERVAL (and at each connection)
        # goes back for rows passed over: held after a failed PUBACK, or held for the clock.
        self.cursor_live = 0
        self.cursor_backlog = 0
        self.next_rescan = 0.0
        self.historical_ids: set[int] = set()
        self._acked: list[int] = []        # row ids acknowledged this turn, deleted together
        self._next_delete = 0.0
        self.deleting: set[int] = set()    # acknowledged, handed to the deleter, not yet gone
        self.deleter = _Deleter(store_path)
        self._topics: dict[str, str] = {}  # stream -> data topic

    @property
    def broker(self) -> BrokerConfig:
        return self.cfg.mqtt.brokers[self.broker_index]

    # --- paho's callbacks: they run inside _network(), on the uplink's own thread ---------------
    def _on_connect(self, client, gen, flags, reason_code, properties) -> None:
        self.events.put(("connect", gen, reason_code))

    def _on_connect_fail(self, client, gen) -> None:
        self.events.put(("connect_fail", gen, None))

    def _on_disconnect(self, client, gen, flags, reason_code, properties) -> None:
        self.events.put(("disconnect", gen, reason_code))

    def _on_publish(self, client, gen, mid, reason_code, properties) -> None:
        # Runs inside _network() on the uplink thread: book the ack directly (no queue);
        # the row is deleted with the others of this turn.
        if gen != self.generation:
            return
        row_id = self.inflight.pop(mid, None)
        if row_id is None:
            return  # the birth/offline/health message, or an ack we already handled
        if reason_code.is_failure:
            self.failed_acks += 1
            self.hold[row_id] = time.monotonic() + FAILED_RETRY_DELAY
            log.warning("event=puback_failed row=%d reason=%r retry_in=%ds", row_id, str(reason_code),
                        FAILED_RETRY_DELAY)
            return
        self._acked.append(row_id)
        self.delivered += 1
        if row_id in self.historical_ids:
            self.historical_ids.discard(row_id)
            self.delivered_historical += 1

    # --- other threads ---------------------------------------------------------------------
    def notify(self) -> None:
        """Something new was sealed into the store."""
        self.events.put(("sealed", None, None))

    def post_health(self, part: dict) -> None:
        """Time for a health message; ``part`` is the sampler's share of it."""
        self.events.put(("health", None, part))

    def stop(self, drain_timeout: float = 5.0) -> None:
        """Finish: wait up to drain_timeout for in-flight and queued batches, then disconnect."""
        self._drain_deadline = time.monotonic() + drain_timeout
        self._stop_requested.set()
        self.events.put(("stop", None, None))

    # --- the uplink's own thread ---------------------------------------------------------------
    def _status_payload(self, state: str) -> bytes:
        return json.dumps({"node": self.cfg.node_id, "state": state, "version": __version__,
                           "core": dsp.IMPLEMENTATION}, separators=(",", ":")).encode()

    def _start_attempt(self, now: float) -> None:
        m = self.cfg.mqtt
        self.generation += 1
        broker = self.broker
        persistent = m.session_expiry > 0
        try:
            client = make_client(self.cfg, m.client_id or f"edge-agent-{self.cfg.node_id}", broker,
                                 persistent=persistent)
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
        # Writes wait for _network(): without this, paho sends each packet the moment it is
        # queued, from inside publish() and from each PUBACK it reads (see _network).
        client.on_socket_register_write = _write_later
        props = None
        if m.protocol == "5":
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = int(m.session_expiry)
        kwargs = {"clean_start": not persistent, "properties": props} if m.protocol == "5" else {}
        # Connect here rather than in paho's thread: a failure (refused, unreachable, TLS
        # verification) then comes back as an exception whose message we can log.
        try:
            client.connect(broker.host, broker.port, keepalive=int(m.keepalive), **kwargs)
        except (OSError, ssl.SSLError, ValueError) as exc:
            self.connect_failures += 1
            log.warning("event=uplink_connect_failed broker=%s error=%r", broker.url, str(exc))
            self.client = client
            self._schedule_retry(now)
            return
        self.client = client
        self.attempt_started = now
        log.debug("event=uplink_connecting broker=%s attempt=%d", broker.url, self.backoff.attempt)

    def _network(self, timeout: float) -> int:
        """One turn of paho's network work, waiting at most ``timeout`` for the socket.

        What ``client.loop()`` does, through the interface paho documents for external
        loops, so paho never sets up the socket pair it uses to wake a network thread:
        that would cost a send() per publish, on this thread, for nothing.
        """
        client = self.client
        sock = client.socket()
        if sock is None:
            return mqtt.MQTT_ERR_NO_CONN
        pending = getattr(sock, "pending", None)  # TLS: bytes already decrypted wait in the socket
        if pending is not None and pending() > 0:
            readable, writable = True, client.want_write()
        else:
            try:
                r, w, _ = select.select([sock], [sock] if client.want_write() else [], [], timeout)
                readable, writable = bool(r), bool(w)
            except (OSError, ValueError):  # closed under us: the read reports the lost link
                readable, writable = True, False
        if readable:
            rc = client.loop_read()
            if rc or client.socket() is None:
                return rc
        if writable or client.want_write():
            rc = client.loop_write()
            if rc or client.socket() is None:
                return rc
        return client.loop_misc()

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
        self.inflight.clear()  # unacknowledged batches are still in the store: sent again later
        if len(self.cfg.mqtt.brokers) > 1:
            self.broker_index = (self.broker_index + 1) % len(self.cfg.mqtt.brokers)
        delay = self.backoff.next_delay()
        self.next_attempt = now + delay
        log.debug("event=uplink_retry broker=%s in=%.1fs", self.broker.url, delay)

    def run(self) -> None:
        m = self.cfg.mqtt
        store = BatchStore(self.store_path)
        self.deleter.start()
        log.info("event=uplink_start brokers=%s protocol=%s inflight=%d session_expiry=%gs",
                 ",".join(b.url for b in m.brokers), m.protocol, m.inflight, m.session_expiry)
        # First "offline" line 2 s after start if no broker answers; then every 30 s.
        last_offline_log = time.monotonic() - OFFLINE_LOG_INTERVAL + 2.0
        try:
            while True:
                now = self.last_tick = time.monotonic()
                if self.client is None and not self._stop_requested.is_set() and now >= self.next_attempt:
                    self._start_attempt(now)
                elif (not self.connected and self.attempt_started is not None
                      and now - self.attempt_started > CONNECT_TIMEOUT + 2.0):
                    self.connect_failures += 1
                    self._schedule_retry(now)
                if self.client is not None:
                    # paho's network work happens here, on this thread: its callbacks queue
                    # their events, which are handled right below. The select() inside is
                    # also this loop's sleep; POLL bounds how late a new batch waits.
                    self._network(0.0 if self.events.qsize() else POLL)
                try:
                    if self.client is None:
                        self._handle(store, *self.events.get(
                            timeout=max(0.05, min(0.5, self.next_attempt - now))))
                    while True:  # everything already queued before publishing more
                        self._handle(store, *self.events.get_nowait())
                except queue.Empty:
                    pass
                self._hand_over_deletes(now)
                if self.connected:
                    self._fill_window(store)
                elif time.monotonic() - last_offline_log >= OFFLINE_LOG_INTERVAL:
                    last_offline_log = time.monotonic()
                    n, size = store.depth()
                    log.warning("event=uplink_offline broker=%s backlog_batches=%d backlog_bytes=%d "
                                "failed_attempts=%d", self.broker.url, n, size, self.connect_failures)
                if self._stop_requested.is_set():
                    held = time.monotonic() - self.started < self.cfg.clock_hold
                    drained = not self.inflight and not self.deleting and (
                        not self.connected or not store.oldest(1, self.hold, hold_unsynced=held))
                    if drained or time.monotonic() >= (self._drain_deadline or 0):
                        break
        finally:
            if self.connected and self.client is not None:
                info = self.client.publish(self.status_topic, self._status_payload("offline"), qos=1,
                                           retain=True)
                deadline = time.monotonic() + 2.0
                while not info.is_published() and time.monotonic() < deadline:
                    if self._network(0.1) != mqtt.MQTT_ERR_SUCCESS:
                        break
            self._drop_client()
            self.deleter.requests.put(None)
            self.deleter.join()
            n, _ = store.depth()
            store.close()
            log.info("event=uplink_stop delivered=%d historical=%d pending=%d", self.delivered,
                     self.delivered_historical, n)

    def _hand_over_deletes(self, now: float) -> None:
        """Acknowledged rows to the deleter, and what it has finished back from it.

        While batches are in flight the acknowledgements gather for DELETE_EVERY: one
        transaction for many rows (a transaction per PUBACK would cost more than the publish
        itself), and the deleter wakes, and takes the GIL from this thread, ten times a
        second rather than at every turn. When nothing is in flight they go at once.
        """
        if self._acked and (now >= self._next_delete or not self.inflight or self._stop_requested.is_set()):
            self._next_delete = now + DELETE_EVERY
            self.deleting.update(self._acked)
            self.deleter.requests.put(self._acked)
            self._acked = []
        try:
            while True:
                self.deleting.difference_update(self.deleter.done.get_nowait())
        except queue.Empty:
            pass

    def _handle(self, store: BatchStore, kind: str, gen: int | None, arg) -> None:
        if gen is not None and gen != self.generation:
            return  # from a client we already dropped
        now = time.monotonic()
        if kind == "connect":
            if arg.is_failure:
                self.connect_failures += 1
                log.warning("event=uplink_refused broker=%s reason=%r", self.broker.url, str(arg))
                self._schedule_retry(now)
                return
            self.connected = True
            self.attempt_started = None
            self.backoff.reset()
            self.hold.clear()
            self.live_from_id = store.newest_id()
            self.next_rescan = 0.0
            log.info("event=uplink_connected broker=%s backlog_from_id=%d", self.broker.url, self.live_from_id)
            self.client.publish(self.status_topic, self._status_payload("online"), qos=1, retain=True)
            if self._pending_health is not None:
                self._publish_health(store, self._pending_health)
        elif kind == "health":
            if self.connected:
                self._publish_health(store, arg)
            else:
                self._pending_health = arg  # the newest waits for the link; older ones are stale
        elif kind in ("disconnect", "connect_fail"):
            if self.connected:
                self.reconnects += 1
                log.warning("event=uplink_disconnected broker=%s reason=%r inflight=%d",
                            self.broker.url, str(arg), len(self.inflight))
                self.backoff.reset()
            else:
                self.connect_failures += 1
                log.debug("event=uplink_connect_failed broker=%s", self.broker.url)
            self.connected = False
            self._schedule_retry(now)

    def _publish_health(self, store: BatchStore, part: dict) -> None:
        uplink = {"state": "connected" if self.connected else "disconnected",
                  "broker": self.broker.url, "reconnects": self.reconnects,
                  "connect_failures": self.connect_failures, "delivered": self.delivered,
                  "delivered_historical": self.delivered_historical, "failed_acks": self.failed_acks,
                  "inflight": len(self.inflight)}
        report = self.health.build(sampler=part, uplink=uplink, store=store)
        self.client.publish(self.health_topic, json.dumps(report, separators=(",", ":")).encode(), qos=1)
        self._pending_health = None

    def _fill_window(self, store: BatchStore) -> None:
        # paho keeps `inflight` unacknowledged on the wire; we hand it up to four times as
        # many more queued behind them, so the link never waits on this thread between acks,
        # and top that up a window's worth at a time: a read of the store per batch would
        # cost more than the rest of this thread's work on it.
        window = self.cfg.mqtt.inflight
        room = 5 * window - len(self.inflight)
        if room < window:
            return
        now = time.monotonic()
        for row_id, until in list(self.hold.items()):
            if until <= now:
                del self.hold[row_id]
        if now >= self.next_rescan:
            self.next_rescan = now + RESCAN_INTERVAL
            self.cursor_live, self.cursor_backlog = self.live_from_id, 0
            skip = set(self.inflight.values()) | set(self.hold) | set(self._acked) | self.deleting
        else:
            skip = set(self.hold)
        # Batches stamped on an unsynchronised clock wait a while for the sync that restamps them.
        hold_unsynced = now - self.started < self.cfg.clock_hold
        live = store.oldest(room, skip, hold_unsynced=hold_unsynced, after_id=self.cursor_live)
        for batch in live:
            if not self._publish(batch, historical=False):
                return
            self.cursor_live = batch.id
        room -= len(live)
        if room <= 0:
            return
        for batch in store.oldest(room, skip, hold_unsynced=hold_unsynced, after_id=self.cursor_backlog,
                                  up_to_id=self.live_from_id):
            if not self.backlog_bucket.take(now) or not self._publish(batch, historical=True):
                return
            self.cursor_backlog = batch.id

    def _publish(self, batch, *, historical: bool) -> bool:
        topic = self._topics.get(batch.stream)
        if topic is None:
            topic = self._topics[batch.stream] = wire.data_topic(self.cfg.mqtt.topic_prefix, self.cfg.node_id,
                                                                 batch.stream)
        payload = wire.mark_historical(batch.payload) if historical else batch.payload
        info = self.client.publish(topic, payload, qos=1)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            return False  # the link is going down: the disconnect event follows
        self.inflight[info.mid] = batch.id
        if historical:
            self.historical_ids.add(batch.id)
        return True
