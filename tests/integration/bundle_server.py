"""An HTTPS server on a free loopback port that serves files the way the tests need: ranges,
and faults (a link cut after some bytes, ranges ignored, more bytes than asked, redirects)."""

from __future__ import annotations

import http.server
import ssl
import threading
from pathlib import Path


class BundleServer:
    """``files``: path -> bytes. ``cut_after``: the first N responses end after that many
    bytes of the body (the connection closed). Each request's (path, Range) is in ``seen``."""

    def __init__(self, pki: Path, server_cert: str = "server") -> None:
        self.files: dict[str, bytes] = {}
        self.seen: list[tuple[str, str | None]] = []
        self.cut_after: list[int] = []
        self.ignore_range = False
        self.extra = b""
        self.redirects: dict[str, str] = {}
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                owner.seen.append((self.path, self.headers.get("Range")))
                if self.path in owner.redirects:
                    self.send_response(302)
                    self.send_header("Location", owner.redirects[self.path])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = owner.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                start, rng = 0, self.headers.get("Range")
                if rng and not owner.ignore_range and rng.startswith("bytes=") and rng.endswith("-"):
                    start = int(rng[6:-1])
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                part = body[start:] + owner.extra
                cut = owner.cut_after.pop(0) if owner.cut_after else None
                self.send_header("Content-Length", str(len(part)))
                self.end_headers()
                self.wfile.write(part if cut is None else part[:cut])
                if cut is not None:
                    self.close_connection = True

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(pki / f"{server_cert}.pem", pki / f"{server_cert}.key")
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="bundle-server", daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"https://127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
