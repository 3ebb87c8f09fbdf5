"""What a message is to the ingest (edge_agent/backbone/messages.py), and the worker's settings:
no broker, no database."""

from __future__ import annotations

import json
import logging

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent import wire
from edge_agent.backbone.messages import (
    BatchRecord,
    DeadLetter,
    HealthRecord,
    Message,
    StatusRecord,
    classify,
    sample_rows,
)
from edge_agent.backbone.settings import IngestSettings

T0 = 1_767_225_600_000


def batch(node: str = "lamp-1", stream: str = "air", flags: int = 0) -> wire.Batch:
    ch = wire.ChannelData(
        "temperature",
        "°C",
        0.01,
        (T0, T0 + 1000, T0 + 2000),
        (2150, 2151, 9999),
        flags=((2, wire.QUALITY_STUCK),),
    )
    return wire.Batch(node, stream, 3, T0, (ch,), flags=flags, epoch=7)


def msg(topic: str, payload: bytes) -> Message:
    return Message(topic, payload, 1.5, mid=4, qos=1, generation=1)


def test_a_batch_on_its_own_topic_is_a_batch_record():
    p = wire.encode(batch())
    r = classify(msg("edge/lamp-1/data/air", p))
    assert isinstance(r, BatchRecord) and r.batch == wire.decode(p) and r.msg.payload == p


def test_a_prefix_may_hold_slashes():
    p = wire.encode(batch())
    assert isinstance(classify(msg("city/north/lamp-1/data/air", p), prefix="city/north"), BatchRecord)
    r = classify(msg("city/north/lamp-1/data/air", p), prefix="city")
    assert isinstance(r, DeadLetter) and "not a node's topic" in r.reason


@pytest.mark.parametrize(
    "topic, payload, reason",
    [
        ("edge/lamp-1/data/air", b"garbage", "does not decode"),
        ("edge/lamp-2/data/air", None, "the payload says node 'lamp-1'"),
        ("edge/lamp-1/data/power", None, "stream 'air', its topic node 'lamp-1' stream 'power'"),
        ("edge/lamp-1/data", None, "not a node's topic"),
        ("other/lamp-1/data/air", None, "not a node's topic"),
        ("edge/lamp-1/status", b"", "status is not a JSON object"),
        ("edge/lamp-1/status", b"[1]", "a JSON list, not an object"),
        ("edge/lamp 1/status", b'{"state": "online"}', "the topic's node id 'lamp 1' is not 1 to"),
        ("edge/-lamp/health", b"{}", "the topic's node id '-lamp' is not"),
        ("edge/lamp-1/status", b'{"state": "sleeping"}', "neither 'online' nor 'offline'"),
        ("edge/lamp-1/status", b'{"node": "lamp-9", "state": "online"}', "says node 'lamp-9'"),
        ("edge/lamp-1/health", b'{"cpu_temp_c": NaN}', "NaN is not JSON"),
        ("edge/lamp-1/health", b"\xff{}", "health is not a JSON object"),
        # deeper than json's stack: a RecursionError once, which no worker survived
        ("edge/lamp-1/health", b"[" * 100_000, "nested deeper than the JSON parser goes"),
        ("edge/lamp-1/status", b'{"a":' * 100_000, "nested deeper than the JSON parser goes"),
    ],
)
def test_what_is_not_a_nodes_message_is_a_dead_letter_with_the_reason(topic, payload, reason):
    data = wire.encode(batch()) if payload is None else payload
    r = classify(msg(topic, data))
    assert isinstance(r, DeadLetter), r
    assert reason in r.reason and r.msg.payload == data and r.msg.topic == topic


@settings(max_examples=300, deadline=None)
@given(
    topic=st.sampled_from(["edge/lamp-1/data/air", "edge/lamp-1/status", "edge/lamp-1/health", "edge/x"]),
    payload=st.one_of(
        st.binary(max_size=300),
        st.builds(lambda k, t: wire.encode(batch())[:k] + t, st.integers(0, 120), st.binary(max_size=20)),
        st.recursive(
            st.none() | st.integers() | st.text(max_size=5),
            lambda c: st.lists(c) | st.dictionaries(st.text(max_size=5), c),
        ).map(lambda d: json.dumps(d).encode()),
    ),
)
def test_classify_takes_any_message_and_never_raises(topic, payload):
    """classify runs in paho's network thread: whatever comes is a record of that message,
    an exception there would stop the worker's receiving."""
    m = msg(topic, payload)
    r = classify(m)
    assert r.msg is m
    assert isinstance(r, BatchRecord | StatusRecord | HealthRecord | DeadLetter)


