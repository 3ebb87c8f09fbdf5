"""The encoder: a Batch to its payload (versions 2 to 4; version 1 for test vectors and old
backbones), and the ``historical`` flag set on a payload without decoding it.

docs/wire-format.md is the normative specification. The compiled core does the searches
(time slots, the value block, the checksum) when it is in use: see edge_agent.wire.kernels.
"""

from __future__ import annotations

import math
import struct
import zlib
from collections.abc import Sequence

from edge_agent.errors import WireFormatError
from edge_agent.wire import kernels
from edge_agent.wire.format import (
    BOUND_DECIMAL,
    BOUND_RELATIVE,
    BOUND_SHIFT,
    BOUND_STEPS_MAX,
    ENCODING_DELTA_VARINT,
    FLAG_DEFLATE,
    FLAG_HISTORICAL,
    FLAG_LEVEL_MASK,
    KIND_OF,
    MAGIC,
    MAX_BATCH_SAMPLES,
    MAX_BODY,
    MAX_CHANNEL_SAMPLES,
    MAX_PAYLOAD,
    MAX_PER_BYTE,
    PREDICTOR_SEASONAL,
    PREDICTOR_ZERO,
    PREDICTORS,
    RECONSTRUCTIONS,
    SHAPE_BINNED,
    SHAPE_CODED,
    SHAPE_EXCEPTIONS,
    SHAPE_FLAGS,
    SHAPE_REGULAR,
    VERSION,
    VERSIONS,
)
from edge_agent.wire.limits import (
    header_problem,
    level_problem,
    name_problem,
    statistic_problem,
    time_problem,
    unit_problem,
)
from edge_agent.wire.model import Batch, ChannelData, decimal_resolution, decimals_of
from edge_agent.wire.predict import season_for
from edge_agent.wire.sections import coded_block
from edge_agent.wire.varint import put_str, put_uvarint, zigzag


def value_block(
    qs: Sequence[int], width: int = 1, predictor: int | None = None, season: int = 0, coded: bool = True
) -> tuple[bytes, int, int]:
    """The smallest block of the predictors' residuals: (block, predictor, shape bits of the
    predictor and form). ``season`` > 0 adds the seasonal predictor with that period;
    ``coded`` False keeps to version 2's forms and predictors.

    Binned values that came from a decoder are re-encoded with the predictor (and season)
    they were rebuilt with: only then is every residual exact, and re-encoding (the store
    restamps batches so) changes no value. The search itself over the predictors chosen
    here is kernels.value_block."""
    if predictor is not None and width > 1:
        kinds = [predictor]
        if not 0 <= predictor < len(PREDICTORS) or (predictor == PREDICTOR_SEASONAL and season < 1):
            raise ValueError(f"predictor {predictor} (season {season}) is not one the format has")
        if predictor >= PREDICTOR_ZERO and not coded:
            raise ValueError(f"predictor {PREDICTORS[predictor]} needs wire version 3")
    else:
        kinds = [0, 1, 2, 3] if len(qs) >= 3 else [0]
        if coded and len(qs) >= 3:
            kinds.append(PREDICTOR_ZERO)
        if coded and season:
            kinds.append(PREDICTOR_SEASONAL)
    return kernels.value_block(qs, width, kinds, season, coded)


