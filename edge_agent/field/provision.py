"""Provisioning SD cards: one node's configuration and credentials onto the FAT boot
partition of an image file, a card (a block device) or a mounted boot directory.

No root and no loop devices: the partition is found from the MBR or GPT partition
table here, and its FAT file system is read and written by mtools (Debian package
``mtools``) at that byte offset. Everything is checked before anything is written:
the node configuration validates, every credentials file is readable, the target has
a FAT boot partition and is writable.

What a provisioned boot partition holds (FAT names are case-insensitive, so all
lowercase):

    edge-agent/node.yaml        the node configuration, credential paths pointing at
                                /etc/edge-agent, where the first-boot import puts them
    edge-agent/ca.pem           broker CA (optional)
    edge-agent/client.pem       client certificate for mutual TLS (optional)
    edge-agent/client.key       its key (optional, secret)
    edge-agent/mqtt-password    the broker password (optional, secret)
    edge-agent/provision.json   what was provisioned: node id, instance id, files and
                                their SHA-256; no secret
    meta-data                   cloud-init: a new instance id on every provisioning
    user-data                   cloud-init: the hostname (merged into an existing file)
    network-config              cloud-init: Wi-Fi (merged; the PSK is a secret, removed
                                by the first-boot import once cloud-init has used it)
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import json
import os
import shutil
import stat
import struct
import subprocess
import tempfile
import uuid
import zlib
from pathlib import Path

import yaml

from edge_agent import __version__
from edge_agent.config import parse_config
from edge_agent.errors import ConfigError, EdgeAgentError

AGENT_DIR = "edge-agent"
CONFIG_DIR = "/etc/edge-agent"  # where the first-boot import puts the files
MANIFEST = "provision.json"

# name on the card -> (config key it fills, secret)
CREDENTIALS = {
    "ca.pem": ("ca_file", False),
    "client.pem": ("cert_file", False),
    "client.key": ("key_file", True),
    "mqtt-password": ("password_file", True),
}

SECTOR = 512
_MBR_FAT_TYPES = {0x01, 0x04, 0x06, 0x0B, 0x0C, 0x0E, 0xEF}
_MBR_PROTECTIVE = 0xEE
_GPT_FAT_TYPES = {
    "ebd0a0a2-b9e5-4433-87c0-68b6b72699c7": "Microsoft basic data",
    "c12a7328-f81f-11d2-ba4b-00a0c93ec93b": "EFI system",
}


class ProvisionError(EdgeAgentError, ValueError):
    """An image, a configuration or a credentials file cannot be provisioned: says what and where."""


# --- partition tables -------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Partition:
    number: int      # 1-based, as the partition table numbers it
    offset: int      # bytes from the start of the image
    size: int        # bytes
    kind: str        # "mbr type 0x0c", "gpt Microsoft basic data", ...


def _read_at(f, offset: int, length: int) -> bytes:
    f.seek(offset)
    return f.read(length)


def _is_fat(boot_sector: bytes) -> bool:
    """A FAT12/16/32 boot sector: jump instruction, 0x55AA, and a sane BIOS parameter block."""
    if len(boot_sector) < SECTOR or boot_sector[510:512] != b"\x55\xaa":
        return False
    if boot_sector[0] not in (0xEB, 0xE9):
        return False
    bytes_per_sector = struct.unpack_from("<H", boot_sector, 11)[0]
    fats = boot_sector[16]
    return bytes_per_sector in (512, 1024, 2048, 4096) and fats in (1, 2)


def partitions(path: str) -> tuple[str, list[Partition]]:
    """The partition scheme ("mbr" or "gpt") of a disk image or device, and its partitions."""
    try:
        with open(path, "rb") as f:
            mbr = _read_at(f, 0, SECTOR)
            if len(mbr) < SECTOR or mbr[510:512] != b"\x55\xaa":
                raise ProvisionError(f"{path}: no partition table (no MBR signature in the first sector)")
            entries = [struct.unpack_from("<B3xB3xII", mbr, 446 + 16 * i) for i in range(4)]
            if any(e[1] == _MBR_PROTECTIVE for e in entries):
                return "gpt", _gpt_partitions(f, path)
            return "mbr", [Partition(i + 1, start * SECTOR, count * SECTOR, f"mbr type 0x{ptype:02x}")
                           for i, (_, ptype, start, count) in enumerate(entries) if ptype and count]
    except OSError as exc:
        raise ProvisionError(f"{path}: cannot read: {exc.strerror or exc}") from None


def _gpt_partitions(f, path: str) -> list[Partition]:
    header = _read_at(f, SECTOR, 92)
    if header[:8] != b"EFI PART":
        raise ProvisionError(f"{path}: protective MBR but no GPT header at LBA 1")
    header_size = struct.unpack_from("<I", header, 12)[0]
    crc = struct.unpack_from("<I", header, 16)[0]
    full = bytearray(_read_at(f, SECTOR, header_size))
    full[16:20] = b"\0\0\0\0"
    if zlib.crc32(full) != crc:
        raise ProvisionError(f"{path}: GPT header checksum does not match (a damaged table)")
    entries_lba, count, entry_size, entries_crc = struct.unpack_from("<QIII", header, 72)
    table = _read_at(f, entries_lba * SECTOR, count * entry_size)
    if zlib.crc32(table) != entries_crc:
        raise ProvisionError(f"{path}: GPT partition entries checksum does not match (a damaged table)")
    out = []
    for i in range(count):
        e = table[i * entry_size:(i + 1) * entry_size]
        type_guid = str(uuid.UUID(bytes_le=bytes(e[:16])))
        if type_guid == "00000000-0000-0000-0000-000000000000":
            continue
        first, last = struct.unpack_from("<QQ", e, 32)
        out.append(Partition(i + 1, first * SECTOR, (last - first + 1) * SECTOR,
                             f"gpt {_GPT_FAT_TYPES.get(type_guid, type_guid)}"))
    return out


def boot_partition(path: str) -> Partition:
    """The first partition whose type and boot sector say FAT (the Raspberry Pi's boot partition)."""
    scheme, parts = partitions(path)
    with open(path, "rb") as f:
        for p in parts:
            typed_fat = (p.kind.startswith("mbr") and int(p.kind[-2:], 16) in _MBR_FAT_TYPES) or \
                        (p.kind.startswith("gpt") and p.kind[4:] in _GPT_FAT_TYPES.values())
            if typed_fat and _is_fat(_read_at(f, p.offset, SECTOR)):
                return p
    found = ", ".join(f"{p.number}: {p.kind}" for p in parts) or "none"
    raise ProvisionError(f"{path}: no FAT boot partition in its {scheme.upper()} partition table "
                         f"(partitions: {found})")


# --- the two kinds of target --------------------------------------------------------------------
class _Target:
    path: str

    def writable(self) -> bool:
        return os.access(self.path, os.W_OK)


class BootDir(_Target):
    """A mounted boot partition (or any directory standing for one)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.name = path

    def read(self, rel: str) -> bytes | None:
        try:
            return Path(self.path, rel).read_bytes()
        except FileNotFoundError:
            return None

    def names(self, rel_dir: str) -> set[str]:
        """The files in a directory of the partition (none when it does not exist)."""
        d = Path(self.path, rel_dir)
        return {p.name for p in d.iterdir() if p.is_file()} if d.is_dir() else set()

    def write_all(self, files: dict[str, bytes]) -> None:
        for rel, data in files.items():
            dest = Path(self.path, rel)
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_name(dest.name + ".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, dest)


class FatImage(_Target):
    """The FAT partition at ``offset`` of an image file or block device, through mtools.
    Files read are kept until the next write: each read is a process."""

    def __init__(self, path: str, partition: Partition) -> None:
        if shutil.which("mcopy") is None:
            raise ProvisionError("mtools is not installed (Debian: apt-get install mtools); it writes the "
                                 "FAT partition without root")
        self.path = path
        self.partition = partition
        self.name = f"{path} partition {partition.number}"
        self._drive = f"{path}@@{partition.offset}"
        self._read: dict[str, bytes | None] = {}

    def _mtools(self, *args: str) -> subprocess.CompletedProcess:
        env = dict(os.environ, MTOOLS_SKIP_CHECK="1", MTOOLSRC="/dev/null")
        return subprocess.run(list(args), capture_output=True, env=env, check=False)

    def _fail(self, what: str, proc: subprocess.CompletedProcess) -> ProvisionError:
        err = proc.stderr.decode(errors="replace").strip().splitlines()
        return ProvisionError(f"{self.name}: {what}: {err[-1] if err else f'exit {proc.returncode}'}")

    def read(self, rel: str) -> bytes | None:
        if rel not in self._read:
            with tempfile.TemporaryDirectory() as tmp:
                out = os.path.join(tmp, "f")
                proc = self._mtools("mcopy", "-n", "-i", self._drive, f"::/{rel}", out)
                if proc.returncode != 0 and b"not found" not in proc.stderr.lower():
                    raise self._fail(f"cannot read {rel}", proc)
                self._read[rel] = Path(out).read_bytes() if proc.returncode == 0 else None
        return self._read[rel]

    def names(self, rel_dir: str) -> set[str]:
        """The files in a directory of the partition (none when it does not exist)."""
        proc = self._mtools("mdir", "-b", "-i", self._drive, f"::/{rel_dir}")
        if proc.returncode != 0:
            return set()
        return {line.rstrip("/").rpartition("/")[2] for line in proc.stdout.decode(errors="replace").splitlines()
                if line.strip() and not line.endswith("/")}

    def _mkdirs(self, rel_dir: str) -> None:
        parts = [p for p in rel_dir.split("/") if p]
        for i in range(len(parts)):
            d = "/".join(parts[:i + 1])
            if self._mtools("mdir", "-b", "-i", self._drive, f"::/{d}").returncode != 0:
                proc = self._mtools("mmd", "-i", self._drive, f"::/{d}")
                if proc.returncode != 0:
                    raise self._fail(f"cannot create {d}/", proc)

    def write_all(self, files: dict[str, bytes]) -> None:
        self._read.clear()
        with tempfile.TemporaryDirectory() as tmp:
            by_dir: dict[str, list[str]] = {}
            for i, (rel, data) in enumerate(files.items()):
                d, _, base = rel.rpartition("/")
                local = os.path.join(tmp, str(i), base)
                os.makedirs(os.path.dirname(local))
                Path(local).write_bytes(data)
                by_dir.setdefault(d, []).append(local)
            for d, locals_ in by_dir.items():
                if d:
                    self._mkdirs(d)
                proc = self._mtools("mcopy", "-o", "-i", self._drive, *locals_, f"::/{d}/" if d else "::/")
                if proc.returncode != 0:
                    raise self._fail(f"cannot write into {d or 'the root directory'}", proc)


def open_target(path: str) -> BootDir | FatImage:
    """A directory is a mounted boot partition; a file or block device is a whole disk image."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise ProvisionError(f"{path}: {exc.strerror or exc}") from None
    if stat.S_ISDIR(st.st_mode):
        return BootDir(path)
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISBLK(st.st_mode)):
        raise ProvisionError(f"{path}: neither a disk image, a block device nor a directory")
    return FatImage(path, boot_partition(path))


