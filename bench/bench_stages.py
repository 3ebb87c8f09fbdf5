"""Nanoseconds per sample for each stage of the signal core and for the full chain, beside
the libraries people would use instead, measured side by side in one run.

    .venv/bin/python bench/bench_stages.py [--samples N] [--json FILE]   (make bench: --json bench-stages.json)

Needs the `bench` extra (numpy, scipy, bottleneck, vega_datasets, bokeh_sampledata): `make bench` installs it. Every figure
is the best of 5 runs over the same 1 M-sample noisy signal with spikes; ratios compare
figures of this run only. Targets (issue 4) are printed beside the ratios they concern.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import random
import time
from typing import TYPE_CHECKING

from edge_agent import wire
from edge_agent.dsp import chain as twin
from edge_agent.implementation import compiled

if TYPE_CHECKING:
    import numpy as np

# numpy, scipy and bottleneck (the peers) are imported where they are used, so that
# bench_ab.py can take STAGES, CHAIN and signal_values from here without them.

STAGES = {
    "calibrate": ("calibrate", 0.1, 1.001),
    "range": ("range", -40.0, 85.0, 0.0),
    "hampel(7)": ("hampel", 7, 3.0),
    "hampel(11)": ("hampel", 11, 3.0),
    "median(5)": ("median", 5),
    "median(61)": ("median", 61),
    "mean(5)": ("mean", 5),
    "ema(0.5)": ("ema", 0.5),
    "kalman": ("kalman", 1e-4, 1e-2),
    "deadband(0.02)": ("deadband", 0.02, 0.0, 0.0),
    "swing(0.02)": ("swing", 0.02, 0.0),
}
CHAIN = [("hampel", 7, 3.0), ("median", 5), ("ema", 0.5), ("swing", 0.02, 0.0)]


def signal_values(n: int, seed: int = 1) -> list[float]:
    """A noisy slow sine with a spike (+5) at one sample in a thousand, for the Hampel filter."""
    rnd = random.Random(seed)
    xs = [21.0 + 2.0 * math.sin(i / 600.0) + rnd.gauss(0, 0.02) for i in range(n)]
    for i in rnd.sample(range(n), n // 1000):
        xs[i] += 5.0
    return xs


def signal(n: int, seed: int = 1) -> np.ndarray:
    import numpy as np

    return np.array(signal_values(n, seed))


def best_ns(fn, n: int, runs: int = 5) -> float:
    best = float("inf")
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best / n * 1e9


ROUNDS = 9


def paired_ratio(ours, peer, n: int) -> tuple[float, tuple[float, float]]:
    """ours / peer: the median of ROUNDS pairs timed back to back (in turn first and
    second), and the pairs' range."""
    found = []
    for r in range(ROUNDS):
        order = (ours, peer) if r % 2 == 0 else (peer, ours)
        t = {fn: best_ns(fn, n, 1) for fn in order}
        found.append(t[ours] / t[peer])
    found.sort()
    return found[len(found) // 2], (found[0], found[-1])


def hampel_two_medians(xs: np.ndarray, w: int, k: float = 3.0) -> np.ndarray:
    """The usual NumPy Hampel: the moving median, and the moving median of the deviations."""
    import bottleneck as bn
    import numpy as np

    med = bn.move_median(xs, w)
    mad = bn.move_median(np.abs(xs - med), w)
    out = xs.copy()
    bad = np.abs(xs - med) > k * 1.4826 * mad
    out[bad] = med[bad]
    return out


def main() -> None:
    import bottleneck as bn
    import numpy as np
    from scipy import signal as sps

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=1_000_000)
    ap.add_argument("--json", metavar="FILE", help="also write the figures here")
    args = ap.parse_args()
    n = args.samples
    xs = signal(n)
    ts = np.arange(n, dtype=float)
    out_t, out_y = np.empty(n), np.empty(n)
    small = min(n, 100_000)  # the pure-Python twin and per-sample calls on a tenth
    rows: dict[str, dict[str, float]] = {}

    def ours(name: str, spec: list) -> None:
        row = rows.setdefault(name, {})
        if compiled is not None:
            row["cython batch"] = best_ns(lambda: compiled.Chain(spec).run(ts, xs, out_t, out_y), n)
            c = compiled.Chain(spec)
            push = c.push
            row["cython per sample"] = best_ns(
                lambda: [push(t, x) for t, x in zip(ts[:small].tolist(), xs[:small].tolist())], small
            )
        tw = twin.Chain(spec)
        row["python per sample"] = best_ns(
            lambda: [tw.push(t, x) for t, x in zip(ts[:small].tolist(), xs[:small].tolist())], small, 2
        )

    for name, stage in STAGES.items():
        ours(name, [stage])
    ours("chain", CHAIN)
    # the chain's kept points through the wire encoder (the payload a node sends), per input
    # sample: with the core built, a channel's time slots and its search over predictors and
    # forms (five range-coder passes here) are one compiled call each
    kept_t, kept_y = [], []
    c = (compiled or twin).Chain(CHAIN)
    m = c.run(ts, xs, out_t, out_y) if compiled is not None else None
    if m is None:
        pts = [p for p in (c.push(t, x) for t, x in zip(ts.tolist(), xs.tolist())) if p]
        kept_t, kept_y = [p[0] for p in pts], [p[1] for p in pts]
    else:
        kept_t, kept_y = out_t[:m].tolist(), out_y[:m].tolist()
    ch = wire.ChannelData(
        "temperature",
        "°C",
        0.01,
        tuple(round(t * 1000) for t in kept_t),
        tuple(wire.quantise(y, 0.01) for y in kept_y),
    )
    rows["wire encode of kept points"] = {
        "cython batch" if compiled else "python per sample": best_ns(
            lambda: wire.encode(wire.Batch("n", "s", 0, 0, (ch,), period_ms=1000)), n, 3
        )
    }

    peers = {
        "bottleneck.move_median w=5": best_ns(lambda: bn.move_median(xs, 5), n),
        "bottleneck.move_median w=61": best_ns(lambda: bn.move_median(xs, 61), n),
        "scipy.signal.medfilt w=5": best_ns(lambda: sps.medfilt(xs, 5), n),
        "scipy.signal.lfilter as EMA(0.5)": best_ns(lambda: sps.lfilter([0.5], [1.0, -0.5], xs), n),
        "Hampel w=11 from two bottleneck medians": best_ns(lambda: hampel_two_medians(xs, 11), n),
        "Hampel w=7 from two bottleneck medians": best_ns(lambda: hampel_two_medians(xs, 7), n),
        "bare Python->C call per sample (math.fabs)": best_ns(
            lambda: [math.fabs(x) for x in xs[:small].tolist()], small
        ),
    }

    print(
        f"signal core, ns per sample (best of 5; {n} samples, per-sample and Python on {small}); "
        f"core: {'cython' if compiled else 'python only'}; {platform.machine()}, Python {platform.python_version()}"
    )
    cols = ["cython batch", "cython per sample", "python per sample"]
    print(f"  {'stage':<26}" + "".join(f"{c:>20}" for c in cols))
    for name, row in rows.items():
        print(
            f"  {name:<26}"
            + "".join(f"{row[c]:>20.1f}" if c in row else f"{'':>20}" for c in cols)
            + (f"   python {row['python']:.1f}" if "python" in row else "")
        )
    print("  peers:")
    for name, v in peers.items():
        print(f"  {name:<45} {v:>8.1f}")
    ratios = {}
    if compiled is not None:
        b = {k: v["cython batch"] for k, v in rows.items() if "cython batch" in v}
        ratios = {
            "chain M samples/s (target >= 10)": 1e3 / b["chain"],
            "chain + wire encode M samples/s": 1e3 / (b["chain"] + b["wire encode of kept points"]),
        }
        # Each ratio against its peer from pairs timed back to back (this VM's speed drifts
        # by tens of per cent within seconds, so two best-of-5 figures taken apart do not
        # compare): the median of ROUNDS pairs, with their spread.
        spread = {}
        small_ts, small_xs = ts[:small].tolist(), xs[:small].tolist()

        def chain_run(spec):
            return lambda: compiled.Chain(spec).run(ts, xs, out_t, out_y)

        push = compiled.Chain(CHAIN).push
        for name, ours, peer, count in (
            (
                "median(5) / bottleneck w=5 (target <= 0.5)",
                chain_run([STAGES["median(5)"]]),
                lambda: bn.move_median(xs, 5),
                n,
            ),
            (
                "median(61) / bottleneck w=61 (target <= 1.0)",
                chain_run([STAGES["median(61)"]]),
                lambda: bn.move_median(xs, 61),
                n,
            ),
            (
                "ema / scipy lfilter (target <= 0.6)",
                chain_run([STAGES["ema(0.5)"]]),
                lambda: sps.lfilter([0.5], [1.0, -0.5], xs),
                n,
            ),
            (
                "hampel(11) / two-median Hampel (target <= 0.5)",
                chain_run([STAGES["hampel(11)"]]),
                lambda: hampel_two_medians(xs, 11),
                n,
            ),
            (
                "per-sample chain call / bare Python->C call (target <= 3)",
                lambda: [push(t, x) for t, x in zip(small_ts, small_xs)],
                lambda: [math.fabs(x) for x in small_xs],
                small,
            ),
        ):
            ratios[name], spread[name] = paired_ratio(ours, peer, count)
        print(f"  ratios (against a peer: median of {ROUNDS} pairs timed back to back, and their range):")
        for name, v in ratios.items():
            lo, hi = spread.get(name, (None, None))
            print(f"  {name:<60} {v:8.2f}" + (f"   ({lo:.2f} .. {hi:.2f})" if lo is not None else ""))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "samples": n,
                    "core": "cython" if compiled else "python",
                    "machine": platform.machine(),
                    "python": platform.python_version(),
                    "ns_per_sample": rows,
                    "peers_ns_per_sample": peers,
                    "ratios": ratios,
                },
                f,
                indent=2,
            )
        print(f"  written: {args.json}")


if __name__ == "__main__":
    main()
