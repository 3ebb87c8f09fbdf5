"""`make backbone`: the backbone on this machine, until Ctrl-C.

A Mosquitto and a PostgreSQL of the demo's own (in a temporary folder, on free loopback
ports), two `edge-agent ingest` workers of one group, and a small simulated fleet
(`edge-agent fleet-sim`, a seal every few seconds, a few faults); it prints how to query
the database, and on Ctrl-C (or SIGTERM) stops them all, each by its pid, and removes the
folder.

    .venv/bin/python scripts/backbone_demo.py [--nodes 20] [--interval 5]
"""

from __future__ import annotations

import argparse
import getpass
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT)]

from helpers import find_mosquitto, free_port  # noqa: E402
from pg import Postgres, require_bin_dir  # noqa: E402


def agent(*args: str) -> list[str]:
    return [sys.executable, "-m", "edge_agent.cli", *args]


def started(cmd: list[str], log: Path) -> subprocess.Popen:
    """A process in a session of its own: Ctrl-C reaches the demo, which stops it in order."""
    with open(log, "ab") as f:
        return subprocess.Popen(cmd, stdout=f, stderr=f, start_new_session=True)


def stop(proc: subprocess.Popen, timeout: float = 20) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


def wait_for(log: Path, text: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while text not in log.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"backbone demo: {log.name} did not say {text!r}:\n{log.read_text()[-2000:]}")
        time.sleep(0.1)


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=20)
    ap.add_argument("--interval", type=float, default=5.0, help="seconds between a node's seals")
    a = ap.parse_args()
    mosquitto = find_mosquitto()
    if mosquitto is None:
        raise SystemExit(
            "backbone demo: mosquitto is not installed (sh scripts/host-deps.sh test installs it)"
        )
    work = Path(tempfile.mkdtemp(prefix="edge-agent-backbone-"))
    os.chmod(work, 0o700)
    signal.signal(signal.SIGTERM, _interrupt)
    procs: list[subprocess.Popen] = []
    pg = None
    try:
        port = free_port()
        conf = work / "mosquitto.conf"
        conf.write_text(
            f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
            f"persistence_location {work}/\nmax_queued_messages 100000\n"
            f"user {getpass.getuser()}\n"  # as root mosquitto would drop to its own user
        )
        broker_url = f"mqtt://127.0.0.1:{port}"
        procs.append(started([mosquitto, "-c", str(conf)], work / "mosquitto.log"))
        pg = Postgres(require_bin_dir())
        pg.start()
        db = pg.createdb("backbone")
        for slot in (0, 1):
            log = work / f"ingest-{slot}.log"
            procs.append(
                started(
                    agent("ingest", "--broker", broker_url, "--db", db, "--slot", str(slot), "--migrate"), log
                )
            )
            wait_for(log, "event=subscribed", procs[-1])
        fleet = agent(
            "fleet-sim", "--broker", broker_url, "--nodes", str(a.nodes), "--seals", "1000000",
            "--interval", str(a.interval), "--realtime", "--duplicate", "0.02", "--gap", "0.01",
            "--offline", "0.02", "--record", str(work / "record.json"),
        )  # fmt: skip
        procs.append(started(fleet, work / "fleet-sim.log"))
        psql = shutil.which("psql") or str(pg.bin_dir / "psql")
        print(
            f"""
backbone demo: {a.nodes} simulated nodes -> Mosquitto {broker_url} -> 2 ingest workers -> PostgreSQL
  logs:   {work}/ (mosquitto.log, ingest-0.log, ingest-1.log, fleet-sim.log)
  query:  {psql} '{db}'
    SELECT node, stream, count(*) AS batches, max(seq) FROM batches JOIN streams ON id = stream_id
      GROUP BY 1, 2 ORDER BY 1, 2 LIMIT 12;
    SELECT channel, t, value, unit, bound FROM sample_rows WHERE node = 'sim-00000' ORDER BY t DESC LIMIT 10;
    SELECT * FROM batch_gaps LIMIT 10;     -- holes in seq (the fleet drops 1 %)
    SELECT * FROM duplicates LIMIT 10;     -- batches received twice (2 % lost PUBACKs)
    SELECT node, stream, batches, live_lag_p50_s, live_lag_p99_s, write_delay_s FROM ingest_lag LIMIT 10;
  watch:  tail -f {work}/ingest-0.log
Ctrl-C stops it all and removes {work}.""",
            flush=True,
        )
        while all(p.poll() is None for p in procs):
            time.sleep(0.5)
        dead = next(p for p in procs if p.poll() is not None)
        print(
            f"backbone demo: {' '.join(dead.args[:4])} ended ({dead.returncode}); see {work}", file=sys.stderr
        )
        return 1
    except KeyboardInterrupt:
        print("\nbackbone demo: stopping the fleet, the workers, the broker, the database", flush=True)
        return 0
    finally:
        for p in reversed(procs):  # the fleet first (its will says offline), the broker last
            stop(p)
        if pg is not None:
            pg.remove()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
