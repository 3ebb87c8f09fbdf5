"""Bounded reads (edge_agent/files.py) where a path may name a device that never ends or a
file far too large: check-config, provisioning and decode refuse it without reading it whole."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edge_agent import files
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


def test_a_wiped_file_is_zeroed_where_it_was_before_it_goes(tmp_path, monkeypatch):
    secret = tmp_path / "client.key"
    secret.write_bytes(b"PRIVATE" * 20_000)  # more than one 64 KiB write
    seen = {}
    real_unlink = files.os.unlink

    def unlink(path):
        seen["bytes"] = Path(path).read_bytes()  # what the clusters hold when they are freed
        real_unlink(path)

    monkeypatch.setattr(files.os, "unlink", unlink)
    files.unlink_wiped(secret)
    assert not secret.exists() and seen["bytes"] == bytes(140_000)


def test_a_symlink_is_never_followed_to_wipe_what_it_points_to(tmp_path):
    target = tmp_path / "elsewhere"
    target.write_bytes(b"keep me")
    (tmp_path / "link").symlink_to(target)
    with pytest.raises(OSError):
        files.unlink_wiped(tmp_path / "link")
    with pytest.raises(OSError):
        files.replace_wiped(tmp_path / "link", b"new")
    assert target.read_bytes() == b"keep me" and sorted(p.name for p in tmp_path.iterdir()) == [
        "elsewhere",
        "link",
    ]


def test_replace_wiped_gives_new_contents_and_zeroes_the_old_ones_first(tmp_path, monkeypatch):
    net = tmp_path / "network-config"
    net.write_bytes(b"password: hunter22\n")
    old = os.open(net, os.O_RDONLY)  # the old file's data stays reachable through this descriptor
    try:
        files.replace_wiped(net, b"wifis: {}\n")
        assert net.read_bytes() == b"wifis: {}\n" and (net.stat().st_mode & 0o777) == 0o600
        assert os.pread(old, 64, 0) == bytes(len(b"password: hunter22\n"))
    finally:
        os.close(old)
    files.replace_wiped(tmp_path / "new", b"x")  # no old file: just written
    assert (tmp_path / "new").read_bytes() == b"x" and not (tmp_path / "new.tmp").exists()
