"""Simple-8b, runs of zeros and Rice codes: round trips, limits, damage, the choice of form,
and the compiled core's packers writing the twins' bytes."""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twins import implementations

from edge_agent import wire
from edge_agent.errors import WireFormatError
from edge_agent.wire import packing
from edge_agent.wire.varint import unzigzag, zigzag

impl = implementations(packing)


@settings(max_examples=300, deadline=None)
@given(values=st.lists(st.one_of(st.integers(0, 3), st.integers(0, 2**60 - 1)), max_size=700))
def test_simple8b_round_trip(impl, values):
    block = impl.pack_simple8b(values)
    assert packing.unpack_simple8b(block, len(values)) == values
    assert len(block) <= 8 * max(1, len(values))


def test_simple8b_limits_and_damage(impl):
    with pytest.raises(ValueError, match="2\\*\\*60"):
        impl.pack_simple8b([2**60])
    with pytest.raises(ValueError, match="non-negative"):
        impl.pack_simple8b([-1])
    block = impl.pack_simple8b(list(range(100)))
    with pytest.raises(WireFormatError, match="block ends"):
        packing.unpack_simple8b(block[:-9], 100)
    with pytest.raises(WireFormatError, match="after its"):
        packing.unpack_simple8b(block + bytes(8), 100)
    assert impl.pack_simple8b([0] * 240) == b"\x00"  # one byte for 240 zeros
    assert impl.pack_simple8b([0] * 3840) == b"\xf0" and len(impl.pack_simple8b([0] * 10_000)) == 3


@settings(max_examples=300, deadline=None)
@given(values=st.lists(st.one_of(st.integers(0, 5), st.integers(0, 2**20)), max_size=300))
def test_rice_round_trip(impl, values):
    block = impl.pack_rice(values)
    assert packing.unpack_rice(block, len(values)) == values


@settings(max_examples=300, deadline=None)
@given(
    residuals=st.lists(
        st.one_of(st.just(0), st.just(0), st.integers(1, 5), st.integers(0, 2**40)), max_size=300
    )
)
def test_zero_runs_round_trip(residuals):
    assert packing.from_zero_runs(packing.zero_runs(residuals)) == residuals


def test_rice_codes_win_on_a_laplacian_spread_and_damage_is_caught():
    rnd = random.Random(4)
    residuals = [zigzag(round(rnd.gauss(0, 6))) for _ in range(500)]
    block, form = packing.pack_residuals(residuals)
    assert form == wire.SHAPE_RICE and len(block) < len(packing.pack_simple8b(residuals))
    with pytest.raises(WireFormatError, match="end before"):
        packing.unpack_rice(block[: len(block) // 2], 500)
    with pytest.raises(WireFormatError, match="bits after"):
        packing.unpack_rice(block + b"\xff", 500)
    ch = wire.ChannelData(
        "x",
        "u",
        0.1,
        tuple(range(0, 500_000, 1000)),
        tuple(itertools.accumulate(unzigzag(z) for z in residuals)),
    )
    payload = wire.encode(wire.Batch("n", "s", 0, 0, (ch,), period_ms=1000), deflate=False)
    assert wire.decode(payload) == wire.Batch("n", "s", 0, 0, (ch,), period_ms=1000)


def test_mostly_zeros_go_as_runs():
    residuals = [0] * 300 + [3] + [0] * 300 + [1]
    block, form = packing.pack_residuals(residuals)
    assert form == wire.SHAPE_RUNS and block[0] == 2  # the non-zero count, then the runs
    assert packing.unpack_simple8b(block[1:], 5) == packing.zero_runs(residuals) == [300, 2, 300, 0, 0]


@settings(max_examples=300, deadline=None)
@given(
    values=st.lists(
        st.one_of(st.just(0), st.integers(0, 3), st.integers(0, 2**24 - 1), st.integers(0, 2**60 - 1)),
        max_size=900,
    )
)
def test_the_compiled_packers_write_the_twins_bytes(impl, values):
    block = impl.pack_simple8b(values)
    assert block == packing.pack_simple8b(values) and packing.unpack_simple8b(block, len(values)) == values
    small = [v for v in values if v < 2**24]
    block = impl.pack_rice(small)
    assert block == packing.pack_rice(small) and packing.unpack_rice(block, len(small)) == small
