"""The ingest's figures, side by side in one run, on a real Mosquitto and PostgreSQL:

1. throughput: a backlog of fleet-sim batches queued in the broker for two groups, then
   drained by 1 worker (group 1) and by 2 workers (group 2), each into its own database;
   then the same rows (samples and batches) written back by one bare binary ``COPY`` into
   the same tables: samples/s of each, and the workers' ratio to the bare COPY;
2. seal-to-row latency: a fleet of --nodes stamping each seal with the wall clock, every
   --interval s, into 2 workers: p50 and p99 of (row committed - the batch's newest point).

    .venv/bin/python bench/bench_ingest.py                    # 1,000 nodes
    .venv/bin/python bench/bench_ingest.py --nodes 10000 --interval 30 --seals 3
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path[:0] = [
    str(Path(__file__).resolve().parent.parent / "tests"),
    str(Path(__file__).resolve().parent.parent),
]

import psycopg  # noqa: E402
from helpers import Broker, agent_cmd, terminate  # noqa: E402
from pg import Postgres, require_bin_dir  # noqa: E402

from edge_agent.backbone.fleetsim_run import FleetSettings, run_fleet  # noqa: E402

TABLES = {
    "batches": "stream_id, epoch, seq, t0, t_last, period_ms, flags, version, payload_bytes, samples, "
    "received, last_received, received_count",
    "samples": "t, value, channel_id, quality, clock_unsynced",
}


WORKER_ARGS: list[str] = []


class Workers:
    def __init__(self, broker: Broker, work: Path) -> None:
        self.broker, self.work, self.procs = broker, work, []

    def start(self, db: str, group: str, n: int) -> None:
        """Slots 0..n-1 of ``group``, started together (one that started first would drain
        alone while the next imports), until each is subscribed."""
        started = []
        for slot in range(n):
            log = self.work / f"ingest-{group}-{slot}-{len(self.procs)}.log"
            with open(log, "wb") as f:
                cmd = [
                    "ingest",
                    "--broker",
                    self.broker.url,
                    "--db",
                    db,
                    "--group",
                    group,
                    "--slot",
                    str(slot),
                ]
                self.procs.append(subprocess.Popen(agent_cmd(*cmd, "--migrate", *WORKER_ARGS), stderr=f))
            started.append((self.procs[-1], log))
        for proc, log in started:
            while b"event=subscribed" not in log.read_bytes():
                assert proc.poll() is None, log.read_text()
                time.sleep(0.05)

    def stop(self) -> None:
        for p in self.procs:
            terminate(p, timeout=30)
        self.procs.clear()


def stored(db: str) -> tuple[int, int]:
    with psycopg.connect(db) as conn:
        b, s = conn.execute("SELECT count(*), coalesce(sum(samples), 0) FROM batches").fetchone()
    return int(b), int(s)


def drain(workers: Workers, db: str, group: str, n: int, want: int) -> float:
    """Start ``n`` workers of ``group`` on the queued backlog; samples/s from the first
    message a worker took (``received``) to the last commit (``stored``): not their start."""
    workers.start(db, group, n)
    while stored(db)[0] < want:
        time.sleep(0.02)
    workers.stop()
    with psycopg.connect(db) as conn:
        took = conn.execute("SELECT extract(epoch FROM max(stored) - min(received)) FROM batches").fetchone()[
            0
        ]
    return stored(db)[1] / float(took)


def bare_copy(db: str) -> float:
    """The same rows out and back into the same tables with one binary COPY each: samples/s."""
    data = {}
    with psycopg.connect(db) as conn:
        for table, cols in TABLES.items():
            with conn.cursor().copy(f"COPY (SELECT {cols} FROM {table}) TO STDOUT (FORMAT BINARY)") as copy:
                data[table] = b"".join(bytes(chunk) for chunk in copy)
        n = conn.execute("SELECT count(*) FROM samples").fetchone()[0]
        conn.execute("TRUNCATE samples, batches")
        conn.commit()
        t0 = time.monotonic()
        with conn.transaction():
            for table, cols in TABLES.items():
                with conn.cursor().copy(f"COPY {table} ({cols}) FROM STDIN (FORMAT BINARY)") as copy:
                    copy.write(data[table])
        return n / (time.monotonic() - t0)


def throughput(broker: Broker, pg: Postgres, work: Path, a: argparse.Namespace) -> None:
    workers = Workers(broker, work)
    dbs = {g: pg.createdb(f"bench_{g}") for g in ("one", "two")}
    for g, n in (("one", 1), ("two", 2)):  # the sessions, so the broker queues the backlog for them
        workers.start(dbs[g], g, n)
    workers.stop()
    rec = run_fleet(FleetSettings(broker.url, a.backlog_nodes, a.backlog_seals, per_batch=a.per_batch))
    want = rec.totals()["batches"]
    one = drain(workers, dbs["one"], "one", 1, want)
    two = drain(workers, dbs["two"], "two", 2, want)
    bare = bare_copy(dbs["one"])
    print(f"backlog: {want} batches, {stored(dbs['two'])[1]} samples ({a.per_batch} points a channel)")
    print(f"ingest 1 worker:  {one:10.0f} samples/s  {one / bare:.2f}x bare COPY")
    print(f"ingest 2 workers: {two:10.0f} samples/s  {two / bare:.2f}x bare COPY")
    print(f"bare COPY:        {bare:10.0f} samples/s (same rows, same tables, one transaction)")
    print(
        f"database bytes a sample (samples and batches, indexes included): {bytes_per_sample(dbs['two']):.1f}"
    )


def bytes_per_sample(db: str) -> float:
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE batches")
        size = conn.execute(
            "SELECT (SELECT sum(pg_total_relation_size(relid)) FROM pg_partition_tree('samples'))"
            " + pg_total_relation_size('batches')"
        ).fetchone()[0]
    return float(size) / stored(db)[1]


def latency(broker: Broker, pg: Postgres, work: Path, a: argparse.Namespace) -> None:
    workers = Workers(broker, work)
    db = pg.createdb("bench_latency")
    workers.start(db, "live", 2)
    try:
        s = FleetSettings(
            broker.url, a.nodes, a.seals, interval=a.interval, realtime=True, per_batch=a.per_live
        )
        rec = run_fleet(s)
        want = rec.totals()["batches"]
        while stored(db)[0] < want:
            time.sleep(0.05)
        with psycopg.connect(db) as conn:
            p50, p99, n = conn.execute(
                "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM stored - t_last)),"
                " percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM stored - t_last)), count(*)"
                " FROM batches WHERE NOT historical"
            ).fetchone()
        rate = a.nodes * 3 / a.interval
        print(
            f"seal-to-row, {a.nodes} nodes, a seal each {a.interval:g} s ({rate:.0f} batches/s), 2 workers: "
            f"p50 {float(p50):.3f} s, p99 {float(p99):.3f} s ({n} live batches)"
        )
        print(f"database bytes a sample, {a.per_live} points a channel: {bytes_per_sample(db):.1f}")
    finally:
        workers.stop()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--seals", type=int, default=6)
    ap.add_argument("--interval", type=float, default=5.0)
    ap.add_argument("--backlog-nodes", type=int, default=200)
    ap.add_argument("--backlog-seals", type=int, default=40)
    ap.add_argument("--per-batch", type=int, default=60, help="points a channel in the backlog's batches")
    ap.add_argument("--per-live", type=int, default=6, help="points a channel in the live fleet's batches")
    ap.add_argument("--skip", choices=("throughput", "latency"))
    ap.add_argument("--max-messages", help="the workers' --max-messages (default: theirs)")
    a = ap.parse_args()
    WORKER_ARGS[:] = ["--max-messages", a.max_messages] if a.max_messages else []
    work = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    broker = Broker(shutil.which("mosquitto") or "/usr/sbin/mosquitto", work)
    broker.conf.write_text(broker.conf.read_text() + "max_inflight_messages 1000\n")
    broker.start()
    pg = Postgres(require_bin_dir())
    pg.start()
    try:
        if a.skip != "throughput":
            throughput(broker, pg, work, a)
        if a.skip != "latency":
            latency(broker, pg, work, a)
    finally:
        broker.stop()
        pg.remove()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
