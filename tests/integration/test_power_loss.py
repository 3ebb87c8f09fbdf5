"""Power cuts: the agent's queue on a filesystem that loses what was not fsync'ed.

`edge-agent run --simulate` (four simulated sensors at 100 ms, sealed every 500 ms, no
broker: every batch stays in the queue) runs with its state directory on the FUSE
filesystem of tests/powercut/fs.py. Each run is cut at a moment chosen by counting: after
a random number of the filesystem's operations (writes, truncates, fsyncs, creates, ...) or
of its fsyncs, drawn from a logged seed, that operation does not happen, the agent is
killed with SIGKILL from inside it (it is blocked in that very call, so it runs no more
code), and every write and name change not yet durable is thrown away, all at once, or
in part (a torn cut: some sectors the disk had in its cache reached it), with names made
durable as on ext4 or only by a directory's fsync (the filesystem's docstring says what each
is). Then the agent starts again on what survived, and is cut again. One run in ten stops
cleanly instead, and the next is cut within its first writes, while the old WAL's removal
is not yet durable.

After every cut, on a copy of what the disk holds:
- the queue opens and passes SQLite's integrity check, and the restarted agent opens it
  without calling it damaged (no `.corrupt-` file, no `store_corrupt`, no `store_wal_lost`:
  a power cut is not corruption);
- every batch a run logged as sealed (`event=batch_sealed`, written after its COMMIT
  returned) is there, with that run's epoch, size and number of points: 0 sealed batches
  lost; and every batch that was on the disk at an earlier cut is still there, the same bytes;
- no (stream, seq) was logged by two runs, and the numbers of each stream run from 0 with
  no gap (nothing was dropped, refused or deleted here, so no gap is accounted for);
- the loss window, by counting: powercut/probe.py writes down every sample the drivers
  put into an open batch (outside the filesystem under test, before the sampler goes on);
  the run's samples on the disk must be exactly the first of those, and the ones lost at
  most one flush interval's worth per stream (FLUSH / INTERVAL, plus the one a batch holds
  at both of its ends). A loaded machine samples later or skips slots; it does not
  put more samples in a batch, so the bound holds however slow the machine is.
At the end a clean stop loses nothing, not even to a cut right after it. A negative
control runs the same cuts on the agent with its queue at synchronous=NORMAL and must
catch a sealed batch lost; a third test checks the filesystem itself through the kernel.

50 cuts in the compiled pass of `make test` (80 to 110 s on this 2-core machine, loaded or
not); the pure-Python pass (EDGE_AGENT_PUREPYTHON=1) runs the same agent code on the other
signal core, and 12 cuts there (about 25 s). EDGE_AGENT_POWERCUT_CUTS sets the number (a
soak), EDGE_AGENT_POWERCUT_SEED the seed (printed at the start and named in every failure:
the same seed replays the same cuts, up to the agent's own timing).
"""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from helpers import REPO, free_port, missing, stop_agent, terminate, wait_for_log
from powercut.fs import MODES, NAMES, request

from edge_agent import wire

PURE = os.environ.get("EDGE_AGENT_PUREPYTHON") == "1"
CUTS = int(os.environ.get("EDGE_AGENT_POWERCUT_CUTS", "12" if PURE else "50"))
SEED = int(os.environ.get("EDGE_AGENT_POWERCUT_SEED", "14"))
FLUSH_MS = 500
INTERVAL_MS = 100
BOUND = FLUSH_MS // INTERVAL_MS + 1  # samples of one stream a cut may lose: one open batch
STREAMS = ("air", "dc", "mains", "pm")
TESTS = str(REPO / "tests")

