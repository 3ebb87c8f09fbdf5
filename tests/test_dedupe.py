"""Deduplication and gap reports by (node, stream, seq) (`tail` reporting them: integration/test_tail.py)."""

from __future__ import annotations

from edge_agent.wire.dedupe import SeqTracker


def test_tracker_counts_duplicates_and_gaps():
    t = SeqTracker()
    for seq in [0, 1, 1, 2, 5, 6, 6, 6, 9]:
        t.add("n", "air", seq)
    t.add("n", "power", 3)
    air, power = t.report()
    assert air == {
        "node": "n",
        "stream": "air",
        "received": 6,
        "first": 0,
        "last": 9,
        "duplicates": 3,
        "missing": 4,
        "gaps": [[3, 4], [7, 8]],
    }
    assert power["received"] == 1 and power["gaps"] == []
