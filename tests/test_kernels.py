"""The one binding of the wire package's kernels: the compiled core's when it is in use,
else the twins'; and the twins' answer wherever numbers pass the compiled int64."""

from __future__ import annotations

import functools

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from edge_agent.implementation import compiled
from edge_agent.wire import crc32c, kernels, packing, predict, rangecoder, sections, varint

TWINS = {
    "crc32c": crc32c,
    "rc_encode": rangecoder,
    "rc_decode": rangecoder,
    "pack_simple8b": packing,
    "pack_rice": packing,
    "zigzags": varint,
    "residuals": predict,
    "values_from": predict,
    "times_section": sections,
    "value_block": sections,
}


def test_every_kernel_has_a_twin_of_its_name_and_is_bound_once():
    assert sorted(kernels.__all__) == sorted(TWINS)
    for name, twin in TWINS.items():
        assert callable(getattr(twin, name)), name
        if name in (
            "residuals",
            "times_section",
            "value_block",
            "values_from",
        ):  # the int64 fallback wraps these
            continue
        assert getattr(kernels, name) is getattr(compiled if compiled else twin, name), name


@settings(max_examples=300, deadline=None)
@given(
    qs=st.lists(st.one_of(st.integers(-300, 300), st.integers(-(2**39), 2**39)), max_size=80),
    kind=st.integers(0, 5),
    width=st.sampled_from([1, 2, 3, 11, 1001]),
    season=st.integers(1, 30),
)
def test_residuals_beyond_the_compiled_range_are_the_twins(qs, kind, width, season):
    assert kernels.residuals(qs, kind, width, season) == predict.residuals(qs, kind, width, season)
    huge = [q * 2**30 for q in qs]  # beyond the compiled range: the twin takes over
    assert kernels.residuals(huge, kind, width, season) == predict.residuals(huge, kind, width, season)


@settings(max_examples=400, deadline=None)
@given(
    qs=st.lists(st.one_of(st.integers(-300, 300), st.integers(-(2**39), 2**39)), max_size=80),
    kind=st.integers(0, 5),
    width=st.sampled_from([1, 2, 3, 11, 1001, 2**39]),
    season=st.integers(1, 30),
    zigzag=st.booleans(),
)
@example(qs=[2**39, 2**39 - 1, 2**39], kind=1, width=1, season=1, zigzag=False)  # the line leaves 2**40
@example(qs=[1, -1], kind=0, width=2**39, season=1, zigzag=False)  # one step of 2**39 bins
def test_values_rebuilt_from_residuals_are_the_twins(qs, kind, width, season, zigzag):
    """What the decoder rebuilds, inside the compiled range and past it (steps and values at
    2**40 and beyond, where the twin takes over), zigzag-coded or signed."""
    given_residuals = varint.zigzags(qs) if zigzag else qs
    want = predict.values_from(given_residuals, kind, width, season, zigzag)
    assert kernels.values_from(given_residuals, kind, width, season, zigzag) == want
    huge = [q * 2**30 for q in qs]
    given_huge = varint.zigzags(huge) if zigzag else huge
    assert kernels.values_from(given_huge, kind, width, season, zigzag) == predict.values_from(
        given_huge, kind, width, season, zigzag
    )


def test_values_rebuilt_undo_the_residuals_of_every_predictor():
    """values_from is residuals' inverse, the compiled core's and the twin's alike."""
    qs = [round(1000 * ((i * 37) % 101) / 7) for i in range(200)]
    for kind in range(6):
        for width in (1, 5):
            res, rebuilt = predict.residuals(qs, kind, width, 24)
            assert kernels.values_from(res, kind, width, 24) == rebuilt
            assert kernels.values_from(varint.zigzags(res), kind, width, 24, zigzag=True) == rebuilt


@settings(max_examples=300, deadline=None)
@given(
    steps=st.lists(st.one_of(st.just(1000), st.integers(1, 3000), st.integers(-5000, 10**7)), max_size=300),
    start=st.integers(-(10**6), 10**13),
    t0=st.integers(0, 2 * 10**12),
    period=st.sampled_from([1, 7, 1000, 60000]),
)
@example(steps=[1000] * 20, start=0, t0=0, period=1000)  # regular: the first slot only
def test_time_slots_beyond_the_compiled_range_are_the_twins(steps, start, t0, period):
    times = [start + sum(steps[:i]) for i in range(len(steps))]
    want = sections.times_section(times, t0, period)
    assert kernels.times_section(times, t0, period) == want
    huge = [t + 2**61 for t in times]  # beyond the compiled range: the twin takes over
    assert kernels.times_section(huge, t0 + 2**61, period) == want


@settings(max_examples=100, deadline=None)
@given(qs=st.lists(st.integers(-(2**39), 2**39), max_size=40), shift=st.sampled_from([0, 2**45, -(2**50)]))
def test_a_value_block_beyond_the_compiled_range_is_the_twins(qs, shift):
    values = [q + shift for q in qs]  # |q| beyond 2**40: the compiled search refuses, the twin answers
    kinds = [0, 1, 2, 3, 4]
    assert kernels.value_block(values, 1, kinds, 0, True) == sections.value_block(values, 1, kinds, 0, True)


@functools.cache
def _payloads() -> list[bytes]:
    """Fleet-sim payloads of 1 to 200 points a channel (the encoder's forms and predictors as it
    picks them), and a batch of no channel."""
    import random

    from edge_agent import wire
    from edge_agent.backbone.fleetsim import Record, VirtualNode

    out = []
    for i, per in enumerate((1, 6, 60, 200)):
        node = VirtualNode(f"n{i}", random.Random(i), Record(), per_batch=per)
        out += [o.payload for o in node.seal(1_780_000_000_000) if o.stream]
    return [*out, wire.encode(wire.Batch("n9", "s", 1, 0, ()))]


def _decoded(payload: bytes) -> str:
    from edge_agent import wire
    from edge_agent.errors import WireFormatError

    try:
        return repr(wire.decode(payload))
    except WireFormatError as exc:
        return f"error: {exc}"


@settings(max_examples=400, deadline=None)
@given(
    which=st.integers(0, 100),
    edits=st.lists(
        st.tuples(
            st.sampled_from(["flip", "cut", "insert", "repeat"]), st.integers(0, 10**6), st.integers(0, 255)
        ),
        min_size=1,
        max_size=4,
    ),
)
def test_damaged_payloads_decode_alike_through_the_compiled_kernels_and_the_twins(which, edits):
    """A payload damaged past its checksum (the CRC-32C recomputed) decodes to the same batch,
    or the same error, whether the decoder's kernels are the compiled core's or the twins'."""
    payloads = _payloads()
    b = bytearray(payloads[which % len(payloads)][:-4])
    for op, at, v in edits:
        i = 4 + at % max(1, len(b) - 4)
        if op == "flip":
            b[min(i, len(b) - 1)] ^= 1 << (v % 8)
        elif op == "cut":
            del b[i : i + 1 + v % 8]
        elif op == "insert":
            b[i:i] = bytes([v])
        else:
            b[i:i] = b[i : i + 1 + v % 8]
    damaged = bytes(b) + crc32c.crc32c(bytes(b)).to_bytes(4, "little")
    compiled_answer = _decoded(damaged)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(kernels, "crc32c", crc32c.crc32c)
        mp.setattr(kernels, "rc_decode", rangecoder.rc_decode)
        mp.setattr(kernels, "values_from", predict.values_from)
        assert _decoded(damaged) == compiled_answer
