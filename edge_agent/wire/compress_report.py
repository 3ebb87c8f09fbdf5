"""`edge-agent compress-report`: what the core would do to a series, measured on the wire.

Backbone engineers run it on their own history to choose a channel's resolution and
deviation: it runs the samples through the chain (lossless quantisation, the swinging
door with the given deviation, or error-bounded quantisation), encodes the kept points
in the wire format, decodes them again, and compares every sample with its
reconstruction.

The two lossy modes hold the same bound B = deviation + resolution / 2 at every sample:

- ``swing``: the swinging door keeps the points that a line through them reconstructs
  within the deviation; the points are quantised at the resolution;
- ``bound``: every sample is kept: quantised at the resolution, predicted from the values
  the decoder has already rebuilt, and the prediction error sent in bins 2 x deviation
  wide (as error-bounded compressors such as SZ do), so the bound holds by construction;
  most residuals are 0 on a slowly moving signal, the bits go where it changes, and a
  regular series costs nothing for its times.
"""

from __future__ import annotations

import bisect
import csv
import itertools
import math
from pathlib import Path

from edge_agent import dsp, wire
from edge_agent.errors import ConfigError, WireFormatError


def read_series(path: str) -> tuple[list[float], list[float]]:
    """``t,value`` rows (Unix seconds); a header line is allowed. Errors name file and line."""
    ts: list[float] = []
    xs: list[float] = []
    try:
        with open(path, newline="", encoding="utf-8") as f:
            for lineno, row in enumerate(csv.reader(f), 1):
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue
                try:
                    if len(row) != 2:
                        raise ValueError
                    t, x = float(row[0]), float(row[1])
                except ValueError:
                    if lineno == 1 and not ts:
                        continue  # a header
                    raise ConfigError(
                        f"{path}:{lineno}: expected two numbers t,value, got {','.join(row)!r}"
                    ) from None
                if not (math.isfinite(t) and math.isfinite(x)):  # numbers, so not a header
                    raise ConfigError(f"{path}:{lineno}: t and value must be finite, got {','.join(row)!r}")
                if ts and t <= ts[-1]:
                    raise ConfigError(
                        f"{path}:{lineno}: time {t:g} does not come after {ts[-1]:g} "
                        f"(rows must be in increasing time)"
                    )
                ts.append(t)
                xs.append(x)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not a text file (byte {exc.start} is not UTF-8)") from None
    except csv.Error as exc:  # a field over csv's size limit, and the like
        raise ConfigError(f"{path}: not a CSV of t,value rows ({exc})") from None
    if not ts:
        raise ConfigError(f"{path}: no t,value rows")
    return ts, xs


def schedule_ms(ts: list[float]) -> int:
    """The series' sampling period: its most common step, in whole milliseconds (1: none)."""
    from collections import Counter

    steps = Counter(round((b - a) * 1000) for a, b in itertools.pairwise(ts))
    step = steps.most_common(1)[0][0] if steps else 1
    return max(1, step)


MODES = ("swing", "bound")


