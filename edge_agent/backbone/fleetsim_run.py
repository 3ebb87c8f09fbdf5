"""The fleet simulator on the wire: thousands of paho clients driven by one selector loop per
process (paho's external-loop interface: ``loop_read``/``loop_write``/``loop_misc`` on the
sockets its ``on_socket_*`` callbacks hand over), and a few processes for a large fleet.

Each virtual node has its own MQTT connection (its client id, a retained birth ``online``, a
will ``offline``, QoS 1 with at most ``window`` messages in flight) and its own store of what
the broker has not acknowledged: a connection lost (a broker restart) puts what was in flight
back at the head of the queue, to be published again (recorded as ``resent``: the broker may
have had it, a duplicate from a lost PUBACK), and the node reconnects after its own
exponential backoff with full jitter (0.5 s to 30 s). What it seals while disconnected is
marked historical (its backlog). New connections go out at ``ramp`` per second over the whole
fleet, first ones and reconnections alike, so neither a start nor a broker's return is a
connect storm against its listen backlog.

Why not a thread per node (the first version): paho's own loop (``loop_start``) waits in
``select()``, which refuses a file descriptor above 1023, and each such client holds three
(its socket and a socket pair to wake its thread). Past about 340 nodes the loops failed
with "filedescriptor out of range", and paho reconnected them forever: 1,000 nodes never all
saw their CONNACK. Here a node costs one descriptor (epoll has no such limit; the process's
``ulimit -n`` and the broker's must exceed the nodes they hold).
"""

from __future__ import annotations

import heapq
import itertools
import multiprocessing
import os
import random
import selectors
import time
from collections import deque
from dataclasses import dataclass, replace

import paho.mqtt.client as mqtt

from edge_agent.backbone.fleetsim import Faults, Out, Record, VirtualNode
from edge_agent.node.delivery import Backoff
from edge_agent.node.mqtt import ClientSettings, client_for_url, connect

RW = selectors.EVENT_READ | selectors.EVENT_WRITE
NODES_PER_PROCESS = 2500
NO_SUBSCRIBERS = 16  # a PUBACK's "no matching subscribers": taken, and handed to nobody
UNROUTED_RETRY = 1.0  # s before a batch no subscriber took is sent again
CONNACK_TIMEOUT = 10.0  # s from CONNECT to CONNACK before the attempt counts as failed


@dataclass(frozen=True)
class FleetSettings:
    broker: str
    nodes: int
    seals: int
    prefix: str = "edge"
    first: int = 0
    seed: int = 1
    interval: float = 0.0  # real seconds between a node's seals (0: as fast as the window allows)
    window: int = 20  # QoS 1 messages in flight per node
    faults: Faults | None = None
    start_ms: int = 0  # simulated time of the first seal (0: now)
    realtime: bool = False  # stamp each seal with the wall clock (for seal-to-row latency)
    procs: int = 0  # processes (0: one per 2,500 nodes, at most the CPUs)
    ramp: float = 500.0  # new connections per second, the whole fleet
    keepalive: float = 30.0
    drain: float = 600.0  # s after the last seal for the last acknowledgement
    per_batch: int = 6  # points per channel in a batch (one every 10 s)
    first_connect: float = 60.0  # s for the first node's CONNACK: no broker there is an error


class SimNode:
    """A virtual node's link: its client (one per connection), its queue and what is in flight."""

    def __init__(self, node: VirtualNode, seals: int) -> None:
        self.node = node
        self.client: mqtt.Client | None = None
        self.state = "down"  # down, connecting, up, closing, closed
        self.since = 0.0
        self.pending: deque[Out] = deque()
        self.inflight: dict[int, Out] = {}
        self.backoff = Backoff(0.5, 30.0, random.Random(node.rng.getrandbits(64)))
        self.seals_left = seals
        self.sealed = 0
        self.held_until = 0.0  # a batch no subscriber took waits until then (as a node's does)


