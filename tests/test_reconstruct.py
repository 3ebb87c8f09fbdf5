"""Rebuilding a channel (edge_agent/wire/reconstruct.py) against the samples it came from:
real chains (a deadband held, a swinging door interpolated, lossless, binned), their points
encoded in version 4 and decoded, the channel rebuilt at every sample's time, and every
sample that went through the chain's lossless part within the bound the payload states."""

from __future__ import annotations

import math
import random
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent import dsp, wire
from edge_agent.wire.reconstruct import Rebuilt, points, rebuild

T0 = 1_767_225_600_000  # 2026-01-01, Unix ms
RAW = 9_999.0  # a flagged raw reading, far from every signal: were it used, it would show


def channel(times, values, flags=(), how="every", bound=0.0, relative=False, resolution=0.5):
    q = tuple(wire.quantise(v, resolution) for v in values)
    return wire.ChannelData(
        "x",
        "",
        resolution,
        tuple(times),
        q,
        tuple(flags),
        reconstruction=how,
        bound=bound,
        bound_relative=relative,
    )


def test_hold_linear_and_every_between_and_beyond_the_points():
    ch = channel((1000, 2000, 5000), (1.0, 3.0, 2.0), flags=((1, wire.QUALITY_STUCK),), bound=0.25)
    at = (0, 1000, 1500, 2000, 3000, 5000, 9000)
    assert [r.value for r in rebuild(ch, at, "hold")] == [None, 1.0, 1.0, 1.0, 1.0, 2.0, 2.0]
    assert [r.value for r in rebuild(ch, at, "linear")] == [None, 1.0, 1.125, 1.25, 1.5, 2.0, None]
    assert [r.value for r in rebuild(ch, at)] == [None, 1.0, None, None, None, 2.0, None]  # "every"
    assert rebuild(ch, [3000], "linear") == [Rebuilt(3000, 1.5, 0.5)]  # bound + resolution / 2
    assert points(ch) == ([1000, 5000], [1.0, 2.0])  # the flagged sample is never used


def test_the_bound_follows_the_value_when_relative():
    ch = channel((0, 10), (10.0, -20.0), how="hold", bound=0.01, relative=True)
    assert [r.bound for r in rebuild(ch, (0, 5, 10))] == pytest.approx(
        [0.3525, 0.3525, 0.4525]
    )  # 1% of |v| + 0.25, + 0.25
    assert rebuild(ch, (5,), "linear")[0].bound == pytest.approx(0.4525)  # the larger end's


def test_points_at_one_time_and_a_reconstruction_of_another_kind():
    ch = channel((0, 0, 10), (1.0, 2.0, 3.0))
    assert [r.value for r in rebuild(ch, (0, 5), "hold")] == [2.0, 2.0]  # the later point counts
    with pytest.raises(ValueError, match="reconstruction 'spline' is not one of every, hold, linear"):
        rebuild(ch, (0,), "spline")


# Each lossy mode: the chain's last stage (None: lossless), and how the node states it.
MODES = ("deadband", "swing", "lossless", "binned")
PREFIXES = ((), (("median", 3),), (("ema", 0.4),), (("throttle", 2.0),))


