"""The configuration's YAML reader (edge_agent/config/yamlfile.py): what a file says is what
it reads as (no duplicate keys), and a hostile file is refused cheaply (expansion, nesting, size)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.config import load_config
from edge_agent.config.yamlfile import MAX_BYTES, MAX_DEPTH, MAX_NODES, load_yaml
from edge_agent.errors import ConfigError

EXAMPLES = sorted((Path(__file__).parent.parent / "examples").glob("*.yaml"))
NODE = 'node: {id: a}\nmqtt: {broker: "mqtt://127.0.0.1"}\nsensors:\n  - {name: x, type: bme680}\n'


def test_every_example_reads_as_pyyaml_reads_it():
    assert EXAMPLES
    for path in EXAMPLES:
        assert load_yaml(path.read_text()) == yaml.safe_load(path.read_text())


def test_a_key_twice_is_an_error_naming_both_lines(tmp_path):
    f = tmp_path / "dup.yaml"
    f.write_text(
        'node: {id: a}\nmqtt:\n  broker: "mqtt://10.0.0.1"\n  allow_insecure: false\n'
        "  allow_insecure: true\nsensors:\n  - {name: x, type: bme680}\n"
    )
    with pytest.raises(ConfigError, match=r"line 5.*the key 'allow_insecure' again \(first on line 4\)"):
        load_config(f)


def test_aliases_share_a_chain_but_an_alias_bomb_is_refused_at_once(tmp_path):
    shared = load_yaml("f: &f [{type: median, window: 5}]\na: {filters: *f}\nb: {filters: *f}\n")
    assert shared["a"]["filters"] == shared["b"]["filters"] == [{"type": "median", "window": 5}]
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n"
    for i in range(1, 9):  # 9**9 strings once expanded, from 400 bytes
        bomb += f"{chr(97 + i)}: &{chr(97 + i)} [" + ", ".join([f"*{chr(96 + i)}"] * 9) + "]\n"
    f = tmp_path / "bomb.yaml"
    f.write_text(bomb)
    with pytest.raises(ConfigError, match=f"more than {MAX_NODES} values once its aliases") as caught:
        load_config(f)
    assert len(str(caught.value)) < 300
    with pytest.raises(yaml.YAMLError, match="alias inside the node"):
        load_yaml("a: &x [1, *x]\n")


def test_nesting_is_bounded(tmp_path):
    assert load_yaml("[" * MAX_DEPTH + "]" * MAX_DEPTH) is not None
    with pytest.raises(yaml.YAMLError, match=f"deeper than {MAX_DEPTH}"):
        load_yaml("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1))
    f = tmp_path / "deep.yaml"
    f.write_text(NODE + "extra: " + "[" * 1000 + "]" * 1000 + "\n")
    with pytest.raises(ConfigError, match="nested deeper"):
        load_config(f)


def test_size_and_keys_that_are_not_plain_values_are_refused():
    with pytest.raises(yaml.YAMLError, match="MiB"):
        load_yaml("#" * (MAX_BYTES + 1))
    with pytest.raises(yaml.YAMLError, match="plain value"):
        load_yaml("? [a, b]\n: 1\n")


@settings(max_examples=300, deadline=None)
@given(text=st.text(alphabet=st.sampled_from(list("ab:-[]{}&*!|>'\"#,? \n\t0123456789.")), max_size=120))
def test_any_text_is_a_document_or_a_yaml_error(text):
    try:
        load_yaml(text)
    except yaml.YAMLError:
        pass