CONFIG = f"""\
node: {{id: powercut-node}}
flush_interval: {FLUSH_MS}ms
clock: {{hold_unsynced: 0s}}
mqtt: {{broker: "mqtt://127.0.0.1:{{port}}"}}
sensors:
  - name: air
    type: bme680
    interval: {INTERVAL_MS}ms
    heater: {{temperature: 320, duration: 20ms}}
    channels: {{gas: {{enabled: false}}}}
  - {{name: dc, type: ina226, address: 0x40, shunt_ohms: 0.01, max_current: 8, interval: {INTERVAL_MS}ms,
     sim: {{bus_voltage: 30.0, current: 6.0}}}}
  - {{name: mains, type: s0, pin: 5, pulses_per_kwh: 10000, interval: {INTERVAL_MS}ms, sim: {{power: 7200}}}}
  - {{name: pm, type: pmsa003i, interval: {INTERVAL_MS}ms}}
"""
# No filters and no lossy stage: every sample a driver gives is a point of its batch.


def _env() -> dict[str, str]:
    path = os.environ.get("PYTHONPATH")
    return dict(os.environ, PYTHONPATH=TESTS + (os.pathsep + path if path else ""))


@dataclass
class Mount:
    backing: Path
    path: Path
    control: str
    log: Path
    agents: list[subprocess.Popen] = field(default_factory=list)

    def request(self, cmd: str, **args) -> dict:
        return request(self.control, cmd, **args)


@pytest.fixture
def powercut_mount(tmp_path):
    """The filesystem of powercut/fs.py over tmp_path/disk, mounted at tmp_path/mnt, with
    a state directory made beforehand (durable, as systemd's StateDirectory is). Unmounted
    and its process stopped by pid at the end, and any agent left killed, whatever happened."""
    fusermount = shutil.which("fusermount") or shutil.which("fusermount3")
    if fusermount is None:
        missing(
            "fusermount is not installed (the fuse package; `make test` installs it with apt-get as root)"
        )
    if not os.access("/dev/fuse", os.R_OK | os.W_OK):
        missing("/dev/fuse is not usable here: the power-cut filesystem runs in FUSE")
    probe = subprocess.run([sys.executable, "-c", "import mfusepy"], capture_output=True, text=True)
    if probe.returncode != 0:
        missing(
            f"mfusepy cannot load libfuse (libfuse2; `make test` installs it): {probe.stderr.strip()[-300:]}"
        )
    backing, mnt = tmp_path / "disk", tmp_path / "mnt"
    (backing / "state").mkdir(parents=True)
    backing.chmod(0o700)
    (backing / "state").chmod(0o700)
    mnt.mkdir()
    sockdir = tempfile.mkdtemp(prefix="powercut-")  # a short path: AF_UNIX allows 107 bytes
    m = Mount(backing, mnt, os.path.join(sockdir, "control"), tmp_path / "fs.log")
    fs = subprocess.Popen(
        [sys.executable, "-m", "powercut.fs", str(backing), str(mnt), "--control", m.control],
        stdout=open(m.log, "wb"),
        stderr=subprocess.STDOUT,
        env=_env(),
    )
    try:
        deadline = time.monotonic() + 30
        while os.stat(mnt).st_dev == os.stat(tmp_path).st_dev or not os.path.exists(m.control):
            if fs.poll() is not None or time.monotonic() > deadline:
                missing(f"the power-cut filesystem did not mount: {m.log.read_text()[-1000:]}")
            time.sleep(0.05)
        m.request("ping")
        yield m
    finally:
        for agent in m.agents:
            if agent.poll() is None:
                os.kill(agent.pid, signal.SIGKILL)
                agent.wait(timeout=10)
        if subprocess.run([fusermount, "-u", str(mnt)], capture_output=True).returncode != 0:
            subprocess.run([fusermount, "-u", "-z", str(mnt)], capture_output=True)
        terminate(fs)
        shutil.rmtree(sockdir, ignore_errors=True)


