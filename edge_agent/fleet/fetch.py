"""A bundle fetched from an HTTPS URL for an ``update`` command (docs/fleet.md, "Delivery"),
resumable: what arrived is kept in ``DIR/<sha256>.part`` and a broken link, or a later command
for the same bundle, goes on from there with an HTTP range request.

The command is signed and names the bundle's SHA-256 and size, so the bytes are checked against
what the operator signed before anything reads them as a bundle: never more than ``size``
bytes are written, and a file whose hash differs is removed. The bundle's own manifest is
verified after that, by staging (edge_agent.fleet.staging). TLS is verified (the backbone's CA,
``mqtt.ca_file``, where the node has one, else the system's); a redirect to anything but
``https://`` is refused. Standard library only.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import re
import ssl
import threading
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

from edge_agent.fleet.refusal import Refused

log = logging.getLogger("edge_agent.fleet")

ATTEMPTS = 8  # connections tried for one command, backing off 1, 2, 4 ... 60 s between them
TIMEOUT = 30.0  # s a connection or a read may stall before it is dropped and resumed
_BLOCK = 64 * 1024
_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class FetchFailed(RuntimeError):
    """Every attempt failed on the link (the partial file is kept for the next command)."""


def check_url(url: object) -> str:
    if not isinstance(url, str) or len(url) > 2048 or not url.isascii():
        raise Refused("malformed", "an update's url is an https:// URL of at most 2048 ASCII characters")
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise Refused("malformed", f"{url[:120]!r}: an update is fetched over https:// only")
    return url


def check_sha256(value: object) -> str:
    if not isinstance(value, str) or not _SHA256.fullmatch(value):
        raise Refused("malformed", "an update's sha256 is 64 lowercase hex digits")
    return value


class _HttpsOnly(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if urlsplit(newurl).scheme != "https":
            raise urllib.error.URLError(f"redirect to {newurl[:120]!r} refused: https:// only")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _opener(ca_file: str | None) -> urllib.request.OpenerDirector:
    ctx = ssl.create_default_context(cafile=ca_file)  # verifies the chain and the host name
    return urllib.request.build_opener(urllib.request.HTTPSHandler(context=ctx), _HttpsOnly())


def fetch(
    url: str,
    directory: str | os.PathLike,
    sha256: str,
    size: int,
    *,
    ca_file: str | None = None,
    stop: threading.Event | None = None,
    attempts: int = ATTEMPTS,
    timeout: float = TIMEOUT,
    backoff: float = 1.0,
) -> Path:
    """The bundle, whole and with the signed hash, at ``directory/<sha256>.bundle``. Refused
    (``corrupt_download``) when the bytes are not the ones signed; FetchFailed when the link failed
    ``attempts`` times (or ``stop`` was set)."""
    folder = Path(directory)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    done, part = folder / f"{sha256}.bundle", folder / f"{sha256}.part"
    if done.is_file() and done.stat().st_size == size and _digest(done) == sha256:
        return done
    opener, stop = _opener(ca_file), stop or threading.Event()
    last = "no attempt"
    for attempt in range(attempts):
        if attempt:
            wait = min(60.0, backoff * 2.0 ** (attempt - 1))
            log.info("event=update_fetch_retry attempt=%d in=%gs after=%r", attempt + 1, wait, last)
            if stop.wait(wait):
                break
        try:
            if _one(opener, url, part, size, timeout):
                break
        except urllib.error.HTTPError as exc:
            if 400 <= exc.code < 500 and exc.code not in (408, 429):  # not there, not ours: final
                raise FetchFailed(f"{url[:120]}: HTTP {exc.code} {exc.reason}") from None
            last = f"HTTP {exc.code} {exc.reason}"
        except (OSError, http.client.HTTPException, ValueError) as exc:
            last = str(getattr(exc, "reason", None) or exc)[:300]
    else:
        raise FetchFailed(f"{url[:120]}: {attempts} attempts failed; the last: {last}")
    if stop.is_set() and not (part.exists() and part.stat().st_size == size):
        raise FetchFailed(f"{url[:120]}: stopped with {_have(part)} of {size} bytes")
    got = _digest(part)
    if got != sha256:
        part.unlink()
        raise Refused(
            "corrupt_download",
            f"{url[:120]}: {size} bytes whose SHA-256 is {got[:16]}..., not the signed one",
        )
    os.replace(part, done)
    return done


def _have(part: Path) -> int:
    try:
        return part.stat().st_size
    except FileNotFoundError:
        return 0


def _one(opener: urllib.request.OpenerDirector, url: str, part: Path, size: int, timeout: float) -> bool:
    """One connection: True when ``part`` holds ``size`` bytes. Raises on a link failure."""
    have = _have(part)
    if have > size:  # not what was signed: start over
        part.unlink()
        have = 0
    if have == size:
        return True
    req = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    with opener.open(req, timeout=timeout) as resp:
        if resp.status == 206:
            m = _RANGE.fullmatch(resp.headers.get("Content-Range", ""))
            if m is None or int(m.group(1)) != have:
                raise ValueError(
                    f"a range that does not start at {have}: {resp.headers.get('Content-Range')!r}"
                )
        elif resp.status == 200:
            have = 0  # the server sends it whole: start over
        else:
            raise ValueError(f"HTTP {resp.status}")
        fd = os.open(part, os.O_WRONLY | os.O_CREAT | (os.O_APPEND if have else os.O_TRUNC), 0o600)
        with os.fdopen(fd, "ab" if have else "wb") as out:
            while have < size:
                block = resp.read(min(_BLOCK, size - have))
                if not block:
                    break
                out.write(block)
                have += len(block)
            out.flush()
            os.fsync(out.fileno())
        if have < size:
            raise ValueError(f"the link ended at {have} of {size} bytes")
        if resp.read(1):
            raise ValueError(f"the server sends more than the signed {size} bytes")
    return True


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()
