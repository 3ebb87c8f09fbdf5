"""A configured sensor as the sampler schedules it: its driver (None while down), its
channels' open batch, its sample slots and retries, and what went wrong so far."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from drivers.base import Sensor
from edge_agent.config import SensorConfig
from edge_agent.node.open_batch import ChannelPipeline
from edge_agent.node.store import DRIVER_STATE

log = logging.getLogger("edge_agent.sampler")

SLOT_TOLERANCE = (
    0.1  # a first-attempt read this close to its slot (fraction of the interval) is stamped with it
)


@dataclass
class SensorSlot:
    """A configured sensor, its driver (None while down) and its schedule."""

    cfg: SensorConfig
    factory: Callable[[SensorConfig], Sensor]
    channels: dict[str, ChannelPipeline]
    driver: Sensor | None = None
    next_due: float = 0.0
    next_init: float = 0.0
    missed: int = 0  # sample slots that gave no reading, all retries failed
    attempt: int = 0  # failed reads so far in the current slot
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

    def health(self) -> dict:
        """The sensor's part of the health message."""
        return {
            "type": self.cfg.type,
            "state": self.state,
            "samples": self.samples,
            "missed": self.missed,
            "errors": dict(self.errors_by_kind),
        }

    def stamp(self, mono: float) -> float:
        """The time a sample is stamped with: its slot on the sensor's schedule when it was read
        within SLOT_TOLERANCE of an interval from it at the first attempt, which is the rule,
        so that the wire format stores a regular series as its schedule alone; else the
        time it was read (a retry, a late loop: an exception on the wire)."""
        if (
            self.slot_time is not None
            and self.attempt == 0
            and abs(mono - self.slot_time) <= SLOT_TOLERANCE * self.cfg.interval
        ):
            return self.slot_time
        return mono

    def wake(self) -> float:
        """Monotonic time this sensor next needs the loop: a bring-up, a retry or its next slot."""
        if self.driver is None:
            return self.next_init
        return self.retry_at if self.retry_at is not None else self.next_due


FEED_INTERVALS = 3  # a feeding channel's reading is fresh for this many of its intervals (and 1 s)


def feed_inputs(slot: SensorSlot, slots: Iterable[SensorSlot], now: float) -> None:
    """Before a read, tell the driver what its configuration's ``inputs`` name (an SCD4x the
    BME680's pressure): the feeding channel's last reading, when it is good and fresh; else
    the chip keeps the last it was told. A value the chip cannot take is counted (``input``)
    and logged; a bus error is raised, as the read's own would be."""
    assert slot.driver is not None
    by_name = {s.cfg.name: s for s in slots}
    for name, sensor, channel in slot.cfg.inputs:
        src = by_name.get(sensor)
        pipe = src.channels.get(channel) if src is not None else None
        last = pipe.last if pipe is not None else None
        if src is None or last is None or last[2] or now - last[0] > FEED_INTERVALS * src.cfg.interval + 1.0:
            continue
        try:
            slot.driver.set_input(name, last[1])
        except ValueError as exc:
            slot.count_error("input")
            log.warning(
                "event=input_refused sensor=%s input=%s from=%s.%s error=%r",
                slot.cfg.name,
                name,
                sensor,
                channel,
                str(exc),
            )


def driver_state(driver: Sensor | None) -> dict | None:
    """A driver's own state to keep (drivers without any may not define get_state)."""
    get = getattr(driver, "get_state", None)
    return get() if get is not None else None


class DriverStates:
    """The drivers' own states (energy totals) by stream, as JSON: the newest known, applied
    at each bring-up, and what the store holds, so a row is written only when it changed.

    The sampler hands ``row()`` to the store's seal of the cycle's batches: read after the
    values were taken, the total it keeps is at least every total the batch carries,
    and it is committed with it, so a kill at any moment never leaves the store a total
    below one the backbone may have received.
    """

    def __init__(self, saved: dict[str, str]) -> None:
        self.known = dict(saved)
        self.written = dict(saved)

    def restore(self, slot: SensorSlot) -> None:
        """Give the driver just made its saved state; a damaged one is logged, not raised."""
        saved = self.known.get(slot.cfg.name)
        if saved is None or slot.driver is None:
            return
        try:
            slot.driver.set_state(json.loads(saved))
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            log.error("event=state_not_restored sensor=%s error=%r", slot.cfg.name, str(exc))

    def note(self, slot: SensorSlot) -> None:
        """Take the driver's state now (before it closes, and before a seal)."""
        state = driver_state(slot.driver)
        if state is not None:
            self.known[slot.cfg.name] = json.dumps(state)

    def row(self, slot: SensorSlot) -> tuple[str, str, str, str] | None:
        """The state as a chain_state row (stream, DRIVER_STATE, "", JSON) when it changed
        since the store took it last; a driver that is down keeps what it had. A private
        stream's running total is never written (only its periods' totals leave memory)."""
        if slot.cfg.privacy is not None:
            return None
        self.note(slot)
        saved = self.known.get(slot.cfg.name)
        if saved is None or saved == self.written.get(slot.cfg.name):
            return None
        return (slot.cfg.name, DRIVER_STATE, "", saved)

    def adopt(self, saved: dict[str, str], slots: Iterable[SensorSlot]) -> None:
        """The totals of a queue opened late (store_pending): a driver up since the start
        takes its saved total with what it counted since on top (``set_state``), one that is
        down comes back with the saved one; the next seal keeps either."""
        self.written.update(saved)
        for slot in slots:
            if slot.cfg.name in saved:
                self.known[slot.cfg.name] = saved[slot.cfg.name]
                self.restore(slot)

    def stored(self, rows: Iterable[tuple[str, str, str, str]]) -> None:
        """The store committed these rows."""
        for row in rows:
            self.written[row[0]] = row[3]


def restore_chains(
    pipes: Iterable[tuple[str, str, ChannelPipeline]], saved: dict[tuple[str, str], tuple[str, str]]
) -> int:
    """Give each (stream, channel, pipe) the filter state saved for a chain configured the
    same; how many took one (a state that does not fit is logged and left out)."""
    n = 0
    for stream, channel, pipe in pipes:
        spec_state = saved.get((stream, channel))
        if spec_state and spec_state[0] == pipe.spec_json:
            try:
                pipe.chain.set_state(json.loads(spec_state[1]))
                n += 1
            except (ValueError, TypeError) as exc:
                log.warning(
                    "event=state_not_restored stream=%s channel=%s error=%r", stream, channel, str(exc)
                )
    if n:
        log.info("event=filter_state_restored channels=%d", n)
    return n
