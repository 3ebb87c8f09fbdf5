"""Fleet-sim into `edge-agent ingest`: batches/s and seal-to-row latency p50/p99
(a batch's newest point, stamped at its seal, to its row's commit: batches.stored - t_last).

    .venv/bin/python bench/bench_ingest.py --nodes 1000 --seals 5 --interval 1
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--seals", type=int, default=5)
    ap.add_argument("--interval", type=float, default=1.0)
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    broker = Broker(shutil.which("mosquitto") or "/usr/sbin/mosquitto", work)
    broker.start()
    pg = Postgres(require_bin_dir())
    pg.start()
    db = pg.createdb("bench")
    with open(work / "ingest.log", "wb") as log:
        worker = subprocess.Popen(
            agent_cmd("ingest", "--broker", broker.url, "--db", db, "--migrate"), stderr=log
        )
    try:
        while b"event=subscribed" not in (work / "ingest.log").read_bytes():
            assert worker.poll() is None, (work / "ingest.log").read_text()
            time.sleep(0.1)
        t0 = time.monotonic()
        rec = run_fleet(FleetSettings(broker.url, a.nodes, a.seals, interval=a.interval, realtime=True))
        want = rec.totals()["batches"]
        with psycopg.connect(db) as conn:
            while conn.execute("SELECT count(*) FROM batches").fetchone()[0] < want:
                time.sleep(0.05)
            took = time.monotonic() - t0
            p50, p99 = conn.execute(
                "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM stored - t_last)),"
                " percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM stored - t_last))"
                " FROM batches WHERE NOT historical"
            ).fetchone()
        print(
            f"nodes={a.nodes} batches={want} batches_per_s={want / took:.0f} (incl. {a.interval} s between seals)"
        )
        print(f"seal_to_row_p50_s={float(p50):.3f} p99_s={float(p99):.3f}")
    finally:
        terminate(worker)
        broker.stop()
        pg.remove()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
