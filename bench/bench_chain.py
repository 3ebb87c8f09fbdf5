"""Throughput of the signal core and bytes on the wire, measured side by side in one run.

    .venv/bin/python bench/bench_chain.py [--samples N]

Prints samples per second through the default chain (median 5 -> EMA 0.5 ->
deadband) for the compiled core (per-sample and batch calls) and the pure-Python
twin, with ratios; then bytes per sample on the wire for a simulated day of a
BME680 at 1 Hz sealed every 10 s, against the same data as JSON lines.
"""

from __future__ import annotations

import argparse
import array
import json
import math
import random
import time

from edge_agent import _dsp_py, wire

try:
    from edge_agent import _dsp
except ImportError:
    _dsp = None

SPEC = [("median", 5), ("ema", 0.5), ("deadband", 0.02)]


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
    out = array.array("d", bytes(8 * n))
    idx = array.array("q", bytes(8 * n))
    results = {}
    results["python twin, per sample"] = rate(lambda: [c.push(x) for c in [_dsp_py.Chain(SPEC)] for x in xs], n)
    if _dsp is not None:
        results["cython, per sample"] = rate(lambda: [c.push(x) for c in [_dsp.Chain(SPEC)] for x in xs], n)
        results["cython, batch (nogil)"] = rate(lambda: _dsp.Chain(SPEC).run(xs, out, idx), n)
    base = results["python twin, per sample"]
    print(f"signal core: chain {SPEC}, {n} samples, best of 3")
    for name, r in results.items():
        print(f"  {name:<26} {r / 1e6:8.3f} M samples/s   {r / base:7.1f}x the twin")


def bench_wire(seconds: int) -> None:
    rnd = random.Random(2)
    chans = {"temperature": (0.01, 0.02, "°C"), "humidity": (0.01, 0.05, "%"),
             "pressure": (0.01, 0.02, "hPa"), "gas": (1.0, 200.0, "Ω")}
    chains = {k: _dsp_py.Chain([("median", 5), ("ema", 0.5), ("deadband", d)]) for k, (_, d, _) in chans.items()}
    t0 = 1_767_225_600_000
    payload_bytes = json_bytes = kept = 0
    open_pts = {k: ([], []) for k in chans}
    seq = 0
    for s in range(seconds):
        t = t0 + s * 1000
        values = {"temperature": 21 + 2 * math.sin(s / 3600) + rnd.gauss(0, 0.01),
                  "humidity": 45 + 5 * math.sin(s / 5400) + rnd.gauss(0, 0.02),
                  "pressure": 1013 + 0.5 * math.sin(s / 7200) + rnd.gauss(0, 0.005),
                  "gas": 50000 + 5000 * math.sin(s / 4000) + rnd.gauss(0, 100)}
        for k, v in values.items():
            json_bytes += len(json.dumps({"node": "lamp-0042", "sensor": "bme680", "channel": k,
                                          "t": t / 1000, "value": round(v, 2)})) + 1
            y = chains[k].push(v)
            if y is not None:
                open_pts[k][0].append(t)
                open_pts[k][1].append(wire.quantise(y, chans[k][0]))
        if s % 10 == 9:
            chs = tuple(wire.ChannelData(k, chans[k][2], chans[k][0], tuple(ts), tuple(qs))
                        for k, (ts, qs) in open_pts.items() if ts)
            if chs:
                payload_bytes += len(wire.encode(wire.Batch("lamp-0042", "bme680", seq,
                                                            min(c.times_ms[0] for c in chs), chs)))
                kept += sum(len(c.times_ms) for c in chs)
                seq += 1
            open_pts = {k: ([], []) for k in chans}
    samples = seconds * len(chans)
    print(f"wire: {seconds} s of a BME680 at 1 Hz ({samples} samples), sealed every 10 s, {seq} batches")
    print(f"  points kept by the chain     {kept} ({kept / samples:.1%} of samples)")
    print(f"  wire format v1               {payload_bytes} B = {payload_bytes / samples:.3f} B/sample, "
          f"{payload_bytes / max(kept, 1):.2f} B/kept point")
    print(f"  JSON lines, every sample     {json_bytes} B = {json_bytes / samples:.1f} B/sample")
    print(f"  ratio JSON / v1              {json_bytes / payload_bytes:.0f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=1_000_000)
    ap.add_argument("--seconds", type=int, default=86_400)
    args = ap.parse_args()
    bench_core(args.samples)
    bench_wire(args.seconds)


if __name__ == "__main__":
    main()
