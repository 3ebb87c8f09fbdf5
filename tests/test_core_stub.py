"""edge_agent/_core.pyi against the compiled core it describes: the same public names, the
same parameters (names, kinds, defaults) and, where mypy is installed, mypy's stubtest."""

from __future__ import annotations

import ast
import importlib.util
import inspect
import os
import subprocess
import sys
from pathlib import Path

import pytest
from twins import compiled_core

STUB = Path(__file__).resolve().parent.parent / "edge_agent" / "_core.pyi"
# Cython's own module attributes, not the core's API
CYTHON_NAMES = {"__reduce_cython__", "__setstate_cython__", "__test__"}


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
    assert checked == 9 + 10  # nine functions; Chain's __init__, six methods, three attributes


def test_mypy_stubtest_finds_the_stub_and_the_module_consistent(tmp_path):
    """stubtest imports the built module and checks every name and type in the stub. The core
    must be built (a loud skip, or a failure under EDGE_AGENT_REQUIRE_EXT=1); mypy is a dev
    tool (`pip install -e '.[dev]'`, `make check`), so without it this is a loud skip."""
    if importlib.util.find_spec("edge_agent._core") is None:
        compiled_core()  # skips or fails as the environment says
        pytest.skip("EDGE_AGENT_PUREPYTHON=1 and the compiled core is not built")
    if importlib.util.find_spec("mypy") is None:
        print("\n*** SKIPPING: mypy is not installed (the dev extra) ***", file=sys.stderr)
        pytest.skip("mypy is not installed (pip install -e '.[dev]')")
    allowlist = tmp_path / "allowlist.txt"
    allowlist.write_text("".join(f"edge_agent._core.{name}\n" for name in sorted(CYTHON_NAMES)))
    env = {k: v for k, v in os.environ.items() if k != "EDGE_AGENT_PUREPYTHON"}
    # Whether stubtest reports Cython's names depends on the mypy configuration it reads
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy.stubtest",
            "--allowlist",
            str(allowlist),
            "--ignore-unused-allowlist",
            "edge_agent._core",
        ],
        env=env,
        capture_output=True,
        text=True,
        cwd=STUB.parent.parent,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Success" in out.stdout, out.stdout
