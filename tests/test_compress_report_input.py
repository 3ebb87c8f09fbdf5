"""compress-report's input: any bytes in the file give the series or a ConfigError that
names the file, never another exception (the command would end in a traceback)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.errors import ConfigError
from edge_agent.wire.compress_report import compress_report, read_series

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


def test_a_first_row_that_is_not_finite_is_an_error_not_a_header(tmp_path):
    path = tmp_path / "n.csv"
    path.write_text("1,nan\n2,3\n")
    with pytest.raises(ConfigError, match=r"n\.csv:1: t and value must be finite"):
        read_series(str(path))
    path.write_text("t,value\n1,2\n")  # a real header is still taken as one
    assert read_series(str(path)) == ([1.0], [2.0])


@pytest.mark.parametrize(
    ("xs", "resolution", "deviation", "said"),
    [
        ([1e308, -1e308, 1e308], 0.1, None, "cannot be put on the wire"),
        ([1.0, 2.0], 1e-300, None, "values too far apart"),
        ([1.0, 2.0], float("inf"), None, "--resolution must be a finite number"),
        ([1.0, 2.0], 0.1, -1.0, "--deviation must be a finite number >= 0"),
        ([1.0, 2.0], 0.1, float("nan"), "--deviation must be a finite number >= 0"),
    ],
)
def test_series_and_flags_beyond_the_wire_are_clear_errors(xs, resolution, deviation, said):
    with pytest.raises(ConfigError, match=said):
        compress_report([float(i) for i in range(len(xs))], xs, resolution, deviation, source="s.csv")


@settings(max_examples=150, deadline=None)
@given(
    xs=st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=1, max_size=30),
    resolution=st.floats(1e-12, 1e6),
    deviation=st.one_of(st.none(), st.floats(0, 1e6)),
    mode=st.sampled_from(["swing", "bound"]),
)
def test_any_finite_series_is_a_report_or_a_clear_error(xs, resolution, deviation, mode):
    ts = [float(i) for i in range(len(xs))]
    try:
        r = compress_report(ts, xs, resolution, deviation, mode, source="s.csv")
    except ConfigError as exc:
        assert str(exc).startswith("s.csv: ")
        return
    assert r["samples"] == len(xs)
