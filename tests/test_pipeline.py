"""The sampler: readings through chains into sealed, decodable batches in the store."""

from __future__ import annotations

import dataclasses
import threading
import time

import pytest

from drivers.base import Reading
from drivers.sim.profiles import Wave
from edge_agent import wire
from edge_agent.config import StageConfig, load_config
from edge_agent.node.hardware import SimulatedHardware
from edge_agent.node.sampler import Sampler
from edge_agent.node.store import BatchStore

BOOT = 1_699_990_000.0  # wall time at "boot": monotonic = wall - BOOT


class ScriptedSensor:
    """Returns the given temperatures one by one, a second apart; None raises OSError."""

    def __init__(self, values):
        self.values = list(values)
        self.t = 1_700_000_000.0

    def read(self):
        v = self.values.pop(0)
        self.t += 1.0
        if v is None:
            raise OSError(5, "Input/output error")
        return Reading(t=self.t, mono=self.t - BOOT, values={"temperature": v, "humidity": 50.0})

    def close(self):
        pass


@pytest.fixture
def cfg(tmp_path):
    base = load_config(None)
    return dataclasses.replace(base, node_id="test-node", state_dir=str(tmp_path))


def test_samples_go_through_chain_and_seal_once_per_stream(cfg, tmp_path):
    store = BatchStore(str(tmp_path / "q.sqlite3"))
    sensor = ScriptedSensor([20.0, 20.0, 20.01, 25.0, None, 25.0, 25.0])
    sealed = []
    s = Sampler(
        cfg,
        store,
        lambda c: sensor,
        on_sealed=lambda: sealed.append(1),
        clock=lambda: sensor.t - BOOT,
        wall=lambda: sensor.t,
    )
    slot = s.slots[0]
    slot.driver = sensor
    for _ in range(7):
        s.sample(slot)
    assert slot.read_errors == 1 and slot.samples == 6
    assert s.seal() == 1 and sealed == [1]
    assert s.seal() == 0  # nothing new: no empty batch
    (row,) = store.oldest(5)
    batch = wire.decode(row.payload)
    assert (batch.node, batch.stream, batch.seq) == ("test-node", "bme680", 0)
    temp = next(c for c in batch.channels if c.name == "temperature")
    # median 5 -> ema 0.5 -> deadband 0.02, then quantised to 0.01
    assert temp.values()[0] == 20.0
    assert temp.times_ms[0] == 1_700_000_001_000
    hum = next(c for c in batch.channels if c.name == "humidity")
    assert hum.values() == [50.0]  # constant: only the first point is kept


def test_run_seals_on_schedule_and_on_stop(tmp_path):
    cfg = dataclasses.replace(load_config(None), state_dir=str(tmp_path), flush_interval=0.3)
    sensor_cfg = dataclasses.replace(
        cfg.sensors[0],
        interval=0.05,
        options=(("heater_temp", 320.0), ("heater_ms", 20.0)),
        sim={"temperature": Wave(20.0, 5.0, 2.0)},
    )
    cfg = dataclasses.replace(cfg, sensors=(sensor_cfg,))
    store = BatchStore(str(tmp_path / "q.sqlite3"))
    stop = threading.Event()
    s = Sampler(cfg, store, SimulatedHardware(cfg).make)
    timer = threading.Timer(1.0, stop.set)
    timer.start()
    s.run(stop)
    seqs = [r.seq for r in store.oldest(100)]
    assert seqs == list(range(len(seqs))) and len(seqs) >= 3
    assert s.slots[0].samples >= 10
    for r in store.oldest(100):
        wire.decode(r.payload)


def test_a_sensor_that_fails_to_start_does_not_stop_the_others(tmp_path):
    cfg = dataclasses.replace(load_config(None), state_dir=str(tmp_path), flush_interval=0.2)
    ok = dataclasses.replace(
        cfg.sensors[0], interval=0.05, options=(("heater_temp", 320.0), ("heater_ms", 20.0))
    )
    broken = dataclasses.replace(ok, name="broken", address=0x76)
    cfg = dataclasses.replace(cfg, sensors=(ok, broken))
    factory = SimulatedHardware(cfg).make

    def make(sc):
        if sc.name == "broken":
            raise OSError(121, "Remote I/O error")
        return factory(sc)

    store = BatchStore(str(tmp_path / "q.sqlite3"))
    stop = threading.Event()
    threading.Timer(0.7, stop.set).start()
    s = Sampler(cfg, store, make)
    s.run(stop)
    assert s.slots[1].driver is None and s.slots[1].errors_by_kind == {"init": 1}
    assert {r.stream for r in store.oldest(100)} == {"bme680"}


