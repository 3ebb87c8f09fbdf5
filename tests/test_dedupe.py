"""The backbone's tracker (edge_agent/wire/dedupe.py): duplicates by (node, stream, epoch,
seq), gaps per stream and epoch, store losses; the same report whatever order the batches
come in (`tail` reporting them: integration/test_tail.py)."""

from __future__ import annotations

import itertools
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent import wire
from edge_agent.wire.dedupe import SeqRanges, SeqTracker

MIN = 60_000


def batch(seq: int, epoch: int = 0, t0: int = 0, flags: int = 0, version: int = 4) -> wire.Batch:
    ch = wire.ChannelData("temperature", "°C", 0.1, (t0,), (seq,))
    b = wire.Batch("n", "air", seq, t0, (ch,), flags=flags, epoch=epoch if version == 4 else 0)
    if version == 4:
        return b
    return wire.decode(wire.encode_v1(b) if version == 1 else wire.encode(b, version=version))


def test_one_epoch_counts_duplicates_and_gaps():
    t = SeqTracker()
    new = [t.add(batch(seq, t0=seq * MIN)) for seq in [0, 1, 1, 2, 5, 6, 6, 6, 9]]
    assert new == [True, True, False, True, True, True, False, False, True]
    t.add(wire.Batch("n", "power", 3, 0, ()))
    air, power = t.report()
    assert air == {
        "node": "n",
        "stream": "air",
        "received": 6,
        "duplicates": 3,
        "missing": 4,
        "epochs": [
            {
                "epoch": 0,
                "first": 0,
                "last": 9,
                "received": 6,
                "missing": 4,
                "gaps": [[3, 4], [7, 8]],
                "t0_ms": 0,
                "clock_unsynced": False,
            }
        ],
        "store_losses": [],
    }
    assert power["received"] == 1 and power["epochs"][0]["gaps"] == [] and power["store_losses"] == []


def test_versions_1_to_3_decode_with_epoch_0_and_track_as_before():
    reports = []
    for version in (1, 2, 3):
        t = SeqTracker()
        for seq in [4, 5, 5, 8]:
            b = batch(seq, epoch=7, t0=1_000 + seq, version=version)
            assert b.epoch == 0 and b.key == ("n", "air", 0, seq)
            t.add(b)
        reports.append(t.report())
    assert reports[0] == reports[1] == reports[2]
    (r,) = reports[0]
    assert (r["received"], r["duplicates"], r["missing"]) == (3, 1, 2)
    assert r["epochs"][0]["gaps"] == [[6, 7]] and r["store_losses"] == []


def test_seqs_continue_across_starts_and_a_lost_store_is_reported_once():
    """Starts A and B share a store (B continues A's numbers); the store is lost; C starts
    again at 0. C's batches are all new, and C's backlog arriving first changes nothing."""
    a = [batch(s, 0xA, t0=s * MIN) for s in range(10) if s != 4]
    b = [batch(s, 0xB, t0=s * MIN) for s in range(12, 20)]  # 10, 11 not yet seen: A's gap
    c = [batch(s, 0xC, t0=(100 + s) * MIN) for s in range(6)]
    live_first = SeqTracker()
    assert all(live_first.add(x) for x in c + b + a)
    in_order = SeqTracker()
    assert all(in_order.add(x) for x in a + b + c)
    (r,) = in_order.report()
    assert live_first.report() == [r]
    assert [(e["epoch"], e["first"], e["last"], e["gaps"]) for e in r["epochs"]] == [
        (0xA, 0, 9, [[4, 4], [10, 11]]),
        (0xB, 12, 19, []),
        (0xC, 0, 5, []),
    ]
    assert r["store_losses"] == [
        {
            "epoch_before": 0xB,
            "epoch_after": 0xC,
            "last_seq_before": 19,
            "first_seq_after": 0,
            "clock_unsynced": False,
        }
    ]
    assert (r["received"], r["missing"], r["duplicates"]) == (23, 3, 0)
    assert in_order.seen(("n", "air", 0xC, 3)) and not in_order.seen(("n", "air", 0xA, 4))


def test_numbers_that_go_back_only_a_little_are_a_store_loss_too():
    """A WAL deleted after a crash loses the last transactions: the counter goes back a few."""
    t = SeqTracker()
    for s in range(50):
        t.add(batch(s, 1, t0=s * MIN))
    for s in range(47, 60):
        assert t.add(batch(s, 2, t0=(100 + s) * MIN))  # 47..49 again, under a new epoch: new
    (r,) = t.report()
    assert [(x["last_seq_before"], x["first_seq_after"]) for x in r["store_losses"]] == [(49, 47)]
    assert r["duplicates"] == 0 and r["missing"] == 0


def test_an_unsynchronised_clock_orders_by_what_is_known_and_says_so():
    """A Pi without a real-time clock starts at a wrong time until NTP answers. An epoch is
    ordered by its synchronised batches when it has any; one with none is placed by the
    times it has, and the report says the order there is a guess."""
    unsynced = wire.FLAG_CLOCK_UNSYNCED
    t = SeqTracker()
    for s in range(5):
        t.add(batch(s, 1, t0=(1000 + s) * MIN))
    for s in range(5, 10):  # a restart: 1970 until the clock is set, then the real time
        t.add(batch(s, 2, t0=s * MIN if s < 7 else (2000 + s) * MIN, flags=unsynced if s < 7 else 0))
    for s in range(10, 13):  # never synchronised, the clock a little ahead
        t.add(batch(s, 3, t0=(3000 + s) * MIN, flags=unsynced))
    (r,) = t.report()
    assert [(e["epoch"], e["t0_ms"], e["clock_unsynced"]) for e in r["epochs"]] == [
        (1, 1000 * MIN, False),
        (2, 2007 * MIN, False),
        (3, 3010 * MIN, True),
    ]
    assert r["store_losses"] == [] and r["missing"] == 0
    for s in range(3):  # the store lost, and the clock at 1970 again: placed first
        t.add(batch(s, 4, t0=s * MIN, flags=unsynced))
    (r,) = t.report()
    assert [e["epoch"] for e in r["epochs"]] == [4, 1, 2, 3]
    assert [(x["epoch_before"], x["epoch_after"], x["clock_unsynced"]) for x in r["store_losses"]] == [
        (4, 1, True)  # one loss, as it is, but which epochs it lies between is a guess: said so
    ]


