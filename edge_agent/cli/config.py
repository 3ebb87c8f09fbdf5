"""``edge-agent check-config``: validate a configuration file (exit 0 valid, 2 invalid)."""

from __future__ import annotations

import argparse
import json
import os
import sys

from edge_agent.cli.exitcodes import EXIT_OK
from edge_agent.config import AgentConfig


def cmd_check_config(args: argparse.Namespace) -> int:
    from edge_agent.config import load_config

    cfg = load_config(args.file)
    warnings = missing_files(cfg) + raw_energy(cfg)
    if args.json:
        print(
            json.dumps(
                {
                    "file": args.file,
                    "valid": True,
                    "node": cfg.node_id,
                    "sensors": [s.name for s in cfg.sensors],
                    "warnings": warnings,
                }
            )
        )
    else:
        print(
            f"{args.file}: valid (node {cfg.node_id}, {len(cfg.sensors)} sensor(s): "
            f"{', '.join(s.name for s in cfg.sensors)})"
        )
        for w in warnings:
            print(f"{args.file}: warning: {w}", file=sys.stderr)
    return EXIT_OK


def missing_files(cfg: AgentConfig) -> list[str]:
    """The files the configuration names that cannot be read here: a warning, not an error,
    since a card's configuration is often checked on a laptop before the card holds them; the
    agent logs the same and retries until they are there."""
    out = []
    named = [
        (f"mqtt.{k}", getattr(cfg.mqtt, k)) for k in ("ca_file", "cert_file", "key_file", "password_file")
    ]
    for key, path in [*named, ("http.token_file", cfg.http.token_file)]:
        if path is None:
            continue
        if not os.path.isfile(path):
            why = "is not a file" if os.path.exists(path) else "does not exist"
        elif not os.access(path, os.R_OK):
            why = "is not readable by this user"
        else:
            continue
        effect = "the status page takes no action" if key.startswith("http") else "the agent cannot connect"
        out.append(f"{key} {path} {why} here: {effect} until it is")
    return out


def raw_energy(cfg: AgentConfig) -> list[str]:
    """Power and energy streams sent raw: personal data (docs/privacy.md), a warning."""
    from edge_agent.config.privacy import ENERGY_UNITS

    streams = [(f"sensors[{i}]", s.name, s.channels, s.privacy) for i, s in enumerate(cfg.sensors)]
    streams += [(f"derived[{i}]", d.name, d.channels, d.privacy) for i, d in enumerate(cfg.derived)]
    out = []
    for key, name, channels, privacy in streams:
        energy = [c.name for c in channels if c.unit in ENERGY_UNITS]
        if energy and privacy is None:
            out.append(
                f"{key} ({name}) sends {', '.join(energy)} raw: the power of a home or a person's "
                "equipment is personal data (it shows appliances, occupancy, habits: docs/privacy.md); if "
                f"this is, set {key}.privacy: {{level: aggregate}} (15 min statistics) or {{level: total}} "
                "(a daily total)"
            )
    return out


def add_parser(sub: argparse._SubParsersAction) -> None:
    c = sub.add_parser("check-config", help="validate a configuration file (exit 0 valid, 2 invalid)")
    c.add_argument("file", metavar="FILE")
    c.add_argument("--json", action="store_true", help="machine-readable result")
    c.set_defaults(func=cmd_check_config)
