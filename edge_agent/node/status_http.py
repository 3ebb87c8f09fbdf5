"""The node's status page, ``/metrics`` and ``/status.json``, on a listener of its own.

The standard library's HTTP server, one request at a time on one thread (a technician's
phone and a Prometheus scrape, not a crowd), each connection given TIMEOUT seconds, so a
client that stalls holds the thread that long and no more. It reads what the sampler's
thread last put in ``Snapshots`` and the queue through a connection of its own; it never
calls into the sampler or the uplink. Reading needs no login. Off with ``http.listen: ""``;
a listener that cannot be opened (the port taken) is logged, and the agent runs on without.
"""

from __future__ import annotations

import json
import logging
import socket
import sqlite3
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

from edge_agent.config import AgentConfig, store_path
from edge_agent.errors import StoreError
from edge_agent.node.health import HealthReport
from edge_agent.node.status_facts import Snapshots, facts
from edge_agent.node.status_render import metrics, page
from edge_agent.node.store import BatchStore

log = logging.getLogger("edge_agent.http")

TIMEOUT = 5.0  # s a connection may take to send its request and read the answer
METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _Server(HTTPServer):
    allow_reuse_address = True

    def __init__(self, addr: tuple[str, int], status: StatusServer) -> None:
        self.address_family = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
        self.status = status
        super().__init__(addr, _Handler)

    def handle_error(self, request: object, client_address: tuple[str, int]) -> None:
        """A request that failed (a client gone, the queue unreadable): logged, not a
        traceback on stderr as the base does; the next request is served as usual."""
        log.warning("event=http_error client=%s", client_address[0], exc_info=log.isEnabledFor(logging.DEBUG))
        self.status.forget_store()


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = TIMEOUT
    server_version = "edge-agent"
    sys_version = ""
    default_request_version = "HTTP/1.0"  # a request line that is no HTTP gets a status line too
    error_content_type = "text/plain; charset=utf-8"
    error_message_format = "%(code)d %(message)s\n"

    def log_message(self, format: str, *args: object) -> None:
        log.debug("event=http_request client=%s line=%r", self.client_address[0], format % args)

    def _send(self, code: int, body: bytes, ctype: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path not in ("/", "/metrics", "/status.json"):
            self._send(404, b"not found: /, /metrics or /status.json\n", "text/plain; charset=utf-8")
            return
        current = self.server.status.facts()
        if current is None:
            self._send(503, b"the agent is starting\n", "text/plain; charset=utf-8")
        elif path == "/metrics":
            self._send(200, metrics(current).encode(), METRICS_TYPE)
        elif path == "/status.json":
            self._send(200, json.dumps(current, ensure_ascii=False).encode(), "application/json")
        else:
            self._send(200, page(current).encode(), "text/html; charset=utf-8")

    do_HEAD = do_GET

    def do_POST(self) -> None:
        self._send(405, b"no action is served here yet\n", "text/plain; charset=utf-8")


class StatusServer:
    """The listener and its thread; ``snapshots`` is filled by the sampler's thread."""

    def __init__(self, cfg: AgentConfig, snapshots: Snapshots) -> None:
        self.cfg = cfg
        self.snapshots = snapshots
        self.report = HealthReport(cfg)
        self._store: BatchStore | None = None
        self._epoch: str | None = None
        self._server = _Server((cfg.http.host, cfg.http.port), self)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._serve, name="http", daemon=True)

    @classmethod
    def open(cls, cfg: AgentConfig, snapshots: Snapshots) -> StatusServer | None:
        """The server, listening; None (and logged) when off or the address cannot be had."""
        if not cfg.http.enabled:
            return None
        try:
            server = cls(cfg, snapshots)
        except OSError as exc:
            log.warning(
                "event=http_unavailable listen=%s reason=%r", cfg.http.listen, exc.strerror or str(exc)
            )
            return None
        host = f"[{cfg.http.host}]" if ":" in cfg.http.host else cfg.http.host
        log.info("event=http_listening listen=%s:%d", host, server.port)
        return server

    def start(self) -> None:
        self._thread.start()

    def _serve(self) -> None:
        try:
            self._server.serve_forever(poll_interval=0.5)
        finally:
            self.forget_store()

    def facts(self) -> dict | None:
        """The facts now, on the server's thread (its own connection to the queue)."""
        snap = self.snapshots.latest
        if snap is None:
            return None
        if self._epoch != snap.sampler["store_epoch"]:  # the queue recovered: a new file
            self.forget_store()
            self._epoch = snap.sampler["store_epoch"]
        if self._store is None and snap.store_open:
            try:
                self._store = BatchStore(store_path(self.cfg))
            except StoreError as exc:
                log.warning("event=http_store_unavailable reason=%r", str(exc))
        return facts(self.report, snap, self._store)

    def forget_store(self) -> None:
        """Close the queue's connection: the next request opens it again."""
        if self._store is not None:
            store, self._store = self._store, None
            try:
                store.close()
            except sqlite3.Error as exc:  # a damaged or vanished file: nothing of ours to keep
                log.debug("event=http_store_close_failed reason=%r", str(exc))

    def stop(self) -> None:
        """Stop serving (the request under way ends first: at most TIMEOUT)."""
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(timeout=TIMEOUT + 1.0)
        self._server.server_close()
