"""The format's primitives: zigzag (the compiled core's list form against the twin), varints,
strings and the Reader's bounds."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twins import implementations

from edge_agent.errors import WireFormatError
from edge_agent.wire import varint

impl = implementations(varint)


@settings(max_examples=300, deadline=None)
@given(
    values=st.lists(
        st.one_of(st.just(0), st.integers(0, 3), st.integers(0, 2**24 - 1), st.integers(0, 2**60 - 1)),
        max_size=900,
    )
)
def test_the_compiled_zigzags_are_the_twins(impl, values):
    signed = [v - 2**59 for v in values if v < 2**60]
    assert impl.zigzags(signed) == [varint.zigzag(v) for v in signed]
    assert [varint.unzigzag(z) for z in impl.zigzags(signed)] == signed


def test_zigzag_interleaves_signs():
    assert [varint.zigzag(n) for n in (0, -1, 1, -2, 2, -(2**59))] == [0, 1, 2, 3, 4, 2**60 - 1]


@settings(max_examples=300, deadline=None)
@given(numbers=st.lists(st.integers(0, 2**63 - 1), max_size=20), text=st.text(max_size=30))
def test_varints_and_strings_read_back(numbers, text):
    out = bytearray()
    for n in numbers:
        varint.put_uvarint(out, n)
    varint.put_str(out, text)
    r = varint.Reader(bytes(out), len(out))
    assert [r.uvarint("n") for _ in numbers] == numbers and r.string("text") == text and r.pos == r.end


def test_the_reader_says_what_is_cut_short_and_where():
    with pytest.raises(ValueError, match="negative"):
        varint.put_uvarint(bytearray(), -1)
    r = varint.Reader(b"\x05abc", 4)
    with pytest.raises(WireFormatError, match="truncated payload: node id at byte 1 needs 5 bytes, 3 left"):
        r.string("node id")
    with pytest.raises(WireFormatError, match="varint longer than 10 bytes: count at byte 0"):
        varint.Reader(b"\xff" * 11, 11).uvarint("count")
    # ten bytes hold 70 bits: beyond 64 is refused, 2**64 - 1 (and a longer zero) is not
    with pytest.raises(WireFormatError, match="varint beyond 64 bits: count at byte 0"):
        varint.Reader(b"\xff" * 9 + b"\x02", 10).uvarint("count")
    assert varint.Reader(b"\xff" * 9 + b"\x01", 10).uvarint("count") == 2**64 - 1
    assert varint.Reader(b"\x80\x80\x00", 3).uvarint("count") == 0
    with pytest.raises(WireFormatError, match="name at byte 1 is not UTF-8"):
        varint.Reader(b"\x01\xff", 2).string("name")
    # an encoded surrogate or an overlong form is not UTF-8 either (RFC 3629)
    for raw in (b"\x03\xed\xa0\x80", b"\x02\xc0\xaf"):
        with pytest.raises(WireFormatError, match="is not UTF-8"):
            varint.Reader(raw, len(raw)).string("unit")
    # offsets count from the start of the reader's buffer, which it names when not the
    # payload; a field cut short is placed at the byte that is missing
    r = varint.Reader(b"\x00\x80", 2, "the value block's ")
    r.pos = 1
    with pytest.raises(WireFormatError, match="predictor at the value block's byte 2 needs 1 bytes, 0 left"):
        r.uvarint("predictor")