def encode(batch: Batch, *, deflate: bool = True, version: int = VERSION) -> bytes:
    """The payload of a batch (see docs/wire-format.md): version 4 by default (the epoch,
    each channel's reconstruction and bound); ``version=3`` writes version 3 when a
    channel's values are smallest in its coded form, else version 2, and ``version=2``
    keeps to version 2, for backbones whose decoders are older.

    Times are written as slots of the batch's schedule (``period_ms``; 1 when it has
    none) plus the offsets of points that are not on it; values as the residuals of the
    predictor whose block is smallest, in the smallest of the forms (Simple-8b, runs of
    zeros, Rice codes, range-coded). With ``deflate`` the body is compressed when that
    makes the payload smaller. A batch beyond the limits (format.py, the spec's "Limits")
    raises ValueError: what the encoder writes, the decoder reads.
    """
    if version not in (2, 3, 4):
        raise ValueError(f"encode writes wire versions 2, 3 and 4, not {version}")
    _check_header(batch)
    counts = [_check_channel(ch) for ch in batch.channels]  # all of them before any search
    if sum(counts) > MAX_BATCH_SAMPLES:
        raise ValueError(f"{sum(counts)} samples: at most {MAX_BATCH_SAMPLES} in a batch")
    period = batch.period_ms
    coded, written = version >= 3, 4 if version == 4 else 2
    body = bytearray()
    put_str(body, batch.node)
    put_str(body, batch.stream)
    if version == 4:
        body += batch.epoch.to_bytes(4, "little")
    put_uvarint(body, batch.seq)
    put_uvarint(body, batch.t0_ms)
    put_uvarint(body, period)
    put_uvarint(body, len(batch.channels))
    for ch, n in zip(batch.channels, counts):
        kind = KIND_OF.get((ch.name, ch.unit), 0)
        body.append(kind)
        if kind == 0:
            put_str(body, ch.name)
            put_str(body, ch.unit)
        _put_decimal(body, ch.resolution)
        if version == 4:
            _put_reconstruction(body, ch)
        put_uvarint(body, n)
        regular, has_exceptions, times = kernels.times_section(ch.times_ms, batch.t0_ms, period)
        shape = (
            (SHAPE_REGULAR if regular else 0)
            | (SHAPE_EXCEPTIONS if has_exceptions else 0)
            | (SHAPE_FLAGS if ch.flags else 0)
        )
        shape_at = len(body)
        body.append(shape)
        body += times
        if not 1 <= ch.bin_width < 1 << 64:
            raise ValueError(f"channel {ch.name}: bin width {ch.bin_width} is not in 1..2**64-1")
        if ch.bin_width > 1:
            body[shape_at] |= SHAPE_BINNED
            put_uvarint(body, ch.bin_width)
        season = ch.season if ch.predictor == PREDICTOR_SEASONAL else season_for(period, n)
        block, predictor, shape_bits = value_block(ch.values_q, ch.bin_width, ch.predictor, season, coded)
        if len(block) * MAX_PER_BYTE < n:  # runs of zeros: denser than a decoder admits
            block, shape_bits = _dense_block(ch, predictor, season, coded)
        body[shape_at] |= shape_bits
        if shape_bits & SHAPE_CODED == SHAPE_CODED and version == 3:
            written = 3
        put_uvarint(body, len(block))
        body += block
        if ch.flags:
            _put_flags(body, ch, n)
    if len(body) > MAX_BODY:
        raise ValueError(f"a body of {len(body)} bytes: at most {MAX_BODY}; seal smaller batches")
    flags = batch.flags & ~FLAG_DEFLATE & 0xFF
    if deflate:
        packer = zlib.compressobj(9, zlib.DEFLATED, -15)
        packed = packer.compress(bytes(body)) + packer.flush()
        if len(packed) < len(body):
            body, flags = bytearray(packed), flags | FLAG_DEFLATE
    out = bytearray(MAGIC)
    out.append(written)
    out.append(flags)
    out += body
    out += struct.pack("<I", kernels.crc32c(bytes(out)))
    if len(out) > MAX_PAYLOAD:
        raise ValueError(f"a payload of {len(out)} bytes: at most {MAX_PAYLOAD}; seal smaller batches")
    return bytes(out)


def _dense_block(ch: ChannelData, predictor: int, season: int, coded: bool) -> tuple[bytes, int]:
    """The residuals of ``predictor`` in a form of at least one byte per MAX_PER_BYTE values,
    the decoder's bound on a sample count (the runs form can pack far more): Simple-8b, or
    the coded form (padded to the bound) when smaller. (block, shape bits)."""
    residuals = kernels.residuals(ch.values_q, predictor, ch.bin_width, season)[0]
    best = kernels.pack_simple8b(kernels.zigzags(residuals)), predictor << 3
    if coded:
        block = coded_block(residuals, predictor, season)
        if len(block) < len(best[0]):
            best = block, SHAPE_CODED
    return best


def _put_decimal(out: bytearray, x: float) -> None:
    """A resolution or bound: m x 10^e when that is exactly x, else m = 0 and the f64."""
    m, e = decimal_resolution(x)
    put_uvarint(out, m)
    put_uvarint(out, zigzag(e))
    if m == 0:
        out += struct.pack("<d", x)


def _put_reconstruction(out: bytearray, ch: ChannelData) -> None:
    """Version 4: the reconstruction byte; the bound in it as steps of the resolution when
    it is a small whole number of them (read back exactly), else a decimal after it."""
    if ch.reconstruction not in RECONSTRUCTIONS:
        raise ValueError(
            f"channel {ch.name}: reconstruction {ch.reconstruction!r} is not one of {', '.join(RECONSTRUCTIONS)}"
        )
    if not (ch.bound >= 0 and math.isfinite(ch.bound)):
        raise ValueError(f"channel {ch.name}: bound {ch.bound!r} is not a finite number >= 0")
    code = RECONSTRUCTIONS.index(ch.reconstruction)
    ratio = ch.bound / ch.resolution
    steps = round(ratio) if ratio <= BOUND_STEPS_MAX else BOUND_STEPS_MAX + 1
    if ch.bound_relative and ch.bound > 0:
        out.append(code | BOUND_RELATIVE << BOUND_SHIFT)
        _put_decimal(out, ch.bound)
    elif steps <= BOUND_STEPS_MAX and round(steps * ch.resolution, decimals_of(ch.resolution)) == ch.bound:
        out.append(code | steps << BOUND_SHIFT)
    else:
        out.append(code | BOUND_DECIMAL << BOUND_SHIFT)
        _put_decimal(out, ch.bound)


