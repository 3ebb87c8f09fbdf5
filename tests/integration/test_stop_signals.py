"""A signal stops (or reloads) the agent wherever the main thread is when it comes.

Python runs a signal handler on the main thread between two bytecodes. ``Event.wait()``
and ``Event.clear()`` hold the event's lock for a few of them; the agent's handler used to
call ``Event.set()``, which then waited for that lock forever, held by the thread it ran
on: an agent that never stopped after SIGTERM. By luck the window is rare (a bare loop of
``Event.wait(0.5 ms)`` hung 1 stop in 200; 653 random SIGTERMs of stop_soak.py, none; its
SIGHUP storm hung 5 agents in 12 and crashed 4 more, the stack ``_on_signal -> set ->
__enter__`` over and over, as each SIGHUP came inside the last one's ``set()``). Each test here delivers the signal inside
that window by events instead: a driver script holds the event's lock as Event's own methods
do and raises the signal there (``signal.raise_signal`` runs the Python handler before it
returns), then lets the agent carry on. A third delivers SIGTERM while the store is being
salvaged, before the agent ran: the default action used to kill it half-way through.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from helpers import kill_agent, stop_agent, wait_for_log

CONFIG = """\
node: {id: stop-node}
flush_interval: 300ms
mqtt: {broker: "mqtt://127.0.0.1:9"}
sensors:
  - name: air
    type: bme680
    interval: 100ms
    heater: {duration: 30ms}
    channels: {temperature: {deadband: 0}}
"""

# Run as a script: argv = (mode, config, state dir). Patches one agent's events so the
# signal lands inside the event's lock, then runs `edge-agent run` in this process.
DRIVER = """\
import signal, sys
from edge_agent.cli import main
from edge_agent.node import agent, store_salvage

mode, config, state = sys.argv[1:]

def in_lock(event, signum, work=lambda: None):
    # What Event.wait() and Event.clear() do around their work: hold the event's lock.
    with event._cond:
        work()
        print(f"raising {signum} inside the lock", file=sys.stderr, flush=True)
        signal.raise_signal(signum)  # the Python handler runs before this returns
    print("lock released", file=sys.stderr, flush=True)

run = agent.Agent.run

def patched_run(self):
    if mode == "wait":  # SIGTERM inside the sampler's stop_event.wait(), once
        wait, fired = self.stop_event.wait, []
        def wait_in_lock(timeout=None):
            if not fired:
                fired.append(1)
                in_lock(self.stop_event, signal.SIGTERM)
            return wait(timeout)
        self.stop_event.wait = wait_in_lock
    elif mode == "clear":  # SIGHUP inside a reload's reload_event.clear(), once
        clear, fired, ev = self.reload_event.clear, [], self.reload_event
        def clear_in_lock():
            if fired:
                return clear()
            fired.append(1)
            in_lock(ev, signal.SIGHUP, lambda: setattr(ev, "_flag", False))  # Event.clear()'s work
        self.reload_event.clear = clear_in_lock
    return run(self)

agent.Agent.run = patched_run
if mode == "salvage":  # SIGTERM while a damaged store's counters go into a fresh one
    prepare = store_salvage.prepare
    def prepare_signalled(*args):
        print("raising SIGTERM in the salvage", file=sys.stderr, flush=True)
        signal.raise_signal(signal.SIGTERM)
        return prepare(*args)
    store_salvage.prepare = prepare_signalled
sys.exit(main(["run", "--simulate", "--config", config, "--state-dir", state]))
"""


def start(tmp_path, mode: str) -> tuple[subprocess.Popen, object]:
    (tmp_path / "driver.py").write_text(DRIVER)
    (tmp_path / "node.yaml").write_text(CONFIG)
    state = tmp_path / "state"
    if mode == "salvage":
        state.mkdir(mode=0o700)
        (state / "queue.sqlite3").write_bytes(b"not a database" * 1000)
    err = tmp_path / "agent.err"
    with open(err, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, str(tmp_path / "driver.py"), mode, str(tmp_path / "node.yaml"), str(state)],
            stderr=log,
        )
    return proc, err


def exit_code(proc: subprocess.Popen, err) -> int:
    """The agent's exit after a stop it was already told of; a hang fails with its stacks."""
    try:
        return proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"no stop within 60 s:\n{kill_agent(proc, err)}") from None


def test_sigterm_inside_the_stop_events_wait_stops_the_agent(tmp_path):
    proc, err = start(tmp_path, "wait")
    try:
        code = exit_code(proc, err)
    finally:
        kill_agent(proc, err)
    log = err.read_text()
    assert "raising 15 inside the lock" in log and "lock released" in log, log
    assert code == 0 and "event=stop " in log, log


def test_sighup_inside_a_reloads_clear_reloads_and_sigterm_still_stops(tmp_path):
    proc, err = start(tmp_path, "clear")
    try:
        wait_for_log(proc, err, lambda text: "event=ready" in text)
        os.kill(proc.pid, signal.SIGHUP)
        # the reload whose clear() took the second SIGHUP, and the one that SIGHUP asked for
        wait_for_log(proc, err, lambda text: text.count("event=reloaded") >= 2, timeout=60)
        assert stop_agent(proc, err) == 0
    finally:
        kill_agent(proc, err)
    log = err.read_text()
    assert "raising 1 inside the lock" in log and "event=stop " in log, log


def test_sigterm_during_the_salvage_stops_the_agent_after_it(tmp_path):
    proc, err = start(tmp_path, "salvage")
    try:
        code = exit_code(proc, err)
    finally:
        kill_agent(proc, err)
    log = err.read_text()
    assert "raising SIGTERM in the salvage" in log, log
    assert code == 0, log  # not -15: the default action, before the agent had a handler
    assert "event=store_recovered" in log and "event=stop " in log, log
