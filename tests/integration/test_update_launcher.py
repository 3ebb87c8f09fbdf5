"""edge_agent/fleet/launcher.py with fake agents (small scripts that speak sd_notify): a trial
passes on READY and a first delivered batch; an exit, no READY, nothing delivered or silence
of the watchdog fails it, marks the release failed and runs the previous one; what the agent
sends goes on to systemd's socket. The real agent's trials: integration/test_update_trial.py."""

from __future__ import annotations

import ast
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import REPO, receive, require_tool, terminate, wait_for_log

from edge_agent.fleet.release import Layout

UNIT = REPO / "systemd" / "edge-agent-launcher.service"

FAKE = """\
#!{python}
import os, signal, socket, sys, time
KIND = {kind!r}
sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
def send(*fields):
    sock.sendto("\\n".join(fields).encode(), os.environ["NOTIFY_SOCKET"])
stop = []
signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
with open(os.environ["MARK"], "a") as f:
    f.write(os.environ["EDGE_AGENT_RELEASE"] + "\\n")
if KIND == "exit":
    sys.exit(3)
if KIND != "never_ready":
    send("READY=1", "STATUS=queue=0, delivered=0", "MAINPID=%d" % os.getpid())
n = 0
while not stop:
    n += 1
    if not (KIND == "silent" and n > 3):
        send("WATCHDOG=1", "STATUS=queue=0, delivered=%d" % (0 if KIND in ("no_delivery", "silent") else n))
    time.sleep(0.1)
    if KIND == "clean_exit" and n == 10:
        sys.exit(0)
send("STOPPING=1")
"""

REASONS = {
    "exit": "exited with status 3",
    "never_ready": "no READY=1 within 4 s",
    "no_delivery": "no batch delivered (delivered=0) within 4 s",
    "silent": "no WATCHDOG=1 for 1 s",
}


def fake(path: Path, kind: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(FAKE.format(python=sys.executable, kind=kind))
    path.chmod(0o755)


def release(layout: Layout, name: str, kind: str, **state) -> None:
    fake(layout.release(name) / "venv" / "bin" / "edge-agent", kind)
    if state:
        layout.write_state(name, version=name.split("-")[0], **state)


class Run:
    def __init__(self, tmp_path: Path, notify_socket, extra: tuple[str, ...] = ()) -> None:
        self.layout = Layout(tmp_path / "releases")
        self.mark = tmp_path / "started"
        self.log = tmp_path / "launcher.err"
        self.base = tmp_path / "base" / "edge-agent"
        fake(self.base, "good")
        self.sock = notify_socket[1]
        self.env = dict(
            os.environ, NOTIFY_SOCKET=notify_socket[0], WATCHDOG_USEC="2000000", MARK=str(self.mark)
        )
        self.argv = [sys.executable, "-m", "edge_agent.fleet.launcher", "--root", str(self.layout.root)]
        self.argv += ["--base", str(self.base), "--trial-window", "4", "--trial-hold", "0.5"]
        self.argv += ["--watchdog-sec", "1", "--stop-grace", "2", *extra, "--", "run"]
        self.proc: subprocess.Popen | None = None

    def start(self) -> subprocess.Popen:
        self.proc = subprocess.Popen(self.argv, env=self.env, stderr=open(self.log, "ab"), cwd=REPO)
        return self.proc

    def wait(self, text: str) -> str:
        assert self.proc is not None
        return wait_for_log(self.proc, self.log, lambda t: text in t, timeout=60)

    def stop(self) -> int:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGTERM)
        return self.proc.wait(timeout=30)

    def started(self) -> list[str]:
        return self.mark.read_text().split()


@pytest.fixture
def run(tmp_path, notify_socket):
    r = Run(tmp_path, notify_socket)
    yield r
    if r.proc is not None:
        terminate(r.proc, timeout=20)  # SIGTERM: the launcher stops its fake agent


def test_a_trial_passes_on_ready_and_a_delivered_batch_and_the_status_goes_on(run):
    release(run.layout, "0.1.0-1", "good", status="good")
    release(run.layout, "0.2.0-2", "good", status="trial", tries_left=1)
    run.layout.switch("0.1.0-1")
    run.layout.switch("0.2.0-2")
    run.start()
    run.wait("event=trial_passed release=0.2.0-2")
    state = run.layout.state("0.2.0-2")
    assert state is not None and state["status"] == "good" and state["tries_left"] == 0
    messages = receive(run.sock, 1.5)
    assert run.stop() == 0
    messages += receive(run.sock, 0.5)
    fields = [f for m in messages for f in m.split("\n")]
    assert "READY=1" in fields and "STOPPING=1" in fields
    assert any(f.startswith("STATUS=0.2.0-2: queue=0, delivered=") for f in fields), fields
    assert not [f for f in fields if f.startswith("MAINPID=")]  # the launcher is the main process
    assert "WATCHDOG=1" in fields  # the launcher's own while the agent starts, then the agent's
    assert run.started() == ["0.2.0-2"]


