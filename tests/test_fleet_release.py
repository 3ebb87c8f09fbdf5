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
