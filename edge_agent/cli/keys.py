"""``edge-agent keys``: operator key pairs (Ed25519) for signing bundles, configurations and
commands; the private key never leaves its file (0600) and is never printed."""

from __future__ import annotations

import argparse
import json

from edge_agent.cli.exitcodes import EXIT_OK


def cmd_keys_new(args: argparse.Namespace) -> int:
    from edge_agent.fleet.keys import new_key_pair

    secret, public, kid = new_key_pair(args.out, args.name, args.comment or "")
    if args.json:
        print(json.dumps({"private": str(secret), "public": str(public), "key_id": kid}))
    else:
        print(
            f"{secret}: private key (mode 0600): signs bundles; keep it off the nodes, share it with no one"
        )
        print(f"{public}: public key, id {kid}: put it on the cards with `image provision --trust {public}`")
    return EXIT_OK


def cmd_keys_show(args: argparse.Namespace) -> int:
    from edge_agent.fleet.keys import read_public

    key = read_public(args.file)
    if args.json:
        print(json.dumps({"file": args.file, "key_id": key.id, "comment": key.comment}))
    else:
        print(f"{args.file}: Ed25519 public key, id {key.id}{', ' + key.comment if key.comment else ''}")
    return EXIT_OK


def add_parser(sub: argparse._SubParsersAction) -> None:
    k = sub.add_parser("keys", help="operator key pairs that sign updates, configurations and commands")
    ksub = k.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    kn = ksub.add_parser("new", help="make a key pair: NAME.key (0600, private) and NAME.pub")
    kn.add_argument("--out", required=True, metavar="DIR", help="where to write them (made 0700 if missing)")
    kn.add_argument("--name", default="operator", help="file name stem (default operator)")
    kn.add_argument("--comment", metavar="TEXT", help="said in the .pub file (default: the name)")
    kn.add_argument("--json", action="store_true", help="print the paths and the key id as JSON")
    kn.set_defaults(func=cmd_keys_new)
    ks = ksub.add_parser("show", help="the key id of a public key file")
    ks.add_argument("file", metavar="KEY.pub")
    ks.add_argument("--json", action="store_true", help="one JSON object")
    ks.set_defaults(func=cmd_keys_show)
