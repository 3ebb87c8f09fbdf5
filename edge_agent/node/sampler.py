"""The sampler: drivers -> channel chains -> open batches -> sealed batches in the store.

One thread owns all of it. Sensors are read on their own schedule on the monotonic clock;
every flush interval the streams' open batches are encoded and committed in one transaction.
Nothing here waits on the network. A stream's open batch is in open_batch.py, a sensor's
schedule and counters in sensor_slot.py, the derived streams and the cycle's batches in
derived.py: this module is the loop.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator

from drivers.base import ChecksumError, Sensor
from edge_agent import wire
from edge_agent.config import AgentConfig, SensorConfig
from edge_agent.errors import DiskFullError
from edge_agent.node import store_alarm
from edge_agent.node.derived import Derived
from edge_agent.node.open_batch import QUALITY_KINDS, ChannelPipeline, channel_pipelines, restamp_payload
from edge_agent.node.sensor_slot import SLOT_TOLERANCE, DriverStates, SensorSlot, feed_inputs, restore_chains
from edge_agent.node.store import EXPIRE_CHUNK, EXPIRE_SCAN, BatchStore
from edge_agent.node.store_pending import UnopenedStore

# ChannelPipeline, SensorSlot, SLOT_TOLERANCE and restamp_payload lived here: kept importable
__all__ = ["SLOT_TOLERANCE", "ChannelPipeline", "Sampler", "SensorSlot", "restamp_payload"]

log = logging.getLogger("edge_agent.sampler")
Encode = Callable[[int], bytes]  # a batch's payload once its sequence number is known

REINIT_INTERVAL = 30.0  # seconds before the first attempt to bring a failed sensor up again
REINIT_MAX = 300.0  # ... doubling per failed attempt up to this
FAILING_AFTER = 5  # consecutive failed sample slots that mark a sensor failing (closed, re-initialised)
READ_RETRIES = 3  # retries of a failed read within its sample slot ...
RETRY_DELAY = 0.02  # ... the first after this many seconds, doubling, all within half the interval
EXPIRE_INTERVAL = 60.0  # seconds between passes of the store's time to live (one at the first seal)
RESTAMP_PER_SEAL = 128  # batches restamped per seal once the clock synchronised, the rest at the next
STATE_SAVE_INTERVAL = 60.0  # seconds between saves of the filter state (and at a clean stop)
STATE_MAX_AGE = 600.0  # a saved filter state older than this (or of another boot) is not restored


class Sampler:
    """Reads sensors, runs chains, seals batches into the store every flush interval."""

    def __init__(
        self,
        cfg: AgentConfig,
        store: BatchStore | UnopenedStore,
        factory: Callable[[SensorConfig], Sensor],
        on_sealed: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        clock_synchronized: Callable[[], bool] = lambda: True,
        boot_id: str | None = None,
        simulated: bool = False,  # a derived stream's sim: block applies
    ) -> None:
        self.cfg = cfg
        self.store: BatchStore | UnopenedStore = store
        self.on_sealed = on_sealed
        self.clock = clock
        self.wall = wall
        self.clock_synchronized = clock_synchronized
        self.boot_id = boot_id
        self.clock_synced: bool | None = None  # as last seen at a seal
        self.restamped = 0
        self.restamping = threading.Event()  # set while this boot's unsynced batches remain
        self.unstored: dict[str, int] = {}  # batches lost to a full disk, per stream
        self.next_expire = 0.0
        self.next_state_save = clock() + STATE_SAVE_INTERVAL
        self.slots = [SensorSlot(s, factory, channel_pipelines(s)) for s in cfg.sensors]
        self.simulated, self.derived = simulated, Derived(cfg, simulated)
        self.driver_states = DriverStates(store.driver_states())  # totals, whatever their age
        # filter states saved by this boot's last run, for chains configured the same
        saved = store.chain_states(boot_id, clock() - STATE_MAX_AGE)
        self.restored_states = restore_chains(self._pipes(), saved)
        self.derived.restore(store.chain_states(boot_id, -math.inf))  # their past: any age, this boot
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
            self.driver_states.restore(slot)
            slot.state = "up"
            slot.init_failures = 0
            slot.consecutive_failures = 0
            slot.next_due = max(slot.next_due, now)
            log.info(
                "event=sensor_up sensor=%s type=%s address=0x%02x",
                slot.cfg.name,
                slot.cfg.type,
                slot.cfg.address,
            )
        # a bus error; or a driver's own refusal the configuration did not foresee: the sensor
        # stays down (retried, logged), the others and the node go on
        except Exception as exc:  # noqa: BLE001
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
        driver = slot.driver
        assert driver is not None, "the run loop samples only sensors that are up"
        try:
            if slot.cfg.inputs:
                feed_inputs(slot, self.slots, self.clock())
            reading = driver.read()
        except OSError as exc:
            slot.attempt += 1
            slot.count_error("checksum" if isinstance(exc, ChecksumError) else "read")
            now = self.clock()
            delay = RETRY_DELAY * 2 ** (slot.attempt - 1)
            if slot.attempt <= READ_RETRIES and now + delay <= slot.slot_deadline:
                slot.retry_at = now + delay
                log.info(
                    "event=read_retry sensor=%s error=%r attempt=%d retry_in=%.3fs",
                    slot.cfg.name,
                    str(exc),
                    slot.attempt,
                    delay,
                )
                return
            slot.missed += 1
            slot.consecutive_failures += 1
            log.warning(
                "event=read_failed sensor=%s error=%r attempts=%d missed=%d",
                slot.cfg.name,
                str(exc),
                slot.attempt,
                slot.missed,
            )
            if slot.consecutive_failures >= FAILING_AFTER:
                self.driver_states.note(slot)  # its totals come back with the next bring-up
                driver.close()
                slot.driver = None
                slot.state = "failing"
                slot.init_failures = 0
                delay = self._retry_later(slot, self.clock())
                log.error(
                    "event=sensor_failing sensor=%s consecutive_failures=%d reinit_in=%.0fs",
                    slot.cfg.name,
                    slot.consecutive_failures,
                    delay,
                )
            return
        slot.consecutive_failures = 0
        slot.samples += 1
        mono = slot.stamp(reading.mono)
        for name, pipe in slot.channels.items():
            value = reading.values.get(name)
            if value is None:
                continue
            quality = reading.quality or pipe.check(mono, value, slot.cfg.stuck_after)
            if quality:
                kind = QUALITY_KINDS.get(quality, "flagged")
                slot.count_error(kind)
                if kind != "warming_up":  # expected after power-on: counted, not logged
                    log.warning(
                        "event=bad_sample sensor=%s channel=%s kind=%s value=%r",
                        slot.cfg.name,
                        name,
                        kind,
                        value if slot.cfg.privacy is None else "withheld",  # a private stream's: not logged
                    )
                pipe.flag(mono, value, quality)
            else:
                pipe.push(mono, value)
        self.derived.observe(slot, mono)

    def _pipes(self) -> Iterator[tuple[str, str, ChannelPipeline]]:
        for slot in self.slots:
            for name, pipe in slot.channels.items():
                yield slot.cfg.name, name, pipe
        yield from self.derived.pipes()

    def adopt(self, store: BatchStore) -> None:
        """The queue a full disk kept from opening at the start, open now (store_pending):
        the batches counted unstored meanwhile go into its losses, and each driver's saved
        total comes back under what the driver counted since (never a total going back)."""
        pending, self.store = self.store, store
        if isinstance(pending, UnopenedStore):
            for stream, n in pending.unstored.items():
                store.count_unstored(stream, n)
        self.driver_states.adopt(store.driver_states(), self.slots)

    def _chain_rows(self) -> list[tuple[str, str, str, str]]:
        pipes = [(st, ch, p) for st, ch, p in self._pipes() if p.private is None]  # private: in memory
        rows = [(st, ch, p.spec_json, json.dumps(p.chain.get_state())) for st, ch, p in pipes]
        return rows + self.derived.state_rows()

    def save_states(self) -> None:
        """Save every chain's state (after a seal, so lossy stages hold nothing)."""
        rows = self._chain_rows()
        drivers = [row for row in map(self.driver_states.row, self.slots) if row is not None]
        try:
            self.store.save_chain_states(rows + drivers, self.boot_id, self.clock())
        except DiskFullError as exc:
            log.error("event=state_not_saved reason=%r", str(exc))
            return
        self.driver_states.stored(drivers)

    def _expire(self, synced: bool) -> None:
        now = self.clock()
        if now < self.next_expire:
            return
        self.next_expire = now + EXPIRE_INTERVAL
        try:
            expired = self.store.expire(
                self.cfg.store.ttl,
                now=self.wall(),
                now_mono=now,
                boot_id=self.boot_id,
                wall_trusted=synced,
                budget=EXPIRE_SCAN,  # a bounded pass, so the seals that follow are on time
            )
            if sum(expired.values()) >= EXPIRE_CHUNK:
                self.next_expire = now  # more may have expired: the next pass at the next seal
        except DiskFullError as exc:
            log.error("event=expire_failed reason=%r", str(exc))

    def _check_clock(self) -> bool:
        """Whether the clock is synchronised now; a change is logged."""
        synced = self.clock_synchronized()
        if synced != self.clock_synced:
            log.info("event=clock state=%s", "synchronized" if synced else "unsynchronized")
            self.clock_synced = synced
        return synced

    def _restamp(self, synced: bool, wall_offset_ms: int) -> None:
        """Once synchronised, restamp this boot's unsynced batches, RESTAMP_PER_SEAL a seal."""
        if synced and self.boot_id is not None:
            n = self.store.restamp_unsynced(
                self.boot_id, wall_offset_ms, restamp_payload, limit=RESTAMP_PER_SEAL
            )
            if n:
                self.restamped += n
                log.info("event=batches_restamped count=%d boot_id=%s", n, self.boot_id)
            # more at the next seal: the uplink holds them back meanwhile
            (self.restamping.set if n == RESTAMP_PER_SEAL else self.restamping.clear)()

    def _commit(self, batches: list[tuple[str, Encode, int]], synced: bool, offset_ms: int) -> int:
        """One transaction: the cycle's (stream, encode, points) batches, the drivers' totals
        (read after the values were taken: at least what the batches carry), the chains'
        states when due. Returns how many batches were stored."""
        drivers = [row for row in map(self.driver_states.row, self.slots) if row is not None]
        chains = self._chain_rows() if self.clock() >= self.next_state_save else []
        try:
            results = self.store.seal_many(
                [(stream, encode) for stream, encode, _ in batches],
                self.wall(),
                clock_unsynced=not synced,
                boot_id=self.boot_id,
                wall_offset_ms=offset_ms,
                sealed_mono=self.clock(),
                states=chains + drivers,
            )
        except store_alarm.ERRORS as exc:  # a full disk, or damage: the agent recovers (store_alarm)
            count = store_alarm.unstored(self.store, "sampler", exc)  # keep sampling; raises what is neither
            for stream, _, _ in batches:
                n = self.unstored[stream] = self.unstored.get(stream, 0) + 1
                count(stream)
                log.error("event=batch_unstored stream=%s reason=%r unstored=%d", stream, str(exc), n)
            return 0
        self.driver_states.stored(drivers)
        if chains:
            self.next_state_save = self.clock() + STATE_SAVE_INTERVAL
        stored = [(b, r) for b, r in zip(batches, results) if r[1]]  # size 0: refused by the cap
        for (stream, _, n), (seq, size) in stored:
            self.sealed_batches += 1
            self.sealed_bytes += size
            log.info("event=batch_sealed stream=%s seq=%d points=%d bytes=%d", stream, seq, n, size)
        return len(stored)

    def seal(self) -> int:
        """Seal every stream's open batch, in one transaction (``_commit``): how many. The
        store's upkeep (restamping, the time to live) comes after the commit, bounded."""
        wall_offset_ms = round((self.wall() - self.clock()) * 1000)
        synced = self._check_clock()
        flags = 0 if synced else wire.FLAG_CLOCK_UNSYNCED
        version, epoch = self.cfg.mqtt.wire_version, self.store.epoch
        batches: list[tuple[str, Encode, int]] = self.derived.batches(  # (stream, encode, points)
            self.slots, self.cfg.node_id, wall_offset_ms, flags=flags, version=version, epoch=epoch
        )
        sealed = self._commit(batches, synced, wall_offset_ms) if batches else 0
        with store_alarm.guard(self.store.path, "sampler"):  # damage: the agent recovers
            self._restamp(synced, wall_offset_ms)
            if sealed:
                self.on_sealed()
            self._expire(synced)
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
        self.slots = [SensorSlot(s, factory, channel_pipelines(s), next_due=now) for s in cfg.sensors]
        self.derived = Derived(cfg, self.simulated, self.derived)  # unchanged ones keep their past
        for stream, channel, pipe in self._pipes():  # unchanged chains keep their state
            before = old.get((stream, channel))
            if before is not None and before.spec_json == pipe.spec_json:
                pipe.chain.set_state(before.chain.get_state())

    def health_part(self) -> dict:
        """What the sampler owns of the health message: sensors, the epoch of its batches,
        store recovery, disk-full losses."""
        rec = self.store.recovery
        return {
            "sensors": {s.cfg.name: s.health() for s in self.slots},
            "derived": self.derived.health(),
            "privacy": self.derived.privacy(self.slots),
            "unstored": dict(self.unstored),
            "durable_commits": self.store.commits,
            "store_epoch": f"{self.store.epoch:08x}",
            # moved_to, error, salvaged, unreadable, at
            "store_recovery": None if rec is None else dataclasses.asdict(rec),
            "store_wal_loss": None
            if self.store.wal_loss is None
            else dataclasses.asdict(self.store.wal_loss),
        }

    def sensors_up(self) -> int:
        return sum(1 for s in self.slots if s.driver is not None)

    def run(
        self,
        stop: threading.Event,
        *,
        on_ready: Callable[[], None] = lambda: None,
        tick: Callable[[float], float] = lambda now: float("inf"),
    ) -> None:
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
                        slot.next_due += slot.cfg.interval * max(
                            1, int((now - slot.next_due) // slot.cfg.interval) + 1
                        )
                if now >= next_flush:
                    self.seal()
                    self.last_seal_cycle = now
                    next_flush += self.cfg.flush_interval * max(
                        1, int((now - next_flush) // self.cfg.flush_interval) + 1
                    )
                next_tick = tick(self.clock())
                wake = min([next_flush, next_tick] + [s.wake() for s in self.slots])
                stop.wait(max(0.0, wake - self.clock()))
        finally:
            self.seal()
            self.save_states()
            for slot in self.slots:
                if slot.driver is not None:
                    slot.driver.close()
