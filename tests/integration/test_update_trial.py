"""The trial of a new release against a real Mosquitto: `update apply` of fake releases (an
edge_agent wheel whose agent is this checkout's, with a fault of its own: test_update_apply.py)
run by the launcher. A good release passes its trial; four broken ones (an import error,
never READY, a crash soon after its first seal, sealing that stops so the watchdog fires) each end
with the previous release running again, no sealed batch lost and no gap in the sequence
numbers the broker got. The time each rollback took is printed (not asserted)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import REPO, terminate, wait_for_log
from test_update_apply import NODE_ID, Node

from edge_agent.node.store import BatchStore

pytestmark = pytest.mark.broker

CONFIG = """\
node: {{id: {node}}}
flush_interval: 500ms
clock: {{hold_unsynced: 0s}}
mqtt: {{broker: "{broker}", topic_prefix: upd, reconnect: {{min: 200ms, max: 1s}}}}
sensors:
  - name: air
    type: bme680
    interval: 100ms
  - {{name: mains, type: s0, pin: 5, pulses_per_kwh: 10000, interval: 100ms, sim: {{power: 7200}}}}
"""
WATCHDOG = 8.0  # s of silence before the launcher stops an agent (the agent pings every 4 s)
TRIALS = {  # the kind: the launcher's flags for its trial, and what it fails with
    "import_error": (["--trial-window", "60", "--trial-hold", "60"], "exited with status 1"),
    "never_ready": (["--trial-window", "20", "--trial-hold", "60"], "no READY=1 within 20 s"),
    "crash": (["--trial-window", "60", "--trial-hold", "60"], "exited with status 70"),
    "stall": (["--trial-window", "60", "--trial-hold", "60"], f"no WATCHDOG=1 for {WATCHDOG:g} s"),
}


class Site:
    def __init__(self, tmp_path: Path, broker) -> None:
        self.node = Node(tmp_path / "node")
        self.cfg = tmp_path / "node.yaml"
        self.cfg.write_text(CONFIG.format(node=NODE_ID, broker=broker.url))
        self.state = self.node.state
        self.log = tmp_path / "launcher.err"
        self.out, self.tail_err = tmp_path / "tail.out", tmp_path / "tail.err"
        tail = ["tail", "--broker", broker.url, "--json", "--prefix", "upd", "--client-id", "upd-tail"]
        self.tail = subprocess.Popen(
            [sys.executable, "-m", "edge_agent.cli", *tail, "--all"],
            stdout=open(self.out, "wb"),
            stderr=open(self.tail_err, "wb"),
        )
        wait_for_log(self.tail, self.tail_err, lambda t: "event=subscribed" in t, timeout=30)
        self.proc: subprocess.Popen | None = None

    def launch(self, flags: list[str], env: dict | None = None) -> subprocess.Popen:
        argv = [sys.executable, "-m", "edge_agent.fleet.launcher", "--root", str(self.node.releases)]
        argv += ["--watchdog-sec", str(WATCHDOG), "--stop-grace", "20", *flags, "--", "run", "--simulate"]
        argv += ["--config", str(self.cfg), "--state-dir", str(self.state)]
        self.proc = subprocess.Popen(argv, env=env, stderr=open(self.log, "ab"), cwd=REPO)
        return self.proc

    def wait(self, done, timeout: float = 120) -> str:
        assert self.proc is not None
        return wait_for_log(self.proc, self.log, done, timeout=timeout)

    def stop(self) -> int:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGTERM)
        return self.proc.wait(timeout=60)

    def good_release(self) -> str:
        """0.1.0 applied and through its trial: the release to go back to."""
        self.node.apply(self.node.bundle("0.1.0"))
        name = f"0.1.0-{self.node.counter}"
        self.launch(["--trial-window", "60", "--trial-hold", "0"])
        self.wait(lambda t: f"event=trial_passed release={name}" in t)
        assert self.stop() == 0, self.log.read_text()[-3000:]
        return name

    def received(self, last: int) -> set[int]:
        deadline = time.monotonic() + 30
        while True:
            rows = [json.loads(ln) for ln in self.out.read_text().splitlines() if ln.strip()]
            got = {r["seq"] for r in rows if r["stream"] == "air"}
            if got >= set(range(last + 1)) or time.monotonic() > deadline:
                return got
            time.sleep(0.1)

    def close(self) -> None:
        """The launcher stopped (SIGTERM: it stops its agent), and any agent it left behind."""
        if self.proc is not None:
            terminate(self.proc, timeout=30)
        for pid in re.findall(r"event=started release=\S+ pid=(\d+)", self.log.read_text()):
            try:
                if str(self.node.base) in Path(f"/proc/{pid}/cmdline").read_text():
                    os.kill(int(pid), signal.SIGKILL)
            except (FileNotFoundError, ProcessLookupError):
                pass
        terminate(self.tail)


@pytest.fixture
def site(tmp_path, broker):
    s = Site(tmp_path, broker)
    yield s
    s.close()


def _no_loss(site: Site) -> tuple[int, set[int]]:
    """Every sequence number from 0 to the store's last reached the broker, and every batch
    any release logged as sealed is among them: (the last, those received)."""
    with BatchStore(str(site.state / "queue.sqlite3")) as s:
        last = s.next_seq("air") - 1
        assert s.depth()[0] == 0
    got = site.received(last)
    assert got == set(range(last + 1)), f"missing {sorted(set(range(last + 1)) - got)}"
    sealed = {int(m) for m in re.findall(r"event=batch_sealed stream=air seq=(\d+)", site.log.read_text())}
    assert sealed and sealed <= got
    # the energy total carries on across the releases, forwards and back: it never goes backwards
    rows = [json.loads(ln) for ln in site.out.read_text().splitlines() if ln.strip()]
    energy = [
        r["value"]
        for r in sorted(rows, key=lambda r: (r["seq"], r["t"]))
        if r["stream"] == "mains" and r["channel"] == "energy"
    ]
    assert len(energy) > 10 and energy == sorted(energy) and energy[-1] > energy[0], energy
    return last, got


def test_a_good_release_passes_its_trial(site):
    base = site.good_release()
    state = site.node.layout.state(base)
    assert state is not None and state["status"] == "good" and state["passed_after"] > 0
    site.node.apply(site.node.bundle("0.2.0"))
    name = f"0.2.0-{site.node.counter}"
    site.launch(["--trial-window", "60", "--trial-hold", "2"])
    text = site.wait(lambda t: f"event=trial_passed release={name}" in t)
    assert site.node.layout.state(name)["status"] == "good"  # type: ignore[index]
    assert (site.node.layout.link("current"), site.node.layout.link("previous")) == (name, base)
    m = re.search(rf"event=trial_passed release={name} seconds=([0-9.]+) delivered=(\d+)", text)
    assert m and int(m.group(2)) >= 1
    assert site.stop() == 0  # a clean stop drains the queue (checked below)
    last, _ = _no_loss(site)
    print(f"\ntrial: {name} passed after {float(m.group(1)):.1f} s, {last + 1} batches, none missing")


@pytest.mark.parametrize("kind", sorted(TRIALS))
def test_a_broken_release_ends_with_the_previous_running_and_nothing_lost(site, kind):
    flags, reason = TRIALS[kind]
    base = site.good_release()
    site.node.apply(site.node.bundle("0.2.0", kind))
    name = f"0.2.0-{site.node.counter}"
    env = dict(os.environ, EDGE_AGENT_FAULT_DELAY="1")  # the crash: 1 s after its first seal, not 20
    site.launch(flags, env=env)
    text = site.wait(lambda t: f"event=rollback_ready release={base}" in t)
    state = site.node.layout.state(name)
    assert state is not None and state["status"] == "failed" and reason in state["reason"], state
    assert site.node.layout.link("current") == base
    broken = text[text.index(f"event=started release={name}") : text.index(f"event=rolled_back from={name}")]
    if kind != "import_error":  # it ran, and sealed batches the previous release must carry on from
        assert "event=batch_sealed stream=air" in broken, broken
    # the previous release runs again: it delivers what is queued (the broken one's too)
    before = len(re.findall("event=batch_sealed", text))
    site.wait(lambda t: len(re.findall("event=batch_sealed", t)) > before + 2)
    assert site.stop() == 0  # a clean stop drains the queue (checked below)
    last, _ = _no_loss(site)
    m = re.search(r"event=rollback_ready .*since_trial_start=([0-9.]+) since_failure=([0-9.]+)", text)
    assert m
    print(
        f"\nrollback {kind}: {float(m.group(1)):.2f} s from the trial's start to the previous release's "
        f"READY ({float(m.group(2)):.2f} s from the failure); {last + 1} batches, none missing"
    )
    # refused if offered again, even with the counters gone
    (site.state / "fleet" / "counters.json").unlink()
    again = site.node.apply(site.node.base / f"0.2.0-{kind}-{site.node.counter}.tar", check=False)
    assert again.returncode == 1 and "refused (failed_release)" in again.stderr