def test_filter_state_survives_a_restart_in_the_same_boot(tmp_path):
    base = load_config(None)
    sc = dataclasses.replace(
        base.sensors[0],
        channels=(dataclasses.replace(base.sensors[0].channels[0], filters=(StageConfig("mean", (50.0,)),)),),
    )
    cfg = dataclasses.replace(base, sensors=(sc,))
    path = str(tmp_path / "q")
    sensor = ScriptedSensor([float(v) for v in range(10)] + [50.0] * 5)

    def make(store, boot):
        s = Sampler(
            cfg, store, lambda c: sensor, clock=lambda: sensor.t - BOOT, wall=lambda: sensor.t, boot_id=boot
        )
        s.slots[0].driver = sensor
        return s

    with BatchStore(path) as store:
        s = make(store, "boot-1")
        for _ in range(10):
            s.sample(s.slots[0])
        s.seal()
        s.save_states()
    with BatchStore(path) as store:
        s = make(store, "boot-1")  # a restart: the mean window of 0..9 is back
        assert s.restored_states == 1
        s.sample(s.slots[0])
        s.seal()
        last = wire.decode(store.oldest(10)[-1].payload).channels[0].values()[-1]
        assert last == round(sum(range(10), 50.0) / 11, 2)
    with BatchStore(path) as store:
        assert make(store, "boot-2").restored_states == 0  # another boot: start afresh


def test_a_failing_sensor_is_reinitialised_and_the_others_keep_every_sample(tmp_path):
    from drivers.sim.bme680 import Bme680Sim

    base = load_config(None)
    fast = dataclasses.replace(
        base.sensors[0], interval=0.05, options=(("heater_temp", 320.0), ("heater_ms", 1.0))
    )
    cfg = dataclasses.replace(
        base,
        state_dir=str(tmp_path),
        flush_interval=0.2,
        sensors=(fast, dataclasses.replace(fast, name="flaky", address=0x76)),
    )
    hw = SimulatedHardware(cfg)
    make, sims = hw.make, hw.sims

    clock = {"t": 0.0}
    import edge_agent.node.sampler as pl

    store = BatchStore(str(tmp_path / "q.sqlite3"))
    s = Sampler(cfg, store, make, clock=lambda: clock["t"])
    ok_slot, flaky = s.slots
    for slot in s.slots:
        s._bring_up(slot, 0.0)
    assert isinstance(sims["flaky"], Bme680Sim)
    sims["flaky"].unplug()
    for _ in range(pl.FAILING_AFTER):
        s.sample(flaky)
        s.sample(ok_slot)
    assert flaky.driver is None and flaky.next_init == pl.REINIT_INTERVAL
    assert ok_slot.samples == pl.FAILING_AFTER and ok_slot.read_errors == 0
    assert s.health_part()["sensors"]["flaky"]["state"] == "failing"
    sims["flaky"].replug()  # from power-on reset
    clock["t"] = pl.REINIT_INTERVAL
    s._bring_up(flaky, clock["t"])
    assert flaky.driver is not None
    s.sample(flaky)
    assert flaky.samples == 1 and flaky.errors_by_kind == {"read": pl.FAILING_AFTER}
    store.close()


def test_out_of_range_and_stuck_samples_are_flagged_not_filtered(tmp_path):
    base = load_config(None)
    sc = dataclasses.replace(
        base.sensors[0],
        stuck_after=3.0,
        channels=(
            dataclasses.replace(base.sensors[0].channels[0], filters=(StageConfig("median", (3.0,)),)),
        ),
    )
    cfg = dataclasses.replace(base, sensors=(sc,))
    store = BatchStore(str(tmp_path / "q"))
    sensor = ScriptedSensor([20.0, 21.0, 250.0, 22.0, 22.0, 22.0, 22.0, 22.0, 23.0])
    s = Sampler(cfg, store, lambda c: sensor, clock=lambda: sensor.t - BOOT, wall=lambda: sensor.t)
    s.slots[0].driver = sensor
    for _ in range(9):
        s.sample(s.slots[0])
    s.seal()
    ch = wire.decode(store.oldest(1)[0].payload).channels[0]
    rows = list(zip(ch.values(), [dict(ch.flags).get(i, 0) for i in range(len(ch.values_q))]))
    # 250 °C is beyond the BME680's 85 °C: kept as read, flagged, and never in the median
    assert (250.0, wire.QUALITY_OUT_OF_RANGE) in rows
    assert all(v < 85 for v, q in rows if q == 0)
    # 22.0 read 5 times a second apart: from 3 s on it is flagged stuck
    assert [v for v, q in rows if q == wire.QUALITY_STUCK] == [22.0, 22.0]
    assert s.slots[0].errors_by_kind == {"out_of_range": 1, "stuck": 2}
    store.close()


