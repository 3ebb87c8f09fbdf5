"""Stop soak (not a test: run by hand, for hours): start the agent, SIGTERM it at a moment
counted from its log, many times, on a loaded machine; a stop that takes over STOP_WAIT s
gets SIGUSR1 (every thread's stack, faulthandler) and SIGKILL, and its log is kept with
every run that took over 15 s, exited otherwise than 0 or -15, or printed a traceback.

    stress-ng --cpu 2 --timeout 3600s &              # Debian's stress-ng: the machine busy
    .venv/bin/python tests/integration/stop_soak.py --repo . --out /tmp/soak --iterations 300 --seed 1
    .venv/bin/python tests/integration/stop_soak.py --repo . --out /tmp/soak --hup-storm 20

Each run draws a configuration (the lamp-post example; the built-in node; the lamp-post
sampled fast), a broker (absent; present; SIGKILLed or SIGSTOPped at the SIGTERM), a store
(fresh; not a database; a copy of a 3000-batch backlog with 64 random bytes written over it;
that backlog whole) and a moment (0-1.5 s after spawn; after event=start, store_corrupt,
uplink_start, ready, the first batch_sealed, uplink_connected; 0-4 s after ready). Results
are one JSON line a run in OUT/results-SEED.jsonl. ``--hup-storm N`` instead runs N agents
that get a SIGHUP every 0.5-10 ms for 10 s, then SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

STOP_WAIT = 60.0

MOMENTS = [
    "spawn",  # 0..1.5 s after the process starts, whatever it is doing
    "start",  # right after event=start (store open done, uplink not yet started)
    "corrupt",  # right after event=store_corrupt (salvage in progress)
    "uplink_start",
    "ready",
    "sealed",  # after the first batch_sealed
    "connected",  # after uplink_connected (+0..0.3 s: the backlog draining)
    "later",  # 0..4 s after ready
]
BROKERS = ["absent", "present", "killed", "stopped"]
STORES = ["fresh", "corrupt", "damaged", "backlog"]
CONFIGS = ["lamp", "default"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen | None = None
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "m.conf").write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 100000\n"
        )

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["mosquitto", "-c", str(self.workdir / "m.conf")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("no mosquitto")

    def kill(self, sig=signal.SIGKILL) -> None:
        if self.proc is not None:
            try:
                os.kill(self.proc.pid, signal.SIGCONT)
                os.kill(self.proc.pid, sig)
                if sig in (signal.SIGKILL, signal.SIGTERM):
                    self.proc.wait(timeout=10)
                    self.proc = None
            except ProcessLookupError:
                self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            os.kill(self.proc.pid, signal.SIGCONT)
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
            self.proc = None


def make_backlog(path: Path, repo: Path, n: int) -> None:
    sys.path.insert(0, str(repo))
    from edge_agent import wire
    from edge_agent.node.store import BatchStore

    with BatchStore(str(path)) as s:
        for seq in range(n):
            t0 = 1_767_225_600_000 + seq * 10_000
            chans = tuple(
                wire.ChannelData(
                    name, unit, res, tuple(t0 + i * 1000 for i in range(10)), tuple(b + i for i in range(10))
                )
                for name, unit, res, b in (("temperature", "°C", 0.01, 2150), ("humidity", "%", 0.01, 4500))
            )
            p = wire.encode(wire.Batch("lamp-0042", "air", seq, t0, chans))
            s.seal("air", lambda q, p=p: p, time.time() - 3600)
        s.checkpoint()


def damage(state: Path, rnd: random.Random, repo: Path, template: Path) -> None:
    q = state / "queue.sqlite3"
    for suffix in ("", "-wal", "-shm"):
        if (template.parent / (template.name + suffix)).exists():
            shutil.copy(str(template) + suffix, str(q) + suffix)
    path = str(q) + rnd.choice(["", "", "-wal"]) if os.path.exists(str(q) + "-wal") else str(q)
    with open(path, "r+b") as f:
        size = os.path.getsize(path)
        f.seek(rnd.randrange(max(1, size - 64)))
        f.write(rnd.randbytes(64))


def lamp_config(work: Path, src: Path, name: str, fast: bool = False) -> Path:
    """The example with a password file that exists; ``fast``: every sensor every 100-200 ms."""
    pw = work / "pw"
    pw.write_text("secret\n")
    text = src.read_text()
    text = text.replace("/etc/edge-agent/mqtt-password", str(pw))
    if fast:
        text = re.sub(r"^(    interval: )\S+", r"\g<1>200ms", text, flags=re.M)
        text = text.replace("duration: 150ms", "duration: 30ms")
    cfg = work / name
    cfg.write_text(text)
    return cfg


def wait_for(proc, err: Path, marker: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if marker in err.read_text(errors="replace"):
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.01)
    return False


def one(i: int, rnd: random.Random, args, work: Path, broker: Broker, templates: dict) -> dict:
    it = work / f"it{i}"
    shutil.rmtree(it, ignore_errors=True)
    state = it / "state"
    state.mkdir(parents=True)
    os.chmod(state, 0o700)
    config = rnd.choice(args.configs.split(","))
    brokerkind = rnd.choice(args.brokers.split(","))
    store = rnd.choice(args.stores.split(","))
    moment = rnd.choice(args.moments.split(","))
    if moment == "corrupt" and store not in ("corrupt", "damaged"):
        moment = "start"
    if moment == "connected" and brokerkind == "absent":
        moment = "later"
    if store == "corrupt":
        (state / "queue.sqlite3").write_bytes(b"not a database" * 1000)
    elif store == "damaged":
        damage(state, rnd, args.repo, templates["backlog"])
    elif store == "backlog":
        for suffix in ("", "-wal", "-shm"):
            src = Path(str(templates["backlog"]) + suffix)
            if src.exists():
                shutil.copy(src, str(state / "queue.sqlite3") + suffix)
    if brokerkind == "absent":
        url = f"mqtt://127.0.0.1:{free_port()}"
    else:
        if broker.proc is None:
            broker.start()
        url = f"mqtt://127.0.0.1:{broker.port}"
    cmd = [sys.executable, "-m", "edge_agent.cli", "run", "--simulate", "--state-dir", str(state)]
    cmd += ["--broker", url, "--flush-interval", rnd.choice(["200ms", "500ms", "1s"])]
    if config in ("lamp", "fast"):
        cmd += ["--config", str(templates[config])]
    err = it / "agent.err"
    env = dict(os.environ)
    if rnd.random() < 0.5:
        env["EDGE_AGENT_PUREPYTHON"] = "1"
    with open(err, "wb") as f:
        proc = subprocess.Popen(cmd, stderr=f, cwd=str(args.repo), env=env)
    marker = {
        "start": "event=start ",
        "corrupt": "event=store_corrupt",
        "uplink_start": "event=uplink_start",
        "ready": "event=ready",
        "sealed": "event=batch_sealed",
        "connected": "event=uplink_connected",
        "later": "event=ready",
    }.get(moment)
    reached = True
    if moment == "spawn":
        time.sleep(rnd.uniform(0, 1.5))
    else:
        reached = wait_for(proc, err, marker, 40)
        if moment == "later":
            time.sleep(rnd.uniform(0, 4))
        elif moment == "connected":
            time.sleep(rnd.uniform(0, 0.3))
    if brokerkind == "killed" and broker.proc is not None:
        broker.kill(signal.SIGKILL)
    elif brokerkind == "stopped" and broker.proc is not None:
        broker.kill(signal.SIGSTOP)
    t0 = time.monotonic()
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
    hung = False
    try:
        rc = proc.wait(timeout=STOP_WAIT)
    except subprocess.TimeoutExpired:
        hung = True
        os.kill(proc.pid, signal.SIGUSR1)
        time.sleep(2.0)
        os.kill(proc.pid, signal.SIGKILL)
        rc = proc.wait(timeout=10)
    took = time.monotonic() - t0
    if brokerkind in ("killed", "stopped"):
        broker.stop()
    text = err.read_text(errors="replace")
    res = {
        "i": i,
        "config": config,
        "broker": brokerkind,
        "store": store,
        "moment": moment,
        "reached": reached,
        "rc": rc,
        "took": round(took, 2),
        "hung": hung,
        "traceback": "Traceback" in text,
        "stopped_log": "event=stop " in text,
    }
    if hung or took > 15 or (rc not in (0, -15)) or res["traceback"]:
        keep = Path(args.out) / f"case-{args.seed}-{i}"
        keep.mkdir(parents=True, exist_ok=True)
        shutil.copy(err, keep / "agent.err")
        (keep / "result.json").write_text(json.dumps(res))
    shutil.rmtree(it, ignore_errors=True)
    return res


HUP_CONFIG = """\
node: {id: hup-node}
flush_interval: 1s
mqtt: {broker: "mqtt://127.0.0.1:9"}
sensors:
  - name: air
    type: bme680
    interval: 100ms
    heater: {duration: 30ms}