def _check_header(batch: Batch) -> None:
    for problem in (
        name_problem(batch.node, "node id"),
        name_problem(batch.stream, "stream"),
        header_problem(batch.seq, batch.t0_ms, batch.period_ms, len(batch.channels), batch.epoch),
        level_problem(batch.flags),
        *(
            statistic_problem(batch.flags, ch.name, f"channel {c} name")
            for c, ch in enumerate(batch.channels)
        ),
    ):
        if problem:
            raise ValueError(problem)


def encode_v1(batch: Batch) -> bytes:
    """The version-1 payload of a batch (see docs/wire-format.md): for test vectors and for
    backbones that still need it; nodes send version 4."""
    _check_header(batch)
    if batch.flags & FLAG_LEVEL_MASK:
        raise ValueError(
            "a private batch (flag bits 3-4) needs version 2 or later: its period is in the header"
        )
    out = bytearray(MAGIC)
    out.append(1)
    out.append(batch.flags & 0xFF)
    put_str(out, batch.node)
    put_str(out, batch.stream)
    put_uvarint(out, batch.seq)
    put_uvarint(out, batch.t0_ms)
    put_uvarint(out, len(batch.channels))
    for ch in batch.channels:
        n = _check_channel(ch)
        put_str(out, ch.name)
        put_str(out, ch.unit)
        out += struct.pack("<d", ch.resolution)
        out.append(ENCODING_DELTA_VARINT)
        put_uvarint(out, n)
        prev_t, prev_dt = batch.t0_ms, 0
        for i, t in enumerate(ch.times_ms):
            # first: offset from the time base; second: delta; then delta-of-delta
            dt = t - prev_t
            put_uvarint(out, zigzag(dt if i <= 1 else dt - prev_dt))
            prev_t, prev_dt = t, dt
        prev_q = 0
        for q in ch.values_q:
            if zigzag(q - prev_q) >> 64:
                raise ValueError(f"channel {ch.name}: value {q} is too far from the one before for version 1")
            put_uvarint(out, zigzag(q - prev_q))
            prev_q = q
        _put_flags(out, ch, n)
    out += struct.pack("<I", kernels.crc32c(bytes(out)))
    if len(out) > MAX_PAYLOAD:
        raise ValueError(f"a payload of {len(out)} bytes: at most {MAX_PAYLOAD}; seal smaller batches")
    return bytes(out)


def _check_channel(ch: ChannelData) -> int:
    n = len(ch.times_ms)
    if len(ch.values_q) != n:
        raise ValueError(f"channel {ch.name}: {n} timestamps but {len(ch.values_q)} values")
    problem = name_problem(ch.name, "channel name") or unit_problem(ch.unit, f"channel {ch.name}: unit")
    if problem:
        raise ValueError(problem)
    if not (ch.resolution > 0 and math.isfinite(ch.resolution)):
        raise ValueError(f"channel {ch.name}: resolution must be a positive number")
    if n > MAX_CHANNEL_SAMPLES:
        raise ValueError(f"channel {ch.name}: {n} samples, at most {MAX_CHANNEL_SAMPLES} in a channel")
    if n:
        problem = time_problem(min(ch.times_ms), f"channel {ch.name}") or time_problem(
            max(ch.times_ms), f"channel {ch.name}"
        )
        if problem:
            raise ValueError(problem)
    return n


def _put_flags(out: bytearray, ch: ChannelData, n: int) -> None:
    put_uvarint(out, len(ch.flags))
    prev_i = -1
    for idx, fl in ch.flags:
        if not prev_i < idx < n or not 0 < fl <= 0xFF:
            raise ValueError(f"channel {ch.name}: bad quality flag entry ({idx}, {fl})")
        put_uvarint(out, idx - prev_i - 1)
        out.append(fl)
        prev_i = idx


_HISTORICAL_DELTA: dict[int, int] = {}  # checked length -> what setting the flag does to the CRC


def mark_historical(payload: bytes) -> bytes:
    """The same payload with the ``historical`` flag set (and its checksum brought along).

    The payload is not decoded: the flags byte sits at a fixed offset. A CRC is affine in
    its message, so flipping one bit changes it by a constant of the message's length
    (``crc(m ^ d) = crc(m) ^ crc(d) ^ crc(0)``): the checksum is updated without reading
    the payload again, and a payload corrupted in the store stays detectably corrupt.
    """
    if payload[:2] != MAGIC or payload[2] not in VERSIONS:
        raise WireFormatError("not an edge-agent batch of a known version")
    if payload[3] & FLAG_HISTORICAL:
        return payload
    n = len(payload) - 4
    delta = _HISTORICAL_DELTA.get(n)
    if delta is None:
        if len(_HISTORICAL_DELTA) > 4096:
            _HISTORICAL_DELTA.clear()
        flag = bytearray(n)
        flag[3] = FLAG_HISTORICAL
        delta = _HISTORICAL_DELTA[n] = kernels.crc32c(bytes(flag)) ^ kernels.crc32c(bytes(n))
    crc = int.from_bytes(payload[-4:], "little") ^ delta
    return b"".join(
        (payload[:3], bytes((payload[3] | FLAG_HISTORICAL,)), payload[4:-4], crc.to_bytes(4, "little"))
    )
