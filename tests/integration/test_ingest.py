"""`edge-agent ingest` against a real Mosquitto and a real PostgreSQL (tests/pg.py): the schema's
migrations, batches from the node's own encoder as rows (compared with wire.decode of the same
payloads), a duplicate counted and stored once, dead letters, the gaps view, and a real
`edge-agent run --simulate` node. Bounded by counting rows, never by the clock."""

from __future__ import annotations

import json
import subprocess
import threading

import psycopg
import pytest
from helpers import agent_cmd, stop_agent
from ingest_helpers import (
    PREFIX,
    T0,
    Publisher,
    count,
    expected_rows,
    payload,
    query,
    stored_rows,
    wait_for,
)

from edge_agent import wire
from edge_agent.backbone import schema

pytestmark = pytest.mark.broker


def test_migrations_apply_once_and_a_newer_database_is_refused(pg_url):
    with psycopg.connect(pg_url, autocommit=True) as conn:
        assert schema.current_version(conn) == 0
        with pytest.raises(schema.SchemaError, match="--migrate"):
            schema.check(conn)
        assert schema.migrate(conn) == [n for n, _, _ in schema.MIGRATIONS]
        assert schema.migrate(conn) == []  # again: nothing to do
        assert schema.check(conn) == schema.LATEST
        names = {
            r[0]
            for r in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
            )
        }
        assert {
            "batches",
            "samples",
            "channels",
            "streams",
            "node_status",
            "dead_letters",
            "schema_version",
        } <= names
        assert {"batch_gaps", "duplicates", "ingest_lag", "sample_rows"} <= names
        assert schema.ensure_partitions(conn) == 5  # this month, the one before, three ahead
        assert schema.ensure_partitions(conn) == 0
        conn.execute(
            "INSERT INTO schema_version (version, name) VALUES (%s, 'from the future')", (schema.LATEST + 1,)
        )
        for call in (schema.check, schema.migrate):
            with pytest.raises(schema.SchemaError, match="newer than this edge-agent"):
                call(conn)


