"""Once the clock synchronised, this boot's batches stamped before are restamped
RESTAMP_PER_SEAL a seal; until the last of them is, the uplink holds back every batch of an
unsynchronised clock, so none leaves with the times it would have had a seal later."""

from __future__ import annotations

import threading

from test_store_ttl import Thermometer, _sampler, fill, queue
from uplink_node import RecordingClient, make_uplink

from edge_agent import wire
from edge_agent.node.sampler import RESTAMP_PER_SEAL
from edge_agent.node.store import BatchStore


def test_the_sampler_says_while_restamps_remain(tmp_path):
    clock = [10.0 + 400]  # younger than the time to live: none expire
    with BatchStore(str(tmp_path / "q")) as s:
        batch = wire.Batch("n", "air", 0, 0, (wire.ChannelData("t", "C", 0.01, (0,), (2100,), ()),))
        n = 2 * RESTAMP_PER_SEAL + 44
        fill(
            s,
            [(*r[:3], wire.encode(batch), *r[4:]) for r in queue(n, boot="this", start=10.0, unsynced=True)],
        )
        sampler = _sampler(tmp_path, s, clock)
        slot = sampler.slots[0]
        slot.driver = Thermometer(clock)
        states = []
        for _ in range(4):
            sampler.sample(slot)
            sampler.seal()
            states.append((sampler.restamped, sampler.restamping.is_set()))
            clock[0] += 10.0
        assert states == [
            (RESTAMP_PER_SEAL, True),
            (2 * RESTAMP_PER_SEAL, True),
            (n, False),  # the last ones: nothing left to hold
            (n, False),
        ]


def test_the_uplink_holds_unsynced_batches_while_restamps_remain(tmp_path):
    up, path = make_uplink(tmp_path)  # clock.hold_unsynced: 0s, so only the restamps hold
    with BatchStore(path) as s:
        fill(s, queue(3, boot="this", unsynced=True) + queue(2, boot="this"))
    client = RecordingClient()
    w = up.window
    w.restamping = threading.Event()  # the agent's, shared with its sampler
    with BatchStore(path) as store:
        w.connected(store)
        w.restamping.set()
        w.fill(client, store)  # type: ignore[arg-type]
        assert sorted(w.inflight.values()) == [4, 5]  # the synchronised ones only
        assert not w.drained(store, connected=False)  # in flight
        w.restamping.clear()  # the sampler restamped the last of them
        w.next_rescan = 0.0
        w.fill(client, store)  # type: ignore[arg-type]
        assert sorted(w.inflight.values()) == [1, 2, 3, 4, 5]
