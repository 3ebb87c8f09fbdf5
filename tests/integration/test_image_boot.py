"""The SD image built here and booted (`make image-test`): images/debian/build.sh makes an
arm64 Debian 12 card with the install step the pi-gen recipe shares; `edge-agent image
provision` writes one node onto it; qemu-system-aarch64 (the virt machine, Debian's kernel)
boots it with user networking, whose gateway 10.0.2.2 ends on this host's loopback, where
the test's Mosquitto (TLS, client certificate, password) and NTP responder listen. Nothing
is typed into the guest: a test-only unit (images/test/overlay) runs the checks inside it,
writes them to a virtio serial port and powers off. Then the host checks what came back,
what arrived on the broker, and the raw image.

Slow (the first run builds the root file system under qemu-user; later runs take it from
the cache), so it runs only with EDGE_AGENT_IMAGE_TEST=1 (`make image-test`), as root."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import struct
import subprocess
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from helpers import BROKER_USER, REPO, authenticated_broker, require_tool, terminate
from pki import _leaf

from edge_agent.cli import main
from edge_agent.wire.decoder import decode

MiB = 1024 * 1024
BOOT = (4 * MiB, 260 * MiB)  # the FAT boot partition's bytes in the image
NODE = "img-node"
PREFIX = "imgtest"
GUEST_HOST = "10.0.2.2"  # QEMU user networking: the host's loopback, seen from the guest
CACHE = Path(os.environ.get("EDGE_AGENT_IMAGE_CACHE", Path.home() / ".cache" / "edge-agent-image"))
PASSWORD = "img-Pa55-word-7781"
BOOT_LIMIT = 45 * 60  # s: a guard against a hung guest, not a measure (TCG on a busy machine)


class NtpResponder:
    """SNTP server on 127.0.0.1:123 (UDP) for the guest's timesyncd (whose port is fixed):
    the host's clock, stratum 1. The guest's only time source is this one."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self.sock.bind(("127.0.0.1", 123))
        except OSError as exc:
            self.sock.close()
            pytest.fail(
                f"UDP 127.0.0.1:123 cannot be bound ({exc}): the guest's NTP reaches the host only there"
            )
        self.sock.settimeout(0.5)
        self.served = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @staticmethod
    def _stamp(t: float) -> bytes:
        return struct.pack("!II", int(t) + 2208988800, int((t % 1) * 2**32))

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                data, peer = self.sock.recvfrom(512)
            except TimeoutError:
                continue
            if len(data) < 48:
                continue
            now = time.time()
            version = (data[0] >> 3) & 7
            head = struct.pack("!BBbbII4s", (version << 3) | 4, 1, data[2], -20, 0, 16, b"LOCL")
            self.sock.sendto(
                head + self._stamp(now) + data[40:48] + self._stamp(now) + self._stamp(time.time()), peer
            )
            self.served += 1

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        self.sock.close()


class Subscriber:
    """Everything on PREFIX/# as the host's broker delivers it: (topic, payload, retained)."""

    def __init__(self, port: int, pki: Path, client_id: str) -> None:
        self.messages: list[tuple[float, str, bytes, bool]] = []
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
        self.client.tls_set(
            ca_certs=str(pki / "ca.pem"), certfile=str(pki / "client.pem"), keyfile=str(pki / "client.key")
        )
        self.client.username_pw_set(BROKER_USER, PASSWORD)
        self.client.on_connect = lambda c, *_: c.subscribe(f"{PREFIX}/#", qos=1)
        self.client.on_message = lambda _c, _u, m: self.messages.append(
            (time.monotonic(), m.topic, bytes(m.payload), bool(m.retain))
        )
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def node_yaml(port: int) -> str:
    return f"""\
node: {{id: {NODE}}}
flush_interval: 5s
clock: {{hold_unsynced: 0s}}
mqtt:
  broker: mqtts://{GUEST_HOST}:{port}
  username: {BROKER_USER}
  topic_prefix: {PREFIX}
  reconnect: {{min: 1s, max: 10s}}
sensors:
  - name: air
    type: bme680
    interval: 1s
    channels:
      temperature: {{resolution: 0.01, deadband: 0.02}}
      humidity: {{resolution: 0.01, deadband: 0.05}}
      pressure: {{resolution: 0.01, deadband: 0.02}}
      gas: {{resolution: 1, deadband: 200}}
    sim:
      temperature: {{mean: 21.0, amplitude: 2.0, period: 60s}}
      humidity: {{mean: 45.0, amplitude: 5.0, period: 90s}}
      pressure: {{mean: 1013.25, amplitude: 0.5, period: 120s}}
      gas: {{mean: 50000, amplitude: 5000, period: 100s}}
"""


