"""What of a private stream leaves the node, through the sampler and the store as the node
runs them: no raw sample in the queue file's bytes (its filter and driver states included)
nor in the payloads the uplink publishes (the stored bytes, as they are), and the health
message lists each stream's level. Counted in samples and seals on a driven clock."""

from __future__ import annotations

import struct
from pathlib import Path

import yaml

from drivers.base import Reading
from edge_agent import wire
from edge_agent.config import parse_config
from edge_agent.node.sampler import Sampler
from edge_agent.node.store import BatchStore

CONFIG = """\
node: {{id: flat-7}}
flush_interval: 1min
mqtt: {{broker: "mqtt://127.0.0.1:1883"}}
sensors:
  - name: mains
    type: ina226
    interval: 1s
    shunt_ohms: 0.002
    max_current: 20
    filters: [{{type: median, window: 5}}]
    channels: {{bus_voltage: {{enabled: false}}, shunt_voltage: {{enabled: false}}, current: {{enabled: false}}}}
{privacy}
  - {{name: air, type: bme680, interval: 10s}}
"""
SECONDS = 3 * 3600 + 300  # twelve periods of 15 min, and five minutes of the thirteenth


def power_at(t: int) -> float:
    """A kettle every 40 minutes on a base load; the noise makes each raw value's text unique."""
    kettle = 2000.0 if t % 2400 < 180 else 0.0
    return 150.0 + kettle + ((t * 7919) % 997) / 1000.0


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


class Meter:
    """An INA226 as the sampler sees it: power, and the energy it integrates."""

    def __init__(self, clock: Clock) -> None:
        self.clock, self.wh = clock, 0.0

    def read(self) -> Reading:
        p = power_at(int(self.clock.t))
        self.wh += p / 3600.0
        return Reading(1.767e9 + self.clock.t, self.clock.t, {"power": p, "energy": self.wh})

    def get_state(self) -> dict:
        return {"energy_wh": self.wh}

    def close(self) -> None:
        pass


class Air:
    def read(self) -> Reading:
        return Reading(0.0, 0.0, {"temperature": 21.0, "humidity": 40.0, "pressure": 1000.0, "gas": 5e4})

    def close(self) -> None:
        pass


def run(tmp_path: Path, privacy: str) -> tuple[Sampler, list[bytes], list[bytes]]:
    """Three hours at 1 Hz, sealed every minute: the sampler, the payloads, the raw readings' forms."""
    cfg = parse_config(yaml.safe_load(CONFIG.format(privacy=privacy)), "node.yaml")
    clock = Clock()
    meter = Meter(clock)
    store = BatchStore(str(tmp_path / "queue.db"))
    sampler = Sampler(cfg, store, lambda sc: meter if sc.name == "mains" else Air(), clock=clock)
    mains, air = sampler.slots
    sampler._bring_up(mains, 0.0)
    sampler._bring_up(air, 0.0)
    needles = []
    try:
        for t in range(1, SECONDS + 1):
            clock.t = float(t)
            for slot in sampler.slots if t % 10 == 0 else [mains]:
                slot.slot_time, slot.attempt = clock.t, 0
                sampler.sample(slot)
            p = power_at(t)
            needles += [repr(p).encode(), struct.pack("<d", p), repr(meter.wh).encode()]
            if t % 60 == 0:
                sampler.seal()
        sampler.seal()  # as at a clean stop
        sampler.save_states()
        payloads = [b.payload for b in store.oldest(100_000) if b.stream == "mains"]
    finally:
        store.close()
    return sampler, payloads, needles


def queue_bytes(tmp_path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(tmp_path.glob("queue.db*")))


def found(haystack: bytes, needles: list[bytes]) -> int:
    return sum(1 for n in set(needles) if n in haystack)


def test_a_private_streams_raw_values_never_reach_the_queue_file_nor_a_payload(tmp_path):
    raw_dir, private_dir = tmp_path / "raw", tmp_path / "private"
    raw_dir.mkdir()
    private_dir.mkdir()
    # the scan can find them: a raw stream's median window and energy total are in the file
    _, raw_payloads, needles = run(raw_dir, "")
    assert found(queue_bytes(raw_dir), needles) >= 5
    assert sum(len(c.times_ms) for p in raw_payloads for c in wire.decode(p).channels) >= SECONDS

    sampler, payloads, needles = run(private_dir, "    privacy: {level: aggregate, period: 15min}")
    data = queue_bytes(private_dir)
    assert len(data) > 10_000 and found(data, needles) == 0
    assert found(b"".join(payloads), needles) == 0
    periods = SECONDS // 900  # 12 closed (the first from its second second), the 13th open
    batches = [wire.decode(p) for p in payloads]
    assert {(b.privacy, b.period_ms) for b in batches} == {("aggregate", 900_000)}
    names = {c.name for b in batches for c in b.channels}
    assert names == {"power.mean", "power.min", "power.max", "power.count", "energy.total", "energy.count"}
    points = [(c.name, t, v) for b in batches for c in b.channels for t, v in zip(c.times_ms, c.values())]
    assert len(points) == 6 * periods  # the open one was dropped at the stop: never sent
    counts = [v for name, _, v in points if name == "power.count"]
    assert counts[0] == 899 and set(counts[1:]) == {900}
    # what a period's statistics say: the kettle's 2 kW is in its max, its 3 minutes in the mean
    means = [v for name, _, v in points if name == "power.mean"]
    assert max(means) < 600 < max(v for name, _, v in points if name == "power.max")
    health = sampler.health_part()["privacy"]
    assert health["mains"] == {"level": "aggregate", "period_s": 900.0, "periods": periods, "dropped": 0}
    assert health["air"] == {"level": "raw"}
