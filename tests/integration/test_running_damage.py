"""Damage to the queue file and its WAL while the agent runs (issue 14): the real
agent on simulated sensors, with and without a broker, its files damaged under it (random
bytes at random offsets, a truncation, a page zeroed). Whatever the damage, the process goes
on and keeps sealing, no sequence number is used twice within an epoch, and no traceback;
damage the node meets is reported (an event, and the health message), and what can be read
of the damaged file is delivered. Everything is bounded by counting events, not by time.

The seeds are drawn from one logged seed (EDGE_AGENT_DAMAGE_SEED replays a run;
EDGE_AGENT_DAMAGE_CASES=a,b the cases of those seeds)."""

from __future__ import annotations

import json
import os
import queue
import random
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from helpers import agent_cmd, copy_queue, kill_agent, stop_agent, wait_for_log
from paho.mqtt.enums import CallbackAPIVersion

from edge_agent import wire

SEED = int(os.environ.get("EDGE_AGENT_DAMAGE_SEED", random.SystemRandom().randrange(1 << 32)))
print(f"test_running_damage: EDGE_AGENT_DAMAGE_SEED={SEED}", file=sys.stderr)
SEEDS = random.Random(SEED).sample(range(1 << 32), 6)
if os.environ.get("EDGE_AGENT_DAMAGE_CASES"):  # one case's seeds, as its test id names them
    SEEDS = [int(s) for s in os.environ["EDGE_AGENT_DAMAGE_CASES"].split(",")]
SEALS_AFTER = 8  # seals the agent must make after the damage


def config(tmp_path: Path, broker_url: str) -> Path:
    cfg = tmp_path / "node.yaml"
    cfg.write_text(f"""\
node: {{id: dmg-node}}
flush_interval: 300ms
health_interval: 1s
clock: {{hold_unsynced: 0s}}  # this machine's clock may report unsynchronised
mqtt: {{broker: "{broker_url}", topic_prefix: dmg, backlog_rate: 1000}}
sensors:
  - {{name: air, type: bme680, interval: 100ms, heater: {{duration: 10ms}}}}
  - {{name: room, type: bme680, address: 0x76, interval: 100ms, heater: {{duration: 10ms}}}}
""")
    return cfg


class Subscriber:
    """Every message on the node's topics, from a loopback broker."""

    def __init__(self, port: int) -> None:
        self.got: queue.Queue = queue.Queue()
        self.messages: list[tuple[str, bytes]] = []
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_connect = lambda cl, u, f, rc, p: cl.subscribe("dmg/#", qos=1)
        self.client.on_message = lambda cl, u, m: self.got.put((m.topic, m.payload))
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def take(self) -> list[tuple[str, bytes]]:
        while not self.got.empty():
            self.messages.append(self.got.get())
        return self.messages

    def keys(self) -> set[tuple[str, int, int]]:
        """(stream, epoch, seq) of every data message received."""
        out = set()
        for topic, payload in self.take():
            if "/data/" in topic:
                b = wire.decode(payload)
                out.add((b.stream, b.epoch, b.seq))
        return out

    def health(self) -> list[dict]:
        return [json.loads(p) for t, p in self.take() if t.endswith("/health")]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def sealed(log: str) -> list[tuple[int, str, int]]:
    """(epoch, stream, seq) of each batch_sealed line, the epoch the start or the last
    reopening named."""
    out, epoch = [], -1
    for line in log.splitlines():
        m = re.search(r"event=(?:start|store_reopened) .*?epoch=([0-9a-f]{8})", line)
        if m:
            epoch = int(m.group(1), 16)
        m = re.search(r"event=batch_sealed stream=(\S+) seq=(\d+)", line)
        if m:
            out.append((epoch, m.group(1), int(m.group(2))))
    return out


def assert_sane(log: str) -> None:
    """No traceback, and no number sealed twice (or going back) within an epoch."""
    assert "Traceback" not in log, log[-6000:]
    last: dict[tuple[int, str], int] = {}
    for epoch, stream, seq in sealed(log):
        assert seq > last.get((epoch, stream), -1), f"{stream} seq {seq} again in epoch {epoch:08x}"
        last[epoch, stream] = seq


def page_size(path: str) -> int:
    with open(path, "rb") as f:
        head = f.read(18)
    size = int.from_bytes(head[16:18], "big") if head[:6] == b"SQLite" else 4096
    return 65536 if size == 1 else (size or 4096)


