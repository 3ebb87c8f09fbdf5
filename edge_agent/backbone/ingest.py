"""The ingest worker: an MQTT 5 shared subscription (or, on a broker without one, a plain
subscription over MQTT 3.1.1) into PostgreSQL, acknowledged after commit.

Any number of workers share one subscription group (``$share/GROUP/PREFIX/+/data/+``, and
the status and health topics): the broker hands each message to one of them. Each worker
slot has a persistent session under a stable client id (``ingest-GROUP-SLOT``, kept by the
broker for ``session_expiry`` after a disconnect), so a slot that restarts takes back what
was handed to it and not yet acknowledged; a slot that never comes back strands it until the
session expires (run every slot again, or the same number of them).
MQTT 3.1.1 (a broker without MQTT 5, such as NATS) keeps the session (``clean_session``
false) and the acknowledgements after commit; its subscription is a plain one by default (no
shared subscriptions before MQTT 5): one worker a group, one group per prefix (docs/backbone.md).

Acknowledgements are manual (paho's ``manual_ack``): a message's PUBACK is sent only after
the transaction holding its rows (or its dead letter) is committed. A worker killed at any
moment therefore loses nothing (the broker sends the unacknowledged messages again) and
stores nothing twice (the dedupe key counts the second copy). Messages are gathered into
groups, one transaction each: up to ``max_messages``, or ``max_wait`` after the group's first,
or as soon as none has come for ``idle`` (the broker holds at most its
``max_inflight_messages`` unacknowledged per client, 20 by default: a group never grows past
that). While the database is down nothing is acknowledged; the group is written again after
a reconnection with backoff, and the broker keeps the rest.

An acknowledgement goes only over the connection its message came on: after a reconnection
the broker sends the unacknowledged messages again under the same packet ids, and a PUBACK
of the old connection's id could acknowledge another message.

Threads: paho's network loop (``loop_start``) decodes each message as it comes
(backbone/messages.py) and puts its record on a queue; the worker's own thread gathers,
writes (backbone/writer.py) and acknowledges: the next group is decoded while the database
writes this one (psycopg releases the GIL while it waits).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any

import psycopg
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from psycopg.conninfo import conninfo_to_dict

from edge_agent.backbone import schema
from edge_agent.backbone.messages import DeadLetter, Message, Record, classify
from edge_agent.backbone.settings import IngestSettings
from edge_agent.backbone.writer import Counts, Writer
from edge_agent.errors import ConfigError
from edge_agent.node.mqtt import client_for_url, connect, explain
from edge_agent.node.uplink import Backoff

log = logging.getLogger("edge_agent.backbone")

# What a database that went away raises (a restart, a lost network, a deadlock's victim):
# nothing of the group was committed, and the same group is written again.
DB_DOWN = (psycopg.OperationalError, psycopg.InterfaceError)
_BAD_OPTION = "connection is bad: invalid "  # libpq's words for an option's value it will not take
PARTITION_EVERY = 6 * 3600.0  # s between ensure_sample_partitions() calls
STATEMENT_TIMEOUT_MS = 30_000
_PAHO_LOG = logging.getLogger("edge_agent.backbone.paho")
_PAHO_LOG.setLevel(logging.WARNING)


def db_label(url: str) -> str:
    """Where the database is, for logs: host, port and name, never a password."""
    try:
        info = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "(unparsable)"
    return f"{info.get('host', 'localhost')}:{info.get('port', 5432)}/{info.get('dbname', '')}"


class _PahoLines(logging.LoggerAdapter):
    """paho's lines at WARNING and above as events; below, dropped before they are formatted
    (on_log formats every one: 7 % of a worker's time at a backlog's rate)."""

    def log(self, level: int, msg: Any, *args: Any, **kwargs: Any) -> None:
        if self.isEnabledFor(level):
            self.logger.log(level, "event=mqtt_link_error error=%r", msg % args if args else msg)


class Worker:
    """One ingest worker slot; ``run()`` until ``stop()`` (or SIGTERM in the CLI)."""

    def __init__(self, settings: IngestSettings) -> None:
        self.settings = settings
        self.stopping = threading.Event()
        self.subscribed = threading.Event()  # the broker granted the subscriptions (tests wait on it)
        self.totals = Counts()
        self.acked = 0
        self.not_acked = 0  # committed but from an earlier connection: the broker sends them again
        self.redelivered = 0  # a packet id again before we acknowledged it: the same message, dropped
        self._unacked: set[tuple[int, int]] = set()  # (generation, mid) received, not yet acknowledged
        self._inbox: queue.Queue[Record] = queue.Queue()
        self._lock = threading.Lock()
        self._generation = 0
        self._db_backoff = Backoff(0.5, 30.0)
        self._writer: Writer | None = None
        self._client: Any = None
        self._partitions_at = 0.0

    def stop(self) -> None:
        self.stopping.set()

    # --- the database ------------------------------------------------------------------------

    def _connect_db(self) -> Any:
        """A connection that cannot hang the worker: a statement that runs past 30 s is
        cancelled by the server, and TCP keepalives (and a user timeout on unacknowledged
        data) find a database host that went away without a word in about 20 s; either is an
        OperationalError, and the group is written again on a new connection."""
        try:
            return psycopg.connect(
                self.settings.db,
                autocommit=True,
                connect_timeout=10,
                application_name=self.settings.client_id,
                options=f"-c statement_timeout={STATEMENT_TIMEOUT_MS}",
                keepalives=1,
                keepalives_idle=10,
                keepalives_interval=3,
                keepalives_count=3,
                tcp_user_timeout=20_000,
            )
        except psycopg.OperationalError as exc:
            # libpq refuses an option's value (sslmode=foo, port 99999) before it connects:
            # no retry mends that; the value is libpq's quote of the option, never the password
            reason = str(exc).strip()
            if reason.startswith(_BAD_OPTION):
                raise ConfigError(
                    f"command line: --db: libpq does not take it: {reason.removeprefix('connection is bad: ')}"
                ) from None
            raise

    def _open_db(self) -> bool:
        """Connect (with backoff until it works or we stop), check or migrate the schema and
        make the months' partitions; False when stopped first. SchemaError passes up."""
        while not self.stopping.is_set():
            try:
                conn = self._connect_db()
                try:
                    if self.settings.migrate:
                        schema.migrate(conn)
                    version = schema.check(conn)
                    made = schema.ensure_partitions(conn)
                except BaseException:
                    conn.close()
                    raise
                self._partitions_at = time.monotonic()
                log.info(
                    "event=db_ready db=%s schema=%d partitions_made=%d",
                    db_label(self.settings.db),
                    version,
                    made,
                )
                self._writer = Writer(conn)
                self._db_backoff.reset()
                return True
            except DB_DOWN as exc:
                self._db_wait(exc)
        return False

    def _db_wait(self, exc: BaseException) -> None:
        delay = self._db_backoff.next_delay()
        log.warning(
            "event=db_unavailable db=%s error=%r retry_in=%.1fs",
            db_label(self.settings.db),
            str(exc).strip(),
            delay,
        )
        self.stopping.wait(delay)

    def _reconnect_db(self) -> bool:
        assert self._writer is not None
        self._writer.conn.close()
        while not self.stopping.is_set():
            try:
                self._writer.conn = self._connect_db()
                log.info("event=db_reconnected db=%s", db_label(self.settings.db))
                self._db_backoff.reset()
                return True
            except DB_DOWN as exc:
                self._db_wait(exc)
        return False

    def _commit(self, records: list[Record]) -> bool:
        """The group's records committed (True), or stopped while the database was down."""
        assert self._writer is not None
        pending = list(records)  # write_group takes out what it commits alone; all are acked after
        while True:
            try:
                counts = self._writer.write_group(pending)
                break
            except DB_DOWN as exc:
                self._db_wait(exc)
                if self.stopping.is_set() or not self._reconnect_db():
                    return False
        self.totals.add(counts)
        if counts.dead_letters:
            log.warning("event=dead_letters count=%d total=%d", counts.dead_letters, self.totals.dead_letters)
        return True

    def _upkeep(self) -> None:
        if time.monotonic() - self._partitions_at < PARTITION_EVERY:
            return
        assert self._writer is not None
        try:
            made = schema.ensure_partitions(self._writer.conn)
            self._partitions_at = time.monotonic()
            if made:
                log.info("event=partitions_made count=%d", made)
        except DB_DOWN as exc:
            log.warning("event=partitions_failed error=%r", str(exc).strip())  # tried again at the next group

    # --- MQTT --------------------------------------------------------------------------------

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        with self._lock:
            self._generation += 1
            self._unacked.clear()
        if reason_code.is_failure:
            log.error("event=mqtt_refused broker=%s reason=%s", self.settings.broker, reason_code)
            return
        log.info(
            "event=mqtt_connected broker=%s client_id=%s session_present=%s",
            self.settings.broker,
            self.settings.client_id,
            bool(getattr(flags, "session_present", False)),
        )
        client.subscribe([(t, 1) for t in self.settings.topics])

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        refused = [str(rc) for rc in reason_codes if rc.is_failure]
        if refused:
            log.error("event=subscribe_refused topics=%s reasons=%s", self.settings.topics, refused)
            return
        log.info("event=subscribed topics=%s", ",".join(self.settings.topics))
        self.subscribed.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        with self._lock:
            self._generation += 1
        self.subscribed.clear()
        if not self.stopping.is_set():
            log.warning("event=mqtt_disconnected broker=%s reason=%s", self.settings.broker, reason_code)

    def _on_message(self, client, userdata, msg) -> None:
        """The same packet id again before its PUBACK is a redelivery (NATS's, after its
        ``ack_wait``): dropped, so a second PUBACK cannot acknowledge a message reusing the id."""
        with self._lock:
            generation = self._generation
            if msg.qos:
                key = (generation, msg.mid)
                if key in self._unacked:
                    self.redelivered += 1
                    return
                self._unacked.add(key)
        try:
            topic = msg.topic
        except UnicodeDecodeError as exc:  # not UTF-8: a broker that let it through; a dead letter
            topic = exc.object.decode("utf-8", "backslashreplace")
        message = Message(topic, msg.payload, time.time(), msg.mid, msg.qos, generation)
        try:
            record: Record = classify(message, self.settings.prefix)
        except Exception as exc:  # a bug: raised here, it would end paho's thread and the receiving
            log.exception("event=classify_failed topic=%r", topic)
            record = DeadLetter(message, f"could not be classified: {type(exc).__name__}: {exc}")
        self._inbox.put(record)

    def _connect_mqtt(self) -> bool:
        client, broker = client_for_url(self.settings.broker, self.settings.client_settings())
        client.manual_ack_set(True)
        client.on_log = None  # paho formats each line it hands on_log, two a message
        client.enable_logger(_PahoLines(_PAHO_LOG))  # type: ignore[arg-type]  # paho calls only .log()
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        backoff = Backoff(0.5, 30.0)
        while not self.stopping.is_set():
            try:
                self._connect(client, broker)
                self._client = client
                client.loop_start()
                return True
            except OSError as exc:
                what, hint = explain(exc, broker)
                delay = backoff.next_delay()
                log.warning(
                    "event=mqtt_connect_failed broker=%s error=%r hint=%r retry_in=%.1fs",
                    broker.url,
                    what,
                    hint,
                    delay,
                )
                self.stopping.wait(delay)
        return False

    def _connect(self, client: Any, broker: Any) -> None:
        """CONNECT with the slot's session and, MQTT 5, a Receive Maximum of two groups: the
        broker keeps no more than that unacknowledged in flight to this worker (and no more
        than its own ``max_inflight_messages``), whatever the backlog."""
        settings = self.settings.client_settings()
        if settings.protocol != "5":
            connect(client, broker, settings)
            return
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = int(settings.session_expiry)
        props.ReceiveMaximum = self.settings.receive_maximum
        client.connect(
            broker.host, broker.port, keepalive=int(settings.keepalive), clean_start=False, properties=props
        )

    def _ack(self, records: list[Record]) -> None:
        with self._lock:
            current = self._generation
            for m in (r.msg for r in records):
                if m.qos == 0:
                    continue
                self._unacked.discard((m.generation, m.mid))
                if m.generation == current:
                    self._client.ack(m.mid, m.qos)
                    self.acked += 1
                else:
                    self.not_acked += 1

    # --- the loop ----------------------------------------------------------------------------

    def _gather(self) -> list[Record]:
        try:
            first = self._inbox.get(timeout=0.5)
        except queue.Empty:
            return []
        group = [first]
        s = self.settings
        deadline = time.monotonic() + s.max_wait
        while len(group) < s.max_messages:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                group.append(self._inbox.get(timeout=min(left, s.idle)))
            except queue.Empty:
                break
        return group

    def run(self) -> int:
        """Ingest until stopped; 0. SchemaError when the database is not this code's."""
        log.info(
            "event=ingest_start client_id=%s broker=%s db=%s topics=%s",
            self.settings.client_id,
            self.settings.broker,
            db_label(self.settings.db),
            ",".join(self.settings.topics),
        )
        if not self._open_db() or not self._connect_mqtt():
            return 0
        reported = time.monotonic()
        try:
            while not self.stopping.is_set():
                group = self._gather()
                if group:
                    if not self._commit(group):
                        break
                    self._ack(group)
                self._upkeep()
                if time.monotonic() - reported >= 10.0:
                    reported = time.monotonic()
                    self._report()
        finally:
            self._close()
        return 0

    def _report(self) -> None:
        t = self.totals
        log.info(
            "event=ingest_stats batches=%d duplicates=%d samples=%d status=%d health=%d dead_letters=%d acked=%d"
            " redelivered=%d",
            t.batches,
            t.duplicates,
            t.samples,
            t.status,
            t.health,
            t.dead_letters,
            self.acked,
            self.redelivered,
        )

    def _close(self) -> None:
        self._report()
        if self._client is not None:
            self._client.disconnect()  # after the PUBACKs queued before it
            self._client.loop_stop()
        if self._writer is not None:
            self._writer.conn.close()
        log.info(
            "event=ingest_stop client_id=%s unacknowledged=%d", self.settings.client_id, self._inbox.qsize()
        )
