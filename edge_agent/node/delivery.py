"""The uplink's in-flight window and acknowledgements: which stored batches are on the
wire, which were acknowledged, and their deletion from the store.

Everything here runs on the uplink's thread (paho's ``on_publish`` included, inside the
uplink's network turn), except the deletes: they run on a second thread with its own
store connection (``Deleter``), because SQLite does its work without the GIL.

A batch leaves the store only on a PUBACK whose reason code is not a failure. At most
``mqtt.inflight`` batches are unacknowledged on the wire, and up to four times as many
more wait in paho's queue behind them, so a PUBACK is followed by the next publish at
once; the store stays the queue. The store is read a window's worth of rows at a time;
acknowledged rows go to the deleter ten times a second while batches are in flight,
so it takes the GIL from the uplink's thread that often, not every turn.

Live first: batches sealed after the link came up go out as they are sealed; the
backlog from before drains behind them, oldest first, at most ``mqtt.backlog_rate``
batches per second, flagged ``historical``.
"""

from __future__ import annotations

import logging
import queue
import random
import sqlite3
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode

from edge_agent import wire
from edge_agent.config import AgentConfig
from edge_agent.node import store_alarm
from edge_agent.node.store import BatchStore, StoredBatch

log = logging.getLogger("edge_agent.uplink")

FAILED_RETRY_DELAY = 5.0  # s before a batch whose PUBACK failed is offered again
RESCAN_INTERVAL = 5.0  # s between reads of the whole queue for rows passed over
DELETE_EVERY = 0.1  # s acknowledgements gather while batches are in flight
UNSENDABLE_HOLD = 3600  # s before a batch paho refuses to publish (its topic) is tried again
NO_SUBSCRIBERS = 0x10  # MQTT 5's PUBACK "no matching subscribers": accepted, handed to nobody
PROBE_FIRST, PROBE_MOST = 5.0, 60.0  # s between single batches sent while nobody subscribes


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


class Deleter(threading.Thread):
    """Deletes acknowledged rows on its own store connection.

    SQLite does its work without holding the GIL, so the deletes (most of the store's
    cost per batch) run beside the network thread instead of between its publishes.
    Requests are lists of row ids; each completed list comes back on ``done``. A delete
    that fails (a full disk: the WAL cannot grow) is retried every second; its rows stay
    "deleting", so they are not sent again meanwhile. Damage it meets is told to the agent
    (store_alarm), which stops the uplink, this thread with it, and recovers the file.
    """

    RETRY = 1.0
    STOP = 3.0  # s at a stop for its last transaction (rows it leaves are sent again)

    def __init__(self, store_path: str) -> None:
        super().__init__(name="uplink-delete", daemon=True)
        self.store_path = store_path
        self.requests: queue.SimpleQueue[list[int] | None] = queue.SimpleQueue()
        self.done: queue.SimpleQueue[list[int]] = queue.SimpleQueue()

    def run(self) -> None:
        try:
            store = BatchStore(self.store_path)
            store.relax_durability()
        except (sqlite3.DatabaseError, UnicodeDecodeError) as exc:
            # Nothing to delete with: the rows stay, sent again (deduplicated) after the recovery.
            if not store_alarm.met(self.store_path, "uplink-delete", exc):
                log.error("event=delete_failed rows=0 error=%r: the deleter cannot open the queue", str(exc))
            return
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
                except (sqlite3.DatabaseError, UnicodeDecodeError) as exc:
                    # A full disk (the WAL cannot grow), or damage: told to the agent, which
                    # stops the uplink and recovers the file (store_alarm); retried meanwhile.
                    if not store_alarm.met(self.store_path, "uplink-delete", exc):
                        log.error(
                            "event=delete_failed rows=%d error=%r retry_in=%gs",
                            len(pending),
                            str(exc),
                            self.RETRY,
                        )
                    if stopping:
                        break  # delivered but not deleted: sent again next time, deduplicated
                    time.sleep(self.RETRY)
                    continue
                self.done.put(pending)
                pending = []
        finally:
            store.close()

    def finish(self, timeout: float) -> bool:
        """Stop after the rows already handed over; wait at most ``timeout`` (a transaction
        may be waiting out SQLite's busy timeout): False if it is still at work, left behind."""
        self.requests.put(None)  # wakes the wait for requests, however long it was to be
        if self.ident is not None:
            self.join(timeout=timeout)
        if not self.is_alive():
            return True
        log.warning(
            "event=deleter_stop_timeout waited=%gs reason=%r",
            timeout,
            "acknowledged batches it has not deleted yet are sent again next time",
        )
        return False


