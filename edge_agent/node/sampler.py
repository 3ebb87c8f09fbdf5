"""The sampler: drivers -> channel chains -> open batches -> sealed batches in the store.

One thread owns all of it. Sensors are read on their own schedule on the
monotonic clock; every flush interval each stream's open batch is encoded once
and committed once. Nothing here waits on the network.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from drivers.base import ChecksumError, Sensor
from drivers.registry import SENSOR_TYPES
from edge_agent import dsp, wire
from edge_agent.config import AgentConfig, ChannelConfig, SensorConfig
from edge_agent.node.store import DRIVER_STATE, BatchStore, DiskFullError

log = logging.getLogger("edge_agent.sampler")

REINIT_INTERVAL = 30.0  # seconds before the first attempt to bring a failed sensor up again
REINIT_MAX = 300.0      # ... doubling per failed attempt up to this
FAILING_AFTER = 5       # consecutive failed sample slots that mark a sensor failing (closed, re-initialised)
SLOT_TOLERANCE = 0.1    # a first-attempt read this close to its slot (fraction of the interval) is stamped with it
READ_RETRIES = 3        # retries of a failed read within its sample slot ...
RETRY_DELAY = 0.02      # ... the first after this many seconds, doubling, all within half the interval
EXPIRE_INTERVAL = 60.0  # seconds between passes of the store's time to live
STATE_SAVE_INTERVAL = 60.0  # seconds between saves of the filter state (and at a clean stop)
STATE_MAX_AGE = 600.0   # a saved filter state older than this (or of another boot) is not restored


class ChannelPipeline:
    """One channel: its configured chain and the points it kept since the last seal.

    Points are kept on the monotonic clock (ms); they get wall-clock times only
    when sealed, so a wall-clock step between sampling and sealing (NTP's first
    sync, a manual set) never reaches the data.
    """

    def __init__(self, cfg: ChannelConfig, low: float = -math.inf, high: float = math.inf) -> None:
        self.cfg = cfg
        self.low, self.high = low, high  # the chip's physical range for this channel
        self.spec_json = json.dumps(cfg.chain_spec())
        self.chain = dsp.Chain(cfg.chain_spec())
        self.mono_ms: list[int] = []
        self.values_q: list[int] = []
        self.flags: list[tuple[int, int]] = []  # (index in this batch, quality flags)
        self.last_raw: float | None = None
        self.same_since = 0.0

    def _keep(self, point) -> None:
        if point is not None:
            t, y = point
            self.mono_ms.append(round(t * 1000))
            self.values_q.append(wire.quantise(y, self.cfg.resolution))

    def push(self, mono: float, value: float) -> None:
        """One good sample: monotonic time (s) and value, through the chain."""
        self._keep(self.chain.push(mono, value))

    def check(self, mono: float, value: float, stuck_after: float) -> int:
        """Quality flags of a raw sample (0: good): outside the chip's range, or the same
        raw value for longer than ``stuck_after`` seconds (0: no stuck check)."""
        if not self.low <= value <= self.high:
            return wire.QUALITY_OUT_OF_RANGE
        if value != self.last_raw:
            self.last_raw, self.same_since = value, mono
            return 0
        if stuck_after > 0 and mono - self.same_since >= stuck_after:
            return wire.QUALITY_STUCK
        return 0

    def flag(self, mono: float, value: float, quality: int) -> None:
        """Keep a bad sample as it came, flagged, outside the chain (it never enters a filter)."""
        if not math.isfinite(value):
            return  # nothing a payload could carry
        self.flags.append((len(self.mono_ms), quality))
        self._keep((mono, value))

    def take(self, wall_offset_ms: int) -> wire.ChannelData | None:
        """The kept points as a batch channel stamped ``mono + wall_offset``; empties the open batch.

        The chain's open segment is closed first, so the batch decodes on its own.
        """
        self._keep(self.chain.flush())
        if not self.mono_ms:
            return None
        data = wire.ChannelData(self.cfg.name, self.cfg.unit, self.cfg.resolution,
                                tuple(t + wall_offset_ms for t in self.mono_ms), tuple(self.values_q),
                                tuple(self.flags), bin_width=self.cfg.bin_width)
        self.mono_ms, self.values_q, self.flags = [], [], []
        return data


def restamp_payload(payload: bytes, shift_ms: int) -> bytes:
    """A sealed payload with its times shifted by ``shift_ms`` and its clock-unsynced flag
    cleared (wire.restamp); its version stays (at least 2, for old backbones)."""
    batch = wire.restamp(wire.decode(payload), shift_ms)
    return wire.encode(batch, version=max(2, batch.version))


_QUALITY_KINDS = {wire.QUALITY_OUT_OF_RANGE: "out_of_range", wire.QUALITY_STUCK: "stuck",
                  wire.QUALITY_WARMING_UP: "warming_up"}


def _driver_state(driver) -> dict | None:
    """A driver's own state to keep (drivers without any may not define get_state)."""
    get = getattr(driver, "get_state", None)
    return get() if get is not None else None


