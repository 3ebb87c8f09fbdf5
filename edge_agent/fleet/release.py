"""A/B releases on the node (docs/fleet.md, "A/B releases"): the layout under one root, the
state of each release, and the atomic switch of ``current``. Standard library only, so that a
launcher run from the stable release's interpreter can use it without the new code.

::

    ROOT/releases/<version>-<counter>/   one release: venv/, bundle/, release.json (written last)
    ROOT/current  -> releases/<name>     switched by rename(2) of a new symlink over the old
    ROOT/previous -> releases/<name>     the release to go back to when a trial fails

A release directory without ``release.json`` is incomplete (an install that was killed) and is
never made current. A release whose status is ``failed`` is never tried again.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

STATUSES = ("trial", "good", "failed")
STATE_NAME = "release.json"
_STATE_MAX = 4096

Step = Callable[[str], None]  # called with the name of each step done (a test kills there)


def _no_step(name: str) -> None:
    pass


class Layout:
    """The releases under ``root``."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self.releases = self.root / "releases"

    def release(self, name: str) -> Path:
        if not name or "/" in name or name.startswith("."):
            raise ValueError(f"{name!r} is not a release name")
        return self.releases / name

    def link(self, which: str) -> str | None:
        """The release name ``current`` or ``previous`` points at, None when there is none."""
        try:
            target = os.readlink(self.root / which)
        except FileNotFoundError:
            return None
        return Path(target).name

    def state(self, name: str) -> dict | None:
        """A release's state, None while it is incomplete (no release.json yet)."""
        path = self.release(name) / STATE_NAME
        try:
            with open(path, "rb") as f:
                data = f.read(_STATE_MAX + 1)
        except FileNotFoundError:
            return None
        doc = json.loads(data)
        if not isinstance(doc, dict) or doc.get("status") not in STATUSES:
            raise ValueError(f"{path}: not a release state")
        return doc

    def complete(self, name: str) -> bool:
        return self.state(name) is not None

    def write_state(self, name: str, **fields: object) -> dict:
        """Replace a release's state atomically (beside, fsync, rename, fsync the directory)."""
        doc = {**(self.state(name) or {}), **fields}
        if doc.get("status") not in STATUSES:
            raise ValueError(f"status {doc.get('status')!r} is not one of {STATUSES}")
        directory = self.release(name)
        _write_atomic(directory / STATE_NAME, json.dumps(doc, sort_keys=True).encode())
        return doc

    def mark_failed(self, name: str, reason: str) -> None:
        """A release whose trial failed: never tried again."""
        self.write_state(name, status="failed", reason=reason)

    def switch(self, name: str, on_step: Step = _no_step) -> None:
        """Point ``previous`` at the release now current, then ``current`` at ``name``; each one
        rename(2) of a new symlink over the old, so a kill at any instant leaves one complete
        ``current``. Refuses an incomplete or failed release."""
        state = self.state(name)
        if state is None:
            raise ValueError(f"release {name} is incomplete")
        if state["status"] == "failed":
            raise ValueError(f"release {name} failed its trial and is never tried again")
        now = self.link("current")
        if now is not None and now != name:
            _symlink_atomic(self.root / "previous", Path("releases") / now)
            on_step("previous_linked")
        _symlink_atomic(self.root / "current", Path("releases") / name)

    def retire(self) -> None:
        """No ``current`` any more (a first release failed, with nothing before it): the
        launcher then runs the base image's agent."""
        try:
            os.unlink(self.root / "current")
        except FileNotFoundError:
            return
        _fsync_dir(self.root)

    def rollback(self) -> str:
        """``current`` back to ``previous`` (which must be complete and not failed): its name."""
        prev = self.link("previous")
        if prev is None:
            raise ValueError(f"{self.root}: no previous release to go back to")
        state = self.state(prev)
        if state is None or state["status"] == "failed":
            raise ValueError(f"{self.root}: the previous release {prev} cannot be run")
        _symlink_atomic(self.root / "current", Path("releases") / prev)
        return prev


ROOT_ENV, NAME_ENV = "EDGE_AGENT_RELEASES", "EDGE_AGENT_RELEASE"  # set by the launcher for its agent
_SCAN_MOST = 256  # release directories read for the newest trial


