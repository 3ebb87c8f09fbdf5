"""A channel's searched sections: its time slots and the value block (every predictor in
every form, ties to the earlier), the compiled core's writing the twins' bytes."""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st
from twins import implementations

from edge_agent import wire
from edge_agent.wire import sections

impl = implementations(sections)

sparse_steps = st.lists(st.tuples(st.integers(0, 400), st.integers(-3, 3)), max_size=30).map(
    lambda steps: [v for n, d in steps for v in [0] * n + [d]]
)  # long runs of zeros between steps


@settings(max_examples=300, deadline=None)
@given(
    qs=st.one_of(
        st.lists(st.integers(-300, 300), max_size=200),
        st.lists(st.integers(-(2**39), 2**39), max_size=40),
        sparse_steps.map(lambda d: [sum(d[: i + 1]) for i in range(len(d))]),
        st.integers(0, 9000).map(lambda n: [7] * n),
    ),
    width=st.sampled_from([1, 1, 3, 11]),
    season=st.sampled_from([0, 0, 1, 24]),
    coded=st.booleans(),
)
@example(qs=[0] * 9 + [-1], width=1, season=0, coded=False)  # runs of zeros tie Simple-8b: 2 bytes each
@example(qs=[7] * 9000, width=1, season=0, coded=True)  # the coded form padded to 3 bytes
def test_the_compiled_value_block_search_chooses_the_twins_bytes(impl, qs, width, season, coded):
    """Every predictor in every form, ties to the earlier: runs of zeros, Rice codes,
    Simple-8b and the coded form (padded to a byte per 3840 values) all get chosen here."""
    kinds = (
        [0, 1, 2, 3]
        + ([wire.PREDICTOR_ZERO] if coded else [])
        + ([wire.PREDICTOR_SEASONAL] if coded and season else [])
    )
    got = impl.value_block(qs, width, kinds, season, coded)
    if impl is not sections:  # (the twin's search is slow: once is enough)
        assert got == sections.value_block(qs, width, kinds, season, coded)
    _block, kind, shape = got
    assert kind in kinds
    if shape != wire.SHAPE_CODED:  # version 2's forms: predictors 0-3, named in the shape
        assert kind < wire.PREDICTOR_ZERO and (shape & wire.SHAPE_PREDICTOR) >> 3 == kind


@settings(max_examples=300, deadline=None)
@given(
    steps=st.lists(st.one_of(st.just(1000), st.integers(1, 3000), st.integers(-5000, 10**7)), max_size=300),
    start=st.integers(-(10**6), 10**13),
    t0=st.integers(0, 2 * 10**12),
    period=st.sampled_from([1, 7, 1000, 60000]),
)
@example(steps=[1000] * 20, start=0, t0=0, period=1000)  # regular: the first slot only
def test_the_compiled_time_slots_write_the_twins_bytes(impl, steps, start, t0, period):
    times = [start + sum(steps[:i]) for i in range(len(steps))]
    regular, exceptions, section = impl.times_section(times, t0, period)
    assert (regular, exceptions, section) == sections.times_section(times, t0, period)
    assert exceptions == any((t - t0) % period for t in times)


def test_long_zero_runs_stay_within_the_decoders_sample_bound():
    # 20,000 zeros take 6 Simple-8b run bytes; the decoder's bound was once 240 values a byte
    zeros = wire.ChannelData("power", "W", 1.0, tuple(range(0, 20_000 * 1000, 1000)), (0,) * 20_000)
    payload = wire.encode(wire.Batch("n", "meter", 0, 0, (zeros,), period_ms=1000), deflate=False)
    assert wire.decode(payload).channels == (zeros,)
    assert sections.coded_block([0] * 20_000, 4, 0) == b"\x04" + b"\0" * 6  # padded to a byte per 3840 values
