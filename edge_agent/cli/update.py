"""``edge-agent update``: the node's side of agent updates. ``update verify`` reads a bundle into a
staging folder and checks everything a node checks before it installs (edge_agent.fleet.staging);
it records nothing and installs nothing. ``update apply`` does the same, then records the
counter, installs the release and makes it current (edge_agent.fleet.install); the launcher
(edge_agent.fleet.launcher) runs its trial at the next start of the service."""

from __future__ import annotations

import argparse
import dataclasses
import json

from edge_agent.cli.exitcodes import EXIT_OK
from edge_agent.errors import ConfigError

TRUST_DIR = "/etc/edge-agent/trust"
NODE_CONFIG = "/etc/edge-agent/node.yaml"
RELEASES = "/var/lib/edge-agent-releases"
KILL_AT = "EDGE_AGENT_UPDATE_KILL_AT"  # tests: SIGKILL this process once the named step is done


def _node(args: argparse.Namespace) -> tuple[str, str, frozenset[str]]:
    """(node id, state directory, groups) from the flags, else from the node's configuration;
    the groups are the configuration's ``node.groups`` and every ``--group``."""
    from edge_agent.config import load_config

    if args.node_id is not None and args.state_dir is not None:
        return args.node_id, args.state_dir, frozenset(args.group)
    cfg = load_config(args.config)
    return args.node_id or cfg.node_id, args.state_dir or cfg.state_dir, frozenset((*cfg.groups, *args.group))


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
    from edge_agent.fleet.keys import REVOKED, TrustStore
    from edge_agent.fleet.signed import Audience
    from edge_agent.fleet.staging import Limits, discard, stage

    node_id, state_dir, groups = _node(args)
    trust = TrustStore.load(args.trust_dir, os.path.join(state_dir, "fleet", REVOKED))
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
            audience=Audience(node_id, groups),
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


def _kill_hook():
    import os
    import signal

    at = os.environ.get(KILL_AT)

    def step(name: str) -> None:
        if name == at:
            os.kill(os.getpid(), signal.SIGKILL)

    return step


def cmd_update_apply(args: argparse.Namespace) -> int:
    import os
    import sys

    from edge_agent.fleet.counters import CounterStore
    from edge_agent.fleet.install import apply
    from edge_agent.fleet.keys import REVOKED, TrustStore
    from edge_agent.fleet.signed import Audience
    from edge_agent.fleet.staging import Limits

    node_id, state_dir, groups = _node(args)
    done = apply(
        args.bundle,
        args.root,
        trust=TrustStore.load(args.trust_dir, os.path.join(state_dir, "fleet", REVOKED)),
        audience=Audience(node_id, groups),
        counters=CounterStore(os.path.join(state_dir, "fleet", "counters.json")),
        platform=args.platform,
        python=args.python or sys.executable,
        limits=Limits(max_bundle=args.max_bytes) if args.max_bytes else Limits(),
        on_step=_kill_hook(),
    )
    if args.json:
        print(json.dumps({**dataclasses.asdict(done), "bundle": args.bundle, "current": done.name}))
    else:
        how = "completed an interrupted install of" if done.resumed else "installed"
        print(
            f"{args.bundle}: {how} edge-agent {done.version} as release {done.name} (now current; "
            f"previous: {done.previous or 'none'}) in {done.seconds:.1f} s. Its trial runs at the "
            "next start of the service (systemctl restart edge-agent-launcher)."
        )
    return EXIT_OK


def _node_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("bundle", metavar="BUNDLE")
    p.add_argument(
        "--trust-dir", default=TRUST_DIR, metavar="DIR", help=f"trusted keys (default {TRUST_DIR})"
    )
    p.add_argument(
        "--config",
        default=NODE_CONFIG,
        metavar="FILE",
        help=f"the node's configuration (default {NODE_CONFIG})",
    )
    p.add_argument("--node-id", metavar="ID", help="this node's id (default: the configuration's node.id)")
    p.add_argument(
        "--group",
        action="append",
        default=[],
        metavar="NAME",
        help="a group this node is in (besides the configuration's node.groups)",
    )
    p.add_argument("--state-dir", metavar="DIR", help="where the counters are (default: the configuration's)")
    p.add_argument("--platform", metavar="P", help="this node's platform (default: this machine's)")
    p.add_argument(
        "--max-bytes",
        type=_positive,
        metavar="N",
        help="refuse bundles whose files pass N bytes (default 256 MiB)",
    )
    p.add_argument("--json", action="store_true", help="one JSON object")


def add_parser(sub: argparse._SubParsersAction) -> None:
    u = sub.add_parser("update", help="the node's side of agent updates: verify or apply a bundle")
    usub = u.add_subparsers(dest="update_command", required=True, metavar="ACTION")
    uv = usub.add_parser(
        "verify",
        help="check a bundle as the node would before installing it: signature, target, expiry, "
        "counter, platform, every file's size and SHA-256 (records and installs nothing)",
    )
    _node_flags(uv)
    uv.add_argument("--staging-dir", metavar="DIR", help="where to unpack it meanwhile (default: $TMPDIR)")
    uv.set_defaults(func=cmd_update_verify)
    ua = usub.add_parser(
        "apply",
        help="verify a bundle, record its counter, install it as a new release and make it "
        "current; its trial runs at the next start of the service (edge-agent-launcher)",
    )
    _node_flags(ua)
    ua.add_argument("--root", default=RELEASES, metavar="DIR", help=f"the releases (default {RELEASES})")
    ua.add_argument("--python", metavar="PATH", help="the interpreter of the new release (default: this one)")
    ua.set_defaults(func=cmd_update_apply)
