"""`edge-agent image provision / inspect` on MBR and GPT disk images built here with
sfdisk and mkfs.fat, read back with mtools, and on a mounted-boot-directory stand-in."""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from pathlib import Path

import pytest
import yaml
from helpers import REPO, require_tool

from edge_agent.cli import main
from edge_agent.config import parse_config
from edge_agent.field import provision, sdcard

MiB = 1024 * 1024
BASIC_DATA = "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7"
LINUX = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"

NODE_YAML = textwrap.dedent("""\
    node:
      id: lamp-0042
    mqtt:
      broker: mqtts://backbone.example.net
      username: lamp-0042
    sensors:
      - type: bme680
        address: 0x77
""")


BOOT_START, BOOT_SECTORS, ROOT_START = 8192, 524288, 532480  # 256 MiB FAT32 at 4 MiB, as Pi OS


def make_disk(path: Path, scheme: str, *, fat: bool = True, first_type: str | None = None) -> Path:
    """A sparse 272 MiB disk image: partition 1, 256 MiB FAT32 at 4 MiB; partition 2, 8 MiB Linux."""
    sfdisk = require_tool("sfdisk", "fdisk")
    mkfs = require_tool("mkfs.fat", "dosfstools")
    require_tool("mcopy", "mtools")
    with open(path, "wb") as f:
        f.truncate(272 * MiB)
    if scheme == "mbr":
        table = (
            f"label: dos\nstart={BOOT_START}, size={BOOT_SECTORS}, type={first_type or 'c'}\n"
            f"start={ROOT_START}, size=16384, type=83\n"
        )
    else:
        table = (
            f"label: gpt\nstart={BOOT_START}, size={BOOT_SECTORS}, type={first_type or BASIC_DATA}, "
            f"name=boot\nstart={ROOT_START}, size=16384, type={LINUX}, name=root\n"
        )
    subprocess.run([sfdisk, "-q", str(path)], input=table.encode(), check=True, capture_output=True)
    if fat:  # mkfs.fat counts 1 KiB blocks
        subprocess.run(
            [
                mkfs,
                "-F",
                "32",
                "-s",
                "2",
                "-n",
                "BOOTFS",
                "--offset",
                str(BOOT_START),
                str(path),
                str(BOOT_SECTORS // 2),
            ],
            check=True,
            capture_output=True,
        )
    return path


@pytest.fixture
def inputs(tmp_path, pki):
    cfg = tmp_path / "node.yaml"
    cfg.write_text(NODE_YAML)
    pw = tmp_path / "pw"
    pw.write_text("s3cret-Pa55word\n")
    psk = tmp_path / "psk"
    psk.write_text("wifi-pass-phrase-77\n")
    return {
        "config": cfg,
        "password": pw,
        "psk": psk,
        "ca": pki / "ca.pem",
        "cert": pki / "client.pem",
        "key": pki / "client.key",
    }


def provision_args(target, inp, *extra):
    return [
        "image",
        "provision",
        str(target),
        "--config",
        str(inp["config"]),
        "--ca",
        str(inp["ca"]),
        "--cert",
        str(inp["cert"]),
        "--key",
        str(inp["key"]),
        "--password-file",
        str(inp["password"]),
        "--wifi-ssid",
        "city-iot",
        "--wifi-psk-file",
        str(inp["psk"]),
        "--hostname",
        "lamp-0042",
        *extra,
    ]


def mtype(disk: Path, rel: str, offset: int = BOOT_START * 512) -> bytes:
    return subprocess.run(
        ["mtype", "-i", f"{disk}@@{offset}", f"::/{rel}"],
        check=True,
        capture_output=True,
        env=dict(os.environ, MTOOLS_SKIP_CHECK="1"),
    ).stdout


@pytest.mark.parametrize("scheme", ["mbr", "gpt"])
def test_partition_tables_are_read_as_sfdisk_wrote_them(tmp_path, scheme):
    disk = make_disk(tmp_path / "disk.img", scheme)
    found, parts = sdcard.partitions(str(disk))
    assert found == scheme
    assert [(p.number, p.offset, p.size) for p in parts] == [(1, 4 * MiB, 256 * MiB), (2, 260 * MiB, 8 * MiB)]
    boot = sdcard.boot_partition(str(disk))
    assert boot.number == 1 and ("0x0c" in boot.kind or "basic data" in boot.kind)


@pytest.mark.parametrize("scheme", ["mbr", "gpt"])
def test_provision_writes_config_and_credentials_that_mtools_reads_back(tmp_path, inputs, scheme, capsys):
    disk = make_disk(tmp_path / "disk.img", scheme)
    assert main(provision_args(disk, inputs)) == 0
    assert "provisioned node lamp-0042" in capsys.readouterr().out
    node = yaml.safe_load(mtype(disk, "edge-agent/node.yaml"))
    cfg = parse_config(node, "card")
    assert cfg.node_id == "lamp-0042"
    # credential paths point where the first-boot import puts the files
    assert (cfg.mqtt.ca_file, cfg.mqtt.cert_file, cfg.mqtt.key_file, cfg.mqtt.password_file) == (
        "/etc/edge-agent/ca.pem",
        "/etc/edge-agent/client.pem",
        "/etc/edge-agent/client.key",
        "/etc/edge-agent/mqtt-password",
    )
    assert mtype(disk, "edge-agent/client.key") == inputs["key"].read_bytes()
    assert mtype(disk, "edge-agent/mqtt-password") == b"s3cret-Pa55word\n"
    meta = yaml.safe_load(mtype(disk, "meta-data"))
    user = mtype(disk, "user-data")
    net = yaml.safe_load(mtype(disk, "network-config"))
    assert meta["instance-id"].startswith("edge-agent-lamp-0042-")
    assert user.startswith(b"#cloud-config\n") and yaml.safe_load(user)["hostname"] == "lamp-0042"
    assert net["network"]["wifis"]["wlan0"]["access-points"]["city-iot"]["password"] == "wifi-pass-phrase-77"
    manifest = json.loads(mtype(disk, "edge-agent/provision.json"))
    assert manifest["instance_id"] == meta["instance-id"]
    assert manifest["files"]["edge-agent/client.key"]["secret"] is True
    assert b"s3cret" not in mtype(disk, "edge-agent/provision.json")
    # the other partition is untouched
    with open(disk, "rb") as f:
        f.seek(260 * MiB)
        assert f.read(8 * MiB) == bytes(8 * MiB)


def test_every_provisioning_gets_a_new_instance_id_and_keeps_the_images_own_cloud_init(tmp_path, inputs):
    disk = make_disk(tmp_path / "disk.img", "mbr")
    target = sdcard.open_target(str(disk))
    target.write_all(
        {
            "user-data": b"#cloud-config\nssh_authorized_keys:\n  - ssh-ed25519 AAAA tech\n",
            "network-config": b"network:\n  version: 2\n  ethernets:\n    eth0: {dhcp4: true}\n",
        }
    )
    ids = set()
    for _ in range(2):
        assert main(provision_args(disk, inputs)) == 0
        ids.add(yaml.safe_load(mtype(disk, "meta-data"))["instance-id"])
    assert len(ids) == 2
    user = yaml.safe_load(mtype(disk, "user-data"))
    net = yaml.safe_load(mtype(disk, "network-config"))["network"]
    assert user["ssh_authorized_keys"] == ["ssh-ed25519 AAAA tech"] and user["hostname"] == "lamp-0042"
    assert net["ethernets"]["eth0"] == {"dhcp4": True} and "wlan0" in net["wifis"]


def test_inspect_shows_what_is_provisioned_and_never_a_secret(tmp_path, inputs, capsys):
    disk = make_disk(tmp_path / "disk.img", "gpt")
    assert main(provision_args(disk, inputs)) == 0
    capsys.readouterr()
    assert main(["image", "inspect", str(disk)]) == 0
    text = capsys.readouterr().out
    assert main(["image", "inspect", str(disk), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["node_id"] == "lamp-0042" and info["broker"] == ["mqtts://backbone.example.net"]
    assert info["credentials"] == {
        "ca.pem": True,
        "client.pem": True,
        "client.key": True,
        "mqtt-password": True,
        "http-token": False,  # not given: the status page takes no action
    }
    assert info["cloud_init"]["hostname"] == "lamp-0042" and info["cloud_init"]["wifi_ssids"] == ["city-iot"]
    assert "lamp-0042" in text and "city-iot" in text
    key_body = inputs["key"].read_text().splitlines()[1]
    for out in (text, json.dumps(info)):
        assert "s3cret" not in out and "wifi-pass-phrase" not in out and key_body not in out


def test_a_mounted_boot_directory_is_provisioned_the_same_way(tmp_path, inputs, capsys):
    boot = tmp_path / "bootfs"
    boot.mkdir()
    assert main(provision_args(boot, inputs)) == 0
    assert (boot / "edge-agent" / "client.key").read_bytes() == inputs["key"].read_bytes()
    assert oct((boot / "edge-agent" / "client.key").stat().st_mode & 0o777) == "0o600"
    capsys.readouterr()
    assert main(["image", "inspect", str(boot), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["node_id"] == "lamp-0042"


def _as_nobody(args: list[str]) -> tuple[int, str, bool]:
    """Run the command in a child process as user nobody, on copies of its files in a
    directory nobody can reach; returns (exit code, stderr, whether the image stayed the same).
    The child is forked with everything imported, so it needs no access to this checkout."""
    import shutil
    import sys
    import tempfile

    work = Path(tempfile.mkdtemp(prefix="edge-image-"))
    try:
        work.chmod(0o755)
        disk = None
        for i, a in enumerate(args):
            p = Path(a)
            if p.is_file():
                copy = work / f"{i}-{p.name}"
                shutil.copyfile(p, copy)
                copy.chmod(0o444 if p.name == "disk.img" else 0o644)
                args[i] = str(copy)
                disk = copy if p.name == "disk.img" else disk
        before = _untouched(disk)
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: never returns into pytest
            code = 99
            try:
                os.close(r)
                os.setgroups([])
                os.setgid(65534)
                os.setuid(65534)
                os.chdir(work)
                sys.stderr = open(w, "w", closefd=False)
                code = main(args)
                sys.stderr.flush()
            finally:
                os._exit(code)
        os.close(w)
        with open(r, "rb") as f:
            err = f.read().decode()
        _, status = os.waitpid(pid, 0)
        return os.waitstatus_to_exitcode(status), err, _untouched(disk) == before
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _untouched(disk: Path) -> str:
    import hashlib

    with open(disk, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


@pytest.mark.parametrize(
    "case",
    [
        "no-fat",
        "linux-only",
        "bad-config",
        "missing-key",
        "unreadable-password",
        "not-writable",
        "no-table",
        "cert-without-key",
        "bad-hostname",
        "short-psk",
    ],
)
def test_errors_are_clear_and_nothing_is_written(tmp_path, inputs, case, capsys):
    disk = make_disk(
        tmp_path / "disk.img",
        "gpt" if case == "linux-only" else "mbr",
        fat=case != "no-fat",
        first_type=LINUX if case == "linux-only" else None,
    )
    args = provision_args(disk, inputs)
    expect = {
        "no-fat": "no FAT boot partition",
        "linux-only": "no FAT boot partition",
        "bad-config": "sensors[0].address",
        "missing-key": "key",
        "unreadable-password": "password file",
        "not-writable": "not writable",
        "no-table": "no partition table",
        "cert-without-key": "--cert and --key go together",
        "bad-hostname": "not a valid host name",
        "short-psk": "8 to 63",
    }[case]
    if case == "bad-config":
        inputs["config"].write_text(NODE_YAML.replace("0x77", "0x99"))
    elif case == "missing-key":
        args[args.index("--key") + 1] = str(tmp_path / "nope.key")
    elif case == "unreadable-password":
        inputs["password"].chmod(0)
        if os.access(inputs["password"], os.R_OK):  # root reads anything: use a directory instead
            args[args.index("--password-file") + 1] = str(tmp_path)
    elif case == "not-writable":
        disk.chmod(0o444)
    elif case == "no-table":
        with open(disk, "r+b") as f:
            f.write(bytes(512))
    elif case == "cert-without-key":
        i = args.index("--key")
        del args[i : i + 2]
    elif case == "bad-hostname":
        args[args.index("--hostname") + 1] = "lamp_42.example"
    elif case == "short-psk":
        inputs["psk"].write_text("short\n")
    before = _untouched(disk)
    if case == "not-writable" and os.geteuid() == 0:
        code, err, same = _as_nobody(args)  # root may write a read-only file; a technician may not
    else:
        code = main(args)
        err = capsys.readouterr().err
        same = _untouched(disk) == before
    assert code != 0 and expect in err, err
    assert same


# --- first boot ----------------------------------------------------------------------------------
@pytest.fixture
def fake_root(tmp_path, inputs):
    """A system root whose /boot/firmware was provisioned like a card, and an /etc/passwd."""
    root = tmp_path / "root"
    boot = root / "boot" / "firmware"
    boot.mkdir(parents=True)
    (root / "etc").mkdir()
    (root / "etc" / "passwd").write_text(
        "root:x:0:0::/root:/bin/sh\nedge-agent:x:991:992::/nonexistent:/usr/sbin/nologin\n"
    )
    assert main(provision_args(boot, inputs)) == 0
    return root


def test_first_boot_import_moves_everything_with_tight_modes_and_leaves_no_secret(fake_root, inputs, capsys):
    capsys.readouterr()
    assert main(["image", "import", "--root", str(fake_root)]) == 0
    log = capsys.readouterr().out
    etc = fake_root / "etc" / "edge-agent"
    modes = {p.name: (p.stat().st_mode & 0o777, p.stat().st_uid, p.stat().st_gid) for p in etc.iterdir()}
    assert modes == {
        "node.yaml": (0o640, 991, 992),
        "ca.pem": (0o640, 991, 992),
        "client.pem": (0o640, 991, 992),
        "client.key": (0o600, 991, 992),
        "mqtt-password": (0o600, 991, 992),
    }
    assert (etc.stat().st_mode & 0o777, etc.stat().st_uid, etc.stat().st_gid) == (0o750, 0, 992)
    assert (etc / "client.key").read_bytes() == inputs["key"].read_bytes()
    assert (etc / "mqtt-password").read_text() == "s3cret-Pa55word\n"
    boot = fake_root / "boot" / "firmware"
    assert sorted(p.name for p in (boot / "edge-agent").iterdir()) == ["imported.json"]
    receipt = json.loads((boot / "edge-agent" / "imported.json").read_text())
    assert receipt["node_id"] == "lamp-0042" and "client.key" in receipt["files"]
    # cloud-init is not installed in this root: the PSK is of no use on the card, and goes
    net = (boot / "network-config").read_text()
    assert "wifi-pass-phrase" not in net and "city-iot" in net
    everything = b"".join(p.read_bytes() for p in boot.rglob("*") if p.is_file())
    assert b"s3cret" not in everything and b"PRIVATE KEY" not in everything
    assert log.count("event=imported ") == 5 and "client.key mode=0600" in log and "s3cret" not in log
    # again: nothing to do, nothing changed
    before = {p: p.read_bytes() for p in etc.iterdir()}
    assert main(["image", "import", "--root", str(fake_root)]) == 0
    assert "event=import_nothing" in capsys.readouterr().out
    assert {p: p.read_bytes() for p in etc.iterdir()} == before


def test_the_psk_stays_until_cloud_init_has_applied_it(fake_root, capsys):
    (fake_root / "usr" / "bin").mkdir(parents=True)
    (fake_root / "usr" / "bin" / "cloud-init").write_text("#!/bin/sh\n")
    boot = fake_root / "boot" / "firmware"
    assert main(["image", "import", "--root", str(fake_root), "--owner", "0:0"]) == 0
    assert "wifi-pass-phrase" in (boot / "network-config").read_text()
    assert "event=psk_kept" in capsys.readouterr().out
    instance = yaml.safe_load((boot / "meta-data").read_text())["instance-id"]
    (fake_root / "var" / "lib" / "cloud" / "data").mkdir(parents=True)
    (fake_root / "var" / "lib" / "cloud" / "data" / "instance-id").write_text(instance + "\n")
    assert main(["image", "import", "--root", str(fake_root), "--owner", "0:0"]) == 0
    assert "wifi-pass-phrase" not in (boot / "network-config").read_text()


@pytest.mark.parametrize("damage", ["sha", "config", "owner", "huge", "duplicate"])
def test_a_damaged_card_or_missing_user_imports_nothing(fake_root, damage, capsys):
    card = fake_root / "boot" / "firmware" / "edge-agent"
    args = ["image", "import", "--root", str(fake_root)]
    if damage == "sha":
        (card / "client.key").write_bytes(b"-----BEGIN PRIVATE KEY-----\ntruncated")
    elif damage == "config":
        m = json.loads((card / "provision.json").read_text())
        bad = NODE_YAML.replace("lamp-0042", "'no spaces allowed'", 1).encode()
        (card / "node.yaml").write_bytes(bad)
        m["files"]["edge-agent/node.yaml"]["sha256"] = __import__("hashlib").sha256(bad).hexdigest()
        (card / "provision.json").write_text(json.dumps(m))
    elif damage == "huge":  # read bounded: a card's file may be anything
        (card / "client.key").write_bytes(b"k" * (1024 * 1024 + 1))
    elif damage == "duplicate":  # read as the node's own loader reads: strictly
        m = json.loads((card / "provision.json").read_text())
        bad = (NODE_YAML + "node: {id: other}\n").encode()
        (card / "node.yaml").write_bytes(bad)
        m["files"]["edge-agent/node.yaml"]["sha256"] = __import__("hashlib").sha256(bad).hexdigest()
        (card / "provision.json").write_text(json.dumps(m))
    else:
        args += ["--owner", "nobody-here"]
    before = sorted(p.name for p in card.iterdir())
    assert main(args) != 0
    err = capsys.readouterr().err
    said = {
        "sha": "SHA-256",
        "config": "node.id",
        "owner": "nobody-here",
        "huge": "more than 1,048,576 bytes",
        "duplicate": "the key 'node' again",
    }
    assert said[damage] in err and "Traceback" not in err, err
    assert not (fake_root / "etc" / "edge-agent").exists()
    assert sorted(p.name for p in card.iterdir()) == before


def test_the_import_unit_runs_before_the_agent_and_verifies(tmp_path):
    unit = REPO / "systemd" / "edge-agent-import.service"
    text = unit.read_text()
    for line in (
        "Type=oneshot",
        "Before=edge-agent.service edge-agent-launcher.service",
        "ExecStart=/opt/edge-agent/bin/edge-agent image import",
        "PrivateNetwork=yes",
        "ProtectSystem=strict",
        "WantedBy=multi-user.target",
    ):
        assert line in text, line
    for agent in ("edge-agent.service", "edge-agent-launcher.service"):
        assert "After=network.target edge-agent-import.service" in (REPO / "systemd" / agent).read_text()
    analyze = require_tool("systemd-analyze", "the systemd package")
    import sys

    copy = tmp_path / "edge-agent-import.service"
    copy.write_text(
        text.replace("/opt/edge-agent/bin/edge-agent", str(Path(sys.executable).with_name("edge-agent")))
    )
    out = subprocess.run([analyze, "verify", str(copy)], capture_output=True, text=True)
    lines = [ln for ln in (out.stdout + out.stderr).splitlines() if ln.strip()]
    assert out.returncode == 0 and lines == [], lines


# --- many cards -----------------------------------------------------------------------------------
def batch_csv(tmp_path, inputs, rows):
    (tmp_path / "creds").mkdir(exist_ok=True)
    for name in ("ca", "cert", "key", "password"):
        (tmp_path / "creds" / f"{name}").write_bytes(inputs[name].read_bytes())
    for n, _, _ in rows:  # each node a status page token of its own
        (tmp_path / "creds" / f"{n}.token").write_text(f"token-of-{n}-0123456789\n")
    csv = tmp_path / "nodes.csv"
    csv.write_text(
        "node_id,site,hostname,ca,cert,key,password_file,http_token\n"
        + "".join(
            f"{n},{site},{n},creds/ca,creds/cert,{key},creds/password,creds/{n}.token\n"
            for n, site, key in rows
        )
    )
    return csv


def test_provision_batch_makes_one_sparse_image_per_node(tmp_path, inputs, capsys):
    base = make_disk(tmp_path / "base.img", "mbr")
    csv = batch_csv(tmp_path, inputs, [(f"lamp-{i:04d}", f"Main St {i}", "creds/key") for i in range(3)])
    out = tmp_path / "cards"
    assert (
        main(
            [
                "image",
                "provision-batch",
                str(base),
                str(csv),
                "--out",
                str(out),
                "--config",
                str(inputs["config"]),
            ]
        )
        == 0
    )
    captured = capsys.readouterr()
    assert "3 image(s) in" in captured.out and "3/3" in captured.err
    instances = set()
    for i in range(3):
        img = out / f"lamp-{i:04d}.img"
        assert img.stat().st_size == base.stat().st_size
        assert img.stat().st_blocks * 512 < img.stat().st_size // 4  # holes stay holes
        info = provision.inspect(str(img))
        assert info["node_id"] == f"lamp-{i:04d}" and info["site"] == f"Main St {i}"
        assert info["cloud_init"]["hostname"] == f"lamp-{i:04d}" and all(info["credentials"].values())
        instances.add(info["instance_id"])
    assert len(instances) == 3
    assert provision.inspect(str(base))["provisioned"] is False  # the base image is left as it was


@pytest.mark.parametrize("problem", ["missing-key", "duplicate", "bad-column"])
def test_provision_batch_checks_every_row_before_writing_any(tmp_path, inputs, problem, capsys):
    base = make_disk(tmp_path / "base.img", "mbr")
    rows = [("lamp-0001", "A", "creds/key"), ("lamp-0002", "B", "creds/key"), ("lamp-0003", "C", "creds/key")]
    if problem == "missing-key":
        rows[2] = ("lamp-0003", "C", "creds/lost.key")
    elif problem == "duplicate":
        rows[2] = ("lamp-0001", "C", "creds/key")
    csv = batch_csv(tmp_path, inputs, rows)
    if problem == "bad-column":
        csv.write_text(csv.read_text().replace("password_file", "passwd"))
    out = tmp_path / "cards"
    assert (
        main(
            [
                "image",
                "provision-batch",
                str(base),
                str(csv),
                "--out",
                str(out),
                "--config",
                str(inputs["config"]),
            ]
        )
        != 0
    )
    err = capsys.readouterr().err
    assert {
        "missing-key": "nodes.csv:4 (lamp-0003)",
        "duplicate": "already on line 2",
        "bad-column": "unknown: passwd",
    }[problem] in err, err
    assert not out.exists() or not list(out.iterdir())


def test_the_status_page_token_goes_on_the_card_as_a_secret(tmp_path, inputs, capsys):
    """`--http-token`: the file's first line, checked, on the card as a secret the first-boot
    import makes 0600, and http.token_file pointing where it goes; a token too short for the
    purpose is refused naming the file, and nothing is written."""
    token = tmp_path / "token"
    token.write_text("0123456789abcdef0123456789abcdef\nignored\n")
    boot = tmp_path / "bootfs"
    boot.mkdir()
    assert main(provision_args(boot, inputs, "--http-token", str(token))) == 0
    assert (boot / "edge-agent" / "http-token").read_bytes() == b"0123456789abcdef0123456789abcdef\n"
    assert (boot / "edge-agent" / "http-token").stat().st_mode & 0o777 == 0o600
    cfg = parse_config(yaml.safe_load((boot / "edge-agent" / "node.yaml").read_text()), "card")
    assert cfg.http.token_file == "/etc/edge-agent/http-token"
    manifest = json.loads((boot / "edge-agent" / "provision.json").read_text())
    assert manifest["files"]["edge-agent/http-token"]["secret"] is True
    assert "0123456789abcdef" not in (boot / "edge-agent" / "provision.json").read_text()
    capsys.readouterr()
    short = tmp_path / "short"
    short.write_text("abc\n")
    other = tmp_path / "other"
    other.mkdir()
    assert main(provision_args(other, inputs, "--http-token", str(short))) == 1
    err = capsys.readouterr().err
    assert str(short) in err and "16 to 256" in err and list(other.iterdir()) == []
