"""The launcher: the service's main process, which runs ``current``'s ``edge-agent run`` and
never runs the new code itself (the standard library and edge_agent.fleet.release only; it is
run by the base image's interpreter: ``python3 -m edge_agent.fleet.launcher``).

It gives the agent a notify socket of its own (a datagram socket in a 0700 folder) and reads
``READY=1``, ``STATUS=`` and ``WATCHDOG=1`` from it; they go on to systemd's socket when there is
one (not ``MAINPID=``: the launcher is the main process). Until the agent is READY, and while it
stops, the launcher pings systemd's watchdog itself; then the agent's own pings go on, so
systemd's watchdog (longer than ``--watchdog-sec`` plus ``--stop-grace``) is a second guard.

A release in ``trial`` (one try, spent durably before it starts: a kill of the launcher or a
power cut during the trial counts as a failure) passes when it has sent ``READY=1`` and a STATUS
with ``delivered=N``, N >= 1, within ``--trial-window`` seconds, and has run ``--trial-hold``
seconds without exiting or falling silent. Then it is marked ``good``. Otherwise (an exit, a
crash, no READY, nothing delivered, no WATCHDOG=1 for ``--watchdog-sec``) it is stopped, marked
``failed`` with the reason (never tried again), ``current`` goes back to ``previous`` (or, with
none, to the base image's agent) and that is started. A good release that exits 0 on its own
(the ``restart`` command; after an ``update``, into the new release's trial) is followed by
``current`` again, unless it did so within ``CLEAN_EXITS_APART`` of the last time; one that fails or falls silent is stopped and the
launcher exits 1: systemd starts it again.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from edge_agent.fleet.release import NAME_ENV, ROOT_ENV, Layout

log = logging.getLogger("edge_agent.launcher")

ROOT = "/var/lib/edge-agent-releases"
_DELIVERED = re.compile(r"\bdelivered=(\d+)")
CLEAN_EXITS_APART = 60.0  # s: a second exit 0 sooner than this after one is not followed at once


class Upstream:
    """systemd's notify socket (a no-op without one), and its watchdog's interval."""

    def __init__(self, env: dict[str, str]) -> None:
        address = env.get("NOTIFY_SOCKET") or None
        self.address = ("\0" + address[1:] if address.startswith("@") else address) if address else None
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) if self.address else None
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID")
        ok = usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid()))
        self.interval = int(usec) / 2e6 if ok else None
        self.next_ping = 0.0

    def send(self, *fields: str) -> None:
        if self.sock is not None and self.address is not None and fields:
            try:
                self.sock.sendto("\n".join(fields).encode(), socket.MSG_DONTWAIT, self.address)
            except OSError as exc:
                log.warning("event=sd_notify_failed error=%r", str(exc))

    def tick(self, now: float) -> None:
        """WATCHDOG=1 to systemd from the launcher itself (while no agent is up to ping)."""
        if self.interval is not None and now >= self.next_ping:
            self.send("WATCHDOG=1")
            self.next_ping = now + self.interval


class Signals:
    def __init__(self) -> None:
        self.stop: int | None = None
        self.hups = 0
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        signal.signal(signal.SIGHUP, self._hup)

    def _stop(self, signum: int, frame: object) -> None:
        self.stop = signum

    def _hup(self, signum: int, frame: object) -> None:
        self.hups += 1


class Outcome:
    def __init__(self, kind: str, reason: str = "", code: int = 0) -> None:
        # "stopped" (asked to), "failed" (its trial), "died" (after its trial), "exited" (status 0,
        # on its own, after its trial: the restart command; the current release runs again)
        self.kind = kind
        self.reason = reason
        self.code = code


def _describe(rc: int) -> str:
    return f"killed by signal {-rc}" if rc < 0 else f"exited with status {rc}"


def _end(proc: subprocess.Popen, first: int, grace: float) -> None:
    """``first`` (SIGTERM: seal and close; SIGABRT: a hung one, stacks into its log), then
    SIGKILL after ``grace`` seconds; by its pid."""
    if proc.poll() is None:
        os.kill(proc.pid, first)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


def _dies_with_parent() -> Callable[[], None]:
    """For the child, between fork and exec: SIGTERM when the launcher dies
    (PR_SET_PDEATHSIG), so no agent outlives it, in systemd's cgroup or outside one."""
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return lambda: None
    return lambda: prctl(1, int(signal.SIGTERM))  # 1: PR_SET_PDEATHSIG; a failure is ignored


