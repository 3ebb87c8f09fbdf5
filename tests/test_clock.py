"""A clock that starts wrong: stamping on the monotonic clock, restamping after sync, jumps."""

from __future__ import annotations

import dataclasses

from drivers.base import Reading
from edge_agent import wire
from edge_agent.config import load_config
from edge_agent.node.sampler import Sampler, restamp_payload
from edge_agent.node.store import BatchStore

TRUE_BOOT = 1_790_000_000.0  # the true wall time at boot


class FakeTime:
    """Monotonic time since boot, and a wall clock that is wrong until `sync()`."""

    def __init__(self) -> None:
        self.mono = 10.0
        self.wall_error = -(TRUE_BOOT - 1_600_000_000.0)  # fake-hwclock: years behind
        self.synced = False

    def wall(self) -> float:
        return TRUE_BOOT + self.mono + self.wall_error

    def sync(self) -> None:
        self.wall_error, self.synced = 0.0, True


class Sensor:
    def __init__(self, ft: FakeTime) -> None:
        self.ft, self.n = ft, 0

    def read(self) -> Reading:
        self.n += 1
        return Reading(t=self.ft.wall(), mono=self.ft.mono, values={"temperature": float(self.n)})

    def close(self) -> None:
        pass


def make(tmp_path, ft, boot_id="boot-A"):
    base = load_config(None)
    sensor_cfg = dataclasses.replace(
        base.sensors[0], channels=(dataclasses.replace(base.sensors[0].channels[0], filters=()),)
    )  # temperature only, no filtering
    cfg = dataclasses.replace(base, node_id="n", sensors=(sensor_cfg,))
    store = BatchStore(str(tmp_path / "q.sqlite3"))
    sensor = Sensor(ft)
    s = Sampler(
        cfg,
        store,
        lambda c: sensor,
        clock=lambda: ft.mono,
        wall=ft.wall,
        clock_synchronized=lambda: ft.synced,
        boot_id=boot_id,
    )
    s.slots[0].driver = sensor
    return s, store


def sample(s, ft, n, step=1.0):
    for _ in range(n):
        s.sample(s.slots[0])
        ft.mono += step


def batches(store):
    return [(r, wire.decode(r.payload)) for r in store.oldest(100)]


def true_times(first_mono, n):
    return [round((TRUE_BOOT + first_mono + i) * 1000) for i in range(n)]


def test_batches_sealed_before_sync_are_flagged_then_restamped_on_sync(tmp_path):
    ft = FakeTime()
    s, store = make(tmp_path, ft)
    sample(s, ft, 3)  # mono 10, 11, 12 on a clock years behind
    s.seal()
    ((_row, b),) = batches(store)
    assert b.flags & wire.FLAG_CLOCK_UNSYNCED
    assert b.channels[0].times_ms[0] < 1_700_000_000_000  # wrong, and flagged as such
    assert store.oldest(10, hold_unsynced=True) == []  # the uplink holds it back
    ft.sync()
    sample(s, ft, 2)  # mono 13, 14
    s.seal()
    (_, first), (_, second) = batches(store)
    assert not first.flags & wire.FLAG_CLOCK_UNSYNCED and not second.flags
    assert list(first.channels[0].times_ms) == true_times(10.0, 3)
    assert list(second.channels[0].times_ms) == true_times(13.0, 2)
    assert first.seq == 0 and s.restamped == 1
    assert len(store.oldest(10, hold_unsynced=True)) == 2


def test_batches_of_an_earlier_boot_stay_flagged(tmp_path):
    ft = FakeTime()
    s, store = make(tmp_path, ft, boot_id="boot-A")
    sample(s, ft, 2)
    s.seal()
    store.close()
    ft2 = FakeTime()  # rebooted before NTP ever synced
    s2, store2 = make(tmp_path, ft2, boot_id="boot-B")
    ft2.sync()
    sample(s2, ft2, 2)
    s2.seal()
    (_, old), (_, new) = batches(store2)
    assert old.flags & wire.FLAG_CLOCK_UNSYNCED  # cannot be restamped: another boot's clock
    assert not new.flags & wire.FLAG_CLOCK_UNSYNCED
    assert new.seq == 1


def test_a_wall_clock_jump_inside_a_batch_does_not_reach_the_data(tmp_path):
    ft = FakeTime()
    ft.sync()
    s, store = make(tmp_path, ft)
    sample(s, ft, 2)  # mono 10, 11
    ft.wall_error = -3600.0  # someone sets the clock an hour back
    sample(s, ft, 2)  # mono 12, 13
    ft.wall_error = 0.0  # and NTP steps it right again before the seal
    s.seal()
    ((_, b),) = batches(store)
    assert list(b.channels[0].times_ms) == true_times(10.0, 4)  # evenly spaced, true times


def test_schedule_runs_on_the_monotonic_clock(tmp_path):
    """A wall-clock step does not change when samples are taken: run() never looks at the wall."""
    import threading

    ft = FakeTime()
    ft.sync()
    s, _store = make(tmp_path, ft)
    stop = threading.Event()
    calls = []

    def tick(now):  # drive time from the loop itself: 0.25 s per turn, a wall jump half way
        calls.append(now)
        ft.mono += 0.25
        if len(calls) == 20:
            ft.wall_error = 86400.0
        if len(calls) >= 40:
            stop.set()
        return now

    s.slots[0].driver = None
    s.run(stop, tick=tick)
    samples = s.slots[0].samples
    # 40 turns of 0.25 s = 10 s at a 1 s interval: 10 samples (+1 for the first at t=0)
    assert samples in (10, 11)


def test_a_restamped_batch_keeps_its_wire_version(tmp_path):
    """A node capped at wire version 2 must not send version 3 after a clock sync."""
    qs = tuple(round((f - 32) / 1.8 * 10) for f in (60, 62, 61, 59, 58, 60, 63, 61, 60, 57) * 6)
    ch = wire.ChannelData("temperature", "°C", 0.1, tuple(1000 * i for i in range(len(qs))), qs)
    batch = wire.Batch("n", "air", 0, 0, (ch,), period_ms=1000)
    assert wire.encode(batch, deflate=False, version=3)[2] == 3  # its values pay for the coded form
    store = BatchStore(str(tmp_path / "q"))
    for version in (2, 3):
        store.seal(
            "air",
            lambda seq, v=version: wire.encode(batch, version=v),
            0.0,
            clock_unsynced=True,
            boot_id="boot-A",
            wall_offset_ms=0,
        )
    assert store.restamp_unsynced("boot-A", 5_000, restamp_payload) == 2
    rows = store.oldest(10)
    store.close()
    assert [r.payload[2] for r in rows] == [2, 3]
    for r in rows:
        assert wire.decode(r.payload).channels[0].times_ms[0] == 5_000
