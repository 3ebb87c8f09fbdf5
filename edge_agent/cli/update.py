"""``edge-agent update``: the node's side of agent updates. ``update verify`` reads a bundle into a
staging folder and checks everything a node checks before it installs (edge_agent.fleet.staging);
it records nothing and installs nothing. (The install, its trial and its rollback: next.)"""

from __future__ import annotations

import argparse
import json

from edge_agent.cli.exitcodes import EXIT_OK
from edge_agent.errors import ConfigError

TRUST_DIR = "/etc/edge-agent/trust"
NODE_CONFIG = "/etc/edge-agent/node.yaml"


def _node(args: argparse.Namespace) -> tuple[str, str]:
    """(node id, state directory) from the flags, else from the node's configuration."""
    from edge_agent.config import load_config

    if args.node_id is not None and args.state_dir is not None:
        return args.node_id, args.state_dir
    cfg = load_config(args.config)
    return args.node_id or cfg.node_id, args.state_dir or cfg.state_dir


def _positive(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"a number of bytes, 1 or more, got {text!r}")
    return n


def cmd_update_verify(args: argparse.Namespace) -> int:
    import os
    import tempfile

    from edge_agent.fleet.counters import CounterStore
    from edge_agent.fleet.keys import TrustStore
    from edge_agent.fleet.signed import Audience
    from edge_agent.fleet.staging import Limits, discard, stage

    node_id, state_dir = _node(args)
    trust = TrustStore.load(args.trust_dir)
    counters = CounterStore(os.path.join(state_dir, "fleet", "counters.json"))
    limits = Limits(max_bundle=args.max_bytes) if args.max_bytes else Limits()
    try:
        tmp = tempfile.TemporaryDirectory(prefix="edge-agent-verify-", dir=args.staging_dir)
    except OSError as exc:
        raise ConfigError(
            f"--staging-dir {args.staging_dir}: cannot make a folder there: {exc.strerror}"
        ) from None
    with tmp as root:
        staged = stage(
            args.bundle,
            root,
            trust=trust,
            audience=Audience(node_id, frozenset(args.group)),
            counters=counters,
            platform=args.platform,
            limits=limits,
        )
        discard(staged)
    m = staged.manifest
    size = sum(s for _, _, s in staged.files)
    if args.json:
        print(
            json.dumps(
                {
                    "bundle": args.bundle,
                    "verified": True,
                    "version": staged.version,
                    "platform": staged.platform,
                    "target": m.target,
                    "counter": m.counter,
                    "expires": m.expires,
                    "key_id": m.key_id,
                    "files": [{"name": n, "sha256": h, "size": s} for n, h, s in staged.files],
                    "seconds": round(staged.seconds, 3),
                }
            )
        )
    else:
        print(
            f"{args.bundle}: verified: edge-agent {staged.version} for {staged.platform}, "
            f"{len(staged.files)} files ({size / 1e6:.1f} MB), for {m.target}, counter {m.counter}, "
            f"signed by key {m.key_id}; in {staged.seconds:.2f} s. Nothing installed or recorded."
        )
    return EXIT_OK


def add_parser(sub: argparse._SubParsersAction) -> None:
    u = sub.add_parser("update", help="the node's side of agent updates: verify a bundle")
    usub = u.add_subparsers(dest="update_command", required=True, metavar="ACTION")
    uv = usub.add_parser(
        "verify",
        help="check a bundle as the node would before installing it: signature, target, expiry, "
        "counter, platform, every file's size and SHA-256 (records and installs nothing)",
    )
    uv.add_argument("bundle", metavar="BUNDLE")
    uv.add_argument(
        "--trust-dir", default=TRUST_DIR, metavar="DIR", help=f"trusted keys (default {TRUST_DIR})"
    )
    uv.add_argument(
        "--config",
        default=NODE_CONFIG,
        metavar="FILE",
        help=f"the node's configuration (default {NODE_CONFIG})",
    )
    uv.add_argument("--node-id", metavar="ID", help="this node's id (default: the configuration's node.id)")
    uv.add_argument("--group", action="append", default=[], metavar="NAME", help="a group this node is in")
    uv.add_argument(
        "--state-dir", metavar="DIR", help="where the counters are (default: the configuration's)"
    )
    uv.add_argument("--platform", metavar="P", help="this node's platform (default: this machine's)")
    uv.add_argument("--staging-dir", metavar="DIR", help="where to unpack it meanwhile (default: $TMPDIR)")
    uv.add_argument(
        "--max-bytes",
        type=_positive,
        metavar="N",
        help="refuse bundles whose files pass N bytes (default 256 MiB)",
    )
    uv.add_argument("--json", action="store_true", help="one JSON object")
    uv.set_defaults(func=cmd_update_verify)
