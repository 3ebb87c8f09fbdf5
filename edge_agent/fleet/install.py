"""``update apply``, the node's side: a bundle verified into staging, its counter recorded, its
wheels installed into a new release, ``current`` switched to it (docs/fleet.md, "update apply").

The steps, each durable before the next, and what a kill after each leaves:

==============  ===========================================================================
``staged``      a folder under ``ROOT/staging`` (nothing else written): the next run removes it
                and starts over, since no counter was recorded
``journaled``   ``ROOT/staging/pending.json`` names the staged folder and the release; the
                counter is not yet recorded, so the next run drops the journal and starts over
``accepted``    the counter is recorded: the bundle would now be refused as replayed, so the
                next run resumes from the journal (the staged files' hashes checked again)
``venv``,       ``ROOT/releases/<version>-<counter>`` without ``release.json``: incomplete,
``pip``         never run; the next run removes it and installs again
``installed``   ``release.json`` written (status ``trial``, one try): complete, not current
``previous_``   ``previous`` points at the release that was current, which still is
``linked``
``switched``    ``current`` points at the new release; the journal and staging still there
``cleaned``     nothing left in staging
==============  ===========================================================================

So at every instant ``current`` is one complete release (or absent, before the first), and
``update apply`` run again completes what was begun. A release that failed its trial is never
installed or switched to again (``failed_release``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import time
from pathlib import Path

from edge_agent.errors import EdgeAgentError
from edge_agent.fleet import release, staging
from edge_agent.fleet.counters import CounterStore
from edge_agent.fleet.keys import TrustStore
from edge_agent.fleet.refusal import Refused
from edge_agent.fleet.signed import Audience

log = logging.getLogger("edge_agent.fleet")

JOURNAL = "pending.json"
_JOURNAL_MAX = 64 * 1024


class InstallFailed(EdgeAgentError, RuntimeError):
    """The wheels did not install (left an incomplete release, never run)."""


@dataclasses.dataclass(frozen=True)
class Applied:
    name: str  # the release, <version>-<counter>
    version: str
    counter: int
    previous: str | None  # what ``previous`` points at now
    resumed: bool  # an apply that was killed, completed by this one
    seconds: float


def _journal_path(layout: release.Layout) -> Path:
    return layout.root / "staging" / JOURNAL


def _read_journal(layout: release.Layout) -> dict | None:
    path = _journal_path(layout)
    try:
        with open(path, "rb") as f:
            doc = json.loads(f.read(_JOURNAL_MAX))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise EdgeAgentError(
            f"{path}: cannot read the pending install ({exc}); remove it to start over"
        ) from None
    keys = {"staging", "name", "version", "counter", "sha256", "key", "files"}
    if not isinstance(doc, dict) or set(doc) != keys:
        raise EdgeAgentError(f"{path}: not a pending install's journal; remove it to start over")
    return doc


def _clean_staging(layout: release.Layout, keep: str | None) -> None:
    """Folders a killed run left under staging (all but the journal's ``keep``)."""
    root = layout.root / "staging"
    if not root.is_dir():
        return
    for p in root.iterdir():
        if p.name.startswith("bundle-") and p.name != keep and p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)


def _refuse_failed(layout: release.Layout, name: str) -> None:
    state = layout.state(name)
    if state is not None and state["status"] == "failed":
        raise Refused(
            "failed_release",
            f"release {name} failed its trial ({state.get('reason', 'no reason recorded')}) "
            "and is never tried again; sign a new bundle (a higher counter)",
        )


def _staged_files_intact(directory: Path, files: list) -> None:
    for name, sha256, _size in files:
        digest = hashlib.sha256()
        try:
            with open(directory / name, "rb") as f:
                while chunk := f.read(1 << 16):
                    digest.update(chunk)
        except OSError as exc:
            raise Refused("corrupt_file", f"staged {name}: cannot read: {exc.strerror or exc}") from None
        if digest.hexdigest() != sha256:
            raise Refused("corrupt_file", f"staged {name}: changed since it was verified")


