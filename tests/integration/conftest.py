"""Fixtures of the integration tests (the broker fixtures are in tests/conftest.py)."""

from __future__ import annotations

import os

import pytest
from pki import make_pki


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A throwaway CA, a server certificate for 127.0.0.1 and a client certificate (pki.py)."""
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def mqtt_password(tmp_path):
    """(a password, a file holding it on its first line), as the node and tail read it."""
    value = f"pw-Oboe-{os.getpid()}"
    path = tmp_path / "mqtt-password"
    path.write_text(value + "\n")
    return value, str(path)
