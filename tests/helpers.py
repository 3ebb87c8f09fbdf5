"""Helpers that tests share (not fixtures: those are in conftest.py)."""

from __future__ import annotations

import os
import subprocess

from conftest import require_tool

BROKER_USER = "tail-user"


def authenticated_broker(broker_factory, tmp_path, password: str, listener_options: str = ""):
    """A Mosquitto that takes BROKER_USER with ``password`` and nobody anonymous."""
    passwd = tmp_path / "passwd"
    subprocess.run(
        [
            require_tool("mosquitto_passwd", "the mosquitto package"),
            "-b",
            "-c",
            str(passwd),
            BROKER_USER,
            password,
        ],
        check=True,
        capture_output=True,
    )
    os.chmod(passwd, 0o644)
    b = broker_factory(listener_options, extra=f"password_file {passwd}\n")
    b.stop()
    b.conf.write_text(b.conf.read_text().replace("allow_anonymous true", "allow_anonymous false"))
    b.start()
    return b


def tls_listener(pki, require_cert: bool = False) -> str:
    """Listener options for TLS with the test PKI's server certificate."""
    opts = f"cafile {pki}/ca.pem\ncertfile {pki}/server.pem\nkeyfile {pki}/server.key\n"
    return opts + ("require_certificate true\n" if require_cert else "")
