"""The SQLite queue: WAL + FULL sync, one transaction per seal, sequence numbers that survive restarts."""

from __future__ import annotations

import os
import stat

import pytest

from edge_agent.node.store import BatchStore


def test_pragmas_and_file_mode(tmp_path):
    path = str(tmp_path / "state" / "q.sqlite3")
    with BatchStore(path) as s:
        assert s._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert s._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(tmp_path / "state").st_mode) == 0o700


def test_sequence_numbers_survive_reopen(tmp_path):
    path = str(tmp_path / "q.sqlite3")
    with BatchStore(path) as s:
        assert [s.seal("air", lambda q: b"a%d" % q, 0.0)[0] for _ in range(3)] == [0, 1, 2]
        assert s.seal("power", lambda q: b"p", 0.0)[0] == 0
        for b in s.oldest(10):
            s.delete_many([b.id])
        assert s.depth() == (0, 0)
    with BatchStore(path) as s:
        assert s.seal("air", lambda q: b"a%d" % q, 0.0) == (3, 2)
        assert s.next_seq("power") == 1


def test_failed_encode_stores_nothing_and_keeps_the_sequence(tmp_path):
    with BatchStore(str(tmp_path / "q.sqlite3")) as s:
        s.seal("air", lambda q: b"x", 0.0)

        def boom(seq):
            raise ValueError("encoder failed")

        with pytest.raises(ValueError):
            s.seal("air", boom, 0.0)
        assert s.depth() == (1, 1)
        assert s.seal("air", lambda q: b"y", 0.0)[0] == 1


def test_oldest_first_skipping_in_flight(tmp_path):
    with BatchStore(str(tmp_path / "q.sqlite3")) as s:
        for i in range(5):
            s.seal("air", lambda q: bytes([q]), float(i))
        rows = s.oldest(3)
        assert [r.seq for r in rows] == [0, 1, 2]
        assert [r.seq for r in s.oldest(3, skip={rows[0].id, rows[1].id})] == [2, 3, 4]
        assert s.delete_many([rows[0].id]) == 1 and s.delete_many([rows[0].id]) == 0
        assert s.depth() == (4, 4)


def test_two_connections_see_each_other(tmp_path):
    path = str(tmp_path / "q.sqlite3")
    with BatchStore(path) as writer, BatchStore(path) as reader:
        writer.seal("air", lambda q: b"abc", 0.0)
        (row,) = reader.oldest(5)
        assert row.payload == b"abc"
        reader.delete_many([row.id])
        assert writer.depth() == (0, 0)


def test_unopenable_path_is_a_store_error(tmp_path):
    from edge_agent.errors import StoreError

    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreError, match="cannot open the queue"):
        BatchStore(str(blocker / "q.sqlite3"))


def test_the_transaction_rolls_back_on_any_exception_and_the_store_goes_on(tmp_path):
    with BatchStore(str(tmp_path / "q.sqlite3")) as s:
        s.seal("air", lambda q: b"kept", 0.0)
        with pytest.raises(KeyboardInterrupt), s._transaction() as db:
            db.execute("DELETE FROM batches")
            raise KeyboardInterrupt
        assert not s._db.in_transaction and s.depth() == (1, 4)
        assert s.seal("air", lambda q: b"next", 0.0) == (1, 4)


def test_a_full_disk_is_a_disk_full_error_and_nothing_of_the_transaction_stays(tmp_path):
    import sqlite3

    from edge_agent.errors import DiskFullError, StoreError

    with BatchStore(str(tmp_path / "q.sqlite3")) as s:
        s.seal("air", lambda q: b"x", 0.0)
        pages = s._db.execute("PRAGMA page_count").fetchone()[0]
        s._db.execute(f"PRAGMA max_page_count={pages}")  # the "disk" is full now
        with pytest.raises(DiskFullError, match="full") as exc:
            s.seal("air", lambda q: b"y" * 100_000, 0.0)
        assert isinstance(exc.value, sqlite3.OperationalError) and isinstance(exc.value, StoreError)
        assert not s._db.in_transaction and s.depth() == (1, 1) and s.next_seq("air") == 1
        s._db.execute("PRAGMA max_page_count=1000000")  # space returns
        assert s.seal("air", lambda q: b"z", 0.0) == (1, 1)


def test_restamping_hands_the_payload_to_the_caller_and_keeps_it_opaque(tmp_path):
    with BatchStore(str(tmp_path / "q.sqlite3")) as s:
        s.seal(
            "air", lambda q: b"not a wire payload", 100.0, clock_unsynced=True, boot_id="A", wall_offset_ms=10
        )
        s.seal("air", lambda q: b"other boot", 100.0, clock_unsynced=True, boot_id="B", wall_offset_ms=10)
        seen = []

        def restamp(payload, shift_ms):
            seen.append((payload, shift_ms))
            return payload.upper()

        assert s.restamp_unsynced("A", 5_010, restamp) == 1
        assert seen == [(b"not a wire payload", 5_000)]
        assert [r.payload for r in s.oldest(10)] == [b"NOT A WIRE PAYLOAD", b"other boot"]
        assert s.oldest(10, hold_unsynced=True)[0].payload == b"NOT A WIRE PAYLOAD"  # no longer unsynced
        assert s.restamp_unsynced("A", 6_000, restamp) == 0


def test_the_store_does_not_know_the_wire_format():
    import ast
    import pathlib

    import edge_agent.node.store as store

    for path in pathlib.Path(store.__file__).parent.glob("store*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                names = [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            assert not any(n.startswith("edge_agent.wire") for n in names), (path.name, names)


def test_a_state_directory_others_may_write_to_is_refused_not_changed(tmp_path):
    """Anyone who can write to the queue's directory can replace the queue or its WAL: such a
    directory is refused with what to do, and left as it is (it may be shared, like /tmp)."""
    import stat

    from edge_agent.errors import StoreError
    from edge_agent.node.store_file import ensure_private_dir

    made = tmp_path / "new" / "state"
    ensure_private_dir(str(made))
    assert stat.S_IMODE(made.stat().st_mode) == 0o700
    for mode, who in ((0o777, "its group and every user"), (0o770, "its group"), (0o703, "every user")):
        shared = tmp_path / f"shared{mode:o}"
        shared.mkdir()
        shared.chmod(mode)
        with pytest.raises(StoreError, match=f"writable by {who} \\(mode 0{mode:o}\\).*chmod go-w"):
            ensure_private_dir(str(shared))
        assert stat.S_IMODE(shared.stat().st_mode) == mode
        with pytest.raises(StoreError, match="writable by"):
            BatchStore(str(shared / "q.sqlite3"))
        assert not (shared / "q.sqlite3").exists()
    readable = tmp_path / "readable"
    readable.mkdir()
    readable.chmod(0o755)  # systemd's StateDirectory default: others may read, not write
    BatchStore(str(readable / "q.sqlite3")).close()
