"""What the ingest tests share: batches from the node's own encoder, a publisher, `edge-agent
ingest` workers as processes (stopped and killed by their pid), and waiting on the database."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import psycopg
from helpers import agent_cmd, terminate, wait_for_log

from edge_agent import wire
from edge_agent.node.mqtt import ClientSettings, client_for_url, connect

# An hour ago, to the second: the worker makes the months around now as partitions.
T0 = (int(time.time()) - 3600) * 1000
PREFIX = "edge"


def make_batch(
    node: str, stream: str, seq: int, *, epoch: int = 0x0BADF00D, n: int = 10, flags: int = 0, t0: int = T0
) -> wire.Batch:
    """A batch of three channels with every kind of content: a lossless one with a quality
    flag, a deadband (hold) with a bound, a swinging door (linear) with a relative bound."""
    start = t0 + seq * n * 1000
    times = tuple(start + i * 1000 for i in range(n))
    return wire.Batch(
        node,
        stream,
        seq,
        start,
        (
            wire.ChannelData(
                "temperature",
                "°C",
                0.01,
                times,
                tuple(2150 + (seq * 7 + i * 3) % 40 for i in range(n)),
                flags=((n // 2, wire.QUALITY_STUCK),),
            ),
            wire.ChannelData(
                "humidity",
                "%",
                0.1,
                times[::3],
                tuple(400 + (seq + i) % 9 for i in range(len(times[::3]))),
                reconstruction="hold",
                bound=0.5,
            ),
            wire.ChannelData(
                "pressure",
                "hPa",
                0.01,
                times[::2],
                tuple(101300 + seq + i for i in range(len(times[::2]))),
                reconstruction="linear",
                bound=0.01,
                bound_relative=True,
            ),
        ),
        flags=flags,
        period_ms=1000,
        epoch=epoch,
    )


def payload(node: str, stream: str, seq: int, **kw) -> bytes:
    return wire.encode(make_batch(node, stream, seq, **kw))


def expected_rows(payloads: list[bytes]) -> list[tuple]:
    """What sample_rows must hold for these payloads, from wire.decode itself."""
    rows = []
    for p in payloads:
        b = wire.decode(p)
        for r in b.rows():
            rows.append(
                (
                    r["node"],
                    r["stream"],
                    r["channel"],
                    r["unit"],
                    round(r["t"] * 1000),
                    r["value"],
                    r.get("quality"),
                    r["reconstruction"],
                    r["bound"],
                    bool(r.get("clock_unsynced")),
                )
            )
    return sorted(rows, key=repr)


def stored_rows(url: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        got = conn.execute(
            "SELECT node, stream, channel, unit, (extract(epoch FROM t) * 1000)::bigint, value, quality,"
            " reconstruction, bound, clock_unsynced FROM sample_rows"
        ).fetchall()
    return sorted(got, key=repr)


class Publisher:
    """A node-like client: QoS 1 publishes, each waited for until the broker acknowledged it."""

    def __init__(
        self, url: str, client_id: str = "test-publisher", settings: ClientSettings | None = None
    ) -> None:
        settings = settings or ClientSettings(client_id)
        self.client, broker = client_for_url(url, settings)
        connect(self.client, broker, settings)
        self.client.loop_start()

    def publish(self, topic: str, data: bytes, wait: bool = True):
        info = self.client.publish(topic, data, qos=1)
        if wait:
            info.wait_for_publish(timeout=30)
            assert info.is_published(), f"no PUBACK for {topic}"
        return info

    def data(self, data: bytes, wait: bool = True):
        b = wire.decode(data)
        return self.publish(wire.data_topic(PREFIX, b.node, b.stream), data, wait)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class Ingest:
    """`edge-agent ingest` workers as processes of the test, each stopped by its pid."""

    def __init__(self, broker_url: str, db_url: str, workdir: Path) -> None:
        self.broker_url, self.db_url, self.workdir = broker_url, db_url, workdir
        self.procs: list[subprocess.Popen] = []

    def start(self, slot: int = 0, *extra: str, wait: bool = True) -> tuple[subprocess.Popen, Path]:
        log = self.workdir / f"ingest-{slot}-{len(self.procs)}.log"
        with open(log, "wb") as f:
            proc = subprocess.Popen(
                agent_cmd(
                    "ingest",
                    "--broker",
                    self.broker_url,
                    "--db",
                    self.db_url,
                    "--slot",
                    str(slot),
                    "--migrate",
                    *extra,
                ),
                stderr=f,
            )
        self.procs.append(proc)
        if wait:
            wait_for_log(proc, log, lambda text: "event=subscribed" in text, timeout=60)
        return proc, log

    def kill(self, proc: subprocess.Popen) -> None:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)

    def stop_all(self) -> None:
        for proc in self.procs:
            terminate(proc, timeout=30)


def query(url: str, sql: str, *args) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql, args or None).fetchall()


def wait_for(url: str, sql: str, done, timeout: float = 90.0, procs: list[subprocess.Popen] = ()):
    """Poll a query until ``done(rows)`` holds; fail with the last rows after ``timeout`` or
    when a worker given in ``procs`` exits."""
    deadline = time.monotonic() + timeout
    while True:
        rows = query(url, sql)
        if done(rows):
            return rows
        for p in procs:
            assert p.poll() is None, f"worker {p.pid} exited with {p.returncode}"
        assert time.monotonic() < deadline, f"still {rows!r} after {timeout:.0f} s: {sql}"
        time.sleep(0.1)


def count(url: str, sql: str) -> int:
    return int(query(url, sql)[0][0])
