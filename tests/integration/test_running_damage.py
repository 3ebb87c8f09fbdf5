"""Damage to the queue file, its WAL and its shm while the agent runs (issue 14): the real
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
from helpers import agent_cmd, kill_agent, stop_agent, wait_for_log
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
    """One random damage to the queue, its WAL or its shm; what it was."""
    main = str(q)
    target = str(q) + rnd.choice(["", "-wal", "-shm"])
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
        if what.startswith("truncate in queue.sqlite3-shm"):
            # SQLite maps the shm into memory: a truncation under a running process is a
            # SIGBUS at its next access, no exception. Known limit: that run ends (systemd
            # restarts it) and the next start, below, must be ready and sealing.
            after = wait_for_log(proc, err, lambda t: proc.poll() is not None or count(t) >= before + 4)
            assert proc.poll() in (None, -7), f"{what}: exit {proc.poll()}\n{after[-6000:]}"
            if proc.poll() is None:
                assert stop_agent(proc, err) == 0, err.read_text()[-6000:]
        else:
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


def zero_a_page(q: Path, table: str = "batches") -> None:
    """The queue checkpointed into its main file, then one page of ``table`` zeroed there
    (a leaf in the middle: the WAL holds no newer copy of it)."""
    db = sqlite3.connect(str(q), timeout=10)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    pages = [
        pg
        for (pg,) in db.execute(
            "SELECT pageno FROM dbstat WHERE name = ? AND pagetype = 'leaf' ORDER BY pageno", (table,)
        )
    ]
    db.close()
    ps = page_size(str(q))
    with open(q, "r+b") as f:
        f.seek((pages[len(pages) // 2] - 1) * ps)
        f.write(bytes(ps))


def readable_keys(q: Path) -> set[tuple[str, int, int]]:
    """(stream, epoch, seq) of every batch SQLite still reads, looked up id by id."""
    db = sqlite3.connect(f"file:{q}?mode=ro", uri=True, timeout=10)
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
        zero_a_page(q)
        readable = readable_keys(q)
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


def test_damage_a_seal_meets_is_counted_and_the_node_seals_on_under_a_new_epoch(tmp_path):
    """The page of the streams' next numbers zeroed, no broker: the next seal meets it. Its
    batches are counted unstored, the file is moved aside and salvaged, and the seals go
    on under a new epoch (the sampler's seal used to end the agent)."""
    proc, err = start(tmp_path, config(tmp_path, "mqtt://127.0.0.1:9"))
    q = tmp_path / "state" / "queue.sqlite3"
    try:
        wait_for_log(proc, err, lambda t: "event=ready" in t and count(t) >= 10)
        zero_a_page(q, "stream_seq")
        log = wait_for_log(proc, err, lambda t: "event=store_reopened" in t)
        assert "event=store_damage_met" in log and " by=sampler " in log, log[-6000:]
        assert "event=batch_unstored" in log  # what that seal had, counted
        log = more_seals(proc, err, SEALS_AFTER)
        epochs = [e for e, _, _ in sealed(log)]
        assert len(set(epochs)) == 2 and epochs[-1] != epochs[0]
        assert stop_agent(proc, err) == 0
        assert_sane(err.read_text())
    finally:
        kill_agent(proc, err)
