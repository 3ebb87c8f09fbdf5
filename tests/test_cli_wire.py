"""decode's input reader (edge_agent/cli/wire.py): any bytes are payloads to decode or a
WireFormatError that names the line, never another exception."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from wire_data import VECTORS

from edge_agent import wire
from edge_agent.cli.wire import payloads_of
from edge_agent.errors import WireFormatError

HEXISH = st.text(alphabet="0123456789abcdefABCDEF \t\r\n", max_size=300).map(str.encode)


@settings(max_examples=400, deadline=None)
@given(data=st.one_of(st.binary(max_size=300), HEXISH))
def test_any_input_is_payloads_or_a_named_error(data):
    try:
        found = payloads_of(data, "in")
    except WireFormatError as exc:
        assert str(exc).startswith("in:")
        return
    assert all(where == "in" or where.startswith("in:") for where, _ in found)
    for _, payload in found:  # the decoder then decodes each or says why
        try:
            wire.decode(payload)
        except WireFormatError:
            pass


def test_every_vector_reads_the_same_as_hex_and_as_bytes():
    for path in VECTORS:
        raw = bytes.fromhex(path.read_text().strip())
        assert payloads_of(raw, "f") == [("f", raw)]
        assert payloads_of(path.read_bytes(), "f") == [("f:1", raw)]
