"""A/B of two builds of the compiled core in one process: the installed edge_agent._core (B,
this tree) against another build loaded from a path (A, e.g. the build before a change).

    .venv/bin/python bench/bench_ab.py OTHER.so [--samples N] [--rounds R] [--repeat K]

Prints, per stage of bench_stages' STAGES and for its CHAIN, the ns per sample of A and B
(the batch call, Chain.run) and B/A: the median of R rounds, each the best of K runs of A
and of B timed back to back in turn first (so a drift of the machine's speed falls on both),
and the rounds' range; then the same for the wire encoder's compiled calls (value_block and
times_section on the chain's kept points, crc32c on a payload). No numpy: array('d').

OTHER.so's module name is its file name's first part: ``_core`` is loaded as
``bench_ab_other._core``; ``_dsp`` (the core before issue 12, built as edge_agent._dsp) as
``edge_agent._dsp``, after a shim ``edge_agent._dsp_py`` that gives it the stage definitions
it imports at load (LOSSY, MAD_SCALE, MAX_POLY, MAX_WINDOW, check_spec).
"""

from __future__ import annotations

import argparse
import importlib.machinery
import importlib.util
import os
import platform
import statistics
import sys
import time
import types
from array import array
from collections.abc import Callable

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_stages import CHAIN, STAGES, signal_values

from edge_agent import wire
from edge_agent.dsp import stages
from edge_agent.implementation import compiled


def load_other(path: str) -> types.ModuleType:
    """The build at ``path`` as a module, beside (not instead of) the installed core."""
    stem = os.path.basename(path).split(".")[0]
    if stem not in ("_core", "_dsp"):
        raise SystemExit(
            f"{path}: name it _core.<tag>.so or _dsp.<tag>.so (its init function is PyInit_<name>)"
        )
    if stem == "_dsp":
        shim = types.ModuleType("edge_agent._dsp_py")
        for name in ("LOSSY", "MAD_SCALE", "MAX_POLY", "MAX_WINDOW", "check_spec"):
            setattr(shim, name, getattr(stages, name))
        sys.modules["edge_agent._dsp_py"] = shim
        name = "edge_agent._dsp"
    else:
        name = f"bench_ab_other.{stem}"
    loader = importlib.machinery.ExtensionFileLoader(name, path)
    spec = importlib.util.spec_from_file_location(name, path, loader=loader)
    if spec is None:
        raise SystemExit(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def once_ns(fn: Callable[[], object], count: int) -> float:
    t = time.perf_counter()
    fn()
    return (time.perf_counter() - t) / count * 1e9


def paired(
    a: Callable[[], object], b: Callable[[], object], count: int, rounds: int, repeat: int
) -> tuple[float, ...]:
    """(A ns, B ns, B/A median, lowest B/A, highest B/A) over ``rounds`` rounds; a round times
    A and B ``repeat`` times each, back to back and in turn first, and keeps each side's best
    (a neighbour's burst on a shared machine lengthens a run, never shortens it); the ns are
    each side's median over the rounds."""
    a(), b()  # warm: caches, the allocator, lazy imports
    ta, tb, ratios = [], [], []
    for r in range(rounds):
        x = y = float("inf")
        for j in range(repeat):
            if (r + j) % 2 == 0:
                x = min(x, once_ns(a, count))
                y = min(y, once_ns(b, count))
            else:
                y = min(y, once_ns(b, count))
                x = min(x, once_ns(a, count))
        ta.append(x)
        tb.append(y)
        ratios.append(y / x)
    return statistics.median(ta), statistics.median(tb), statistics.median(ratios), min(ratios), max(ratios)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "other", help="path of the other build (A), e.g. /tmp/ab/_dsp.cpython-311-x86_64-linux-gnu.so"
    )
    ap.add_argument("--samples", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--repeat", type=int, default=3, help="runs of each side per round, the best kept")
    args = ap.parse_args()
    if compiled is None:
        raise SystemExit("the installed compiled core is not in use (not built, or EDGE_AGENT_PUREPYTHON=1)")
    old, new = load_other(args.other), compiled
    n = args.samples
    xs = array("d", signal_values(n))
    ts = array("d", (float(i) for i in range(n)))
    out_t, out_y = array("d", bytes(8 * n)), array("d", bytes(8 * n))

    print(
        f"A/B of the compiled core, ns per sample (median of {args.rounds} rounds of the best of {args.repeat} back to back; {n} samples); "
        f"{platform.machine()}, Python {platform.python_version()}"
    )
    print(f"  A: {old.__file__}\n  B: {new.__file__}")
    print(f"  {'':<32}{'A ns':>9}{'B ns':>9}{'B/A':>8}   range")

    def row(label: str, a, b, count: int) -> None:
        na, nb, med, lo, hi = paired(a, b, count, args.rounds, args.repeat)
        print(f"  {label:<32}{na:>9.2f}{nb:>9.2f}{med:>8.3f}   {lo:.3f} .. {hi:.3f}")

    def chain_run(module, spec):
        return lambda: module.Chain(spec).run(ts, xs, out_t, out_y)

    for label, stage in STAGES.items():
        row(label, chain_run(old, [stage]), chain_run(new, [stage]), n)
    row("chain", chain_run(old, CHAIN), chain_run(new, CHAIN), n)

    # the wire encoder's compiled calls on the chain's kept points, per kept point
    m = new.Chain(CHAIN).run(ts, xs, out_t, out_y)
    times = [round(t * 1000) for t in out_t[:m]]
    qs = [wire.quantise(y, 0.01) for y in out_y[:m]]
    kinds = [0, 1, 2, 3, 4]  # what the encoder searches for a lossless version-3 channel
    assert old.value_block(qs, 1, kinds, 0, True) == new.value_block(qs, 1, kinds, 0, True)
    assert old.times_section(times, times[0], 1000) == new.times_section(times, times[0], 1000)
    payload = wire.encode(
        wire.Batch(
            "n",
            "s",
            0,
            times[0],
            (wire.ChannelData("temperature", "°C", 0.01, tuple(times), tuple(qs)),),
            period_ms=1000,
        )
    )
    print(
        f"  wire kernels on the chain's {m} kept points (ns per point; crc32c: per byte of a "
        f"{len(payload)}-byte payload, x100)"
    )
    row(
        "value_block",
        lambda: old.value_block(qs, 1, kinds, 0, True),
        lambda: new.value_block(qs, 1, kinds, 0, True),
        m,
    )
    row(
        "times_section",
        lambda: old.times_section(times, times[0], 1000),
        lambda: new.times_section(times, times[0], 1000),
        m,
    )

    def crc(module):
        f = module.crc32c
        return lambda: [f(payload) for _ in range(100)]

    row("crc32c", crc(old), crc(new), 100 * len(payload))


if __name__ == "__main__":
    main()