# --- provisioning -----------------------------------------------------------------------------
@dataclasses.dataclass
class Credentials:
    ca: str | None = None
    cert: str | None = None
    key: str | None = None
    password_file: str | None = None
    wifi_ssid: str | None = None
    wifi_psk_file: str | None = None
    hostname: str | None = None


def _read_input(path: str, what: str) -> bytes:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ProvisionError(f"{what} {path}: cannot read: {exc.strerror or exc}") from None
    if not data.strip():
        raise ProvisionError(f"{what} {path}: the file is empty")
    return data


def _first_line(data: bytes, what: str, path: str) -> str:
    try:
        line = data.decode("utf-8").splitlines()[0].strip()
    except (UnicodeDecodeError, IndexError):
        line = ""
    if not line:
        raise ProvisionError(f"{what} {path}: expected the secret on its first line, as UTF-8 text")
    return line


def _valid_hostname(name: str) -> bool:
    labels = name.split(".")
    return 0 < len(name) <= 253 and all(
        0 < len(lb) <= 63 and lb[0] != "-" and lb[-1] != "-" and all(c.isalnum() or c == "-" for c in lb)
        and lb.isascii() for lb in labels)


def _yaml_mapping(data: bytes | None, what: str, target: str) -> dict:
    if data is None:
        return {}
    try:
        doc = yaml.safe_load(data.decode("utf-8", errors="replace").lstrip("\ufeff"))
    except yaml.YAMLError as exc:
        raise ProvisionError(f"{target}: the existing {what} is not valid YAML: {exc}") from None
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise ProvisionError(f"{target}: the existing {what} is not a YAML mapping")
    return doc