def damage(q: Path, rnd: random.Random) -> str:
    """One random damage to the queue or its WAL; what it was. (No -shm: the WAL's index is
    in the agent's memory, store_vfs; a truncated -shm under a running agent was a SIGBUS.)"""
    main = str(q)
    target = str(q) + rnd.choice(["", "-wal"])
    if not os.path.exists(target) or os.path.getsize(target) == 0:
        target = main
    size = os.path.getsize(target)
    how = rnd.choice(["bytes", "bytes", "truncate", "zero page"])
    with open(target, "r+b") as f:
        if how == "bytes":
            for _ in range(rnd.randint(1, 4)):
                n = rnd.randint(1, 64)
                f.seek(rnd.randrange(max(1, size - n)))
                f.write(rnd.randbytes(n))
        elif how == "truncate":
            f.truncate(rnd.randrange(size))
        else:
            ps = page_size(main)
            f.seek(ps * rnd.randrange(max(1, size // ps)))
            f.write(bytes(ps))
    return f"{how} in {os.path.basename(target)} of {size} bytes"


def start(tmp_path: Path, cfg: Path) -> tuple[subprocess.Popen, Path]:
    err = tmp_path / "agent.err"
    proc = subprocess.Popen(
        agent_cmd("run", "--simulate", "--config", str(cfg), "--state-dir", str(tmp_path / "state")),
        stderr=open(err, "wb"),
    )
    return proc, err


def count(text: str) -> int:
    return text.count("event=batch_sealed")


def more_seals(proc: subprocess.Popen, err: Path, n: int) -> str:
    """The log once the agent sealed ``n`` batches more than it has now."""
    have = count(err.read_text())
    return wait_for_log(proc, err, lambda t: count(t) >= have + n, timeout=60)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("with_broker", [False, True], ids=["offline", "broker"])
def test_random_damage_in_a_running_node(tmp_path, broker_factory, seed, with_broker):
    rnd = random.Random(seed)
    broker = broker_factory() if with_broker else None
    sub = Subscriber(broker.port) if broker is not None else None
    proc, err = start(tmp_path, config(tmp_path, broker.url if broker else "mqtt://127.0.0.1:9"))
    q = tmp_path / "state" / "queue.sqlite3"
    try:
        before = count(wait_for_log(proc, err, lambda t: "event=ready" in t and count(t) >= 10))
        what = damage(q, rnd)
        after = wait_for_log(proc, err, lambda t: count(t) >= before + 2 * SEALS_AFTER, timeout=60)
        assert proc.poll() is None, what
        assert_sane(after)
        if "event=store_damage_met" in after or "event=store_damage_found" in after:
            reopened = count(wait_for_log(proc, err, lambda t: "event=store_reopened" in t))
            wait_for_log(proc, err, lambda t: count(t) >= reopened + SEALS_AFTER, timeout=60)
        assert stop_agent(proc, err) == 0, f"{what}:\n{err.read_text()[-6000:]}"
        assert_sane(err.read_text())
        # The next start, on what the damage left: ready, sealing, no crash loop.
        (tmp_path / "first.err").write_text(err.read_text())
        proc, err = start(tmp_path, config(tmp_path, broker.url if broker else "mqtt://127.0.0.1:9"))
        wait_for_log(proc, err, lambda t: "event=ready" in t and count(t) >= 4)
        assert stop_agent(proc, err) == 0, f"{what}, restarted:\n{err.read_text()[-6000:]}"
        assert_sane(err.read_text())
    finally:
        kill_agent(proc, err)
        if sub is not None:
            sub.close()


def wal_pages(q: Path) -> dict[int, list[int]]:
    """Each page number in the running agent's WAL, and the file offsets of its frames'
    page images (the frames of the WAL's current generation: its header's salts)."""
    data = Path(str(q) + "-wal").read_bytes()
    out: dict[int, list[int]] = {}
    if len(data) < 32:
        return out
    ps, salts = int.from_bytes(data[8:12], "big"), data[16:24]
    at = 32
    while at + 24 + ps <= len(data) and data[at + 8 : at + 16] == salts:
        out.setdefault(int.from_bytes(data[at : at + 4], "big"), []).append(at + 24)
        at += 24 + ps
    return out


def zero_a_page(q: Path, tmp: Path, table: str = "batches") -> None:
    """One page of ``table`` zeroed wherever the running agent reads it: a leaf in the
    middle of its main file that its WAL holds no newer copy of when there is one, else
    (a page each seal writes, as stream_seq's) in the main file and in each WAL frame of it.
    Found on a copy: the agent holds the queue itself (store_vfs)."""
    db = sqlite3.connect(str(copy_queue(q, tmp / "zero-copy")))
    pages = [
        pg
        for (pg,) in db.execute(
            "SELECT pageno FROM dbstat WHERE name = ? AND pagetype = 'leaf' ORDER BY pageno", (table,)
        )
    ]
    db.close()
    ps = page_size(str(q))
    frames = wal_pages(q)
    settled = [pg for pg in pages if pg not in frames]
    page = settled[len(settled) // 2] if settled else pages[len(pages) // 2]
    assert settled or table != "batches", "a backlog leaf the WAL has no copy of"
    with open(q, "r+b") as f:
        f.seek((page - 1) * ps)
        f.write(bytes(ps))
    with open(str(q) + "-wal", "r+b") as f:
        for at in frames.get(page, []):
            f.seek(at)
            f.write(bytes(ps))


def readable_keys(q: Path, tmp: Path) -> set[tuple[str, int, int]]:
    """(stream, epoch, seq) of every batch SQLite still reads, looked up id by id (in a copy)."""
    db = sqlite3.connect(str(copy_queue(q, tmp / "readable-copy")), timeout=10)
    (top,) = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'batches'").fetchone()
    out = set()
    for i in range(1, top + 1):
        try:
            for (payload,) in db.execute("SELECT payload FROM batches WHERE id = ?", (i,)):
                b = wire.decode(payload)
                out.add((b.stream, b.epoch, b.seq))
        except sqlite3.DatabaseError:
            pass
    db.close()
    return out


def test_damage_the_uplink_meets_is_recovered_reported_and_the_rest_delivered(tmp_path, broker_factory):
    """A backlog sealed offline, a leaf of it zeroed; then the broker comes: the uplink reads
    into the damage, the agent moves the file aside, salvages it, seals under a new epoch,
    says so in its log and its health message, and delivers every batch still readable."""
    broker = broker_factory()
    broker.stop()  # its port, nobody listening: the backlog grows
    proc, err = start(tmp_path, config(tmp_path, broker.url))
    q = tmp_path / "state" / "queue.sqlite3"
    sub = None
    try:
        wait_for_log(proc, err, lambda t: "event=ready" in t and count(t) >= 60, timeout=90)
        # A clean stop checkpoints the backlog into the main file, where the damage goes
        # after the next start (its check behind READY done: the uplink meets the damage).
        assert stop_agent(proc, err) == 0
        (tmp_path / "first.err").write_text(err.read_text())
        proc, err = start(tmp_path, config(tmp_path, broker.url))
        wait_for_log(proc, err, lambda t: "event=ready" in t and count(t) >= 10, timeout=90)
        zero_a_page(q, tmp_path)
        readable = readable_keys(q, tmp_path)
        broker.start()
        sub = Subscriber(broker.port)
        log = wait_for_log(proc, err, lambda t: "event=store_salvaged" in t, timeout=60)
        assert "event=store_damage_met" in log and "event=store_reopened" in log
        salvaged = next(line for line in log.splitlines() if "event=store_salvaged" in line)
        assert int(salvaged.split("unreadable=")[1].split()[0]) >= 1  # the zeroed leaf's, counted
        reopened = count(log)
        wait_for_log(proc, err, lambda t: count(t) >= reopened + SEALS_AFTER, timeout=60)
        got: set = set()
        for _ in range(600):  # until all readable arrived, or the agent stopped sending
            if readable <= (got := sub.keys()):
                break
            more_seals(proc, err, 1)
        assert readable <= got, f"{len(readable - got)} of {len(readable)} readable batches not delivered"
        for _ in range(20):  # a health message after the recovery says so (one a second)
            if health := [h for h in sub.health() if h.get("store", {}).get("recovery")]:
                break
            more_seals(proc, err, 4)
        assert health, sub.health()[-1:]
        assert health[-1]["store"]["epoch"] != f"{sealed(log)[0][0]:08x}"  # sealing under a new one
        assert stop_agent(proc, err) == 0
        assert_sane(err.read_text())
    finally:
        kill_agent(proc, err)
        if sub is not None:
            sub.close()


def test_a_page_each_seal_writes_zeroed_under_the_agent_is_written_whole_again(tmp_path):
    """The page of the streams' next numbers zeroed on the card under the running agent, in
    the main file and in each WAL frame of it, no broker. No other process shares the queue
    (store_vfs), so the agent's connection keeps its own copy of the page and the next seal
    writes it whole again: sealing goes on, no number is used twice, and after a clean stop
    the queue passes its check and the numbers go on at the next start. (A seal that does
    read a damaged page from the card is counted and recovered from: test_store_alarm.py.)"""
    q = tmp_path / "state" / "queue.sqlite3"
    proc, err = start(tmp_path, config(tmp_path, "mqtt://127.0.0.1:9"))
    try:
        wait_for_log(proc, err, lambda t: "event=ready" in t and count(t) >= 10)
        zero_a_page(q, tmp_path, "stream_seq")
        log = more_seals(proc, err, SEALS_AFTER)
        assert "event=store_damage" not in log and "event=batch_unstored" not in log, log[-6000:]
        assert stop_agent(proc, err) == 0
        first = err.read_text()
        assert_sane(first)
        db = sqlite3.connect(str(q))
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        db.close()
        (tmp_path / "first.err").write_text(first)
        proc, err = start(tmp_path, config(tmp_path, "mqtt://127.0.0.1:9"))
        second = wait_for_log(proc, err, lambda t: "event=ready" in t and count(t) >= 4)
        assert "event=store_corrupt" not in second, second[-6000:]
        last = {stream: seq for _, stream, seq in sealed(first)}
        for _, stream, seq in sealed(second):
            assert seq >= last[stream] + 1, f"{stream} seq {seq} again after the restart"
            last[stream] = seq
        assert stop_agent(proc, err) == 0
    finally:
        kill_agent(proc, err)
