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
from edge_agent.node.sampler import Sampler
from edge_agent.node.sdnotify import Notifier, Watchdog, watchdog_interval
from edge_agent.node.store import BatchStore, ensure_private_dir
from edge_agent.node.sysinfo import SystemProbe
from edge_agent.node.uplink import Uplink

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


def simulated_buses(cfg: AgentConfig) -> dict[int, I2CBus]:
    """One SimulatedSMBus per bus number of the configuration, a simulator per I2C sensor on it."""
    buses: dict[int, I2CBus] = {}
    for s in cfg.sensors:
        if SENSOR_TYPES[s.type].BUS != "i2c" or s.sim_absent:
            continue
        if s.bus not in buses:
            buses[s.bus] = I2CBus(SimulatedSMBus(), name=f"sim-i2c-{s.bus}")
        sm = buses[s.bus]._smbus
        if s.address not in sm.devices:
            sm.attach(s.address, SIMULATORS[s.type](s.sim, **s.driver_kwargs()))
    return buses


def simulated_factory(cfg: AgentConfig) -> Callable[[SensorConfig], Sensor]:
    """Sensors on simulated buses (see simulated_buses); GPIO devices on gpiozero's
    MockFactory, driven by their simulators (``make.stop()`` ends those). ``make.sims``
    maps each present sensor's name to its simulator, for injecting faults."""
    from gpiozero.pins.mock import MockFactory

    buses = simulated_buses(cfg)
    pins = MockFactory()
    sims, running = {}, []
    for s in cfg.sensors:
        if s.sim_absent:
            continue
        if SENSOR_TYPES[s.type].BUS == "gpio":
            sims[s.name] = SIMULATORS[s.type](s.sim, **s.driver_kwargs())
            sims[s.name].start(pins)
            running.append(sims[s.name])
        else:
            sims[s.name] = buses[s.bus]._smbus.devices[s.address]

    def make(s: SensorConfig) -> Sensor:
        cls = SENSOR_TYPES[s.type]
        if cls.BUS == "gpio":
            return cls(pin_factory=pins, **s.driver_kwargs())
        if s.bus not in buses:  # every chip on this bus is absent
            buses[s.bus] = I2CBus(SimulatedSMBus(), name=f"sim-i2c-{s.bus}")
        return cls(bus=buses[s.bus], address=s.address, **s.driver_kwargs())

    make.sims = sims
    make.stop = lambda: [sim.stop() for sim in running]
    return make


def hardware_factory(s: SensorConfig) -> Sensor:
    cls = SENSOR_TYPES[s.type]
    if cls.BUS == "gpio":
        return cls(**s.driver_kwargs())  # gpiozero's default pin factory
    return cls(bus=I2CBus.open(s.bus), address=s.address, **s.driver_kwargs())


