"""``edge-agent commission``: the technician's one pass/fail report at the node."""

from __future__ import annotations

import argparse
import json
import sys

from edge_agent import __version__
from edge_agent.cli.exitcodes import EXIT_FAIL, EXIT_OK
from edge_agent.files import os_error_text


def cmd_commission(args: argparse.Namespace) -> int:
    from edge_agent.config import load_config
    from edge_agent.field.commission import commission
    from edge_agent.node.hardware import Hardware, SimulatedHardware
    from edge_agent.node.status_facts import keep_commission

    cfg = load_config(args.config)
    with SimulatedHardware(cfg) if args.simulate else Hardware() as hw:
        checks = commission(cfg, hw.make, timeout=args.timeout)
    passed = all(c.ok for c in checks)
    report = {
        "node": cfg.node_id,
        "passed": passed,
        "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail, "hint": c.hint} for c in checks],
    }
    try:
        keep_commission(cfg.state_dir, report)
    except OSError as exc:
        print(
            f"edge-agent: the report is not kept for the status page: {os_error_text(exc)}", file=sys.stderr
        )
    if args.json:
        print(json.dumps(report, ensure_ascii=False))
    else:
        print(f"edge-agent {__version__} commissioning node {cfg.node_id}")
        for c in checks:
            print(c.line())
        failed = sum(not c.ok for c in checks)
        print("COMMISSIONING PASSED" if passed else f"COMMISSIONING FAILED: {failed} of {len(checks)} checks")
    return EXIT_OK if passed else EXIT_FAIL


def add_parser(sub: argparse._SubParsersAction) -> None:
    cm = sub.add_parser(
        "commission",
        help="on site: one pass/fail report of sensors, store, clock, broker "
        "and a round trip (exit 0 only when all pass)",
    )
    cm.add_argument(
        "--config", metavar="FILE", help="node configuration (default: built-in, with --simulate)"
    )
    cm.add_argument("--simulate", action="store_true", help="simulated sensors")
    cm.add_argument(
        "--timeout", type=float, default=10.0, metavar="S", help="for the broker checks (default 10)"
    )
    cm.add_argument("--json", action="store_true", help="one JSON object")
    cm.set_defaults(func=cmd_commission)
