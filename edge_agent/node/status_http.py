"""The node's status page, ``/metrics`` and ``/status.json``, on a listener of its own.

The standard library's HTTP server, one request at a time on one thread (a technician's
phone and a Prometheus scrape, not a crowd), each connection given TIMEOUT seconds, so a
client that stalls holds the thread that long and no more. It reads what the sampler's
thread last put in ``Snapshots`` and the queue through a connection of its own; it never
calls into the sampler or the uplink. Reading needs no login. Off with ``http.listen: ""``;
a listener that cannot be opened (the port taken) is logged, and the agent runs on without.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
import socket
import sqlite3
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, HTTPServer

from edge_agent.config import AgentConfig, check_token, store_path
from edge_agent.errors import StoreError
from edge_agent.files import TooLarge, os_error_text, read_at_most
from edge_agent.node.health import HealthReport, ReleaseFacts
from edge_agent.node.status_facts import Snapshots, commission_from_facts, facts, keep_commission
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

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Method, path and status: never the query string (a token put there by mistake)."""
        path = getattr(self, "path", "").split("?", 1)[0]
        log.debug(
            "event=http_request client=%s method=%s path=%r code=%s",
            self.client_address[0],
            self.command,
            path,
            code,
        )

    def log_message(self, format: str, *args: object) -> None:
        log.debug("event=http_refused client=%s reason=%r", self.client_address[0], format % args)

    def _send(self, code: int, body: bytes, ctype: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(code)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
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
        """An action: ``/actions/NAME``, with the node's token as HTTP Basic auth's password (a
        browser asks for it; curl -u any:TOKEN) or a Bearer token; never in the URL."""
        self.close_connection = True  # a body, if any, is not read
        path = self.path.split("?", 1)[0]
        status = self.server.status
        name = path.removeprefix("/actions/")
        if not path.startswith("/actions/") or name not in status.actions:
            self._text(404, f"no such action: the actions are {', '.join(sorted(status.actions)) or 'none'}")
            return
        origin = self.headers.get("Origin")
        if origin is not None and origin != f"http://{self.headers.get('Host', '')}":
            self._text(403, "an action from another site's page is refused")  # cross-site forgery
            return
        verdict = status.guard.check(self.headers.get("Authorization"), time.monotonic())
        if verdict is not None:
            code, text = verdict
            log.warning(
                "event=http_action_refused action=%s client=%s code=%d", name, self.client_address[0], code
            )
            realm = f'Basic realm="edge-agent {status.cfg.node_id}", charset="UTF-8"'
            self._text(code, text, {"WWW-Authenticate": realm} if code == 401 else {})
            return
        log.warning("event=http_action action=%s client=%s", name, self.client_address[0])
        try:
            status.actions[name]()
        except OSError as exc:  # the report could not be kept (a full disk)
            self._text(500, f"{name}: {os_error_text(exc)}")
            return
        self._text(303, f"{name}: done", {"Location": "/"})

    def _text(self, code: int, text: str, headers: dict[str, str] | None = None) -> None:
        self._send(code, (text + "\n").encode(), "text/plain; charset=utf-8", headers)


class TokenGuard:
    """Who may act: the token of ``http.token_file`` (read at each attempt, so a token put
    there later counts, and a changed one at once), compared in constant time; after
    FAILURES_MAX failed attempts within LOCKOUT seconds every attempt is refused for LOCKOUT,
    so the token cannot be guessed at the speed of the listener."""

    FAILURES_MAX = 10
    LOCKOUT = 60.0

    def __init__(self, token_file: str | None) -> None:
        self.token_file = token_file
        self.failures: list[float] = []

    def _token(self) -> str | None:
        if self.token_file is None:
            return None
        try:
            first = read_at_most(self.token_file, 4096).decode("utf-8").splitlines()
            return check_token(first[0].strip() if first else "")
        except (OSError, TooLarge, UnicodeDecodeError, ValueError) as exc:
            why = getattr(exc, "strerror", None) or str(exc)
            log.error("event=http_token_unusable file=%s reason=%r", self.token_file, why)
            return None

    def check(self, authorization: str | None, now: float) -> tuple[int, str] | None:
        """None when the request may act; else (status code, why)."""
        self.failures = [t for t in self.failures if now - t < self.LOCKOUT]
        if len(self.failures) >= self.FAILURES_MAX:
            return 429, f"too many wrong tokens: try again in {self.LOCKOUT:.0f} s"
        token = self._token()
        if token is None:
            return 503, "actions need http.token_file, a readable file holding the node's token"
        given = _presented(authorization)
        if given is None or not hmac.compare_digest(given.encode(), token.encode()):
            self.failures.append(now)
            return 401, "the node's token is needed (HTTP Basic auth's password, or a Bearer token)"
        return None


def _presented(authorization: str | None) -> str | None:
    """The token an Authorization header carries: Basic's password, or Bearer's token."""
    scheme, _, value = (authorization or "").strip().partition(" ")
    if scheme.lower() == "bearer":
        return value.strip()
    if scheme.lower() == "basic":
        try:
            return base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")[2]
        except (binascii.Error, UnicodeDecodeError):
            return None
    return None


Actions = dict[str, Callable[[], None]]


class StatusServer:
    """The listener and its thread; ``snapshots`` is filled by the sampler's thread, and
    ``actions`` (name -> what it does, on this thread: setting an event) are what POST may do."""

    def __init__(
        self,
        cfg: AgentConfig,
        snapshots: Snapshots,
        actions: Actions | None = None,
        release: ReleaseFacts | None = None,
    ) -> None:
        self.cfg = cfg
        self.snapshots = snapshots
        self.actions = {**(actions or {}), "commission": self.commission}
        self.guard = TokenGuard(cfg.http.token_file)
        self.report = HealthReport(cfg, release=release)
        self._store: BatchStore | None = None
        self._epoch: str | None = None
        self._server = _Server((cfg.http.host, cfg.http.port), self)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._serve, name="http", daemon=True)

    @classmethod
    def open(
        cls,
        cfg: AgentConfig,
        snapshots: Snapshots,
        actions: Actions | None = None,
        release: ReleaseFacts | None = None,
    ) -> StatusServer | None:
        """The server, listening; None (and logged) when off or the address cannot be had."""
        if not cfg.http.enabled:
            return None
        try:
            server = cls(cfg, snapshots, actions, release)
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
        out = facts(self.report, snap, self._store)
        out["actions"] = sorted(self.actions) if self.cfg.http.token_file else []
        return out

    def commission(self) -> None:
        """The "commission" action: the running agent's own checks (status_facts), kept as
        the last report, as `edge-agent commission` keeps its own."""
        current = self.facts()
        if current is not None:
            report = commission_from_facts(current)
            keep_commission(self.cfg.state_dir, report)
            log.warning("event=commissioned source=page passed=%s", report["passed"])

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