class Agent:
    """The running agent: sampler on the calling thread, uplink on its own, systemd in the loop.

    SIGTERM/SIGINT stop it after sealing what is open. SIGHUP reloads the
    configuration file: the open batches are sealed under the old configuration,
    then the new one runs (a new uplink when the MQTT settings or the node id
    changed); an invalid file is rejected with its error logged, and the old
    configuration keeps running.
    """

    def __init__(self, cfg: AgentConfig, *, simulate: bool, config_path: str | None = None,
                 overrides: dict | None = None) -> None:
        self.cfg = cfg
        self.simulate = simulate
        self.config_path = config_path
        self.overrides = overrides or {}
        self.stop_event = threading.Event()
        self.reload_event = threading.Event()
        self.reloads = 0
        self.rejected_reloads = 0

    def _factory(self, cfg: AgentConfig):
        return simulated_factory(cfg) if self.simulate else hardware_factory

    def status(self) -> str:
        n, size = self.store.depth()
        return (f"queue={n} batches ({size} B), link={'up' if self.uplink.connected else 'down'}, "
                f"sensors={self.sampler.sensors_up()}/{len(self.sampler.slots)} up")

    def _on_signal(self, signum, frame) -> None:
        if signum == signal.SIGHUP:
            self.reload_event.set()
        else:
            self.stop_event.set()

    def _reload(self) -> None:
        from edge_agent.config import load_config, with_overrides
        from edge_agent.errors import ConfigError

        self.reload_event.clear()
        if self.config_path is None:
            log.warning("event=reload_ignored reason=%r", "running the built-in default node, no file to re-read")
            return
        try:
            new = with_overrides(load_config(self.config_path), **self.overrides)
            if store_path(new) != store_path(self.cfg):
                raise ConfigError(f"{self.config_path}: state_dir/store.path: the queue cannot move "
                                  f"while running (restart the service to move it)")
        except ConfigError as exc:
            self.rejected_reloads += 1
            log.error("event=reload_rejected error=%r keeping=%s", str(exc), self.cfg.config_hash)
            return
        self.notifier.reloading()
        old = self.cfg
        old_factory, self.factory = self.factory, self._factory(new)
        self.sampler.reconfigure(new, self.factory)
        getattr(old_factory, "stop", lambda: None)()
        if (new.mqtt, new.node_id, new.clock_hold) != (old.mqtt, old.node_id, old.clock_hold):
            self.uplink.stop(drain_timeout=1.0)  # what stays unacknowledged, the new one sends
            self.uplink.join()
            self.uplink = Uplink(new, store_path(new))
            self.sampler.on_sealed = self.uplink.notify
            self.uplink.start()
        self.cfg = new
        self.watchdog.checks = progress_checks(self.sampler, self.uplink, new.flush_interval)
        self.reloads += 1
        self.notifier.ready(self.status())
        log.info("event=reloaded config=%s hash=%s previous=%s sensors=%d", new.source, new.config_hash,
                 old.config_hash, len(new.sensors))

    def _tick(self, now: float) -> float:
        if self.reload_event.is_set():
            self._reload()
        if now >= self.next_health:
            self.uplink.post_health(self.sampler.health_part())
            self.next_health = now + self.cfg.health_interval
        # Wake at least every second so a SIGHUP is acted on promptly.
        return min(self.watchdog.tick(now), self.next_health, now + 1.0)

    def run(self) -> int:
        """Run until SIGTERM/SIGINT; seal and commit open batches before returning."""
        cfg = self.cfg
        os.umask(0o077)  # the queue, its WAL and everything else we write: owner only
        ensure_private_dir(cfg.state_dir)
        path = store_path(cfg)
        log.info("event=start version=%s core=%s node=%s config=%s hash=%s simulate=%s store=%s "
                 "flush_interval=%gs", __version__, dsp.IMPLEMENTATION, cfg.node_id, cfg.source,
                 cfg.config_hash, self.simulate, path, cfg.flush_interval)
        if cfg.mqtt.allow_insecure and not cfg.mqtt.broker.tls:
            log.warning("event=insecure_broker broker=%s reason=%r", cfg.mqtt.broker.url,
                        "mqtt.allow_insecure is set: data and credentials travel unencrypted")
        self.store = BatchStore(path, max_size=cfg.store.max_size, policy=cfg.store.policy, recover=True)
        self.uplink = Uplink(cfg, path)
        probe = SystemProbe()
        self.factory = self._factory(cfg)
        self.sampler = Sampler(cfg, self.store, self.factory, on_sealed=self.uplink.notify,
                               clock_synchronized=lambda: probe.clock().synchronized,
                               boot_id=probe.boot_id())
        self.notifier = Notifier.from_env()
        self.watchdog = Watchdog(self.notifier, watchdog_interval(),
                                 progress_checks(self.sampler, self.uplink, cfg.flush_interval),
                                 status=self.status)
        self.next_health = 0.0  # right after start, then every health_interval

        def on_ready() -> None:
            self.notifier.ready(self.status())
            log.info("event=ready sensors_up=%d sensors=%d watchdog=%s", self.sampler.sensors_up(),
                     len(self.sampler.slots),
                     f"{self.watchdog.interval:g}s" if self.watchdog.interval else "off")

        signals = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
        previous = {s: signal.signal(s, self._on_signal) for s in signals}
        self.uplink.start()
        try:
            self.sampler.run(self.stop_event, on_ready=on_ready, tick=self._tick)
        finally:
            self.notifier.stopping()
            getattr(self.factory, "stop", lambda: None)()
            self.store.close()
            self.uplink.stop()
            self.uplink.join()
            for s, handler in previous.items():
                signal.signal(s, handler)
            self.notifier.close()
        log.info("event=stop sealed_batches=%d sealed_bytes=%d delivered=%d reloads=%d",
                 self.sampler.sealed_batches, self.sampler.sealed_bytes, self.uplink.delivered, self.reloads)
        return 0