def plan(target: BootDir | FatImage, config_path: str, creds: Credentials, *,
         node_id: str | None = None, site: str | None = None) -> tuple[dict[str, bytes], dict]:
    """Everything to write, checked: (files by path on the partition, the manifest).
    ``node_id`` replaces the configuration's ``node.id`` (a template for many nodes)."""
    try:
        text = Path(config_path).read_bytes().decode("utf-8")
        doc = yaml.safe_load(text)
    except OSError as exc:
        raise ProvisionError(f"{config_path}: cannot read: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{config_path}: not valid YAML text: {exc}") from None
    if node_id is not None and isinstance(doc, dict) and isinstance(doc.get("node"), dict):
        doc["node"]["id"] = node_id
    files: dict[str, bytes] = {}
    given = {"ca.pem": creds.ca, "client.pem": creds.cert, "client.key": creds.key,
             "mqtt-password": creds.password_file}
    if (creds.cert is None) != (creds.key is None):
        raise ProvisionError("--cert and --key go together (mutual TLS needs both)")
    if isinstance(doc, dict) and isinstance(doc.get("mqtt"), dict):
        mqtt = doc["mqtt"]
        for name, src in given.items():
            if src is not None:
                mqtt[CREDENTIALS[name][0]] = f"{CONFIG_DIR}/{name}"
        if creds.password_file is not None and "username" not in mqtt:
            raise ConfigError(f"{config_path}: mqtt.username: required with --password-file")
    cfg = parse_config(doc, config_path)  # raises ConfigError naming the key
    for name, src in given.items():
        if src is not None:
            data = _read_input(src, {"ca.pem": "CA file", "client.pem": "certificate", "client.key": "key",
                                     "mqtt-password": "password file"}[name])
            if name in ("ca.pem", "client.pem") and b"-----BEGIN CERTIFICATE-----" not in data:
                raise ProvisionError(f"{src}: not a PEM certificate")
            if name == "client.key" and b"PRIVATE KEY-----" not in data:
                raise ProvisionError(f"{src}: not a PEM private key")
            if name == "mqtt-password":
                data = (_first_line(data, "password file", src) + "\n").encode()
            files[f"{AGENT_DIR}/{name}"] = data
    files[f"{AGENT_DIR}/node.yaml"] = (
        f"# provisioned by edge-agent {__version__} image provision\n"
        + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)).encode()

    instance_id = f"edge-agent-{cfg.node_id}-{uuid.uuid4().hex[:12]}"
    cloud: dict[str, str] = {"instance_id": instance_id}
    files["meta-data"] = f"instance-id: {instance_id}\nlocal-hostname: {creds.hostname or cfg.node_id}\n".encode()
    if creds.hostname is not None:
        if not _valid_hostname(creds.hostname):
            raise ProvisionError(f"--hostname {creds.hostname!r}: not a valid host name "
                                 "(letters, digits and '-', dot-separated labels of at most 63)")
        user = _yaml_mapping(target.read("user-data"), "user-data", target.name)
        user.update({"hostname": creds.hostname.split(".")[0], "manage_etc_hosts": True})
        if "." in creds.hostname:
            user["fqdn"] = creds.hostname
        files["user-data"] = ("#cloud-config\n" + yaml.safe_dump(user, sort_keys=False)).encode()
        cloud["hostname"] = creds.hostname
    if (creds.wifi_ssid is None) != (creds.wifi_psk_file is None):
        raise ProvisionError("--wifi-ssid and --wifi-psk-file go together")
    if creds.wifi_ssid is not None:
        psk = _first_line(_read_input(creds.wifi_psk_file, "Wi-Fi PSK file"), "Wi-Fi PSK file",
                          creds.wifi_psk_file)
        if not (8 <= len(psk) <= 63 or (len(psk) == 64 and all(c in "0123456789abcdefABCDEF" for c in psk))):
            raise ProvisionError(f"{creds.wifi_psk_file}: a WPA passphrase has 8 to 63 characters "
                                 "(or 64 hex digits)")
        if not 1 <= len(creds.wifi_ssid.encode()) <= 32:
            raise ProvisionError(f"--wifi-ssid {creds.wifi_ssid!r}: an SSID has 1 to 32 bytes")
        net = _yaml_mapping(target.read("network-config"), "network-config", target.name)
        if not net:
            net = {"network": {}}
        inner = net["network"] if isinstance(net.get("network"), dict) else net  # both forms are v2
        inner["version"] = 2
        wifis = inner["wifis"] if isinstance(inner.get("wifis"), dict) else {}
        wifis["wlan0"] = {"dhcp4": True, "optional": True,
                          "access-points": {creds.wifi_ssid: {"password": psk}}}
        inner["wifis"] = wifis
        files["network-config"] = yaml.safe_dump(net, sort_keys=False).encode()
        cloud["wifi_ssid"] = creds.wifi_ssid

    manifest = {
        "node_id": cfg.node_id,
        "site": site,
        "instance_id": instance_id,
        "provisioned_at": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "tool": f"edge-agent {__version__}",
        "broker": [b.url for b in cfg.mqtt.brokers],
        "username": cfg.mqtt.username,
        "cloud_init": cloud,
        "files": {rel: {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data),
                        "secret": _is_secret(rel)}
                  for rel, data in files.items()},
    }
    files[f"{AGENT_DIR}/{MANIFEST}"] = (json.dumps(manifest, indent=2) + "\n").encode()
    return files, manifest


