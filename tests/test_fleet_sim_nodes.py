import json
import random

from edge_agent import wire
from edge_agent.backbone.fleetsim import Faults, Record, VirtualNode


def _run(faults: Faults, seals: int = 50) -> tuple[Record, list[tuple[str, bytes]]]:
    rec, out = Record(), []
    node = VirtualNode("sim-0001", random.Random(7), rec, faults=faults)
    for k in range(seals):
        out += node.seal(1_800_000_000_000 + k * 60_000)
    return rec, out


def test_payloads_decode_with_the_projects_decoder() -> None:
    rec, out = _run(Faults())
    assert len(out) == 50 * 3
    for topic, payload in out:
        b = wire.decode(payload)
        assert wire.parse_data_topic(topic) == (b.node, b.stream)
        assert all(len(c.times_ms) == 6 for c in b.channels)
    seqs = sorted(wire.decode(p).seq for t, p in out if t.endswith("/air"))
    assert seqs == list(range(1, 51))
    assert rec.totals() == {"batches": 150, "duplicates": 0, "gaps": 0, "historical": 0}


def test_faults_are_recorded_as_sent() -> None:
    rec, out = _run(Faults(duplicate=0.2, gap=0.1, restart=0.05, offline=0.1), seals=200)
    t = rec.totals()
    assert t["duplicates"] > 0 and t["gaps"] > 0 and len({e for _, _, e in rec.streams}) > 1
    assert len(out) == t["batches"] + t["duplicates"]
    keys = [wire.decode(p).key for _, p in out]
    assert len(keys) - len(set(keys)) == t["duplicates"]
    for (_node, _stream, _epoch), r in rec.streams.items():
        assert not set(r.sent) & set(r.gaps)
    hist = sum(1 for _, p in out if wire.decode(p).flags & wire.FLAG_HISTORICAL)
    assert hist >= t["historical"]
    json.loads(rec.to_json())
