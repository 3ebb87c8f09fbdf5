"""What the node writes in wire format 4: the store's epoch in every batch (kept by a
restart and by a clock-sync restamp), and each channel's reconstruction and bound as its
configuration states them, true of the samples the chain was given."""

from __future__ import annotations

import bisect
import dataclasses
import math
import random
import textwrap

import pytest
from fake_sysroot import fake_root

from drivers.base import Reading
from edge_agent import wire
from edge_agent.config import load_config
from edge_agent.node import store as store_module
from edge_agent.node.health import HealthReport
from edge_agent.node.open_batch import restamp_payload
from edge_agent.node.sampler import Sampler
from edge_agent.node.store import BatchStore
from edge_agent.node.sysinfo import SystemProbe

BOOT = 1_699_990_000.0  # wall time at "boot": monotonic = wall - BOOT


class Scripted:
    """A bme680 reading the given temperatures, one a second on whole seconds."""

    def __init__(self, values):
        self.values = list(values)
        self.t = 1_700_000_000.0

    def read(self):
        self.t += 1.0
        return Reading(t=self.t, mono=self.t - BOOT, values={"temperature": self.values.pop(0)})

    def close(self):
        pass


def node(tmp_path, channel: str = "{}", mqtt: str = ""):
    p = tmp_path / "n.yaml"
    p.write_text(
        textwrap.dedent(f"""\
        node: {{id: v4-node}}
        mqtt: {{broker: "mqtt://127.0.0.1:1"{mqtt}}}
        sensors:
          - type: bme680
            filters: []
            channels: {{temperature: {channel}, humidity: {{enabled: false}},
                        pressure: {{enabled: false}}, gas: {{enabled: false}}}}
    """)
    )
    return dataclasses.replace(load_config(p), state_dir=str(tmp_path))


def run(cfg, store, temps, seal_every: int, *, synced=lambda: True, boot_id=None):
    """Sample the temperatures, sealing every ``seal_every``; the sampler."""
    sensor = Scripted(temps)
    s = Sampler(
        cfg,
        store,
        lambda c: sensor,
        clock=lambda: sensor.t - BOOT,
        wall=lambda: sensor.t,
        clock_synchronized=synced,
        boot_id=boot_id,
    )
    s.slots[0].driver = sensor
    for i in range(len(temps)):
        s.sample(s.slots[0])
        if (i + 1) % seal_every == 0:
            s.seal()
    s.seal()
    return s


def rebuild(points: list[tuple[int, float]], t: int, how: str) -> float:
    """The value a decoder gives at time ``t`` from the points: held, or interpolated."""
    times = [p[0] for p in points]
    i = bisect.bisect_right(times, t) - 1
    assert i >= 0, "a batch starts with its first sample"
    if how != "linear" or times[i] == t:
        assert how != "every" or times[i] == t, "every sample is a point"
        return points[i][1]
    (t0, y0), (t1, y1) = points[i], points[i + 1]
    return y0 + (y1 - y0) * (t - t0) / (t1 - t0)


MODES = {  # channel configuration -> (reconstruction, bound, relative)
    "{deadband: 0.2}": ("hold", 0.2, False),
    "{filters: [{type: deadband, width: 0.2, max_interval: 7s}]}": ("hold", 0.2, False),
    "{filters: [{type: deadband, width: 0.01, relative: true}]}": ("hold", 0.01, True),
    "{swing: 0.15}": ("linear", 0.15, False),
    "{filters: [{type: swing, deviation: 0.15, max_interval: 9s}]}": ("linear", 0.15, False),
    "{resolution: 0.1, bound: 0.35}": ("every", 0.3, False),  # bins of 7 steps: within 3
    "{}": ("every", 0.0, False),
}


