"""The decoder: a payload of version 1 to 4 to its Batch, or a WireFormatError that says
what is wrong and where (docs/wire-format.md is the normative specification).

A payload may come from a sender with a bug or from anyone on the broker: every count is
bounded by the bytes that carry it and by the limits (format.py: a payload and a
deflated body by MAX_PAYLOAD, the samples of a batch by MAX_BATCH_SAMPLES), and nothing
but WireFormatError leaves decode() for any input. Byte offsets in errors count from the
payload's first byte, or, in a deflated body, from the body's first byte after inflating
(the message says so).
"""

from __future__ import annotations

import math
import struct
import zlib

from edge_agent.errors import WireFormatError
from edge_agent.wire import kernels
from edge_agent.wire.format import (
    BOUND_DECIMAL,
    BOUND_RELATIVE,
    BOUND_SHIFT,
    ENCODING_DELTA_VARINT,
    FLAG_DEFLATE,
    FLAG_LEVEL_MASK,
    FORMS,
    KNOWN_CHANNELS,
    MAGIC,
    MAX_BATCH_SAMPLES,
    MAX_BODY,
    MAX_CHANNEL_SAMPLES,
    MAX_PAYLOAD,
    MAX_PER_BYTE,
    MAX_RESIDUAL_BITS,
    PREDICTOR_SEASONAL,
    PREDICTORS,
    RECON_MASK,
    RECONSTRUCTIONS,
    RESOLUTION_EXP,
    SHAPE_BINNED,
    SHAPE_CODED,
    SHAPE_EXCEPTIONS,
    SHAPE_FLAGS,
    SHAPE_PREDICTOR,
    SHAPE_REGULAR,
    SHAPE_RICE,
    SHAPE_RUNS,
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
from edge_agent.wire.model import Batch, ChannelData, decimals_of, resolution_of
from edge_agent.wire.packing import from_zero_runs, unpack_rice, unpack_simple8b
from edge_agent.wire.varint import Reader, unzigzag


def decode(payload: bytes) -> Batch:
    """Decode one payload; WireFormatError says what is wrong and where."""
    payload = bytes(payload)
    if len(payload) > MAX_PAYLOAD:
        raise WireFormatError(f"payload of {len(payload)} bytes: the limit is {MAX_PAYLOAD}")
    if len(payload) < 8:
        raise WireFormatError(f"payload of {len(payload)} bytes is too short to be a batch")
    if payload[:2] != MAGIC:
        raise WireFormatError(
            f"bad magic {payload[:2].hex()} (expected {MAGIC.hex()}): not an edge-agent batch"
        )
    version = payload[2]
    if version not in VERSIONS:
        raise WireFormatError(
            f"unsupported wire format version {version} (this decoder knows {', '.join(map(str, VERSIONS))})"
        )
    (crc,) = struct.unpack_from("<I", payload, len(payload) - 4)
    actual = kernels.crc32c(payload[:-4])
    if crc != actual:
        raise WireFormatError(
            f"checksum mismatch: payload says {crc:08x}, content gives {actual:08x} "
            f"(corrupted in the store or on the way)"
        )
    if version >= 2:
        return _decode_v2(payload, payload[3])
    return _decode_v1(payload)


def _decode_v1(payload: bytes) -> Batch:
    r = Reader(payload, len(payload) - 4)
    r.pos = 3
    flags = r.byte("flags")
    node = r.string("node id")
    stream = r.string("stream")
    seq = r.uvarint("sequence number")
    t0 = r.uvarint("time base")
    nch = r.uvarint("channel count")
    _check_header(node, stream, seq, t0, 1, nch, 0)
    channels = []
    for c in range(nch):
        what = f"channel {c}"
        name = r.string(f"{what} name")
        unit = r.string(f"{what} unit")
        _check_names(name, unit, what)
        resolution = r.f64(f"{what} resolution")
        if not (resolution > 0 and math.isfinite(resolution)):
            raise WireFormatError(f"{what} ({name}): resolution {resolution!r} is not a positive number")
        encoding = r.byte(f"{what} encoding")
        if encoding != ENCODING_DELTA_VARINT:
            raise WireFormatError(f"{what} ({name}): unknown encoding id {encoding}")
        n = r.uvarint(f"{what} sample count")
        if n > r.end - r.pos:  # every sample takes at least two bytes: guards absurd counts
            raise WireFormatError(f"{what} ({name}): sample count {n} exceeds the payload")
        times = []
        t, dt = t0, 0
        for i in range(n):
            v = r.svarint(f"{what} timestamp {i}")
            if i == 0:
                t = t0 + v
            else:
                dt = v if i == 1 else dt + v
                t += dt
            times.append(t)
        values = []
        q = 0
        for i in range(n):
            q += r.svarint(f"{what} value {i}")
            values.append(q)
        _check_times(times, what, name)
        qflags = _read_flags(r, what, name, n)
        channels.append(ChannelData(name, unit, resolution, tuple(times), tuple(values), tuple(qflags)))
    if r.pos != r.end:
        raise WireFormatError(f"{r.end - r.pos} unexpected bytes after the last channel")
    return Batch(
        node=node,
        stream=stream,
        seq=seq,
        t0_ms=t0,
        channels=tuple(channels),
        flags=flags & ~FLAG_LEVEL_MASK,  # reserved in version 1: ignored
        version=1,
    )


def _decode_v2(payload: bytes, flags: int) -> Batch:
    """Versions 2 to 4 (version 3 adds the coded form, version 4 the epoch and each
    channel's reconstruction and bound)."""
    version = payload[2]
    if problem := level_problem(flags):
        raise WireFormatError(f"byte 3: {problem}")
    body = payload[4:-4]
    if flags & FLAG_DEFLATE:
        inflater = zlib.decompressobj(-15)
        try:  # one byte more than the limit: a body of exactly MAX_BODY bytes is not refused
            body = inflater.decompress(body, MAX_BODY + 1)
        except zlib.error as exc:
            raise WireFormatError(f"deflated body does not inflate: {exc}") from None
        if len(body) > MAX_BODY:
            raise WireFormatError(f"deflated body inflates beyond {MAX_BODY} bytes")
        if not inflater.eof:
            raise WireFormatError("deflated body is cut short (the DEFLATE stream does not end)")
        if inflater.unused_data:
            raise WireFormatError(
                f"{len(inflater.unused_data)} bytes after the end of the deflated body (before the checksum)"
            )
        where = "the inflated body's "
    else:
        body, where = payload[:-4], ""
    r = Reader(body, len(body), where)
    r.pos = 0 if flags & FLAG_DEFLATE else 4
    node = r.string("node id")
    stream = r.string("stream")
    epoch = int.from_bytes(r.take(4, "epoch"), "little") if version >= 4 else 0
    seq = r.uvarint("sequence number")
    t0 = r.uvarint("time base")
    period = r.uvarint("period")
    nch = r.uvarint("channel count")
    _check_header(node, stream, seq, t0, period, nch, epoch)
    channels = []
    total = 0
    for c in range(nch):
        what = f"channel {c}"
        kind_at = r.pos
        kind = r.byte(f"{what} kind")
        if kind == 0:
            name, unit = r.string(f"{what} name"), r.string(f"{what} unit")
            _check_names(name, unit, what)
        elif kind in KNOWN_CHANNELS:
            name, unit = KNOWN_CHANNELS[kind]
        else:
            raise WireFormatError(f"{what}: unknown channel kind {kind}")
        if problem := statistic_problem(flags, name, f"{what} name"):
            raise WireFormatError(f"{problem} (the channel at {r.at(kind_at)})")
        resolution = _read_decimal(r, f"{what} ({name}) resolution")
        if not resolution > 0:
            raise WireFormatError(f"{what} ({name}): resolution {resolution!r} is not a positive number")
        recon, bound, relative = (
            _read_reconstruction(r, what, name, resolution) if version >= 4 else ("every", 0.0, False)
        )
        n = r.uvarint(f"{what} sample count")
        total += n
        if n > min(MAX_CHANNEL_SAMPLES, MAX_PER_BYTE * (r.end - r.pos)) or total > MAX_BATCH_SAMPLES:
            raise WireFormatError(
                f"{what} ({name}): sample count {n} exceeds the payload or the limits "
                f"({MAX_CHANNEL_SAMPLES} a channel, {MAX_BATCH_SAMPLES} a batch)"
            )
        shape = r.byte(f"{what} shape")
        times = _read_times(r, shape, n, t0, period, what, name)
        _check_times(times, what, name)
        width = r.uvarint(f"{what} bin width") if shape & SHAPE_BINNED else 1
        if width < 1:
            raise WireFormatError(f"{what} ({name}): bin width 0")
        block = r.block(f"{what} values")
        values, predictor, season, form = _read_values(block, shape, n, width, version, what, name)
        qflags = _read_flags(r, what, name, n) if shape & SHAPE_FLAGS else []
        channels.append(
            ChannelData(
                name,
                unit,
                resolution,
                tuple(times),
                tuple(values),
                tuple(qflags),
                encoding=version,
                bin_width=width,
                predictor=predictor,
                season=season,
                form=form,
                reconstruction=recon,
                bound=bound,
                bound_relative=relative,
            )
        )
    if r.pos != r.end:
        raise WireFormatError(f"{r.end - r.pos} unexpected bytes after the last channel")
    return Batch(
        node=node,
        stream=stream,
        seq=seq,
        t0_ms=t0,
        channels=tuple(channels),
        flags=flags & ~FLAG_DEFLATE,
        version=version,
        period_ms=period,
        epoch=epoch,
    )


def _read_decimal(r: Reader, what: str) -> float:
    """A resolution or bound: m x 10^e (m > 0, |e| <= RESOLUTION_EXP), or m = 0 and an f64."""
    at = r.pos
    m = r.uvarint(what)
    e = r.svarint(f"{what} exponent")
    if m == 0:
        value = r.f64(what)
    elif -RESOLUTION_EXP <= e <= RESOLUTION_EXP:
        value = resolution_of(m, e)
    else:
        raise WireFormatError(f"{what} at {r.at(at)}: exponent {e} is outside ±{RESOLUTION_EXP}")
    if not math.isfinite(value):
        raise WireFormatError(f"{what} at {r.at(at)}: {value!r} is not a finite number")
    return value


def _read_reconstruction(r: Reader, what: str, name: str, resolution: float) -> tuple[str, float, bool]:
    """Version 4: (reconstruction, bound, bound is relative) of a channel."""
    code = r.byte(f"{what} reconstruction")
    if (code & RECON_MASK) >= len(RECONSTRUCTIONS):
        raise WireFormatError(f"{what} ({name}): reconstruction {code & RECON_MASK} is not defined")
    b = code >> BOUND_SHIFT
    if b < BOUND_DECIMAL:  # none, or that many steps, rounded as the values are
        return RECONSTRUCTIONS[code & RECON_MASK], round(b * resolution, decimals_of(resolution)), False
    bound = _read_decimal(r, f"{what} ({name}) bound")
    if not bound > 0:
        raise WireFormatError(f"{what} ({name}): bound {bound!r} is not a positive number")
    return RECONSTRUCTIONS[code & RECON_MASK], bound, b == BOUND_RELATIVE


def _check_header(node: str, stream: str, seq: int, t0: int, period: int, nch: int, epoch: int) -> None:
    problem = name_problem(node, "node id") or name_problem(stream, "stream")
    problem = problem or header_problem(seq, t0, period, nch, epoch)
    if problem:
        raise WireFormatError(problem)


def _check_names(name: str, unit: str, what: str) -> None:
    problem = name_problem(name, f"{what} name") or unit_problem(unit, f"{what} unit")
    if problem:
        raise WireFormatError(problem)


def _check_times(times: list[int], what: str, name: str) -> None:
    if times:
        problem = time_problem(min(times), f"{what} ({name})") or time_problem(max(times), f"{what} ({name})")
        if problem:
            raise WireFormatError(problem)


def _read_times(r: Reader, shape: int, n: int, t0: int, period: int, what: str, name: str) -> list[int]:
    """A channel's times: its slots (the first one when regular, else the gaps between
    them), then the offsets of the times off their slot."""
    if shape & SHAPE_REGULAR:
        k0 = r.uvarint(f"{what} first slot")
        if not shape & SHAPE_EXCEPTIONS:  # on the schedule: one range
            return list(range(t0 + k0 * period, t0 + (k0 + n) * period, period))  # period >= 1
        ks = list(range(k0, k0 + n))
    else:
        ks, k = [], -1
        for z in unpack_simple8b(r.block(f"{what} times"), n, f"{what} times"):
            k += unzigzag(z) + 1
            ks.append(k)
    offsets: dict[int, int] = {}
    if shape & SHAPE_EXCEPTIONS:
        idx = -1
        for _ in range(r.uvarint(f"{what} exception count")):
            idx += r.uvarint(f"{what} exception index") + 1
            if idx >= n:
                raise WireFormatError(f"{what} ({name}): time exception for sample {idx} of {n}")
            offsets[idx] = r.svarint(f"{what} exception offset")
    return [t0 + k * period + offsets.get(i, 0) for i, k in enumerate(ks)]


def _read_values(
    block: bytes, shape: int, n: int, width: int, version: int, what: str, name: str
) -> tuple[list[int], int, int, str]:
    """A channel's values from its value block: (values, predictor, season, form)."""
    predictor = (shape & SHAPE_PREDICTOR) >> 3
    season = 0
    form = FORMS[(shape & SHAPE_CODED) >> 6]
    if shape & SHAPE_CODED == SHAPE_CODED:
        if version < 3:
            raise WireFormatError(f"{what} ({name}): shape says both runs and Rice codes")
        if predictor:
            raise WireFormatError(
                f"{what} ({name}): coded values with predictor bits {predictor} "
                "in the shape (the block names the predictor)"
            )
        rb = Reader(block, len(block), "the value block's ")
        predictor = rb.uvarint(f"{what} predictor")
        if predictor >= len(PREDICTORS):
            raise WireFormatError(f"{what} ({name}): unknown predictor {predictor}")
        if predictor == PREDICTOR_SEASONAL:
            season = rb.uvarint(f"{what} season")
            if season < 1:
                raise WireFormatError(f"{what} ({name}): season 0")
        residuals = kernels.rc_decode(block[rb.pos :], n, f"{what} values")
    elif shape & SHAPE_RICE:
        residuals = unpack_rice(block, n, f"{what} values")
        if residuals and max(residuals) >> MAX_RESIDUAL_BITS:
            raise WireFormatError(f"{what} ({name}): a Rice-coded residual of 2^{MAX_RESIDUAL_BITS} or more")
    elif shape & SHAPE_RUNS:
        rb = Reader(block, len(block), "the value block's ")
        nonzero = rb.uvarint(f"{what} non-zero count")
        if nonzero > n:
            raise WireFormatError(f"{what} ({name}): {nonzero} non-zero residuals of {n}")
        items = unpack_simple8b(block[rb.pos :], 2 * nonzero + 1, f"{what} values")
        made = sum(items[0::2]) + nonzero  # counted before the zeros are made
        if made != n:
            raise WireFormatError(f"{what} ({name}): runs make {made} values, not {n}")
        if nonzero and max(items[1::2]) + 1 >> MAX_RESIDUAL_BITS:
            raise WireFormatError(f"{what} ({name}): a residual of 2^{MAX_RESIDUAL_BITS} or more in runs")
        residuals = from_zero_runs(items)
    else:
        residuals = unpack_simple8b(block, n, f"{what} values")
    zigzag = shape & SHAPE_CODED != SHAPE_CODED  # Simple-8b, Rice and runs carry zigzags
    return kernels.values_from(residuals, predictor, width, season, zigzag), predictor, season, form


def _read_flags(r: Reader, what: str, name: str, n: int) -> list[tuple[int, int]]:
    """The sparse list of a channel's quality flags: (sample index, flags)."""
    nflags = r.uvarint(f"{what} flag count")
    qflags = []
    idx = -1
    for _ in range(nflags):
        idx += r.uvarint(f"{what} flag index") + 1
        fl = r.byte(f"{what} flag")
        if idx >= n:
            raise WireFormatError(f"{what} ({name}): quality flag for sample {idx} of {n}")
        if fl == 0:
            raise WireFormatError(
                f"{what} ({name}): quality flag 0 for sample {idx} (only flagged samples are listed)"
            )
        qflags.append((idx, fl))
    return qflags
