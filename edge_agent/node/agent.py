"""`edge-agent run`: wires sensors, sampler, store and uplink, and stops cleanly on SIGTERM."""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable
from types import FrameType

from edge_agent import __version__, dsp
from edge_agent.config import AgentConfig, store_path
from edge_agent.node.hardware import Hardware, SimulatedHardware
from edge_agent.node.sampler import Sampler
from edge_agent.node.sdnotify import Notifier, Watchdog, watchdog_interval
from edge_agent.node.store import BatchStore, ensure_private_dir
from edge_agent.node.sysinfo import SystemProbe
from edge_agent.node.uplink import Uplink

log = logging.getLogger("edge_agent.service")

UPLINK_STALL = 15.0  # s without a turn of the uplink loop before the watchdog is withheld


def progress_checks(
    sampler: Sampler, uplink: Uplink, flush_interval: float
) -> list[Callable[[float], str | None]]:
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


class Agent:
    """The agent: sampler on the calling thread, uplink on its own, systemd in the loop.

    Made, it has opened its queue and its hardware; ``run()`` starts the uplink and
    samples until SIGTERM/SIGINT, which stop it after sealing what is open, then closes
    everything. SIGHUP reloads the configuration file: the open batches are sealed under
    the old configuration, then the new one runs (a new uplink when the MQTT settings or
    the node id changed); an invalid file is rejected with its error logged, and the old
    configuration keeps running.
    """

    def __init__(
        self,
        cfg: AgentConfig,
        *,
        simulate: bool,
        config_path: str | None = None,
        overrides: dict | None = None,
    ) -> None:
        self.cfg = cfg
        self.simulate = simulate
        self.config_path = config_path
        self.overrides = overrides or {}
        self.stop_event = threading.Event()
        self.reload_event = threading.Event()
        self.reloads = 0
        self.rejected_reloads = 0
        self.next_health = 0.0  # right after start, then every health_interval

        os.umask(0o077)  # the queue, its WAL and everything else we write: owner only
        ensure_private_dir(cfg.state_dir)
        path = store_path(cfg)
        # Opened first, so the start event names the epoch of the batches this run seals
        # (a damaged file is moved aside and logged before it). Its check reads what the
        # run reads first, whatever the queue's size; the whole file is checked, and a
        # damaged one's batches copied in, behind READY (store.background).
        self.store = BatchStore(path, max_size=cfg.store.max_size, policy=cfg.store.policy, recover=True)
        self._recovering = False  # damage found behind READY: the uplink is stopping for it
        log.info(
            "event=start version=%s core=%s node=%s config=%s hash=%s simulate=%s store=%s "
            "epoch=%08x wire_version=%d flush_interval=%gs",
            __version__,
            dsp.IMPLEMENTATION,
            cfg.node_id,
            cfg.source,
            cfg.config_hash,
            simulate,
            path,
            self.store.epoch,
            cfg.mqtt.wire_version,
            cfg.flush_interval,
        )
        if cfg.mqtt.allow_insecure and not cfg.mqtt.broker.tls:
            log.warning(
                "event=insecure_broker broker=%s reason=%r",
                cfg.mqtt.broker.url,
                "mqtt.allow_insecure is set: data and credentials travel unencrypted",
            )
        self.uplink = Uplink(cfg, path)
        probe = SystemProbe()
        self.hardware = self._hardware(cfg)
        self.sampler = Sampler(
            cfg,
            self.store,
            self.hardware.make,
            on_sealed=self.uplink.notify,
            clock_synchronized=lambda: probe.clock().synchronized,
            boot_id=probe.boot_id(),
        )
        self.notifier = Notifier.from_env()
        self.watchdog = Watchdog(
            self.notifier,
            watchdog_interval(),
            progress_checks(self.sampler, self.uplink, cfg.flush_interval),
            status=self.status,
        )

    def _hardware(self, cfg: AgentConfig) -> Hardware | SimulatedHardware:
        return SimulatedHardware(cfg) if self.simulate else Hardware()

    def status(self) -> str:
        n, size = self.store.depth()
        return (
            f"queue={n} batches ({size} B), link={'up' if self.uplink.connected else 'down'}, "
            f"sensors={self.sampler.sensors_up()}/{len(self.sampler.slots)} up"
        )

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGHUP:
            self.reload_event.set()
        else:
            self.stop_event.set()

    def _reload(self) -> None:
        from edge_agent.config import load_config, with_overrides
        from edge_agent.errors import ConfigError

        self.reload_event.clear()
        if self.config_path is None:
            log.warning(
                "event=reload_ignored reason=%r", "running the built-in default node, no file to re-read"
            )
            return
        try:
            new = with_overrides(load_config(self.config_path), **self.overrides)
            if store_path(new) != store_path(self.cfg):
                raise ConfigError(
                    f"{self.config_path}: state_dir/store.path: the queue cannot move "
                    f"while running (restart the service to move it)"
                )
        except ConfigError as exc:
            self.rejected_reloads += 1
            log.error("event=reload_rejected error=%r keeping=%s", str(exc), self.cfg.config_hash)
            return
        self.notifier.reloading()
        old = self.cfg
        old_hardware, self.hardware = self.hardware, self._hardware(new)
        self.sampler.reconfigure(new, self.hardware.make)  # closes the old drivers
        old_hardware.close()
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
        log.info(
            "event=reloaded config=%s hash=%s previous=%s sensors=%d",
            new.source,
            new.config_hash,
            old.config_hash,
            len(new.sensors),
        )

    def _store_damage(self) -> bool:
        """Damage the check behind READY found: the uplink is stopped (its connections are
        to the file), the store recovers as at a start, a new uplink starts. The sampler
        seals on meanwhile; what it seals into the damaged file is salvaged with the rest.
        Whether that is under way (a reload waits for it)."""
        bg = self.store.background
        if bg is None or bg.damage is None:
            return False
        if not self._recovering:
            self._recovering = True
            self.uplink.stop(drain_timeout=0.0)
        if self.uplink.is_alive():
            return True
        self.uplink.join()
        self.store.recover_now()
        log.warning("event=store_reopened epoch=%08x: the batches sealed from now on", self.store.epoch)
        self.uplink = Uplink(self.cfg, store_path(self.cfg))
        self.sampler.on_sealed = self.uplink.notify
        self.watchdog.checks = progress_checks(self.sampler, self.uplink, self.cfg.flush_interval)
        self.uplink.start()
        if self.store.background is not None:
            self.store.background.start()
        self._recovering = False
        return False

    def _tick(self, now: float) -> float:
        if not self._store_damage() and self.reload_event.is_set():
            self._reload()
        if now >= self.next_health:
            self.uplink.post_health(self.sampler.health_part())
            self.next_health = now + self.cfg.health_interval
        # Wake at least every second so a SIGHUP is acted on promptly.
        return min(self.watchdog.tick(now), self.next_health, now + 1.0)

    def _on_ready(self) -> None:
        self.notifier.ready(self.status())
        log.info(
            "event=ready sensors_up=%d sensors=%d watchdog=%s",
            self.sampler.sensors_up(),
            len(self.sampler.slots),
            f"{self.watchdog.interval:g}s" if self.watchdog.interval else "off",
        )
        if self.store.background is not None:
            self.store.background.start()  # the whole file's check, a damaged one's salvage

    def run(self) -> int:
        """Run until SIGTERM/SIGINT; seal and commit open batches, then close everything."""
        signals = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
        previous = {s: signal.signal(s, self._on_signal) for s in signals}
        self.uplink.start()
        try:
            self.sampler.run(self.stop_event, on_ready=self._on_ready, tick=self._tick)
        finally:
            self.notifier.stopping()
            self.hardware.close()
            self.store.close()
            self.uplink.stop()
            self.uplink.join()
            for s, handler in previous.items():
                signal.signal(s, handler)
            self.notifier.close()
        log.info(
            "event=stop sealed_batches=%d sealed_bytes=%d delivered=%d reloads=%d",
            self.sampler.sealed_batches,
            self.sampler.sealed_bytes,
            self.uplink.delivered,
            self.reloads,
        )
        return 0
