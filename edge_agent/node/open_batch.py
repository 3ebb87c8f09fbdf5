"""A stream's open batch: each channel's chain and the points it kept since the last
seal, the payload they are sealed into, and the restamping of a sealed payload.

This is the sampler's side of the wire format: points are quantised as they are
kept, stamped with wall-clock times only when sealed, and encoded once per seal,
with the sequence number the store hands out inside its transaction. The store
keeps the payloads as opaque bytes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable

from drivers.registry import SENSOR_TYPES
from edge_agent import dsp, wire
from edge_agent.config import ChannelConfig, SensorConfig
from edge_agent.config.model import PrivacyConfig
from edge_agent.node.privacy import PeriodStats

QUALITY_KINDS = {
    wire.QUALITY_OUT_OF_RANGE: "out_of_range",
    wire.QUALITY_STUCK: "stuck",
    wire.QUALITY_WARMING_UP: "warming_up",
}


class ChannelPipeline:
    """One channel: its configured chain and the points it kept since the last seal.

    Points are kept on the monotonic clock (ms); they get wall-clock times only
    when sealed, so a wall-clock step between sampling and sealing (NTP's first
    sync, a manual set) never reaches the data.
    """

    def __init__(
        self,
        cfg: ChannelConfig,
        low: float = -math.inf,
        high: float = math.inf,
        privacy: PrivacyConfig | None = None,
        lag: float = 0.0,
    ) -> None:
        self.cfg = cfg
        # a private stream's channel keeps no points: its open period's figures (node/privacy.py)
        self.private = None if privacy is None else PeriodStats(cfg, privacy, lag)
        self.low, self.high = low, high  # the chip's physical range for this channel
        # What a saved filter state belongs to: the chain, and the unit its values are in
        # (an S0 meter's energy went from kWh to Wh: a window of kWh must not come back).
        self.spec_json = json.dumps([cfg.unit, cfg.chain_spec()])
        self.chain = dsp.Chain(cfg.chain_spec())
        self.mono_ms: list[int] = []
        self.values_q: list[int] = []
        self.flags: list[tuple[int, int]] = []  # (index in this batch, quality flags)
        self.last_raw: float | None = None
        self.same_since = 0.0
        self.last: tuple[float, float, int] | None = None  # (mono, value, quality) read last: the page's

    def _keep(self, point: tuple[float, float] | None) -> None:
        if point is not None and self.private is not None:
            self.private.add(*point)
        elif point is not None:
            t, y = point
            self.mono_ms.append(round(t * 1000))
            self.values_q.append(wire.quantise(y, self.cfg.resolution))

    def push(self, mono: float, value: float) -> None:
        """One good sample: monotonic time (s) and value, through the chain."""
        self.last = (mono, value, 0)
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
        self.last = (mono, value, quality)
        if not math.isfinite(value) or self.private is not None:
            return  # nothing a payload could carry; nor, of a private stream, may
        self.flags.append((len(self.mono_ms), quality))
        self._keep((mono, value))

    def take_all(self, wall_offset_ms: int) -> tuple[wire.ChannelData, ...]:
        """``take``'s channel, or a private channel's statistics of the periods closed."""
        if self.private is not None:
            self._keep(self.chain.flush())
            return self.private.take(wall_offset_ms)
        data = self.take(wall_offset_ms)
        return () if data is None else (data,)

    def take(self, wall_offset_ms: int) -> wire.ChannelData | None:
        """The kept points as a batch channel stamped ``mono + wall_offset``; empties the open batch.

        The chain's open segment is closed first, so the batch decodes on its own. The
        channel states how its points stand for the samples and within what bound
        (ChannelConfig.reconstruction, bound, bound_relative): version 4 carries them.
        """
        self._keep(self.chain.flush())
        if not self.mono_ms:
            return None
        data = wire.ChannelData(
            self.cfg.name,
            self.cfg.unit,
            self.cfg.resolution,
            tuple(t + wall_offset_ms for t in self.mono_ms),
            tuple(self.values_q),
            tuple(self.flags),
            bin_width=self.cfg.bin_width,
            reconstruction=self.cfg.reconstruction,
            bound=self.cfg.bound,
            bound_relative=self.cfg.bound_relative,
        )
        self.mono_ms, self.values_q, self.flags = [], [], []
        return data


def channel_pipelines(sc: SensorConfig) -> dict[str, ChannelPipeline]:
    """The configured channels of a sensor, each within its chip's physical range."""
    specs = {c.name: c for c in SENSOR_TYPES[sc.type].CHANNELS}
    return {
        c.name: ChannelPipeline(c, specs[c.name].low, specs[c.name].high, sc.privacy) for c in sc.channels
    }


def take_channels(pipes: Iterable[ChannelPipeline], wall_offset_ms: int) -> tuple[wire.ChannelData, ...]:
    """The channels that kept points, stamped ``mono + wall_offset``; empties them."""
    return tuple(c for p in pipes for c in p.take_all(wall_offset_ms))


def privacy_encoding(privacy: PrivacyConfig | None, interval: float) -> tuple[int, int]:
    """(flag bits, period ms) of a stream's batches: a private one's say its level and period."""
    if privacy is None:
        return 0, max(1, round(interval * 1000))
    return wire.LEVELS.index(privacy.level) << wire.FLAG_LEVEL_SHIFT, round(privacy.period * 1000)


def batch_encoder(
    node_id: str,
    stream: str,
    channels: tuple[wire.ChannelData, ...],
    *,
    flags: int,
    period_ms: int,
    version: int,
    epoch: int,
) -> Callable[[int], bytes]:
    """``encode(seq)`` for the store's seal: the batch's payload once its number is known,
    under the store's ``epoch`` (written from version 4 on)."""
    t0 = min(min(c.times_ms) for c in channels)

    def encode(seq: int) -> bytes:
        batch = wire.Batch(node_id, stream, seq, t0, channels, flags=flags, period_ms=period_ms, epoch=epoch)
        return wire.encode(batch, version=version)

    return encode


def restamp_payload(payload: bytes, shift_ms: int) -> bytes:
    """A sealed payload with its times shifted by ``shift_ms`` and its clock-unsynced flag
    cleared (wire.restamp); its version stays (at least 2, for old backbones), and so do
    its epoch and each channel's reconstruction and bound (decoded, and written again)."""
    batch = wire.restamp(wire.decode(payload), shift_ms)
    return wire.encode(batch, version=max(2, batch.version))
