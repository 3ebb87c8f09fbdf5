"""The import layering of docs/architecture.md, checked on the source (every import,
including those inside functions), so no change makes the arrows run both ways.

    errors, durations, implementation   leaves
      -> dsp -> wire -> config -> node, field, backbone, fleet -> cli
    drivers                             imports nothing from edge_agent
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# What each part may import from the project (besides itself). A part missing from a
# list may not be imported by it; drivers may import only drivers.
ALLOWED: dict[str, set[str]] = {
    "edge_agent.errors": set(),
    "edge_agent.durations": set(),
    "edge_agent.files": set(),
    "edge_agent.keyfile": {"edge_agent.errors"},
    "edge_agent.implementation": {"edge_agent._core"},
    "edge_agent.dsp": {"edge_agent.errors", "edge_agent.implementation"},
    "edge_agent.wire": {
        "edge_agent.errors",
        "edge_agent.durations",
        "edge_agent.implementation",
        "edge_agent.dsp",
    },
    "edge_agent.config": {
        "edge_agent.errors",
        "edge_agent.durations",
        "edge_agent.dsp",
        "edge_agent.wire",
        "drivers",
    },
    "edge_agent.node": {
        "edge_agent.errors",
        "edge_agent.durations",
        "edge_agent.implementation",
        "edge_agent.dsp",
        "edge_agent.wire",
        "edge_agent.config",
        "drivers",
    },
    "edge_agent.field": {
        "edge_agent.errors",
        "edge_agent.keyfile",
        "edge_agent.durations",
        "edge_agent.dsp",
        "edge_agent.wire",
        "edge_agent.config",
        "edge_agent.node",
        "drivers",
    },
    "edge_agent.backbone": {
        "edge_agent.errors",
        "edge_agent.durations",
        "edge_agent.dsp",
        "edge_agent.wire",
        "edge_agent.config",
        "edge_agent.node",
    },
    "edge_agent.fleet": {
        "edge_agent.errors",
        "edge_agent.keyfile",
        "edge_agent.durations",
        "edge_agent.wire",
        "edge_agent.config",
        "edge_agent.node",
    },
    "edge_agent.cli": {
        "edge_agent.errors",
        "edge_agent.durations",
        "edge_agent.implementation",
        "edge_agent.dsp",
        "edge_agent.wire",
        "edge_agent.config",
        "edge_agent.node",
        "edge_agent.field",
        "edge_agent.backbone",
        "edge_agent.fleet",
        "drivers",
    },
    "drivers": set(),
}
ALLOWED["edge_agent.__main__"] = ALLOWED["edge_agent.cli"] | {"edge_agent.cli"}
# The package itself (edge_agent/__init__.py: __version__) is importable from anywhere.
EVERYWHERE = {"edge_agent", "edge_agent.files"}  # files: a leaf, bounded reads
MAX_LINES = 420  # "no module over about 400 lines"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def part_of(name: str) -> str | None:
    """The entry of ALLOWED a module belongs to (the longest prefix), or None."""
    best = None
    for part in (*ALLOWED, *EVERYWHERE):
        if (name == part or name.startswith(part + ".")) and (best is None or len(part) > len(best)):
            best = part
    return best


def is_module(name: str) -> bool:
    where = ROOT.joinpath(*name.split("."))
    return where.with_suffix(".py").is_file() or where.is_dir()


def project_imports(path: Path, me: str | None = None) -> list[tuple[int, str]]:
    """(line, module) of every import of the project in a file; ``from a import b`` counts as
    a.b where b is a module."""
    tree = ast.parse(path.read_text(), filename=str(path))
    me = me or module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found += [
                (node.lineno, f"{target}.{a.name}" if is_module(f"{target}.{a.name}") else target)
                for a in node.names
            ]
    return [(line, n) for line, n in found if n.split(".")[0] in ("edge_agent", "drivers")]


SOURCES = sorted(p for d in ("edge_agent", "drivers") for p in (ROOT / d).rglob("*.py"))


def test_sources_found():
    assert len(SOURCES) > 40 and all(part_of(module_name(p)) for p in SOURCES)


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_follow_the_layering(path: Path):
    me = part_of(module_name(path))
    assert me is not None
    bad = []
    for line, target in project_imports(path):
        there = part_of(target)
        if there in (me, *EVERYWHERE) or there in ALLOWED.get(me, set()):
            continue
        if target == "edge_agent._core" and me != "edge_agent.implementation":
            bad.append(f"line {line}: {target} (only edge_agent.implementation imports the compiled core)")
        else:
            bad.append(f"line {line}: {target} ({me} may import only {sorted(ALLOWED.get(me, ()))})")
    assert not bad, f"{path.relative_to(ROOT)} breaks the layering:\n" + "\n".join(bad)


def test_the_checker_sees_a_violation(tmp_path):
    """The check itself can fail: imports inside functions, relative ones and modules named in
    a from-import are all found, and a driver importing the agent is against the rules."""
    bad = tmp_path / "probe.py"
    bad.write_text(
        "import os\ndef f():\n    from edge_agent.node import store\n"
        "    from .. import config\n    from edge_agent import __version__\n"
    )
    found = project_imports(bad, me="edge_agent.wire.probe")
    assert found == [(3, "edge_agent.node.store"), (4, "edge_agent.config"), (5, "edge_agent")]
    assert part_of("edge_agent.node.store") not in ALLOWED[part_of("drivers.bme680") or ""]
    assert part_of("edge_agent.node.store") not in ALLOWED["edge_agent.wire"]


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_modules_stay_small(path: Path):
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(ROOT)} has {lines} lines: cut it along its concerns"
