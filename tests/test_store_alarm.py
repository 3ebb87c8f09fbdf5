"""Damage a running connection meets goes to the agent's store (store_alarm), and the one
that met it lets go instead of dying: the deleter, the uplink, the sampler's seal
(tests/integration/test_running_damage.py runs them in the real agent)."""

from __future__ import annotations

import logging
import sqlite3

import pytest

from edge_agent.errors import DiskFullError
from edge_agent.node import store_alarm
from edge_agent.node.delivery import Deleter
from edge_agent.node.store import BatchStore


def corrupt(msg: str = "database disk image is malformed") -> sqlite3.DatabaseError:
    exc = sqlite3.DatabaseError(msg)
    exc.sqlite_errorcode = sqlite3.SQLITE_CORRUPT  # type: ignore[attr-defined]
    return exc


@pytest.mark.parametrize(
    "exc, damage",
    [
        (corrupt(), True),
        (sqlite3.DatabaseError("file is not a database"), True),
        (sqlite3.OperationalError("Could not decode to UTF-8 column 'stream' with text 'a\ufffd'"), True),
        (UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"), True),
        (sqlite3.IntegrityError("UNIQUE constraint failed: batches.stream, batches.seq"), True),
        (sqlite3.OperationalError("database is locked"), False),
        (sqlite3.OperationalError("disk I/O error"), False),
        (DiskFullError("database or disk is full"), False),
        (ValueError("no store's"), False),
    ],
)
def test_what_is_damage(exc, damage):
    assert store_alarm.is_damage(exc) is damage


def test_damage_met_becomes_the_agents_stores_damage_and_only_once_its_own(tmp_path, caplog):
    path = str(tmp_path / "q.sqlite3")
    store = BatchStore(path, recover=True)
    try:
        bg = store.background
        assert bg is not None and bg.damage is None
        assert not store_alarm.met(path, "uplink", sqlite3.OperationalError("database is locked"))
        assert bg.damage is None
        with caplog.at_level(logging.ERROR, logger="edge_agent.store"):
            assert store_alarm.met(path, "uplink", corrupt())
            assert store_alarm.met(path, "uplink-delete", corrupt("second"))
        assert bg.damage == "uplink met damage: database disk image is malformed"
        assert caplog.text.count("event=store_damage_met") == 2 and "recovery=started" in caplog.text
    finally:
        store.close()
    # closed: nobody recovers it any more; damage is logged, and the caller keeps it
    with caplog.at_level(logging.ERROR, logger="edge_agent.store"):
        assert not store_alarm.met(path, "uplink", corrupt())
    assert "recovery=none" in caplog.text
    with pytest.raises(sqlite3.DatabaseError):
        with store_alarm.guard(path, "sampler"):
            raise corrupt()


def test_a_seal_that_meets_damage_counts_and_one_on_a_full_disk_counts_in_the_store(tmp_path):
    path = str(tmp_path / "q.sqlite3")
    store = BatchStore(path, recover=True)
    try:
        assert store_alarm.unstored(store, "sampler", DiskFullError("full")) == store.count_unstored
        assert store_alarm.unstored(store, "sampler", corrupt())("air") is None
        assert store.background is not None and store.background.damage is not None
        with pytest.raises(sqlite3.OperationalError):
            store_alarm.unstored(store, "sampler", sqlite3.OperationalError("database is locked"))
    finally:
        store.close()


def test_the_deleter_lives_through_damage_and_tells_the_agents_store(tmp_path, monkeypatch):
    path = str(tmp_path / "q.sqlite3")
    owner = BatchStore(path, recover=True)
    calls = []

    def delete_many(self, ids):
        calls.append(list(ids))
        raise corrupt()

    monkeypatch.setattr(BatchStore, "delete_many", delete_many)
    monkeypatch.setattr(Deleter, "RETRY", 0.01)
    deleter = Deleter(path)
    deleter.start()
    try:
        deleter.requests.put([1, 2])
        assert owner.background is not None
        while owner.background.damage is None:
            assert deleter.is_alive()
            deleter.join(0.01)
        assert deleter.is_alive()  # retrying until the agent stops the uplink for the recovery
    finally:
        assert deleter.finish(5.0)
        owner.close()
    assert calls[0] == [1, 2] and deleter.done.empty()


def test_a_wal_truncated_under_a_running_store_is_damage(tmp_path):
    """The WAL's index is in the agent's memory (store_vfs): a WAL cut shorter under it gives
    SQLITE_IOERR_SHORT_READ at the next read of a frame past the cut, damage to recover from,
    not an I/O error of the moment that ends the uplink thread."""
    import os

    from edge_agent.node.store import BatchStore

    q = str(tmp_path / "q")
    with BatchStore(q, recover=True) as sampler, BatchStore(q) as uplink:
        for _ in range(200):
            sampler.seal("a", lambda seq: os.urandom(80), 1.0)
        os.truncate(q + "-wal", 5000)
        with pytest.raises(sqlite3.OperationalError) as exc:
            uplink.oldest(500)
        assert store_alarm.is_damage(exc.value)
