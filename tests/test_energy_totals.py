"""Energy totals never go backwards: a driver's total is stored in the transaction of each
sealed batch of its stream, so a kill at any moment restores at least the last total
sealed (and so at least what the backbone received), for the S0 meter and the INA226."""

from __future__ import annotations

import json
import random
import sqlite3
import textwrap

import pytest
from gpiozero.pins.mock import MockFactory

from drivers import ina2xx
from drivers.bus import I2CBus
from drivers.ina2xx import Ina226
from drivers.s0 import S0Meter
from drivers.sim.bus import SimulatedSMBus
from drivers.sim.ina2xx import Ina226Sim
from edge_agent import wire
from edge_agent.config import load_config
from edge_agent.errors import DiskFullError
from edge_agent.node.sampler import Sampler
from edge_agent.node.store import DRIVER_STATE, BatchStore
from edge_agent.node.store_pending import UnopenedStore

WALL0 = 1_700_000_000.0


def state_of(store: BatchStore, stream: str) -> dict | None:
    saved = store.driver_states().get(stream)
    return None if saved is None else json.loads(saved)


def test_seal_writes_the_state_in_its_own_one_transaction(tmp_path):
    with BatchStore(str(tmp_path / "q")) as s:
        statements: list[str] = []
        s._db.set_trace_callback(statements.append)
        row = ("mains", DRIVER_STATE, "", json.dumps({"energy_wh": 12.5}))
        assert s.seal("mains", lambda q: b"p", 1.0, boot_id="b", sealed_mono=5.0, states=[row]) == (0, 1)
        s._db.set_trace_callback(None)
        begins = [i for i, q in enumerate(statements) if q.startswith("BEGIN")]
        commits = [i for i, q in enumerate(statements) if q == "COMMIT"]
        state = [i for i, q in enumerate(statements) if "chain_state" in q]
        assert len(begins) == len(commits) == 1 and s.commits == 1  # no transaction of its own
        assert begins[0] < state[0] < commits[0]
        assert state_of(s, "mains") == {"energy_wh": 12.5}
        saved = s._db.execute("SELECT boot_id, mono FROM chain_state WHERE stream = 'mains'").fetchone()
        assert saved == ("b", 5.0)


def test_a_seal_that_fails_leaves_the_old_state(tmp_path):
    with BatchStore(str(tmp_path / "q")) as s:
        old = [("mains", DRIVER_STATE, "", json.dumps({"energy_wh": 10.0}))]
        new = [("mains", DRIVER_STATE, "", json.dumps({"energy_wh": 11.0}))]
        s.seal("mains", lambda q: b"p", 1.0, states=old)

        def boom(seq):
            raise ValueError("cannot encode")

        with pytest.raises(ValueError):
            s.seal("mains", boom, 2.0, states=new)
        assert state_of(s, "mains") == {"energy_wh": 10.0}
        # a commit that fails (the disk full: no page may be added) takes the state with it
        pages = s._db.execute("PRAGMA page_count").fetchone()[0]
        s._db.execute(f"PRAGMA max_page_count={pages}")
        with pytest.raises(DiskFullError):
            s.seal("mains", lambda q: bytes(5000), 3.0, states=new)
        assert state_of(s, "mains") == {"energy_wh": 10.0}
        assert s.depth()[0] == 1 and s.next_seq("mains") == 1


def test_a_refused_batch_still_keeps_the_total(tmp_path):
    with BatchStore(str(tmp_path / "q"), max_size=4, policy="refuse_newest") as s:
        row = [("mains", DRIVER_STATE, "", json.dumps({"energy_wh": 3.0}))]
        assert s.seal("mains", lambda q: b"too long", 1.0, states=row) == (0, 0)
        assert state_of(s, "mains") == {"energy_wh": 3.0}


