"""The SD image recipe (images/), checked as far as a machine without loop devices and
qemu allows: shell syntax and shellcheck, pi-gen's stage layout, every file the stage
installs exists in the repository, the settings it promises (shellcheck and the fstab edit,
which run tools, are in integration/test_image_scripts.py)."""

from __future__ import annotations

import os
import re

from helpers import REPO

IMAGES = REPO / "images"
STAGE = IMAGES / "pi-gen" / "stage-edge-agent"


def test_the_stage_has_pi_gens_layout_and_runs_after_lite():
    assert (STAGE / "EXPORT_IMAGE").is_file()
    assert (STAGE / "01-agent" / "00-packages").is_file()
    config = (IMAGES / "pi-gen" / "config").read_text()
    assert re.search(r'^STAGE_LIST="stage0 stage1 stage2 stage-edge-agent"$', config, re.M)
    for line in (
        "PUBKEY_ONLY_SSH=1",
        "ENABLE_SSH=1",
        "DISABLE_FIRST_BOOT_USER_RENAME=1",
        "ENABLE_CLOUD_INIT=1",
    ):
        assert re.search(rf"^{line}$", config, re.M), line
    assert not re.search(r"^FIRST_USER_PASS=", config, re.M)  # no default password
    packages = (STAGE / "01-agent" / "00-packages").read_text().split()
    assert {"python3-venv", "python3-dev", "gcc"} <= set(packages)


def test_every_file_the_stage_installs_is_in_the_repository():
    run = (STAGE / "01-agent" / "00-run.sh").read_text()
    build = (IMAGES / "build.sh").read_text()
    installed = set(re.findall(r"install -m \d+ files/(\S+)", run))
    assert installed, "no install lines found"
    checked_in = {p.name for p in (STAGE / "01-agent" / "files").iterdir()}
    staged = set(re.findall(r'"\$repo/(\S+?)"', build))  # copied from the repository by build.sh
    for rel in staged:
        assert (REPO / rel).is_file(), f"build.sh copies {rel}, which is not in the repository"
    staged_names = {os.path.basename(r) for r in staged} | {"edge-agent.tar.gz", "images-README.md"}
    missing = installed - checked_in - staged_names
    assert not missing, f"installed but neither checked in nor staged by build.sh: {missing}"
    for unit in ("edge-agent.service", "edge-agent-import.service"):
        assert unit in installed and (REPO / "systemd" / unit).is_file()
    assert 'cp "$here/README.md" "$files/images-README.md"' in build


def test_the_image_promises_are_in_the_scripts():
    chroot = (STAGE / "01-agent" / "01-run-chroot.sh").read_text()
    run = (STAGE / "01-agent" / "00-run.sh").read_text()
    for promise in (
        "EDGE_AGENT_REQUIRE_EXT=1",
        "python3 -m venv /opt/edge-agent",
        "systemctl enable edge-agent-import.service edge-agent.service",
        "raspi-config nonint do_i2c 0",
        "systemd-sysusers",
    ):
        assert promise in chroot, promise
    assert "passwd -l root" in run and 'passwd -l "${FIRST_USER_NAME}"' in run
    # pi-gen's cloud-init user entry without FIRST_USER_PASS is an empty, unlocked password:
    # ours, read after it, locks it
    user_cfg = run[run.index("99_edge-agent.cfg") :]
    assert "lock_passwd: true" in user_cfg and "ssh_pwauth: false" in user_cfg
    assert "99_edge-agent.cfg" > "99_default.cfg"
    sshd = (STAGE / "01-agent" / "files" / "sshd-edge-agent.conf").read_text()
    assert re.search(r"^PasswordAuthentication no$", sshd, re.M) and re.search(
        r"^PermitRootLogin no$", sshd, re.M
    )
    journald = (STAGE / "01-agent" / "files" / "journald-edge-agent.conf").read_text()
    assert re.search(r"^Storage=volatile$", journald, re.M) and re.search(
        r"^RuntimeMaxUse=16M$", journald, re.M
    )