class DeliveryWindow:
    """The batches of the current connection on their way: handed to paho, acknowledged,
    being deleted, or held back for a retry; and the counters of what was delivered."""

    def __init__(
        self,
        cfg: AgentConfig,
        store_path: str,
        *,
        started: float | None = None,
        restamping: threading.Event | None = None,
    ) -> None:
        self.cfg = cfg
        self.restamping = restamping  # set while the sampler restamps this boot's batches
        self.started = time.monotonic() if started is None else started  # for mqtt's clock hold
        self.stopping = False  # set by Uplink.stop() (another thread): acks go to the deleter at once
        self.inflight: dict[int, int] = {}  # mid -> store row id, for the current connection
        self.hold: dict[int, float] = {}  # row id -> monotonic time it may be retried
        self.acked: list[int] = []  # row ids acknowledged this turn, deleted together
        self.deleting: set[int] = set()  # acknowledged, handed to the deleter, not yet gone
        self.historical_ids: set[int] = set()
        self.delivered = 0
        self.delivered_historical = 0
        self.failed_acks = 0
        # PUBACK 0x10 (mqtt.no_subscribers: hold): the broker took the batch for nobody, so it
        # stays in the store. While nobody subscribes one batch goes at a time, a probe every
        # PROBE_FIRST doubling to PROBE_MOST s; the first normal PUBACK sends the rest again.
        self.unrouted_acks = 0
        self.unrouted: set[int] = set()  # row ids held for want of a subscriber
        self.probe_at = 0.0  # monotonic; 0: the broker has a subscriber, as far as we know
        self.probe_wait = PROBE_FIRST
        self.probing = False  # a probe is on the wire
        self.backlog_bucket = TokenBucket(cfg.mqtt.backlog_rate, max(1.0, cfg.mqtt.backlog_rate))
        self.live_from_id = 0  # rows with a larger id were sealed while connected: live
        # Read cursors: the highest row id handed to paho from each part of the queue, so a
        # turn reads only new rows. A rescan every RESCAN_INTERVAL (and at each connection)
        # goes back for rows passed over: held after a failed PUBACK, or held for the clock.
        self.cursor_live = 0
        self.cursor_backlog = 0
        self.next_rescan = 0.0
        self.next_delete = 0.0
        self.deleter = Deleter(store_path)
        self._topics: dict[str, str] = {}  # stream -> data topic

    def connected(self, store: BatchStore) -> int:
        """A new connection: what was sealed up to now is the backlog. Returns its last row id."""
        self.hold.clear()
        self._routed()
        self.live_from_id = store.newest_id()
        self.next_rescan = 0.0
        return self.live_from_id

    def lost(self) -> None:
        """The connection is gone: what it had in flight is still in the store, sent again later."""
        self.inflight.clear()

    def acknowledge(self, mid: int, reason_code: ReasonCode) -> None:
        """A PUBACK (paho's on_publish): book it; the row is deleted with the others of this turn."""
        row_id = self.inflight.pop(mid, None)
        if row_id is None:
            return  # the birth/offline/health message, or an ack we already handled
        if reason_code.is_failure:
            self.failed_acks += 1
            self.hold[row_id] = time.monotonic() + FAILED_RETRY_DELAY
            log.warning(
                "event=puback_failed row=%d reason=%r retry_in=%ds",
                row_id,
                str(reason_code),
                FAILED_RETRY_DELAY,
            )
            return
        if reason_code.value == NO_SUBSCRIBERS and self.cfg.mqtt.no_subscribers == "hold":
            self._unrouted(row_id)
            return
        if self.probe_at:
            log.info("event=subscriber_back: the batches kept for want of one go again")
            self._routed()
        self.acked.append(row_id)
        self.delivered += 1
        if row_id in self.historical_ids:
            self.historical_ids.discard(row_id)
            self.delivered_historical += 1

    def _unrouted(self, row_id: int) -> None:
        self.unrouted_acks += 1
        self.hold[row_id] = float("inf")  # until a subscriber is back (or the next connection)
        self.unrouted.add(row_id)
        now = time.monotonic()
        if not self.probe_at:
            log.warning(
                "event=no_subscribers row=%d: the broker has nobody for the data; batches are "
                "kept and one is sent every %g-%gs until a subscriber is back",
                row_id,
                PROBE_FIRST,
                PROBE_MOST,
            )
            self.probe_at = now + self.probe_wait
        elif self.probing:  # the probe's answer: nobody yet; wait longer for the next
            self.probing = False
            self.probe_wait = min(PROBE_MOST, 2 * self.probe_wait)
            self.probe_at = now + self.probe_wait

    def _release_held(self) -> None:
        """The rows held for want of a subscriber may go again (read at the next rescan)."""
        for row_id in self.unrouted:
            self.hold.pop(row_id, None)
        self.unrouted.clear()
        self.next_rescan = 0.0

    def _routed(self) -> None:
        self._release_held()
        self.probe_at, self.probe_wait, self.probing = 0.0, PROBE_FIRST, False

    def hand_over_deletes(self, now: float) -> None:
        """Acknowledged rows to the deleter, and what it has finished back from it.

        While batches are in flight the acknowledgements gather for DELETE_EVERY: one
        transaction for many rows (a transaction per PUBACK would cost more than the publish
        itself), and the deleter wakes, and takes the GIL from this thread, ten times a
        second rather than at every turn. When nothing is in flight, or the uplink is
        stopping, they go at once.
        """
        if self.acked and (now >= self.next_delete or not self.inflight or self.stopping):
            self.next_delete = now + DELETE_EVERY
            self.deleting.update(self.acked)
            self.deleter.requests.put(self.acked)
            self.acked = []
        try:
            while True:
                self.deleting.difference_update(self.deleter.done.get_nowait())
        except queue.Empty:
            pass

    def _holding_unsynced(self, now: float) -> bool:
        """Batches stamped on an unsynchronised clock wait a while for the sync that restamps
        them, and once it came, until the sampler has restamped them all."""
        restamping = self.restamping is not None and self.restamping.is_set()
        return restamping or now - self.started < self.cfg.clock_hold

    def drained(self, store: BatchStore, *, connected: bool) -> bool:
        """Nothing in flight or being deleted, and (while connected) nothing left to send."""
        if self.inflight or self.deleting:
            return False
        held = self._holding_unsynced(time.monotonic())
        return not connected or not store.oldest(1, self.hold, hold_unsynced=held)

    def fill(self, client: mqtt.Client, store: BatchStore) -> None:
        """Hand paho the next batches: live ones first, then the backlog at its rate.

        paho keeps ``inflight`` unacknowledged on the wire; we hand it up to four times as
        many more queued behind them, so the link never waits on this thread between acks,
        and top that up a window's worth at a time: a read of the store per batch would
        cost more than the rest of this thread's work on it.
        """
        window = self.cfg.mqtt.inflight
        room = 5 * window - len(self.inflight)
        now = time.monotonic()
        if self.probe_at:  # nobody subscribes: one batch at a time, now and then
            if self.inflight or now < self.probe_at:
                return
            self._release_for_probe(now)
            room = 1
        elif room < window:
            return
        for row_id, until in list(self.hold.items()):
            if until <= now:
                del self.hold[row_id]
        skip: set[int]
        read_to = (self.cursor_live, self.cursor_backlog)  # what the cursors had passed
        if now >= self.next_rescan:
            self.next_rescan = now + RESCAN_INTERVAL
            self.cursor_live, self.cursor_backlog = self.live_from_id, 0
            skip = set(self.inflight.values()) | set(self.hold) | set(self.acked) | self.deleting
        else:
            skip = set(self.hold)
        try:
            self._send(client, store, room, skip, now)
        finally:
            # A rescan goes back for the rows passed over, not past the cursors' marks: the
            # rows it skipped there (in flight, being deleted) are not read again next turn.
            self.cursor_live = max(self.cursor_live, read_to[0])
            self.cursor_backlog = max(self.cursor_backlog, read_to[1])

    def _release_for_probe(self, now: float) -> None:
        """The held rows may go again, one of them as the probe; held again if it finds nobody."""
        self._release_held()
        self.probing = True
        self.probe_at = now + self.probe_wait  # if its PUBACK never comes, the next after this

    def _send(self, client: mqtt.Client, store: BatchStore, room: int, skip: set[int], now: float) -> None:
        hold_unsynced = self._holding_unsynced(now)
        live = store.oldest(room, skip, hold_unsynced=hold_unsynced, after_id=self.cursor_live)
        for batch in live:
            if not self.publish(client, batch, historical=False):
                return
            self.cursor_live = batch.id
        room -= len(live)
        if room <= 0:
            return
        for batch in store.oldest(
            room, skip, hold_unsynced=hold_unsynced, after_id=self.cursor_backlog, up_to_id=self.live_from_id
        ):
            if not self.backlog_bucket.take(now) or not self.publish(client, batch, historical=True):
                return
            self.cursor_backlog = batch.id

    def publish(self, client: mqtt.Client, batch: StoredBatch, *, historical: bool) -> bool:
        """Queue one batch with paho at QoS 1; False when the link is going down."""
        topic = self._topics.get(batch.stream)
        if topic is None:
            topic = self._topics[batch.stream] = wire.data_topic(
                self.cfg.mqtt.topic_prefix, self.cfg.node_id, batch.stream
            )
        payload = batch.payload
        try:
            if historical:
                payload = wire.mark_historical(payload)
        except (ValueError, TypeError, IndexError):  # WireFormatError is a ValueError
            # Damage the integrity check cannot see (a row's bytes): sent as a live batch's
            # would be, unread, for the backbone to refuse; it used to end this thread.
            log.error(
                "event=batch_unreadable row=%d stream=%r seq=%d sent=as_stored",
                batch.id,
                batch.stream,
                batch.seq,
            )
        try:
            info = client.publish(topic, payload, qos=1)
        except (ValueError, TypeError) as exc:  # a damaged stream name that is no topic (+, #)
            self.hold[batch.id] = time.monotonic() + UNSENDABLE_HOLD
            log.error(
                "event=batch_unsendable row=%d topic=%r error=%r retry_in=%ds",
                batch.id,
                topic,
                str(exc),
                UNSENDABLE_HOLD,
            )
            return True  # the others go on
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            return False  # the disconnect event follows
        self.inflight[info.mid] = batch.id
        if historical:
            self.historical_ids.add(batch.id)
        return True
