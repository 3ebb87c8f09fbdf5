"""The first-boot import leaves no secret in the FAT boot partition's free clusters.

A FAT unlink only marks clusters free, so a secret removed that way stays in the raw
partition for anyone with the card. Here a real FAT32 file system (mkfs.fat) is mounted
with a FAT driver (fusefat: the kernel's vfat needs privileges a test does not have),
provisioned and imported through it like a card on a node, and the raw image is
scanned afterwards. The same run with a plain unlink shows the scan can fail."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
from helpers import missing, require_tool
from test_image import inputs, provision_args  # noqa: F401  (a fixture, and the arguments)

from edge_agent.cli import main
from edge_agent.field import firstboot

MiB = 1 << 20


@pytest.fixture
def mounted_card(tmp_path):
    """A 64 MiB FAT32 file system image, mounted read-write at root/boot/firmware."""
    mkfs = require_tool("mkfs.fat", "dosfstools")
    fusefat = require_tool("fusefat", "fusefat")
    fusermount = require_tool("fusermount", "fuse")
    if not os.access("/dev/fuse", os.R_OK | os.W_OK):
        missing("/dev/fuse is not usable here: the FAT driver of this test runs in FUSE")
    image = tmp_path / "bootfs.img"
    with open(image, "wb") as f:
        f.truncate(64 * MiB)
    subprocess.run([mkfs, "-F", "32", "-n", "BOOTFS", str(image)], check=True, capture_output=True)
    root = tmp_path / "root"
    boot = root / "boot" / "firmware"
    boot.mkdir(parents=True)
    (root / "etc").mkdir()
    (root / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    subprocess.run([fusefat, "-o", "rw+", str(image), str(boot)], check=True, capture_output=True)
    try:
        for _ in range(200):  # mounted when the mount point is a new file system
            if os.stat(boot).st_dev != os.stat(root).st_dev:
                break
            time.sleep(0.05)
        else:
            pytest.fail("fusefat did not mount the image")
        yield root, boot, image
    finally:
        subprocess.run([fusermount, "-u", str(boot)], capture_output=True)


def _unmount(boot: Path) -> None:
    subprocess.run([require_tool("fusermount", "fuse"), "-u", str(boot)], check=True, capture_output=True)


def _secrets(inp) -> dict[str, bytes]:
    key = inp["key"].read_bytes()
    body = b"".join(line for line in key.splitlines() if not line.startswith(b"-----"))
    return {"password": b"s3cret-Pa55word", "psk": b"wifi-pass-phrase-77", "key": body[:48]}


def test_imported_secrets_are_not_left_in_the_partitions_free_clusters(mounted_card, inputs):  # noqa: F811
    root, boot, image = mounted_card
    assert main(provision_args(boot, inputs)) == 0
    assert main(["image", "import", "--root", str(root), "--owner", "0:0"]) == 0
    assert not (boot / "edge-agent" / "mqtt-password").exists()
    _unmount(boot)
    raw = image.read_bytes()
    left = [name for name, secret in _secrets(inputs).items() if secret in raw]
    assert left == [], f"found in the raw FAT image after the import: {left}"
    imported = root / "etc" / "edge-agent"
    assert (imported / "mqtt-password").read_bytes() == b"s3cret-Pa55word\n"


def test_a_plain_unlink_would_have_left_them(mounted_card, inputs, monkeypatch):  # noqa: F811
    """The scan above can fail: with the plain unlink the import used to do, it does."""
    root, boot, image = mounted_card
    assert main(provision_args(boot, inputs)) == 0
    monkeypatch.setattr(firstboot, "unlink_wiped", os.unlink)
    assert main(["image", "import", "--root", str(root), "--owner", "0:0"]) == 0
    _unmount(boot)
    raw = image.read_bytes()
    assert _secrets(inputs)["password"] in raw and _secrets(inputs)["key"] in raw