def test_status_and_health():
    birth = {"node": "lamp-1", "state": "online", "version": "0.1.0", "core": "cython"}
    r = classify(msg("edge/lamp-1/status", json.dumps(birth).encode()))
    assert isinstance(r, StatusRecord) and (r.node, r.state, r.doc) == ("lamp-1", "online", birth)
    r = classify(msg("edge/lamp-1/health", b'{"uptime_s": 3}'))  # a node field is not required
    assert isinstance(r, HealthRecord) and (r.node, r.doc) == ("lamp-1", {"uptime_s": 3})


def test_sample_rows_carry_quality_and_the_clock_flag():
    b = batch(flags=wire.FLAG_CLOCK_UNSYNCED)
    rows = sample_rows(b, [42])
    assert rows == [
        (T0, 21.5, 42, None, True),
        (T0 + 1000, 21.51, 42, None, True),
        (T0 + 2000, 99.99, 42, wire.QUALITY_STUCK, True),
    ]
    assert [(t, v) for t, v, *_ in rows] == [(round(r["t"] * 1000), r["value"]) for r in b.rows()]


def test_ingest_settings():
    s = IngestSettings("mqtt://127.0.0.1:1883", "postgresql://db/x", group="city", slot=2, prefix="a/b")
    assert s.client_id == "ingest-city-2"
    assert s.topics == ["$share/city/a/b/+/data/+", "$share/city/a/b/+/status", "$share/city/a/b/+/health"]
    settings = s.client_settings()
    assert settings.persistent and settings.client_id == "ingest-city-2" and settings.protocol == "5"
    for bad in ({"group": "a/b"}, {"group": "+"}, {"slot": -1}, {"session_expiry": 0}, {"max_messages": 0}):
        with pytest.raises(ValueError):
            IngestSettings("mqtt://127.0.0.1", "postgresql://db/x", **bad)


def test_mqtt_311_keeps_the_session_and_subscribes_plainly_with_one_worker_a_group():
    s = IngestSettings("mqtt://127.0.0.1:1883", "postgresql://db/x", group="city", protocol="3.1.1")
    assert s.topics == ["edge/+/data/+", "edge/+/status", "edge/+/health"]
    settings = s.client_settings()
    assert (settings.protocol, settings.persistent, settings.client_id) == ("3.1.1", True, "ingest-city-0")
    shared = IngestSettings("mqtt://h", "postgresql://db/x", protocol="3.1.1", shared=True, slot=3)
    assert shared.topics[0] == "$share/ingest/edge/+/data/+"  # a broker that shares under 3.1.1
    assert IngestSettings("mqtt://h", "postgresql://db/x", shared=False).topics[0] == "edge/+/data/+"
    with pytest.raises(ValueError, match="one worker a group"):
        IngestSettings("mqtt://h", "postgresql://db/x", protocol="3.1.1", slot=1)
    with pytest.raises(ValueError, match=r"5 or 3\.1\.1"):
        IngestSettings("mqtt://h", "postgresql://db/x", protocol="3.1")


def test_a_packet_id_again_before_its_puback_is_dropped_and_acknowledged_once():
    """NATS sends a message it has no PUBACK for again after its ack_wait, under the same
    packet id: the worker keeps one copy, and acknowledges that id once."""
    from types import SimpleNamespace

    from edge_agent.backbone.ingest import Worker

    w = Worker(IngestSettings("mqtt://h", "postgresql://db/x", protocol="3.1.1"))
    acks: list[int] = []
    w._client = SimpleNamespace(ack=lambda mid, qos: acks.append(mid))
    msg = SimpleNamespace(topic="edge/n/data/air", payload=b"x", mid=7, qos=1)
    w._on_message(None, None, msg)
    w._on_message(None, None, msg)  # the redelivery, before the PUBACK
    group = [w._inbox.get_nowait()]
    assert w._inbox.empty() and w.redelivered == 1
    w._ack(group)
    w._on_message(None, None, msg)  # after the PUBACK the id is the broker's to reuse
    assert acks == [7] and w._inbox.qsize() == 1


def test_a_message_that_classify_cannot_take_is_kept_and_the_receiving_goes_on(monkeypatch, caplog):
    """classify runs in paho's thread, where an exception would end the receiving without a
    word: a bug there makes the message a dead letter (kept, acknowledged after its commit)."""
    from types import SimpleNamespace

    from edge_agent.backbone import ingest

    def broken(message, prefix):
        raise KeyError("a bug")

    w = ingest.Worker(IngestSettings("mqtt://h", "postgresql://db/x"))
    monkeypatch.setattr(ingest, "classify", broken)
    w._on_message(None, None, SimpleNamespace(topic="edge/n/data/air", payload=b"p", mid=3, qos=1))
    r = w._inbox.get_nowait()
    assert isinstance(r, DeadLetter) and r.msg.payload == b"p" and r.msg.mid == 3
    assert r.reason == "could not be classified: KeyError: 'a bug'"
    assert any("event=classify_failed" in rec.getMessage() for rec in caplog.records)