def build_image(out: Path) -> float:
    for tool, pkg in (
        ("mmdebstrap", "mmdebstrap"),
        ("qemu-aarch64-static", "qemu-user-static"),
        ("arch-test", "arch-test"),
        ("mkfs.ext4", "e2fsprogs"),
        ("mkfs.fat", "dosfstools"),
        ("mcopy", "mtools"),
        ("sfdisk", "fdisk"),
        ("ssh-keygen", "openssh-client"),
    ):
        require_tool(tool, pkg)
    CACHE.mkdir(parents=True, exist_ok=True)
    key = CACHE / "tech"
    if not key.exists():  # the technicians' key baked into the cached image
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "tech@image-test", "-f", str(key)],
            check=True,
        )
    started = time.monotonic()
    build = subprocess.run(
        [
            str(REPO / "images" / "debian" / "build.sh"),
            str(out),
            f"{key}.pub",
            "--cache",
            str(CACHE),
            "--overlay",
            str(REPO / "images" / "test" / "overlay"),
        ],
        capture_output=True,
        text=True,
    )
    assert build.returncode == 0, build.stdout[-4000:] + build.stderr[-8000:]
    layers = [ln for ln in build.stderr.splitlines() if " built in " in ln or " installed in " in ln]
    print(f"\nimage build: {time.monotonic() - started:.0f} s; {' '.join(layers)} {build.stdout.strip()}")
    return time.monotonic() - started


def parse_results(text: str) -> tuple[dict[str, list[str]], dict[str, str]]:
    """The guest's lines: KEY VALUE... (the last of each key) and BEGIN NAME ... END blocks."""
    values: dict[str, list[str]] = {}
    blocks: dict[str, str] = {}
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("BEGIN "):
            name, body = line[6:], []
            i += 1
            while i < len(lines) and lines[i] != "END":
                body.append(lines[i])
                i += 1
            blocks[name] = "\n".join(body)
        elif line.strip():
            key, *rest = line.split()
            values[key] = rest if key != "unit" else [*values.get(key, []), " ".join(rest)]
        i += 1
    return values, blocks


def exposure(text: str) -> str:
    m = re.search(r"Overall exposure level for edge-agent(?:-launcher)?\.service: (\d+\.\d+)", text)
    assert m, text
    return m.group(1)


def units(values: dict[str, list[str]]) -> dict[str, dict[str, str]]:
    out = {}
    for line in values.get("unit", []):
        name, state, result, *kv = line.split()
        out[name] = {"state": state, "result": result, **dict(zip(kv[::2], kv[1::2]))}
    return out


@pytest.fixture(scope="module")
def booted(tmp_path_factory, pki):
    if os.geteuid() != 0:
        pytest.fail("the image test builds the root file system as root")
    qemu = require_tool("qemu-system-aarch64", "qemu-system-arm")
    work = tmp_path_factory.mktemp("image")
    # the broker's certificate for the address the guest dials, and for the host's subscriber
    _leaf(pki, "guest-server", "ca", f"IP:{GUEST_HOST},IP:127.0.0.1")
    image = work / "card.img"
    figures: dict[str, float | str] = {"build_s": round(build_image(image), 1)}
    figures["image_bytes"] = image.stat().st_size
    figures["image_on_disk_bytes"] = image.stat().st_blocks * 512

    cfg = work / "node.yaml"
    pw = work / "mqtt-password"
    return {"work": work, "image": image, "figures": figures, "qemu": qemu, "cfg": cfg, "pw": pw}