def _is_secret(rel: str) -> bool:
    name = rel.rpartition("/")[2]
    return rel == "network-config" or CREDENTIALS.get(name, (None, False))[1]


def provision(target_path: str, config_path: str, creds: Credentials, *, node_id: str | None = None,
              site: str | None = None) -> dict:
    """Check everything, then write one node's files onto the boot partition; returns the manifest."""
    target = open_target(target_path)
    if not target.writable():
        raise ProvisionError(f"{target_path}: not writable by this user")
    files, manifest = plan(target, config_path, creds, node_id=node_id, site=site)
    target.write_all(files)
    return manifest


# --- many cards at once -----------------------------------------------------------------------
BATCH_COLUMNS = ("node_id", "site", "hostname", "config", "ca", "cert", "key", "password_file",
                 "wifi_ssid", "wifi_psk_file")


@dataclasses.dataclass
class BatchRow:
    line: int
    node_id: str
    site: str | None
    config: str
    creds: Credentials


def read_batch(csv_path: str, template: str | None) -> list[BatchRow]:
    """Rows of nodes.csv (a header row naming columns of BATCH_COLUMNS; node_id required).
    Relative paths are taken from the CSV file's directory."""
    import csv

    base = Path(csv_path).resolve().parent
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            header = reader.fieldnames or []
            unknown = [c for c in header if c not in BATCH_COLUMNS]
            if "node_id" not in header or unknown:
                raise ProvisionError(f"{csv_path}: the header must name node_id and only columns of "
                                     f"{', '.join(BATCH_COLUMNS)}" + (f" (unknown: {', '.join(unknown)})"
                                                                      if unknown else ""))
            rows, seen = [], {}
            for rec in reader:
                line = reader.line_num
                get = lambda k: (rec.get(k) or "").strip() or None  # noqa: E731
                node_id = get("node_id")
                if node_id is None:
                    raise ProvisionError(f"{csv_path}:{line}: node_id is empty")
                if node_id in seen:
                    raise ProvisionError(f"{csv_path}:{line}: node_id {node_id!r} already on line {seen[node_id]}")
                seen[node_id] = line
                path = lambda k: str(base / get(k)) if get(k) else None  # noqa: E731
                config = path("config") or template
                if config is None:
                    raise ProvisionError(f"{csv_path}:{line}: no config column and no --config template")
                rows.append(BatchRow(line, node_id, get("site"), config, Credentials(
                    ca=path("ca"), cert=path("cert"), key=path("key"), password_file=path("password_file"),
                    wifi_ssid=get("wifi_ssid"), wifi_psk_file=path("wifi_psk_file"),
                    hostname=get("hostname"))))
    except OSError as exc:
        raise ProvisionError(f"{csv_path}: cannot read: {exc.strerror or exc}") from None
    if not rows:
        raise ProvisionError(f"{csv_path}: no nodes in it")
    return rows