def test_a_group_written_record_by_record_is_acknowledged_whole():
    """Where PostgreSQL refuses a group, write_group writes its records one by one and takes
    each out of the list it was given (so a retry after a lost connection writes only the
    rest): every message of the group is still acknowledged once the writing is done.
    (Found by an attack on 0679fe4, which handed the group itself to write_group: nothing of a
    refused group was acknowledged, and the in-flight window filled.)"""
    import psycopg

    from edge_agent.backbone.ingest import Worker
    from edge_agent.backbone.writer import Counts, Writer

    class Refusing(Writer):
        def __init__(self) -> None:
            super().__init__(conn=None)

        def write(self, records):
            if len(records) > 1 or (records[0].msg.mid == 2 and records[0].reason == "refuse me"):
                raise psycopg.DataError("refused")
            return Counts(dead_letters=len(records))

    class Client:
        def __init__(self) -> None:
            self.acked: list[int] = []

        def ack(self, mid, qos):
            self.acked.append(mid)

    w = Worker(IngestSettings("mqtt://h", "postgresql://db/x"))
    w._writer, w._client = Refusing(), Client()
    group = [DeadLetter(Message("edge/n/health", b"{}", 1.5, mid=m), "refuse me") for m in (1, 2, 3)]
    assert w._commit(group)
    w._ack(group)
    assert sorted(w._client.acked) == [1, 2, 3] and len(group) == 3


def test_a_topic_that_is_not_utf8_is_a_dead_letter_of_its_bytes():
    """paho decodes a topic when asked (``msg.topic``) and raises for bytes that are not UTF-8,
    in its own thread: such a topic is kept, escaped, as a dead letter."""
    from edge_agent.backbone.ingest import Worker

    class Raw:
        payload, mid, qos = b"{}", 5, 1

        @property
        def topic(self) -> str:
            return b"edge/n\xff1/health".decode("utf-8")

    w = Worker(IngestSettings("mqtt://h", "postgresql://db/x"))
    w._on_message(None, None, Raw())
    r = w._inbox.get_nowait()
    assert isinstance(r, DeadLetter) and r.msg.topic == "edge/n\\xff1/health", r


@pytest.mark.parametrize(
    "flags, said",
    [
        (["--ca-file", "{missing}"], "ca_file {missing}: No such file or directory"),
        (["--cert-file", "{missing}", "--key-file", "{missing}"], "No such file or directory"),
        (["--username", "u", "--password-file", "{missing}"], "password_file {missing}: No such file"),
        (["--key-file", "{missing}"], "needs both cert_file and key_file"),
    ],
    ids=["ca", "certificate", "password", "key alone"],
)
def test_ingest_refuses_files_it_cannot_read_before_it_starts(tmp_path, capfd, flags, said):
    """Exit 2 with the file named, before any connection (the database here is nowhere: a
    worker that got as far as connecting would retry it for ever)."""
    from edge_agent.cli import main

    missing = str(tmp_path / "missing.pem")
    argv = ["ingest", "--broker", "mqtts://127.0.0.1:1", "--db", "postgresql://127.0.0.1:1/x"]
    assert main(argv + [f.format(missing=missing) for f in flags]) == 2
    err = capfd.readouterr().err
    assert said.format(missing=missing) in err and "Traceback" not in err


@pytest.mark.parametrize(
    "db, said",
    [
        ("postgresql://u@127.0.0.1:1/x?bogus=1", 'invalid URI query parameter: "bogus"'),
        ("postgresql://u:hunter2@[::1/x", 'IPv6 host address in URI: "the URL"'),
        ("host=127.0.0.1 ===", 'invalid connection option ""'),
    ],
    ids=["query", "ipv6", "keywords"],
)
def test_ingest_refuses_a_database_url_libpq_cannot_read_before_it_starts(capfd, db, said):
    """Exit 2 with libpq's reason (it used to be psycopg's traceback at the first connection),
    and the URL, which may hold a password, not repeated."""
    from edge_agent.cli import main

    assert main(["ingest", "--broker", "mqtt://127.0.0.1:1", "--db", db]) == 2
    err = capfd.readouterr().err
    assert "--db is not a connection string or URL libpq reads" in err and said in err
    assert "Traceback" not in err and "hunter2" not in err


