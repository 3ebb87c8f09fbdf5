"""The range coder of wire version 3: both implementations agree byte for byte, every block
decodes to what went in, and it codes close to the residuals' entropy."""

from __future__ import annotations

import collections
import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import compiled_core
from edge_agent import dsp
from edge_agent.wire import rangecoder as entropy
from edge_agent.errors import WireFormatError

_core = compiled_core()
IMPLEMENTATIONS = [(entropy.rc_encode_py, entropy.rc_decode_py)] + (
    [(_core.rc_encode, _core.rc_decode)] if _core else [])

residual_lists = st.lists(st.one_of(st.integers(-3, 3), st.integers(-300, 300), st.integers(-2**59, 2**59)),
                          max_size=400)


@settings(max_examples=300, deadline=None)
@given(residuals=residual_lists)
def test_every_block_decodes_to_what_went_in_in_both_implementations(residuals):
    blocks = {enc(residuals) for enc, _ in IMPLEMENTATIONS}
    assert len(blocks) == 1  # the compiled core writes the twin's bytes
    block = blocks.pop()
    for _, dec in IMPLEMENTATIONS:
        assert dec(block, len(residuals)) == residuals


def test_the_compiled_core_is_checked_here_when_it_is_built():
    assert len(IMPLEMENTATIONS) == (2 if dsp.IMPLEMENTATION == "cython" else 1)


@pytest.mark.parametrize("enc,dec", IMPLEMENTATIONS)
def test_a_sparse_alphabet_costs_about_its_entropy(enc, dec):
    """Steps of a value converted from whole degrees Fahrenheit at 0.1 degC: only a few
    residuals occur. The coder learns them (a Rice or Simple-8b code cannot)."""
    rnd = random.Random(7)
    steps = [0, 6, -6, 11, -11, 17, -17, 22, -22]
    weights = [30, 20, 20, 10, 10, 4, 4, 1, 1]
    residuals = rnd.choices(steps, weights, k=4000)
    counts = collections.Counter(residuals)
    h = -sum(c / len(residuals) * math.log2(c / len(residuals)) for c in counts.values())
    block = enc(residuals)
    assert dec(block, len(residuals)) == residuals
    bits = 8 * len(block) / len(residuals)
    assert h <= bits <= h * 1.08, (bits, h)


@pytest.mark.parametrize("enc,dec", IMPLEMENTATIONS)
def test_zeros_cost_nothing_and_a_short_block_little(enc, dec):
    assert enc([]) == b"" and dec(b"", 0) == []
    assert enc([0] * 1000) == b""  # the decoder reads zero bytes past the end
    assert dec(b"", 1000) == [0] * 1000
    assert 1 <= len(enc([5])) <= 2


@pytest.mark.parametrize("enc,dec", IMPLEMENTATIONS)
def test_a_residual_beyond_60_bits_is_refused(enc, dec):
    with pytest.raises(ValueError, match="2\\*\\*60"):
        enc([1, 2**60])
    # 0xFF bytes decode as a bit length of 63: a corrupt block, said so
    with pytest.raises(WireFormatError, match="channel 0 values: a coded residual of more than 60 bits"):
        dec(b"\xff" * 16, 3, "channel 0 values")
