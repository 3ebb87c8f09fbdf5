"""The range coder of wire version 3: both implementations agree byte for byte, every block
decodes to what went in, and it codes close to the residuals' entropy."""

from __future__ import annotations

import collections
import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twins import implementations

from edge_agent.errors import WireFormatError
from edge_agent.wire import rangecoder

impl = implementations(rangecoder)

residual_lists = st.lists(
    st.one_of(st.integers(-3, 3), st.integers(-300, 300), st.integers(-(2**59), 2**59)), max_size=400
)


@settings(max_examples=300, deadline=None)
@given(residuals=residual_lists)
def test_every_block_decodes_to_what_went_in_in_both_implementations(impl, residuals):
    block = impl.rc_encode(residuals)
    assert block == rangecoder.rc_encode(residuals)  # the compiled core writes the twin's bytes
    assert impl.rc_decode(block, len(residuals)) == residuals
    assert rangecoder.rc_decode(block, len(residuals)) == residuals


def test_a_sparse_alphabet_costs_about_its_entropy(impl):
    """Steps of a value converted from whole degrees Fahrenheit at 0.1 degC: only a few
    residuals occur. The coder learns them (a Rice or Simple-8b code cannot)."""
    rnd = random.Random(7)
    steps = [0, 6, -6, 11, -11, 17, -17, 22, -22]
    weights = [30, 20, 20, 10, 10, 4, 4, 1, 1]
    residuals = rnd.choices(steps, weights, k=4000)
    counts = collections.Counter(residuals)
    h = -sum(c / len(residuals) * math.log2(c / len(residuals)) for c in counts.values())
    block = impl.rc_encode(residuals)
    assert impl.rc_decode(block, len(residuals)) == residuals
    bits = 8 * len(block) / len(residuals)
    assert h <= bits <= h * 1.08, (bits, h)


def test_zeros_cost_nothing_and_a_short_block_little(impl):
    assert impl.rc_encode([]) == b"" and impl.rc_decode(b"", 0) == []
    assert impl.rc_encode([0] * 1000) == b""  # the decoder reads zero bytes past the end
    assert impl.rc_decode(b"", 1000) == [0] * 1000
    assert 1 <= len(impl.rc_encode([5])) <= 2


def test_a_residual_beyond_60_bits_is_refused(impl):
    with pytest.raises(ValueError, match="2\\*\\*60"):
        impl.rc_encode([1, 2**60])
    # 0xFF bytes decode as a bit length of 63: a corrupt block, said so
    with pytest.raises(WireFormatError, match="channel 0 values: a coded residual of more than 60 bits"):
        impl.rc_decode(b"\xff" * 16, 3, "channel 0 values")