def _sparse_copy(src: str, dst: str, chunk: int = 1 << 20) -> None:
    """Copy a disk image, leaving runs of zeros as holes: an 8 GB image of 2 GB data costs 2 GB."""
    zero = bytes(chunk)
    fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with open(src, "rb") as f, os.fdopen(fd, "wb", closefd=False) as out:
            while block := f.read(chunk):
                if block == zero[:len(block)]:
                    out.seek(len(block), os.SEEK_CUR)
                else:
                    out.write(block)
            out.truncate()
            out.flush()
            os.fsync(fd)
    finally:
        os.close(fd)


def provision_batch(base_image: str, csv_path: str, out_dir: str, template: str | None = None,
                    progress=lambda done, total, node: None) -> dict:
    """One provisioned image per row of the CSV, as OUT/NODE_ID.img. Every row is checked
    against the base image before the first copy; an image that fails half-way is removed."""
    import time

    rows = read_batch(csv_path, template)
    base = open_target(base_image)
    if not isinstance(base, FatImage):
        raise ProvisionError(f"{base_image}: provision-batch needs an image file, not a directory")
    for row in rows:  # everything checked before anything is written
        try:
            plan(base, row.config, row.creds, node_id=row.node_id, site=row.site)
        except EdgeAgentError as exc:
            raise type(exc)(f"{csv_path}:{row.line} ({row.node_id}): {exc}") from None
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ProvisionError(f"{out_dir}: cannot create: {exc.strerror or exc}") from None
    if not os.access(out, os.W_OK):
        raise ProvisionError(f"{out_dir}: not writable by this user")
    existing = [r.node_id for r in rows if (out / f"{r.node_id}.img").exists()]
    if existing:
        raise ProvisionError(f"{out_dir}: images already there for {', '.join(existing[:5])}"
                             f"{' ...' if len(existing) > 5 else ''}; nothing written")
    started = time.monotonic()
    made = []
    for i, row in enumerate(rows):
        progress(i, len(rows), row.node_id)
        dest = out / f"{row.node_id}.img"
        try:
            _sparse_copy(base_image, str(dest))
            m = provision(str(dest), row.config, row.creds, node_id=row.node_id, site=row.site)
        except (OSError, EdgeAgentError) as exc:
            dest.unlink(missing_ok=True)
            raise ProvisionError(f"{row.node_id}: {getattr(exc, 'strerror', None) or exc}; "
                                 f"{len(made)} image(s) made before it, in {out_dir}") from None
        made.append({"node_id": row.node_id, "site": row.site, "image": str(dest),
                     "instance_id": m["instance_id"]})
    progress(len(rows), len(rows), "")
    return {"base": base_image, "out": str(out), "images": made, "seconds": round(time.monotonic() - started, 1)}


