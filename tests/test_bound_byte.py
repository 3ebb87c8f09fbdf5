"""Version 4's reconstruction byte: every reconstruction and bound a node can state comes
back as stated, a small whole number of resolution steps in the byte itself."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent import wire
from edge_agent.errors import WireFormatError


def _payload(res: float, recon: str, bound: float, relative: bool = False) -> bytes:
    ch = wire.ChannelData(
        "x", "u", res, (0, 1000), (1, 2), reconstruction=recon, bound=bound, bound_relative=relative
    )
    return wire.encode(wire.Batch("n", "s", 0, 0, (ch,), epoch=0xDEADBEEF), deflate=False)


@settings(max_examples=300, deadline=None)
@given(
    res=st.sampled_from([0.001, 0.01, 0.1, 0.5, 1.0, 1 / 3, 250.0]),
    recon=st.sampled_from(wire.RECONSTRUCTIONS),
    bound=st.one_of(
        st.just(0.0),
        st.integers(1, 200).map(float),
        st.floats(min_value=1e-9, max_value=1e9, allow_nan=False, allow_infinity=False),
    ),
    relative=st.booleans(),
)
def test_every_bound_comes_back_as_stated(res, recon, bound, relative):
    ch = wire.decode(_payload(res, recon, bound, relative)).channels[0]
    assert ch.reconstruction == recon and ch.bound == bound
    assert ch.bound_relative == (relative and bound > 0)


def test_a_bound_of_a_few_steps_costs_no_byte_beyond_the_reconstruction():
    lossless = _payload(0.01, "every", 0.0)
    assert len(_payload(0.01, "hold", 0.05)) == len(lossless)  # 5 steps: in the byte
    assert len(_payload(0.01, "hold", 0.62)) > len(lossless)  # 62 steps: a decimal follows
    assert len(_payload(0.01, "hold", 0.05, relative=True)) > len(lossless)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -0.1])
def test_a_bound_that_is_no_number_is_refused_by_the_encoder(bad):
    with pytest.raises(ValueError, match="bound"):
        _payload(0.01, "hold", bad)
    with pytest.raises(ValueError, match="reconstruction"):
        _payload(0.01, "spline", 0.0)


def test_the_decoder_refuses_the_undefined_reconstruction_and_a_bound_of_zero():
    payload = bytearray(_payload(0.01, "linear", 0.05))
    at = payload.index(bytes([2 | 5 << wire.BOUND_SHIFT]))
    for byte, message in ((3, "reconstruction 3 is not defined"), (2 | wire.BOUND_DECIMAL << 2, "bound")):
        bad = bytearray(payload[:-4])
        bad[at] = byte
        if byte >> 2 == wire.BOUND_DECIMAL:
            bad[at + 1 : at + 1] = b"\x00\x00" + bytes(8)  # m = 0: an f64 follows, and it is 0.0
        with pytest.raises(WireFormatError, match=message):
            wire.decode(bytes(bad) + wire.kernels.crc32c(bytes(bad)).to_bytes(4, "little"))
