"""What PostgreSQL refuses though classify() took it (a NUL in jsonb, a number beyond
float), against the real broker and database: each message ends as a row or a dead letter,
all are acknowledged (the in-flight window never fills with them), a restart does not bring
them back, and the worker goes on storing what comes after."""

from __future__ import annotations

import re

import pytest
from ingest_helpers import PREFIX, count, payload, wait_for

pytestmark = pytest.mark.broker

# Health that json takes and PostgreSQL's jsonb may not, one node each.
ODD = {
    "nul": b'{"x":"\\u0000"}',
    "surrogate": b'{"x":"\\ud800"}',
    "inf": b'{"x":1e400}',
    "big-int": ('{"x":' + "9" * 4000 + "}").encode(),
    "dup-keys": b'{"node":"dup-keys","node":"dup-keys","x":1}',
    "nul-key": b'{"\\u0000":1}',
    "deep": b'{"x":' + b"[" * 900 + b"]" * 900 + b"}",
}


def test_odd_health_is_a_row_or_a_dead_letter_and_all_of_it_is_acknowledged(ingest, publisher, pg_url):
    proc, log = ingest.start()
    for node, body in ODD.items():
        publisher.publish(f"{PREFIX}/{node}/health", body)
    publisher.data(payload("after", "air", 1))
    wait_for(pg_url, "SELECT count(*) FROM batches", lambda r: r[0][0] == 1, procs=[proc])
    stored = count(pg_url, "SELECT count(*) FROM node_status WHERE health IS NOT NULL")
    dead = count(pg_url, "SELECT count(*) FROM dead_letters")
    assert stored + dead == len(ODD) and dead >= 1, (stored, dead)
    ingest.stop_all()
    acked = [int(v) for v in re.findall(r"event=ingest_stats .*acked=(\d+)", log.read_text())]
    assert acked[-1] == len(ODD) + 1, log.read_text()[-2000:]
    # The slot's session again: nothing of it comes back, nothing is stored twice.
    proc, _ = ingest.start()
    publisher.data(payload("after", "air", 2))
    wait_for(pg_url, "SELECT count(*) FROM batches", lambda r: r[0][0] == 2, procs=[proc])
    assert count(pg_url, "SELECT count(*) FROM dead_letters") == dead


def test_refused_messages_never_fill_the_in_flight_window(ingest, publisher, pg_url):
    """A window of 10 (--max-messages 5) and 12 messages the database refuses: had any of them
    stayed unacknowledged, the batch after them would never be handed to the worker."""
    proc, _ = ingest.start(0, "--max-messages", "5")
    for i in range(12):
        publisher.publish(f"{PREFIX}/n{i}/health", ODD["nul"])
    publisher.data(payload("after", "air", 1))
    wait_for(pg_url, "SELECT count(*) FROM batches", lambda r: r[0][0] == 1, procs=[proc], timeout=60)
    assert count(pg_url, "SELECT count(*) FROM dead_letters") == 12