@dataclass
class Run:
    """One start of the agent: what it logged and what its drivers gave."""

    index: int
    log: Path
    samples: Path
    proc: subprocess.Popen | None = None
    epoch: int | None = None
    sealed: list[tuple[str, int, int, int]] = field(default_factory=list)  # stream, seq, points, bytes
    produced: dict[str, list[int]] = field(default_factory=dict)  # stream -> mono ms of its points

    def read(self) -> str:
        text = self.log.read_text()
        m = re.search(r"event=start .*?epoch=([0-9a-f]{8})", text)
        self.epoch = int(m.group(1), 16) if m else None
        self.sealed = [
            (s, int(q), int(p), int(b))
            for s, q, p, b in re.findall(
                r"event=batch_sealed stream=(\S+) seq=(\d+) points=(\d+) bytes=(\d+)", text
            )
        ]
        self.produced = {}
        if self.samples.exists():
            for line in self.samples.read_text().splitlines():
                stream, t = line.split()
                self.produced.setdefault(stream, []).append(int(t))
        return text


@dataclass
class Durable:
    """What the disk holds: each batch's payload, its wall offset, decoded."""

    batches: dict[tuple[str, int], tuple[bytes, int]]
    next_seq: dict[str, int]
    losses: list[tuple]

    def decoded(self, key: tuple[str, int]) -> wire.Batch:
        return wire.decode(self.batches[key][0])

    def times(self, key: tuple[str, int]) -> set[int]:
        """The monotonic ms of the batch's samples (its points' times less its wall offset)."""
        offset = self.batches[key][1]
        return {t - offset for c in self.decoded(key).channels for t in c.times_ms}


def on_disk(state: Path, copy: Path) -> Durable:
    """The queue as the disk holds it (the backing directory: only what was durable),
    opened on a copy so that SQLite's recovery of the copy changes nothing under the agent."""
    names = os.listdir(state)
    assert not [n for n in names if ".corrupt-" in n], f"a power cut is not corruption: {names}"
    copy.mkdir()
    if "queue.sqlite3" not in names:
        return Durable({}, {}, [])  # the cut came before the file's name was durable
    for name in ("queue.sqlite3", "queue.sqlite3-wal"):
        if name in names:
            shutil.copyfile(state / name, copy / name)
    db = sqlite3.connect(copy / "queue.sqlite3")
    try:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "batches" not in tables:
            return Durable({}, {}, [])  # the cut came before the schema was committed
        batches = {
            (s, q): (bytes(p), off)
            for s, q, p, off in db.execute("SELECT stream, seq, payload, wall_offset_ms FROM batches")
        }
        return Durable(
            batches,
            dict(db.execute("SELECT stream, next_seq FROM stream_seq")),
            db.execute("SELECT stream, reason, count FROM losses").fetchall(),
        )
    finally:
        db.close()


def start(m: Mount, cfg: Path, state: Path, run: Run, *, unsafe: bool = False) -> subprocess.Popen:
    cmd = [
        sys.executable,
        "-m",
        "powercut.probe",
        *(["--unsafe-commits"] if unsafe else []),
        str(run.samples),
    ]
    cmd += ["run", "--simulate", "--config", str(cfg), "--state-dir", str(state)]
    proc = subprocess.Popen(cmd, stderr=open(run.log, "wb"), env=_env())
    m.agents.append(proc)
    run.proc = proc
    return proc