def _finish(
    layout: release.Layout, journal: dict, python: str, on_step: release.Step
) -> tuple[str | None, bool]:
    """Install (unless complete already), switch, clean up: (previous, installed now)."""
    name = journal["name"]
    _refuse_failed(layout, name)
    installed = False
    if not layout.complete(name):
        if release.remove_incomplete(layout, name):
            log.info("event=update_incomplete_removed release=%s", name)
        extra = {"counter": journal["counter"], "key": journal["key"], "sha256": journal["sha256"]}
        try:
            release.install(
                layout,
                name,
                layout.root / "staging" / journal["staging"],
                journal["version"],
                python,
                extra=extra,
                on_step=on_step,
            )
        except release.InstallError as exc:
            raise InstallFailed(str(exc)) from None
        installed = True
        on_step("installed")
    now = layout.link("current")
    now_state = layout.state(now) if now else None
    if now != name and now_state is not None and now_state["status"] != "good":
        # an untried release is no release to go back to: keep ``previous`` as it is
        release._symlink_atomic(layout.root / "current", Path("releases") / name)
    else:
        layout.switch(name, on_step=on_step)
    on_step("switched")
    shutil.rmtree(layout.root / "staging" / journal["staging"], ignore_errors=True)
    os.unlink(_journal_path(layout))
    release._fsync_dir(layout.root / "staging")
    on_step("cleaned")
    return layout.link("previous"), installed


def _resume(
    layout: release.Layout, counters: CounterStore, python: str, on_step: release.Step
) -> dict | None:
    """Complete an apply a kill interrupted: its journal, when its counter was recorded."""
    journal = _read_journal(layout)
    if journal is None:
        return None
    if counters.last("update") != (journal["counter"], journal["sha256"]):
        log.info(
            "event=update_journal_dropped release=%s reason='killed before its counter was recorded'",
            journal["name"],
        )
        _drop(layout, journal)
        return None
    log.info("event=update_resumed release=%s", journal["name"])
    try:
        if not layout.complete(journal["name"]):
            _staged_files_intact(layout.root / "staging" / journal["staging"], journal["files"])
        _finish(layout, journal, python, on_step)
    except Refused:
        _drop(layout, journal)  # refused for good: a journal that would refuse every later run
        raise
    return journal


def _drop(layout: release.Layout, journal: dict) -> None:
    shutil.rmtree(layout.root / "staging" / journal["staging"], ignore_errors=True)
    os.unlink(_journal_path(layout))


def apply(
    bundle: str | os.PathLike,
    root: str | os.PathLike,
    *,
    trust: TrustStore,
    audience: Audience,
    counters: CounterStore,
    platform: str | None = None,
    python: str,
    limits: staging.Limits | None = None,
    on_step: release.Step = release._no_step,
) -> Applied:
    """Verify ``bundle`` into ``root``/staging, record its counter, install it as a new release
    and make it current (the old current becomes previous). Refused, InstallFailed, and
    EdgeAgentError for a layout that cannot be read or written."""
    try:
        return _apply(bundle, root, trust, audience, counters, platform, python, limits, on_step)
    except Refused:
        raise
    except (ValueError, OSError) as exc:
        what = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        where = f" {exc.filename}:" if isinstance(exc, OSError) and exc.filename else ""
        raise EdgeAgentError(f"releases under {root}:{where} {what}") from None


def _apply(
    bundle: str | os.PathLike,
    root: str | os.PathLike,
    trust: TrustStore,
    audience: Audience,
    counters: CounterStore,
    platform: str | None,
    python: str,
    limits: staging.Limits | None,
    on_step: release.Step,
) -> Applied:
    t0 = time.monotonic()
    layout = release.Layout(root)
    layout.root.mkdir(parents=True, exist_ok=True)
    pending = _resume(layout, counters, python, on_step)
    digest = staging.manifest_digest(bundle)
    current = layout.link("current")
    state = layout.state(current) if current else None
    if current and state and digest is not None and state.get("sha256") == digest:
        # this bundle's install was completed (by an earlier run, or the one just resumed)
        return Applied(
            current, state["version"], state["counter"], layout.link("previous"), True, time.monotonic() - t0
        )
    if pending is not None:
        log.info("event=update_resumed_other release=%s", pending["name"])
    _clean_staging(layout, None)
    staged = staging.stage(
        bundle,
        layout.root / "staging",
        trust=trust,
        audience=audience,
        counters=counters,
        platform=platform,
        limits=limits or staging.Limits(),
    )
    on_step("staged")
    m = staged.manifest
    name = f"{staged.version}-{m.counter}"
    try:
        _refuse_failed(layout, name)
        journal = {
            "staging": staged.directory.name,
            "name": name,
            "version": staged.version,
            "counter": m.counter,
            "sha256": m.digest,
            "key": m.key_id,
            "files": [list(f) for f in staged.files],
        }
        release._write_atomic(_journal_path(layout), json.dumps(journal, sort_keys=True).encode())
    except BaseException:
        staging.discard(staged)
        raise
    on_step("journaled")
    staging.accept(staged, counters)
    on_step("accepted")
    previous, _ = _finish(layout, journal, python, on_step)
    seconds = time.monotonic() - t0
    log.info("event=update_installed release=%s previous=%s seconds=%.2f", name, previous or "-", seconds)
    return Applied(name, staged.version, m.counter, previous, False, seconds)
