"""PMSA003I through the unmodified Adafruit driver on the simulated bus."""

from __future__ import annotations

import textwrap

import pytest

from drivers.base import ChecksumError, ChipNotFound
from drivers.bus import I2CBus
from drivers.pmsa003i import Pmsa003i
from drivers.sim.bus import SimulatedSMBus
from drivers.sim.pmsa003i import Pmsa003iSim
from drivers.sim.profiles import Wave
from edge_agent.config import load_config
from edge_agent.node.hardware import SimulatedHardware
from edge_agent.node.sampler import Sampler
from edge_agent.node.store import BatchStore


def dust_node(tmp_path):
    """A node with one PMSA003I named dust."""
    p = tmp_path / "n.yaml"
    p.write_text(
        textwrap.dedent("""\
        node: {id: n}
        mqtt: {broker: "mqtt://127.0.0.1:1883"}
        sensors:
          - {name: dust, type: pmsa003i}
    """)
    )
    return load_config(p)


def bus_with(sim):
    sm = SimulatedSMBus()
    sm.attach(0x12, sim)
    return I2CBus(sm, name="sim")


def test_frame_values_and_identification():
    sim = Pmsa003iSim({"pm2_5": Wave(35.0), "particles_0_3um": Wave(4321.0)})
    bus = bus_with(sim)
    r = Pmsa003i(bus=bus).read().values
    assert r["pm2_5"] == 35.0 and r["particles_0_3um"] == 4321.0 and r["pm10"] == 12.0
    assert "checksum valid" in Pmsa003i.identify(bus, 0x12)
    assert Pmsa003i.CHANNELS[1].unit == "µg/m³"


def test_bad_checksum_and_absent_chip():
    sim = Pmsa003iSim()
    d = Pmsa003i(bus=bus_with(sim))
    sim.corrupt_next = 1
    with pytest.raises(ChecksumError, match="checksum"):
        d.read()
    assert d.read().values["pm1_0"] == 5.0  # the next frame is fine
    with pytest.raises(ChipNotFound):
        Pmsa003i(bus=I2CBus(SimulatedSMBus(), name="empty"))


def test_warm_up_is_reported():
    clock = [0.0]
    d = Pmsa003i(bus=bus_with(Pmsa003iSim()), clock=lambda: clock[0])
    assert d.warming_up
    clock[0] = 31.0
    assert not d.warming_up


def test_checksum_failures_are_counted_as_their_own_kind(tmp_path):
    cfg = dust_node(tmp_path)
    hw = SimulatedHardware(cfg)
    with BatchStore(str(tmp_path / "q")) as store:
        s = Sampler(cfg, store, hw.make)
        slot = s.slots[0]
        s._bring_up(slot, 0.0)
        sim = hw.sims[slot.cfg.name]
        sim.corrupt_next = 2
        for _ in range(4):
            s.sample(slot)
        assert slot.errors_by_kind["checksum"] == 2 and slot.samples == 2  # (and warm-up counts)


def test_samples_during_warm_up_travel_flagged(tmp_path):
    from drivers.base import READING_WARMING_UP
    from edge_agent import wire

    assert READING_WARMING_UP == wire.QUALITY_WARMING_UP  # drivers cannot import the wire module
    cfg = dust_node(tmp_path)
    clock = [0.0]
    base = SimulatedHardware(cfg).make

    def make(sc):
        d = base(sc)
        d.clock = lambda: clock[0]
        d.started = 0.0
        return d

    with BatchStore(str(tmp_path / "q")) as store:
        s = Sampler(cfg, store, make)
        slot = s.slots[0]
        s._bring_up(slot, 0.0)
        s.sample(slot)  # t = 0: warming up
        clock[0] = 31.0
        s.sample(slot)  # after 30 s: good data
        s.seal()
        ch = next(c for c in wire.decode(store.oldest(1)[0].payload).channels if c.name == "pm2_5")
        assert dict(ch.flags) == {0: wire.QUALITY_WARMING_UP} and len(ch.values_q) == 2
        assert slot.errors_by_kind == {"warming_up": 9}  # the nine channels of the first reading
