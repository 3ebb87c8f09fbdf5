"""The configuration loader under fuzzed values: every key of real node files (the examples
and the test node) replaced by values of every type and size, or deleted. Each result loads
or is a ConfigError that names the file, never another exception (check-config would end in
a traceback, a SIGHUP reload would stop the agent)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from config_data import GOOD
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_agent.config import load_config
from edge_agent.errors import ConfigError

EXAMPLES = sorted((Path(__file__).parent.parent / "examples").glob("*.yaml"))
PRIVATE = """\
node: {id: home-0001}
mqtt: {broker: "mqtt://127.0.0.1:1883"}
sensors:
  - {name: mains, type: s0, pin: 17, pulses_per_kwh: 1000, interval: 1s,
     privacy: {level: aggregate, period: 15min, round: {power: 10}}}
  - {name: feed, type: ina226, address: 0x40, shunt_ohms: 0.002, max_current: 20.0,
     privacy: {level: total, period: 1d}}
derived:
  - {kind: energy, name: mains_kwh, inputs: {power: feed.power}, privacy: {level: total, period: 1d}}
"""  # the privacy blocks (docs/privacy.md), on a sensor and a derived stream
DOCS = [yaml.safe_load(GOOD), yaml.safe_load(PRIVATE)] + [yaml.safe_load(p.read_text()) for p in EXAMPLES]


def paths(node: Any, here: tuple = ()) -> list[tuple]:
    """Every key path and list index in a document."""
    found = [here] if here else []
    if isinstance(node, dict):
        for k, v in node.items():
            found += paths(v, (*here, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            found += paths(v, (*here, i))
    return found


WEIRD = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([10**400, -(10**400), 2**63, -1, 0, 65536, 2**32]),
    st.floats(),
    st.text(max_size=20),
    st.sampled_from(["10s", "0s", "-1s", "1e9d", "512MiB", "0x77", "\x00", "a\n", "mqtt://h:0", ".inf"]),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)


def mutated(doc: dict, data, delete: bool, keep=lambda path: True) -> dict:
    """A copy of ``doc`` with one key path (one ``keep`` takes) deleted or given any value."""
    doc = copy.deepcopy(doc)
    path = data.draw(st.sampled_from([p for p in paths(doc) if keep(p)]))
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    if delete and isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent[path[-1]] = data.draw(WEIRD)
    return doc


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc_index=st.integers(0, len(DOCS) - 1), data=st.data(), delete=st.booleans())
def test_every_key_with_any_value_loads_or_is_a_clear_error(tmp_path, doc_index, data, delete):
    doc = mutated(DOCS[doc_index], data, delete)
    f = tmp_path / "fuzzed.yaml"
    f.write_text(yaml.safe_dump(doc, allow_unicode=True))
    try:
        load_config(f)
    except ConfigError as exc:
        assert str(exc).startswith(f"{f}: ")
        assert len(str(exc)) < 1000
