"""A flush cycle is one commit: every stream's batch, the drivers' totals and (when due) the
chains' states in one transaction, all or nothing; the card pays one fsync a cycle, not one
a stream (bench/bench_writes.py measures the bytes)."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import textwrap

import pytest

from drivers.base import Reading
from edge_agent import wire
from edge_agent.config import load_config
from edge_agent.errors import DiskFullError
from edge_agent.node.sampler import Sampler
from edge_agent.node.store import DRIVER_STATE, BatchStore

WALL0 = 1_700_000_000.0
STREAMS = ("air", "porch", "attic", "shed")


class Clock:
    def __init__(self) -> None:
        self.t = 100.0


class Scripted:
    """A bme680 reading one temperature a second on the shared clock."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock

    def read(self) -> Reading:
        return Reading(
            t=WALL0 + self.clock.t, mono=self.clock.t, values={"temperature": 20.0 + self.clock.t % 7}
        )

    def close(self) -> None:
        pass


def config(tmp_path, policy: str = "drop_oldest", max_size: str = "64MiB"):
    sensors = "".join(
        f"""
          - name: {name}
            type: bme680
            address: {0x76 + i % 2}
            bus: {i // 2 + 1}
            filters: []
            channels: {{humidity: {{enabled: false}}, pressure: {{enabled: false}}, gas: {{enabled: false}}}}"""
        for i, name in enumerate(STREAMS)
    )
    p = tmp_path / "n.yaml"
    p.write_text(
        textwrap.dedent(f"""\
        node: {{id: group-node}}
        mqtt: {{broker: "mqtt://127.0.0.1:1"}}
        store: {{policy: {policy}, max_size: {max_size}}}
        sensors:""")
        + sensors
        + "\n"
    )
    return dataclasses.replace(load_config(p), state_dir=str(tmp_path))


def sampler(cfg, store: BatchStore, clock: Clock) -> Sampler:
    s = Sampler(
        cfg,
        store,
        lambda c: Scripted(clock),
        clock=lambda: clock.t,
        wall=lambda: WALL0 + clock.t,
        clock_synchronized=lambda: True,
        boot_id="boot",
    )
    for slot in s.slots:
        slot.driver = Scripted(clock)
    return s


def sample(s: Sampler, clock: Clock, seconds: int) -> None:
    for _ in range(seconds):
        clock.t += 1.0
        for slot in s.slots:
            s.sample(slot)


def transactions(store: BatchStore, call) -> list[list[str]]:
    """The statements of each transaction ``call()`` runs on the store."""
    out: list[list[str]] = []
    current: list[str] | None = None

    def trace(sql: str) -> None:
        nonlocal current
        if sql.startswith("BEGIN"):
            current = []
        elif sql in ("COMMIT", "ROLLBACK") and current is not None:
            out.append([*current, sql])
            current = None
        elif current is not None:
            current.append(sql)

    store._db.set_trace_callback(trace)
    try:
        call()
    finally:
        store._db.set_trace_callback(None)
    return out


def test_a_cycle_of_four_streams_is_one_commit(tmp_path):
    clock = Clock()
    with BatchStore(str(tmp_path / "q")) as store:
        s = sampler(config(tmp_path), store, clock)
        for cycle in range(3):
            sample(s, clock, 10)
            txs = transactions(store, s.seal)
            assert len(txs) == 1 and txs[0][-1] == "COMMIT"
            # (the trace repeats a statement for each trigger it runs: count distinct ones)
            inserts = {q for q in txs[0] if q.startswith("INSERT INTO batches")}
            assert len(inserts) == len(STREAMS)
            assert store.commits == cycle + 1
        assert {stream: store.next_seq(stream) for stream in STREAMS} == dict.fromkeys(STREAMS, 3)
        got = {(b.stream, b.seq) for b in store.oldest(100)}
        assert got == {(stream, seq) for stream in STREAMS for seq in range(3)}
        for b in store.oldest(100):
            batch = wire.decode(b.payload)
            assert (batch.stream, batch.seq) == (b.stream, b.seq)
            assert len(batch.channels[0].times_ms) == 10


