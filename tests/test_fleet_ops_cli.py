"""The operator's fleet commands refuse bad input before they connect or sign anything: what
and where, an exit code, never a traceback."""

from __future__ import annotations

import pytest

from edge_agent.cli import main
from edge_agent.files import CONFIG_MAX

ARGS = ["--node", "lamp-1", "--broker", "mqtt://127.0.0.1:1", "--key", "/nonexistent.key"]


@pytest.mark.parametrize(
    "content, said",
    [
        (None, "No such file or directory"),
        (b"\xff\xfe node", "not UTF-8 text (byte 0)"),
        (b"#" * (CONFIG_MAX + 1), "not a node configuration"),
        (
            b"node: {id: lamp-1}\nmqtt: {broker: 'mqtt://127.0.0.1:1'}\nsensors: []\n",
            "sensors: expected a non-empty list",
        ),
        (b"node: [", "not valid YAML"),
    ],
)
def test_push_config_says_what_is_wrong_with_the_file(tmp_path, capsys, content, said):
    f = tmp_path / "node.yaml"
    if content is not None:
        f.write_bytes(content)
    rc = main(["fleet", "push-config", str(f), *ARGS])
    err = capsys.readouterr().err
    assert rc in (1, 2) and said in err and "Traceback" not in err, err


def test_a_broker_url_that_is_not_one_is_said(capsys):
    rc = main(["fleet", "status", "--broker", "http://x", "--wait", "0"])
    err = capsys.readouterr().err
    assert rc == 2 and "command line:" in err and "Traceback" not in err, err


def test_a_missing_key_or_a_bad_expiry_is_said_before_connecting(tmp_path, capsys):
    for extra, said in (
        (["--key", str(tmp_path / "none.key")], "none.key"),
        (["--key", "k", "--expires", "soon"], "--expires"),
    ):
        rc = main(["fleet", "command", "flush", "--node", "lamp-1", "--broker", "mqtt://127.0.0.1:1", *extra])
        err = capsys.readouterr().err
        assert rc in (1, 2) and said in err and "cannot connect" not in err and "Traceback" not in err, err
