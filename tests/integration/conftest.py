"""Fixtures of the integration tests (the broker fixtures are in tests/conftest.py)."""

from __future__ import annotations

import itertools
import os

import pytest
from pki import make_pki

# The booted image (issue 19) is a target of its own, `make image-test` (its build alone takes
# half an hour): not collected by `make test`, rather than collected and skipped.
collect_ignore = [] if os.environ.get("EDGE_AGENT_IMAGE_TEST") == "1" else ["test_image_boot.py"]


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


@pytest.fixture(scope="session")
def postgres_server():
    """One PostgreSQL cluster of the tests' own for the session (tests/pg.py); each test takes
    a fresh database of it (``pg_url``)."""
    yield from _cluster()


@pytest.fixture
def pg_url(postgres_server, request):
    """The URL of a new, empty database on the session's cluster."""
    name = "t_" + "".join(c if c.isalnum() else "_" for c in request.node.name)[:50].lower()
    name += f"_{os.getpid()}_{next(_databases)}"
    return postgres_server.createdb(name)


@pytest.fixture
def own_postgres():
    """A cluster of this test's alone, which it may stop and start again (same port)."""
    yield from _cluster()


def _cluster():
    """A PostgreSQL cluster of the tests' own (tests/pg.py), removed after its last use."""
    from pg import Postgres, require_bin_dir

    server = Postgres(require_bin_dir())
    try:
        server.start()
        yield server
    finally:
        server.remove()


_databases = itertools.count()


@pytest.fixture
def ingest(broker, pg_url, tmp_path):
    """`edge-agent ingest` workers of the test (ingest_helpers.Ingest), each stopped by its pid."""
    from ingest_helpers import Ingest

    workers = Ingest(broker.url, pg_url, tmp_path)
    try:
        yield workers
    finally:
        workers.stop_all()


@pytest.fixture
def publisher(broker):
    """A node-like QoS 1 publisher on the test's broker (ingest_helpers.Publisher)."""
    from ingest_helpers import Publisher

    p = Publisher(broker.url)
    try:
        yield p
    finally:
        p.close()
