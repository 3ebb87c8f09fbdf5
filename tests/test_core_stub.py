"""edge_agent/_core.pyi against the compiled core it describes: the same public names, the
same parameters (names, kinds, defaults). mypy's stubtest is in integration/test_stubtest.py."""

from __future__ import annotations

import ast
import inspect

from twins import CORE_STUB as STUB
from twins import CYTHON_NAMES, compiled_core


def stub_tree() -> ast.Module:
    return ast.parse(STUB.read_text())


def public(names) -> set[str]:
    return {n for n in names if not n.startswith("_")}


def stub_params(fn: ast.FunctionDef) -> list[tuple[str, str | None]]:
    """(name, default as source, None when there is none) of a stub's parameters."""
    args = fn.args.args
    defaults = [None] * (len(args) - len(fn.args.defaults)) + [ast.unparse(d) for d in fn.args.defaults]
    return [(a.arg, d) for a, d in zip(args, defaults)]


def runtime_params(obj) -> list[tuple[str, str | None]]:
    sig = inspect.signature(obj)
    assert all(p.kind is p.POSITIONAL_OR_KEYWORD for p in sig.parameters.values()), sig
    return [(p.name, None if p.default is p.empty else repr(p.default)) for p in sig.parameters.values()]


def test_the_stub_names_every_public_name_of_the_compiled_core_and_no_other():
    core = compiled_core()
    declared = {node.name for node in stub_tree().body if isinstance(node, ast.FunctionDef | ast.ClassDef)}
    assert declared == public(dir(core)) - CYTHON_NAMES
    assert declared == {
        "Chain",
        "crc32c",
        "rc_encode",
        "rc_decode",
        "residuals",
        "values_from",
        "pack_simple8b",
        "pack_rice",
        "zigzags",
        "value_block",
        "times_section",
    }


def test_the_stubs_parameters_are_the_compiled_functions_parameters():
    core = compiled_core()
    checked = 0
    for node in stub_tree().body:
        if isinstance(node, ast.FunctionDef):
            assert stub_params(node) == runtime_params(getattr(core, node.name)), node.name
            checked += 1
        elif isinstance(node, ast.ClassDef):
            cls = getattr(core, node.name)
            members = {m.name: m for m in node.body if isinstance(m, ast.FunctionDef)}
            assert set(members) == public(vars(cls)) | {"__init__"}, node.name
            for name, m in members.items():
                if name == "__init__":  # a cdef class's __init__ has no signature; __cinit__'s is spec
                    assert stub_params(m) == [("self", None), ("spec", None)]
                elif isinstance(m.decorator_list[0] if m.decorator_list else None, ast.Name):
                    assert not callable(getattr(cls, name)), name  # a property is an attribute
                else:
                    assert stub_params(m) == runtime_params(getattr(cls, name)), f"{node.name}.{name}"
                checked += 1
    assert checked == 10 + 10  # ten functions; Chain's __init__, six methods, three attributes