def _config(tmp_path, sensor: str):
    p = tmp_path / "n.yaml"
    p.write_text(
        textwrap.dedent(f"""\
        node: {{id: meter-node}}
        mqtt: {{broker: "mqtt://127.0.0.1:1883"}}
        sensors:
          - {sensor}
        """)
    )
    return load_config(p)


class S0Rig:
    """An S0 meter on mock pins, pulsed by the test on a clock the test moves."""

    sensor = "{name: mains, type: s0, pin: 12, pulses_per_kwh: 10000}"
    stream = "mains"

    def __init__(self, monkeypatch, clock):
        self.pins = MockFactory()
        self.clock = clock

    def make(self, c):
        return S0Meter(pin_factory=self.pins, clock=lambda: self.clock[0], **c.driver_kwargs())

    def step(self, rng):
        pin = self.pins.pin(12)
        for _ in range(rng.randrange(0, 4)):  # 0.1 Wh a pulse
            self.clock[0] += 0.1  # past the debounce time
            pin.drive_low()
            pin.drive_high()


class Ina226Rig:
    """An INA226 on a simulated bus: about 36 W through the shunt, on the test's clock."""

    sensor = "{name: dc, type: ina226, address: 0x40, shunt_ohms: 0.01, max_current: 8}"
    stream = "dc"

    def __init__(self, monkeypatch, clock):
        monkeypatch.setattr(ina2xx.time, "monotonic", lambda: clock[0])
        self.sim = Ina226Sim(shunt_ohms=0.01, clock=lambda: clock[0])
        self.sim.set(bus_voltage=12.0, current=3.0)
        sm = SimulatedSMBus()
        sm.attach(0x40, self.sim)
        self.bus = I2CBus(sm, name="sim")

    def make(self, c):
        return Ina226(bus=self.bus, address=c.address, **c.driver_kwargs())

    def step(self, rng):
        self.sim.set(current=rng.uniform(0.0, 6.0))


def energies(store: BatchStore, stream: str) -> list[float]:
    """The energy values of every sealed batch of the stream, in sequence order."""
    rows = sorted((r.seq, r.payload) for r in store.oldest(100_000) if r.stream == stream)
    out: list[float] = []
    for _, payload in rows:
        energy = next(c for c in wire.decode(payload).channels if c.name == "energy")
        out += energy.values()
    return out


@pytest.mark.parametrize("rig", [S0Rig, Ina226Rig], ids=["s0", "ina226"])
def test_energy_never_goes_backwards_across_kills(tmp_path, monkeypatch, rig):
    """Runs killed at random SQLite steps (in a seal, between seals, before the first one)
    and started again on the same store: the energy the store holds never decreases from one
    sealed batch to the next, and each run goes on from its predecessor's last total."""
    rng = random.Random(14)
    clock = [100.0]
    hw = rig(monkeypatch, clock)
    cfg = _config(tmp_path, hw.sensor)
    path = str(tmp_path / "q")
    interrupted, firsts = 0, []
    for run in range(12):
        store = BatchStore(path)
        sampler = Sampler(
            cfg, store, hw.make, clock=lambda: clock[0], wall=lambda: WALL0 + clock[0], boot_id="boot"
        )
        slot = sampler.slots[0]
        sampler._bring_up(slot, clock[0])
        firsts.append(slot.driver.read().values["energy"])
        steps = [0]
        # Killed after a random number of SQLite steps (the statement under way is interrupted,
        # its transaction rolled back as SQLite does with an uncommitted WAL at restart), or,
        # when the run is over first, after its last one; the last run stops cleanly.
        kill_at = rng.randrange(1, 1500) if run < 11 else -1

        def progress(steps=steps, kill_at=kill_at):
            steps[0] += 1
            return steps[0] == kill_at

        store._db.set_progress_handler(progress, 5)

        try:
            for _ in range(rng.randrange(5, 40)):
                clock[0] += 1.0
                hw.step(rng)
                sampler.sample(slot)
                if rng.random() < 0.3:
                    sampler.seal()
            if kill_at < 0:
                sampler.seal()
                sampler.save_states()
        except sqlite3.OperationalError as exc:
            assert "interrupted" in str(exc)
            interrupted += 1

        store._db.set_progress_handler(None, 0)
        if store._db.in_transaction:
            store._db.execute("ROLLBACK")
        slot.driver.close()
        store.close()
    with BatchStore(path) as store:
        values = energies(store, hw.stream)
    assert interrupted >= 4 and len(values) > 50
    assert values == sorted(values), "the energy went backwards across a restart"
    assert values[-1] > values[0]  # energy flowed
    assert firsts == sorted(firsts)  # every run started from at least the last sealed total


