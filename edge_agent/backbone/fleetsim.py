"""The fleet simulator's virtual nodes: each with its own node id, epoch and per-stream
sequence numbers, sensor profiles sampled on a schedule, batches sealed through the real
encoder (``wire.encode``), and the faults a real fleet shows: duplicates (a lost PUBACK,
the batch sent again), gaps (a seq the node's store dropped), restarts (a new epoch,
seqs from 1) and offline periods (backlog sent later, marked historical).

Every batch the plan sends is recorded (``Record``), so a test can compare what the
database holds with what the fleet sent and the broker acknowledged. This module does not
touch the network: ``fleetsim_run`` publishes what ``VirtualNode.seal`` returns and records
the acknowledgements, the re-sends after a lost connection and the backlog of an outage.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass, field
from typing import NamedTuple

from edge_agent import wire

# (stream, channel, unit, resolution, mean, amplitude, noise): daily-cycle profiles of the
# sensors a node carries (SCD4x air, BME680 climate, INA2xx power).
PROFILES: tuple[tuple[str, str, str, float, float, float, float], ...] = (
    ("air", "co2", "ppm", 1.0, 600.0, 200.0, 8.0),
    ("climate", "temperature", "degC", 0.01, 18.0, 6.0, 0.05),
    ("climate", "humidity", "%RH", 0.1, 55.0, 15.0, 0.3),
    ("power", "voltage", "V", 0.001, 12.6, 0.4, 0.002),
)


@dataclass
class Faults:
    """Probabilities per sealed batch."""

    duplicate: float = 0.0  # the batch is published twice (PUBACK lost)
    gap: float = 0.0  # the seq is used but the batch never sent (dropped by the store)
    restart: float = 0.0  # the node restarts before this batch: new epoch, seq from 1
    offline: float = 0.0  # the batch is held back and sent later marked historical


@dataclass
class StreamRecord:
    """One (node, stream, epoch): the seqs ``sent`` (sealed and published at least once),
    ``acked`` (the broker's PUBACK came back, once per seq), ``duplicates`` (published twice
    on purpose: a lost PUBACK), ``resent`` (in flight when a connection was lost, published
    again: the broker may have had it), ``gaps`` (numbered, never sent: the store dropped
    them) and ``historical`` (sent from a backlog, flagged so)."""

    sent: list[int] = field(default_factory=list)
    acked: list[int] = field(default_factory=list)
    unrouted: list[int] = field(default_factory=list)  # acked with "no matching subscribers"
    duplicates: list[int] = field(default_factory=list)
    resent: list[int] = field(default_factory=list)
    gaps: list[int] = field(default_factory=list)
    historical: list[int] = field(default_factory=list)


FIELDS = tuple(StreamRecord.__dataclass_fields__)


class Record:
    """What the fleet sent, per (node, stream, epoch)."""

    def __init__(self) -> None:
        self.streams: dict[tuple[str, str, int], StreamRecord] = {}
        self.connects = 0  # connections made (CONNACK received), first ones and again
        self.lost = 0  # connections lost

    def of(self, node: str, stream: str, epoch: int) -> StreamRecord:
        return self.streams.setdefault((node, stream, epoch), StreamRecord())

    def totals(self) -> dict[str, int]:
        out = {name: sum(len(getattr(r, name)) for r in self.streams.values()) for name in FIELDS}
        out["batches"] = out.pop("sent")
        return {**out, "connects": self.connects, "lost": self.lost}

    def merge(self, other: Record) -> None:
        for key, r in other.streams.items():
            mine = self.of(*key)
            for name in FIELDS:
                getattr(mine, name).extend(getattr(r, name))
        self.connects += other.connects
        self.lost += other.lost

    def to_json(self) -> str:
        rows = [
            {"node": n, "stream": s, "epoch": e, **r.__dict__}
            for (n, s, e), r in sorted(self.streams.items())
        ]
        return json.dumps({"totals": self.totals(), "streams": rows}, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Record:
        doc, rec = json.loads(text), cls()
        for row in doc["streams"]:
            r = rec.of(row["node"], row["stream"], row["epoch"])
            for name in FIELDS:
                getattr(r, name).extend(row[name])
        rec.connects, rec.lost = doc["totals"]["connects"], doc["totals"]["lost"]
        return rec


class Out(NamedTuple):
    """A message to publish: a batch (with its key) or a status or health (stream None)."""

    topic: str
    payload: bytes
    stream: str | None = None
    epoch: int = 0
    seq: int = 0
    retain: bool = False


class VirtualNode:
    """One simulated node. ``seal(now_ms)`` returns the (topic, payload) pairs to publish."""

    def __init__(
        self,
        node_id: str,
        rng: random.Random,
        record: Record,
        *,
        prefix: str = "edge",
        period_ms: int = 10_000,
        per_batch: int = 6,
        faults: Faults | None = None,
    ) -> None:
        self.node_id, self.rng, self.record, self.prefix = node_id, rng, record, prefix
        self.period_ms, self.per_batch = period_ms, per_batch
        self.faults = faults or Faults()
        self.phase = rng.random() * 2 * math.pi
        self.backlog: list[Out] = []
        self.dropped: dict[str, int] = {}  # per stream, seqs numbered and never sent
        self.restart()

    def restart(self) -> None:
        self.epoch = self.rng.getrandbits(wire.EPOCH_BITS)
        self.seq = dict.fromkeys({p[0] for p in PROFILES}, 0)

    def status(self, state: str) -> Out:
        body = {"node": self.node_id, "state": state, "version": "fleet-sim", "core": "sim"}
        topic = wire.status_topic(self.prefix, self.node_id)
        return Out(topic, json.dumps(body, separators=(",", ":")).encode(), retain=True)

    def health(self) -> Out:
        body = {
            "node": self.node_id,
            "epoch": self.epoch,
            "seq": dict(self.seq),
            "dropped": dict(self.dropped),
        }
        return Out(
            wire.health_topic(self.prefix, self.node_id), json.dumps(body, separators=(",", ":")).encode()
        )

    def batch(self, stream: str, seq: int, end_ms: int) -> wire.Batch:
        t0 = end_ms - (self.per_batch - 1) * self.period_ms  # the newest point at the seal
        times = tuple(t0 + k * self.period_ms for k in range(self.per_batch))
        channels = []
        for s, name, unit, res, mean, amp, noise in PROFILES:
            if s != stream:
                continue
            vals = tuple(
                wire.quantise(
                    mean
                    + amp * math.sin(2 * math.pi * t / 86_400_000 + self.phase)
                    + self.rng.gauss(0.0, noise),
                    res,
                )
                for t in times
            )
            channels.append(wire.ChannelData(name, unit, res, times, vals))
        return wire.Batch(
            self.node_id, stream, seq, t0, tuple(channels), period_ms=self.period_ms, epoch=self.epoch
        )

    def seal(self, now_ms: int, *, connected: bool = True) -> list[Out]:
        """Seal one batch per stream at ``now_ms``; the faults decide what is published. A
        node that is not ``connected`` (a real outage) marks what it seals historical: it
        will go from the backlog."""
        f, out = self.faults, []
        if self.rng.random() < f.restart:
            self.restart()
        online = self.rng.random() >= f.offline
        for stream in sorted(self.seq):
            self.seq[stream] += 1
            seq = self.seq[stream]
            rec = self.record.of(self.node_id, stream, self.epoch)
            if self.rng.random() < f.gap:
                rec.gaps.append(seq)
                self.dropped[stream] = self.dropped.get(stream, 0) + 1
                continue
            payload = wire.encode(self.batch(stream, seq, now_ms))
            topic = wire.data_topic(self.prefix, self.node_id, stream)
            if not online:
                self.backlog.append(Out(topic, wire.mark_historical(payload), stream, self.epoch, seq))
                continue
            if not connected:
                payload = wire.mark_historical(payload)
                rec.historical.append(seq)
            item = Out(topic, payload, stream, self.epoch, seq)
            out.append(item)
            rec.sent.append(seq)
            if self.rng.random() < f.duplicate:
                out.append(item)
                rec.duplicates.append(seq)
        if online and self.backlog:
            for item in self.backlog:
                rec = self.record.of(self.node_id, item.stream or "", item.epoch)
                out.append(item)
                rec.sent.append(item.seq)
                rec.historical.append(item.seq)
            self.backlog.clear()
        return out