def test_a_failed_read_is_retried_within_its_slot_with_backoff(cfg, tmp_path):
    import edge_agent.node.sampler as pl

    now = [0.0]
    store = BatchStore(str(tmp_path / "q.sqlite3"))
    sensor = ScriptedSensor([None, None, 21.0, None, None, None, None, 22.0])
    s = Sampler(cfg, store, lambda c: sensor, clock=lambda: now[0])
    slot = s.slots[0]
    slot.driver, slot.slot_deadline = sensor, slot.cfg.interval / 2
    s.sample(slot)
    assert slot.retry_at == pytest.approx(pl.RETRY_DELAY)
    now[0] = slot.retry_at
    s.sample(slot)
    assert slot.retry_at == pytest.approx(3 * pl.RETRY_DELAY)  # 20 ms, then 40 ms more
    now[0] = slot.retry_at
    s.sample(slot)
    assert slot.retry_at is None and slot.samples == 1 and slot.missed == 0
    assert slot.errors_by_kind == {"read": 2} and slot.consecutive_failures == 0
    # A slot whose retries all fail is missed once, however many attempts it took.
    slot.attempt, slot.slot_deadline = 0, now[0] + slot.cfg.interval / 2
    for _ in range(1 + pl.READ_RETRIES):
        s.sample(slot)
        now[0] = slot.retry_at if slot.retry_at is not None else now[0]
    assert slot.retry_at is None and slot.missed == 1 and slot.consecutive_failures == 1
    assert slot.errors_by_kind == {"read": 2 + 1 + pl.READ_RETRIES}
    store.close()


def test_retries_serve_a_flaky_sensor_without_delaying_the_others(tmp_path):
    base = load_config(None)
    fast = dataclasses.replace(
        base.sensors[0], interval=0.2, options=(("heater_temp", 320.0), ("heater_ms", 1.0))
    )
    cfg = dataclasses.replace(
        base,
        state_dir=str(tmp_path),
        flush_interval=0.5,
        sensors=(fast, dataclasses.replace(fast, name="flaky", address=0x76)),
    )
    hw = SimulatedHardware(cfg)
    make, sims = hw.make, hw.sims

    store = BatchStore(str(tmp_path / "q.sqlite3"))
    s = Sampler(cfg, store, make)
    stop = threading.Event()

    done = []

    def faults():
        """Four times: two transfers of the flaky chip fail, then wait (by counting its
        samples, not by the clock) until the retries have read it and it read once more."""
        flaky = lambda: s.slots[1]  # noqa: E731

        def wait_for(cond) -> None:
            deadline = time.monotonic() + 60  # a bound on a hung sampler, not a speed
            while not cond() and time.monotonic() < deadline and not stop.is_set():
                stop.wait(0.01)

        try:
            wait_for(lambda: flaky().samples >= 1)
            for _ in range(4):
                before = flaky().samples
                sims["flaky"].fail_next(2)  # two transfers fail: the third attempt reads
                wait_for(lambda n=before + 2: flaky().samples >= n)
                done.append(flaky().samples >= before + 2)
        finally:
            stop.set()

    t = threading.Thread(target=faults)
    t.start()
    s.run(stop)
    t.join()
    assert done == [True] * 4, "the flaky sensor stopped reading"
    ok_slot, flaky = s.slots
    store.close()
    assert flaky.errors_by_kind.get("read", 0) == 8 and flaky.missed == 0
    assert ok_slot.errors_by_kind == {} and ok_slot.missed == 0
    assert abs(flaky.samples - ok_slot.samples) <= 1 and ok_slot.samples >= 9


