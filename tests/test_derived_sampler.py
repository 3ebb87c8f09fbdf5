"""Derived streams in the sampler: sealed and encoded like a sensor's stream, their channels
with their own chains, counted in the health message, carried over a reload unchanged."""

from __future__ import annotations

import threading

import pytest
import yaml

from edge_agent import wire
from edge_agent.config import parse_config
from edge_agent.node.hardware import SimulatedHardware
from edge_agent.node.sampler import Sampler
from edge_agent.node.store import BatchStore

NODE = """\
node: {id: flat-7}
flush_interval: 1s
mqtt: {broker: "mqtt://127.0.0.1:1883"}
sensors:
  - {name: mains, type: ina226, interval: 100ms, shunt_ohms: 0.002, max_current: 20,
     sim: {bus_voltage: 24.0, current: 7.5}}
derived:
  - {name: use, kind: energy, inputs: {power: mains.power}, period: 1s, emission_factor: 300,
     channels: {energy_period: {resolution: 0.001}}}
"""


def run_until(sampler: Sampler, done, timeout: float = 60.0) -> None:
    """Run the sampler on this thread (the store's) until ``done()``; a watcher stops it."""
    stop = threading.Event()

    def watch() -> None:
        waited = 0.0
        while not done() and waited < timeout:
            stop.wait(0.05)
            waited += 0.05
        stop.set()

    watcher = threading.Thread(target=watch)
    watcher.start()
    sampler.run(stop)
    watcher.join()


def test_a_derived_stream_is_sealed_like_a_sensors(tmp_path):
    cfg = parse_config(yaml.safe_load(NODE), "node.yaml")
    hw = SimulatedHardware(cfg)
    store = BatchStore(str(tmp_path / "q"))
    sampler = Sampler(cfg, store, hw.make)
    (use,) = sampler.derived.streams
    try:
        run_until(sampler, lambda: use.points >= 4)  # counted on the sampler's thread: at least 4
        batches = [wire.decode(b.payload) for b in store.oldest(1000)]
    finally:
        hw.close()
        store.close()
    derived = [b for b in batches if b.stream == "use"]
    assert derived and {b.node for b in derived} == {"flat-7"}
    assert [b.seq for b in derived] == list(range(len(derived)))
    points = [
        (t, c.name, v)
        for b in derived
        for c in b.channels
        for t, v in zip(c.times_ms, c.values(), strict=True)
    ]
    names = {name for _, name, _ in points}
    assert names == {"energy_period", "co2e_period", "uncovered"}
    # 180 W for a whole second is 0.05 Wh; a period with a gap or the first covers less
    full = [v for t, name, v in points if name == "energy_period"]
    assert 0.9 * 180 / 3600 <= max(full) <= 180 / 3600 + 0.001
    assert all(b.channels[0].unit in ("Wh", "g", "s") for b in derived)
    health = sampler.health_part()["derived"]
    assert health["use"]["kind"] == "energy" and health["use"]["points"] == use.points >= 4


def test_a_reload_keeps_an_unchanged_derived_streams_past(tmp_path):
    cfg = parse_config(yaml.safe_load(NODE), "node.yaml")
    hw = SimulatedHardware(cfg)
    store = BatchStore(str(tmp_path / "q"))
    sampler = Sampler(cfg, store, hw.make)
    before = sampler.derived.streams[0]
    try:
        sampler.reconfigure(cfg, hw.make)
        assert sampler.derived.streams[0] is before
        changed = parse_config(
            yaml.safe_load(NODE.replace("emission_factor: 300", "emission_factor: 200")), "n"
        )
        sampler.reconfigure(changed, hw.make)
        assert sampler.derived.streams[0] is not before
        assert (
            sampler.derived.streams[0].energy is not None and sampler.derived.streams[0].energy.factor == 200
        )
    finally:
        hw.close()
        store.close()


AQI_NODE = """\
node: {id: lamp-9}
mqtt: {broker: "mqtt://127.0.0.1:1883"}
sensors:
  - {name: dust, type: pmsa003i}
  - {name: mains, type: ina226}
derived:
  - {name: aqi, kind: us_aqi, inputs: {pm2_5: dust.pm2_5}}
  - {name: use, kind: energy, inputs: {power: mains.power}, period: 1min}
"""


def test_a_restart_in_the_same_boot_takes_up_the_past_again(tmp_path):
    """Two hours of NowCast history survive a restart of the agent (the same boot): the next
    reading makes a point at once, instead of 1 h 45 min later; another boot starts over."""
    cfg = parse_config(yaml.safe_load(AQI_NODE), "node.yaml")
    hw = SimulatedHardware(cfg)
    path = str(tmp_path / "q")
    store = BatchStore(path)
    try:
        first = Sampler(cfg, store, hw.make, clock=lambda: 7300.0, boot_id="boot-1")
        aqi_stream, use = first.derived.streams
        for minute in range(120):
            aqi_stream.observe("pm2_5", minute * 60 + 30.0, 12.0, 0)
        for t in range(7200, 7231, 2):
            use.observe("power", float(t), 600.0, 0)
        assert aqi_stream.points == 15 and aqi_stream.next_due == 7200.0  # from 1 h 45 min on
        first.save_states()
        again = Sampler(cfg, store, hw.make, clock=lambda: 7400.0, boot_id="boot-1")
        aqi2, use2 = again.derived.streams
        assert aqi2.get_state() == aqi_stream.get_state() and aqi2.next_due == 7200.0
        assert use2.energy is not None and use2.energy.wh == pytest.approx(600 * 30 / 3600)
        aqi2.observe("pm2_5", 7290.0, 12.0, 0)
        assert aqi2.points == 2 and aqi2.channels["pm2_5_nowcast"].last == (7260.0, 12.0, 0)
        other = Sampler(cfg, store, hw.make, clock=lambda: 7400.0, boot_id="boot-2")
        assert other.derived.streams[0].get_state()["windows"] == {"pm2_5": []}
    finally:
        hw.close()
        store.close()


def test_a_saved_past_that_does_not_fit_is_left_out(tmp_path, caplog):
    cfg = parse_config(yaml.safe_load(AQI_NODE), "node.yaml")
    hw = SimulatedHardware(cfg)
    store = BatchStore(str(tmp_path / "q"))
    try:
        first = Sampler(cfg, store, hw.make, clock=lambda: 100.0, boot_id="b")
        spec = first.derived.streams[0].spec_json
        store.save_chain_states([("aqi", "__derived__", spec, '{"next_due": 1}')], "b", 100.0)
        again = Sampler(cfg, store, hw.make, clock=lambda: 200.0, boot_id="b")
        assert again.derived.streams[0].next_due is None
        assert "event=state_not_restored stream=aqi" in caplog.text
    finally:
        hw.close()
        store.close()
