"""Time to roll back, per kind of broken release: a real Mosquitto, a good release through its
trial, then a broken one applied (`update apply`) and run by the launcher, as in
tests/integration/test_update_trial.py (whose kit this uses); the launcher's own figures.

    .venv/bin/python bench/bench_rollback.py [--rounds N] [--kinds crash,stall,...]

Prints, per kind, the median and range over N rounds of: from the broken release's start to
the previous release's READY, and from the failure's detection to that READY; and the time
`update apply` took. Defaults as the tests: a 5 s watchdog, a 20 s window for never READY,
a crash 1 s after the first seal (EDGE_AGENT_FAULT_DELAY).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent / "tests"), str(HERE.parent / "tests" / "integration")]

from helpers import Broker, find_mosquitto  # noqa: E402
from test_update_trial import TRIALS, Site  # noqa: E402


def one(kind: str, workdir: Path, binary: str) -> tuple[float, float, float]:
    (workdir / "broker").mkdir(parents=True)
    broker = Broker(binary, workdir / "broker")
    broker.start()
    site = Site(workdir, broker)
    try:
        base = site.good_release()
        done = site.node.apply(site.node.bundle("0.2.0", kind))
        applied = json.loads(done.stdout)["seconds"]
        site.launch(TRIALS[kind][0], env=dict(os.environ, EDGE_AGENT_FAULT_DELAY="1"))
        text = site.wait(lambda t: f"event=rollback_ready release={base}" in t)
        site.stop()
    finally:
        site.close()
        broker.stop()
    m = re.search(r"event=rollback_ready .*since_trial_start=([0-9.]+) since_failure=([0-9.]+)", text)
    assert m, text
    return float(m.group(1)), float(m.group(2)), applied


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--kinds", default=",".join(sorted(TRIALS)))
    args = p.parse_args()
    binary = find_mosquitto()
    if binary is None:
        print("bench_rollback: mosquitto is not installed", file=sys.stderr)
        return 2
    print(f"# {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print("| kind | trial start -> previous READY (s) | failure -> previous READY (s) | update apply (s) |")
    print("| --- | --- | --- | --- |")
    for kind in args.kinds.split(","):
        rows = []
        for i in range(args.rounds):
            with tempfile.TemporaryDirectory(prefix="bench-rollback-") as tmp:
                rows.append(one(kind, Path(tmp) / f"r{i}", binary))
        cells = []
        for col in zip(*rows):
            cells.append(f"{statistics.median(col):.2f} ({min(col):.2f}-{max(col):.2f})")
        print(f"| {kind} | " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
