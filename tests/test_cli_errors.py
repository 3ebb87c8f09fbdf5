"""Every command ends in a message, not a traceback: a fault of the machine's side (an
OSError a command did not put in words of its own) is said with the file it names."""

from __future__ import annotations

import errno

import pytest

from edge_agent.cli import keys, main


@pytest.mark.parametrize(
    "exc, said",
    [
        (
            FileNotFoundError(errno.ENOENT, "No such file or directory", "/gone/k.pub"),
            "No such file or directory: /gone/k.pub",
        ),
        (OSError(errno.ENOSPC, "No space left on device"), "No space left on device"),
        (
            PermissionError(errno.EACCES, "Permission denied", "/etc/edge-agent/trust"),
            "Permission denied: /etc/edge-agent/trust",
        ),
    ],
    ids=["gone", "full", "denied"],
)
def test_an_os_error_a_command_did_not_word_is_said_and_exits_1(monkeypatch, capsys, exc, said):
    def command(args):
        raise exc

    monkeypatch.setattr(keys, "cmd_keys_show", command)
    assert main(["keys", "show", "k.pub"]) == 1
    err = capsys.readouterr().err
    assert err == f"edge-agent: {said}\n"