@pytest.mark.parametrize("channel", list(MODES))
def test_each_channel_says_how_to_rebuild_it_and_within_what(tmp_path, channel):
    rnd = random.Random(channel)
    temps, v = [], 20.0
    for i in range(120):  # a drift, a step and noise: every lossy stage keeps and drops points
        v += rnd.gauss(0.0, 0.08) + (3.0 if i == 60 else 0.0)
        temps.append(v)
    cfg = node(tmp_path, channel)
    ch_cfg = cfg.sensors[0].channels[0]
    assert (ch_cfg.reconstruction, ch_cfg.bound, ch_cfg.bound_relative) == MODES[channel]
    with BatchStore(str(tmp_path / "q")) as store:
        run(cfg, store, temps, seal_every=50)
        payloads = [r.payload for r in store.oldest(10)]
    assert len(payloads) == 3
    points: list[tuple[int, float]] = []
    for payload in payloads:
        assert payload[2] == 4
        (ch,) = wire.decode(payload).channels
        assert (ch.reconstruction, ch.bound, ch.bound_relative) == MODES[channel]
        points += list(zip(ch.times_ms, ch.values()))
    if MODES[channel][0] != "every":
        assert len(points) < len(temps)  # the stage did drop samples
    resolution = ch_cfg.resolution
    for k, x in enumerate(temps):
        t = round((1_700_000_001.0 + k) * 1000)
        held = rebuild(points, t, ch.reconstruction)
        allowed = ch.max_error(held)
        if ch.bound_relative:
            # The node's deadband compares with the held value before it is quantised,
            # which may be resolution / 2 further from 0 than the decoded one.
            allowed += ch.bound * resolution / 2
        assert abs(x - held) <= allowed + 1e-9, (k, x, held)


@pytest.mark.parametrize("version", [2, 3, 4])
def test_the_epoch_is_in_every_batch_of_version_4_only(tmp_path, version):
    cfg = node(tmp_path, mqtt=f", wire_version: {version}")
    with BatchStore(str(tmp_path / "q")) as store:
        run(cfg, store, [20.0 + i for i in range(9)], seal_every=3)
        batches = [wire.decode(r.payload) for r in store.oldest(10)]
        epoch = store.epoch
    assert [b.seq for b in batches] == [0, 1, 2]
    assert {b.version for b in batches} <= ({4} if version == 4 else {2, version})
    assert {b.epoch for b in batches} == ({epoch} if version == 4 else {0})


def test_each_opening_draws_an_epoch_and_a_restart_resends_the_same_bytes(tmp_path, monkeypatch):
    drawn = iter([0x0000BEEF, 0xFEEDF00D, 0x12345678])
    bits = []

    def randbits(k):
        bits.append(k)
        return next(drawn)

    monkeypatch.setattr(store_module.secrets, "randbits", randbits)
    cfg = node(tmp_path)
    path = str(tmp_path / "q")
    with BatchStore(path) as store:
        assert store.epoch == 0x0000BEEF
        run(cfg, store, [20.0, 21.0, 22.0], seal_every=10)
        before = [r.payload for r in store.oldest(10)]
    with BatchStore(path) as store:  # the next start: a new epoch, the numbers go on
        assert store.epoch == 0xFEEDF00D
        assert [r.payload for r in store.oldest(10)] == before  # what waits is sent as it was
        run(cfg, store, [23.0], seal_every=10)
        rows = store.oldest(10)
    assert bits == [wire.EPOCH_BITS, wire.EPOCH_BITS] and store_module.EPOCH_BITS == wire.EPOCH_BITS
    assert [(wire.decode(r.payload).epoch, r.seq) for r in rows] == [(0x0000BEEF, 0), (0xFEEDF00D, 1)]
    assert wire.decode(rows[0].payload).key == ("v4-node", "bme680", 0x0000BEEF, 0)