def test_a_damaged_saved_total_is_logged_not_raised(tmp_path, caplog):
    hw = S0Rig(None, [0.0])
    cfg = _config(tmp_path, hw.sensor)
    with BatchStore(str(tmp_path / "q")) as store:
        store.save_chain_states([("mains", DRIVER_STATE, "", json.dumps({"energy_wh": "many"}))], None, 0.0)
        sampler = Sampler(cfg, store, hw.make, clock=lambda: 1.0)
        slot = sampler.slots[0]
        sampler._bring_up(slot, 1.0)
        assert slot.state == "up" and slot.driver.read().values["energy"] == 0.0
        slot.driver.close()
    assert "event=state_not_restored sensor=mains" in caplog.text


@pytest.mark.parametrize("bad", [float("nan"), -1.0, float("inf")])
def test_ina226_refuses_a_total_that_is_no_energy(bad):
    sm = SimulatedSMBus()
    sm.attach(0x40, Ina226Sim())
    d = Ina226(bus=I2CBus(sm, name="sim"))
    with pytest.raises(ValueError, match="energy total"):
        d.set_state({"energy_wh": bad})


def test_ina226_total_goes_on_from_the_saved_one(monkeypatch):
    clock = [10.0]
    monkeypatch.setattr(ina2xx.time, "monotonic", lambda: clock[0])
    sim = Ina226Sim(shunt_ohms=0.01, clock=lambda: clock[0])
    sim.set(bus_voltage=10.0, current=3.6)  # 36 W
    sm = SimulatedSMBus()
    sm.attach(0x40, sim)
    d = Ina226(bus=I2CBus(sm, name="sim"), shunt_ohms=0.01, max_current=8.0)
    d.set_state({"energy_wh": 500.0})
    assert d.read().values["energy"] == 500.0
    clock[0] += 100.0  # 1 Wh at 36 W
    assert d.read().values["energy"] == pytest.approx(501.0, rel=1e-3)
    assert d.get_state() == {"energy_wh": d.energy_wh}
    d.set_state({"energy_wh": 600.0})  # given again: the same energy since on top, not twice
    assert d.read().values["energy"] == pytest.approx(601.0, rel=1e-3)


def test_a_total_unchanged_since_the_last_seal_is_not_written_again(tmp_path):
    hw = S0Rig(None, [0.0])
    clock = hw.clock
    cfg = _config(tmp_path, hw.sensor)
    with BatchStore(str(tmp_path / "q")) as store:
        sampler = Sampler(cfg, store, hw.make, clock=lambda: clock[0], wall=lambda: WALL0 + clock[0])
        slot = sampler.slots[0]
        sampler._bring_up(slot, 0.0)
        statements: list[str] = []
        store._db.set_trace_callback(statements.append)
        for pulses in (2, 0, 1):
            for _ in range(pulses):
                clock[0] += 0.5  # past the debounce time
                hw.pins.pin(12).drive_low()
                hw.pins.pin(12).drive_high()
            clock[0] += 1.0
            sampler.sample(slot)
            sampler.seal()
        store._db.set_trace_callback(None)
        writes = [q for q in statements if "chain_state" in q]
        assert len(writes) == 2  # the seal after no pulse wrote no state
        assert sum(q == "COMMIT" for q in statements) == 3  # and no transaction of its own
        assert state_of(store, "mains")["energy_wh"] == pytest.approx(0.3)
        slot.driver.close()