@pytest.mark.parametrize(
    "db, said",
    [
        ("postgresql://u:hunter2@127.0.0.1:1/x?sslmode=foo", 'invalid sslmode value: "foo"'),
        ("postgresql://u:hunter2@127.0.0.1:99999/x", 'invalid port number: "99999"'),
        (
            "host=127.0.0.1 port=1 password=hunter2 target_session_attrs=zz",
            'invalid target_session_attrs value: "zz"',
        ),
    ],
    ids=["sslmode", "port", "session-attrs"],
)
def test_ingest_refuses_a_value_libpq_will_not_take_rather_than_retrying_it(capfd, db, said):
    """A --db that parses but holds a value libpq refuses before it connects was retried for
    ever as db_unavailable; it is a command-line error, at the first connection."""
    from edge_agent.cli import main

    assert main(["ingest", "--broker", "mqtt://127.0.0.1:1", "--db", db]) == 2
    err = capfd.readouterr().err
    assert f"command line: --db: libpq does not take it: {said}" in err
    assert "db_unavailable" not in err and "Traceback" not in err and "hunter2" not in err


def test_a_database_that_is_down_is_still_waited_for(caplog):
    """Only libpq's refusal of a value stops the worker; a refused connection is retried."""
    from edge_agent.backbone.ingest import Worker
    from edge_agent.backbone.settings import IngestSettings

    worker = Worker(IngestSettings(broker="mqtt://127.0.0.1:1", db="postgresql://127.0.0.1:1/x"))
    worker._db_wait = lambda exc: worker.stopping.set()  # one attempt, then stop
    assert worker._open_db() is False


@settings(max_examples=300, deadline=None)
@given(db=st.text(max_size=60) | st.builds(lambda s: "postgresql://" + s, st.text(max_size=40)))
def test_any_database_url_is_taken_or_refused_with_a_config_error(db):
    """Whatever --db holds: libpq reads it, or it is a ConfigError that does not repeat it."""
    from edge_agent.cli.ingest import _check_db
    from edge_agent.errors import ConfigError

    try:
        _check_db(db)
    except ConfigError as exc:
        assert str(exc).startswith("command line: --db is not")
        if len(db) > 12:
            assert db not in str(exc)


def test_a_channels_copy_rows_built_in_bulk_are_the_rows_packed_one_by_one() -> None:
    from edge_agent.backbone import writer

    times = tuple(1_767_225_600_000 + 997 * k for k in range(50))
    ch = wire.ChannelData("t", "°C", 0.01, times, tuple((k * 37) % 500 - 250 for k in range(50)))
    for unsynced in (False, True):
        want = b"".join(
            writer._ROW.pack(5, 8, (t - writer._PG_EPOCH_MS) * 1000, 8, v, 4, 77, -1, 1, unsynced)
            for t, v in zip(ch.times_ms, ch.values())
        )
        assert writer._channel_rows(ch, 77, unsynced) == want
    flagged = wire.ChannelData("t", "°C", 0.01, times[:3], (1, 2, 3), flags=((1, wire.QUALITY_STUCK),))
    assert writer._channel_rows(flagged, 77, False) is None


def test_the_writers_values_are_the_decoders_floats() -> None:
    import random

    from edge_agent.backbone import writer

    rng = random.Random(5)
    for res in (1.0, 0.1, 0.01, 0.001, 0.0001, 0.25, 0.5, 0.05, 2.0, 0.3, 1e-6, 0.007):
        for span in (10, 10_000, 1 << 40, 1 << 55):
            qs = tuple(rng.randint(-span, span) for _ in range(300))
            ch = wire.ChannelData("c", "u", res, tuple(range(300)), qs)
            assert writer.values(ch) == ch.values(), (res, span)


def test_paho_lines_reach_the_log_as_events_and_debug_lines_are_never_formatted(caplog):
    """The worker hands paho a logger, not on_log (which formats each of paho's two debug
    lines a message): below WARNING nothing is formatted, at and above it is an event."""
    from edge_agent.backbone.ingest import _PAHO_LOG, _PahoLines

    class Counted:
        formatted = 0

        def __str__(self) -> str:
            Counted.formatted += 1
            return "props"

    lines = _PahoLines(_PAHO_LOG)
    with caplog.at_level(logging.DEBUG):
        _PAHO_LOG.setLevel(logging.WARNING)
        for _ in range(100):
            lines.log(logging.DEBUG, "Received PUBLISH ... properties=%s", Counted())
        assert Counted.formatted == 0
        lines.log(logging.ERROR, "failed to receive on socket: %s", "reset")
    (rec,) = [r for r in caplog.records if r.name == "edge_agent.backbone.paho"]
    assert rec.getMessage() == "event=mqtt_link_error error='failed to receive on socket: reset'"
    assert rec.levelno == logging.ERROR
