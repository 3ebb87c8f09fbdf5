"""`edge-agent run`: wires sensors, sampler, store and uplink, and stops cleanly on SIGTERM."""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable

from drivers.base import Sensor
from drivers.bus import I2CBus
from drivers.registry import SENSOR_TYPES, SIMULATORS
from drivers.sim.bus import SimulatedSMBus
from edge_agent import __version__, dsp
from edge_agent.config import AgentConfig, SensorConfig, store_path
from edge_agent.pipeline import Sampler
from edge_agent.sdnotify import Notifier, Watchdog, watchdog_interval
from edge_agent.store import BatchStore, ensure_private_dir
from edge_agent.sysinfo import SystemProbe
from edge_agent.uplink import Uplink

log = logging.getLogger("edge_agent.service")

UPLINK_STALL = 15.0  # s without a turn of the uplink loop before the watchdog is withheld


def progress_checks(sampler: Sampler, uplink: Uplink, flush_interval: float):
    """The watchdog's conditions: sealing on schedule, and an uplink loop that turns."""

    def sealing(now: float) -> str | None:
        late = now - sampler.last_seal_cycle - flush_interval
        return f"sealing {late:.0f}s behind schedule" if late > flush_interval + 5.0 else None

    def uplink_alive(now: float) -> str | None:
        if not uplink.is_alive():
            return "uplink thread is not running"
        stalled = now - uplink.last_tick
        return f"uplink loop stalled for {stalled:.0f}s" if stalled > UPLINK_STALL else None

    return [sealing, uplink_alive]


def simulated_factory(cfg: AgentConfig) -> Callable[[SensorConfig], Sensor]:
    """Sensors on simulated buses: one SimulatedSMBus per bus number, a simulator per sensor."""
    buses: dict[int, I2CBus] = {}
    smbuses: dict[int, SimulatedSMBus] = {}
    for s in cfg.sensors:
        sm = smbuses.setdefault(s.bus, SimulatedSMBus())
        if s.address not in sm.devices:
            sm.attach(s.address, SIMULATORS[s.type](s.sim))
        buses.setdefault(s.bus, I2CBus(sm, name=f"sim-i2c-{s.bus}"))

    def make(s: SensorConfig) -> Sensor:
        return SENSOR_TYPES[s.type](bus=buses[s.bus], address=s.address,
                                    heater_temp=s.heater_temp, heater_ms=s.heater_ms)
    return make


def hardware_factory(s: SensorConfig) -> Sensor:
    return SENSOR_TYPES[s.type](bus=I2CBus.open(s.bus), address=s.address,
                                heater_temp=s.heater_temp, heater_ms=s.heater_ms)


def run_agent(cfg: AgentConfig, *, simulate: bool, stop: threading.Event | None = None) -> int:
    """Run until SIGTERM/SIGINT (or ``stop``); seal and commit open batches before returning."""
    stop = stop or threading.Event()
    os.umask(0o077)  # the queue, its WAL and everything else we write: owner only
    ensure_private_dir(cfg.state_dir)
    path = store_path(cfg)
    log.info("event=start version=%s core=%s node=%s config=%s simulate=%s store=%s flush_interval=%gs",
             __version__, dsp.IMPLEMENTATION, cfg.node_id, cfg.source, simulate, path, cfg.flush_interval)
    store = BatchStore(path)
    uplink = Uplink(cfg, path)
    factory = simulated_factory(cfg) if simulate else hardware_factory
    probe = SystemProbe()
    sampler = Sampler(cfg, store, factory, on_sealed=uplink.notify,
                      clock_synchronized=lambda: probe.clock().synchronized, boot_id=probe.boot_id())

    def on_signal(signum, frame) -> None:
        log.info("event=signal signal=%s", signal.Signals(signum).name)
        stop.set()

    def status() -> str:
        n, size = store.depth()
        return (f"queue={n} batches ({size} B), link={'up' if uplink.connected else 'down'}, "
                f"sensors={sampler.sensors_up()}/{len(sampler.slots)} up")

    notifier = Notifier.from_env()
    watchdog = Watchdog(notifier, watchdog_interval(), progress_checks(sampler, uplink, cfg.flush_interval),
                        status=status)

    def on_ready() -> None:
        notifier.ready(status())
        log.info("event=ready sensors_up=%d sensors=%d watchdog=%s", sampler.sensors_up(),
                 len(sampler.slots), f"{watchdog.interval:g}s" if watchdog.interval else "off")

    next_health = [0.0]  # right after start, then every health_interval

    def tick(now: float) -> float:
        if now >= next_health[0]:
            uplink.post_health(sampler.sensor_health())
            next_health[0] = now + cfg.health_interval
        return min(watchdog.tick(now), next_health[0])

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    uplink.start()
    try:
        sampler.run(stop, on_ready=on_ready, tick=tick)
    finally:
        notifier.stopping()
        store.close()
        uplink.stop()
        uplink.join()
        for s, handler in previous.items():
            signal.signal(s, handler)
    notifier.close()
    log.info("event=stop sealed_batches=%d sealed_bytes=%d delivered=%d", sampler.sealed_batches,
             sampler.sealed_bytes, uplink.delivered)
    return 0
