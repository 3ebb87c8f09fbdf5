"""Provisioning SD cards: one node's configuration and credentials onto the FAT boot
partition of an image file, a card (a block device) or a mounted boot directory
(``edge_agent.field.sdcard`` finds and writes it, without root); one card image per
row of a CSV (``edge_agent.field.batch``); what a card carries (``inspect``). The node's first boot takes the files
from there (``edge_agent.field.firstboot``). Everything is checked before anything is
written: the node configuration validates, every credentials file is readable, the
target has a FAT boot partition and is writable.

What a provisioned boot partition holds (FAT names are case-insensitive, so all
lowercase):

    edge-agent/node.yaml        the node configuration, credential paths pointing at
                                /etc/edge-agent, where the first-boot import puts them
    edge-agent/ca.pem           broker CA (optional)
    edge-agent/client.pem       client certificate for mutual TLS (optional)
    edge-agent/client.key       its key (optional, secret)
    edge-agent/mqtt-password    the broker password (optional, secret)
    edge-agent/trust-<id>.pub   an operator's public key the node trusts for signed updates,
                                configurations and commands (``--trust``, any number; not secret)
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
import re
import uuid

import yaml

from edge_agent import __version__, keyfile
from edge_agent.config import check_token, parse_config
from edge_agent.config.yamlfile import load_yaml
from edge_agent.errors import ConfigError, ProvisionError
from edge_agent.field.sdcard import BootDir, FatImage, open_target
from edge_agent.files import CONFIG_MAX, TooLarge, read_at_most

AGENT_DIR = "edge-agent"
CONFIG_DIR = "/etc/edge-agent"  # where the first-boot import puts the files
MANIFEST = "provision.json"

# name on the card -> (the configuration's section and key it fills, secret)
CREDENTIALS = {
    "ca.pem": ("mqtt", "ca_file", False),
    "client.pem": ("mqtt", "cert_file", False),
    "client.key": ("mqtt", "key_file", True),
    "mqtt-password": ("mqtt", "password_file", True),
    "http-token": ("http", "token_file", True),  # the status page's actions (node/status_http.py)
}
TRUST_FILE = re.compile(r"^trust-([0-9a-f]{16})\.pub$")  # on the card; /etc/edge-agent/trust/<id>.pub


def trusted_key(data: bytes, where: str) -> tuple[str, bytes]:
    """(key id, the key's line) of an operator's public key file (edge_agent.keyfile's reader,
    the one the node's trust store uses)."""
    try:
        raw, _, line = keyfile.parse_public(data, where, private=", which never goes on a card")
    except keyfile.KeyFileError as exc:
        raise ProvisionError(str(exc)) from None
    return keyfile.key_id(raw), (line + "\n").encode("ascii")


# --- provisioning -----------------------------------------------------------------------------
@dataclasses.dataclass
class Credentials:
    ca: str | None = None
    cert: str | None = None
    key: str | None = None
    password_file: str | None = None
    http_token: str | None = None  # a file: the token the status page's actions need
    wifi_ssid: str | None = None
    wifi_psk_file: str | None = None
    hostname: str | None = None
    trust: tuple[str, ...] = ()  # operators' public key files


def _read_input(path: str, what: str) -> bytes:
    try:
        data = read_at_most(path, CONFIG_MAX)
    except TooLarge as exc:
        raise ProvisionError(f"{what} {path}: {exc}") from None
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
        0 < len(lb) <= 63
        and lb[0] != "-"
        and lb[-1] != "-"
        and all(c.isalnum() or c == "-" for c in lb)
        and lb.isascii()
        for lb in labels
    )


def yaml_mapping(data: bytes | None, what: str, target: str) -> dict:
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


def plan(
    target: BootDir | FatImage,
    config_path: str,
    creds: Credentials,
    *,
    node_id: str | None = None,
    site: str | None = None,
) -> tuple[dict[str, bytes], dict]:
    """Everything to write, checked: (files by path on the partition, the manifest).
    ``node_id`` replaces the configuration's ``node.id`` (a template for many nodes)."""
    try:  # read as the node will: bounded, and the strict YAML of the configuration loader
        doc = load_yaml(read_at_most(config_path, CONFIG_MAX).decode("utf-8"))
    except TooLarge as exc:
        raise ProvisionError(f"{config_path}: {exc}: not a node configuration") from None
    except OSError as exc:
        raise ProvisionError(f"{config_path}: cannot read: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{config_path}: not valid YAML text: {exc}") from None
    if node_id is not None and isinstance(doc, dict) and isinstance(doc.get("node"), dict):
        doc["node"]["id"] = node_id
    files: dict[str, bytes] = {}
    given = {
        "ca.pem": creds.ca,
        "client.pem": creds.cert,
        "client.key": creds.key,
        "mqtt-password": creds.password_file,
        "http-token": creds.http_token,
    }
    if (creds.cert is None) != (creds.key is None):
        raise ProvisionError("--cert and --key go together (mutual TLS needs both)")
    if isinstance(doc, dict) and isinstance(doc.get("mqtt"), dict):
        for name, src in given.items():
            section, key, _ = CREDENTIALS[name]
            if src is not None and isinstance(doc.setdefault(section, {}), dict):
                doc[section][key] = f"{CONFIG_DIR}/{name}"
        if creds.password_file is not None and "username" not in doc["mqtt"]:
            raise ConfigError(f"{config_path}: mqtt.username: required with --password-file")
    cfg = parse_config(doc, config_path)  # raises ConfigError naming the key
    for name, src in given.items():
        if src is not None:
            data = _read_input(
                src,
                {
                    "ca.pem": "CA file",
                    "client.pem": "certificate",
                    "client.key": "key",
                    "mqtt-password": "password file",
                    "http-token": "status page token file",
                }[name],
            )
            if name in ("ca.pem", "client.pem") and b"-----BEGIN CERTIFICATE-----" not in data:
                raise ProvisionError(f"{src}: not a PEM certificate")
            if name == "client.key" and b"PRIVATE KEY-----" not in data:
                raise ProvisionError(f"{src}: not a PEM private key")
            if name == "mqtt-password":
                data = (_first_line(data, "password file", src) + "\n").encode()
            if name == "http-token":
                try:
                    data = (check_token(_first_line(data, "token file", src)) + "\n").encode()
                except ValueError as exc:
                    raise ProvisionError(f"{src}: {exc}") from None
            files[f"{AGENT_DIR}/{name}"] = data
    trusted = []
    for src in creds.trust:
        kid, line = trusted_key(_read_input(src, "trusted key"), src)
        files[f"{AGENT_DIR}/trust-{kid}.pub"] = line
        trusted.append(kid)
    files[f"{AGENT_DIR}/node.yaml"] = (
        f"# provisioned by edge-agent {__version__} image provision\n"
        + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)
    ).encode()

    instance_id = f"edge-agent-{cfg.node_id}-{uuid.uuid4().hex[:12]}"
    cloud: dict[str, str] = {"instance_id": instance_id}
    files["meta-data"] = (
        f"instance-id: {instance_id}\nlocal-hostname: {creds.hostname or cfg.node_id}\n".encode()
    )
    if creds.hostname is not None:
        if not _valid_hostname(creds.hostname):
            raise ProvisionError(
                f"--hostname {creds.hostname!r}: not a valid host name "
                "(letters, digits and '-', dot-separated labels of at most 63)"
            )
        user = yaml_mapping(target.read("user-data"), "user-data", target.name)
        user.update({"hostname": creds.hostname.split(".")[0], "manage_etc_hosts": True})
        if "." in creds.hostname:
            user["fqdn"] = creds.hostname
        files["user-data"] = ("#cloud-config\n" + yaml.safe_dump(user, sort_keys=False)).encode()
        cloud["hostname"] = creds.hostname
    if (creds.wifi_ssid is None) != (creds.wifi_psk_file is None):
        raise ProvisionError("--wifi-ssid and --wifi-psk-file go together")
    if creds.wifi_ssid is not None and creds.wifi_psk_file is not None:
        psk = _first_line(
            _read_input(creds.wifi_psk_file, "Wi-Fi PSK file"), "Wi-Fi PSK file", creds.wifi_psk_file
        )
        if not (8 <= len(psk) <= 63 or (len(psk) == 64 and all(c in "0123456789abcdefABCDEF" for c in psk))):
            raise ProvisionError(
                f"{creds.wifi_psk_file}: a WPA passphrase has 8 to 63 characters (or 64 hex digits)"
            )
        if not 1 <= len(creds.wifi_ssid.encode()) <= 32:
            raise ProvisionError(f"--wifi-ssid {creds.wifi_ssid!r}: an SSID has 1 to 32 bytes")
        net = yaml_mapping(target.read("network-config"), "network-config", target.name)
        if not net:
            net = {"network": {}}
        inner = net["network"] if isinstance(net.get("network"), dict) else net  # both forms are v2
        inner["version"] = 2
        wifis = inner["wifis"] if isinstance(inner.get("wifis"), dict) else {}
        wifis["wlan0"] = {
            "dhcp4": True,
            "optional": True,
            "access-points": {creds.wifi_ssid: {"password": psk}},
        }
        inner["wifis"] = wifis
        files["network-config"] = yaml.safe_dump(net, sort_keys=False).encode()
        cloud["wifi_ssid"] = creds.wifi_ssid

    manifest = {
        "node_id": cfg.node_id,
        "site": site,
        "instance_id": instance_id,
        "provisioned_at": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "tool": f"edge-agent {__version__}",
        "broker": [b.url for b in cfg.mqtt.brokers],
        "username": cfg.mqtt.username,
        "cloud_init": cloud,
        "trust": sorted(set(trusted)),
        "files": {
            rel: {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data), "secret": is_secret(rel)}
            for rel, data in files.items()
        },
    }
    files[f"{AGENT_DIR}/{MANIFEST}"] = (json.dumps(manifest, indent=2) + "\n").encode()
    return files, manifest


