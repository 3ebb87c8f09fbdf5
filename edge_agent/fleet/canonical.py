"""Canonical JSON: the one byte string of a signed object, and a parse that bounds what it costs.

The canonical form of a value is ``json.dumps(value, sort_keys=True, separators=(",", ":"),
ensure_ascii=False)`` in UTF-8, over a restricted set of values: objects whose keys are ASCII
strings, arrays, strings (any Unicode scalar value; a lone surrogate has no UTF-8 form),
integers within ±(2^53 - 1) (exact in a double, so a JavaScript backbone reads them the same),
true, false and null. No floats: a number has one spelling only when it is an integer. With
ASCII keys and integers only, these are the rules of RFC 8785 (JCS) too: keys sorted by code
point (the same as by UTF-16 unit for ASCII), no whitespace, short escapes for ``\\b \\f \\n \\r
\\t``, ``\\u00xx`` for the other control characters, everything else as itself.

A parse (``loads``) refuses, with a ``NotCanonical`` naming what, before or while it builds
anything large: more than ``max_bytes``; nesting deeper than ``max_depth`` (counted on the bytes
before the parse, so ``[[[[...`` costs one pass and no recursion); text that is not UTF-8; a
duplicate key (two parsers could take different ones); a float, NaN or Infinity; an integer out
of range (refused from its digits, before ``int()`` sees thousands of them); and, unless
``canonical=False``, any byte that differs from the canonical form of what was read.
"""

from __future__ import annotations

import json
import re
from typing import Any

MAX_INT = (1 << 53) - 1
# A string (an unterminated one runs to the end, so every match moves on: linear), or a bracket.
_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*(?:"|\\?\Z)|[\[\]{}]', re.DOTALL)


class NotCanonical(ValueError):
    """The bytes are not a value of the canonical form (or not JSON at all): says what."""


def nesting(data: bytes, limit: int | None = None) -> int:
    """How deep the arrays and objects of a JSON text go (1 for ``[]``), from its bytes alone, in
    one pass and constant memory; brackets inside strings do not count. Counting stops at
    ``limit + 1``."""
    depth = deepest = 0
    for m in _TOKEN.finditer(data):
        c = data[m.start()]
        if c in b"[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if limit is not None and deepest > limit:
                    break
        elif c != 0x22:  # a closing bracket (0x22: a string)
            depth -= 1
    return deepest


def _check(value: Any, path: str, depth: int, max_depth: int) -> None:
    """``depth``: the arrays and objects around ``value``, and ``value`` itself if it is one."""
    if isinstance(value, (list, tuple, dict)) and depth > max_depth:
        raise NotCanonical(f"{path or 'the value'}: nested deeper than {max_depth}")
    if value is None or isinstance(value, (bool, str)):
        return
    if isinstance(value, int):
        if not -MAX_INT <= value <= MAX_INT:
            raise NotCanonical(f"{path or 'the value'}: an integer outside ±(2^53 - 1)")
        return
    if isinstance(value, float):
        raise NotCanonical(f"{path or 'the value'}: a float (only integers have one spelling)")
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check(item, f"{path}[{i}]", depth + 1, max_depth)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str) or not key.isascii():
                raise NotCanonical(f"{path or 'the value'}: a key that is not an ASCII string: {key!r}")
            _check(item, f"{path}.{key}" if path else key, depth + 1, max_depth)
        return
    raise NotCanonical(f"{path or 'the value'}: {type(value).__name__} has no JSON form")


def dumps(value: Any, max_depth: int = 64) -> bytes:
    """The canonical bytes of ``value`` (NotCanonical for what has none)."""
    _check(value, "", 1, max_depth)
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        raise NotCanonical("a string holds a lone surrogate (no UTF-8 form)") from None


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise NotCanonical(f"the key {key!r} twice in one object")
        out[key] = value
    return out


def _integer(digits: str) -> int:
    if len(digits.lstrip("-")) > 16:  # 2^53 has 16 digits: refused before int() parses thousands
        raise NotCanonical(f"an integer of {len(digits)} digits, outside ±(2^53 - 1)")
    return int(digits)


def _no_float(text: str) -> Any:
    raise NotCanonical(f"a float ({text[:20]}): only integers have one spelling")


def _no_constant(text: str) -> Any:
    raise NotCanonical(f"{text} is not JSON")


def loads(data: bytes, *, max_bytes: int, max_depth: int, canonical: bool = True) -> Any:
    """The value of ``data``, bounded as the module says; NotCanonical for anything refused."""
    if len(data) > max_bytes:
        raise NotCanonical(f"{len(data):,} bytes, more than the {max_bytes:,} allowed")
    if nesting(data, max_depth) > max_depth:
        raise NotCanonical(f"nested deeper than the {max_depth} allowed")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise NotCanonical(f"not UTF-8 ({exc.reason} at byte {exc.start})") from None
    try:
        value = json.loads(
            text,
            object_pairs_hook=_pairs,
            parse_float=_no_float,
            parse_int=_integer,
            parse_constant=_no_constant,
        )
    except json.JSONDecodeError as exc:
        raise NotCanonical(f"not JSON: {exc.msg} at byte {exc.pos}") from None
    except RecursionError:  # cannot happen below max_depth; kept so no input gives a traceback
        raise NotCanonical("nested too deep") from None
    if canonical:
        try:
            again = dumps(value, max_depth)
        except NotCanonical as exc:
            raise NotCanonical(f"not in canonical form: {exc}") from None
        if again != data:
            at = next((i for i, (a, b) in enumerate(zip(again, data)) if a != b), min(len(again), len(data)))
            raise NotCanonical(f"not in canonical form (sorted keys, no spaces, UTF-8) from byte {at}")
    return value