def test_the_card_boots_imports_runs_and_is_watched(booted, pki, broker_factory, tmp_path):
    work, image, figures = booted["work"], booted["image"], booted["figures"]
    opts = (
        f"cafile {pki}/ca.pem\ncertfile {pki}/guest-server.pem\nkeyfile {pki}/guest-server.key\n"
        "require_certificate true\n"
    )
    broker = authenticated_broker(broker_factory, tmp_path, PASSWORD, opts)
    booted["cfg"].write_text(node_yaml(broker.port))
    booted["pw"].write_text(PASSWORD + "\n")
    assert (
        main(
            [
                "image",
                "provision",
                str(image),
                "--config",
                str(booted["cfg"]),
                "--ca",
                str(pki / "ca.pem"),
                "--cert",
                str(pki / "client.pem"),
                "--key",
                str(pki / "client.key"),
                "--password-file",
                str(booted["pw"]),
                "--hostname",
                NODE,
            ]
        )
        == 0
    )
    ntp = NtpResponder()
    sub = Subscriber(broker.port, pki, "image-test-sub")
    results = work / "results.txt"
    console = work / "console.log"
    cmd = [
        booted["qemu"],
        "-M",
        "virt",
        "-cpu",
        "cortex-a72",
        "-smp",
        "2",
        "-m",
        "1024",
        "-display",
        "none",
        "-monitor",
        "none",
        "-no-reboot",
        "-serial",
        f"file:{console}",
        "-kernel",
        str(image.with_suffix(".vmlinuz")),
        "-initrd",
        str(image.with_suffix(".initrd")),
        "-append",
        "root=PARTUUID=ed6e0019-02 rw console=ttyAMA0 rootwait",
        "-drive",
        f"file={image},format=raw,if=virtio",
        "-netdev",
        "user,id=n0",
        "-device",
        "virtio-net-pci,netdev=n0,romfile=",  # no option ROM (Debian's ipxe-qemu): the kernel is given
        "-device",
        "virtio-serial-pci",
        "-chardev",
        f"file,id=res,path={results}",
        "-device",
        "virtserialport,chardev=res,name=edge-results",
    ]
    started = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(work / "qemu.err", "wb"))
    retained: list[tuple[str, bytes, bool]] = []
    try:
        while proc.poll() is None:
            assert time.monotonic() - started < BOOT_LIMIT, (console.read_text()[-6000:], results.read_text())
            if not retained and any("/data/" in t for _, t, _, _ in sub.messages):
                # a new client gets the retained birth message
                late = Subscriber(broker.port, pki, "image-test-late")
                deadline = time.monotonic() + 30
                while (
                    not any(t.endswith("/status") for _, t, _, _ in late.messages)
                    and time.monotonic() < deadline
                ):
                    time.sleep(0.2)
                late.close()
                retained = [(t, p, r) for _, t, p, r in late.messages if t.endswith("/status")] or [
                    ("", b"", False)
                ]
            time.sleep(1)
    finally:
        terminate(proc, timeout=30)
        sub.close()
        ntp.close()
    figures["qemu_s"] = round(time.monotonic() - started, 1)
    values, blocks = parse_results(results.read_text() if results.exists() else "")
    diag = (
        f"qemu exited {proc.returncode}: {(work / 'qemu.err').read_text(errors='replace')[-2000:]}",
        console.read_text(errors="replace")[-6000:],
        results.read_text() if results.exists() else "",
    )
    assert "DONE" in values, diag

    # cloud-init ran to the end without an error (status: done)
    assert values["cloud_init"] == ["status:", "done"], values.get("cloud_init")

    # READY under systemd, as its own user, the compiled core built for arm64
    assert values["ready_state"] == ["active"], diag
    figures["boot_to_ready_s"] = int(values["ready_monotonic_us"][0]) / 1e6
    assert values["agent_user"] == ["edge-agent"] and values["agent_unit_user"] == ["edge-agent"]
    assert values["core"] == ["cython"]
    # through the release launcher (so the fleet can update it), running the image's own agent
    assert values["enabled"] == ["enabled", "disabled"], values.get("enabled")
    cmdline = " ".join(values["agent_cmdline"])  # (a script: its interpreter comes first)
    assert "/opt/edge-agent/bin/edge-agent run --simulate --config /etc/edge-agent/node.yaml" in cmdline, (
        cmdline
    )

    # the first-boot import ran after cloud-init, before the agent
    u = units(values)
    assert u["edge-agent-import"]["result"] == "success", u
    assert int(u["edge-agent-import"]["start"]) >= int(u["cloud-init"]["active"]) > 0, u
    assert int(u["edge-agent-launcher"]["start"]) > int(u["edge-agent-import"]["exit"]), u
    modes = dict(item.split(":", 1) for item in " ".join(values["etc_modes"]).split())
    assert modes["/etc/edge-agent/client.key"] == "600:edge-agent:edge-agent"
    assert modes["/etc/edge-agent/mqtt-password"] == "600:edge-agent:edge-agent"
    assert modes["/etc/edge-agent"] == "750:root:edge-agent"
    assert sorted(blocks["boot_dir"].split()).count("imported.json") == 1

    # accounts: every password locked; cloud-init made the technicians' account, not its default
    assert "unlocked" not in values, values.get("unlocked")
    assert values["account_root"] == ["!"] and values["account_tech"][0] in ("!", "*")
    assert values["tech_keys"] == ["1"] and values["default_user_debian"] == ["absent"]
    assert values["sshd_password"] == ["no"] and values["hostname"] == [NODE]
    assert int(values["fstab_noatime"][0]) >= 2
    assert "Storage=volatile" in values["journald"] and "RuntimeMaxUse=16M" in values["journald"]

    # the hardening as systemd applies it equals the offline analysis of the unit
    offline = subprocess.run(
        [
            require_tool("systemd-analyze", "systemd"),
            "security",
            "--offline=true",
            str(REPO / "systemd" / "edge-agent-launcher.service"),
        ],
        capture_output=True,
        text=True,
    )
    assert exposure(blocks["security"]) == exposure(offline.stdout + offline.stderr)
    figures["exposure"] = exposure(blocks["security"])

    # the watchdog: the launcher stops an agent that fell silent and ends; systemd starts it again
    pid0, restarts0, _ = values["watchdog_before"]
    pid1, restarts1, _ = values["watchdog_after"]
    assert pid1 != pid0 and int(restarts1) == int(restarts0) + 1, values
    assert " ".join(values["watchdog_usec"]) == "1min 30s", values["watchdog_usec"]
    journal = blocks["journal"]
    assert "event=child_stopped release=base reason='no WATCHDOG=1 for 60 s'" in journal, journal[-4000:]
    assert "event=release_died release=base" in journal, journal[-4000:]
    assert "event=imported" in journal and "s3cret" not in journal and PASSWORD not in journal

    # batches over TLS on the host's broker, decoded; a new start draws a new epoch
    batches = [decode(p) for _, t, p, _ in sub.messages if t.startswith(f"{PREFIX}/{NODE}/data/")]
    assert len(batches) >= 4, [t for _, t, _, _ in sub.messages]
    assert {b.node for b in batches} == {NODE} and {b.stream for b in batches} == {"air"}
    epochs = list(dict.fromkeys(b.epoch for b in batches))
    assert len(epochs) >= 2, epochs  # before and after the watchdog's restart
    online = [json.loads(p) for _, t, p, _ in sub.messages if t == f"{PREFIX}/{NODE}/status"]
    assert [s["state"] for s in online].count("online") >= 2, online
    assert retained and retained[0][2] and json.loads(retained[0][1])["state"] == "online", retained
    assert json.loads(retained[0][1])["core"] == "cython"
    assert json.loads(retained[0][1])["release"] == {"name": "base"}, retained[0][1]

    # commission inside the guest passes
    report = json.loads(blocks["commission"])
    assert values["commission_exit"] == ["0"], (report, blocks.get("commission_err"))
    assert ntp.served > 0

    # the secrets left the boot partition: not in its bytes, not in free clusters either
    with open(image, "rb") as f:
        f.seek(BOOT[0])
        boot = f.read(BOOT[1] - BOOT[0])
    key_lines = [ln for ln in (pki / "client.key").read_text().splitlines() if ln and "-----" not in ln]
    assert PASSWORD.encode() not in boot and b"PRIVATE KEY" not in boot
    assert not [ln for ln in key_lines if ln.encode() in boot]
    print("image test figures:", json.dumps(figures))
    (CACHE / "figures.json").write_text(json.dumps(figures, indent=2) + "\n")
    shutil.copy(results, CACHE / "last-results.txt")
