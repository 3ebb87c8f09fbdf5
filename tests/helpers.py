"""Helpers that tests share (not fixtures: those are in conftest.py): the repository root,
host tools, free ports, a mosquitto process, and running the agent's CLI as a subprocess."""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BROKER_USER = "tail-user"


def missing(reason: str) -> None:
    """A missing tool: a loud skip, or a failure where CI requires the tools."""
    if os.environ.get("EDGE_AGENT_REQUIRE_BROKER") == "1":
        pytest.fail(reason + "; EDGE_AGENT_REQUIRE_BROKER=1 makes this a failure")
    print(f"\n*** SKIPPING: {reason} ***", file=sys.stderr)
    pytest.skip(reason)


def require_tool(name: str, package: str) -> str:
    """The path of a host tool the test needs (`make test` installs its Debian package)."""
    path = shutil.which(name) or next(
        (p for p in (f"/usr/bin/{name}", f"/usr/sbin/{name}") if os.access(p, os.X_OK)), None
    )
    if path is None:
        missing(f"{name} is not installed ({package}; `make test` installs it with apt-get as root)")
    return path


def find_mosquitto() -> str | None:
    return shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if os.access(p, os.X_OK)), None
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    """One mosquitto process on 127.0.0.1:port; stop() and start() again on the same port."""

    def __init__(self, binary: str, workdir: Path, listener_options: str = "") -> None:
        self.binary = binary
        self.port = free_port()
        self.conf = workdir / "mosquitto.conf"
        # Persistence (saved on SIGTERM) keeps sessions and queued messages across stop/start.
        # `user`: as root, mosquitto would otherwise drop to its own user and fail to save here.
        self.conf.write_text(
            f"per_listener_settings false\nlistener {self.port} 127.0.0.1\n"
            f"{listener_options}allow_anonymous true\n"
            f"user {getpass.getuser()}\n"
            f"persistence true\npersistence_location {workdir}/\n"
            f"max_queued_messages 100000\n"
        )
        self.log = workdir / "mosquitto.log"
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([self.binary, "-c", str(self.conf)], stdout=log, stderr=log)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {self.log.read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not start listening within 10 s")

    def stop(self) -> None:
        if self.proc is not None:
            terminate(self.proc)
        self.proc = None


class Sink:
    """A backbone worker's stand-in: subscribed to ``topic`` (QoS 1) on the broker at
    ``port``, keeping what arrives. A node keeps a batch the broker took for nobody (PUBACK
    0x10) until someone subscribes, so a test that expects delivery needs a subscriber, as
    a city's broker has its ingest workers. TLS and login as the broker asks."""

    def __init__(
        self, port: int, topic: str = "#", *, ca=None, cert=None, key=None, user=None, password=None
    ):
        import threading

        import paho.mqtt.client as mqtt

        self.messages: list[tuple[str, bytes]] = []
        self.subscribed = threading.Event()
        c = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=f"sink-{port}-{id(self)}", protocol=mqtt.MQTTv5
        )
        if ca is not None:
            c.tls_set(ca_certs=str(ca), certfile=cert and str(cert), keyfile=key and str(key))
        if user is not None:
            c.username_pw_set(user, password)
        c.on_connect = lambda cl, u, flags, rc, props: cl.subscribe(topic, qos=1)  # again at each connect
        c.on_subscribe = lambda cl, u, mid, rcs, props: self.subscribed.set()
        c.on_message = lambda cl, u, msg: self.messages.append((msg.topic, msg.payload))
        c.reconnect_delay_set(0.1, 1)
        c.connect_async("127.0.0.1", port)
        c.loop_start()
        self.client = c
        if not self.subscribed.wait(15):
            self.close()
            raise AssertionError(f"the sink did not subscribe on port {port} within 15 s")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def __enter__(self) -> Sink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def terminate(proc: subprocess.Popen, timeout: float = 10) -> None:
    """A process the test started, stopped by its pid: SIGTERM, and SIGKILL if it is still
    there after ``timeout`` seconds."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def wait_for_log(proc: subprocess.Popen, log: Path, done, timeout: float = 30) -> str:
    """Poll the process's log until ``done(text)`` holds; fail (with the log) if the process
    ends first or ``timeout`` seconds pass. A slow machine starts Python later, so tests
    wait for what they need instead of sleeping a fixed time from launch."""
    deadline = time.monotonic() + timeout
    while not done(text := log.read_text()):
        assert proc.poll() is None and time.monotonic() < deadline, text
        time.sleep(0.05)
    return text


def kill_agent(proc: subprocess.Popen, log: Path) -> str:
    """An agent still running: every thread's stack into its log (SIGUSR1: faulthandler),
    then SIGKILL, both by pid; returns the log. For a test's ``finally`` as for a hang."""
    if proc.poll() is None:
        before = log.read_text().count("(most recent call first)")
        os.kill(proc.pid, signal.SIGUSR1)
        deadline = time.monotonic() + 5  # the dump is written from the signal handler
        while log.read_text().count("(most recent call first)") == before and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    return log.read_text()


