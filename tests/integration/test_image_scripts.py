"""The image recipe's shell scripts: they parse and pass shellcheck, and the fstab edit does what it says."""

from __future__ import annotations

import os
import subprocess

from helpers import REPO, require_tool

IMAGES = REPO / "images"
STAGE = IMAGES / "pi-gen" / "stage-edge-agent"
SCRIPTS = [
    IMAGES / "build.sh",
    IMAGES / "stage.sh",
    IMAGES / "install-agent.sh",
    IMAGES / "debian" / "build.sh",
    IMAGES / "debian" / "base.sh",
    IMAGES / "test" / "overlay" / "usr" / "local" / "lib" / "edge-agent-image-test" / "checks.sh",
    STAGE / "prerun.sh",
    STAGE / "01-agent" / "00-run.sh",
    STAGE / "01-agent" / "01-run-chroot.sh",
]


def test_every_script_parses_and_passes_shellcheck():
    shellcheck = require_tool("shellcheck", "shellcheck")
    found = sorted(p for p in IMAGES.rglob("*.sh"))  # checks.sh: the image test's, in the guest
    assert found == sorted(SCRIPTS), "a script was added or removed: list it here"
    for script in SCRIPTS:
        assert os.access(script, os.X_OK), f"{script} is not executable (pi-gen runs it directly)"
        syntax = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
        assert syntax.returncode == 0, syntax.stderr
    lint = subprocess.run(
        [shellcheck, "--shell=bash", "--severity=style", *map(str, SCRIPTS)], capture_output=True, text=True
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr


def test_the_fstab_edit_adds_noatime_to_root_and_boot_only(tmp_path):
    chroot = (IMAGES / "install-agent.sh").read_text()
    sed_line = next(ln for ln in chroot.splitlines() if ln.startswith("sed -i -E") and "/etc/fstab" in ln)
    check_line = next(ln for ln in chroot.splitlines() if ln.startswith("grep -Eq") and "/etc/fstab" in ln)
    fstab = tmp_path / "fstab"
    fstab.write_text(
        "proc            /proc           proc    defaults          0       0\n"
        "PARTUUID=abc-01  /boot/firmware  vfat    defaults          0       2\n"
        "PARTUUID=abc-02  /               ext4    defaults          0       1\n"
        "# a comment /  defaults\n"
        "tmpfs /tmp tmpfs defaults 0 0\n"
    )
    script = f"{sed_line.replace('/etc/fstab', str(fstab))}\n{check_line.replace('/etc/fstab', str(fstab))}\n"
    for _ in range(2):  # a second run changes nothing
        assert subprocess.run(["bash", "-e", "-c", script]).returncode == 0
    lines = fstab.read_text().splitlines()
    assert "defaults,noatime" in lines[1] and "defaults,noatime" in lines[2]
    assert "noatime" not in lines[0] + lines[3] + lines[4]
    assert lines[2].count("noatime") == 1