def test_spikes_and_a_stuck_chip_from_the_simulator_are_flagged_and_counted(tmp_path):
    base = load_config(None)
    sc = dataclasses.replace(
        base.sensors[0],
        interval=0.05,
        stuck_after=0.3,
        options=(("heater_temp", 320.0), ("heater_ms", 1.0)),
        sim={"temperature": Wave(20.0, 2.0, 5.0)},
    )
    cfg = dataclasses.replace(base, state_dir=str(tmp_path), flush_interval=0.5, sensors=(sc,))
    hw = SimulatedHardware(cfg)
    make, sims = hw.make, {"chip": hw.sims[sc.name]}

    store = BatchStore(str(tmp_path / "q.sqlite3"))
    s = Sampler(cfg, store, make)
    stop = threading.Event()

    def faults():
        stop.wait(0.4)
        sims["chip"].spike("temperature", 120.0, count=2)  # beyond the BME680's 85 °C
        stop.wait(0.4)
        sims["chip"].stick()
        stop.wait(1.0)
        stop.set()

    t = threading.Thread(target=faults)
    t.start()
    s.run(stop)
    t.join()
    flagged = {}
    for row in store.oldest(100):
        for ch in wire.decode(row.payload).channels:
            values = ch.values()
            for i, q in ch.flags:
                flagged.setdefault((ch.name, q), []).append(values[i])
    store.close()
    errors = s.slots[0].errors_by_kind
    assert flagged[("temperature", wire.QUALITY_OUT_OF_RANGE)] == [120.0, 120.0]
    assert errors["out_of_range"] == 2
    # stuck for 1 s at 20 readings/s, flagged from 0.3 s on: on every channel of the chip
    assert errors["stuck"] == sum(len(v) for (_, q), v in flagged.items() if q == wire.QUALITY_STUCK)
    for channel in ("temperature", "humidity", "pressure", "gas"):
        assert (
            len(set(flagged[(channel, wire.QUALITY_STUCK)])) == 1
            and len(flagged[(channel, wire.QUALITY_STUCK)]) >= 5
        )


def seal_scripted(tmp_path, config_text: str, temps: list[float]):
    """Load a configuration, sample a scripted sensor through it once per value, seal; the
    configuration and the one payload stored."""
    import textwrap

    cfg_file = tmp_path / "n.yaml"
    cfg_file.write_text(textwrap.dedent(config_text))
    cfg = dataclasses.replace(load_config(cfg_file), state_dir=str(tmp_path))
    sensor = ScriptedSensor(temps)
    store = BatchStore(str(tmp_path / "q"))
    s = Sampler(cfg, store, lambda c: sensor, clock=lambda: sensor.t - BOOT, wall=lambda: sensor.t)
    s.slots[0].driver = sensor
    for _ in temps:
        s.sample(s.slots[0])
    s.seal()
    payload = store.oldest(1)[0].payload
    store.close()
    return cfg, payload


def test_a_channel_with_a_bound_sends_every_sample_within_it(tmp_path):
    import math

    temps = [21 + 0.3 * math.sin(i / 7) for i in range(40)]
    cfg, payload = seal_scripted(
        tmp_path,
        """\
        node: {id: b1}
        mqtt: {broker: "mqtt://127.0.0.1:1"}
        sensors:
          - type: bme680
            channels: {temperature: {resolution: 0.01, bound: 0.05, filters: []}}
    """,
        temps,
    )
    assert cfg.sensors[0].channels[0].bin_width == 11  # +-5 steps of 0.01
    assert cfg.sensors[0].channels[0].error_bound == pytest.approx(0.055)
    ch = wire.decode(payload).channels[0]
    assert ch.bin_width == 11 and len(ch.values_q) == 40
    assert max(abs(v - t) for v, t in zip(ch.values(), temps)) <= 0.055 + 1e-9


@pytest.mark.parametrize("wire_version", [2, 3, 4])
def test_wire_version_caps_what_the_node_sends(tmp_path, wire_version):
    """A backbone whose decoders predate version 4 (or 3) gets version 3 (or 2): the same
    values, more bytes, and no epoch or bounds."""
    import random

    rnd = random.Random(3)
    fahrenheit = [60]  # a value read in whole degrees Fahrenheit: a sparse set of steps at 0.1 degC
    for _ in range(59):
        fahrenheit.append(fahrenheit[-1] + rnd.choice((-2, -1, 0, 0, 1, 2)))
    temps = [(f - 32) / 1.8 for f in fahrenheit]
    _, payload = seal_scripted(
        tmp_path,
        f"""\
        node: {{id: w{wire_version}}}
        mqtt: {{broker: "mqtt://127.0.0.1:1", wire_version: {wire_version}}}
        sensors:
          - type: bme680
            filters: []
            channels: {{temperature: {{resolution: 0.1}}}}
    """,
        temps,
    )
    assert payload[2] == wire_version
    assert (wire.decode(payload).epoch != 0) == (wire_version == 4)  # 1 in 2**32 that 4 drew 0
    ch = next(c for c in wire.decode(payload).channels if c.name == "temperature")
    assert ch.values_q == tuple(wire.quantise(t, 0.1) for t in temps)
