"""``edge-agent check-config``: validate a configuration file (exit 0 valid, 2 invalid)."""

from __future__ import annotations

import argparse
import json

from edge_agent.cli.exitcodes import EXIT_OK


def cmd_check_config(args: argparse.Namespace) -> int:
    from edge_agent.config import load_config

    cfg = load_config(args.file)
    if args.json:
        print(
            json.dumps(
                {
                    "file": args.file,
                    "valid": True,
                    "node": cfg.node_id,
                    "sensors": [s.name for s in cfg.sensors],
                }
            )
        )
    else:
        print(
            f"{args.file}: valid (node {cfg.node_id}, {len(cfg.sensors)} sensor(s): "
            f"{', '.join(s.name for s in cfg.sensors)})"
        )
    return EXIT_OK


def add_parser(sub: argparse._SubParsersAction) -> None:
    c = sub.add_parser("check-config", help="validate a configuration file (exit 0 valid, 2 invalid)")
    c.add_argument("file", metavar="FILE")
    c.add_argument("--json", action="store_true", help="machine-readable result")
    c.set_defaults(func=cmd_check_config)
