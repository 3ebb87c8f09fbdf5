"""Shared fixtures: a real Mosquitto on a free loopback port, started and stopped by its pid;
an sd_notify socket. Plain helpers are in helpers.py."""

from __future__ import annotations

import logging
import socket

import pytest
from helpers import Broker, find_mosquitto, missing


@pytest.fixture
def broker_factory(tmp_path):
    """Start brokers with extra listener options (TLS, ACLs); all are stopped at the end."""
    binary = find_mosquitto()
    if binary is None:
        missing(
            "mosquitto is not installed: broker integration tests cannot run "
            "(`make test` installs it with apt-get when run as root)"
        )
    started = []

    def start(listener_options: str = "", extra: str = "", name: str = "broker") -> Broker:
        workdir = tmp_path / name
        workdir.mkdir(exist_ok=True)
        b = Broker(binary, workdir, listener_options)
        if extra:
            b.conf.write_text(b.conf.read_text() + extra)
        started.append(b)
        b.start()
        return b

    try:
        yield start
    finally:
        for b in started:
            b.stop()


@pytest.fixture
def broker(broker_factory):
    return broker_factory()


@pytest.fixture
def notify_socket(tmp_path):
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(0.2)
    yield path, sock
    sock.close()


@pytest.fixture(autouse=True)
def _no_log_handler_left_behind():
    """A test that calls the CLI's main() in this process gets setup_logging's handler on the
    stderr of that moment, pytest's capture, which is closed after the test: a later test's
    log lines then fail to write ("--- Logging error ---" in its stderr). It goes with the test."""
    yield
    root = logging.getLogger()
    for handler in list(root.handlers):
        if type(handler) is logging.StreamHandler:  # setup_logging's (pytest's are subclasses)
            root.removeHandler(handler)
