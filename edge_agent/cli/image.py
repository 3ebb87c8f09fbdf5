"""``edge-agent image``: provision a node's card (one, or a batch from a CSV), inspect one,
and the node's first-boot import of what was provisioned."""

from __future__ import annotations

import argparse
import json
import sys

from edge_agent.cli.exitcodes import EXIT_OK


def _credentials(args: argparse.Namespace):
    from edge_agent.field.provision import Credentials

    return Credentials(
        ca=args.ca,
        cert=args.cert,
        key=args.key,
        password_file=args.password_file,
        http_token=args.http_token,
        wifi_ssid=args.wifi_ssid,
        wifi_psk_file=args.wifi_psk_file,
        hostname=args.hostname,
        trust=tuple(args.trust),
    )


def cmd_image_provision(args: argparse.Namespace) -> int:
    from edge_agent.field.provision import provision

    m = provision(args.target, args.config, _credentials(args))
    if args.json:
        print(json.dumps(m))
    else:
        secrets = [rel for rel, f in m["files"].items() if f["secret"]]
        print(
            f"{args.target}: provisioned node {m['node_id']} (instance {m['instance_id']}), "
            f"{len(m['files'])} files, {len(secrets)} of them secret: removed from the card at first boot"
            + (f"; trusts key {', '.join(m['trust'])}" if m["trust"] else "")
        )
    return EXIT_OK


def cmd_image_inspect(args: argparse.Namespace) -> int:
    from edge_agent.field.provision import inspect

    info = inspect(args.target)
    if args.json:
        print(json.dumps(info))
        return EXIT_OK
    print(f"{info['target']}:")
    if not info["provisioned"] and "node_id" not in info:
        print("  not provisioned for edge-agent")
    for key in ("node_id", "site", "instance_id", "provisioned_at", "tool", "broker", "username", "sensors"):
        if info.get(key) is not None:
            value = ", ".join(info[key]) if isinstance(info[key], list) else info[key]
            print(f"  {key.replace('_', ' ')}: {value}")
    if info.get("config_valid") is False:
        print(f"  configuration INVALID: {info['config_error']}")
    present = [n for n, there in info["credentials"].items() if there]
    print(f"  credentials present: {', '.join(present) or 'none'}")
    print(f"  trusted keys: {', '.join(info['trust']) or 'none'}")
    ci = info["cloud_init"]
    print(
        f"  cloud-init: instance {ci['instance_id'] or '-'}, hostname {ci['hostname'] or '-'}, "
        f"Wi-Fi {', '.join(ci['wifi_ssids']) or '-'}"
    )
    return EXIT_OK


