"""What a batch holds: quantised values and their decimals, the exact decimal form of a
resolution, rows, and restamping."""

from __future__ import annotations

from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent import wire
from edge_agent.wire import model


def test_quantise_and_decimals():
    assert wire.quantise(21.504, 0.01) == 2150
    assert wire.quantise(-0.049, 0.01) == -5
    assert [wire.decimals_of(r) for r in (0.01, 0.25, 1.0, 100.0, 1e-5)] == [2, 2, 0, 0, 5]


@settings(max_examples=300, deadline=None)
@given(m=st.integers(1, 2**32 - 1), e=st.integers(-12, 12))
def test_a_short_decimal_resolution_travels_exactly(m, e):
    resolution = model.resolution_of(m, e)
    dm, de = model.decimal_resolution(resolution)
    assert (dm, de) == (0, 0) or model.resolution_of(dm, de) == resolution
    if m % 10:  # no trailing zero: the shortest form is the one given
        assert (dm, de) in ((m, e), (0, 0))
    assert model.decimal_resolution(1 / 3) == (0, 0)


@settings(max_examples=500, deadline=None)
@given(m=st.integers(1, 2**64 - 1), e=st.integers(-30, 30))
def test_a_decimal_is_the_double_nearest_to_it(m, e):
    """m x 10^e rounded once, to nearest with ties to even (Fraction's float() does)."""
    assert model.resolution_of(m, e) == float(Fraction(m) * Fraction(10) ** e)


def test_a_decimal_form_keeps_to_the_exponent_a_decoder_reads():
    assert model.decimal_resolution(1e-30) == (1, -30) and model.decimal_resolution(1e30) == (1, 30)
    assert model.decimal_resolution(1e-31) == (0, 0) and model.decimal_resolution(1e31) == (0, 0)
    assert model.decimal_resolution(0.25) == (25, -2) and model.decimal_resolution(2**40 + 0.5) == (0, 0)


def test_what_was_decoded_does_not_make_channels_differ():
    a = wire.ChannelData("x", "", 1.0, (0,), (1,), predictor=2, season=0, form="rice")
    assert a == wire.ChannelData("x", "", 1.0, (0,), (1,), form="coded")
    assert a != wire.ChannelData("x", "", 1.0, (0,), (1,), reconstruction="hold", bound=0.5)


def test_rows_and_restamp():
    ch = wire.ChannelData("temperature", "°C", 0.1, (1000, 2000), (215, 216), ((1, wire.QUALITY_STUCK),))
    b = wire.Batch("n", "air", 3, 1000, (ch,), flags=wire.FLAG_HISTORICAL | wire.FLAG_CLOCK_UNSYNCED, epoch=7)
    rows = list(b.rows())
    assert rows[0] == {
        "node": "n",
        "stream": "air",
        "epoch": 7,
        "seq": 3,
        "channel": "temperature",
        "unit": "°C",
        "t": 1.0,
        "value": 21.5,
        "reconstruction": "every",
        "bound": 0.05,  # nothing lossy: half the resolution
        "historical": True,
        "clock_unsynced": True,  # untrusted times are never printed as trusted ones
    }
    assert rows[1]["quality"] == wire.QUALITY_STUCK and rows[1]["value"] == 21.6
    moved = wire.restamp(b, 5000)
    assert moved.t0_ms == 6000 and moved.channels[0].times_ms == (6000, 7000)
    assert moved.flags == wire.FLAG_HISTORICAL and moved.channels[0].values_q == ch.values_q
    assert not any("clock_unsynced" in r for r in moved.rows())
