"""The ingest worker's systemd template unit (systemd/edge-agent-ingest@.service): its
command line, expanded the way systemd expands it, runs a real worker against a broker that
takes only a login and the tests' PostgreSQL (systemd-analyze's checks of it are in
test_systemd.py, beside the agent's unit's)."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import BROKER_USER, REPO, authenticated_broker, terminate, wait_for_log
from ingest_helpers import Publisher, count, payload, wait_for

from edge_agent.node.mqtt import ClientSettings

pytestmark = pytest.mark.broker

UNIT = REPO / "systemd" / "edge-agent-ingest@.service"
EXAMPLE = REPO / "systemd" / "ingest.env.example"
PASSWORD = "ingest-unit-secret"


def unit_value(key: str) -> list[str]:
    return [ln.split("=", 1)[1] for ln in UNIT.read_text().splitlines() if ln.startswith(key + "=")]


def expand(line: str, env: dict[str, str], instance: str, credentials: Path) -> list[str]:
    """systemd.service's rules for ExecStart: ``%i`` the instance, ``%d`` the credentials'
    folder, ``${X}`` one word (whatever it holds), ``$X`` a word of its own split at spaces."""
    line = line.replace("%i", instance).replace("%d", str(credentials))
    words: list[str] = []
    for word in shlex.split(line):
        if m := re.fullmatch(r"\$([A-Z_]+)", word):
            words += env.get(m.group(1), "").split()
        else:
            words.append(re.sub(r"\$\{([A-Z_]+)\}", lambda m: env.get(m.group(1), ""), word))
    return words


def env_file(text: str) -> dict[str, str]:
    return dict(ln.split("=", 1) for ln in text.splitlines() if ln.strip() and not ln.startswith("#"))


def test_the_units_command_line_runs_a_slot_that_logs_in_and_stores(broker_factory, pg_url, tmp_path):
    broker = authenticated_broker(broker_factory, tmp_path, PASSWORD)
    env = env_file(EXAMPLE.read_text())
    assert set(env) == {"INGEST_BROKER", "INGEST_DB", "INGEST_GROUP", "INGEST_USERNAME", "INGEST_ARGS"}
    env.update(
        INGEST_BROKER=broker.url,
        INGEST_DB=pg_url,
        INGEST_USERNAME=BROKER_USER,
        INGEST_ARGS="--migrate --max-messages 50",
    )
    credentials = tmp_path / "credentials"
    credentials.mkdir(mode=0o700)
    (credentials / "mqtt-password").write_text(PASSWORD + "\n")
    (credentials / "pgpass").write_text("*:*:*:*:unused\n")
    for cred in unit_value("LoadCredential"):  # each credential the command line names is loaded
        assert cred.split(":", 1)[0] in ("mqtt-password", "pgpass"), cred
    (exec_start,) = unit_value("ExecStart")
    argv = expand(exec_start, env, "1", credentials)
    assert argv[0] == "/opt/edge-agent/bin/edge-agent" and argv[1] == "ingest"
    assert "--slot" in argv and argv[argv.index("--slot") + 1] == "1"
    assert argv[-3:] == ["--migrate", "--max-messages", "50"]
    log = tmp_path / "ingest.log"
    with open(log, "wb") as f:
        proc = subprocess.Popen([sys.executable, "-m", "edge_agent.cli", *argv[1:]], stderr=f)
    try:
        wait_for_log(proc, log, lambda text: "event=subscribed" in text, timeout=60)
        assert "client_id=ingest-ingest-1" in log.read_text()
        pw = tmp_path / "publisher-password"
        pw.write_text(PASSWORD)
        pub = Publisher(
            broker.url, settings=ClientSettings("unit-pub", username=BROKER_USER, password_file=str(pw))
        )
        try:
            for seq in range(1, 6):
                pub.data(payload("lamp-1", "air", seq))
        finally:
            pub.close()
        wait_for(pg_url, "SELECT count(*) FROM batches", lambda rows: rows[0][0] == 5, procs=[proc])
        assert count(pg_url, "SELECT count(*) FROM dead_letters") == 0
    finally:
        terminate(proc, timeout=30)
    assert proc.returncode == 0, log.read_text()
    assert PASSWORD not in log.read_text()
