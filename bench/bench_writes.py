"""Bytes the agent writes to the card per byte of payload it stores, from the kernel's own
counter (/proc/PID/io write_bytes), the old store beside the new, in one run.

    .venv/bin/python bench/bench_writes.py [--cycles 12] [--flush 10] [--dir DIR] [--json FILE]

The real agent (`edge-agent run --simulate`) with six simulated sensors sampled at 1 Hz,
sealing every --flush seconds, its queue in --dir (default a temporary directory: it must
be on a disk, not a tmpfs, whose pages the kernel does not count), its log on a pipe (as
under systemd, where journald writes it, not the agent). The clock is made synchronised
through a fake sysroot (a node's usual state: batches of an unsynchronised clock also
fill an index). Each variant runs with no broker (the queue grows) and with a local
Mosquitto (the uplink deletes each batch once acknowledged: a node's usual day), counted
from the first seal over --cycles flush cycles:

- old: one transaction per stream and seal, 1 KiB pages (the store before group commit);
- new: one transaction a cycle (BatchStore.seal_many), 512-byte pages, and (with a broker)
  the acknowledged deletes carried in the next seal's transaction (store_handoff);
- new without hand-over (with a broker): the same, the deleter committing its own deletes.

Also printed, the floor of this design: a durable commit per cycle dirties at least one
4 KiB page of the WAL (write_bytes counts whole pages when they become dirty), so the
bytes per payload byte can be no lower than 4096 / (payload bytes a cycle).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import threading
import time

SENSORS = """\
  - {name: air, type: bme680, address: 0x77, interval: 1s}
  - {name: particles, type: pmsa003i, interval: 1s}
  - {name: co2, type: scd4x, interval: 5s}
  - {name: battery, type: ina226, address: 0x40, interval: 1s, shunt_ohms: 0.002, max_current: 20.0}
  - {name: solar, type: ina219, address: 0x41, interval: 1s, shunt_ohms: 0.1}
  - {name: mains, type: s0, pin: 17, pulses_per_kwh: 1000, interval: 1s}
"""

# Run by the agent's own interpreter for the old variant: one transaction per batch (the
# states with the last), the rest of the agent unchanged; its queue file is made beforehand
# with 1 KiB pages (run_agent), as the store made them.
OLD = """\
import sys
from edge_agent.cli import main
from edge_agent.node.store import BatchStore

seal_many = BatchStore.seal_many
def one_per_stream(self, batches, sealed_at, *, states=(), **stamp):
    out = []
    for i, b in enumerate(batches):
        out += seal_many(self, [b], sealed_at, states=states if i == len(batches) - 1 else (), **stamp)
    return out
BatchStore.seal_many = one_per_stream
sys.exit(main(sys.argv[1:]))
"""

# The new store without the hand-over of acknowledged deletes (store_handoff): the uplink's
# deleter commits them itself, as before it.
NO_HANDOFF = """\
import sys
from edge_agent.cli import main
from edge_agent.node.store import BatchStore