class Ledger:
    """Everything known so far, checked against the disk after every cut."""

    def __init__(self) -> None:
        self.runs: list[Run] = []
        self.seen: dict[tuple[str, int], bytes] = {}  # what was on the disk at the last cut
        self.logged: dict[tuple[str, int], tuple[int, int, int]] = {}  # -> (run, points, bytes)
        self.unlogged = 0  # durable batches no run logged (the kill came between COMMIT and the log line)
        self.lost: list[int] = []  # samples lost per stream per cut

    def check(self, disk: Durable, runs: list[tuple[Run, int]], where: str) -> list[dict[str, int]]:
        """The disk against everything known, after the runs since the last check, each with
        the samples per stream it may have lost (0 for a clean stop, BOUND for a cut); what
        each did lose, per stream."""
        for run, _ in runs:
            for stream, seq, points, size in run.sealed:
                other = self.logged.get((stream, seq))
                assert other is None, (
                    f"{where}: ({stream}, {seq}) logged by run {other[0]} and run {run.index}"
                )
                self.logged[(stream, seq)] = (run.index, points, size)
        epochs = {r.epoch: r.index for r in self.runs if r.epoch is not None}
        for key, payload in self.seen.items():
            assert key in disk.batches, f"{where}: {key} was on the disk at an earlier cut and is gone"
            assert disk.batches[key][0] == payload, f"{where}: {key} changed on the disk"
        for key, (index, points, size) in self.logged.items():
            assert key in disk.batches, f"{where}: {key}, logged sealed by run {index}, is not on the disk"
            batch = disk.decoded(key)
            assert epochs.get(batch.epoch) == index, f"{where}: {key} is not the batch run {index} sealed"
            assert len(disk.batches[key][0]) == size, f"{where}: {key} is not the {size} bytes logged"
            assert sum(len(c.times_ms) for c in batch.channels) == points, f"{where}: {key} points"
        for key in disk.batches:
            assert disk.decoded(key).epoch in epochs, f"{where}: {key} has an epoch no run had"
        for stream in {s for s, _ in disk.batches}:
            seqs = sorted(q for s, q in disk.batches if s == stream)
            assert seqs == list(range(len(seqs))), f"{where}: {stream} has gaps: {seqs}"
            assert disk.next_seq.get(stream) == len(seqs), f"{where}: {stream} next_seq {disk.next_seq}"
        assert disk.losses == [], f"{where}: losses counted: {disk.losses}"
        self.unlogged += sum(1 for key in disk.batches if key not in self.seen and key not in self.logged)
        self.seen = {key: payload for key, (payload, _) in disk.batches.items()}
        # The loss window: each run's samples on the disk are the first it produced, and
        # what is missing of them is at most one open batch per stream (none at a clean stop).
        out = []
        for run, bound in runs:
            lost = {}
            mine = [key for key in disk.batches if disk.decoded(key).epoch == run.epoch]
            for stream in STREAMS:
                produced = sorted(run.produced.get(stream, []))
                stored = sorted(t for key in mine if key[0] == stream for t in disk.times(key))
                assert stored == produced[: len(stored)], (
                    f"{where}: run {run.index} {stream}: the samples on the disk are not the first "
                    "ones the drivers gave"
                )
                lost[stream] = len(produced) - len(stored)
                assert lost[stream] <= bound, (
                    f"{where}: run {run.index} {stream} lost {lost[stream]} samples, more than {bound} "
                    f"(one flush interval: {BOUND}, {FLUSH_MS} ms at {INTERVAL_MS} ms)"
                )
            out.append(lost)
        return out


def clean_log(text: str, where: str) -> None:
    for bad in ("Traceback", "event=store_corrupt", "event=store_recovered", "event=store_wal_lost"):
        assert bad not in text, f"{where}: {bad} in the agent's log:\n{text[-4000:]}"