class Launcher:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.layout = Layout(args.root)
        self.upstream = Upstream(dict(os.environ))
        self.signals = Signals()
        self.folder = tempfile.mkdtemp(prefix="edge-agent-launcher-", dir=os.environ.get("RUNTIME_DIRECTORY"))
        self.path = os.path.join(self.folder, "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.setblocking(False)
        self.rollback_at: float | None = None  # monotonic time of the last failed trial
        self.preexec = _dies_with_parent()
        self.trial_at = 0.0  # and when that trial had started
        self.clean_exit_at = -CLEAN_EXITS_APART  # monotonic: the last exit 0 followed at once

    def close(self) -> None:
        self.sock.close()
        shutil.rmtree(self.folder, ignore_errors=True)

    def choose(self) -> tuple[str | None, bool]:
        """(the release to run, None for the base image's; whether it is on trial). A failed
        release, or a trial already tried, sends ``current`` back to ``previous``."""
        name = self.layout.link("current")
        while name is not None:
            try:
                state = self.layout.state(name)
            except ValueError as exc:
                state, why = None, f"its state cannot be read ({exc})"
            else:
                why = "it is incomplete (no release.json)"
            if state is not None:
                if state["status"] == "good":
                    return name, False
                if state["status"] == "trial" and int(state.get("tries_left", 0)) >= 1:
                    return name, True
                if state["status"] == "trial":
                    why = "its trial was interrupted (the launcher stopped or the power went)"
                    self.layout.mark_failed(name, why)
                    log.error("event=trial_failed release=%s reason=%r", name, why)
                else:
                    why = f"it failed its trial ({state.get('reason', '?')})"
            log.error("event=release_refused release=%s reason=%r (never tried again)", name, why)
            name = self._back()
        return None, False

    def _back(self) -> str | None:
        failed = self.layout.link("current")
        try:
            name: str | None = self.layout.rollback()
        except ValueError:
            self.layout.retire()
            name = None
        log.warning("event=rolled_back from=%s to=%s", failed, name or "base")
        return name

    def executable(self, name: str | None) -> str:
        if name is None:
            return self.args.base
        return str(self.layout.release(name) / "venv" / "bin" / "edge-agent")

    def child_env(self, name: str | None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("WATCHDOG_PID", "WATCHDOG_USEC")}
        env["NOTIFY_SOCKET"] = self.path
        env["WATCHDOG_USEC"] = str(int(self.args.watchdog_sec * 1e6))
        env[NAME_ENV] = name or "base"
        env[ROOT_ENV] = str(self.layout.root)
        return env

    def _messages(self) -> list[list[str]]:
        out: list[list[str]] = []
        while True:
            try:
                data = self.sock.recv(4096)
            except BlockingIOError:
                return out
            out.append(data.decode("utf-8", "replace").split("\n"))

    def supervise(self, name: str | None, trial: bool) -> Outcome:
        a, label = self.args, name or "base"
        t0 = time.monotonic()
        self._messages()  # what an earlier child left unread is not this one's
        try:
            proc = subprocess.Popen(
                [self.executable(name), *a.command], env=self.child_env(name), preexec_fn=self.preexec
            )
        except OSError as exc:
            return Outcome("failed" if trial else "died", f"cannot start: {exc.strerror or exc}")
        log.info("event=started release=%s pid=%d trial=%s", label, proc.pid, str(trial).lower())
        ready, delivered, last_ping, passed, stopping = False, 0, t0, not trial, False
        hups = self.signals.hups
        while True:
            now = time.monotonic()
            if not ready or stopping:
                self.upstream.tick(now)  # its own pings while an agent starts or stops
            if self.signals.stop is not None and not stopping:
                stopping = True
                os.kill(proc.pid, signal.SIGTERM)
            if self.signals.hups != hups:
                hups = self.signals.hups
                os.kill(proc.pid, signal.SIGHUP)
            try:
                select.select([self.sock], [], [], 0.2)
            except InterruptedError:
                pass
            for fields in self._messages():
                forward = [f for f in fields if f and not f.startswith("MAINPID=")]
                for f in fields:
                    if f == "READY=1" and not ready:
                        ready, last_ping = True, time.monotonic()
                        self._ready(label, t0)
                    elif f == "WATCHDOG=1":
                        last_ping = time.monotonic()
                    elif f.startswith("STATUS=") and (m := _DELIVERED.search(f)):
                        delivered = max(delivered, int(m.group(1)))
                forward = [f"STATUS={label}: {f[7:]}" if f.startswith("STATUS=") else f for f in forward]
                if "WATCHDOG=1" in forward and not ready:
                    forward.remove("WATCHDOG=1")  # not before READY: the launcher's own count then
                self.upstream.send(*forward)
            rc = proc.poll()
            now = time.monotonic()
            if rc is not None:
                if stopping:
                    log.info("event=stopped release=%s %s", label, _describe(rc))
                    return Outcome("stopped", code=0 if rc in (0, -signal.SIGTERM) else 1)
                if rc == 0 and passed and now - self.clean_exit_at >= CLEAN_EXITS_APART:
                    self.clean_exit_at = now  # (an agent that keeps exiting: systemd paces it)
                    return Outcome("exited", f"exited with status 0 after {now - t0:.1f} s")
                return Outcome("died" if passed else "failed", _describe(rc) + f" after {now - t0:.1f} s")
            if stopping:
                continue
            why, first = None, signal.SIGTERM
            if not ready and now - t0 > a.trial_window:
                why = f"no READY=1 within {a.trial_window:g} s"
            elif not passed and now - t0 > a.trial_window and delivered < 1:
                why = f"no batch delivered (delivered=0) within {a.trial_window:g} s"
            elif ready and now - last_ping > a.watchdog_sec:
                why, first = f"no WATCHDOG=1 for {a.watchdog_sec:g} s", signal.SIGABRT
            if why is not None:
                log.error("event=child_stopped release=%s reason=%r", label, why)
                _end(proc, first, a.stop_grace)
                return Outcome("died" if passed else "failed", why)
            if not passed and ready and delivered >= 1 and now - t0 >= a.trial_hold:
                passed = True
                assert name is not None
                self.layout.write_state(name, status="good", passed_after=round(now - t0, 2))
                log.info("event=trial_passed release=%s seconds=%.2f delivered=%d", name, now - t0, delivered)

    def _ready(self, label: str, t0: float) -> None:
        now = time.monotonic()
        if self.rollback_at is not None:
            log.info(
                "event=rollback_ready release=%s since_trial_start=%.2f since_failure=%.2f "
                "start_to_ready=%.2f",
                label,
                now - self.trial_at,
                now - self.rollback_at,
                now - t0,
            )
            self.rollback_at = None
        else:
            log.info("event=child_ready release=%s start_to_ready=%.2f", label, now - t0)

    def run(self) -> int:
        while True:
            name, trial = self.choose()
            if name is None and not self.args.base:
                log.error("event=nothing_to_run reason='no current release and no --base agent'")
                return 2
            if trial:
                assert name is not None
                self.layout.write_state(name, tries_left=0)  # the try is spent before it starts
                self.trial_at = time.monotonic()
            out = self.supervise(name, trial)
            if out.kind == "stopped":
                return out.code
            if out.kind == "exited":  # its restart command (after an update: the new current)
                log.info(
                    "event=child_exited release=%s reason=%r: current started again",
                    name or "base",
                    out.reason,
                )
                continue
            if out.kind == "died":
                log.error("event=release_died release=%s reason=%r", name or "base", out.reason)
                return 1
            if name is None:  # the base agent does not start: systemd tries again
                log.error("event=base_failed reason=%r", out.reason)
                return 1
            self.rollback_at = time.monotonic()
            self.layout.mark_failed(name, out.reason)
            log.error("event=trial_failed release=%s reason=%r", name, out.reason)
            self._back()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="edge-agent-launcher",
        description="run the current release's agent; try a new release and roll it back if it fails",
    )
    p.add_argument("--root", default=ROOT, help=f"the releases (default {ROOT})")
    p.add_argument(
        "--base",
        default=str(Path(sys.executable).with_name("edge-agent")),
        help="the base image's edge-agent, run when there is no current release "
        "(default: the one beside this interpreter)",
    )
    p.add_argument(
        "--trial-window",
        type=float,
        default=120.0,
        metavar="S",
        help="READY and a first delivered batch within S seconds (default 120)",
    )
    p.add_argument(
        "--trial-hold",
        type=float,
        default=30.0,
        metavar="S",
        help="and run at least S seconds without exiting or falling silent (default 30)",
    )
    p.add_argument(
        "--watchdog-sec",
        type=float,
        default=60.0,
        metavar="S",
        help="stop an agent whose WATCHDOG=1 pings stop for S seconds (default 60)",
    )
    p.add_argument(
        "--stop-grace",
        type=float,
        default=10.0,
        metavar="S",
        help="from SIGTERM (or SIGABRT) to SIGKILL when the launcher stops an agent (default 10)",
    )
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- and the agent's arguments (run ...)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command[:1] == ["--"]:
        args.command = args.command[1:]
    if not args.command:
        args.command = ["run"]
    for flag in ("trial_window", "trial_hold", "watchdog_sec", "stop_grace"):
        value, least = getattr(args, flag), 0.0 if flag == "trial_hold" else 1e-3
        if not value >= least or value == float("inf"):
            print(
                f"edge-agent-launcher: --{flag.replace('_', '-')} must be a number of seconds "
                f"{'0 or more' if least == 0 else 'above 0'}, got {value:g}",
                file=sys.stderr,
            )
            return 2
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="edge-agent-launcher: %(message)s")
    launcher = Launcher(args)
    try:
        return launcher.run()
    finally:
        launcher.close()


if __name__ == "__main__":
    sys.exit(main())