def _pipelines(sc: SensorConfig) -> dict[str, ChannelPipeline]:
    specs = {c.name: c for c in SENSOR_TYPES[sc.type].CHANNELS}
    return {c.name: ChannelPipeline(c, specs[c.name].low, specs[c.name].high) for c in sc.channels}


@dataclass
class SensorSlot:
    """A configured sensor, its driver (None while down) and its schedule."""

    cfg: SensorConfig
    factory: Callable[[SensorConfig], Sensor]
    channels: dict[str, ChannelPipeline]
    driver: Sensor | None = None
    next_due: float = 0.0
    next_init: float = 0.0
    missed: int = 0             # sample slots that gave no reading, all retries failed
    attempt: int = 0            # failed reads so far in the current slot
    retry_at: float | None = None
    slot_time: float | None = None  # monotonic time the current slot is scheduled at
    slot_deadline: float = 0.0  # no retry of the current slot after this
    consecutive_failures: int = 0
    init_failures: int = 0
    state: str = "down"  # up; failing (closed after failed reads, to be brought up again); down
    samples: int = 0
    errors_by_kind: dict[str, int] = field(default_factory=dict)

    @property
    def read_errors(self) -> int:
        """Failed read attempts (bus errors and checksums), retried ones included."""
        return self.errors_by_kind.get("read", 0) + self.errors_by_kind.get("checksum", 0)

    def count_error(self, kind: str) -> None:
        self.errors_by_kind[kind] = self.errors_by_kind.get(kind, 0) + 1


