"""`edge-agent fleet-sim` (200 virtual nodes, faults injected) into `edge-agent ingest`, against a
real Mosquitto and a real PostgreSQL: the database holds every batch the simulator's record says
was sent, once; the injected duplicates counted as duplicates; the injected gaps in the gaps view.
Bounded by counting batches, never by the clock."""

from __future__ import annotations

import json
import subprocess
import threading

import paho.mqtt.client as mqtt
import pytest
from helpers import agent_cmd
from ingest_helpers import count, query, wait_for
from paho.mqtt.enums import CallbackAPIVersion

pytestmark = pytest.mark.broker


def test_a_simulated_fleet_is_stored_once_with_its_duplicates_and_gaps(ingest, broker, pg_url, tmp_path):
    worker, log = ingest.start()
    record_file = tmp_path / "record.json"
    done = subprocess.run(
        agent_cmd(
            "fleet-sim",
            "--broker",
            broker.url,
            "--nodes",
            "200",
            "--seals",
            "5",
            "--seed",
            "3",
            "--duplicate",
            "0.05",
            "--gap",
            "0.05",
            "--restart",
            "0.05",
            "--offline",
            "0.05",
            "--record",
            str(record_file),
        ),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    record = json.loads(record_file.read_text())
    totals = record["totals"]
    assert totals["duplicates"] > 0 and totals["gaps"] > 0 and totals["historical"] > 0
    wait_for(
        pg_url,
        "SELECT coalesce(sum(received_count), 0) FROM batches",
        lambda r: r[0][0] >= totals["batches"] + totals["duplicates"],
        timeout=300,
        procs=[worker],
    )
    stored = query(
        pg_url, "SELECT s.node, s.stream, b.epoch, b.seq FROM batches b JOIN streams s ON s.id = b.stream_id"
    )
    sent = [(r["node"], r["stream"], r["epoch"], q) for r in record["streams"] for q in r["sent"]]
    assert len(stored) == len(set(stored))
    assert sorted(stored) == sorted(sent), log.read_text()[-2000:]
    dup = query(pg_url, "SELECT node, stream, epoch, seq, received_count FROM duplicates")
    want_dup = sorted(
        (r["node"], r["stream"], r["epoch"], q, 2) for r in record["streams"] for q in r["duplicates"]
    )
    assert sorted(dup) == want_dup
    # a hole is a gap the node sent past; gaps after a stream's last sent seq are not yet visible
    want_missing = sum(
        sum(1 for g in r["gaps"] if r["sent"] and min(r["sent"]) < g < max(r["sent"]))
        for r in record["streams"]
    )
    assert count(pg_url, "SELECT coalesce(sum(missing), 0) FROM batch_gaps") == want_missing


@pytest.fixture
def many_fds():
    """A soft descriptor limit that holds 1,000 connections (the broker and the fleet inherit it)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 4096 if hard == resource.RLIM_INFINITY else min(hard, 4096)
    if want < 2500:
        pytest.skip(f"the descriptor limit ({hard}) cannot hold 1,000 connections")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_thousand_nodes_connect_once_and_every_batch_is_acknowledged(many_fds, broker_factory, tmp_path):
    """The thread-per-node simulator never saw 1,000 CONNACKs (paho's select() and descriptors
    above 1023); one selector loop holds them, each node connected once."""
    broker = broker_factory()
    record_file = tmp_path / "record.json"
    # A subscriber, so the broker hands every batch on (one nobody takes is sent again)
    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="fleet-listener", protocol=mqtt.MQTTv5)
    subscribed = threading.Event()
    sub.on_subscribe = lambda *a: subscribed.set()
    sub.connect("127.0.0.1", broker.port)
    sub.loop_start()
    sub.subscribe("#", qos=0)
    assert subscribed.wait(30)
    done = subprocess.run(
        agent_cmd(
            "fleet-sim",
            "--broker",
            broker.url,
            "--nodes",
            "1000",
            "--seals",
            "2",
            "--procs",
            "1",
            "--record",
            str(record_file),
        ),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    rec = json.loads(record_file.read_text())
    t = rec["totals"]
    assert (t["connects"], t["lost"], t["batches"], t["acked"]) == (1000, 0, 6000, 6000)
    assert t["unrouted"] == 0
    sub.loop_stop()
    sub.disconnect()
    assert {r["node"] for r in rec["streams"]} == {f"sim-{i:05d}" for i in range(1000)}