def test_the_chains_states_ride_in_the_cycles_commit_when_due(tmp_path):
    clock = Clock()
    with BatchStore(str(tmp_path / "q")) as store:
        s = sampler(config(tmp_path), store, clock)
        s.next_state_save = clock.t + 15  # due at the second seal
        sample(s, clock, 10)
        first = transactions(store, s.seal)
        sample(s, clock, 10)
        second = transactions(store, s.seal)
        assert len(first) == len(second) == 1
        assert not any("chain_state" in q for q in first[0])
        assert any("chain_state" in q for q in second[0])
        saved = store._db.execute("SELECT count(*) FROM chain_state WHERE channel != ?", (DRIVER_STATE,))
        assert saved.fetchone()[0] == len(STREAMS)  # one temperature chain per stream
        assert s.next_state_save > clock.t


def test_an_encode_that_fails_stores_nothing_of_the_cycle(tmp_path):
    with BatchStore(str(tmp_path / "q")) as store:
        store.seal_many([("a", lambda q: b"a0"), ("b", lambda q: b"b0")], 1.0)

        def boom(seq: int) -> bytes:
            raise ValueError("cannot encode")

        row = ("a", DRIVER_STATE, "", json.dumps({"energy_wh": 5.0}))
        with pytest.raises(ValueError):
            store.seal_many([("a", lambda q: b"a1"), ("b", boom)], 2.0, states=[row])
        assert store.next_seq("a") == 1 and store.next_seq("b") == 1  # no number used up
        assert [(b.stream, b.seq, b.payload) for b in store.oldest(10)] == [("a", 0, b"a0"), ("b", 0, b"b0")]
        assert store.driver_states() == {}
        assert store.commits == 1
        # and the next cycle goes on from there
        assert store.seal_many([("a", lambda q: b"a%d" % q), ("b", lambda q: b"b%d" % q)], 3.0) == [
            (1, 2),
            (1, 2),
        ]


def test_the_cap_refuses_one_batch_of_a_cycle_and_keeps_the_others(tmp_path):
    with BatchStore(str(tmp_path / "q"), max_size=10, policy="refuse_newest") as store:
        results = store.seal_many(
            [("a", lambda q: b"x" * 4), ("b", lambda q: b"y" * 5), ("c", lambda q: b"z" * 4)], 1.0
        )
        assert results == [(0, 4), (0, 5), (0, 0)]  # the third would pass the cap
        assert store.losses() == {"c": {"refused": 1}}
        assert store.next_seq("c") == 1  # its number is used up: the backbone sees the gap
        assert store.depth() == (2, 9)


def test_a_full_disk_counts_every_stream_of_the_cycle_unstored(tmp_path):
    clock = Clock()
    with BatchStore(str(tmp_path / "q")) as store:
        s = sampler(config(tmp_path), store, clock)
        sample(s, clock, 10)
        assert s.seal() == len(STREAMS)

        def full(*args, **kwargs):
            raise DiskFullError("database or disk is full")

        real = store.seal_many
        store.seal_many = full  # type: ignore[method-assign]
        sample(s, clock, 10)
        assert s.seal() == 0
        assert s.unstored == dict.fromkeys(STREAMS, 1)
        assert store.losses() == {stream: {"unstored": 1} for stream in STREAMS}
        store.seal_many = real  # type: ignore[method-assign]
        sample(s, clock, 10)
        assert s.seal() == len(STREAMS)  # storing resumes with space
        assert {stream: store.next_seq(stream) for stream in STREAMS} == dict.fromkeys(STREAMS, 2)


def test_a_real_full_disk_mid_cycle_rolls_the_whole_cycle_back(tmp_path):
    """SQLite itself out of room (max_page_count) half-way through a cycle: nothing of it is
    kept, numbers included, and the queue is as it was."""
    with BatchStore(str(tmp_path / "q")) as store:
        store.seal_many([("a", lambda q: b"a0"), ("b", lambda q: b"b0")], 1.0)
        pages = store._db.execute("PRAGMA page_count").fetchone()[0]
        store._db.execute(f"PRAGMA max_page_count={pages}")
        big = b"\x00" * 64_000
        with pytest.raises((DiskFullError, sqlite3.OperationalError)):
            store.seal_many([("a", lambda q: b"a1"), ("b", lambda q: big)], 2.0)
        assert store.next_seq("a") == 1 and store.next_seq("b") == 1
        assert store.depth() == (2, 4)
