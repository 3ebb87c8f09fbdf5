"""compress-report's input: any bytes in the file give the series or a ConfigError that
names the file, never another exception (the command would end in a traceback)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.errors import ConfigError
from edge_agent.wire.compress_report import read_series

ROWS = st.lists(
    st.tuples(st.floats(allow_nan=True, allow_infinity=True), st.floats()).map(lambda r: f"{r[0]},{r[1]}\n"),
    max_size=20,
).map("".join)


@settings(max_examples=300, deadline=None)
@given(data=st.one_of(st.binary(max_size=400), ROWS.map(str.encode)))
def test_any_bytes_are_a_series_or_a_clear_error(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("series") / "s.csv"
    path.write_bytes(data)
    try:
        ts, xs = read_series(str(path))
    except ConfigError as exc:
        assert str(path) in str(exc)
        return
    assert len(ts) == len(xs) > 0 and all(a < b for a, b in itertools.pairwise(ts))


def test_a_binary_file_and_a_giant_field_are_named(tmp_path):
    binary = tmp_path / "b.csv"
    binary.write_bytes(b"1,2\n\xea\xff\x00")
    giant = tmp_path / "g.csv"
    giant.write_text('1,"' + "9" * 200_000 + '"\n')
    for path, said in ((binary, "not a text file"), (giant, "not a CSV")):
        with pytest.raises(ConfigError, match=said) as caught:
            read_series(str(path))
        assert str(path) in str(caught.value)
