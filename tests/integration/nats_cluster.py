"""A NATS cluster of the tests' own: three nats-server processes (Debian's package) routed to
each other on free 127.0.0.1 ports, each with JetStream (its store in the test's folder) and an
MQTT listener; stopped by their pids. nats-server speaks MQTT 3.1.1 only, and its MQTT listener
needs JetStream: a member accepts MQTT clients once the cluster has its JetStream meta leader."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

from helpers import free_port, require_tool, terminate


def find_nats_server() -> str:
    """Debian's /usr/sbin/nats-server (`make test` installs it): a loud skip, or a failure
    under EDGE_AGENT_REQUIRE_BROKER=1, where it is missing."""
    return require_tool("nats-server", "nats-server")


class Member:
    def __init__(self, name: str, root: Path) -> None:
        self.name = name
        self.client_port, self.cluster_port, self.mqtt_port = free_port(), free_port(), free_port()
        self.store = root / name / "js"
        self.conf = root / name / "nats.conf"
        self.log = root / name / "nats.log"
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.mqtt_port}"


class NatsCluster:
    """``start()`` the three members, ``ready()`` waits until each MQTT listener takes a CONNECT,
    ``stop()`` ends each by its pid."""

    def __init__(self, root: Path, size: int = 3, mqtt_options: str = "") -> None:
        self.binary = find_nats_server()
        self.members = [Member(f"n{i}", root) for i in range(size)]
        routes = ", ".join(f"nats-route://127.0.0.1:{m.cluster_port}" for m in self.members)
        for m in self.members:
            m.store.mkdir(parents=True)
            m.conf.write_text(
                f'server_name: "{m.name}"\n'
                f"listen: 127.0.0.1:{m.client_port}\n"
                f'jetstream {{ store_dir: "{m.store}", max_memory_store: 64MB, max_file_store: 1GB }}\n'
                f'cluster {{ name: "edge-test", listen: 127.0.0.1:{m.cluster_port}, routes: [{routes}] }}\n'
                f"mqtt {{ listen: 127.0.0.1:{m.mqtt_port}\n{mqtt_options}\n}}\n"
            )

    def start(self) -> None:
        for m in self.members:
            with open(m.log, "ab") as f:
                m.proc = subprocess.Popen(
                    [self.binary, "-c", str(m.conf)], stdout=f, stderr=subprocess.STDOUT
                )

    def ready(self, timeout: float = 90.0) -> None:
        """Each member's MQTT listener answers a CONNECT with CONNACK 0 (JetStream is up)."""
        deadline = time.monotonic() + timeout
        for m in self.members:
            while not _connack_ok(m.mqtt_port):
                assert m.proc is not None and m.proc.poll() is None, (
                    f"nats-server {m.name} exited: {m.log.read_text()[-2000:]}"
                )
                assert time.monotonic() < deadline, (
                    f"nats-server {m.name} refuses MQTT after {timeout:.0f} s: {m.log.read_text()[-2000:]}"
                )
                time.sleep(0.2)

    def stop(self) -> None:
        for m in self.members:
            if m.proc is not None:
                terminate(m.proc, timeout=30)

    def logs(self) -> str:
        return "\n".join(f"--- {m.name}\n{m.log.read_text()[-1500:]}" for m in self.members if m.log.exists())


# CONNECT, MQTT 3.1.1, clean session, keepalive 10 s, client id "probe"
_PROBE = bytes([0x10, 17, 0, 4]) + b"MQTT" + bytes([4, 0x02, 0, 10, 0, 5]) + b"probe"


def _connack_ok(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(_PROBE)
            reply = s.recv(4)
            if len(reply) == 4 and reply[0] == 0x20 and reply[3] == 0:
                s.sendall(bytes([0xE0, 0]))  # DISCONNECT
                return True
    except OSError:
        pass
    return False
