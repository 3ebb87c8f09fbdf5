"""Derived streams (``derived:``): channels the node computes from other sensors' readings,
sealed and sent like a sensor's (edge_agent/config/derived.py declares the kinds,
edge_agent/dsp the formulas, docs/derived.md what each computes and why).

The sampler hands every reading here (``observe``) after it went through its own channels:
an input takes the channel's raw reading as the pipeline saw it (``ChannelPipeline.last``),
a flagged one never enters a formula, as it never enters a filter. A derived point is made
at each ``interval`` on the monotonic clock from the inputs before it, and goes through its
own channel's chain (filters, lossy stage, quantisation) into the stream's open batch; when
an input gave only flagged samples since the last point, the point carries their flags.
"""

from __future__ import annotations

import json
import logging
import math
from collections import deque
from collections.abc import Callable, Iterator

from edge_agent.config import AgentConfig, DerivedConfig
from edge_agent.dsp import aqhi, aqi
from edge_agent.dsp.energy import EnergyPeriods
from edge_agent.node.open_batch import ChannelPipeline, batch_encoder, privacy_encoding, take_channels
from edge_agent.node.sensor_slot import SensorSlot

log = logging.getLogger("edge_agent.sampler")

HOUR = 3600.0
COVERAGE = 0.75  # of an hourly (or 3-hour) mean's buckets that must hold a good sample
FRESH_INTERVALS = 3  # a humidity reading is fresh for this many of its sensor's intervals (and 1 s)
DERIVED_STATE = "__derived__"  # chain_state rows with this channel hold a derived stream's past


class Window:
    """Means of a channel over spans of the recent past, from buckets of ``width`` s (sum,
    count), kept for ``keep`` s: a span's mean is valid when at least COVERAGE of its buckets
    hold a sample."""

    def __init__(self, width: float, keep: float) -> None:
        self.width = width
        self.keep = keep
        self.buckets: deque[list[float]] = deque()  # [index, sum, count], oldest first

    def add(self, t: float, value: float) -> None:
        k = math.floor(t / self.width)
        if self.buckets and self.buckets[-1][0] == k:
            self.buckets[-1][1] += value
            self.buckets[-1][2] += 1
        elif not self.buckets or k > self.buckets[-1][0]:
            self.buckets.append([k, value, 1])
        while self.buckets and (k - self.buckets[0][0]) * self.width > self.keep:
            self.buckets.popleft()

    def mean(self, start: float, end: float, coverage: float = COVERAGE) -> float | None:
        """The mean of the samples in the buckets that begin in [start, end), or None."""
        lo, hi = math.ceil(start / self.width), math.ceil(end / self.width)
        total, n, filled = 0.0, 0, 0
        for k, s, c in self.buckets:
            if lo <= k < hi:
                total, n, filled = total + s, n + int(c), filled + 1
        if n == 0 or filled < coverage * max(1, hi - lo):
            return None
        return total / n


