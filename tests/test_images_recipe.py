"""The SD image recipes (images/): pi-gen's and Debian's, sharing one install step, checked
without building (`make image-test` builds and boots one): pi-gen's stage layout, every file
the install step uses is staged from the repository, both recipes run it, the settings it
promises (shellcheck and the fstab edit, which run tools, are in
integration/test_image_scripts.py)."""

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


def test_every_file_the_install_step_uses_is_staged_from_the_repository():
    stage = (IMAGES / "stage.sh").read_text()
    install = (IMAGES / "install-agent.sh").read_text()
    used = set(re.findall(r'"\$src/(\S+?)"', install))
    assert used, "no staged files used"
    copied = set(re.findall(r'"\$(?:repo|here)/(\S+?\.\w+)"', stage))
    for rel in copied:
        base = REPO if (REPO / rel).is_file() else IMAGES
        assert (base / rel).is_file(), f"stage.sh copies {rel}, which is not in the repository"
    staged = {os.path.basename(r) for r in copied} | {
        "edge-agent.tar.gz",
        "images-README.md",
        "tech-user",
        "tech-user.pub",
        "pip-ca.pem",  # optional: the build machine's CA for PyPI, staged by both recipes
    }
    for recipe in (IMAGES / "build.sh", IMAGES / "debian" / "build.sh"):
        assert "pip-ca.pem" in recipe.read_text(), recipe
    assert used <= staged, f"install-agent.sh uses what stage.sh does not stage: {used - staged}"
    for unit in ("edge-agent.service", "edge-agent-launcher.service", "edge-agent-import.service"):
        assert unit in used and (REPO / "systemd" / unit).is_file()


def test_both_recipes_run_the_one_install_step():
    build = (IMAGES / "build.sh").read_text()
    run = (STAGE / "01-agent" / "00-run.sh").read_text()
    chroot = (STAGE / "01-agent" / "01-run-chroot.sh").read_text()
    debian = (IMAGES / "debian" / "build.sh").read_text()
    assert '"$here/stage.sh" "$stage/01-agent/files" tech' in build
    assert 'cp -r files "${ROOTFS_DIR}/opt/edge-agent/src"' in run
    assert "/opt/edge-agent/src/install-agent.sh /opt/edge-agent/src" in chroot
    assert '"$images/stage.sh" "$work/stage" tech' in debian
    assert "/opt/edge-agent/src/install-agent.sh /opt/edge-agent/src" in debian
    # the same layout as Raspberry Pi OS: MBR, 256 MiB FAT at 4 MiB ("bootfs"), then ext4 root
    assert "BOOT_START=8192 BOOT_SECTORS=524288 ROOT_START=532480" in debian
    assert "label: dos" in debian and "type=c" in debian and "type=83" in debian
    assert "mkfs.fat -F 32" in debian and "-n bootfs" in debian and "mkfs.ext4" in debian and " -d " in debian
    # nothing mounted on the host: the agent layer's chroot mounts only in its own namespace
    ns = debian[debian.index("unshare --mount --propagation private") : debian.index('\' sh "$work/root"')]
    outside = debian.replace(ns, "").replace("mount -t binfmt_misc", "")
    assert "losetup" not in debian and "mount " not in outside
    packages = (IMAGES / "debian" / "packages").read_text().split()
    assert {"python3-venv", "python3-dev", "gcc", "cloud-init", "linux-image-arm64"} <= set(packages)


def test_the_image_promises_are_in_the_install_step():
    install = (IMAGES / "install-agent.sh").read_text()
    for promise in (
        "EDGE_AGENT_REQUIRE_EXT=1",
        "python3 -m venv /opt/edge-agent",
        'assert d.IMPLEMENTATION == "cython"',
        "systemctl enable edge-agent-import.service edge-agent-launcher.service",
        "raspi-config nonint do_i2c 0",
        "systemd-sysusers",
        "passwd -l root",
        'passwd -l "$tech"',
    ):
        assert promise in install, promise
    # the image's cloud-init user entry (pi-gen's without FIRST_USER_PASS: an empty, unlocked
    # password; Debian's default user) is replaced by ours, read after it: locked, keys only
    user_cfg = install[install.index("99_edge-agent.cfg") :]
    assert "lock_passwd: true" in user_cfg and "ssh_pwauth: false" in user_cfg
    assert "99_edge-agent.cfg" > "99_default.cfg"
    sshd = (IMAGES / "files" / "sshd-edge-agent.conf").read_text()
    assert re.search(r"^PasswordAuthentication no$", sshd, re.M) and re.search(
        r"^PermitRootLogin no$", sshd, re.M
    )
    journald = (IMAGES / "files" / "journald-edge-agent.conf").read_text()
    assert re.search(r"^Storage=volatile$", journald, re.M) and re.search(
        r"^RuntimeMaxUse=16M$", journald, re.M
    )


def test_the_debian_base_layer_is_keyed_on_its_packages_not_on_the_agent():
    """A change to the agent rebuilds only the agent layer, not the Debian packages (31 min)."""
    debian = (IMAGES / "debian" / "build.sh").read_text()
    base = (IMAGES / "debian" / "base.sh").read_text()
    base_key = debian[debian.index("base_key=$(") : debian.index('base="$cache/base-')]
    for made_of in ('"$here/base.sh"', '"$here/packages"', '"$here/initramfs-modules"'):
        assert made_of in base_key, made_of
    assert "HEAD:" not in base_key and "stage" not in base_key and "install-agent" not in base_key
    assert "install-agent" not in base and "stage" not in base and "mmdebstrap --arch=arm64" in base
    agent_key = debian[debian.index("agent_key=$(") : debian.index('rootfs="$cache/agent-')]
    assert "HEAD:edge_agent" in agent_key and "HEAD:ext" in agent_key and "$base_key" in agent_key
    assert 'cd "$work/stage" && sha256sum' in agent_key  # install-agent.sh, the units, the key


def test_the_image_tests_drop_in_changes_only_the_simulation():
    """The booted image test runs the launcher unit with a drop-in (no I2C in the emulated
    machine): its ExecStart is the unit's, with --simulate, so the hardening and the
    launcher's flags measured are the shipped ones; and the checks unit wants that unit."""
    unit = (REPO / "systemd" / "edge-agent-launcher.service").read_text()
    overlay = IMAGES / "test" / "overlay" / "etc" / "systemd" / "system"
    drop_in = (overlay / "edge-agent-launcher.service.d" / "50-image-test.conf").read_text()
    shipped = re.findall(r"^ExecStart=(.+)$", unit, re.M)
    tested = [line for line in re.findall(r"^ExecStart=(.*)$", drop_in, re.M) if line]
    assert len(shipped) == 1 and len(tested) == 1
    assert tested[0] == shipped[0].replace(" -- run ", " -- run --simulate ", 1) != shipped[0]
    checks = (overlay / "edge-agent-image-test.service").read_text()
    assert "Wants=edge-agent-launcher.service" in checks and "edge-agent.service" not in checks
    assert not (overlay / "edge-agent.service.d").exists()