def stop_agent(proc: subprocess.Popen, log: Path, timeout: float = 60) -> int:
    """SIGTERM by pid and the exit code; a stop that does not come within ``timeout`` fails
    with the agent's log and every thread's stack (SIGUSR1: faulthandler), then SIGKILL."""
    os.kill(proc.pid, signal.SIGTERM)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        text = kill_agent(proc, log)
        raise AssertionError(f"no clean stop within {timeout:.0f} s:\n{text}") from None


def run_agent_for(workdir: Path, config_text: str, seconds: float, *, sealed: int = 0) -> str:
    """Run `edge-agent run --simulate` on a configuration for some seconds after it is
    ready (a slow machine takes longer to start Python, not to run the agent), and until it
    sealed at least ``sealed`` batches (counted in its log: a loaded machine is slower, not
    wrong), stop it with SIGTERM (by its pid), check it exited cleanly, return its log."""
    workdir.mkdir(parents=True, exist_ok=True)
    cfg = workdir / "node.yaml"
    cfg.write_text(config_text)
    err = workdir / "agent.err"
    with open(err, "wb") as log:
        proc = subprocess.Popen(
            agent_cmd("run", "--simulate", "--config", str(cfg), "--state-dir", str(workdir / "state")),
            stderr=log,
        )
        try:
            wait_for_log(proc, err, lambda text: "event=ready" in text)
            time.sleep(seconds)
            wait_for_log(proc, err, lambda text: text.count("event=batch_sealed") >= sealed, timeout=120)
            assert stop_agent(proc, err) == 0, err.read_text()
        finally:
            kill_agent(proc, err)
    return err.read_text()


def receive(sock, seconds: float) -> list[str]:
    """Every datagram that arrives within ``seconds``."""
    out, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            out.append(sock.recv(4096).decode())
        except TimeoutError:
            pass
    return out


def agent_cmd(*args: str) -> list[str]:
    """The installed console script, run with this interpreter's environment."""
    return [sys.executable, "-m", "edge_agent.cli", *args]


def authenticated_broker(broker_factory, tmp_path, password: str, listener_options: str = ""):
    """A Mosquitto that takes BROKER_USER with ``password`` and nobody anonymous."""
    passwd = tmp_path / "passwd"
    subprocess.run(
        [
            require_tool("mosquitto_passwd", "the mosquitto package"),
            "-b",
            "-c",
            str(passwd),
            BROKER_USER,
            password,
        ],
        check=True,
        capture_output=True,
    )
    os.chmod(passwd, 0o644)
    b = broker_factory(listener_options, extra=f"password_file {passwd}\n")
    b.stop()
    b.conf.write_text(b.conf.read_text().replace("allow_anonymous true", "allow_anonymous false"))
    b.start()
    return b


def tls_listener(pki, require_cert: bool = False) -> str:
    """Listener options for TLS with the test PKI's server certificate."""
    opts = f"cafile {pki}/ca.pem\ncertfile {pki}/server.pem\nkeyfile {pki}/server.key\n"
    return opts + ("require_certificate true\n" if require_cert else "")


def copy_queue(q: Path, into: Path) -> Path:
    """A copy of a running agent's queue file and WAL in ``into`` (made if missing): the
    agent holds the queue itself (edge_agent/node/store_vfs.py), so another process reads
    a copy. A commit under way may tear it: readers retry on sqlite3.DatabaseError."""
    into.mkdir(parents=True, exist_ok=True)
    copy = into / q.name
    for suffix in ("-shm", "-wal", ""):  # the last copy's, and the index SQLite made of it
        if (into / (q.name + suffix)).exists():
            (into / (q.name + suffix)).unlink()
    for suffix in ("", "-wal"):
        if os.path.exists(str(q) + suffix):
            shutil.copyfile(str(q) + suffix, str(copy) + suffix)
    return copy


def read_copy(q: Path, tmp: Path, sql: str, args: tuple = ()) -> list[tuple]:
    """``sql`` on a copy of the running agent's queue (copy_queue)."""
    db = sqlite3.connect(str(copy_queue(q, tmp / "queue-copy")))
    try:
        return db.execute(sql, args).fetchall()
    finally:
        db.close()