class DerivedStream:
    """One ``derived:`` entry: its inputs' recent past, its channels' pipelines, its counters."""

    def __init__(self, cfg: DerivedConfig, intervals: dict[str, float], speed: float = 1.0) -> None:
        self.cfg = cfg
        # a point stands for the interval before it: a private period takes it half of one earlier
        self.channels = {
            c.name: ChannelPipeline(c, privacy=cfg.privacy, lag=cfg.interval / 2) for c in cfg.channels
        }
        self.hour = HOUR / speed  # a rehearsal (sim: speed) runs the hours faster
        self.intervals = intervals  # the input sensors' intervals
        self.next_due: float | None = None
        self.flags: dict[str, int] = {}  # input -> OR of its flagged samples' flags since the last point
        self.good: set[str] = set()  # inputs with a good sample since the last point
        self.humidity: tuple[float, float] | None = None
        self.windows: dict[str, Window] = {}
        self.energy: EnergyPeriods | None = None
        self.points = 0
        self.skipped = 0  # points not made: the inputs were not enough (too few hours, stale)
        if cfg.kind == "energy":
            self.energy = EnergyPeriods(cfg.interval, cfg.max_gap, cfg.emission_factor)
            return
        span = 12 * self.hour if cfg.kind == "us_aqi" else 3 * self.hour
        for name, sensor, _, _ in cfg.inputs:
            width = max(self.hour / 60, intervals[sensor])
            self.windows[name] = Window(width, span + 2 * width)

    @property
    def spec_json(self) -> str:
        """What a saved past belongs to: the stream as configured, its inputs' intervals, its hour."""
        c = self.cfg
        inputs = [[*i, self.intervals[i[1]]] for i in c.inputs]
        return json.dumps([c.kind, inputs, c.interval, c.correction, c.emission_factor, c.max_gap, self.hour])

    def get_state(self) -> dict:
        """The past a restart within the same boot takes up again (plain numbers)."""
        e = self.energy
        return {
            "next_due": self.next_due,
            "humidity": self.humidity,
            "windows": {n: list(w.buckets) for n, w in self.windows.items()},
            "energy": None if e is None else [e.last, e.end, e.wh, e.covered, e.gaps],
        }

    def set_state(self, state: dict) -> None:
        next_due, humidity = state["next_due"], state["humidity"]
        windows = {n: [[int(k), float(s), int(c)] for k, s, c in b] for n, b in state["windows"].items()}
        if set(windows) != set(self.windows):
            raise ValueError("the windows saved are not this stream's")
        energy = state["energy"]
        if (energy is None) != (self.energy is None):
            raise ValueError("an energy state for a stream that is not energy, or none for one that is")
        self.next_due = None if next_due is None else float(next_due)
        self.humidity = None if humidity is None else (float(humidity[0]), float(humidity[1]))
        for n, buckets in windows.items():
            self.windows[n].buckets = deque(buckets)
        if self.energy is not None:
            last, end, wh, covered, gaps = energy
            self.energy.last = None if last is None else (float(last[0]), float(last[1]))
            self.energy.end = None if end is None else float(end)
            self.energy.wh, self.energy.covered, self.energy.gaps = float(wh), float(covered), int(gaps)

    def health(self) -> dict:
        out = {"kind": self.cfg.kind, "points": self.points, "skipped": self.skipped}
        if self.energy is not None:
            out["gaps"] = self.energy.total_gaps
        return out

    def observe(self, name: str, mono: float, value: float, quality: int) -> None:
        """One reading of the input ``name``: the points due before it first, then the reading."""
        if self.energy is not None:
            if quality:
                self.flags[name] = self.flags.get(name, 0) | quality
                return
            self.good.add(name)
            for period in self.energy.push(mono, value):
                self._emit(
                    period.end,
                    {"energy_period": period.wh, "co2e_period": period.co2e_g, "uncovered": period.uncovered},
                )
            return
        self._advance(mono)
        if quality or not math.isfinite(value):
            self.flags[name] = self.flags.get(name, 0) | quality
            return
        self.good.add(name)
        unit = self.cfg.source(name)
        if self.cfg.kind == "hk_aqhi" and unit is not None and unit[2] == "ppb":
            value *= aqhi.PPB_TO_UGM3[name]
        if name == "humidity":
            self.humidity = (mono, value)
            return
        if name == "pm2_5" and self.cfg.correction != "none":
            rh = self._fresh_humidity(mono)
            if rh is None:
                return  # no humidity to correct with: the sample is left out, not sent uncorrected
            value = aqi.epa_correction(value, rh, self.cfg.correction)
        self.windows[name].add(mono, value)

    def _fresh_humidity(self, mono: float) -> float | None:
        src = self.cfg.source("humidity")
        if self.humidity is None or src is None:
            return None
        t, rh = self.humidity
        return rh if mono - t <= FRESH_INTERVALS * self.intervals[src[0]] + 1.0 else None

    def _advance(self, mono: float) -> None:
        """Make the points due up to ``mono`` (at whole multiples of the interval)."""
        step = self.cfg.interval
        if self.next_due is None:
            self.next_due = (math.floor(mono / step) + 1) * step
        while mono >= self.next_due:
            values = self._aqi(self.next_due) if self.cfg.kind == "us_aqi" else self._aqhi(self.next_due)
            if values:
                self._emit(self.next_due, values)
            else:
                self.skipped += 1
            self.next_due += step

    def _hourly(self, name: str, end: float) -> list[float | None]:
        w = self.windows[name]
        return [w.mean(end - (i + 1) * self.hour, end - i * self.hour) for i in range(aqi.NOWCAST_HOURS)]

    def _aqi(self, end: float) -> dict[str, float]:
        out: dict[str, float] = {}
        for pm in ("pm2_5", "pm10"):
            if pm not in self.windows:
                continue
            nc = aqi.nowcast(self._hourly(pm, end), pm)
            if nc is not None:
                out[f"{pm}_nowcast"] = nc
                out[f"aqi_{pm}"] = aqi.sub_index(pm, nc)
        if out:
            out["aqi"] = max(v for k, v in out.items() if k.startswith("aqi_"))
        if self.cfg.correction != "none":
            corrected = self.windows["pm2_5"].mean(end - self.cfg.interval, end, coverage=0.0)
            if corrected is not None:
                out["pm2_5_corrected"] = corrected
        return out

    def _aqhi(self, end: float) -> dict[str, float]:
        means = {n: w.mean(end - 3 * self.hour, end) for n, w in self.windows.items()}
        gases = [means.get(g) for g in ("no2", "so2", "o3")]
        if any(g is None for g in gases) or (means.get("pm10") is None and means.get("pm2_5") is None):
            return {}
        no2, so2, o3 = (float(g) for g in gases if g is not None)
        risk = aqhi.total_risk(no2, so2, o3, means.get("pm10"), means.get("pm2_5"))
        return {"aqhi": aqhi.band(risk), "aqhi_risk": risk}

    def _emit(self, t: float, values: dict[str, float]) -> None:
        """One point per channel at ``t``; flagged when an input had only flagged samples."""
        quality = 0
        for name, flags in self.flags.items():
            if name not in self.good:
                quality |= flags
        self.flags, self.good = {}, set()
        self.points += 1
        for name, pipe in self.channels.items():
            value = values.get(name)
            if value is None:
                continue
            if quality:
                pipe.flag(t, value, quality)
            else:
                pipe.push(t, value)