def test_a_total_kept_with_a_seal_costs_one_page_more(tmp_path):
    """The SD card's side: the state is updated in place (not deleted and inserted again),
    so a seal that keeps a total writes one WAL frame more than one that does not."""
    frames = {}
    for with_state in (False, True):
        path = tmp_path / f"q{with_state}"
        with BatchStore(str(path)) as s:
            s.seal("mains", lambda q: b"x", 0.0, states=[("mains", DRIVER_STATE, "", "{}")])
            s._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            s._db.execute("PRAGMA wal_autocheckpoint=0")
            wal = tmp_path / f"q{with_state}-wal"
            before = 32  # the WAL's header, written with its first frame
            for i in range(50):
                total = [("mains", DRIVER_STATE, "", json.dumps({"energy_wh": i / 10}))] if with_state else []
                s.seal("mains", lambda q: bytes(80), 1.0 + i, boot_id="b", sealed_mono=float(i), states=total)
            frames[with_state] = (wal.stat().st_size - before) / (
                s._db.execute("PRAGMA page_size").fetchone()[0] + 24
            )
    assert frames[True] - frames[False] == 50


@pytest.mark.parametrize("rig", [S0Rig, Ina226Rig], ids=["s0", "ina226"])
def test_a_queue_opened_late_puts_the_saved_total_under_what_was_counted_since(tmp_path, monkeypatch, rig):
    """A start on a full disk (store_pending): the sampler runs on an UnopenedStore, its
    driver counting from 0 and every seal counted as unstored; when the queue opens, the
    saved total goes under what was counted since, and the first batch stored goes on from
    the last one stored before, never below it."""
    rng = random.Random(16)
    clock = [100.0]
    hw = rig(monkeypatch, clock)
    cfg = _config(tmp_path, hw.sensor)
    path = str(tmp_path / "q")
    with BatchStore(path) as store:  # the run before: a total saved with its last batch
        sampler = Sampler(cfg, store, hw.make, clock=lambda: clock[0], wall=lambda: WALL0 + clock[0])
        slot = sampler.slots[0]
        sampler._bring_up(slot, clock[0])
        for _ in range(20):
            clock[0] += 1.0
            hw.step(rng)
            sampler.sample(slot)
            sampler.seal()
        slot.driver.close()
        saved = state_of(store, hw.stream)["energy_wh"]
    assert saved > 0
    pending = UnopenedStore(path, DiskFullError("full"), max_size=None, policy="drop_oldest")
    sampler = Sampler(cfg, pending, hw.make, clock=lambda: clock[0], wall=lambda: WALL0 + clock[0])
    slot = sampler.slots[0]
    sampler._bring_up(slot, clock[0])
    for _ in range(10):
        clock[0] += 1.0
        hw.step(rng)
        sampler.sample(slot)
        assert sampler.seal() == 0
    assert pending.unstored == {hw.stream: 10} and sampler.unstored == {hw.stream: 10}
    since = slot.driver.read().values["energy"]  # counted from 0: the total was not known
    assert since > 0
    store = pending.open()
    assert store is not None and pending.attempts == 2
    try:
        sampler.adopt(store)
        assert sampler.store is store
        assert slot.driver.read().values["energy"] == pytest.approx(saved + since, rel=1e-6)
        clock[0] += 1.0
        sampler.sample(slot)
        assert sampler.seal() == 1
        values = energies(store, hw.stream)
        assert values == sorted(values) and values[-1] >= saved + since - 1e-9
        assert state_of(store, hw.stream)["energy_wh"] >= saved + since - 1e-9
        assert store.losses()[hw.stream]["unstored"] == 10
    finally:
        slot.driver.close()
        store.close()
