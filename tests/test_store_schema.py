"""Damage to the text SQLite keeps the queue's schema in (sqlite_master): text that still
parses but defines something else (a byte that ends a comment's line, so the comment takes
the next column with it) passes every integrity check, and its first read of the lost
column ended every start (CI, test_running_damage seed 1039558989: chain_state without
``state``). The opening compares what SQLite made of the text with the queue's own schema,
and a file that differs is recovered from like any damaged one: moved aside, its batches
salvaged, the agent started."""

from __future__ import annotations

import sqlite3

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_agent.node import store_check, store_file, store_salvage
from edge_agent.node.store import BatchStore

SCHEMA = store_file._SCHEMA + store_salvage.SALVAGE_SCHEMA


def _filled(path: str, n: int = 6) -> None:
    with BatchStore(path) as s:
        for i in range(n):
            s.seal(f"s{i % 2}", lambda seq, i=i: b"payload-%d" % i, float(i))
        s.save_chain_states([("s0", "__driver__", '["Wh", []]', '{"total": 12.5}')], "b", 0.0)


def _rewrite(path: str, name: str, sql: bytes) -> None:
    """The schema text of object ``name`` replaced, as damage to its page would leave it."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA writable_schema=ON")
    db.execute("UPDATE sqlite_master SET sql = CAST(? AS TEXT) WHERE name = ?", (sql, name))
    db.execute("PRAGMA writable_schema=OFF")
    db.close()


def _sql(path: str, name: str) -> bytes:
    db = sqlite3.connect(path)
    db.text_factory = bytes
    (sql,) = db.execute("SELECT sql FROM sqlite_master WHERE name = ?", (name,)).fetchone()
    db.close()
    return sql


def _works(s: BatchStore) -> None:
    """What a start reads and writes, all of it."""
    s.driver_states()
    s.chain_states("b", 0.0)
    s.seal("s0", lambda seq: b"after", 9.0)
    s.save_chain_states([("s0", "__driver__", '["Wh", []]', "{}")], None, 0.0)
    assert s.oldest(100)[-1].payload == b"after"
    s.depth()


def test_a_column_a_comment_swallowed_is_damage_recovered_from(tmp_path):
    q = str(tmp_path / "queue.sqlite3")
    _filled(q)
    sql = _sql(q, "chain_state")
    damaged = sql.replace(b"belongs to\n", b"belongs t\x8fJ", 1)  # the bytes CI's damage wrote
    assert damaged != sql
    _rewrite(q, "chain_state", damaged)
    db = sqlite3.connect(q)  # SQLite itself takes it: no column state, and no error
    assert "state" not in [c[1] for c in db.execute("PRAGMA table_info(chain_state)")]
    assert db.execute("PRAGMA quick_check").fetchone()[0] == "ok"
    db.close()
    s = BatchStore(q, recover=True)
    try:
        assert s.recovery is not None
        assert "chain_state: its columns are (stream, channel, spec, boot_id, mono)" in s.recovery.error
        assert s.background is not None and s.background.finish_salvage(60)
        assert s.recovery.salvaged == 6 and len(s.oldest(100)) == 6
        _works(s)
    finally:
        s.close()
    with BatchStore(q, recover=True) as s:  # and the next start finds a whole queue
        assert s.recovery is None and len(s.oldest(100)) == 7


def test_a_whole_schema_and_an_older_layout_are_no_damage(tmp_path):
    q = str(tmp_path / "queue.sqlite3")
    _filled(q)
    db = sqlite3.connect(q)
    assert store_check.schema_problem(db, SCHEMA) is None
    db.close()
    legacy = store_file._SCHEMA.replace(
        "sealed_mono REAL                    --", "sealed_mono REAL, UNIQUE (stream, seq) --", 1
    )
    assert legacy != store_file._SCHEMA
    old = sqlite3.connect(str(tmp_path / "v2.sqlite3"))
    old.executescript(legacy)
    assert store_check.schema_problem(old, SCHEMA) is None  # the same columns, an index more
    old.close()


def test_a_trigger_that_counts_otherwise_is_damage(tmp_path):
    q = str(tmp_path / "queue.sqlite3")
    _filled(q)
    _rewrite(q, "batches_ins", _sql(q, "batches_ins").replace(b"batches + 1", b"batches + 7"))
    db = sqlite3.connect(q)
    assert store_check.schema_problem(db, SCHEMA) == "batches_ins: its definition is not the queue's"
    db.close()


NAMES = ["batches", "stream_seq", "losses", "chain_state", "open_marker", "queue_stats", "batches_ins"]
NAMES += ["batches_del", "batches_upd", "batches_unsynced"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    name=st.sampled_from(NAMES),
    hits=st.lists(
        st.tuples(st.floats(0, 1, exclude_max=True), st.binary(min_size=1, max_size=8)),
        min_size=1,
        max_size=3,
    ),
)
def test_any_damage_to_the_schemas_text_starts(tmp_path_factory, name, hits):
    """Bytes overwritten anywhere in one object's text: the store opens (as it was, or
    recovered), and everything a start does works; never an exception."""
    q = str(tmp_path_factory.mktemp("q") / "queue.sqlite3")
    _filled(q)
    sql = bytearray(_sql(q, name))
    for where, data in hits:
        at = int(where * len(sql))
        sql[at : at + len(data)] = data
    _rewrite(q, name, bytes(sql))
    s = BatchStore(q, recover=True)
    try:
        if s.recovery is not None:
            assert s.background is not None and s.background.finish_salvage(60)
            if name != "batches":  # the batches' own text is theirs to lose; no other's is
                assert s.recovery.salvaged == 6, s.recovery
        else:  # taken as it is: then what SQLite made of it is the queue's own
            assert store_check.schema_problem(s._db, SCHEMA) is None
        _works(s)
    finally:
        s.close()
    with BatchStore(q, recover=True) as s:
        _works(s)


def test_a_column_that_lost_its_not_null_is_named(tmp_path):
    q = str(tmp_path / "queue.sqlite3")
    _filled(q)
    _rewrite(
        q, "stream_seq", _sql(q, "stream_seq").replace(b"next_seq INTEGER NOT NULL", b"next_seq INTEGER")
    )
    db = sqlite3.connect(q)
    assert store_check.schema_problem(db, SCHEMA) == (
        "stream_seq: column next_seq is INTEGER NULL, where the queue's is INTEGER NOT NULL"
    )
    db.close()