def compress_report(
    ts: list[float],
    xs: list[float],
    resolution: float,
    deviation: float | None = None,
    mode: str = "swing",
    *,
    source: str = "the series",
) -> dict:
    """Run, encode, decode and compare; the figures `compress-report` prints. ConfigError
    for flags out of range and for a series the wire cannot carry at ``resolution``."""
    if not (resolution > 0 and math.isfinite(resolution)):
        raise ConfigError(f"--resolution must be a finite number greater than zero, got {resolution!r}")
    if deviation is not None and not (deviation >= 0 and math.isfinite(deviation)):
        raise ConfigError(f"--deviation must be a finite number >= 0, got {deviation!r}")
    if mode not in MODES:
        raise ConfigError(f"--mode must be one of {', '.join(MODES)}, got {mode!r}")
    step, width = resolution, 1
    if deviation and mode == "bound":
        width = wire.bin_width_for(deviation, resolution)
        pts = list(zip(ts, xs))
    else:
        chain = dsp.Chain([("swing", deviation, 0.0)] if deviation else [])
        pts = [p for p in (chain.push(t, x) for t, x in zip(ts, xs)) if p is not None]
        end = chain.flush()
        if end is not None:
            pts.append(end)
    t0 = round(ts[0] * 1000)
    try:
        ch = wire.ChannelData(
            "value",
            "",
            step,
            tuple(round(t * 1000) for t, _ in pts),
            tuple(wire.quantise(y, step) for _, y in pts),
            bin_width=width,
            reconstruction="linear" if deviation and mode == "swing" else "every",
            bound=(width // 2) * step if width > 1 else (deviation or 0.0) if mode == "swing" else 0.0,
        )
        batch = wire.Batch("report", "series", 0, t0, (ch,), period_ms=schedule_ms(ts))
        payload = wire.encode(batch)
    except (ValueError, OverflowError) as exc:  # values (or times) beyond what the wire carries
        raise ConfigError(
            f"{source}: cannot be put on the wire at resolution {resolution:g}: {exc}"
        ) from None
    raw = wire.encode(batch, deflate=False) if payload[3] & wire.FLAG_DEFLATE else payload
    try:
        decoded = wire.decode(payload).channels[0]
    except WireFormatError as exc:  # the encoder took what the decoder's limits refuse (issue 13)
        raise ConfigError(f"{source}: its payload does not decode: {exc}") from None
    kt = [t / 1000.0 for t in decoded.times_ms]
    ky = [q * step for q in decoded.values_q]
    worst = 0.0
    for t, x in zip(ts, xs):
        tm = round(t * 1000) / 1000.0
        j = bisect.bisect_right(kt, tm) - 1
        if j < 0:
            y = ky[0]
        elif j >= len(kt) - 1 or kt[j] == tm:
            y = ky[j]
        else:
            y = ky[j] + (ky[j + 1] - ky[j]) * (tm - kt[j]) / (kt[j + 1] - kt[j])
        worst = max(worst, abs(y - x))
    value_bytes = len(
        wire.value_block(ch.values_q, width, season=wire.season_for(batch.period_ms, len(pts)))[0]
    )
    n = len(ts)
    return {
        "samples": n,
        "points_kept": len(pts),
        "resolution": resolution,
        "deviation": deviation or 0.0,
        "mode": mode if deviation else "lossless",
        "bound": (deviation or 0.0) + resolution / 2,
        "payload_bytes": len(payload),
        "payload_bytes_undeflated": len(raw),
        "period_ms": batch.period_ms,
        "bits_per_value": round(8 * value_bytes / n, 3),
        "bits_per_sample": round(8 * len(payload) / n, 3),
        "max_abs_error": worst,
        "compression_ratio": round(16 * n / len(payload), 2),
        "wire_version": payload[2],
        "predictor": wire.PREDICTORS[decoded.predictor or 0],
    }


def format_report(name: str, r: dict) -> str:
    mode = {
        "swing": f"swinging door, deviation {r['deviation']:g}",
        "bound": f"error-bounded quantisation, deviation {r['deviation']:g}",
        "lossless": "lossless",
    }[r["mode"]]
    return "\n".join(
        [
            f"{Path(name).name}: {r['samples']} samples, {mode}, resolution {r['resolution']:g}",
            f"  points kept        {r['points_kept']} ({r['points_kept'] / r['samples']:.1%})",
            (
                f"  on the wire        {r['payload_bytes']} B: {r['bits_per_sample']} bits/sample, "
                f"{r['bits_per_value']} bits/value for the values (wire version {r['wire_version']}, "
                f"predictor {r['predictor']})"
            ),
            f"  largest error      {r['max_abs_error']:.6g} (bound {r['bound']:g})",
            f"  compression ratio  {r['compression_ratio']}x against 16 B per raw (t, value) sample",
        ]
    )