"""


def hup_storm(args, work: Path, rounds: int, rnd: random.Random) -> None:
    """SIGHUP every 0.5-10 ms for 10 s (each a reload), then SIGTERM; a hang keeps its log."""
    cfg = work / "hup.yaml"
    cfg.write_text(HUP_CONFIG)
    hung = 0
    for r in range(rounds):
        state, err = work / f"hup{r}", work / f"hup{r}.err"
        cmd = [sys.executable, "-m", "edge_agent.cli", "run", "--simulate", "--config", str(cfg)]
        with open(err, "wb") as f:
            proc = subprocess.Popen([*cmd, "--state-dir", str(state)], stderr=f, cwd=str(args.repo))
        wait_for(proc, err, "event=ready", 60)
        t0, sent = time.monotonic(), 0
        while time.monotonic() - t0 < 10 and proc.poll() is None:
            os.kill(proc.pid, signal.SIGHUP)
            sent += 1
            time.sleep(rnd.uniform(0.0005, 0.01))
        reloads = err.read_text(errors="replace").count("event=reloaded")
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
        try:
            rc = proc.wait(timeout=STOP_WAIT)
        except subprocess.TimeoutExpired:
            hung += 1
            os.kill(proc.pid, signal.SIGUSR1)
            time.sleep(2.0)
            os.kill(proc.pid, signal.SIGKILL)
            rc = proc.wait(timeout=10)
            shutil.copy(err, Path(args.out) / f"hung-{args.seed}-{r}.err")
        print(f"round {r}: sighups={sent} reloads={reloads} rc={rc}", flush=True)
        shutil.rmtree(state, ignore_errors=True)
    print(f"hup storm: hung={hung}/{rounds}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repo", type=Path, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--iterations", type=int, default=100)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--configs", default=",".join(CONFIGS))
    ap.add_argument("--brokers", default=",".join(BROKERS))
    ap.add_argument("--stores", default=",".join(STORES))
    ap.add_argument("--moments", default=",".join(MOMENTS))
    ap.add_argument("--hup-storm", type=int, default=0, metavar="N", help="N SIGHUP-storm rounds instead")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = out / f"work-{args.seed}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    args.repo = args.repo.resolve()
    sys.path.insert(0, str(args.repo))
    os.environ["PYTHONPATH"] = str(args.repo)
    if args.hup_storm:
        hup_storm(args, work, args.hup_storm, random.Random(args.seed))
        return
    tdir = work / "templates"
    tdir.mkdir()
    os.chmod(tdir, 0o700)
    templates = {
        "backlog": tdir / "backlog.sqlite3",
        "lamp": lamp_config(tdir, args.repo / "examples/air-quality-lamp-post.yaml", "lamp.yaml"),
        "fast": lamp_config(tdir, args.repo / "examples/air-quality-lamp-post.yaml", "fast.yaml", fast=True),
    }
    make_backlog(templates["backlog"], args.repo, 3000)
    broker = Broker(work / "broker")
    rnd = random.Random(args.seed)
    results = []
    with open(out / f"results-{args.seed}.jsonl", "w") as f:
        for i in range(args.iterations):
            r = one(i, rnd, args, work, broker, templates)
            results.append(r)
            f.write(json.dumps(r) + "\n")
            f.flush()
    broker.stop()
    hung = [r for r in results if r["hung"]]
    print(
        f"seed={args.seed} iterations={len(results)} hung={len(hung)} "
        f"max_took={max(r['took'] for r in results):.1f}s"
    )


if __name__ == "__main__":
    main()