class Derived:
    """Every derived stream of a configuration, fed from the sampler's readings."""

    def __init__(self, cfg: AgentConfig, simulated: bool = False, before: Derived | None = None) -> None:
        intervals = {s.name: s.interval for s in cfg.sensors}
        kept = {d.cfg: d for d in before.streams} if before is not None else {}
        self.streams: list[DerivedStream] = []
        for d in cfg.derived:
            old = kept.get(d)
            if old is not None and old.intervals == intervals:  # configured the same: its past carries on
                self.streams.append(old)
            else:
                self.streams.append(DerivedStream(d, intervals, d.sim_speed if simulated else 1.0))
        # (sensor, channel) -> [(stream, input)]
        self.feeds: dict[tuple[str, str], list[tuple[DerivedStream, str]]] = {}
        for st in self.streams:
            for name, sensor, channel, _ in st.cfg.inputs:
                self.feeds.setdefault((sensor, channel), []).append((st, name))

    def observe(self, slot: SensorSlot, mono: float) -> None:
        """After a reading of ``slot`` stamped ``mono``: hand each channel that feeds a derived
        stream its reading (as the pipeline kept it last, with its quality)."""
        for name, pipe in slot.channels.items():
            feeds = self.feeds.get((slot.cfg.name, name))
            last = pipe.last
            if feeds and last is not None and last[0] == mono:
                for stream, input_name in feeds:
                    stream.observe(input_name, mono, last[1], last[2])

    def pipes(self) -> Iterator[tuple[str, str, ChannelPipeline]]:
        for st in self.streams:
            for name, pipe in st.channels.items():
                yield st.cfg.name, name, pipe

    def health(self) -> dict:
        return {st.cfg.name: st.health() for st in self.streams}

    def state_rows(self) -> list[tuple[str, str, str, str]]:
        """Each stream's past as a chain_state row (stream, DERIVED_STATE, spec, state); a
        private stream's (and only a private one may take a private input) stays in memory."""
        return [
            (st.cfg.name, DERIVED_STATE, st.spec_json, json.dumps(st.get_state()))
            for st in self.streams
            if st.cfg.privacy is None
        ]

    def privacy(self, slots: list[SensorSlot]) -> dict[str, dict]:
        """Each stream's privacy level for the health message: ``level``, and above raw its
        ``period_s`` and the periods sent and dropped (too little covered) since start."""
        streams = [(s.cfg.name, s.cfg.privacy, s.channels) for s in slots]
        streams += [(d.cfg.name, d.cfg.privacy, d.channels) for d in self.streams]
        out: dict[str, dict] = {}
        for name, privacy, pipes in streams:
            if privacy is None:
                out[name] = {"level": "raw"}
                continue
            counts = [
                p.private.health() for p in pipes.values() if p.private is not None and p.private.outputs
            ]
            out[name] = {
                "level": privacy.level,
                "period_s": privacy.period,
                "periods": max((c["periods"] for c in counts), default=0),
                "dropped": max((c["dropped"] for c in counts), default=0),
            }
        return out

    def restore(self, saved: dict[tuple[str, str], tuple[str, str]]) -> int:
        """Take up each stream's past saved by this boot for a stream configured the same (the
        monotonic times in it are this boot's); one that does not fit is logged and left out."""
        n = 0
        for st in self.streams:
            spec_state = saved.get((st.cfg.name, DERIVED_STATE))
            if spec_state is None or spec_state[0] != st.spec_json:
                continue
            try:
                st.set_state(json.loads(spec_state[1]))
                n += 1
            except (ValueError, TypeError, KeyError) as exc:
                log.warning("event=state_not_restored stream=%s error=%r", st.cfg.name, str(exc))
        if n:
            log.info("event=derived_state_restored streams=%d", n)
        return n

    def batches(
        self, slots: list[SensorSlot], node_id: str, wall_offset_ms: int, **encoding: int
    ) -> list[tuple[str, Callable[[int], bytes], int]]:
        """The cycle's (stream, encode, points): every sensor's open batch, then every derived
        stream's, each stamped ``mono + wall_offset`` (``encoding``: flags, version, epoch); a
        private stream's hold the periods closed since, flagged with its level."""
        streams = [(s.cfg.name, s.cfg.interval, s.channels, s.cfg.privacy) for s in slots]
        streams += [(d.cfg.name, d.cfg.interval, d.channels, d.cfg.privacy) for d in self.streams]
        out = []
        flags = encoding.pop("flags")
        for name, interval, pipes, privacy in streams:
            channels = take_channels(pipes.values(), wall_offset_ms)
            if channels:
                level, period_ms = privacy_encoding(privacy, interval)
                encode = batch_encoder(
                    node_id, name, channels, period_ms=period_ms, flags=flags | level, **encoding
                )
                out.append((name, encode, sum(len(c.times_ms) for c in channels)))
        return out