def cut_runs(
    m: Mount, tmp_path: Path, ledger: Ledger, rng: random.Random, cuts: int, *, unsafe: bool = False
):
    """``cuts`` runs of the agent, each cut at a moment drawn from ``rng`` and checked; one
    run in ten between them stopped cleanly instead (its WAL's removal is then pending when
    the next run starts, which is cut within its first writes). The cuts' reports."""
    cfg = tmp_path / "node.yaml"
    if not cfg.exists():
        cfg.write_text(CONFIG.replace("{port}", str(free_port())))  # nothing listens: every batch stays
    state = m.path / "state"
    reports: list[dict] = []
    unchecked: list[tuple[Run, int]] = []
    while len(reports) < cuts:
        k = len(ledger.runs)
        run = Run(k, tmp_path / f"agent{k}.err", tmp_path / f"samples{k}")
        ledger.runs.append(run)
        after_clean = bool(unchecked)
        if not after_clean and rng.random() < 0.1:
            proc = start(m, cfg, state, run, unsafe=unsafe)
            wait_for_log(
                proc, run.log, lambda t: all(f"event=batch_sealed stream={s} " in t for s in STREAMS), 60
            )
            assert stop_agent(proc, run.log) == 0
            clean_log(run.read(), f"seed {SEED}, run {k} (a clean stop)")
            unchecked.append((run, 0))
            continue
        # (the unsafe agent syncs at its checkpoints alone, a minute apart: its cuts count operations)
        count = "ops" if after_clean or unsafe else rng.choice(("ops", "ops", "syncs"))
        arm = {
            "after": rng.randint(1, 40 if after_clean else 300) if count == "ops" else rng.randint(1, 24),
            "count": count,
            "mode": rng.choice(MODES),
            "names": rng.choice(NAMES),
            "seed": rng.getrandbits(32),
        }
        where = f"seed {SEED}, cut {len(reports)} (run {k}) {arm}"
        m.request("arm", **arm)
        proc = start(m, cfg, state, run, unsafe=unsafe)
        try:
            rc = proc.wait(timeout=120)  # the cut kills it: waited for, not timed
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"{where}: no cut in 120 s: {m.request('stats')}\n{run.read()[-3000:]}"
            ) from None
        text = run.read()
        assert rc == -signal.SIGKILL, f"{where}: exit {rc}\n{text[-3000:]}"
        cut = m.request("stats")["cuts"][-1]
        assert cut["victim"] == proc.pid, f"{where}: the cut killed {cut['victim']}, not the agent {proc.pid}"
        cut.update(sealed=len(run.sealed), after_clean=after_clean)
        reports.append(cut)
        clean_log(text, where)
        unchecked.append((run, BOUND))
        lost = ledger.check(on_disk(m.backing / "state", tmp_path / f"disk{k}"), unchecked, where)
        ledger.lost += lost[-1].values()
        unchecked = []
        m.request("thaw")
    return reports


def test_power_cuts_lose_no_sealed_batch(powercut_mount, tmp_path):
    m = powercut_mount
    began = time.monotonic()
    print(f"\npower cuts: seed {SEED} (EDGE_AGENT_POWERCUT_SEED={SEED} replays them), {CUTS} cuts")
    ledger = Ledger()
    reports = cut_runs(m, tmp_path, ledger, random.Random(SEED), CUTS)
    # The harness is not vacuous: most cuts found something not yet durable and threw it away.
    assert sum(r["lost_bytes"] > 0 for r in reports) >= CUTS // 2, reports
    lost_all = list(ledger.lost)

    # A clean stop loses nothing, and a power cut right after it neither.
    state = m.path / "state"
    cfg = tmp_path / "node.yaml"
    run = Run(len(ledger.runs), tmp_path / "final.err", tmp_path / "samples-final")
    ledger.runs.append(run)
    proc = start(m, cfg, state, run)
    wait_for_log(proc, run.log, lambda t: all(f"event=batch_sealed stream={s} " in t for s in STREAMS), 60)
    assert stop_agent(proc, run.log) == 0
    clean_log(run.read(), "the clean stop")
    cut = m.request("cut", mode="torn", seed=SEED)["cut"]
    ledger.check(
        on_disk(m.backing / "state", tmp_path / "disk-final"), [(run, 0)], "a cut after the clean stop"
    )
    m.request("thaw")
    again = Run(len(ledger.runs), tmp_path / "again.err", tmp_path / "samples-again")
    ledger.runs.append(again)
    proc = start(m, cfg, state, again)
    wait_for_log(proc, again.log, lambda t: "event=ready" in t, 60)
    assert stop_agent(proc, again.log) == 0
    clean_log(again.read(), "the start after the last cut")

    kinds = Counter(f"{r['trigger']} {r['mode']}" for r in reports)
    print(
        f"power cuts: {CUTS} cuts ({dict(sorted(kinds.items()))}; {sum(r['sealed'] == 0 for r in reports)} "
        f"before the run's first seal, {sum(r['after_clean'] for r in reports)} in the first writes after "
        f"a clean stop), {sum(r['lost_bytes'] for r in reports)} bytes thrown away "
        f"({sum(r['reached_bytes'] for r in reports)} more reached the disk in torn cuts), "
        f"{sum(r['names_undone'] for r in reports)} name changes undone; then one after a clean stop "
        f"({cut['lost_bytes']} bytes, {cut['names_undone']} name changes); "
        f"{len(ledger.logged)} batches logged sealed, all on the disk, "
        f"{ledger.unlogged} more on it that no log line named; {len(ledger.seen)} on the disk at the end; "
        f"samples lost per stream per cut: max {max(lost_all)}, mean {sum(lost_all) / len(lost_all):.2f} "
        f"(bound {BOUND}: {FLUSH_MS} ms at {INTERVAL_MS} ms); {time.monotonic() - began:.0f} s"
    )


