"""``edge-agent fleet``: the operator's side of fleet management. ``fleet bundle`` builds and signs
an update bundle (edge_agent.fleet.bundle)."""

from __future__ import annotations

import argparse
import json

from edge_agent.cli.exitcodes import EXIT_OK, EXIT_USAGE


def cmd_fleet_bundle(args: argparse.Namespace) -> int:
    import sys

    from edge_agent.durations import parse_duration
    from edge_agent.fleet.bundle import build
    from edge_agent.fleet.keys import OperatorKey

    key = OperatorKey.read(args.key)
    out = args.out or f"edge-agent-{args.version}-{args.platform}.bundle.tar"
    try:
        lifetime = parse_duration(args.expires)
        if lifetime < 60:
            raise ValueError(f"--expires {args.expires}: at least 1min")
        m = build(
            args.wheels,
            key=key,
            version=args.version,
            platform=args.platform,
            target=args.target,
            out=out,
            counter=args.counter,
            lifetime=lifetime,
        )
    except ValueError as exc:
        print(f"edge-agent: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.json:
        print(json.dumps(m))
    else:
        size = sum(f["size"] for f in m["files"])
        print(
            f"{m['bundle']}: edge-agent {m['version']} for {m['platform']}, {len(m['files'])} files "
            f"({size / 1e6:.1f} MB), for {m['target']}, counter {m['counter']}, signed by key "
            f"{m['key_id']}, valid until {_utc(m['expires'])}"
        )
    return EXIT_OK


def _utc(t: int) -> str:
    import time

    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(t))


def add_parser(sub: argparse._SubParsersAction) -> None:
    f = sub.add_parser(
        "fleet", help="the operator's side: update bundles, remote configuration, commands, status"
    )
    fsub = f.add_subparsers(dest="fleet_command", required=True, metavar="ACTION")
    fb = fsub.add_parser("bundle", help="build and sign an update bundle from a release's wheels")
    fb.add_argument(
        "wheels", nargs="+", metavar="WHEEL", help="the release's wheels, edge_agent's among them"
    )
    fb.add_argument("--key", required=True, metavar="KEY", help="the operator's private key (keys new)")
    fb.add_argument(
        "--version", required=True, metavar="V", help="the release version (its edge_agent wheel's)"
    )
    fb.add_argument(
        "--platform",
        required=True,
        metavar="P",
        help="the nodes' platform: cp311-linux_aarch64, cp311-linux_armv7l",
    )
    fb.add_argument("--target", required=True, metavar="T", help="node:<node id> or group:<group name>")
    fb.add_argument(
        "--counter",
        type=int,
        metavar="N",
        help="must go up from bundle to bundle (default: the time of signing, in seconds)",
    )
    fb.add_argument("--expires", default="30d", metavar="DURATION", help="valid for this long (default 30d)")
    fb.add_argument("--out", metavar="FILE", help="default edge-agent-V-P.bundle.tar here")
    fb.add_argument("--json", action="store_true", help="print the manifest's fields as JSON")
    fb.set_defaults(func=cmd_fleet_bundle)
    from edge_agent.cli import fleet_ops

    fleet_ops.add_parsers(fsub)