def test_ingest_without_migrate_on_an_empty_database_says_so(broker, pg_url):
    out = subprocess.run(
        agent_cmd("ingest", "--broker", broker.url, "--db", pg_url),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 1 and "edge-agent ingest --migrate" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr


def test_batches_arrive_as_the_decoders_rows(ingest, publisher, pg_url):
    worker, _ = ingest.start()
    sent = [payload("lamp-0042", "air", seq) for seq in range(5)]
    sent.append(payload("lamp-0042", "air", 5, flags=wire.FLAG_HISTORICAL | wire.FLAG_CLOCK_UNSYNCED))
    sent += [payload("lamp-0043", "power", seq, epoch=7) for seq in range(3)]
    sent.append(payload("lamp-0043", "power", 3, epoch=8, t0=5000, flags=wire.FLAG_CLOCK_UNSYNCED))  # 1970
    for p in sent:
        publisher.data(p)
    wait_for(pg_url, "SELECT count(*) FROM batches", lambda r: r[0][0] == len(sent), procs=[worker])
    assert stored_rows(pg_url) == expected_rows(sent)
    flags = query(
        pg_url,
        "SELECT historical, clock_unsynced, version, payload_bytes FROM batches b "
        "JOIN streams s ON s.id = b.stream_id WHERE node = 'lamp-0042' AND seq = 5",
    )
    assert flags == [(True, True, 4, len(sent[5]))]
    assert count(pg_url, "SELECT count(*) FROM duplicates") == 0
    assert count(pg_url, "SELECT count(*) FROM dead_letters") == 0
    assert count(pg_url, "SELECT count(*) FROM batch_gaps") == 0
    lag = query(pg_url, "SELECT node, stream, batches FROM ingest_lag ORDER BY 1")
    assert lag == [("lamp-0042", "air", 6), ("lamp-0043", "power", 4)]
    # the samples went into the month's partition; 1970's (a clock not yet set) into the default
    in_default = query(
        pg_url, "SELECT DISTINCT extract(year FROM t)::int, clock_unsynced FROM samples_default"
    )
    assert in_default == [(1970, True)]


def test_status_and_health_are_kept_per_node(ingest, publisher, pg_url):
    worker, _ = ingest.start()
    birth = {"node": "lamp-0042", "state": "online", "version": "0.1.0", "core": "cython"}
    publisher.publish(wire.status_topic(PREFIX, "lamp-0042"), json.dumps(birth).encode())
    publisher.publish(
        wire.health_topic(PREFIX, "lamp-0042"), json.dumps({"node": "lamp-0042", "uptime_s": 5}).encode()
    )
    rows = wait_for(
        pg_url,
        "SELECT state, status, health, birth IS NOT NULL, will IS NULL FROM node_status",
        lambda r: len(r) == 1 and r[0][2] is not None,
        procs=[worker],
    )
    assert rows == [("online", birth, {"node": "lamp-0042", "uptime_s": 5}, True, True)]
    will = dict(birth, state="offline")
    publisher.publish(wire.status_topic(PREFIX, "lamp-0042"), json.dumps(will).encode())
    wait_for(
        pg_url,
        "SELECT state, will IS NOT NULL, birth IS NOT NULL FROM node_status",
        lambda r: r == [("offline", True, True)],
        procs=[worker],
    )


def test_the_same_payload_twice_is_one_batch_counted_twice(ingest, publisher, pg_url):
    worker, _ = ingest.start()
    p = payload("lamp-0042", "air", 12)
    publisher.data(p)
    publisher.data(p)
    rows = wait_for(
        pg_url,
        "SELECT node, stream, epoch, seq, received_count FROM duplicates",
        lambda r: len(r) == 1,
        procs=[worker],
    )
    assert rows == [("lamp-0042", "air", 0x0BADF00D, 12, 2)]
    assert count(pg_url, "SELECT count(*) FROM batches") == 1
    assert stored_rows(pg_url) == expected_rows([p])  # its samples once


def test_garbage_is_a_dead_letter_and_the_next_good_batch_is_stored(ingest, publisher, pg_url, tmp_path):
    worker, log = ingest.start()
    forged = payload("lamp-0099", "air", 1)  # a valid batch on another node's topic
    crc_bad = bytearray(payload("lamp-0042", "air", 1))
    crc_bad[-1] ^= 0xFF  # a byte of the checksum changed (set to 0, it may have been 0 already)
    bad = [
        (wire.data_topic(PREFIX, "lamp-0042", "air"), b"\x00garbage\xff"),
        (wire.data_topic(PREFIX, "lamp-0042", "air"), forged),
        (wire.data_topic(PREFIX, "lamp-0042", "air"), bytes(crc_bad)),
        (wire.status_topic(PREFIX, "lamp-0042"), b"{not json"),
        (wire.health_topic(PREFIX, "lamp-0042"), json.dumps({"node": "lamp-0001"}).encode()),
    ]
    for topic, data in bad:
        publisher.publish(topic, data)
    good = payload("lamp-0042", "air", 2)
    publisher.data(good)
    # every message handled (stored or a dead letter), then what became of each
    wait_for(
        pg_url,
        "SELECT (SELECT count(*) FROM batches) + (SELECT count(*) FROM dead_letters)",
        lambda r: r[0][0] >= len(bad) + 1,
        procs=[worker],
    )
    stored = query(
        pg_url, "SELECT s.node, s.stream, b.epoch, b.seq FROM batches b JOIN streams s ON s.id = b.stream_id"
    )
    letters = query(pg_url, "SELECT topic, payload, reason FROM dead_letters ORDER BY id")
    assert stored == [("lamp-0042", "air", 0x0BADF00D, 2)], (stored, [r[2] for r in letters], log.read_text())
    assert [(t, bytes(p)) for t, p, _ in letters] == bad  # kept as they came
    reasons = [r for _, _, r in letters]
    assert reasons[0].startswith("does not decode") and "lamp-0099" in reasons[1]
    assert "checksum" in reasons[2].lower() or "crc" in reasons[2].lower(), reasons[2]
    assert "not a JSON object" in reasons[3] and "lamp-0001" in reasons[4]
    assert stored_rows(pg_url) == expected_rows([good])
    assert "lamp-0099" not in str(query(pg_url, "SELECT node FROM streams"))
    # acknowledged, never to come back: a restarted slot gets none of them again
    stop_agent(worker, log)
    worker, _ = ingest.start()
    publisher.data(payload("lamp-0042", "air", 3))
    wait_for(pg_url, "SELECT count(*) FROM batches", lambda r: r[0][0] == 2, procs=[worker])
    assert count(pg_url, "SELECT count(*) FROM dead_letters") == len(bad)


def test_a_skipped_seq_shows_in_the_gaps_view(ingest, publisher, pg_url):
    worker, _ = ingest.start()
    for seq in (0, 1, 2, 5, 6, 9):
        publisher.data(payload("lamp-0042", "air", seq))
    publisher.data(payload("lamp-0042", "air", 4, epoch=99))  # another epoch: no hole of the first
    wait_for(pg_url, "SELECT count(*) FROM batches", lambda r: r[0][0] == 7, procs=[worker])
    gaps = query(
        pg_url, "SELECT node, stream, epoch, first_missing, last_missing, missing FROM batch_gaps ORDER BY 4"
    )
    assert gaps == [("lamp-0042", "air", 0x0BADF00D, 3, 4, 2), ("lamp-0042", "air", 0x0BADF00D, 7, 8, 2)]


NODE_CONFIG = """\
node: {{id: sim-node}}
flush_interval: 500ms
clock: {{hold_unsynced: 0s}}
mqtt: {{broker: "{broker}", topic_prefix: {prefix}, reconnect: {{min: 200ms, max: 2s}}}}
sensors:
  - name: air
    type: bme680
    interval: 100ms
    heater: {{temperature: 320, duration: 30ms}}
"""


def test_a_simulated_node_arrives_as_its_payloads_decode(ingest, broker, pg_url, tmp_path):
    """A real `edge-agent run --simulate` node; a plain subscriber records what it publishes."""
    worker, _ = ingest.start()
    recorded: dict[tuple, bytes] = {}
    subscribed = threading.Event()
    recorder = Publisher(broker.url, "test-recorder")
    recorder.client.on_message = lambda c, u, m: recorded.setdefault(wire.decode(m.payload).key, m.payload)
    recorder.client.on_subscribe = lambda *a: subscribed.set()
    recorder.client.subscribe(f"{PREFIX}/+/data/+", qos=1)
    assert subscribed.wait(30)
    cfg = tmp_path / "node.yaml"
    cfg.write_text(NODE_CONFIG.format(broker=broker.url, prefix=PREFIX))
    err = tmp_path / "node.log"
    with open(err, "wb") as f:
        node = subprocess.Popen(
            agent_cmd("run", "--simulate", "--config", str(cfg), "--state-dir", str(tmp_path / "state")),
            stderr=f,
        )
    try:
        wait_for(pg_url, "SELECT count(*) FROM batches", lambda r: r[0][0] >= 4, procs=[worker])
    finally:
        assert stop_agent(node, err) == 0

    def same_keys(rows) -> bool:  # the recorder and the worker both have all the node sent
        return sorted(rows) == sorted(recorded)

    wait_for(
        pg_url,
        "SELECT s.node, s.stream, b.epoch, b.seq FROM batches b JOIN streams s ON s.id = b.stream_id",
        same_keys,
        procs=[worker],
    )
    recorder.close()
    assert len(recorded) >= 4
    assert stored_rows(pg_url) == expected_rows(list(recorded.values()))
    status = query(pg_url, "SELECT node, state, health IS NOT NULL FROM node_status")
    assert status and status[0][0] == "sim-node"


def test_a_database_at_step_1_gains_the_privacy_view_and_keeps_its_rows(pg_url, monkeypatch):
    with psycopg.connect(pg_url, autocommit=True) as conn:
        monkeypatch.setattr(schema, "MIGRATIONS", schema.MIGRATIONS[:1])
        assert schema.migrate(conn) == [1]
        conn.execute("INSERT INTO streams (node, stream) VALUES ('n', 's')")
        monkeypatch.undo()
        assert schema.migrate(conn) == [n for n, _, _ in schema.MIGRATIONS[1:]]
        assert conn.execute("SELECT node, stream FROM streams").fetchall() == [("n", "s")]
        levels = conn.execute(
            "SELECT privacy_level(v::smallint, f::smallint) FROM (VALUES (1, 8), (2, 0), (4, 8), (4, 16), "
            "(4, 24), (4, 11), (3, 23)) AS t(v, f)"
        ).fetchall()
        # version 1 has no level (bits 3-4 ignored); other flag bits do not change it
        assert [r[0] for r in levels] == [
            "raw",
            "raw",
            "aggregate",
            "total",
            "undefined",
            "aggregate",
            "total",
        ]


def test_a_private_stream_shows_its_level_and_period(ingest, publisher, pg_url):
    """A stream sent raw, then (its configuration changed) at level aggregate over 15
    minutes: stream_privacy holds both spans, and the statistics' rows are those sent."""
    worker, _ = ingest.start()
    q = 15 * 60_000
    raw = [payload("flat-7", "mains", seq) for seq in range(2)]

    def private(seq: int) -> bytes:
        end = T0 - 8 * q + (seq - 2) * 2 * q  # each batch two periods, in the past
        ends = (end, end + q)
        return wire.encode(
            wire.Batch(
                "flat-7",
                "mains",
                seq,
                end,
                (
                    wire.ChannelData("power.mean", "W", 0.1, ends, (1523 + seq, 3874)),
                    wire.ChannelData("power.count", "", 1.0, ends, (900, 899)),
                ),
                flags=1 << wire.FLAG_LEVEL_SHIFT,
                period_ms=q,
                epoch=0x0BADF00D,
            )
        )

    privates = [private(2), private(3)]
    for p in raw + privates:
        publisher.data(p)
    wait_for(pg_url, "SELECT count(*) FROM batches", lambda r: r[0][0] == 4, procs=[worker])
    spans = query(
        pg_url, "SELECT level, period_ms, batches FROM stream_privacy WHERE node = 'flat-7' ORDER BY level"
    )
    assert spans == [("aggregate", q, 2), ("raw", None, 2)]
    means = query(
        pg_url,
        "SELECT value FROM sample_rows WHERE node = 'flat-7' AND channel = 'power.mean' ORDER BY t, value",
    )
    assert sorted(v for (v,) in means) == sorted([152.5, 387.4, 152.6, 387.4])
    assert stored_rows(pg_url) == expected_rows(raw + privates)