def is_secret(rel: str) -> bool:
    name = rel.rpartition("/")[2]
    return rel == "network-config" or CREDENTIALS.get(name, (None, None, False))[2]


def provision(
    target_path: str,
    config_path: str,
    creds: Credentials,
    *,
    node_id: str | None = None,
    site: str | None = None,
) -> dict:
    """Check everything, then write one node's files onto the boot partition; returns the manifest."""
    target = open_target(target_path)
    if not target.writable():
        raise ProvisionError(f"{target_path}: not writable by this user")
    files, manifest = plan(target, config_path, creds, node_id=node_id, site=site)
    target.write_all(files)
    return manifest


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
        out.update(
            {
                k: m.get(k)
                for k in ("node_id", "site", "instance_id", "provisioned_at", "tool", "broker", "username")
            }
        )
        out["provisioned"] = True
    node = target.read(f"{AGENT_DIR}/node.yaml")
    if node is not None:
        try:
            cfg = parse_config(load_yaml(node.decode("utf-8")), "node.yaml on the card")
            out.update(
                {
                    "node_id": cfg.node_id,
                    "broker": [b.url for b in cfg.mqtt.brokers],
                    "username": cfg.mqtt.username,
                    "sensors": [f"{s.name} ({s.type})" for s in cfg.sensors],
                }
            )
            out["config_valid"] = True
        except (ConfigError, yaml.YAMLError, UnicodeDecodeError) as exc:
            out["config_valid"] = False
            out["config_error"] = str(exc)
    present = target.names(AGENT_DIR)
    out["credentials"] = {name: name in present for name in CREDENTIALS}
    out["trust"] = sorted(m.group(1) for name in present if (m := TRUST_FILE.match(name)))
    meta = yaml_mapping(target.read("meta-data"), "meta-data", target.name)
    user = yaml_mapping(target.read("user-data"), "user-data", target.name)
    net = yaml_mapping(target.read("network-config"), "network-config", target.name)
    wifis = (net.get("network", net) or {}).get("wifis") or {}
    ssids = [ssid for w in wifis.values() if isinstance(w, dict) for ssid in (w.get("access-points") or {})]
    out["cloud_init"] = {
        "instance_id": meta.get("instance-id"),
        "hostname": user.get("fqdn") or user.get("hostname"),
        "wifi_ssids": ssids,
    }
    return out
