"""``edge-agent ingest``: a backbone worker, from the broker's shared subscription into
PostgreSQL (edge_agent/backbone/ingest.py), until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import faulthandler
import signal

from edge_agent.cli.exitcodes import EXIT_OK
from edge_agent.cli.mqtt_flags import add_client_arguments, add_protocol_argument, client_options
from edge_agent.durations import parse_duration
from edge_agent.errors import ConfigError
from edge_agent.files import os_error_text


def cmd_ingest(args: argparse.Namespace) -> int:
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    try:
        from edge_agent.backbone.ingest import Worker
        from edge_agent.backbone.settings import IngestSettings
    except ImportError as exc:  # psycopg: the backbone extra, which a node does not install
        raise ConfigError(
            f"edge-agent ingest needs the backbone extra ({exc.name} is missing): "
            "pip install 'edge-agent[backbone]'"
        ) from None
    _check_db(args.db)
    mqtt = dict(client_options(args))
    try:
        settings = IngestSettings(
            broker=args.broker,
            db=args.db,
            group=args.group,
            slot=args.slot,
            prefix=args.prefix,
            migrate=args.migrate,
            max_messages=args.max_messages,
            max_wait=parse_duration(args.max_wait),
            session_expiry=parse_duration(args.session_expiry),
            mqtt=mqtt,
            protocol=args.protocol,
            shared=None if args.subscription is None else args.subscription == "shared",
        )
        # the MQTT settings' own checks (a key without a certificate), the URL, and the files
        # (CA, certificate, key, password) read once now rather than at the first connection
        from edge_agent.node.mqtt import client_for_url

        client_for_url(args.broker, settings.client_settings())
    except ValueError as exc:
        raise ConfigError(f"command line: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"command line: cannot set up the MQTT client: {os_error_text(exc)}") from None
    worker = Worker(settings)
    for s in (signal.SIGTERM, signal.SIGINT):
        signal.signal(s, lambda *_: worker.stop())
    worker.run()
    return EXIT_OK


def _check_db(db: str) -> None:
    """A --db that libpq cannot parse is a command-line error now, not a traceback at the first
    connection (the URL itself is not repeated: a password may be in it)."""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    try:
        conninfo_to_dict(db)
    except psycopg.ProgrammingError as exc:
        reason = str(exc).replace(db, "the URL") if db else str(exc)
        raise ConfigError(
            f"command line: --db is not a connection string or URL libpq reads: {reason}"
        ) from None


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "ingest",
        help="backbone worker: the nodes' batches from the broker into PostgreSQL",
        description="Subscribe (MQTT 5 shared subscription, persistent session per slot; or MQTT 3.1.1 "
        "with a plain subscription, one worker a group) to the data, status and health topics and "
        "store them in PostgreSQL, each batch once; a message is acknowledged only after its rows "
        "are committed. Needs the backbone extra (psycopg).",
    )
    p.add_argument("--broker", required=True, metavar="URL", help="mqtt://host:port or mqtts://host:port")
    p.add_argument(
        "--db",
        required=True,
        metavar="URL",
        help="postgresql://user@host:port/dbname (the password in a passfile: ?passfile=FILE, "
        "never in the URL, where ps would show it)",
    )
    p.add_argument(
        "--group", default="ingest", metavar="NAME", help="shared subscription group (default: ingest)"
    )
    p.add_argument(
        "--slot",
        type=int,
        default=0,
        metavar="N",
        help="this worker's slot: its client id is ingest-GROUP-N, its session kept across restarts (default: 0)",
    )
    p.add_argument("--prefix", default="edge", help="the nodes' topic prefix (default: edge)")
    p.add_argument("--migrate", action="store_true", help="apply the schema's missing migrations first")
    p.add_argument(
        "--max-messages",
        type=int,
        default=1000,
        metavar="N",
        help="messages per transaction at most (default: 1000; the broker's max_inflight_messages caps it too)",
    )
    p.add_argument(
        "--max-wait",
        default="200ms",
        metavar="DURATION",
        help="longest wait from a group's first message to its transaction (default: 200ms)",
    )
    p.add_argument(
        "--session-expiry",
        default="1d",
        metavar="DURATION",
        help="how long the broker keeps this slot's session and its messages after a disconnect (default: 1d)",
    )
    add_client_arguments(p)
    add_protocol_argument(p)
    p.add_argument(
        "--subscription",
        choices=("shared", "plain"),
        help="shared ($share/GROUP/..., many slots) or plain (one worker a group: a broker without "
        "shared subscriptions, such as NATS); default: shared with MQTT 5, plain with 3.1.1",
    )
    p.set_defaults(func=cmd_ingest)
