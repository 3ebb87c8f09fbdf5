"""The fleet simulator's virtual nodes: each with its own node id, epoch and per-stream
sequence numbers, sensor profiles sampled on a schedule, batches sealed through the real
encoder (``wire.encode``), and the faults a real fleet shows: duplicates (a lost PUBACK,
the batch sent again), gaps (a seq the node's store dropped), restarts (a new epoch,
seqs from 1) and offline periods (backlog sent later, marked historical).

Every batch the plan sends is recorded (``Record``), so a test can compare what the
database holds with what the fleet sent. This module does not touch the network: the
CLI (``edge_agent.cli.fleet_sim``) publishes what ``VirtualNode.step`` yields.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass, field

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
    sent: list[int] = field(default_factory=list)
    duplicates: list[int] = field(default_factory=list)
    gaps: list[int] = field(default_factory=list)
    historical: list[int] = field(default_factory=list)


class Record:
    """What the fleet sent, per (node, stream, epoch)."""

    def __init__(self) -> None:
        self.streams: dict[tuple[str, str, int], StreamRecord] = {}

    def of(self, node: str, stream: str, epoch: int) -> StreamRecord:
        return self.streams.setdefault((node, stream, epoch), StreamRecord())

    def totals(self) -> dict[str, int]:
        return {
            "batches": sum(len(r.sent) for r in self.streams.values()),
            "duplicates": sum(len(r.duplicates) for r in self.streams.values()),
            "gaps": sum(len(r.gaps) for r in self.streams.values()),
            "historical": sum(len(r.historical) for r in self.streams.values()),
        }

    def to_json(self) -> str:
        rows = [
            {"node": n, "stream": s, "epoch": e, **r.__dict__}
            for (n, s, e), r in sorted(self.streams.items())
        ]
        return json.dumps({"totals": self.totals(), "streams": rows}, separators=(",", ":"))


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
        self.backlog: list[tuple[str, bytes, str, int]] = []
        self.restart()

    def restart(self) -> None:
        self.epoch = self.rng.getrandbits(wire.EPOCH_BITS)
        self.seq = dict.fromkeys({p[0] for p in PROFILES}, 0)

    def status(self, state: str) -> tuple[str, bytes]:
        body = {"node": self.node_id, "state": state, "version": "fleet-sim", "core": "sim"}
        return wire.status_topic(self.prefix, self.node_id), json.dumps(body, separators=(",", ":")).encode()

    def health(self) -> tuple[str, bytes]:
        body = {"node": self.node_id, "epoch": self.epoch, "seq": dict(self.seq)}
        return wire.health_topic(self.prefix, self.node_id), json.dumps(body, separators=(",", ":")).encode()

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

    def seal(self, now_ms: int) -> list[tuple[str, bytes]]:
        """Seal one batch per stream at ``now_ms``; the faults decide what is published."""
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
                continue
            payload = wire.encode(self.batch(stream, seq, now_ms))
            topic = wire.data_topic(self.prefix, self.node_id, stream)
            if not online:
                self.backlog.append((topic, wire.mark_historical(payload), stream, seq))
                continue
            out.append((topic, payload))
            rec.sent.append(seq)
            if self.rng.random() < f.duplicate:
                out.append((topic, payload))
                rec.duplicates.append(seq)
        if online and self.backlog:
            for topic, payload, stream, seq in self.backlog:
                rec = self.record.of(self.node_id, stream, wire.decode(payload).epoch)
                out.append((topic, payload))
                rec.sent.append(seq)
                rec.historical.append(seq)
            self.backlog.clear()
        return out
