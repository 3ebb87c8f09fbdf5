"""`edge-agent run`: wires sensors, sampler, store and uplink, and stops cleanly on SIGTERM."""

from __future__ import annotations

import functools
import logging
import os
import queue
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Concatenate, ParamSpec

from edge_agent import __version__, dsp
from edge_agent.config import AgentConfig, store_path
from edge_agent.node import hass, reconfigure, store_pending
from edge_agent.node.control import ControlChannel, Handler
from edge_agent.node.delivery import Deleter
from edge_agent.node.hardware import Hardware, SimulatedHardware
from edge_agent.node.health import ReleaseFacts
from edge_agent.node.sampler import Sampler
from edge_agent.node.sdnotify import Notifier, Watchdog, watchdog_interval
from edge_agent.node.status_facts import Snapshots
from edge_agent.node.status_http import StatusServer
from edge_agent.node.store import BatchStore, DiskFullError, ensure_private_dir
from edge_agent.node.store_pending import UnopenedStore
from edge_agent.node.sysinfo import SystemProbe
from edge_agent.node.uplink import CONNECT_TIMEOUT, OFFLINE_WAIT, Uplink

log = logging.getLogger("edge_agent.service")

UPLINK_STALL = 15.0  # s without a turn of the uplink loop before the watchdog is withheld
DRAIN_TIMEOUT = 5.0  # s the uplink may go on sending at a stop


def uplink_stop_bound(drain_timeout: float) -> float:
    """The most an uplink takes to end after ``stop(drain_timeout)``: an attempt under way
    (CONNECT_TIMEOUT, one address) or the drain, its "offline" status, the deleter's end.
    Past it, it is stuck where no timeout of ours reaches (a DNS lookup): left behind."""
    return max(drain_timeout, CONNECT_TIMEOUT) + OFFLINE_WAIT + Deleter.STOP + 1.0


# The most a stop takes after the final seals: the uplink's bound, closing the store (its
# busy wait, BatchStore.CLOSE_BUSY), the signal thread. systemd/edge-agent.service's
# TimeoutStopSec leaves room for it and for the seals (tests/test_agent_stop.py).
STOP_BOUND = uplink_stop_bound(DRAIN_TIMEOUT) + BatchStore.CLOSE_BUSY + 1.0

SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
P = ParamSpec("P")


class SignalRelay:
    """SIGTERM/SIGINT set ``stop``, SIGHUP sets ``reload``, with no lock taken in the handler.

    A Python signal handler runs on the main thread between two bytecodes, wherever that
    thread is, inside ``Event.wait()`` too, which holds the event's lock for a few bytecodes
    around its real wait; a handler that called ``Event.set()`` there waited for that lock
    forever, the main thread on itself (the signal module's documentation: locks "should not
    be used within signal handlers"). The handler only puts the signal's number on a
    SimpleQueue, whose put() is reentrant (made for this), and a thread of its own sets the
    events. Installed when the agent is made, so a SIGTERM while the store opens (a salvage
    can take a while) stops the agent cleanly after it rather than killing it half-way.
    """

    def __init__(self, stop: threading.Event, reload: threading.Event) -> None:
        self.stop, self.reload = stop, reload
        self.received: queue.SimpleQueue[int | None] = queue.SimpleQueue()
        self.previous = {s: signal.signal(s, self._handler) for s in SIGNALS}
        self.thread = threading.Thread(target=self._relay, name="signals", daemon=True)
        self.thread.start()

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        self.received.put(signum)  # nothing else here: see the class's docstring

    def _relay(self) -> None:
        while (signum := self.received.get()) is not None:
            (self.reload if signum == signal.SIGHUP else self.stop).set()

    def restore(self) -> None:
        """The previous handlers back, the relay's thread ended (idempotent)."""
        for s, handler in self.previous.items():
            signal.signal(s, handler)
        self.previous = {}
        self.received.put(None)
        self.thread.join(timeout=1.0)


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


def _restores_signals(init: Callable[Concatenate[Agent, P], None]) -> Callable[Concatenate[Agent, P], None]:
    """An Agent that fails to open (its store, its hardware) gives the signals back."""

    @functools.wraps(init)
    def wrapper(self: Agent, *args: P.args, **kwargs: P.kwargs) -> None:
        try:
            init(self, *args, **kwargs)
        except BaseException:
            if hasattr(self, "signals"):
                self.signals.restore()
            raise

    return wrapper