class FleetLoop:
    """One process's share of the fleet on one selector."""

    def __init__(self, s: FleetSettings, mqtt_opts: dict | None = None) -> None:
        self.s, self.opts = s, dict(mqtt_opts or {})
        self.record = Record()
        rng = random.Random(s.seed)
        self.nodes = [
            SimNode(
                VirtualNode(
                    f"sim-{s.first + i:05d}",
                    random.Random(rng.getrandbits(64)),
                    self.record,
                    prefix=s.prefix,
                    per_batch=s.per_batch,
                    faults=s.faults,
                ),
                s.seals,
            )
            for i in range(s.nodes)
        ]
        self.sel = selectors.DefaultSelector()
        self.timers: list[tuple[float, int, str, SimNode]] = []
        self._tie = itertools.count()
        self._slot = 0.0  # the next free moment of the connection ramp
        self.start_ms = s.start_ms or int(time.time() * 1000)
        self.refused = 0

    # --- timers ----------------------------------------------------------------------------

    def _at(self, when: float, what: str, n: SimNode) -> None:
        heapq.heappush(self.timers, (when, next(self._tie), what, n))

    def _ramped(self, when: float) -> float:
        when = max(when, self._slot)
        self._slot = when + 1.0 / self.s.ramp
        return when

    # --- one node's link -------------------------------------------------------------------

    def _connect(self, n: SimNode, now: float) -> None:
        settings = ClientSettings(client_id=n.node.node_id, keepalive=self.s.keepalive, **self.opts)
        client, broker = client_for_url(self.s.broker, settings)
        client.max_inflight_messages_set(self.s.window)
        client.max_queued_messages_set(0)
        will = n.node.status("offline")
        client.will_set(will.topic, will.payload, qos=1, retain=True)
        client.user_data_set(n)
        client.on_socket_open = self._on_open
        client.on_socket_close = self._on_close
        client.on_socket_register_write = self._on_want_write
        client.on_socket_unregister_write = self._on_no_write
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        n.client, n.state, n.since = client, "connecting", now
        try:
            connect(client, broker, settings)
        except OSError:
            self._lost(n, client, close=True)

    def _on_open(self, client, n: SimNode, sock) -> None:
        self.sel.register(sock, selectors.EVENT_READ, (n, client))

    def _on_close(self, client, n: SimNode, sock) -> None:
        try:
            self.sel.unregister(sock)
        except (KeyError, ValueError):
            pass

    def _on_want_write(self, client, n: SimNode, sock) -> None:
        self.sel.modify(sock, RW, (n, client))

    def _on_no_write(self, client, n: SimNode, sock) -> None:
        try:
            self.sel.modify(sock, selectors.EVENT_READ, (n, client))
        except (KeyError, ValueError):
            pass

    def _on_connect(self, client, n: SimNode, flags, reason_code, properties) -> None:
        if client is not n.client:
            return
        if reason_code.is_failure:
            self._lost(n, client)
            return
        n.state, n.since = "up", time.monotonic()
        n.backoff.reset()
        self.record.connects += 1
        n.pending.appendleft(n.node.status("online"))
        self._pump(n)

    def _on_disconnect(self, client, n: SimNode, flags, reason_code, properties) -> None:
        self._lost(n, client)

    def _lost(self, n: SimNode, client: mqtt.Client | None, close: bool = False) -> None:
        """The connection ``client`` is gone: what was in flight goes back to the queue's
        head, and the node tries again after its backoff (a node that was closing is done).
        ``close``: paho has not closed its socket (never from inside paho's callbacks, which
        hold the lock its close takes)."""
        if client is not n.client:
            return
        n.client = None
        if close and client is not None:
            try:
                client._sock_close()  # on_socket_close unregisters it
            except OSError:
                pass
        if n.state == "closing":
            n.state = "closed"
            return
        if n.state == "up":
            self.record.lost += 1
        again = list(n.inflight.values())
        n.inflight.clear()
        for item in again:
            if item.stream is not None:
                self.record.of(n.node.node_id, item.stream, item.epoch).resent.append(item.seq)
        n.pending.extendleft(reversed(again))
        n.state = "down"
        self._at(self._ramped(time.monotonic() + n.backoff.next_delay()), "connect", n)

    def _on_publish(self, client, n: SimNode, mid, reason_code, properties) -> None:
        item = n.inflight.pop(mid, None)
        if item is None:
            return
        if reason_code.is_failure:
            self.refused += 1  # the broker said no (not authorised): not sent again
        elif item.stream is not None:
            rec = self.record.of(n.node.node_id, item.stream, item.epoch)
            if reason_code.value == NO_SUBSCRIBERS:  # taken by nobody: kept and sent again
                rec.unrouted.append(item.seq)  # (the node does not yet: docs/backbone.md)
                n.pending.appendleft(item)
                n.held_until = time.monotonic() + UNROUTED_RETRY
                self._at(n.held_until, "pump", n)
            else:
                rec.acked.append(item.seq)
        if n.state == "closing" and item.retain and not n.inflight:
            client.disconnect()
            return
        self._pump(n)

    def _pump(self, n: SimNode) -> None:
        """Hand the node's queue to its client while its window has room; in the fast mode
        (no interval) seal the next batches when the queue runs dry."""
        client = n.client
        if client is None or n.state not in ("up", "closing") or time.monotonic() < n.held_until:
            return
        while len(n.inflight) < self.s.window:
            if not n.pending:
                if self.s.interval or not n.seals_left:
                    return
                self._seal(n, self._stamp(n))
                continue
            item = n.pending.popleft()
            info = client.publish(item.topic, item.payload, qos=1, retain=item.retain)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                n.pending.appendleft(item)
                return
            n.inflight[info.mid] = item

    def _seal(self, n: SimNode, at_ms: int) -> None:
        n.pending.extend(n.node.seal(at_ms, connected=n.state == "up"))
        n.seals_left -= 1
        n.sealed += 1
        if n.sealed % 10 == 0:
            n.pending.append(n.node.health())

    # --- the loop --------------------------------------------------------------------------

    def _done(self, n: SimNode) -> bool:
        return not n.seals_left and not n.pending and not n.inflight and n.state == "up"

    def run(self) -> Record:
        now = time.monotonic()
        self._slot = self._started = now
        for n in self.nodes:
            self._at(self._ramped(now), "connect", n)
            if self.s.interval:
                self._at(now + n.node.rng.random() * self.s.interval, "seal", n)
        last_misc, closing_since = now, None
        while True:
            timeout = 1.0 if not self.timers else max(0.0, min(1.0, self.timers[0][0] - now))
            for key, mask in self.sel.select(timeout):
                n, client = key.data
                rc = client.loop_read() if mask & selectors.EVENT_READ else mqtt.MQTT_ERR_SUCCESS
                if not rc and mask & selectors.EVENT_WRITE and n.client is client:
                    rc = client.loop_write()
                if rc:
                    self._lost(n, client)
            now = time.monotonic()
            while self.timers and self.timers[0][0] <= now:
                _, _, what, n = heapq.heappop(self.timers)
                if what == "connect" and n.state == "down":
                    self._connect(n, now)
                elif what == "pump":
                    self._pump(n)
                elif what == "seal" and n.seals_left:
                    self._seal(n, self._stamp(n))
                    self._pump(n)
                    if n.seals_left:
                        self._at(now + self.s.interval, "seal", n)
            if now - last_misc >= 1.0:
                last_misc = now
                closing_since = self._misc(now, closing_since)
                if closing_since is not None and all(n.state == "closed" for n in self.nodes):
                    break
        self.sel.close()
        if self.refused:
            raise OSError(f"fleet-sim: the broker refused {self.refused} messages")
        return self.record

    def _stamp(self, n: SimNode) -> int:
        """The seal's time: the wall clock (realtime), or the node's simulated schedule."""
        if self.s.realtime:
            return int(time.time() * 1000)
        return self.start_ms + n.sealed * n.node.period_ms * n.node.per_batch

    def _misc(self, now: float, closing_since: float | None) -> float | None:
        """Keepalives and CONNACK timeouts, once a second; the goodbye when all is acknowledged."""
        for n in self.nodes:
            client = n.client
            if client is None:
                continue
            if n.state == "connecting" and now - n.since > CONNACK_TIMEOUT:
                self._lost(n, client, close=True)
            elif client.loop_misc():
                self._lost(n, client, close=True)
        if not self.record.connects and now - self._started > self.s.first_connect:
            raise OSError(
                f"fleet-sim: no node could connect to {self.s.broker} in {self.s.first_connect:.0f} s"
            )
        if closing_since is None:
            if self._seals_over_at is None and not any(n.seals_left for n in self.nodes):
                self._seals_over_at = now
            if all(self._done(n) for n in self.nodes):
                for n in self.nodes:  # the clean stop: a retained offline, then DISCONNECT
                    n.state = "closing"
                    n.pending.append(n.node.status("offline"))
                    self._pump(n)
                return now
            over = self._seals_over_at
            if over is not None and now - over > self.s.drain:
                waiting = sum(len(n.pending) + len(n.inflight) for n in self.nodes)
                raise OSError(
                    f"fleet-sim: {waiting} messages not acknowledged {self.s.drain:.0f} s after the last seal"
                )
        elif now - closing_since > 30.0:
            for n in self.nodes:
                if n.client is not None and n.state == "closing":
                    n.client.disconnect()
                n.state = "closed"
        return closing_since

    _seals_over_at: float | None = None
    _started = 0.0


