"""Acknowledged deletes ride in the sampler's next seal (store_handoff): one commit a cycle
for a live link, not two; a hand-over that is not taken in time, or that fails, is deleted
by the deleter itself; and rows waiting to be deleted are never sent again."""

from __future__ import annotations

import threading
import time

from uplink_node import RecordingClient, make_uplink

from edge_agent.errors import DiskFullError
from edge_agent.node import store_handoff
from edge_agent.node.store import BatchStore
from edge_agent.node.store_handoff import HANDOFF_MAX, Handoff


def seal(store: BatchStore, n: int, stream: str = "air") -> list[int]:
    for i in range(n):
        store.seal(stream, lambda q, i=i: b"p%d" % i, float(i))
    return [b.id for b in store.oldest(10_000)]


def give_in_thread(path: str, ids: list[int]) -> tuple[threading.Thread, list[int]]:
    """The uplink's deleter: its own connection, in its own thread."""
    out: list[int] = []

    def run() -> None:
        with BatchStore(path) as deleter:
            out.append(deleter.delete_many(ids))

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, out


def wait_until_waiting(handoff: Handoff, n: int = 1) -> None:
    """Until ``n`` hand-overs wait (polled: nothing notifies a hand-over's arrival)."""
    for _ in range(3000):
        with handoff._cond:
            if len(handoff._waiting) >= n:
                return
        time.sleep(0.01)
    raise AssertionError("the deleter never handed its rows over")


def test_a_few_deletes_go_with_the_next_seal_in_its_one_commit(tmp_path):
    path = str(tmp_path / "q")
    with BatchStore(path) as sampler:
        sampler.take_deletes(wait=60.0)
        ids = seal(sampler, 3)
        commits = sampler.commits
        t, out = give_in_thread(path, ids[:2])
        wait_until_waiting(sampler._handoff)  # type: ignore[arg-type]
        assert sampler.depth()[0] == 3  # nothing deleted before the seal
        statements: list[str] = []
        sampler._db.set_trace_callback(statements.append)
        sampler.seal_many([("air", lambda q: b"next")], 10.0)
        sampler._db.set_trace_callback(None)
        t.join(30)
        assert out == [2]
        assert sampler.commits == commits + 1  # the seal's one commit carried them
        assert [q for q in statements if q.startswith("BEGIN")] == ["BEGIN IMMEDIATE"]
        assert [b.id for b in sampler.oldest(10)] == [ids[2], ids[2] + 1]


def test_a_hand_over_not_taken_in_time_is_deleted_by_the_deleter(tmp_path):
    path = str(tmp_path / "q")
    with BatchStore(path) as sampler, BatchStore(path) as deleter:
        sampler.take_deletes(wait=0.05)  # no seal comes
        ids = seal(sampler, 2)
        assert deleter.delete_many(ids) == 2
        assert sampler.depth() == (0, 0)
        assert sampler._handoff is not None and sampler._handoff._waiting == []


def test_a_backlog_is_deleted_by_the_deleter_without_waiting(tmp_path):
    path = str(tmp_path / "q")
    with BatchStore(path) as sampler, BatchStore(path) as deleter:
        sampler.take_deletes(wait=3600.0)  # would hang the test if it waited
        ids = seal(sampler, HANDOFF_MAX + 1)
        assert deleter.delete_many(ids) == HANDOFF_MAX + 1
        assert sampler.depth() == (0, 0)


def test_a_seal_that_fails_hands_the_deletes_back(tmp_path):
    path = str(tmp_path / "q")
    with BatchStore(path) as sampler:
        sampler.take_deletes(wait=60.0)
        ids = seal(sampler, 2)
        t, out = give_in_thread(path, ids)
        wait_until_waiting(sampler._handoff)  # type: ignore[arg-type]

        def full(seq: int) -> bytes:
            raise DiskFullError("database or disk is full")

        try:
            sampler.seal_many([("air", full)], 10.0)
        except DiskFullError:
            pass
        t.join(30)
        assert out == [2]  # the deleter did them itself, after the seal failed
        assert sampler.depth() == (0, 0)


def test_closing_the_sampler_store_releases_a_waiting_deleter(tmp_path):
    path = str(tmp_path / "q")
    sampler = BatchStore(path)
    sampler.take_deletes(wait=3600.0)
    ids = seal(sampler, 1)
    t, out = give_in_thread(path, ids)
    wait_until_waiting(sampler._handoff)  # type: ignore[arg-type]
    sampler.take_deletes(None)  # the agent, once sealing is over
    t.join(30)
    assert out == [1] and store_handoff.lookup(path) is None
    sampler.close()


def test_a_store_closed_leaves_no_hand_over_behind(tmp_path):
    path = str(tmp_path / "q")
    with BatchStore(path) as sampler:
        sampler.take_deletes(wait=60.0)
        assert store_handoff.lookup(path) is sampler._handoff
    assert store_handoff.lookup(path) is None
    with BatchStore(path) as other:  # a later opening deletes at once
        ids = seal(other, 1)
        assert other.delete_many(ids) == 1


def test_rows_being_deleted_are_not_sent_again_after_a_rescan(tmp_path):
    """The rescan goes back for rows passed over; the rows it skips there (in flight, being
    deleted, as a handed-over delete is until the next seal) were read again from the
    cursor's reset position at the next turn and sent twice."""
    up, path = make_uplink(tmp_path)
    with BatchStore(path) as s:
        ids = seal(s, 6)
    w = up.window
    client = RecordingClient()
    with BatchStore(path) as store:
        w.connected(store)
        w.fill(client, store)  # type: ignore[arg-type]
        assert len(client.sent) == 6
        w.deleting = set(ids)  # acknowledged, handed over, not yet deleted
        w.inflight.clear()
        w.next_rescan = 0.0  # a rescan now
        w.fill(client, store)  # type: ignore[arg-type]
        w.fill(client, store)  # type: ignore[arg-type]  # and the turn after it
        assert len(client.sent) == 6
        with BatchStore(path) as other:
            seal(other, 1)
        w.fill(client, store)  # type: ignore[arg-type]
        assert len(client.sent) == 7  # a new batch still goes


def test_a_reload_to_another_flush_interval_waits_as_long_as_its_seals(tmp_path):
    """The hand-over waits two flush intervals for a seal: a SIGHUP from 1 s to 30 s seals
    made every hand-over wait out 3 s and the deleter commit alone; the reload renews it."""
    from edge_agent.config import load_config
    from edge_agent.node.agent import Agent

    text = (
        "node: {{id: handoff-node}}\nflush_interval: {flush}\nstate_dir: {state}\n"
        'mqtt: {{broker: "mqtt://127.0.0.1:9"}}\n'
        "sensors:\n  - {{name: air, type: bme680, interval: 1s}}\n"
    )
    path = tmp_path / "node.yaml"
    path.write_text(text.format(flush="1s", state=tmp_path / "state"))
    agent = Agent(load_config(path), simulate=True, config_path=str(path))
    try:
        agent._hand_over()
        assert store_handoff.lookup(agent.store.path).wait == 3.0
        path.write_text(text.format(flush="30s", state=tmp_path / "state"))
        agent._reload()
        assert agent.cfg.flush_interval == 30.0 and agent.reloads == 1
        assert store_handoff.lookup(agent.store.path).wait == 61.0
    finally:
        agent.stop_event.set()
        agent.run()