class Agent:
    """The agent: sampler on the calling thread, uplink on its own, systemd in the loop.

    Made, it has opened its queue and its hardware; ``run()`` starts the uplink and
    samples until SIGTERM/SIGINT, which stop it after sealing what is open, then closes
    everything. SIGHUP reloads the configuration file: the open batches are sealed under
    the old configuration, then the new one runs (a new uplink when the MQTT settings or
    the node id changed); an invalid file is rejected with its error logged, and the old
    configuration keeps running.
    """

    @_restores_signals
    def __init__(
        self,
        cfg: AgentConfig,
        *,
        simulate: bool,
        config_path: str | None = None,
        overrides: dict | None = None,
        control: Callable[[Agent], Handler] | None = None,
        release: ReleaseFacts | None = None,
    ) -> None:
        self.cfg = cfg
        self.release = release  # what the launcher runs (health, status): fleet.release.running
        self.simulate = simulate
        self.config_path = config_path
        self.overrides = overrides or {}
        self.stop_event = threading.Event()
        self.reload_event = threading.Event()
        self.signals = SignalRelay(self.stop_event, self.reload_event)  # before the store opens
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
        self.store: BatchStore | UnopenedStore
        try:
            self.store = BatchStore(path, max_size=cfg.store.max_size, policy=cfg.store.policy, recover=True)
        except DiskFullError as exc:  # not damage: sampling goes on, the queue opens with space
            self.store = UnopenedStore(path, exc, max_size=cfg.store.max_size, policy=cfg.store.policy)
            log.error("event=store_unavailable reason=%r retry_every=%gs", str(exc), store_pending.RETRY)
        self.next_store_try = time.monotonic() + store_pending.RETRY
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
        probe = SystemProbe()
        self.hardware = self._hardware(cfg)
        self.sampler = Sampler(
            cfg,
            self.store,
            self.hardware.make,
            clock_synchronized=lambda: probe.clock().synchronized,
            boot_id=probe.boot_id(),
            simulated=self.simulate,
        )
        # the fleet's topics (node/control.py), read by what cli/run.py gives: edge_agent.fleet
        self.control = ControlChannel([]) if control is not None else None
        self.control_handler = control(self) if control is not None else None
        self.uplink = self._new_uplink(cfg)
        self.notifier = Notifier.from_env()
        self.snapshots = Snapshots()  # the status page's view, taken on this thread
        self.next_snapshot = 0.0
        self.http = StatusServer.open(cfg, self.snapshots, {"reload": self.reload_event.set}, self.release)
        self.watchdog = Watchdog(
            self.notifier,
            watchdog_interval(),
            progress_checks(self.sampler, self.uplink, cfg.flush_interval),
            status=self.status,
        )

    def _hardware(self, cfg: AgentConfig) -> Hardware | SimulatedHardware:
        return SimulatedHardware(cfg) if self.simulate else Hardware()

    def status(self) -> str:
        if isinstance(self.store, UnopenedStore):
            queue = "not open (the disk is full)"
        else:
            n, size = self.store.depth()
            queue = f"{n} batches ({size} B)"
        return (
            f"queue={queue}, link={'up' if self.uplink.connected else 'down'}, "
            f"delivered={self.uplink.delivered}, sensors={self.sampler.sensors_up()}/{len(self.sampler.slots)} up"
        )

    def link_up(self) -> bool:
        return self.uplink.connected

    def command(self, name: str) -> dict | None:
        """A fleet command (edge_agent.fleet.commands), on this thread; a report's facts."""
        if name == "reload":
            self.reload_event.set()  # at the loop's next turn, as a SIGHUP
        elif name == "health":
            self.next_health = 0.0
        elif name == "flush":
            self.sampler.seal()
        elif name == "restart":
            self.stop_event.set()  # a clean stop; the service manager starts it again
        elif name == "report":
            return self.sampler.health_part()
        return None

    def _stop_uplink(self, drain_timeout: float) -> float:
        """Tell the uplink to stop; returns the monotonic time by which it has ended."""
        self.uplink.stop(drain_timeout=drain_timeout)
        if self.uplink.ident is None:  # never started: the queue never opened
            return time.monotonic()
        return time.monotonic() + uplink_stop_bound(drain_timeout)

    def _join_uplink(self, deadline: float) -> None:
        """Wait for the uplink told to stop, until ``deadline``: a thread stuck past it (a DNS
        lookup, a TLS handshake that trickles) is left behind, a daemon, and the stop goes
        on; what it had in flight is in the store and sent again next time."""
        if self.uplink.ident is not None:
            self.uplink.join(timeout=max(0.0, deadline - time.monotonic()))
        if self.uplink.is_alive():
            log.error(
                "event=uplink_stop_timeout reason=%r",
                "the uplink thread did not end within its bound: left behind, its batches stay queued",
            )

    def _new_uplink(self, cfg: AgentConfig) -> Uplink:
        """An uplink for ``cfg``, told of each seal, and holding back batches of an
        unsynchronised clock while the sampler restamps them (so they leave with true times)."""
        if self.control is not None and self.control_handler is not None:
            self.control.topics = self.control_handler.topics(cfg)
        r, c = self.sampler.restamping, self.control
        uplink = Uplink(cfg, store_path(cfg), restamping=r, control=c, release=self.release)

        def sealed() -> None:
            uplink.notify()
            if cfg.home_assistant.discovery:  # each stream's values for Home Assistant (node/hass.py)
                uplink.post_states(hass.states(cfg, self.sampler))

        self.sampler.on_sealed = sealed
        return uplink

    def _reload(self) -> None:
        reconfigure.reload_file(self)

    def apply_config(self, new: AgentConfig) -> None:
        """Run ``new`` (validated, the queue in the same place) from the next sample on."""
        reconfigure.apply(self, new)

    def _store_damage(self) -> bool:
        """Damage the check behind READY found: the uplink is stopped (its connections are
        to the file), the store recovers as at a start, a new uplink starts. The sampler
        seals on meanwhile; what it seals into the damaged file is salvaged with the rest.
        Whether that is under way (a reload waits for it)."""
        bg = self.store.background
        if bg is None or bg.damage is None or isinstance(self.store, UnopenedStore):
            return False
        if not self._recovering:
            self._recovering = True
            self.uplink.stop(drain_timeout=0.0)
        if self.uplink.is_alive():
            return True
        self.uplink.join()
        self.store.recover_now()
        log.warning("event=store_reopened epoch=%08x: the batches sealed from now on", self.store.epoch)
        self.uplink = self._new_uplink(self.cfg)
        self._watch()
        self.uplink.start()
        if self.store.background is not None:
            self.store.background.start()
        self._recovering = False
        return False

    def _hand_over(self) -> None:
        """The few deletes a live link acknowledges each cycle ride in the next seal's
        transaction (store_handoff), each waiting at most two flush intervals for one."""
        self.store.take_deletes(wait=2 * self.cfg.flush_interval + 1.0)

    def _watch(self) -> None:
        """The watchdog's conditions for what runs: no uplink to watch before the queue opens."""
        checks = progress_checks(self.sampler, self.uplink, self.cfg.flush_interval)
        self.watchdog.checks = checks[:1] if isinstance(self.store, UnopenedStore) else checks

    def _open_store(self, now: float) -> None:
        """Try again to open a queue a full disk kept closed; once it opens, the sampler
        takes it and the uplink starts, as they would have at the start."""
        if not isinstance(self.store, UnopenedStore) or now < self.next_store_try:
            return
        self.next_store_try = now + store_pending.RETRY
        store = self.store.open()
        if store is None:
            return
        unstored, attempts = dict(self.store.unstored), self.store.attempts
        self.sampler.adopt(store)
        self.store = store
        self._hand_over()
        log.warning(
            "event=store_opened epoch=%08x attempts=%d unstored=%s",
            store.epoch,
            attempts,
            ",".join(f"{k}:{v}" for k, v in sorted(unstored.items())) or "-",
        )
        self._watch()
        self.uplink.start()
        if store.background is not None:
            store.background.start()

    def _tick(self, now: float) -> float:
        self._open_store(now)
        if not self._store_damage():  # (a recovery under way: a change of configuration waits)
            if self.reload_event.is_set():
                self._reload()
            if self.control is not None and self.control_handler is not None:
                self._control(self.control, self.control_handler, now)
        if now >= self.next_snapshot:
            self.snapshots.take(
                self.sampler, self.uplink, self.cfg, not isinstance(self.store, UnopenedStore)
            )
            self.next_snapshot = now + 1.0
        if now >= self.next_health:
            self.uplink.post_health(self.sampler.health_part())
            self.next_health = now + self.cfg.health_interval
        # Wake at least every second so a SIGHUP is acted on promptly.
        return min(self.watchdog.tick(now), self.next_health, now + 1.0)

    def _control(self, channel: ControlChannel, handler: Handler, now: float) -> None:
        try:
            for message in channel.take():
                handler.handle(message)
            handler.tick(now)
        except Exception as exc:  # the fleet's part must not stop sampling: said, and on
            log.exception("event=control_failed error=%r", str(exc))

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
        """Run until SIGTERM/SIGINT; seal and commit open batches, then close everything.

        The stop takes at most STOP_BOUND after the final seals: the uplink drains and is
        waited for (bounded) while the hardware closes, and the store closes last, when no
        other connection writes, so its open marker's DELETE waits on no lock.
        """
        self._watch()
        if not isinstance(self.store, UnopenedStore) and self.uplink.ident is None:
            self.uplink.start()  # (a queue full at the start: when it opens, _open_store)
        self._hand_over()  # the pages a cycle's deletes touch are written once, with a seal
        if self.http is not None:
            self.http.start()
        try:
            self.sampler.run(self.stop_event, on_ready=self._on_ready, tick=self._tick)
        finally:
            self.store.take_deletes(None)  # sealing is over: the deleter does them all
            self.notifier.stopping()
            uplink_ends = self._stop_uplink(drain_timeout=DRAIN_TIMEOUT)
            self.hardware.close()
            if self.http is not None:
                self.http.stop()
            self._join_uplink(uplink_ends)
            self.store.close()
            self.signals.restore()
            self.notifier.close()
        log.info(
            "event=stop sealed_batches=%d sealed_bytes=%d delivered=%d reloads=%d",
            self.sampler.sealed_batches,
            self.sampler.sealed_bytes,
            self.uplink.delivered,
            self.reloads,
        )
        return 0
