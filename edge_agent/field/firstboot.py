"""The node's first boot, as root (edge-agent-import.service): what ``image provision``
put on the boot partition moves into /etc/edge-agent, checked, with tight modes, and
every secret leaves the card. Nothing here runs on the technician's laptop.

Operators' public keys (``trust-<id>.pub``) go into the node's trust store,
/etc/edge-agent/trust/<id>.pub: root's (0640, the service's group may read), in a directory
root:edge-agent 0750, so the agent reads its trust anchors and cannot change them.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
from pathlib import Path

import yaml

from edge_agent.config import parse_config
from edge_agent.config.yamlfile import load_yaml
from edge_agent.errors import ConfigError, ProvisionError
from edge_agent.field.provision import (
    AGENT_DIR,
    CONFIG_DIR,
    CREDENTIALS,
    MANIFEST,
    TRUST_FILE,
    is_secret,
    trusted_key,
    yaml_mapping,
)
from edge_agent.files import CONFIG_MAX, TooLarge, read_at_most, replace_wiped, unlink_wiped


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
    raise ProvisionError(
        f"user {owner!r} does not exist in {os.path.join(root, 'etc/passwd')} "
        "(systemd-sysusers creates it from edge-agent.sysusers.conf)"
    )


def _cloud_init_done(root: str, boot: Path) -> bool | None:
    """Whether cloud-init has run for the instance on the card (None: cloud-init is not installed)."""
    if not any(Path(root, p).exists() for p in ("usr/bin/cloud-init", "usr/local/bin/cloud-init")):
        return None
    meta = yaml_mapping(_read_or_none(boot / "meta-data"), "meta-data", str(boot))
    try:
        current = Path(root, "var/lib/cloud/data/instance-id").read_text().strip()
    except OSError:
        return False
    return bool(meta.get("instance-id")) and current == meta.get("instance-id")


def _read_or_none(p: Path) -> bytes | None:
    try:
        return read_at_most(p, CONFIG_MAX)
    except FileNotFoundError:
        return None
    except TooLarge as exc:
        raise ProvisionError(f"{p}: {exc} (a damaged card?); nothing imported") from None


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


def import_boot(
    root: str = "/", boot: str | None = None, dest: str = CONFIG_DIR, owner: str = "edge-agent", log=print
) -> dict:
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
            if name not in CREDENTIALS and name != "node.yaml" and not TRUST_FILE.match(name):
                log(f"event=import_skipped file={name} reason=unknown")
                continue
            try:
                data = read_at_most(src / name, CONFIG_MAX)
            except TooLarge as exc:
                raise ProvisionError(f"{src / name}: {exc} (a damaged card?); nothing imported") from None
            want = (manifest.get("files") or {}).get(f"{AGENT_DIR}/{name}", {}).get("sha256")
            if want is not None and hashlib.sha256(data).hexdigest() != want:
                raise ProvisionError(
                    f"{src / name}: does not match its SHA-256 in {MANIFEST} (a damaged "
                    "card?); nothing imported"
                )
            trust = TRUST_FILE.match(name)
            if trust and trusted_key(data, str(src / name))[0] != trust.group(1):
                raise ProvisionError(f"{src / name}: holds another key than its name says; nothing imported")
            files[name] = data
        if "node.yaml" in files:
            try:
                parse_config(load_yaml(files["node.yaml"].decode("utf-8")), str(src / "node.yaml"))
            except (yaml.YAMLError, UnicodeDecodeError) as exc:
                raise ConfigError(f"{src / 'node.yaml'}: not valid YAML: {exc}; nothing imported") from None
        dest_dir.mkdir(parents=True, exist_ok=True)
        os.chown(dest_dir, 0, gid)
        os.chmod(dest_dir, 0o750)
        for name, data in files.items():
            trust = TRUST_FILE.match(name)
            if trust:  # the agent reads its trust anchors and cannot change them
                trust_dir = dest_dir / "trust"
                trust_dir.mkdir(exist_ok=True)
                os.chown(trust_dir, 0, gid)
                os.chmod(trust_dir, 0o750)
                _install(data, trust_dir / f"{trust.group(1)}.pub", 0o640, 0, gid)
                result["imported"].append(f"trust/{trust.group(1)}.pub")
                log(
                    f"event=imported file={trust_dir / trust.group(1)}.pub mode=0640 owner=0:{gid} bytes={len(data)}"
                )
                continue
            mode = 0o600 if is_secret(name) else 0o640
            _install(data, dest_dir / name, mode, uid, gid)
            result["imported"].append(name)
            log(f"event=imported file={dest_dir / name} mode={mode:04o} owner={uid}:{gid} bytes={len(data)}")
        for name in names:  # zeroed first: FAT leaves an unlinked file's bytes in free clusters
            unlink_wiped(src / name)
            result["removed"].append(f"{AGENT_DIR}/{name}")
            log(f"event=removed_from_card file={src / name}")
        receipt = {
            "imported_at": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "node_id": manifest.get("node_id"),
            "instance_id": manifest.get("instance_id"),
            "files": result["imported"],
            "to": dest,
        }
        (src / "imported.json").write_text(json.dumps(receipt, indent=2) + "\n")
        _fsync_dir(src)
    net_data = _read_or_none(net)
    if net_data is not None and b"password" in net_data:
        done = _cloud_init_done(root, boot_dir)
        if done is False:
            log("event=psk_kept file=network-config reason=cloud-init has not applied it yet")
            result["psk_kept"] = True
        else:
            doc = yaml_mapping(net_data, "network-config", str(boot_dir))
            replace_wiped(
                net,
                (
                    "# Wi-Fi passphrases removed by edge-agent-import once cloud-init had applied them\n"
                    + yaml.safe_dump(_without_passwords(doc), sort_keys=False)
                ).encode(),
            )
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