def cmd_image_provision_batch(args: argparse.Namespace) -> int:
    from edge_agent.field.batch import provision_batch

    tty = sys.stderr.isatty()

    def progress(done: int, total: int, node: str) -> None:
        width = 30
        bar = "#" * (width * done // total) + "-" * (width - width * done // total)
        line = f"[{bar}] {done}/{total} {node}"
        print(f"\r{line:<70}" if tty else line, end="" if tty else "\n", file=sys.stderr, flush=True)

    summary = provision_batch(
        args.base, args.csv, args.out, args.config, progress=progress, trust=tuple(args.trust)
    )
    if tty:
        print(file=sys.stderr)
    if args.json:
        print(json.dumps(summary))
    else:
        for img in summary["images"]:
            print(
                f"{img['image']}: node {img['node_id']}{' at ' + img['site'] if img['site'] else ''}, "
                f"instance {img['instance_id']}"
            )
        print(f"{len(summary['images'])} image(s) in {summary['out']} in {summary['seconds']} s")
    return EXIT_OK


def cmd_image_import(args: argparse.Namespace) -> int:
    from edge_agent.field.firstboot import import_boot

    result = import_boot(
        root=args.root,
        boot=args.boot,
        dest=args.dest,
        owner=args.owner,
        log=lambda line: print(line, flush=True),
    )
    if args.json:
        print(json.dumps(result))
    return EXIT_OK


def add_parser(sub: argparse._SubParsersAction) -> None:
    im = sub.add_parser("image", help="SD images: provision a node's card, inspect one")
    isub = im.add_subparsers(dest="image_command", required=True, metavar="ACTION")
    ip = isub.add_parser(
        "provision",
        help="write one node's configuration and credentials onto the "
        "boot partition of an image, a card or a mounted boot directory",
    )
    ip.add_argument("target", metavar="IMAGE_OR_BOOT_DIR")
    ip.add_argument(
        "--config", required=True, metavar="FILE", help="the node configuration (validated first)"
    )
    ip.add_argument("--ca", metavar="FILE", help="CA certificate of the broker (PEM)")
    ip.add_argument("--cert", metavar="FILE", help="client certificate for mutual TLS (PEM)")
    ip.add_argument("--key", metavar="FILE", help="its private key (PEM)")
    ip.add_argument("--password-file", metavar="FILE", help="the broker password, on its first line")
    ip.add_argument(
        "--http-token",
        metavar="FILE",
        help="the token the status page's actions need, on its first line (openssl rand -hex 24)",
    )
    ip.add_argument("--wifi-ssid", metavar="SSID", help="Wi-Fi network (cloud-init network-config)")
    ip.add_argument("--wifi-psk-file", metavar="FILE", help="its passphrase, on the first line")
    ip.add_argument("--hostname", metavar="NAME", help="host name (cloud-init user-data)")
    ip.add_argument(
        "--trust",
        action="append",
        default=[],
        metavar="KEY.pub",
        help="an operator's public key (keys new) the node trusts for signed updates; repeatable",
    )
    ip.add_argument("--json", action="store_true", help="print the manifest as JSON")
    ip.set_defaults(func=cmd_image_provision)
    ii = isub.add_parser("inspect", help="what a card or image carries (never a secret)")
    ii.add_argument("target", metavar="IMAGE_OR_BOOT_DIR")
    ii.add_argument("--json", action="store_true", help="one JSON object")
    ii.set_defaults(func=cmd_image_inspect)

    ib = isub.add_parser("provision-batch", help="one provisioned card image per row of a CSV of nodes")
    ib.add_argument("base", metavar="BASE_IMAGE")
    ib.add_argument(
        "csv",
        metavar="NODES_CSV",
        help="header: node_id[,site,hostname,config,ca,cert,key,"
        "password_file,http_token,wifi_ssid,wifi_psk_file,trust]; paths relative to the CSV "
        "(trust: KEY.pub files separated by ;)",
    )
    ib.add_argument(
        "--trust",
        action="append",
        default=[],
        metavar="KEY.pub",
        help="an operator's public key every card trusts (besides a row's trust column); repeatable",
    )
    ib.add_argument("--out", required=True, metavar="DIR", help="where NODE_ID.img files are made")
    ib.add_argument(
        "--config",
        metavar="TEMPLATE",
        help="configuration for rows without a config column (node.id is set from the row)",
    )
    ib.add_argument("--json", action="store_true", help="print the summary as JSON")
    ib.set_defaults(func=cmd_image_provision_batch)

    it = isub.add_parser(
        "import",
        help="first boot, as root: move the provisioned files from the boot "
        "partition into the configuration directory (edge-agent-import.service)",
    )
    it.add_argument("--root", default="/", metavar="DIR", help="the system's root (default /)")
    it.add_argument(
        "--boot", default=None, metavar="DIR", help="the boot partition (default /boot/firmware, else /boot)"
    )
    it.add_argument("--dest", default="/etc/edge-agent", metavar="DIR", help="configuration directory")
    it.add_argument("--owner", default="edge-agent", metavar="USER", help="the service user (or UID:GID)")
    it.add_argument("--json", action="store_true", help="print what was done as JSON")
    it.set_defaults(func=cmd_image_import)