def test_ranges_stay_few_over_a_long_run():
    t = SeqTracker()
    for s in range(1_000_000):
        t.add_key("n", "air", 5, s, s)
    ep = t.streams["n", "air"].epochs[5]
    assert ep.seqs.ranges() == [(0, 999_999)] and len(ep.seqs) == 1_000_000
    assert not t.add_key("n", "air", 5, 123_456, 0)
    r = SeqRanges()
    order = list(range(0, 200_000, 2)) + list(range(1, 200_000, 2))  # every hole, then filled
    random.Random(1).shuffle(order)
    assert all(r.add(n) for n in order)
    assert r.ranges() == [(0, 199_999)] and r.holes() == []


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(-20, 20), max_size=80))
def test_ranges_are_the_set_they_hold(numbers):
    r, seen = SeqRanges(), set()
    for n in numbers:
        assert r.add(n) == (n not in seen)
        seen.add(n)
    assert len(r) == len(seen) and all((n in r) == (n in seen) for n in range(-22, 23))
    spans = r.ranges()
    assert sorted(n for lo, hi in spans for n in range(lo, hi + 1)) == sorted(seen)
    assert all(hi + 1 < lo for (_, hi), (lo, _) in itertools.pairwise(spans))  # disjoint, not adjacent


@st.composite
def node_histories(draw):
    """A node's life: starts (each a new epoch) that seal batches; between two starts the
    store may be lost (its counter restarts at or below where it was, and the batches it
    had not sent are gone with it); batches that are never delivered (gaps). Returns the
    delivered batches in the order sealed, the store losses as (epoch before, epoch after,
    last seq before, first seq after) and the missing seqs per epoch, from the truth."""
    epochs = draw(st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=6, unique=True))
    seq, t = draw(st.integers(0, 40)), draw(st.integers(0, 10**12))
    runs: list[tuple[int, list[int], set[int]]] = []  # (epoch, seqs sealed, seqs delivered)
    lineage_of: dict[int, int] = {}
    lineage, losses_at = 0, []
    for epoch in epochs:
        seen = [r for r in runs if r[2]]
        if seen and draw(st.booleans()):  # the store is lost before this start
            lost = draw(st.integers(0, len(seen[-1][1]) - 1))  # unsent batches gone with it
            for s in seen[-1][1][len(seen[-1][1]) - lost :]:
                seen[-1][2].discard(s)
            seq = draw(st.integers(0, max(seen[-1][2])))
            lineage += 1
            losses_at.append(epoch)
        sealed = list(range(seq, seq + draw(st.integers(0, 6))))
        seq += len(sealed)
        delivered = {s for s in sealed[1:-1] if draw(st.booleans())} | set(sealed[:1] + sealed[-1:])
        runs.append((epoch, sealed, delivered))
        lineage_of[epoch] = lineage
    out, t_of = [], {}
    for epoch, sealed, delivered in runs:
        t += draw(st.integers(1, 10**6))
        for s in sealed:
            t += draw(st.integers(1, 10**6))
            t_of[epoch, s] = t
            if s in delivered:
                out.append(batch(s, epoch, t0=t))
    nonempty = [(e, d) for e, _, d in runs if d]
    losses = [
        (a, b, max(da), min(db))
        for (a, da), (b, db) in itertools.pairwise(nonempty)
        if lineage_of[a] != lineage_of[b]
    ]
    missing = {}
    for (a, da), nxt in zip(nonempty, [*nonempty[1:], None]):
        end = min(nxt[1]) if nxt and lineage_of[nxt[0]] == lineage_of[a] else max(da) + 1
        missing[a] = sorted(set(range(min(da), end)) - da)
    return out, losses, missing


@settings(max_examples=300, deadline=None)
@given(history=node_histories(), data=st.data())
def test_any_order_and_any_duplicates_give_the_truth(history, data):
    delivered, losses, missing = history
    again = data.draw(st.lists(st.sampled_from(delivered), max_size=10)) if delivered else []
    arrival = data.draw(st.permutations(delivered + again))
    t = SeqTracker()
    new = [t.add(b) for b in arrival]
    assert sum(new) == len(delivered)  # every batch new once, whichever copy came first
    canonical = SeqTracker()
    for b in delivered:
        canonical.add(b)
    report = t.report()
    assert [dict(r, duplicates=0) for r in report] == canonical.report()
    if not delivered:
        assert report == []
        return
    (r,) = report
    assert r["duplicates"] == len(again)
    got = [
        (x["epoch_before"], x["epoch_after"], x["last_seq_before"], x["first_seq_after"])
        for x in r["store_losses"]
    ]
    assert got == losses  # each store loss once, between the right epochs
    assert {e["epoch"]: [s for a, b in e["gaps"] for s in range(a, b + 1)] for e in r["epochs"]} == missing
    assert r["missing"] == sum(map(len, missing.values()))