class Sampler:
    """Reads sensors, runs chains, seals batches into the store every flush interval."""

    def __init__(self, cfg: AgentConfig, store: BatchStore,
                 factory: Callable[[SensorConfig], Sensor],
                 on_sealed: Callable[[], None] = lambda: None,
                 clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time,
                 clock_synchronized: Callable[[], bool] = lambda: True,
                 boot_id: str | None = None) -> None:
        self.cfg = cfg
        self.store = store
        self.on_sealed = on_sealed
        self.clock = clock
        self.wall = wall
        self.clock_synchronized = clock_synchronized
        self.boot_id = boot_id
        self.clock_synced: bool | None = None  # as last seen at a seal
        self.restamped = 0
        self.unstored: dict[str, int] = {}  # batches lost to a full disk, per stream
        self.next_expire = 0.0
        self.next_state_save = clock() + STATE_SAVE_INTERVAL
        self.slots = [SensorSlot(s, factory, _pipelines(s)) for s in cfg.sensors]
        self.restored_states = self._restore_states()
        self.sealed_batches = 0
        self.sealed_bytes = 0
        self.last_seal_cycle = clock()  # monotonic time the flush schedule last ran

    def _retry_later(self, slot: SensorSlot, now: float) -> float:
        delay = min(REINIT_MAX, REINIT_INTERVAL * 2 ** min(slot.init_failures, 10))
        slot.init_failures += 1
        slot.next_init = now + delay
        return delay

    def _bring_up(self, slot: SensorSlot, now: float) -> None:
        try:
            slot.driver = slot.factory(slot.cfg)
            saved = self._driver_states.get(slot.cfg.name)
            if saved is not None:
                slot.driver.set_state(json.loads(saved))
            slot.state = "up"
            slot.init_failures = 0
            slot.consecutive_failures = 0
            slot.next_due = max(slot.next_due, now)
            log.info("event=sensor_up sensor=%s type=%s address=0x%02x", slot.cfg.name,
                     slot.cfg.type, slot.cfg.address)
        except OSError as exc:
            slot.count_error("init")
            if slot.state != "failing":
                slot.state = "down"
            delay = self._retry_later(slot, now)
            log.warning("event=sensor_down sensor=%s error=%r retry_in=%.0fs", slot.cfg.name, str(exc), delay)

    def sample(self, slot: SensorSlot) -> None:
        """One reading of one sensor through its channel chains.

        A failed read is retried within its sample slot, after RETRY_DELAY doubling, at
        most READ_RETRIES times and never later than half an interval after the slot
        began; the run loop serves the other sensors in between. A slot that gives no
        reading is counted as missed and the next one comes on schedule; after
        FAILING_AFTER missed slots in a row the sensor is marked failing: closed, and
        brought up again later (a chip unplugged and plugged back is picked up without
        a restart).
        """
        slot.retry_at = None
        try:
            reading = slot.driver.read()
        except OSError as exc:
            slot.attempt += 1
            slot.count_error("checksum" if isinstance(exc, ChecksumError) else "read")
            now = self.clock()
            delay = RETRY_DELAY * 2 ** (slot.attempt - 1)
            if slot.attempt <= READ_RETRIES and now + delay <= slot.slot_deadline:
                slot.retry_at = now + delay
                log.info("event=read_retry sensor=%s error=%r attempt=%d retry_in=%.3fs", slot.cfg.name,
                         str(exc), slot.attempt, delay)
                return
            slot.missed += 1
            slot.consecutive_failures += 1
            log.warning("event=read_failed sensor=%s error=%r attempts=%d missed=%d", slot.cfg.name,
                        str(exc), slot.attempt, slot.missed)
            if slot.consecutive_failures >= FAILING_AFTER:
                state = _driver_state(slot.driver)
                if state is not None:  # its totals come back with the next bring-up
                    self._driver_states[slot.cfg.name] = json.dumps(state)
                slot.driver.close()
                slot.driver = None
                slot.state = "failing"
                slot.init_failures = 0
                delay = self._retry_later(slot, self.clock())
                log.error("event=sensor_failing sensor=%s consecutive_failures=%d reinit_in=%.0fs",
                          slot.cfg.name, slot.consecutive_failures, delay)
            return
        slot.consecutive_failures = 0
        slot.samples += 1
        mono = self._stamp(slot, reading.mono)
        for name, pipe in slot.channels.items():
            value = reading.values.get(name)
            if value is None:
                continue
            quality = reading.quality or pipe.check(mono, value, slot.cfg.stuck_after)
            if quality:
                kind = _QUALITY_KINDS.get(quality, "flagged")
                slot.count_error(kind)
                if kind != "warming_up":  # expected after power-on: counted, not logged
                    log.warning("event=bad_sample sensor=%s channel=%s kind=%s value=%r", slot.cfg.name,
                                name, kind, value)
                pipe.flag(mono, value, quality)
            else:
                pipe.push(mono, value)

    @staticmethod
    def _stamp(slot: SensorSlot, mono: float) -> float:
        """The time a sample is stamped with: its slot on the sensor's schedule when it was read
        within SLOT_TOLERANCE of an interval from it at the first attempt, which is the rule,
        so that the wire format stores a regular series as its schedule alone; else the
        time it was read (a retry, a late loop: an exception on the wire)."""
        if slot.slot_time is not None and slot.attempt == 0 and \
                abs(mono - slot.slot_time) <= SLOT_TOLERANCE * slot.cfg.interval:
            return slot.slot_time
        return mono

    def _pipes(self):
        for slot in self.slots:
            for name, pipe in slot.channels.items():
                yield slot.cfg.name, name, pipe

    def _restore_states(self) -> int:
        """Filter state saved by this boot's previous run, for chains configured the same;
        driver states (totals) whatever their age, applied when each driver comes up."""
        self._driver_states = self.store.driver_states()
        saved = self.store.chain_states(self.boot_id, self.clock() - STATE_MAX_AGE)
        n = 0
        for stream, channel, pipe in self._pipes():
            spec_state = saved.get((stream, channel))
            if spec_state and spec_state[0] == pipe.spec_json:
                try:
                    pipe.chain.set_state(json.loads(spec_state[1]))
                    n += 1
                except (ValueError, TypeError) as exc:
                    log.warning("event=state_not_restored stream=%s channel=%s error=%r", stream, channel, str(exc))
        if n:
            log.info("event=filter_state_restored channels=%d", n)
        return n

    def save_states(self) -> None:
        """Save every chain's state (after a seal, so lossy stages hold nothing)."""
        rows = [(stream, channel, pipe.spec_json, json.dumps(pipe.chain.get_state()))
                for stream, channel, pipe in self._pipes()]
        for slot in self.slots:
            state = _driver_state(slot.driver)
            if state is not None:
                self._driver_states[slot.cfg.name] = json.dumps(state)
                rows.append((slot.cfg.name, DRIVER_STATE, "", self._driver_states[slot.cfg.name]))
        try:
            self.store.save_chain_states(rows, self.boot_id, self.clock())
        except DiskFullError as exc:
            log.error("event=state_not_saved reason=%r", str(exc))

    def _expire(self, synced: bool) -> None:
        now = self.clock()
        if now < self.next_expire:
            return
        self.next_expire = now + EXPIRE_INTERVAL
        try:
            self.store.expire(self.cfg.store.ttl, now=self.wall(), now_mono=now, boot_id=self.boot_id,
                              wall_trusted=synced)
        except DiskFullError as exc:
            log.error("event=expire_failed reason=%r", str(exc))

    def _check_clock(self, wall_offset_ms: int) -> bool:
        """Note a change of sync state; on sync, restamp this boot's unsynced batches."""
        synced = self.clock_synchronized()
        if synced != self.clock_synced:
            log.info("event=clock state=%s", "synchronized" if synced else "unsynchronized")
            self.clock_synced = synced
        if synced and self.boot_id is not None:
            n = self.store.restamp_unsynced(self.boot_id, wall_offset_ms, restamp_payload)
            if n:
                self.restamped += n
                log.info("event=batches_restamped count=%d boot_id=%s", n, self.boot_id)
        return synced

    def seal(self) -> int:
        """Seal every stream's open batch into the store; returns how many were sealed."""
        wall_offset_ms = round((self.wall() - self.clock()) * 1000)
        synced = self._check_clock(wall_offset_ms)
        self._expire(synced)
        flags = 0 if synced else wire.FLAG_CLOCK_UNSYNCED
        sealed = 0
        for slot in self.slots:
            channels = tuple(c for c in (p.take(wall_offset_ms) for p in slot.channels.values())
                             if c is not None)
            if not channels:
                continue
            t0 = min(min(c.times_ms) for c in channels)
            stream = slot.cfg.name
            period_ms = max(1, round(slot.cfg.interval * 1000))

            def encode(seq: int, channels=channels, t0=t0, stream=stream, period_ms=period_ms) -> bytes:
                return wire.encode(wire.Batch(self.cfg.node_id, stream, seq, t0, channels, flags=flags,
                                              period_ms=period_ms), version=self.cfg.mqtt.wire_version)

            try:
                seq, size = self.store.seal(stream, encode, self.wall(), clock_unsynced=not synced,
                                            boot_id=self.boot_id, wall_offset_ms=wall_offset_ms,
                                            sealed_mono=self.clock())
            except DiskFullError as exc:
                # Keep sampling: count what could not be stored; storing resumes with space.
                self.unstored[stream] = self.unstored.get(stream, 0) + 1
                self.store.count_unstored(stream)
                log.error("event=batch_unstored stream=%s reason=%r unstored=%d", stream, str(exc),
                          self.unstored[stream])
                continue
            if size == 0:
                continue  # refused by the cap: counted by the store
            n = sum(len(c.times_ms) for c in channels)
            self.sealed_batches += 1
            self.sealed_bytes += size
            sealed += 1
            log.info("event=batch_sealed stream=%s seq=%d points=%d bytes=%d", stream, seq, n, size)
        if sealed:
            self.on_sealed()
        if self.clock() >= self.next_state_save:
            self.next_state_save = self.clock() + STATE_SAVE_INTERVAL
            self.save_states()
        return sealed

    def reconfigure(self, cfg: AgentConfig, factory: Callable[[SensorConfig], Sensor]) -> None:
        """Seal what is open under the old configuration, then sample under the new one.

        Drivers are closed and brought up again by the run loop; the store and its
        sequence numbers carry on, so nothing sampled is lost and no number repeats.
        """
        self.seal()
        self.save_states()  # drivers' totals too, before they close
        old = {(stream, channel): pipe for stream, channel, pipe in self._pipes()}
        for slot in self.slots:
            if slot.driver is not None:
                slot.driver.close()
        self.cfg = cfg
        now = self.clock()
        self.slots = [SensorSlot(s, factory, _pipelines(s), next_due=now) for s in cfg.sensors]
        for stream, channel, pipe in self._pipes():  # unchanged chains keep their state
            before = old.get((stream, channel))
            if before is not None and before.spec_json == pipe.spec_json:
                pipe.chain.set_state(before.chain.get_state())

    def health_part(self) -> dict:
        """What the sampler owns of the health message: sensors, store recovery, disk-full losses."""
        rec = self.store.recovery
        return {
            "sensors": {s.cfg.name: {"type": s.cfg.type, "state": s.state,
                                     "samples": s.samples, "missed": s.missed,
                                     "errors": dict(s.errors_by_kind)}
                        for s in self.slots},
            "unstored": dict(self.unstored),
            "durable_commits": self.store.commits,
            "store_recovery": None if rec is None else {
                "moved_to": rec.moved_to, "error": rec.error, "salvaged": rec.salvaged,
                "unreadable": rec.unreadable, "at": rec.at},
        }

    @staticmethod
    def _wake(slot: SensorSlot) -> float:
        if slot.driver is None:
            return slot.next_init
        return slot.retry_at if slot.retry_at is not None else slot.next_due

    def sensors_up(self) -> int:
        return sum(1 for s in self.slots if s.driver is not None)

    def run(self, stop: threading.Event, *, on_ready: Callable[[], None] = lambda: None,
            tick: Callable[[float], float] = lambda now: float("inf")) -> None:
        """Sample on schedule until ``stop`` is set, then seal what is open.

        ``on_ready`` is called once every sensor had its first bring-up attempt;
        ``tick(now)`` on every turn of the loop (the watchdog), returning when it
        wants to be called next.
        """
        start = self.clock()
        next_flush = start + self.cfg.flush_interval
        self.last_seal_cycle = start
        for slot in self.slots:
            slot.next_due = start
            self._bring_up(slot, start)
        on_ready()
        try:
            while not stop.is_set():
                now = self.clock()
                for slot in list(self.slots):
                    if slot.driver is None:
                        if now >= slot.next_init:
                            self._bring_up(slot, now)
                        continue
                    if slot.retry_at is not None:
                        if now >= slot.retry_at:
                            self.sample(slot)
                    elif now >= slot.next_due:
                        slot.attempt = 0
                        slot.slot_time = slot.next_due
                        slot.slot_deadline = self.clock() + slot.cfg.interval / 2
                        self.sample(slot)
                        # Keep the grid: skip missed slots instead of bursting to catch up.
                        slot.next_due += slot.cfg.interval * max(1, int((now - slot.next_due) // slot.cfg.interval) + 1)
                if now >= next_flush:
                    self.seal()
                    self.last_seal_cycle = now
                    next_flush += self.cfg.flush_interval * max(1, int((now - next_flush) // self.cfg.flush_interval) + 1)
                next_tick = tick(self.clock())
                wake = min([next_flush, next_tick] + [self._wake(s) for s in self.slots])
                stop.wait(max(0.0, wake - self.clock()))
        finally:
            self.seal()
            self.save_states()
            for slot in self.slots:
                if slot.driver is not None:
                    slot.driver.close()