def run_and_check(mode, param, max_interval, prefix, resolution, ts_ms, xs, flagged, cuts):
    """Run the samples through the chain (flagged ones kept raw beside it, as the node
    does), sealing a batch at each cut; encode, decode and rebuild each batch; check every
    filtered sample against its batch's reconstruction. The largest error and its bound."""
    lossy = {"deadband": [("deadband", param, 0, max_interval)], "swing": [("swing", param, max_interval)]}
    full, filt = dsp.Chain([*prefix, *lossy.get(mode, [])]), dsp.Chain(list(prefix))
    how = {"deadband": "hold", "swing": "linear"}.get(mode, "every")
    width = wire.bin_width_for(param, resolution) if mode == "binned" else 1
    bound = (width // 2) * resolution if mode == "binned" else full.error_bound
    worst = (0.0, 0.0)
    start = 0
    for end in [*cuts, len(xs)]:
        kept: list[tuple[float, float]] = []
        flags, samples = [], []
        for i in range(start, end):
            t = ts_ms[i] / 1000
            if i in flagged:
                flags.append((len(kept), wire.QUALITY_OUT_OF_RANGE))
                kept.append((t, RAW))
                continue
            point, sample = full.push(t, xs[i]), filt.push(t, xs[i])
            kept += [point] if point else []
            samples += [sample] if sample else []
        closing = full.flush()
        kept += [closing] if closing else []
        start = end
        if not kept:
            assert not samples
            continue
        ch = wire.ChannelData(
            "x",
            "",
            resolution,
            tuple(round(t * 1000) for t, _ in kept),
            tuple(wire.quantise(y, resolution) for _, y in kept),
            tuple(flags),
            bin_width=width,
            reconstruction=how,
            bound=bound,
        )
        batch = wire.Batch("n-1", "s", 0, min(ch.times_ms), (ch,), epoch=0xDEADBEEF)
        decoded = wire.decode(wire.encode(batch, version=4))
        (got,) = decoded.channels
        assert (got.reconstruction, got.bound, decoded.version) == (how, bound, 4)
        for (t, x), r in zip(samples, rebuild(got, [round(t * 1000) for t, _ in samples])):
            assert r.value is not None and r.bound is not None, (mode, t, x)
            err = abs(x - r.value)
            assert err <= r.bound + 1e-9 * max(1.0, abs(x)), (mode, t, x, r)
            worst = max(worst, (err, r.bound))
    return worst


signals = st.integers(1, 60).flatmap(
    lambda n: st.tuples(
        st.lists(st.integers(1, 20_000), min_size=n, max_size=n),
        st.lists(st.floats(-1_000, 1_000, allow_nan=False), min_size=n, max_size=n),
        st.sets(st.integers(0, n - 1), max_size=n // 4),
        st.lists(st.integers(1, n), max_size=3).map(lambda c: sorted(set(c))),
    )
)


@settings(max_examples=150, deadline=None)
@given(
    mode=st.sampled_from(MODES),
    param=st.sampled_from([0.0, 0.05, 0.5, 1.0, 3.7, 20.0]),
    max_interval=st.sampled_from([0.0, 5.0, 60.0]),
    prefix=st.sampled_from(PREFIXES),
    resolution=st.sampled_from([0.01, 0.1, 0.25, 1.0]),
    signal=signals,
)
def test_every_filtered_sample_is_within_the_stated_bound(
    mode, param, max_interval, prefix, resolution, signal
):
    steps, xs, flagged, cuts = signal
    ts = [T0 + sum(steps[: i + 1]) for i in range(len(steps))]
    run_and_check(mode, param, max_interval, prefix, resolution, ts, xs, flagged, cuts)


@pytest.mark.parametrize("mode", MODES)
def test_random_walks_long_batches_within_the_stated_bound(mode):
    """A day of a 1 Hz random walk (with steps and spikes), sealed every 10 minutes: the
    largest error comes near the bound (the test would see a bound stated too wide)."""
    rng = random.Random(mode)
    xs, x = [], 20.0
    for i in range(86_400 // 8):
        x += rng.gauss(0, 0.05) + (5.0 if i % 4000 == 0 else 0.0)
        xs.append(x + (rng.random() < 0.001) * rng.uniform(-30, 30))
    ts = [T0 + 1000 * i for i in range(len(xs))]
    flagged = set(rng.sample(range(len(xs)), 30))
    cuts = list(range(600, len(xs), 600))
    err, bound = run_and_check(mode, 0.3, 0.0, (), 0.01, ts, xs, flagged, cuts)
    assert err > 0.6 * bound


def relative_run(frac, resolution, xs):
    """A relative deadband's points, encoded, decoded and held at every sample's time:
    (sample, held value, stated bound) for each sample."""
    chain = dsp.Chain([("deadband", frac, 1, 0)])
    assert (chain.error_bound, chain.relative_bound) == (0.0, frac)
    ts = [T0 + 1000 * i for i in range(len(xs))]
    kept = [p for p in (chain.push(t / 1000, x) for t, x in zip(ts, xs)) if p]
    ch = wire.ChannelData(
        "x",
        "",
        resolution,
        tuple(round(t * 1000) for t, _ in kept),
        tuple(wire.quantise(y, resolution) for _, y in kept),
        reconstruction="hold",
        bound=frac,
        bound_relative=True,
    )
    (got,) = wire.decode(wire.encode(wire.Batch("n", "s", 0, ts[0], (ch,)))).channels
    return [(x, r.value, r.bound) for x, r in zip(xs, rebuild(got, ts))]


@settings(max_examples=200, deadline=None)
@given(
    frac=st.sampled_from([0.001, 0.01, 0.1, 0.5]),
    resolution=st.sampled_from([0.01, 0.1, 1.0]),
    xs=st.lists(st.floats(-1_000, 1_000, allow_nan=False), min_size=1, max_size=60),
)
def test_a_relative_deadband_holds_within_its_bound_of_the_unquantised_value(frac, resolution, xs):
    """The deadband compares with the value it held before quantisation, |h| <= |value| +
    resolution / 2: so the bound that holds is frac x (|value| + resolution / 2) + resolution / 2."""
    for x, value, _ in relative_run(frac, resolution, xs):
        assert value is not None
        assert abs(x - value) <= frac * (abs(value) + resolution / 2) + resolution / 2 + 1e-9 * max(1, abs(x))


def test_a_relative_deadband_holds_within_the_stated_bound():
    # 10.49 is held as 10 (resolution 1); 11.539 is within 10% of 10.49, so it is not sent
    ((_, held, _), (x, value, bound)) = relative_run(0.1, 1.0, [10.49, 11.539])
    assert held == value == 10.0 and math.isclose(bound, 1.55)  # 10% of 10.5, and half a step
    assert abs(x - value) <= bound  # 1.539: the bound once said 1.5


def test_the_example_in_docs_backbone_runs_as_it_says(capsys):
    text = (Path(__file__).resolve().parent.parent / "docs" / "backbone.md").read_text()
    (code,) = re.findall(r"```python\n(.*?)```", text, re.S)
    exec(compile(code, "docs/backbone.md", "exec"), {})
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "('lamp-0042', 'air', 195948557, 7)"
    assert out[1] == "1767225600.0 temperature 21.5 °C within 0.055"
    assert [line.split()[1] for line in out[4:12]] == ["21.5"] * 2 + ["21.9"] * 4 + ["21.49"] * 2
    assert "'duplicates': 1" in out[12] and "'store_losses': []" in out[12]
