"""Throughput of the signal core and bytes on the wire, measured side by side in one run.

    .venv/bin/python bench/bench_chain.py [--samples N]

Prints samples per second through the default chain (median 5 -> EMA 0.5 ->
deadband) for the compiled core (per-sample and batch calls) and the pure-Python
twin, with ratios; then bytes per sample on the wire for a simulated day of a
BME680 at 1 Hz sealed every 10 s, against the same data as JSON lines, and the
SHA-256 of all of that day's payloads (it must not change unless the wire format does).
"""

from __future__ import annotations

import argparse
import array
import hashlib
import json
import math
import random
import time

from edge_agent import wire
from edge_agent.dsp import chain as twin
from edge_agent.implementation import compiled

SPEC = [("hampel", 7, 3.0), ("median", 5), ("ema", 0.5), ("swing", 0.02, 0.0)]


def signal(n: int, seed: int = 1) -> array.array:
    rnd = random.Random(seed)
    return array.array("d", (21.0 + 2.0 * math.sin(i / 600.0) + rnd.gauss(0, 0.02) for i in range(n)))


def rate(fn, n: int) -> float:
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return n / best


def bench_core(n: int) -> None:
    xs = signal(n)
    ts = array.array("d", (float(i) for i in range(n)))
    out_t = array.array("d", bytes(8 * n))
    out_y = array.array("d", bytes(8 * n))
    results = {}
    results["python twin, per sample"] = rate(
        lambda: [c.push(t, x) for c in [twin.Chain(SPEC)] for t, x in zip(ts, xs)], n
    )
    if compiled is not None:
        results["cython, per sample"] = rate(
            lambda: [c.push(t, x) for c in [compiled.Chain(SPEC)] for t, x in zip(ts, xs)], n
        )
        results["cython, batch (nogil)"] = rate(lambda: compiled.Chain(SPEC).run(ts, xs, out_t, out_y), n)
    base = results["python twin, per sample"]
    print(f"signal core: chain {SPEC}, {n} samples, best of 3")
    for name, r in results.items():
        print(f"  {name:<26} {r / 1e6:8.3f} M samples/s   {r / base:7.1f}x the twin")


def bench_wire(seconds: int) -> None:
    """A simulated day of a BME680 at 1 Hz, sealed every 10 s, through deadband and swinging door."""
    rnd = random.Random(2)
    chans = {
        "temperature": (0.01, 0.02, "°C"),
        "humidity": (0.01, 0.05, "%"),
        "pressure": (0.01, 0.02, "hPa"),
        "gas": (1.0, 200.0, "Ω"),
    }
    series = {k: [] for k in chans}
    for s in range(seconds):
        series["temperature"].append(21 + 2 * math.sin(s / 3600) + rnd.gauss(0, 0.01))
        series["humidity"].append(45 + 5 * math.sin(s / 5400) + rnd.gauss(0, 0.02))
        series["pressure"].append(1013 + 0.5 * math.sin(s / 7200) + rnd.gauss(0, 0.005))
        series["gas"].append(50000 + 5000 * math.sin(s / 4000) + rnd.gauss(0, 100))
    samples = seconds * len(chans)
    json_bytes = sum(
        len(
            json.dumps(
                {
                    "node": "lamp-0042",
                    "sensor": "bme680",
                    "channel": k,
                    "t": 1767225600 + s,
                    "value": round(v, 2),
                }
            )
        )
        + 1
        for k, vs in series.items()
        for s, v in enumerate(vs)
    )
    print(
        f"wire: {seconds} s of a BME680 at 1 Hz ({samples} samples), median(5) -> EMA(0.5) -> lossy stage "
        f"(none; deadband, swinging door, or error-bounded bins with the same width); wire version 4 (what a node "
        f"sends: the epoch, each channel's reconstruction and bound) beside versions 3, 2 and 1 (version 1 "
        f"cannot carry bins: its figure there is lossless)"
    )
    epoch = random.Random(4).getrandbits(32)  # a node draws one per start: fixed here, so the digest holds
    digest = hashlib.sha256()  # the day's bytes: a change of the wire shows here first
    for lossy in ("none", "deadband", "swing", "bound"):
        for flush in (10, 60):
            tail = {"none": [], "deadband": None, "swing": None, "bound": []}[lossy]
            chains = {
                k: twin.Chain(
                    [("median", 5), ("ema", 0.5)]
                    + (
                        tail
                        if tail is not None
                        else [(lossy, d, 0.0, 0.0) if lossy == "deadband" else (lossy, d, 0.0)]
                    )
                )
                for k, (_, d, _) in chans.items()
            }
            v1_bytes = v2_bytes = v3_bytes = v4_bytes = kept = seq = 0
            recon = {"none": "every", "deadband": "hold", "swing": "linear", "bound": "every"}[lossy]
            t0 = 1_767_225_600_000
            for start in range(0, seconds, flush):
                chs = []
                for k, (res, _, unit) in chans.items():
                    pts = [
                        p
                        for p in (
                            chains[k].push(s, series[k][s]) for s in range(start, min(seconds, start + flush))
                        )
                        if p is not None
                    ]
                    end = chains[k].flush()
                    if end is not None:
                        pts.append(end)
                    if pts:
                        width = wire.bin_width_for(chans[k][1], res) if lossy == "bound" else 1
                        bound = {"none": 0.0, "bound": (width // 2) * res}.get(lossy, chans[k][1])
                        chs.append(
                            wire.ChannelData(
                                k,
                                unit,
                                res,
                                tuple(t0 + round(t * 1000) for t, _ in pts),
                                tuple(wire.quantise(y, res) for _, y in pts),
                                bin_width=width,
                                reconstruction=recon,
                                bound=bound,
                            )
                        )
                if chs:
                    batch = wire.Batch(
                        "lamp-0042",
                        "bme680",
                        seq,
                        min(min(c.times_ms) for c in chs),
                        tuple(chs),
                        period_ms=1000,
                        epoch=epoch,
                    )
                    payloads = (
                        wire.encode_v1(batch),
                        wire.encode(batch, version=2),
                        wire.encode(batch, version=3),
                        wire.encode(batch),
                    )
                    for payload in payloads:
                        digest.update(payload)
                    v1_bytes += len(payloads[0])
                    v2_bytes += len(payloads[1])
                    v3_bytes += len(payloads[2])
                    v4_bytes += len(payloads[3])
                    kept += sum(len(c.times_ms) for c in chs)
                    seq += 1
            print(
                f"  {lossy:<8} flush {flush:>2} s: {seq} batches, {kept} points kept ({kept / samples:5.1%}); "
                f"v4 {v4_bytes} B = {v4_bytes / samples:.3f} B/sample ({8 * v4_bytes / samples:.2f} bits), "
                f"v3 {v3_bytes / samples:.3f}, v2 {v2_bytes / samples:.3f}, v1 {v1_bytes / samples:.3f} B/sample: "
                f"v4/v3 {v4_bytes / v3_bytes:.3f} (+{(v4_bytes - v3_bytes) / seq:.1f} B a batch), "
                f"v3/v2 {v3_bytes / v2_bytes:.2f}, v4/v1 {v4_bytes / v1_bytes:.2f}; JSON lines {json_bytes / v4_bytes:.0f}x v4"
            )
    print(f"  sha256 of every payload above (v1, v2, v3, v4 of each batch, in order): {digest.hexdigest()}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=1_000_000)
    ap.add_argument("--seconds", type=int, default=86_400)
    args = ap.parse_args()
    bench_core(args.samples)
    bench_wire(args.seconds)


if __name__ == "__main__":
    main()