def test_the_cuts_catch_an_agent_that_commits_without_fsync(powercut_mount, tmp_path):
    """The negative control: the same cuts on the agent with its queue at synchronous=NORMAL
    (a COMMIT that does not wait for the disk) find a batch logged sealed and lost."""
    ledger = Ledger()
    with pytest.raises(AssertionError, match=r"logged sealed by run .* is not on the disk"):
        cut_runs(powercut_mount, tmp_path, ledger, random.Random(SEED), 8, unsafe=True)
    print(f"\nthe unsafe agent lost a sealed batch at cut {len(ledger.runs) - 1}")


def test_the_filesystem_under_a_mount(powercut_mount, tmp_path):
    """The model through the kernel: reads see writes, a cut keeps only what was fsync'ed,
    and an armed cut kills the process whose call it fell on, at that call."""
    m = powercut_mount
    path = m.path / "state" / "f"
    durable = b"durable " * 1024
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    os.write(fd, durable)
    os.fsync(fd)
    os.pread(fd, len(durable), 0)  # what a page cache would now hold
    os.pwrite(fd, b"DURABLE", 0)  # in place: neither size nor time tells the kernel it changed
    os.write(fd, b"and not")
    assert os.pread(fd, 16, 0) == b"DURABLE durable " and os.fstat(fd).st_size == len(durable) + 7
    m.request("cut")
    m.request("thaw")
    # read through the descriptor opened before the cut: no page cache kept the lost bytes
    assert os.pread(fd, 16, 0) == b"durable durable " and os.fstat(fd).st_size == len(durable)
    os.close(fd)
    assert path.read_bytes() == durable == (m.backing / "state" / "f").read_bytes()
    # A writer that fsyncs after each KiB and says so afterwards: cut at its 5th fsync.
    m.request("arm", after=5, count="syncs")
    writer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                f"import os\nfd = os.open({str(path)!r}, os.O_WRONLY | os.O_TRUNC)\n"
                "for i in range(1000):\n"
                "    os.write(fd, bytes([65 + i % 26]) * 1024)\n"
                "    os.fsync(fd)\n"
                "    print(i + 1, flush=True)\n"
            ),
        ],
        stdout=subprocess.PIPE,
    )
    m.agents.append(writer)
    out, _ = writer.communicate(timeout=60)
    assert writer.returncode == -signal.SIGKILL
    assert m.request("stats")["cuts"][-1]["victim"] == writer.pid
    done = int(out.split()[-1])
    # the truncate (at open) and each KiB were durable with each fsync that returned
    assert done == 4 and (m.backing / "state" / "f").read_bytes() == b"".join(
        bytes([65 + i]) * 1024 for i in range(done)
    ), out
    m.request("thaw")