def _counter(name: str) -> int:
    """A release's counter, from its name ``<version>-<counter>`` (-1 when it has none)."""
    tail = name.rpartition("-")[2]
    return int(tail) if tail.isdigit() and len(tail) <= 20 else -1


def running(env: Mapping[str, str] = os.environ) -> dict | None:
    """What the launcher runs this agent as, for the status and health messages (``fleet
    status`` shows it): the release (``base``: the image's own agent), its status (``trial``
    until the launcher calls it good), and the newest release's trial: passed, on trial, or
    failed and why. None outside a launcher. Never raises: a fact it cannot read is
    ``unknown``."""
    root, name = env.get(ROOT_ENV), env.get(NAME_ENV)
    if not root or not name:
        return None
    layout = Layout(root)
    out: dict = {"name": name}
    if name != "base":
        try:
            own = layout.state(name) or {}
        except (OSError, ValueError, RecursionError):
            own = {}
        out["status"] = own.get("status", "unknown")
    try:
        names = sorted((p.name for p in layout.releases.iterdir() if p.is_dir()), key=_counter)[-_SCAN_MOST:]
    except OSError:
        names = []
    for newest in reversed(names):
        try:
            state = layout.state(newest)
        except (OSError, ValueError, RecursionError):
            continue
        if state is not None:
            trial = {"release": newest, "status": state["status"]}
            if "reason" in state:
                trial["reason"] = str(state["reason"])[:200]
            if "passed_after" in state:
                trial["passed_after"] = state["passed_after"]
            out["last_trial"] = trial
            break
    return out


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _symlink_atomic(link: Path, target: Path) -> None:
    tmp = link.with_name(f".{link.name}.tmp")
    try:
        os.unlink(tmp)
    except FileNotFoundError:
        pass
    os.symlink(target, tmp)
    os.replace(tmp, link)
    _fsync_dir(link.parent)


def install(
    layout: Layout,
    name: str,
    wheels: Path,
    version: str,
    python: str,
    *,
    extra: dict | None = None,
    on_step: Step = _no_step,
) -> Path:
    """Make ``releases/<name>/venv`` from the wheels in ``wheels`` alone (``pip --no-index``,
    no network, no configuration of the machine's pip) and write ``release.json`` (status
    ``trial``, with ``extra``'s fields) last. A kill before that leaves an incomplete release
    that is never run. The venv is made without pip when this interpreter has one to lend
    (``pip --python``: well under a second instead of most of a minute)."""
    import subprocess

    directory = layout.release(name)
    if directory.exists():
        raise ValueError(f"release {name} exists already: a bundle is installed once")
    layout.releases.mkdir(parents=True, exist_ok=True)
    directory.mkdir(mode=0o755)
    venv = directory / "venv"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_NO_INPUT="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    lend = importlib.util.find_spec("pip") is not None
    pip = ["-m", "pip", "--python", str(venv / "bin" / "python")] if lend else ["-m", "pip"]
    steps = [
        [python, "-m", "venv", *(["--without-pip"] if lend else []), str(venv)],
        [
            sys.executable if lend else str(venv / "bin" / "python"),
            *pip,
            "install",
            "--quiet",
            "--no-index",
            "--no-cache-dir",
            "--only-binary=:all:",
            "--find-links",
            str(wheels),
            f"edge_agent=={version}",
        ],
    ]
    for argv, step in zip(steps, ("venv", "pip")):
        done = subprocess.run(argv, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise InstallError(f"release {name}: {step} failed: {done.stderr.strip()[-2000:]}")
        on_step(step)
    layout.write_state(name, status="trial", version=version, tries_left=1, **(extra or {}))
    return directory


def remove_incomplete(layout: Layout, name: str) -> bool:
    """Remove a release directory that an install left without ``release.json``: True if so."""
    directory = layout.release(name)
    if directory.is_dir() and not directory.is_symlink() and not layout.complete(name):
        shutil.rmtree(directory)
        return True
    return False


class InstallError(RuntimeError):
    """A release could not be installed (left incomplete, so never run)."""
