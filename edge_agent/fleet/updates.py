"""The ``update`` command (docs/fleet.md, "Delivery"): a signed command naming a bundle by its
HTTPS URL, SHA-256 and size. The node fetches it (edge_agent.fleet.fetch, resumable), applies it
as ``update apply`` does (edge_agent.fleet.install: verified into staging before anything else
is written, a new release, ``current`` switched) and restarts, so the launcher runs the new
release on trial and rolls it back if it fails.

The fetch and the install run on a thread of their own: the agent samples and delivers meanwhile.
Their outcome is answered on the reply topic, from the agent's thread (``tick``), under the
command's id: ``started`` at once, then ``done`` (and the restart) or ``failed``/``refused``.
Only under the launcher (which says where the releases are): elsewhere nothing would run the
new release, and the command is refused.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edge_agent.errors import EdgeAgentError
from edge_agent.fleet import fetch, install, release
from edge_agent.fleet.counters import CounterStore
from edge_agent.fleet.keys import TrustStore
from edge_agent.fleet.refusal import Refused
from edge_agent.fleet.signed import Audience
from edge_agent.fleet.staging import Limits

log = logging.getLogger("edge_agent.fleet")

KEYS = {"name", "id", "url", "sha256", "size"}


def check_body(body: dict, limits: Limits) -> tuple[str, str, int]:
    """An update command's (url, sha256, size), or Refused saying what is wrong."""
    if set(body) != KEYS:
        raise Refused("malformed", f"an update command's body is {{{', '.join(sorted(KEYS))}}}")
    size = body["size"]
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise Refused("malformed", "an update's size is a whole number of bytes above 0")
    if size > limits.max_bundle:
        raise Refused("oversize", f"a bundle of {size} bytes; the node takes at most {limits.max_bundle}")
    return fetch.check_url(body["url"]), fetch.check_sha256(body["sha256"]), size


class Updates:
    """The update command's part of fleet.commands.Commands: at most one job at a time."""

    def __init__(
        self,
        trust: TrustStore,
        audience: Audience,
        counters: CounterStore,
        *,
        ca_file: str | None = None,
        env: Mapping[str, str] = os.environ,
        limits: Limits | None = None,
    ) -> None:
        self.trust, self.audience, self.counters = trust, audience, counters
        self.ca_file = ca_file
        self.root = env.get(release.ROOT_ENV)
        self.limits = limits or Limits()
        self.job: _Job | None = None

    def refuse_now(self) -> None:
        """Refused before the counter is recorded: not under the launcher, or one under way."""
        if not self.root:
            raise Refused(
                "unsupported", "the agent is not run by the launcher: nothing would run a new release"
            )
        if self.job is not None:
            raise Refused("busy", f"an update is under way (command {self.job.command_id})")

    def start(self, ident: str, counter: int, url: str, sha256: str, size: int) -> None:
        assert self.root is not None and self.job is None
        self.job = _Job(self, ident, url, sha256, size)
        self.job.counter = counter
        log.info("event=update_started id=%s url=%r size=%d sha256=%s", ident, url[:120], size, sha256[:16])
        self.job.start()

    def finished(self) -> _Job | None:
        """The job once it has ended (then forgotten), None while it runs or when there is none."""
        job = self.job
        if job is None or job.is_alive():
            return None
        self.job = None
        return job


class _Job(threading.Thread):
    def __init__(self, updates: Updates, ident: str, url: str, sha256: str, size: int) -> None:
        super().__init__(name="update", daemon=True)
        self.u, self.command_id = updates, ident
        self.url, self.sha256, self.size = url, sha256, size
        self.outcome, self.reason, self.detail = "failed", "", "did not end"
        self.release: str | None = None
        self.counter = 0  # the command's

    def run(self) -> None:
        u = self.u
        assert u.root is not None
        downloads = Path(u.root) / "staging" / "downloads"  # not outside staging, not cleaned by it
        bundle: Path | None = None
        try:
            bundle = fetch.fetch(self.url, downloads, self.sha256, self.size, ca_file=u.ca_file)
            done = install.apply(
                bundle,
                u.root,
                trust=u.trust,
                audience=u.audience,
                counters=u.counters,
                python=sys.executable,
                limits=u.limits,
            )
        except Refused as exc:
            self.outcome, self.reason, self.detail = "refused", exc.reason, exc.detail
        except (fetch.FetchFailed, EdgeAgentError, OSError, ValueError) as exc:
            self.detail = str(exc)[:500]
        else:
            self.outcome, self.release = "done", done.name
            self.detail = (
                f"installed edge-agent {done.version} as release {done.name}; restarting into its trial"
            )
        finally:
            if bundle is not None:  # what was fetched whole: staged or refused, not kept
                bundle.unlink(missing_ok=True)
        level = logging.INFO if self.outcome == "done" else logging.ERROR
        log.log(
            level,
            "event=update_%s id=%s reason=%s detail=%r",
            self.outcome,
            self.command_id,
            self.reason,
            self.detail,
        )

    def reply(self) -> dict[str, Any]:
        out: dict[str, Any] = {"outcome": self.outcome, "detail": self.detail}
        if self.reason:
            out["reason"] = self.reason
        if self.release:
            out["release"] = self.release
        return out