def _share(s: FleetSettings, opts: dict | None, conn) -> None:
    """A child process: its share of the fleet; the record (JSON) or the error back on ``conn``."""
    try:
        conn.send(("ok", FleetLoop(s, opts).run().to_json()))
    except Exception as exc:  # noqa: BLE001 - anything, to the parent, which raises it
        conn.send(("error", str(exc) or type(exc).__name__))
    finally:
        conn.close()


def run_fleet(s: FleetSettings, mqtt_opts: dict | None = None) -> Record:
    """Publish ``s.seals`` seals of every node; return once every PUBACK came back and every
    node said goodbye. Several processes for a large fleet, each with its own nodes."""
    procs = s.procs or min(os.cpu_count() or 1, -(-s.nodes // NODES_PER_PROCESS))
    procs = max(1, min(procs, s.nodes))
    if procs == 1:
        return FleetLoop(s, mqtt_opts).run()
    ctx = multiprocessing.get_context("spawn")
    base, extra = divmod(s.nodes, procs)
    children, first = [], s.first
    for i in range(procs):
        count = base + (i < extra)
        share = replace(
            s, nodes=count, first=first, seed=s.seed * 1_000_003 + i, ramp=s.ramp / procs, procs=1
        )
        first += count
        mine, theirs = ctx.Pipe(duplex=False)
        p = ctx.Process(target=_share, args=(share, mqtt_opts, theirs), daemon=True)
        p.start()
        theirs.close()
        children.append((p, mine))
    record, errors = Record(), []
    for p, conn in children:
        try:
            status, body = conn.recv()
        except EOFError:
            status, body = "error", f"a fleet-sim process ended with {p.exitcode}"
        p.join()
        if status == "ok":
            record.merge(Record.from_json(body))
        else:
            errors.append(body)
    if errors:
        raise OSError("; ".join(sorted(set(errors))))
    return record
