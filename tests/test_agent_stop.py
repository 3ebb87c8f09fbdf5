"""The agent's stop, in this process: every wait in it bounded or woken by the stop, and the
store closed last (against a whole agent under signals: integration/test_stop_signals.py).

Each agent here is told to stop before it runs, so ``run()`` brings the sensors up, seals
nothing and goes straight to the stop; the broker is a closed port on 127.0.0.1. Where a
part is made to hang, it hangs on an event this test sets at its end; a guard sets it after
a generous minute, so a stop that waited for it fails instead of hanging the suite.
"""

from __future__ import annotations

import logging
import re
import signal
import threading

import pytest
from helpers import REPO

from edge_agent.config import load_config
from edge_agent.node import agent as agent_mod
from edge_agent.node.agent import STOP_BOUND, Agent, uplink_stop_bound
from edge_agent.node.delivery import Deleter
from edge_agent.node.store import BatchStore
from edge_agent.node.uplink import Uplink

CONFIG = """\
node: {{id: stop-node}}
flush_interval: 1s
state_dir: {state}
mqtt: {{broker: "mqtt://127.0.0.1:9"}}
sensors:
  - name: air
    type: bme680
    interval: 100ms
    heater: {{duration: 30ms}}
"""

GUARD = 60.0  # s before a hung part is let go, so the test fails rather than hangs
SEALS_MARGIN = 5.0  # s for the seals of what is open at a stop, before the bounded part


@pytest.fixture
def cfg(tmp_path):
    path = tmp_path / "node.yaml"
    path.write_text(CONFIG.format(state=tmp_path / "state"))
    return load_config(path)


@pytest.fixture
def release():
    """An event the parts made to hang wait on; set at the end, or by the guard."""
    ev = threading.Event()
    guard = threading.Timer(GUARD, ev.set)
    guard.start()
    yield ev
    ev.set()
    guard.cancel()


def test_the_store_closes_after_the_uplink_and_its_deleter_have_ended(cfg, monkeypatch):
    """The open marker's DELETE needs the write lock: taken while the deleter could still
    hold it, it waited out SQLite's busy timeout. Closed last, nobody else writes."""
    seen: list[tuple[bool, bool]] = []
    close = BatchStore.close

    def recording_close(self):
        if self is agent.store:
            seen.append((agent.uplink.is_alive(), agent.uplink.deleter.is_alive()))
        close(self)

    monkeypatch.setattr(BatchStore, "close", recording_close)
    before = {s: signal.getsignal(s) for s in agent_mod.SIGNALS}
    agent = Agent(cfg, simulate=True)
    agent.stop_event.set()
    assert agent.run() == 0
    assert seen == [(False, False)]
    assert not agent.signals.thread.is_alive()
    assert {s: signal.getsignal(s) for s in agent_mod.SIGNALS} == before


def test_an_uplink_that_never_ends_does_not_hold_the_stop(cfg, monkeypatch, release, caplog):
    """A connection attempt stuck where no timeout of ours reaches (a DNS lookup, a TLS
    handshake that trickles): the agent waits its bound, says so, and stops."""
    entered = threading.Event()

    def stuck_run(self):
        entered.set()
        release.wait()

    monkeypatch.setattr(Uplink, "run", stuck_run)
    monkeypatch.setattr(agent_mod, "uplink_stop_bound", lambda drain: 0.1)
    agent = Agent(cfg, simulate=True)
    agent.stop_event.set()
    with caplog.at_level(logging.ERROR, logger="edge_agent.service"):
        assert agent.run() == 0
    assert entered.is_set() and not release.is_set()  # stopped while the uplink still hung
    assert agent.uplink.is_alive()
    assert "event=uplink_stop_timeout" in caplog.text


def test_the_uplink_ends_while_its_deleter_is_stuck(tmp_path, monkeypatch, release):
    """The uplink used to join its deleter without a bound; one stuck in a transaction (SQLite's
    busy wait, a card that stalls) kept the uplink, and so the agent, from ending."""
    from uplink_node import make_uplink

    in_delete = threading.Event()

    def stuck_deleter(self):
        in_delete.set()
        release.wait()

    monkeypatch.setattr(Deleter, "run", stuck_deleter)
    monkeypatch.setattr(Deleter, "STOP", 0.1)
    up, _ = make_uplink(tmp_path, "mqtt://127.0.0.1:9")
    up.start()
    assert in_delete.wait(GUARD)
    up.stop(drain_timeout=0.0)
    up.join(GUARD)
    assert not up.is_alive() and not release.is_set()
    assert up.deleter.is_alive()  # left behind, a daemon


def test_an_idle_deleter_wakes_for_the_stop(tmp_path):
    """Its wait for requests has no timeout: the stop's None is what ends it."""
    path = str(tmp_path / "q.sqlite3")
    BatchStore(path).close()
    d = Deleter(path)
    d.start()
    assert d.finish(GUARD)
    assert not d.is_alive()


def test_a_deleter_never_started_finishes_at_once(tmp_path):
    assert Deleter(str(tmp_path / "q.sqlite3")).finish(GUARD)


def test_the_stop_bound_covers_each_part():
    assert uplink_stop_bound(5.0) >= 10.0 + 2.0 + Deleter.STOP  # an attempt, offline, deleter
    assert STOP_BOUND >= uplink_stop_bound(agent_mod.DRAIN_TIMEOUT) + BatchStore.CLOSE_BUSY


def test_systemd_waits_for_the_whole_stop_before_it_kills():
    """TimeoutStopSec: SIGKILL after it. The stop's bound, and a margin for the final seals
    before it (a transaction each, fsync'ed, on an SD card)."""
    text = (REPO / "systemd" / "edge-agent.service").read_text()
    m = re.search(r"^TimeoutStopSec=(\d+)s$", text, re.M)
    assert m is not None
    assert int(m.group(1)) >= STOP_BOUND + SEALS_MARGIN


def test_a_queue_full_at_the_start_leaves_the_uplink_and_its_watch_until_it_opens(cfg, monkeypatch):
    """The store cannot open (a full disk: store_pending): the agent is made all the same,
    its watchdog watches the sealing only (an uplink not started is not a stalled one), its
    status says so; once the queue opens, the uplink starts and is watched; a stop before
    that stops an uplink that never ran."""
    from edge_agent.errors import DiskFullError
    from edge_agent.node.store_pending import UnopenedStore

    real = agent_mod.BatchStore
    full = [True]

    def opening(*args, **kwargs):
        if full[0]:
            raise DiskFullError("the disk is full; the queue is kept as it is")
        return real(*args, **kwargs)

    monkeypatch.setattr(agent_mod, "BatchStore", opening)
    monkeypatch.setattr("edge_agent.node.store_pending.BatchStore", opening)
    agent = Agent(cfg, simulate=True)
    assert isinstance(agent.store, UnopenedStore)
    agent._watch()
    assert len(agent.watchdog.checks) == 1 and "not open" in agent.status()
    agent._open_store(agent.next_store_try)  # still full
    assert isinstance(agent.store, UnopenedStore) and agent.uplink.ident is None
    full[0] = False
    agent._open_store(agent.next_store_try)
    assert isinstance(agent.store, real) and agent.sampler.store is agent.store
    assert agent.uplink.is_alive() and len(agent.watchdog.checks) == 2
    agent.stop_event.set()
    assert agent.run() == 0

    full[0] = True
    agent = Agent(cfg, simulate=True)
    agent.stop_event.set()
    assert agent.run() == 0 and agent.uplink.ident is None  # stopped, the queue never opened