def inspect(target_path: str) -> dict:
    """What a boot partition carries for edge-agent, without a secret."""
    target = open_target(target_path)
    out: dict = {"target": target.name, "provisioned": False}
    raw = target.read(f"{AGENT_DIR}/{MANIFEST}")
    if raw is not None:
        try:
            m = json.loads(raw)
        except ValueError:
            m = {}
            out["manifest_error"] = "provision.json is not valid JSON"
        out.update({k: m.get(k) for k in ("node_id", "site", "instance_id", "provisioned_at", "tool", "broker",
                                          "username")})
        out["provisioned"] = True
    node = target.read(f"{AGENT_DIR}/node.yaml")
    if node is not None:
        try:
            cfg = parse_config(yaml.safe_load(node), "node.yaml on the card")
            out.update({"node_id": cfg.node_id, "broker": [b.url for b in cfg.mqtt.brokers],
                        "username": cfg.mqtt.username, "sensors": [f"{s.name} ({s.type})" for s in cfg.sensors]})
            out["config_valid"] = True
        except (ConfigError, yaml.YAMLError) as exc:
            out["config_valid"] = False
            out["config_error"] = str(exc)
    present = target.names(AGENT_DIR)
    out["credentials"] = {name: name in present for name in CREDENTIALS}
    meta = _yaml_mapping(target.read("meta-data"), "meta-data", target.name)
    user = _yaml_mapping(target.read("user-data"), "user-data", target.name)
    net = _yaml_mapping(target.read("network-config"), "network-config", target.name)
    wifis = (net.get("network", net) or {}).get("wifis") or {}
    ssids = [ssid for w in wifis.values() if isinstance(w, dict) for ssid in (w.get("access-points") or {})]
    out["cloud_init"] = {"instance_id": meta.get("instance-id"), "hostname": user.get("fqdn") or user.get("hostname"),
                         "wifi_ssids": ssids}
    return out


