"""The MQTT client's TLS and login options of the commands that are clients of a broker
(tail, ingest): one set of flags, given to node/mqtt.py's ClientSettings as they are; and
``--protocol`` for the commands that can speak MQTT 3.1.1 to a broker without MQTT 5
(ingest, fleet-sim)."""

from __future__ import annotations

import argparse
from typing import TypedDict


class ClientOptions(TypedDict):
    ca_file: str | None
    cert_file: str | None
    key_file: str | None
    username: str | None
    password_file: str | None


def add_client_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ca-file", metavar="FILE", help="CA bundle for mqtts:// brokers (default: the system's)")
    p.add_argument(
        "--cert-file", metavar="FILE", help="client certificate (PEM) for mutual TLS, with --key-file"
    )
    p.add_argument("--key-file", metavar="FILE", help="the client certificate's private key (PEM)")
    p.add_argument("--username", metavar="NAME", help="log in to the broker as NAME, with --password-file")
    p.add_argument(
        "--password-file",
        metavar="FILE",
        help="the password on the file's first line (never on the command line, where ps would show it)",
    )


def add_protocol_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--protocol",
        choices=("5", "3.1.1"),
        default="5",
        help="MQTT version to speak (default: 5; 3.1.1 for a broker without MQTT 5, such as NATS)",
    )


def client_options(args: argparse.Namespace) -> ClientOptions:
    """The flags' values by ClientSettings' field names."""
    return ClientOptions(
        ca_file=args.ca_file,
        cert_file=args.cert_file,
        key_file=args.key_file,
        username=args.username,
        password_file=args.password_file,
    )
