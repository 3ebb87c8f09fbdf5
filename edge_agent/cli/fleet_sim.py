"""``edge-agent fleet-sim``: N virtual nodes publishing real batches to a broker
(edge_agent/backbone/fleetsim*.py); prints, or writes to --record, what each sent."""

from __future__ import annotations

import argparse
import os

from edge_agent.cli.exitcodes import EXIT_OK
from edge_agent.cli.mqtt_flags import add_client_arguments, add_protocol_argument, client_options
from edge_agent.errors import ConfigError


def cmd_fleet_sim(args: argparse.Namespace) -> int:
    from edge_agent.backbone.fleetsim import Faults
    from edge_agent.backbone.fleetsim_run import FleetSettings, run_fleet

    if args.nodes < 1 or args.seals < 0 or args.window < 1 or args.procs < 0:
        raise ConfigError("fleet-sim: --nodes and --window must be >= 1, --seals and --procs >= 0")
    if args.interval < 0 or args.ramp <= 0:
        raise ConfigError("fleet-sim: --interval must be >= 0 and --ramp above 0")
    for name in ("duplicate", "gap", "restart", "offline"):
        if not 0.0 <= getattr(args, name) <= 1.0:
            raise ConfigError(f"fleet-sim: --{name} must be a probability between 0 and 1")
    faults = Faults(args.duplicate, args.gap, args.restart, args.offline)
    s = FleetSettings(
        broker=args.broker,
        nodes=args.nodes,
        seals=args.seals,
        prefix=args.prefix,
        first=args.first,
        seed=args.seed,
        interval=args.interval,
        window=args.window,
        faults=faults,
        realtime=args.realtime,
        procs=args.procs,
        ramp=args.ramp,
    )
    try:
        record = run_fleet(s, dict(client_options(args), protocol=args.protocol))
    except ValueError as exc:
        raise ConfigError(f"fleet-sim: {exc}") from None
    text = record.to_json()
    if args.record:
        fd = os.open(args.record, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text + "\n")
    else:
        print(text)
    return EXIT_OK


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("fleet-sim", help="simulate a fleet of nodes publishing to a broker")
    p.add_argument("--broker", required=True, metavar="URL")
    p.add_argument("--nodes", type=int, default=10)
    p.add_argument("--seals", type=int, default=10, help="batches per stream per node")
    p.add_argument("--prefix", default="edge")
    p.add_argument("--first", type=int, default=0, help="number of the first node (sim-NNNNN)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument(
        "--interval",
        type=float,
        default=0.0,
        help="real seconds between a node's seals (0: as fast as it can)",
    )
    p.add_argument("--realtime", action="store_true", help="stamp each seal with the wall clock")
    p.add_argument("--window", type=int, default=20, help="QoS 1 messages in flight per node")
    p.add_argument(
        "--procs", type=int, default=0, help="processes (default: one per 2,500 nodes, at most the CPUs)"
    )
    p.add_argument("--ramp", type=float, default=500.0, help="new connections per second, the whole fleet")
    for name in ("duplicate", "gap", "restart", "offline"):
        p.add_argument(f"--{name}", type=float, default=0.0, help=f"probability of a {name} per seal")
    p.add_argument("--record", metavar="FILE", help="write what was sent here (JSON) instead of stdout")
    add_client_arguments(p)
    add_protocol_argument(p)
    p.set_defaults(func=cmd_fleet_sim)