# --- first boot: from the card into /etc/edge-agent --------------------------------------------
def _owner_ids(owner: str, root: str) -> tuple[int, int]:
    """``NAME`` (looked up in ROOT/etc/passwd) or ``UID:GID``."""
    if ":" in owner:
        uid, _, gid = owner.partition(":")
        if uid.isdigit() and gid.isdigit():
            return int(uid), int(gid)
        raise ProvisionError(f"--owner {owner!r}: expected NAME or UID:GID")
    try:
        for line in Path(root, "etc/passwd").read_text().splitlines():
            f = line.split(":")
            if len(f) >= 4 and f[0] == owner:
                return int(f[2]), int(f[3])
    except (OSError, ValueError):
        pass
    raise ProvisionError(f"user {owner!r} does not exist in {os.path.join(root, 'etc/passwd')} "
                         "(systemd-sysusers creates it from edge-agent.sysusers.conf)")


def _cloud_init_done(root: str, boot: Path) -> bool | None:
    """Whether cloud-init has run for the instance on the card (None: cloud-init is not installed)."""
    if not any(Path(root, p).exists() for p in ("usr/bin/cloud-init", "usr/local/bin/cloud-init")):
        return None
    meta = _yaml_mapping(_read_or_none(boot / "meta-data"), "meta-data", str(boot))
    try:
        current = Path(root, "var/lib/cloud/data/instance-id").read_text().strip()
    except OSError:
        return False
    return bool(meta.get("instance-id")) and current == meta.get("instance-id")


def _read_or_none(p: Path) -> bytes | None:
    try:
        return p.read_bytes()
    except FileNotFoundError:
        return None


def _install(data: bytes, dest: Path, mode: int, uid: int, gid: int) -> None:
    tmp = dest.with_name(f".{dest.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
    try:
        os.fchmod(fd, mode)
        os.fchown(fd, uid, gid)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, dest)


