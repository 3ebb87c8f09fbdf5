import json
import random

from edge_agent import wire
from edge_agent.backbone.fleetsim import Faults, Record, VirtualNode


def _run(
    faults: Faults, seals: int = 50, offline_at: range = range(0)
) -> tuple[Record, list[tuple[str, bytes]]]:
    rec, out = Record(), []
    node = VirtualNode("sim-0001", random.Random(7), rec, faults=faults)
    for k in range(seals):
        sealed = node.seal(1_800_000_000_000 + k * 60_000, connected=k not in offline_at)
        for item in sealed:
            assert (item.stream, item.epoch, item.seq) == wire.decode(item.payload).key[1:]
        out += [(item.topic, item.payload) for item in sealed]
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
    t = rec.totals()
    assert (t["batches"], t["duplicates"], t["gaps"], t["historical"]) == (150, 0, 0, 0)


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


def test_what_a_disconnected_node_seals_is_marked_historical() -> None:
    rec, out = _run(Faults(), seals=10, offline_at=range(3, 6))
    flagged = sorted(
        (wire.decode(p).stream, wire.decode(p).seq)
        for _, p in out
        if wire.decode(p).flags & wire.FLAG_HISTORICAL
    )
    assert flagged == sorted((s, q) for s in ("air", "climate", "power") for q in (4, 5, 6))
    assert rec.totals()["historical"] == 9


def test_records_merge_and_round_trip_through_json() -> None:
    a, _ = _run(Faults(gap=0.1), seals=20)
    b = Record()
    VirtualNode("sim-0002", random.Random(8), b).seal(1_800_000_000_000)
    b.connects, b.lost = 3, 1
    a.merge(b)
    back = Record.from_json(a.to_json())
    assert back.totals() == a.totals() and back.totals()["connects"] == 3
    assert {k: v.__dict__ for k, v in back.streams.items()} == {k: v.__dict__ for k, v in a.streams.items()}


def test_a_lost_connection_sends_what_was_in_flight_again_first_after_a_ramped_backoff() -> None:
    from edge_agent.backbone.fleetsim import Out
    from edge_agent.backbone.fleetsim_run import FleetLoop, FleetSettings

    loop = FleetLoop(FleetSettings("mqtt://127.0.0.1:1", nodes=2, seals=1, ramp=10.0))
    n = loop.nodes[0]
    item = lambda seq: Out(f"edge/{n.node.node_id}/data/air", b"", "air", 7, seq)  # noqa: E731
    link = object()
    n.client, n.state = link, "up"
    n.inflight = {3: item(5), 4: item(6)}
    n.pending.append(item(7))
    loop._lost(n, object())  # another connection's news: nothing changes
    assert n.state == "up" and len(n.inflight) == 2
    loop._lost(n, link)  # type: ignore[arg-type]
    assert [i.seq for i in n.pending] == [5, 6, 7] and not n.inflight and n.client is None
    assert loop.record.of(n.node.node_id, "air", 7).resent == [5, 6]
    assert loop.record.lost == 1 and n.state == "down"
    assert [(what, node) for _, _, what, node in loop.timers] == [("connect", n)]
    # the ramp: attempts one tenth of a second apart, whatever their backoff asked for
    first = loop._ramped(0.0)
    assert [round(loop._ramped(0.0) - first, 6) for _ in range(3)] == [0.1, 0.2, 0.3]


def test_no_broker_is_an_error_naming_it_not_a_hang() -> None:
    import socket

    import pytest

    from edge_agent.backbone.fleetsim_run import FleetSettings, run_fleet

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        url = f"mqtt://127.0.0.1:{s.getsockname()[1]}"
    with pytest.raises(OSError, match=f"no node could connect to {url}"):
        run_fleet(FleetSettings(url, nodes=3, seals=1, first_connect=1.0))
