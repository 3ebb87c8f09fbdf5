"""edge_agent/fleet/release.py: the A/B layout, the state of a release, the atomic switch and
the rollback; an incomplete or failed release is never made current."""

from __future__ import annotations

import os

import pytest

from edge_agent.fleet.release import Layout


def _release(layout: Layout, name: str, status: str | None = "trial") -> None:
    (layout.release(name) / "venv").mkdir(parents=True)
    if status is not None:
        layout.write_state(name, status=status, version=name.split("-")[0])


def test_switch_keeps_previous_and_rollback_goes_back(tmp_path):
    layout = Layout(tmp_path)
    _release(layout, "0.1.0-1", "good")
    _release(layout, "0.2.0-2")
    layout.switch("0.1.0-1")
    assert layout.link("current") == "0.1.0-1" and layout.link("previous") is None
    layout.switch("0.2.0-2")
    assert (layout.link("current"), layout.link("previous")) == ("0.2.0-2", "0.1.0-1")
    assert os.readlink(tmp_path / "current") == "releases/0.2.0-2"  # relative: the root may move
    layout.mark_failed("0.2.0-2", "exited")
    assert layout.rollback() == "0.1.0-1"
    assert layout.link("current") == "0.1.0-1"
    assert layout.state("0.2.0-2") == {"status": "failed", "reason": "exited", "version": "0.2.0"}
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_a_failed_or_incomplete_release_is_never_made_current(tmp_path):
    layout = Layout(tmp_path)
    _release(layout, "0.1.0-1", "good")
    _release(layout, "0.2.0-2", "failed")
    _release(layout, "0.3.0-3", None)  # an install killed before release.json
    layout.switch("0.1.0-1")
    with pytest.raises(ValueError, match="failed its trial and is never tried again"):
        layout.switch("0.2.0-2")
    with pytest.raises(ValueError, match="incomplete"):
        layout.switch("0.3.0-3")
    assert layout.link("current") == "0.1.0-1" and layout.link("previous") is None
    with pytest.raises(ValueError, match="no previous release"):
        layout.rollback()


@pytest.mark.parametrize("name", ["", "../x", ".hidden", "a/b"])
def test_a_release_name_is_one_plain_name(tmp_path, name):
    with pytest.raises(ValueError, match="is not a release name"):
        Layout(tmp_path).release(name)


def _wheel(directory, version: str) -> None:
    """A tiny edge_agent wheel: one module and its dist-info (what pip needs to install it)."""
    import base64
    import hashlib
    import zipfile

    files = {
        "edge_agent_probe.py": f"VERSION = {version!r}\n",
        f"edge_agent-{version}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: edge_agent\nVersion: {version}\n",
        f"edge_agent-{version}.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = f"edge_agent-{version}.dist-info/RECORD"
    lines = []
    for n, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        lines.append(f"{n},sha256={digest},{len(text.encode())}")
    files[record] = "\n".join([*lines, f"{record},,"]) + "\n"
    with zipfile.ZipFile(directory / f"edge_agent-{version}-py3-none-any.whl", "w") as z:
        for n, text in files.items():
            z.writestr(n, text)


def test_install_makes_a_venv_from_the_bundle_s_wheels_alone(tmp_path):
    import subprocess
    import sys

    from edge_agent.fleet.release import InstallError, install

    wheels = tmp_path / "staged"
    wheels.mkdir()
    _wheel(wheels, "0.2.0")
    layout = Layout(tmp_path / "opt")
    directory = install(layout, "0.2.0-2", wheels, "0.2.0", sys.executable)
    assert layout.state("0.2.0-2") == {"status": "trial", "tries_left": 1, "version": "0.2.0"}
    out = subprocess.run(
        [str(directory / "venv" / "bin" / "python"), "-c", "import edge_agent_probe as p; print(p.VERSION)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "0.2.0"
    with pytest.raises(ValueError, match="exists already"):
        install(layout, "0.2.0-2", wheels, "0.2.0", sys.executable)
    with pytest.raises(InstallError, match="pip failed"):  # a version the bundle does not hold
        install(layout, "0.3.0-3", wheels, "0.3.0", sys.executable)
    assert not layout.complete("0.3.0-3")  # left incomplete: never made current


def test_running_says_what_the_launcher_runs_and_the_newest_trial(tmp_path):
    from edge_agent.fleet.release import NAME_ENV, ROOT_ENV, running

    layout = Layout(tmp_path)
    _release(layout, "0.1.0-9", "good")
    _release(layout, "0.2.0-10")  # by counter, not by text: 10 is newer than 9
    env = {ROOT_ENV: str(tmp_path), NAME_ENV: "0.1.0-9"}
    assert running({}) is None and running({ROOT_ENV: str(tmp_path)}) is None
    assert running(env) == {
        "name": "0.1.0-9",
        "status": "good",
        "last_trial": {"release": "0.2.0-10", "status": "trial"},
    }
    layout.mark_failed("0.2.0-10", "crashed 20 s after start; " + "x" * 500)
    trial = running(env)["last_trial"]
    assert (
        trial["status"] == "failed" and trial["reason"].startswith("crashed") and len(trial["reason"]) == 200
    )
    _release(layout, "0.3.0-11", None)  # incomplete (killed install): no trial yet
    assert running(env)["last_trial"]["release"] == "0.2.0-10"
    # damaged state files, a missing root, the image's own agent: facts, never an exception
    (layout.release("0.2.0-10") / "release.json").write_bytes(b"\xff{")
    (layout.release("0.1.0-9") / "release.json").write_text("[]")
    assert running(env) == {"name": "0.1.0-9", "status": "unknown"}
    assert running({ROOT_ENV: str(tmp_path / "none"), NAME_ENV: "base"}) == {"name": "base"}
