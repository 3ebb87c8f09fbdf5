"""CRC-32C: the check value, chaining, and the compiled core's slicing-by-8 against the twin."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from twins import implementations

from edge_agent.wire import crc32c

impl = implementations(crc32c)


def test_the_check_value(impl):
    assert impl.crc32c(b"123456789") == 0xE3069283
    assert impl.crc32c(b"") == 0


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=300), start=st.integers(0, 2**32 - 1))
def test_compiled_crc32c_agrees_with_the_twin(impl, data, start):
    assert impl.crc32c(data, start) == crc32c.crc32c(data, start)
    cut = len(data) // 3  # a checksum continues from the one before
    assert impl.crc32c(data[cut:], impl.crc32c(data[:cut], start)) == impl.crc32c(data, start)
