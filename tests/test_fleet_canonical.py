"""edge_agent/fleet/canonical.py: one byte string per value, and a parse whose cost is bounded
before it builds anything."""

from __future__ import annotations

import json
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.fleet.canonical import MAX_INT, NotCanonical, dumps, loads, nesting

KEYS = st.text(st.characters(max_codepoint=127), max_size=8)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-MAX_INT, MAX_INT)
    | st.text(st.characters(exclude_categories=["Cs"]), max_size=20)
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=4),
    max_leaves=20,
)


def test_the_form_is_sorted_compact_utf8():
    assert (
        dumps({"b": 1, "a": [True, None, "é\n"], "A": -5}) == '{"A":-5,"a":[true,null,"é\\n"],"b":1}'.encode()
    )


@given(VALUES)
@settings(max_examples=300, deadline=None)
def test_every_value_reads_back_from_its_one_form(value):
    data = dumps(value)
    assert loads(data, max_bytes=1 << 20, max_depth=64) == value
    assert dumps(json.loads(data)) == data


@given(VALUES, st.sampled_from([" ", "\n"]))
@settings(max_examples=100, deadline=None)
def test_another_spelling_of_the_same_value_is_refused(value, space):
    data = json.dumps(value, indent=1 if space == "\n" else None, ensure_ascii=True).encode()
    if data != dumps(value):
        with pytest.raises(NotCanonical, match="canonical form"):
            loads(data, max_bytes=1 << 20, max_depth=64)
    assert loads(data, max_bytes=1 << 20, max_depth=64, canonical=False) == value


@pytest.mark.parametrize(
    "data, said",
    [
        (b'{"a":1,"a":2}', "the key 'a' twice"),
        (b'{"a":1.5}', "a float"),
        (b'{"a":1e3}', "a float"),
        (b'{"a":NaN}', "NaN is not JSON"),
        (b'{"a":-Infinity}', "-Infinity is not JSON"),
        (b'{"a":9007199254740992}', "outside"),
        (b'{"a":' + b"9" * 5000 + b"}", "5000 digits"),
        (b'{"a":"\\ud800"}', "lone surrogate"),
        (b'{"a":"\xff"}', "not UTF-8"),
        (b'{"a":1', "not JSON"),
        (b'{"\xc3\xa9":1}', "not an ASCII string"),
        (b"-0", "canonical form"),
    ],
)
def test_what_has_no_canonical_form_is_refused_by_name(data, said):
    with pytest.raises(NotCanonical, match=said):
        loads(data, max_bytes=1 << 20, max_depth=8)


def test_size_is_bounded_before_anything_is_read():
    with pytest.raises(NotCanonical, match="more than the 100 allowed"):
        loads(b"[" + b"0," * 100 + b"0]", max_bytes=100, max_depth=8)


@pytest.mark.parametrize("opener", [b"[", b'{"k":'])
def test_deep_nesting_is_refused_from_the_bytes_in_bounded_memory(opener):
    closer = b"]" if opener == b"[" else b"}"
    deep = opener * 200_000 + closer * 200_000  # far past Python's recursion limit
    tracemalloc.start()
    try:
        with pytest.raises(NotCanonical, match="nested deeper than the 16 allowed"):
            loads(deep, max_bytes=len(deep), max_depth=16)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * len(deep)  # a few copies of the bytes at most, no tree of 200,000 lists


def test_brackets_in_strings_do_not_count_as_nesting():
    assert nesting(b'["[[[[", {"k": "]]\\"{{"}]') == 2
    assert loads(b'["[[[[[[[[[["]', max_bytes=100, max_depth=1) == ["[[[[[[[[[["]


def test_dumps_refuses_what_json_would_take():
    for bad in ({"a": 1.0}, {1: 2}, {"a": MAX_INT + 1}, {"a": b"x"}, {"a": "\ud800"}):
        with pytest.raises(NotCanonical):
            dumps(bad)
    with pytest.raises(NotCanonical, match="nested deeper than 3"):
        dumps([[[[1]]]], max_depth=3)
    assert dumps([[[1]]], max_depth=3) == b"[[[1]]]"


@pytest.mark.parametrize(
    "data",
    [
        b'"' + b'\\"' * 120_000,  # an unterminated string of escaped quotes: each " could start one
        b'["' + b"[" * 240_000,
        b'"\\',
        b"[" * 17 + b'"',
    ],
)
def test_unterminated_strings_cost_one_pass_and_are_refused(data):
    assert nesting(data) <= 17
    with pytest.raises(NotCanonical):
        loads(data, max_bytes=1 << 20, max_depth=16)
