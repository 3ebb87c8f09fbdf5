"""`edge-agent update apply`: a bundle verified into staging, its counter recorded, its wheels
installed into a new release, ``current`` switched; SIGKILLed after every step, it leaves one
complete current release and the next run completes it; a failed release is refused. Also the
kit of fake releases the launcher's tests use (``release_wheel``, ``Node``)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import signal
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
from helpers import REPO

from edge_agent.fleet.bundle import build, node_platform
from edge_agent.fleet.keys import OperatorKey
from edge_agent.fleet.release import Layout

OPERATOR = OperatorKey(bytes(range(32)))
NODE_ID = "lamp-0042"
STEPS = [
    "staged",
    "journaled",
    "accepted",
    "venv",
    "pip",
    "installed",
    "previous_linked",
    "switched",
    "cleaned",
]

# The entry point of a fake release: the repository's agent, with a fault of the release's.
FAULTS = {
    "good": "",
    "import_error": "import edge_agent_module_that_is_not_there  # noqa\n",
    "never_ready": (
        "from edge_agent.node import sdnotify\n"
        "sdnotify.Notifier.ready = lambda self, status: True  # READY=1 never sent\n"
    ),
    "crash": (  # EDGE_AGENT_FAULT_DELAY s after its first seal (an event: it has sealed by then)
        "import threading\n"
        "from edge_agent.node import sampler\n"
        "_seal, _timer = sampler.Sampler.seal, []\n"
        "def _sealed(self):\n"
        "    n = _seal(self)\n"
        "    if n and not _timer:\n"
        "        delay = float(os.environ.get('EDGE_AGENT_FAULT_DELAY', '20'))\n"
        "        _timer.append(threading.Timer(delay, os._exit, (70,)))\n"
        "        _timer[0].daemon = True\n"
        "        _timer[0].start()\n"
        "    return n\n"
        "sampler.Sampler.seal = _sealed\n"
    ),
    "stall": (
        "import threading\n"
        "from edge_agent.node import sampler\n"
        "_seal, _seals = sampler.Sampler.seal, []\n"
        "def _stuck(self):\n"
        "    _seals.append(1)\n"
        "    if len(_seals) > 1:\n"
        "        threading.Event().wait()  # the second seal never returns: the loop stops\n"
        "    return _seal(self)\n"
        "sampler.Sampler.seal = _stuck\n"
    ),
}


def release_wheel(directory: Path, version: str, fault: str = "good") -> Path:
    """An ``edge_agent`` wheel of ``version`` whose package is a .pth pointing at this checkout's
    environment (so the agent it runs is the repository's) and whose ``edge-agent`` script is a
    module of its own, with ``fault``."""
    module = (
        f"import os\nimport sys\nFAULT = {fault!r}\n{FAULTS[fault]}\n"
        "def main():\n    from edge_agent.cli import main as agent\n    sys.exit(agent())\n"
    )
    site = sysconfig.get_paths()["purelib"]
    dist = f"edge_agent-{version}.dist-info"
    files = {
        "edge_agent_release.pth": f"import site; site.addsitedir({site!r})\n",
        "edge_agent_fault.py": module,
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: edge_agent\nVersion: {version}\n",
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        f"{dist}/entry_points.txt": "[console_scripts]\nedge-agent = edge_agent_fault:main\n",
    }
    lines = []
    for n, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        lines.append(f"{n},sha256={digest},{len(text.encode())}")
    files[f"{dist}/RECORD"] = "\n".join([*lines, f"{dist}/RECORD,,"]) + "\n"
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"edge_agent-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as z:
        for n, text in files.items():
            z.writestr(n, text)
    return path


class Node:
    """A node's directories (trust store, state, releases) and `update apply` run on them."""

    def __init__(self, root: Path) -> None:
        self.base = root
        self.trust = root / "trust"
        self.trust.mkdir(parents=True)
        (self.trust / f"{OPERATOR.public.id}.pub").write_bytes(OPERATOR.public.line())
        self.state = root / "state"
        self.releases = root / "releases"
        self.layout = Layout(self.releases)
        self.counter = 1000

    def bundle(self, version: str, fault: str = "good", key: OperatorKey = OPERATOR) -> Path:
        self.counter += 1
        wheels = self.base / f"wheels-{self.counter}"
        wheel = release_wheel(wheels, version, fault)
        out = self.base / f"{version}-{fault}-{self.counter}.tar"
        build(
            [wheel],
            key=key,
            version=version,
            platform=node_platform(),
            target=f"node:{NODE_ID}",
            out=out,
            counter=self.counter,
        )
        return out

    def apply(self, bundle: Path, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
        argv = [sys.executable, "-m", "edge_agent.cli", "update", "apply", str(bundle)]
        argv += ["--trust-dir", str(self.trust), "--node-id", NODE_ID, "--state-dir", str(self.state)]
        argv += ["--root", str(self.releases), "--json"]
        done = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=REPO)
        if check:
            assert done.returncode == 0, done.stderr
        return done


def outside_staging(root: Path) -> dict[str, tuple]:
    """Every path under the releases root but staging, with its kind and content hash."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel = Path(dirpath).relative_to(root)
        if rel.parts[:1] == ("staging",):
            continue
        for n in dirnames + filenames:
            p = Path(dirpath, n)
            if p == root / "staging":
                continue
            st = p.lstat()
            body = (
                p.read_bytes()
                if p.is_file() and not p.is_symlink()
                else os.readlink(p).encode()
                if p.is_symlink()
                else b""
            )
            out[str(p.relative_to(root))] = (st.st_mode, hashlib.sha256(body).hexdigest())
    return out


def _base_release(node: Node) -> str:
    """A complete, good release to start from (a venv is not needed: it is never run here)."""
    name = "0.1.0-1"
    (node.layout.release(name) / "venv").mkdir(parents=True)
    node.layout.write_state(name, status="good", version="0.1.0")
    node.layout.switch(name)
    return name


def test_apply_installs_a_release_and_makes_it_current(tmp_path):
    node = Node(tmp_path)
    base = _base_release(node)
    done = node.apply(node.bundle("0.2.0"))
    report = json.loads(done.stdout)
    name = f"0.2.0-{node.counter}"
    assert report["current"] == name and report["previous"] == base and not report["resumed"]
    layout = node.layout
    assert (layout.link("current"), layout.link("previous")) == (name, base)
    state = layout.state(name)
    assert state is not None
    assert state["status"] == "trial" and state["tries_left"] == 1 and state["counter"] == node.counter
    script = layout.release(name) / "venv" / "bin" / "edge-agent"
    assert "edge_agent_fault" in script.read_text()  # the bundle's own entry point
    assert sorted(p.name for p in (node.releases / "staging").iterdir()) == []
    bundle = node.base / f"0.2.0-good-{node.counter}.tar"
    assert json.loads(node.apply(bundle).stdout)["resumed"]  # current already: nothing to do
    node.layout.rollback()
    again = node.apply(bundle, check=False)  # not current: the counter refuses it
    assert again.returncode == 1 and "refused (replayed)" in again.stderr


@pytest.mark.parametrize("step", STEPS)
def test_sigkill_after_any_step_leaves_one_complete_current_and_a_rerun_completes(tmp_path, step):
    node = Node(tmp_path)
    base = _base_release(node)
    bundle = node.bundle("0.2.0")
    name = f"0.2.0-{node.counter}"
    killed = node.apply(bundle, env=dict(os.environ, EDGE_AGENT_UPDATE_KILL_AT=step), check=False)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    current = node.layout.link("current")
    assert current in (base, name) and node.layout.complete(current)  # one complete current
    assert current == (name if STEPS.index(step) >= STEPS.index("switched") else base)
    done = node.apply(bundle)
    report = json.loads(done.stdout)
    assert report["current"] == name, done.stdout
    assert (node.layout.link("current"), node.layout.link("previous")) == (name, base)
    assert node.layout.state(name)["status"] == "trial"  # type: ignore[index]
    assert list((node.releases / "staging").iterdir()) == []
    releases = sorted(p.name for p in node.layout.releases.iterdir())
    assert releases == sorted([base, name])


def test_a_release_that_failed_its_trial_is_never_installed_again(tmp_path):
    node = Node(tmp_path)
    _base_release(node)
    bundle = node.bundle("0.2.0")
    node.apply(bundle)
    name = f"0.2.0-{node.counter}"
    node.layout.mark_failed(name, "no READY=1 within 120 s")
    node.layout.rollback()
    (node.state / "fleet" / "counters.json").unlink()  # a wiped state: the counter alone would accept it
    before = outside_staging(node.releases)
    done = node.apply(bundle, check=False)
    assert done.returncode == 1
    assert "refused (failed_release): release " + name in done.stderr
    assert "no READY=1 within 120 s" in done.stderr and "Traceback" not in done.stderr
    assert outside_staging(node.releases) == before
    assert list((node.releases / "staging").iterdir()) == []


def test_a_bad_bundle_writes_nothing_outside_staging(tmp_path):
    node = Node(tmp_path)
    _base_release(node)
    before = outside_staging(node.releases)
    stranger = node.bundle("0.2.0", key=OperatorKey(bytes(range(1, 33))))
    done = node.apply(stranger, check=False)
    assert done.returncode == 1 and "refused (unknown_key)" in done.stderr
    good = node.bundle("0.3.0")
    data = bytearray(good.read_bytes())
    wheel = (node.base / f"wheels-{node.counter}" / "edge_agent-0.3.0-py3-none-any.whl").read_bytes()
    data[data.find(wheel) + 100] ^= 1  # inside the wheel: its hash no longer the manifest's
    good.write_bytes(bytes(data))
    done = node.apply(good, check=False)
    assert done.returncode == 1 and "refused (corrupt_file)" in done.stderr, done.stderr
    assert outside_staging(node.releases) == before
    assert list((node.releases / "staging").iterdir()) == []
    assert not (node.state / "fleet" / "counters.json").exists()  # nothing accepted


def test_a_staged_file_changed_before_the_resume_is_refused_and_forgotten(tmp_path):
    node = Node(tmp_path)
    base = _base_release(node)
    bundle = node.bundle("0.2.0")
    env = dict(os.environ, EDGE_AGENT_UPDATE_KILL_AT="accepted")
    assert node.apply(bundle, env=env, check=False).returncode == -signal.SIGKILL
    staged = next((node.releases / "staging").glob("bundle-*/edge_agent-*.whl"))
    staged.write_bytes(staged.read_bytes() + b"x")
    done = node.apply(bundle, check=False)
    assert done.returncode == 1 and "refused (corrupt_file): staged edge_agent-0.2.0" in done.stderr
    assert list((node.releases / "staging").iterdir()) == []  # no journal to refuse every later run
    assert node.layout.link("current") == base
    newer = node.bundle("0.2.0")  # what it costs: the same release signed again, a higher counter
    assert json.loads(node.apply(newer).stdout)["current"] == f"0.2.0-{node.counter}"