def import_boot(root: str = "/", boot: str | None = None, dest: str = CONFIG_DIR,
                owner: str = "edge-agent", log=print) -> dict:
    """Move what ``image provision`` put on the boot partition into the configuration directory.

    Everything is checked first (the files against the manifest's SHA-256, the
    configuration against the schema); then each file is written owned by ``owner``,
    secrets 0600 and the rest 0640, in a directory root:owner 0750; then the files
    are removed from the card, leaving ``edge-agent/imported.json`` (no secret).
    The Wi-Fi PSK in ``network-config`` is removed once cloud-init has used it. Running
    it again finds nothing to do. Paths are taken under ``root`` (tests use a fake one).
    """
    if boot is None:
        boot = "/boot/firmware" if Path(root, "boot/firmware").is_dir() else "/boot"
    boot_dir = Path(root, boot.lstrip("/"))
    src = boot_dir / AGENT_DIR
    dest_dir = Path(root, dest.lstrip("/"))
    result: dict = {"boot": str(boot_dir), "dest": str(dest_dir), "imported": [], "removed": []}
    net = boot_dir / "network-config"
    names = sorted(p.name for p in src.iterdir() if p.is_file()) if src.is_dir() else []
    names = [n for n in names if n not in ("imported.json",)]
    if names:
        uid, gid = _owner_ids(owner, root)
        raw_manifest = _read_or_none(src / MANIFEST)
        try:
            manifest = json.loads(raw_manifest) if raw_manifest is not None else {}
        except ValueError:
            raise ProvisionError(f"{src / MANIFEST}: not valid JSON; nothing imported") from None
        files = {}
        for name in names:
            if name == MANIFEST:
                continue
            if name not in CREDENTIALS and name != "node.yaml":
                log(f"event=import_skipped file={name} reason=unknown")
                continue
            data = (src / name).read_bytes()
            want = (manifest.get("files") or {}).get(f"{AGENT_DIR}/{name}", {}).get("sha256")
            if want is not None and hashlib.sha256(data).hexdigest() != want:
                raise ProvisionError(f"{src / name}: does not match its SHA-256 in {MANIFEST} (a damaged "
                                     "card?); nothing imported")
            files[name] = data
        if "node.yaml" in files:
            try:
                parse_config(yaml.safe_load(files["node.yaml"]), str(src / "node.yaml"))
            except yaml.YAMLError as exc:
                raise ConfigError(f"{src / 'node.yaml'}: not valid YAML: {exc}; nothing imported") from None
        dest_dir.mkdir(parents=True, exist_ok=True)
        os.chown(dest_dir, 0, gid)
        os.chmod(dest_dir, 0o750)
        for name, data in files.items():
            mode = 0o600 if _is_secret(name) else 0o640
            _install(data, dest_dir / name, mode, uid, gid)
            result["imported"].append(name)
            log(f"event=imported file={dest_dir / name} mode={mode:04o} owner={uid}:{gid} bytes={len(data)}")
        for name in names:
            (src / name).unlink()
            result["removed"].append(f"{AGENT_DIR}/{name}")
            log(f"event=removed_from_card file={src / name}")
        receipt = {"imported_at": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                   "node_id": manifest.get("node_id"), "instance_id": manifest.get("instance_id"),
                   "files": result["imported"], "to": dest}
        (src / "imported.json").write_text(json.dumps(receipt, indent=2) + "\n")
        _fsync_dir(src)
    net_data = _read_or_none(net)
    if net_data is not None and b"password" in net_data:
        done = _cloud_init_done(root, boot_dir)
        if done is False:
            log("event=psk_kept file=network-config reason=cloud-init has not applied it yet")
            result["psk_kept"] = True
        else:
            doc = _yaml_mapping(net_data, "network-config", str(boot_dir))
            BootDir(str(boot_dir)).write_all({"network-config": (
                "# Wi-Fi passphrases removed by edge-agent-import once cloud-init had applied them\n"
                + yaml.safe_dump(_without_passwords(doc), sort_keys=False)).encode()})
            _fsync_dir(boot_dir)
            result["removed"].append("network-config passwords")
            why = "applied by cloud-init" if done else "cloud-init is not installed"
            log(f"event=removed_from_card file={net} what=passwords reason={why!r}")
    if not result["imported"] and not result["removed"]:
        log(f"event=import_nothing boot={boot_dir}")
    return result


def _without_passwords(node):
    if isinstance(node, dict):
        return {k: _without_passwords(v) for k, v in node.items() if k != "password"}
    if isinstance(node, list):
        return [_without_passwords(v) for v in node]
    return node


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
