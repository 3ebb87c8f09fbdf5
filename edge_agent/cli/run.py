"""``edge-agent run``: the agent itself, until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import faulthandler
import signal

from edge_agent.errors import ConfigError

TRUST_DIR = "/etc/edge-agent/trust"


def cmd_run(args: argparse.Namespace) -> int:
    # `kill -USR1 PID` writes every thread's stack to stderr (the journal): what a node that
    # will not stop is waiting on, without stopping it
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    from edge_agent.config import load_config, with_overrides
    from edge_agent.node.agent import Agent

    overrides = {"broker": args.broker, "state_dir": args.state_dir, "flush_interval": args.flush_interval}
    cfg = with_overrides(load_config(args.config), **overrides)
    if args.config is None and not args.simulate:
        raise ConfigError(
            "no --config given: the built-in default node has only simulated sensors, so it needs --simulate"
        )
    from edge_agent.fleet import release
    from edge_agent.fleet.node_side import remote_for

    running, control = remote_for(cfg, args.trust_dir)
    agent = Agent(
        running,
        simulate=args.simulate,
        config_path=args.config,
        overrides=overrides,
        control=control,
        release=release.running if release.running() is not None else None,
    )
    return agent.run()


def add_parser(sub: argparse._SubParsersAction) -> None:
    r = sub.add_parser("run", help="run the agent until SIGTERM/SIGINT")
    r.add_argument(
        "--config",
        metavar="FILE",
        help="node configuration (default: the built-in simulated node, with --simulate)",
    )
    r.add_argument("--simulate", action="store_true", help="use simulated buses and chips")
    r.add_argument("--broker", metavar="URL", help="override mqtt.broker (mqtt://host:port, mqtts://...)")
    r.add_argument("--state-dir", metavar="DIR", help="override state_dir (where the queue lives)")
    r.add_argument(
        "--trust-dir",
        default=TRUST_DIR,
        metavar="DIR",
        help=f"operators' keys a remote configuration must be signed by (default {TRUST_DIR}; none: off)",
    )
    r.add_argument("--flush-interval", metavar="DURATION", help="override flush_interval (e.g. 10s)")
    r.set_defaults(func=cmd_run)
