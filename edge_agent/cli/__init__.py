"""The ``edge-agent`` command line: one module per command group, each with its
``add_parser(subparsers)`` and its handlers.

Exit codes (``edge_agent.cli.exitcodes``): 0 success; 1 a runtime failure (broker
unreachable for tail, bad payload for decode); 2 bad usage or an invalid configuration;
141 the reader of the output went away (as a shell reports a SIGPIPE).
"""

from __future__ import annotations

import argparse
import os
import sys

from edge_agent import __version__
from edge_agent.cli import (
    commission,
    config,
    fleet,
    fleet_sim,
    image,
    ingest,
    keys,
    run,
    sensors,
    status,
    update,
    wire,
)
from edge_agent.cli.exitcodes import EXIT_FAIL, EXIT_OK, EXIT_PIPE, EXIT_USAGE
from edge_agent.errors import ConfigError, EdgeAgentError
from edge_agent.files import os_error_text
from edge_agent.node.logfmt import setup_logging

__all__ = ["EXIT_FAIL", "EXIT_OK", "EXIT_USAGE", "build_parser", "main"]

# In the order `edge-agent --help` lists them.
GROUPS = (run, status, config, sensors, commission, image, wire, keys, fleet, update, ingest, fleet_sim)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="edge-agent",
        description="Sensor node agent: sample, smooth, compress, store and forward over MQTT.",
    )
    p.add_argument("--version", action="version", version=f"edge-agent {__version__}")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in GROUPS:
        group.add_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"edge-agent: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except EdgeAgentError as exc:
        print(f"edge-agent: {exc}", file=sys.stderr)
        return EXIT_FAIL
    except BrokenPipeError:
        # The reader went away (`edge-agent decode x | head`): stop quietly, as Unix tools
        # do, and keep Python from complaining again as it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_PIPE
    except OSError as exc:
        # The machine's side (a folder that cannot be made, a full disk, a file gone) that a
        # command did not say better itself: what and where, not a traceback.
        print(f"edge-agent: {os_error_text(exc)}", file=sys.stderr)
        return EXIT_FAIL


if __name__ == "__main__":
    sys.exit(main())
