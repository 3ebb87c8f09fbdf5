"""Bounded reads (edge_agent/files.py) where a path may name a device that never ends or a
file far too large: check-config, provisioning and decode refuse it without reading it whole."""

from __future__ import annotations

import pytest

from edge_agent.config import load_config
from edge_agent.errors import ConfigError, ProvisionError
from edge_agent.field.provision import Credentials, plan
from edge_agent.files import CONFIG_MAX, TooLarge, read_at_most


def test_a_file_at_the_bound_is_read_and_one_byte_more_is_refused(tmp_path):
    f = tmp_path / "f"
    f.write_bytes(b"x" * CONFIG_MAX)
    assert len(read_at_most(f, CONFIG_MAX)) == CONFIG_MAX
    f.write_bytes(b"x" * (CONFIG_MAX + 1))
    with pytest.raises(TooLarge, match="more than 1,048,576 bytes"):
        read_at_most(f, CONFIG_MAX)
    with pytest.raises(TooLarge):
        read_at_most("/dev/zero", CONFIG_MAX)  # never ends: only the bound is read


def test_a_configuration_that_never_ends_is_a_clear_error():
    with pytest.raises(ConfigError, match="/dev/zero: more than 1,048,576 bytes: not a node configuration"):
        load_config("/dev/zero")


def test_provisioning_reads_its_inputs_bounded_and_strictly(tmp_path):
    with pytest.raises(ProvisionError, match="/dev/zero: more than"):
        plan(None, "/dev/zero", Credentials())  # type: ignore[arg-type]
    dup = tmp_path / "dup.yaml"
    dup.write_text("node: {id: a}\nnode: {id: b}\n")
    with pytest.raises(ConfigError, match="the key 'node' again"):
        plan(None, str(dup), Credentials())  # type: ignore[arg-type]
    ok = tmp_path / "ok.yaml"
    ok.write_text(
        'node: {id: a}\nmqtt: {broker: "mqtts://h", ca_file: /etc/edge-agent/ca.pem}\n'
        "sensors:\n  - {type: bme680}\n"
    )
    with pytest.raises(ProvisionError, match="/dev/zero: more than"):
        plan(None, str(ok), Credentials(ca="/dev/zero"))  # type: ignore[arg-type]
