"""sd_notify (edge_agent/node/sdnotify.py) over a socket the test creates, the watchdog, and the
progress checks that hold its pings."""

from __future__ import annotations

import dataclasses
import os
import socket
import threading
import time

from helpers import receive

from drivers.base import Reading
from edge_agent.config import load_config
from edge_agent.node.agent import progress_checks
from edge_agent.node.sampler import Sampler
from edge_agent.node.sdnotify import Notifier, Watchdog, watchdog_interval
from edge_agent.node.store import BatchStore


def test_notifier_speaks_the_protocol(notify_socket):
    path, sock = notify_socket
    n = Notifier(path)
    assert n.ready("queue=0")
    assert sock.recv(4096).decode() == f"READY=1\nSTATUS=queue=0\nMAINPID={os.getpid()}"
    assert n.watchdog() and sock.recv(4096) == b"WATCHDOG=1"
    assert n.stopping() and sock.recv(4096) == b"STOPPING=1"
    n.close()


def test_notifier_abstract_namespace_and_absent_socket():
    name = f"edge-agent-test-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    try:
        assert Notifier("@" + name).status("hello")
        assert sock.recv(100) == b"STATUS=hello"
    finally:
        sock.close()
    assert not Notifier(None).ready("x")  # outside systemd: a no-op
    gone = Notifier("/nonexistent/notify.sock")
    assert not gone.watchdog() and gone.failures == 1


def test_watchdog_interval_from_environment():
    assert watchdog_interval({"WATCHDOG_USEC": "60000000"}) == 30.0
    assert watchdog_interval({"WATCHDOG_USEC": "4000000", "WATCHDOG_PID": str(os.getpid())}) == 2.0
    assert watchdog_interval({"WATCHDOG_USEC": "4000000", "WATCHDOG_PID": "1"}) is None
    assert watchdog_interval({}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "soon"}) is None


def test_watchdog_pings_only_while_checks_pass(notify_socket):
    path, sock = notify_socket
    healthy = {"ok": True}
    wd = Watchdog(
        Notifier(path), 1.0, [lambda now: None if healthy["ok"] else "stuck"], status=lambda: "queue=3"
    )
    assert wd.tick(100.0) == 101.0
    assert sock.recv(100) == b"WATCHDOG=1\nSTATUS=queue=3"
    assert wd.tick(100.5) == 101.0  # not due yet: nothing sent
    healthy["ok"] = False
    wd.tick(101.0)
    wd.tick(102.0)
    assert wd.pings == 1 and wd.withheld == 2
    healthy["ok"] = True
    wd.tick(103.0)
    assert wd.pings == 2
    assert receive(sock, 0.3) == ["WATCHDOG=1\nSTATUS=queue=3"]


class HangingSensor:
    """Reads normally until ``hang`` is set, then blocks like a wedged bus."""

    def __init__(self):
        self.hang = threading.Event()
        self.release = threading.Event()

    def read(self):
        if self.hang.is_set():
            self.release.wait()
        t = time.time()
        return Reading(t=t, mono=time.monotonic(), values={"temperature": 20.0})

    def close(self):
        pass


def test_a_stuck_sampler_stops_the_pings(notify_socket, tmp_path):
    path, sock = notify_socket
    base = load_config(None)
    cfg = dataclasses.replace(
        base,
        state_dir=str(tmp_path),
        flush_interval=0.2,
        sensors=(dataclasses.replace(base.sensors[0], interval=0.05),),
    )
    sensor = HangingSensor()
    wd = Watchdog(Notifier(path), 0.1, [lambda now: None])
    stop = threading.Event()

    def sampler_thread():  # the store belongs to the thread that uses it
        with BatchStore(str(tmp_path / "q.sqlite3")) as store:
            Sampler(cfg, store, lambda c: sensor).run(stop, tick=wd.tick)

    t = threading.Thread(target=sampler_thread)
    t.start()
    try:
        before = receive(sock, 0.6)
        assert before.count("WATCHDOG=1") >= 3
        sensor.hang.set()
        time.sleep(0.2)  # let an in-flight read finish and the next one wedge
        receive(sock, 0.0)
        after = receive(sock, 0.8)
        assert "WATCHDOG=1" not in after
    finally:
        stop.set()
        sensor.release.set()
        t.join(timeout=5)


def test_progress_checks_name_what_is_stuck():
    class FakeSampler:
        last_seal_cycle = 100.0

    class FakeUplink:
        alive = True
        last_tick = 100.0

        def is_alive(self):
            return self.alive

    s, u = FakeSampler(), FakeUplink()
    sealing, uplink = progress_checks(s, u, flush_interval=10.0)
    assert sealing(110.0) is None and uplink(110.0) is None
    assert "behind schedule" in sealing(126.0)
    assert "stalled" in uplink(116.0)
    u.alive = False
    assert "not running" in uplink(100.0)


def test_a_full_receiver_drops_and_counts_and_never_blocks(tmp_path):
    """A receiver that reads nothing: sendto would block once its queue is full. Each
    notification past that is dropped and counted, and sending resumes once it reads."""
    path = str(tmp_path / "slow.sock")
    rx = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    rx.bind(path)
    n = Notifier(path)
    sent, results = 0, []

    def flood():
        for _ in range(5000):
            results.append(n.status("x" * 200))

    t = threading.Thread(target=flood, daemon=True)
    t.start()
    t.join(60)  # a hang guard only: the assertions count
    try:
        assert not t.is_alive(), "notify blocked on a full receiver"
        sent = sum(results)
        assert len(results) == 5000 and 0 < sent < 5000
        assert n.dropped == 5000 - sent and n.failures == 0
        rx.setblocking(False)
        received = 0
        while True:
            try:
                rx.recv(4096)
            except BlockingIOError:
                break
            received += 1
        assert received == sent
        assert n.watchdog() and n.dropped == 5000 - sent
    finally:
        n.close()
        rx.close()