@pytest.mark.parametrize("kind", sorted(REASONS))
def test_a_failed_trial_marks_the_release_failed_and_runs_the_previous(run, kind):
    release(run.layout, "0.1.0-1", "good", status="good")
    release(run.layout, "0.2.0-2", kind, status="trial", tries_left=1)
    run.layout.switch("0.1.0-1")
    run.layout.switch("0.2.0-2")
    run.start()
    text = run.wait("event=rollback_ready release=0.1.0-1")
    state = run.layout.state("0.2.0-2")
    assert state is not None and state["status"] == "failed"
    assert REASONS[kind] in state["reason"], state
    assert f"event=trial_failed release=0.2.0-2 reason='{REASONS[kind]}" in text
    assert run.layout.link("current") == "0.1.0-1"
    assert run.stop() == 0
    assert run.started() == ["0.2.0-2", "0.1.0-1"]
    run.start()  # and the next start of the service never tries it again
    run.wait("event=child_ready release=0.1.0-1")
    assert run.stop() == 0
    assert run.started() == ["0.2.0-2", "0.1.0-1", "0.1.0-1"]


def test_an_interrupted_trial_counts_as_failed(run):
    release(run.layout, "0.1.0-1", "good", status="good")
    release(run.layout, "0.2.0-2", "good", status="trial", tries_left=0)  # spent, never passed
    run.layout.switch("0.1.0-1")
    run.layout.switch("0.2.0-2")
    run.start()
    run.wait("event=child_ready release=0.1.0-1")
    assert run.stop() == 0
    assert run.started() == ["0.1.0-1"]
    state = run.layout.state("0.2.0-2")
    assert state is not None and state["status"] == "failed" and "interrupted" in state["reason"]


def test_a_failed_first_release_goes_back_to_the_base_agent(run):
    release(run.layout, "0.2.0-2", "exit", status="trial", tries_left=1)
    run.layout.switch("0.2.0-2")
    run.start()
    run.wait("event=rollback_ready release=base")
    assert run.layout.link("current") is None
    assert run.stop() == 0
    assert run.started() == ["0.2.0-2", "base"]


def test_a_good_release_that_falls_silent_is_stopped_and_the_launcher_exits_1(run):
    release(run.layout, "0.1.0-1", "silent", status="good")
    run.layout.switch("0.1.0-1")
    proc = run.start()
    assert proc.wait(timeout=60) == 1
    text = run.log.read_text()
    assert "event=release_died release=0.1.0-1 reason='no WATCHDOG=1 for 1 s'" in text
    assert run.layout.state("0.1.0-1")["status"] == "good"  # type: ignore[index]  # systemd restarts it


def test_the_launcher_imports_only_the_standard_library_and_release():
    code = (
        "import sys, edge_agent.fleet.launcher; "
        "print(sorted(m for m in sys.modules if m.startswith('edge_agent') or m.startswith('nacl')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert ast.literal_eval(out.stdout) == [
        "edge_agent",
        "edge_agent.fleet",
        "edge_agent.fleet.launcher",
        "edge_agent.fleet.release",
    ]


def test_a_bad_flag_is_refused_without_a_traceback():
    out = subprocess.run(
        [sys.executable, "-m", "edge_agent.fleet.launcher", "--watchdog-sec", "0"],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert out.returncode == 2 and "--watchdog-sec must be a number of seconds above 0, got 0" in out.stderr
    assert "Traceback" not in out.stderr


def test_systemd_analyze_passes_the_launcher_unit(tmp_path):
    binary = require_tool("systemd-analyze", "the systemd package")
    out = subprocess.run([binary, "security", "--offline=true", str(UNIT)], capture_output=True, text=True)
    m = re.search(r"Overall exposure level for edge-agent-launcher\.service: ([0-9.]+)", out.stdout)
    assert m and float(m.group(1)) <= 1.5, out.stdout + out.stderr
    unit = tmp_path / "edge-agent-launcher.service"
    unit.write_text(UNIT.read_text().replace("/opt/edge-agent/bin/python", sys.executable))
    out = subprocess.run([binary, "verify", str(unit)], capture_output=True, text=True)
    assert out.returncode == 0 and not (out.stdout + out.stderr).strip(), out.stdout + out.stderr


def test_an_agent_does_not_outlive_a_killed_launcher(run):
    release(run.layout, "0.1.0-1", "good", status="good")
    run.layout.switch("0.1.0-1")
    proc = run.start()
    text = run.wait("event=child_ready release=0.1.0-1")
    pid = int(re.search(r"event=started release=0.1.0-1 pid=(\d+)", text).group(1))  # type: ignore[union-attr]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # PR_SET_PDEATHSIG: it is sent SIGTERM and stops
        try:
            if Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z"):
                break  # exited, not yet reaped by whoever adopted it
        except FileNotFoundError:
            break
        time.sleep(0.05)
    else:
        os.kill(pid, signal.SIGKILL)
        raise AssertionError("the agent outlived its launcher")


def test_a_clean_exit_is_followed_by_current_at_once_but_not_in_a_loop(run):
    # the restart command (and after an update, the new current): the launcher starts current
    # again itself; an agent that keeps exiting 0 is left to systemd's RestartSec instead
    release(run.layout, "0.1.0-1", "clean_exit", status="good")
    run.layout.switch("0.1.0-1")
    run.start()
    text = run.wait("event=release_died")
    assert run.proc is not None and run.proc.wait(timeout=30) == 1
    assert text.count("event=child_exited release=0.1.0-1") == 1
    assert run.started() == ["0.1.0-1", "0.1.0-1"]
