"""Reliability, counted with the simulator's own record: a fleet run (`edge-agent fleet-sim`,
faults injected) into two `edge-agent ingest` workers while a worker is SIGKILLed and
restarted again and again and the broker is restarted twice (and, in the second test, the
database once). After the drain: every batch the broker acknowledged to a node is stored,
no sample row twice, and every hole in seq is one the node itself counted as dropped.

Events are placed by counting stored batches, never by the clock: a worker is killed after
each KILL_EVERY more batches (about 20 s of this fleet's rate), the broker restarted at two
counts, the database at one."""

from __future__ import annotations

import collections
import json
import subprocess
import time

import pytest
from helpers import agent_cmd, terminate
from ingest_helpers import Ingest, count, query

pytestmark = pytest.mark.broker

NODES, SEALS, INTERVAL = 300, 24, 1.0  # ~900 batches/s for 24 s: 21,000 batches
KILL_EVERY = 4_000
SAMPLES = {"air": 6, "climate": 12, "power": 6}  # points per batch of fleetsim's profiles


def _count(url: str) -> int:
    try:
        return count(url, "SELECT count(*) FROM batches")
    except Exception:  # noqa: BLE001 - the database restarting: the count comes again
        return -1


def _missing(url: str, acked: set, done: list) -> str:
    """Which acknowledged batches are not stored, by seq (a seq is a seal: a moment of the run)."""
    stored = set(
        query(
            url, "SELECT s.node, s.stream, b.epoch, b.seq FROM batches b JOIN streams s ON s.id = b.stream_id"
        )
    )
    gone = acked - stored
    by_seq = collections.Counter(k[3] for k in gone)
    return f"{len(gone)} missing, from {len({k[0] for k in gone})} nodes, by seq {sorted(by_seq.items())}; events {done}"


def _fleet(broker_url: str, record: str) -> subprocess.Popen:
    return subprocess.Popen(
        agent_cmd(
            "fleet-sim",
            "--broker",
            broker_url,
            "--nodes",
            str(NODES),
            "--seals",
            str(SEALS),
            "--interval",
            str(INTERVAL),
            "--realtime",
            "--seed",
            "11",
            "--duplicate",
            "0.01",
            "--gap",
            "0.01",
            "--restart",
            "0.005",
            "--offline",
            "0.01",
            "--record",
            record,
        ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _run(broker, url: str, tmp_path, restart_db=None) -> None:
    workers = Ingest(broker.url, url, tmp_path)
    slots = {0: workers.start(0)[0], 1: workers.start(1)[0]}
    record_file = tmp_path / "record.json"
    fleet = _fleet(broker.url, str(record_file))
    events = [(6_000, "broker"), (14_000, "broker")]
    if restart_db is not None:
        events.append((10_000, "db"))
    events += [(k, "kill") for k in range(KILL_EVERY, 20_000, KILL_EVERY)]
    events.sort()
    done, kills = [], 0
    try:
        while events and fleet.poll() is None:
            at, what = events[0]
            if _count(url) < at:
                time.sleep(0.05)
                continue
            events.pop(0)
            if what == "kill":
                slot = kills % 2
                workers.kill(slots[slot])
                slots[slot] = workers.start(slot, wait=False)[0]
                kills += 1
            elif what == "broker":
                broker.stop()  # SIGTERM: mosquitto saves its sessions and queues
                broker.start()
            else:
                restart_db()
            done.append((at, what))
        _, err = fleet.communicate(timeout=900)
        assert fleet.returncode == 0, err[-3000:]
        assert not events, f"the fleet ended before {events} (done: {done})"
        rec = json.loads(record_file.read_text())
        totals = rec["totals"]
        assert totals["lost"] >= 2 * NODES, totals  # both broker restarts reached every node
        assert totals["duplicates"] > 0 and totals["gaps"] > 0 and totals["resent"] > 0, totals
        acked = {(r["node"], r["stream"], r["epoch"], q) for r in rec["streams"] for q in r["acked"]}
        sent = {(r["node"], r["stream"], r["epoch"], q) for r in rec["streams"] for q in r["sent"]}
        assert acked == sent  # the simulator drained: the broker acknowledged every batch

        # Mosquitto 2.0 forgets shared subscriptions at a restart until each worker is back:
        # what it took for nobody (PUBACK "no matching subscribers") was sent again
        assert acked >= {
            (r["node"], r["stream"], r["epoch"], q) for r in rec["streams"] for q in r["unrouted"]
        }
        last, still = -1, 0  # the drain: until all are stored, or nothing more comes for 30 s
        while (now := _count(url)) < len(acked):
            for slot, p in slots.items():
                assert p.poll() is None, f"worker {slot} exited with {p.returncode}"
            still = still + 1 if now == last else 0
            last = now
            assert still < 150, (
                f"{now} of {len(acked)} acknowledged batches stored; no more came for 30 s: "
                + _missing(url, acked, done)
            )
            time.sleep(0.2)
        stored = query(
            url,
            "SELECT s.node, s.stream, b.epoch, b.seq, b.samples, b.received_count"
            " FROM batches b JOIN streams s ON s.id = b.stream_id",
        )
        keys = {r[:4] for r in stored}
        assert len(keys) == len(stored)
        assert acked - keys == set(), f"{len(acked - keys)} acknowledged batches missing"
        assert keys - acked == set()
        # no sample row twice: the rows are exactly the stored batches' points
        want_samples = sum(SAMPLES[r[1]] for r in stored)
        assert [r[4] for r in stored] == [SAMPLES[r[1]] for r in stored]
        assert count(url, "SELECT count(*) FROM samples") == want_samples
        # every duplicate the nodes sent on purpose was seen as one
        received = {r[:4]: r[5] for r in stored}
        dup = {(r["node"], r["stream"], r["epoch"], q) for r in rec["streams"] for q in r["duplicates"]}
        assert all(received[k] >= 2 for k in dup)
        # every hole in the stored seqs is one the node counted as dropped
        by_stream = collections.defaultdict(set)
        for node, stream, epoch, seq in keys:
            by_stream[(node, stream, epoch)].add(seq)
        dropped = {(r["node"], r["stream"], r["epoch"]): set(r["gaps"]) for r in rec["streams"]}
        for key, seqs in by_stream.items():
            holes = set(range(min(seqs), max(seqs) + 1)) - seqs
            assert holes <= dropped[key], (key, holes - dropped[key])
        want_missing = sum(
            sum(1 for g in r["gaps"] if r["sent"] and min(r["sent"]) < g < max(r["sent"]))
            for r in rec["streams"]
        )
        assert count(url, "SELECT coalesce(sum(missing), 0) FROM batch_gaps") == want_missing
        assert count(url, "SELECT count(*) FROM dead_letters") == 0
    finally:
        if fleet.poll() is None:
            terminate(fleet)
        workers.stop_all()


def test_kills_and_broker_restarts_lose_and_duplicate_nothing(broker, pg_url, tmp_path):
    _run(broker, pg_url, tmp_path)


def test_the_same_with_the_database_restarted(broker, own_postgres, tmp_path):
    def restart_db() -> None:
        own_postgres.stop()
        own_postgres.start()

    _run(broker, own_postgres.createdb("ingest"), tmp_path, restart_db)
