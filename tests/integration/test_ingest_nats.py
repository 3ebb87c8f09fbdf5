"""`edge-agent ingest` past one broker: a three-member NATS cluster (Debian's nats-server, each
member with JetStream and its MQTT listener, routed to the others; nats_cluster.py), MQTT 3.1.1
with a persistent session and a plain subscription (NATS has neither MQTT 5 nor shared
subscriptions). The worker is connected to one member, two simulated fleets (`edge-agent
fleet-sim --protocol 3.1.1`) to the two others, so every batch crosses the cluster's routes
and JetStream's replicated streams. Counted with the simulators' records: every batch a
member acknowledged is stored once, none extra, each duplicate a node sent seen as one, no
dead letter. Bounded by counting rows, never by the clock."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
from helpers import agent_cmd, terminate
from ingest_helpers import Ingest, count, query, wait_for
from nats_cluster import NatsCluster

pytestmark = pytest.mark.broker

NODES, SEALS = 4, 100  # per fleet, two fleets: 2 x 4 nodes x 3 streams x 100 = 2,400 batches


@pytest.fixture
def nats(tmp_path):
    # NATS 2.9.10, at its default max_ack_pending, held back the last ~35 of 2,400 batches until
    # its ack_wait (30 s by default) sent them again (docs/backbone.md, "Past one machine"):
    # 10 s keeps the test short, and the stall in it.
    cluster = NatsCluster(tmp_path / "nats", mqtt_options='ack_wait: "10s"')
    try:
        cluster.start()
        cluster.ready()
        yield cluster
    finally:
        cluster.stop()


def test_a_fleet_through_a_three_member_nats_cluster_is_stored_once(nats, pg_url, tmp_path):
    n0, n1, n2 = nats.members
    workers = Ingest(n0.url, pg_url, tmp_path)
    try:
        worker, log = workers.start(0, "--protocol", "3.1.1")
        assert "$share" not in log.read_text()  # 3.1.1: the plain subscription
        started = time.monotonic()
        fleets = []
        for i, member in enumerate((n1, n2)):
            record = tmp_path / f"record-{member.name}.json"
            out = open(tmp_path / f"fleet-{member.name}.log", "wb")
            fleets.append(
                (
                    subprocess.Popen(
                        agent_cmd(
                            "fleet-sim",
                            "--broker",
                            member.url,
                            "--protocol",
                            "3.1.1",
                            "--nodes",
                            str(NODES),
                            "--first",
                            str(i * NODES),
                            "--seals",
                            str(SEALS),
                            "--seed",
                            str(11 + i),
                            "--duplicate",
                            "0.02",
                            "--procs",
                            "1",
                            "--record",
                            str(record),
                        ),
                        stderr=out,
                    ),
                    record,
                    out,
                )
            )
        try:
            for proc, _, out in fleets:
                assert proc.wait(timeout=600) == 0, nats.logs()
                out.close()
        finally:
            for proc, _, _ in fleets:
                terminate(proc)
        published = time.monotonic() - started
        streams = [r for _, record, _ in fleets for r in json.loads(record.read_text())["streams"]]
        acked = [(r["node"], r["stream"], r["epoch"], q) for r in streams for q in r["acked"]]
        sent = {(r["node"], r["stream"], r["epoch"], q) for r in streams for q in r["sent"]}
        assert set(acked) == sent  # the simulator returns once each batch is acknowledged
        assert not any(r["unrouted"] for r in streams)  # MQTT 3.1.1 has no "no subscribers"
        wait_for(
            pg_url,
            "SELECT coalesce(sum(received_count), 0) FROM batches",
            lambda r: r[0][0] >= len(acked),
            timeout=300,
            procs=[worker],
        )
        # the goodbyes (a retained offline, QoS 1) come after each node's last batch
        wait_for(
            pg_url,
            "SELECT count(*) FROM node_status WHERE state = 'offline'",
            lambda r: r[0][0] == 2 * NODES,
            timeout=120,
            procs=[worker],
        )
        stored_in = time.monotonic() - started
        stored = query(
            pg_url,
            "SELECT s.node, s.stream, b.epoch, b.seq FROM batches b JOIN streams s ON s.id = b.stream_id",
        )
        assert len(stored) == len(set(stored))  # each key once
        assert sorted(stored) == sorted(sent), log.read_text()[-2000:]  # none missing, none extra
        dup = query(pg_url, "SELECT node, stream, epoch, seq, received_count FROM duplicates")
        want_dup = [(r["node"], r["stream"], r["epoch"], q, 2) for r in streams for q in r["duplicates"]]
        assert want_dup and sorted(dup) == sorted(want_dup)
        assert count(pg_url, "SELECT count(*) FROM dead_letters") == 0
        samples = count(pg_url, "SELECT coalesce(sum(samples), 0) FROM batches")
        assert count(pg_url, "SELECT count(*) FROM samples") == samples  # no row twice
    finally:
        workers.stop_all()
    stats = [line for line in log.read_text().splitlines() if "event=ingest_stats" in line]
    print(
        f"\nnats: {len(sent)} batches ({len(acked) - len(sent)} duplicates, {samples} samples) from "
        f"{2 * NODES} nodes on {n1.name} and {n2.name} to a worker on {n0.name}: published in "
        f"{published:.1f} s, stored in {stored_in:.1f} s; worker's last: {stats[-1] if stats else '-'}",
        file=sys.stderr,
    )