def test_a_restamp_keeps_the_epoch_version_and_bounds(tmp_path):
    cfg = node(tmp_path, "{swing: 0.15}")
    synced = [False]
    with BatchStore(str(tmp_path / "q")) as store:
        run(
            cfg,
            store,
            [20.0 + math.sin(i / 5) for i in range(30)],
            100,
            synced=lambda: synced[0],
            boot_id="b",
        )
        (row,) = store.oldest(10)
        before = wire.decode(row.payload)
        assert before.flags & wire.FLAG_CLOCK_UNSYNCED and before.epoch == store.epoch
        shifted = round(BOOT * 1000) + 5_000  # the offset of wall to monotonic, once synced
        assert store.restamp_unsynced("b", shifted, restamp_payload) == 1
        after = wire.decode(store.oldest(10)[0].payload)
    assert after.version == 4 and after.epoch == before.epoch and after.key == before.key
    assert not after.flags & wire.FLAG_CLOCK_UNSYNCED
    (a,), (b,) = after.channels, before.channels
    assert (a.reconstruction, a.bound, a.bound_relative) == ("linear", 0.15, False)
    assert (a.reconstruction, a.bound, a.bound_relative) == (b.reconstruction, b.bound, b.bound_relative)
    assert a.values_q == b.values_q and a.times_ms == tuple(t + 5_000 for t in b.times_ms)


def test_the_health_message_names_the_epoch(tmp_path):
    cfg = node(tmp_path)
    with BatchStore(str(tmp_path / "q")) as store:
        s = run(cfg, store, [20.0], seal_every=10)
        part = s.health_part()
        report = HealthReport(cfg, SystemProbe(str(fake_root(tmp_path)))).build(
            sampler=part, uplink={}, store=store
        )
        epoch = store.epoch
    assert report["store"]["epoch"] == f"{epoch:08x}" and len(report["store"]["epoch"]) == 8
    assert int(report["store"]["epoch"], 16) == wire.decode(store_payload(tmp_path)).epoch
    assert report["release"] is None  # not under the launcher
    facts = iter([{"name": "0.2.0-7", "status": "trial"}, {"name": "0.2.0-7", "status": "good"}])
    reporter = HealthReport(cfg, SystemProbe(str(fake_root(tmp_path))), release=lambda: next(facts))
    with BatchStore(str(tmp_path / "q")) as store:  # read afresh for each message
        assert [reporter.build(sampler=part, uplink={}, store=store)["release"]["status"] for _ in "ab"] == [
            "trial",
            "good",
        ]


def store_payload(tmp_path) -> bytes:
    with BatchStore(str(tmp_path / "q")) as store:
        return store.oldest(1)[0].payload


def test_a_node_sends_version_4_unless_told_otherwise(tmp_path):
    assert load_config(None).mqtt.wire_version == 4
    with BatchStore(str(tmp_path / "q")) as store:
        run(node(tmp_path), store, [20.0], seal_every=10)
        assert store.oldest(1)[0].payload[2] == 4


def test_a_lost_queue_starts_at_0_again_under_keys_not_seen_before(tmp_path):
    """The card swapped, or the file and its WAL deleted: numbers restart at 0, and only the
    new epoch keeps the backbone from taking every new batch for a duplicate."""
    cfg = node(tmp_path)
    path = tmp_path / "q"
    with BatchStore(str(path)) as store:
        run(cfg, store, [20.0, 21.0, 22.0, 23.0], seal_every=2)
        before = {wire.decode(r.payload).key for r in store.oldest(10)}
    for suffix in ("", "-wal", "-shm"):
        (tmp_path / f"q{suffix}").unlink(missing_ok=True)
    with BatchStore(str(path)) as store:
        run(cfg, store, [24.0, 25.0, 26.0, 27.0], seal_every=2)
        after = [wire.decode(r.payload) for r in store.oldest(10)]
    assert [b.seq for b in after] == [0, 1]  # the numbers went back ...
    assert {(b.node, b.stream, b.seq) for b in after} <= {(k[0], k[1], k[3]) for k in before}
    assert not {b.key for b in after} & before  # ... and no key repeats