BatchStore.take_deletes = lambda self, wait: None
sys.exit(main(sys.argv[1:]))
"""

NEW = """\
import sys
from edge_agent.cli import main
sys.exit(main(sys.argv[1:]))
"""

SEALED = re.compile(r"event=batch_sealed .*bytes=(\d+)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/io") as f:
        for line in f:
            if line.startswith("write_bytes:"):
                return int(line.split()[1])
    raise RuntimeError("no write_bytes in /proc/PID/io (a kernel without task I/O accounting?)")


def run_agent(
    code: str, page_size: int, config: str, state: str, root: str, cycles: int, flush: float
) -> dict:
    """Start the agent on a new queue of ``page_size`` pages, count from its first seal over
    ``cycles`` cycles; the figures."""
    shutil.rmtree(state, ignore_errors=True)
    os.makedirs(state, mode=0o700)
    db = sqlite3.connect(os.path.join(state, "queue.sqlite3"))
    db.execute(f"PRAGMA page_size={page_size}")
    db.execute("PRAGMA journal_mode=WAL")
    db.close()
    env = dict(os.environ, EDGE_AGENT_SYSROOT=root)
    cmd = [sys.executable, "-c", code, "run", "--simulate", "--config", config, "--state-dir", state]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    seals: list[int] = []  # payload bytes of each batch_sealed line, in order
    first = threading.Event()
    marks: dict[str, int] = {}

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            m = SEALED.search(line)
            if m:
                seals.append(int(m.group(1)))
                first.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        if not first.wait(60 + 2 * flush):
            raise RuntimeError("the agent sealed nothing in a minute")
        time.sleep(flush / 2)  # between cycles: the first cycle's commit is done
        marks["w0"], marks["n0"], marks["b0"] = write_bytes(proc.pid), len(seals), sum(seals)
        time.sleep(cycles * flush)
        marks["w1"], marks["n1"], marks["b1"] = write_bytes(proc.pid), len(seals), sum(seals)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    written, payload = marks["w1"] - marks["w0"], marks["b1"] - marks["b0"]
    return {
        "written_bytes": written,
        "batches": marks["n1"] - marks["n0"],
        "payload_bytes": payload,
        "bytes_per_payload_byte": round(written / payload, 2) if payload else None,
        "floor": round(4096 * cycles / payload, 2) if payload else None,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cycles", type=int, default=12, help="flush cycles counted (default 12)")
    ap.add_argument("--flush", type=float, default=10.0, help="flush interval, s (default 10: the default)")
    ap.add_argument("--dir", help="where the queues live (a disk, not a tmpfs)")
    ap.add_argument("--json", help="write the figures here too")
    ap.add_argument("--only", action="append", help="run only this variant (old, new, ...; repeatable)")
    ap.add_argument("--link", choices=("offline", "broker"), help="run only with this link")
    args = ap.parse_args()
    if args.cycles < 1 or not 0.1 <= args.flush <= 3600:
        ap.error("--cycles is 1 or more, --flush 0.1 to 3600 s")
    work = tempfile.mkdtemp(prefix="bench-writes-", dir=args.dir or "/var/tmp")
    root = os.path.join(work, "root")  # a sysroot whose clock is synchronised
    os.makedirs(os.path.join(root, "run/systemd/timesync"))
    open(os.path.join(root, "run/systemd/timesync/synchronized"), "w").close()
    for d in ("proc", "sys"):
        os.symlink(f"/{d}", os.path.join(root, d))
    mosquitto = shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else None
    )
    broker = None
    results: dict[str, dict] = {}
    try:
        port = free_port()
        if mosquitto:
            conf = os.path.join(work, "mosquitto.conf")
            with open(conf, "w") as f:
                f.write(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
            broker = subprocess.Popen(
                [mosquitto, "-c", conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
        for link in ("offline", "broker") if broker else ("offline",):
            if args.link and link != args.link:
                continue
            url = f"mqtt://127.0.0.1:{port if link == 'broker' else 1}"
            config = os.path.join(work, f"{link}.yaml")
            with open(config, "w") as f:
                f.write(
                    textwrap.dedent(f"""\
                    node: {{id: bench-writes}}
                    flush_interval: {args.flush}s
                    mqtt: {{broker: "{url}"}}
                    sensors:
                    """)
                    + SENSORS
                )
            variants = [("old", OLD, 1024), ("new", NEW, 512)]
            if link == "broker":
                variants.insert(1, ("new without hand-over", NO_HANDOFF, 512))
            for name, code, page in variants:
                if args.only and name not in args.only:
                    continue
                r = run_agent(code, page, config, os.path.join(work, "state"), root, args.cycles, args.flush)
                results[f"{name}/{link}"] = r
                print(
                    f"{name:21} {link:7}  {r['written_bytes']:8,} B written  {r['batches']:3} batches  "
                    f"{r['payload_bytes']:6,} B payload  {r['bytes_per_payload_byte']:7} B/B  "
                    f"(floor {r['floor']})",
                    flush=True,
                )
        for link in ("offline", "broker"):
            old, new = results.get(f"old/{link}"), results.get(f"new/{link}")
            if old and new and new["bytes_per_payload_byte"]:
                print(
                    f"{link}: old/new = {old['bytes_per_payload_byte'] / new['bytes_per_payload_byte']:.2f}x"
                )
        if not broker:
            print("(no mosquitto: the variant with a broker was not run)")
    finally:
        if broker:
            broker.terminate()
            broker.wait()
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
