"""``edge-agent status``: the node's state for a shell on the node, from the running agent's
own listener (``http.listen``): what its page shows, as lines or as JSON."""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request

from edge_agent.cli.exitcodes import EXIT_FAIL, EXIT_OK, EXIT_USAGE

TIMEOUT = 10.0  # s for the agent to answer
ANSWER_MAX = 4 * 1024 * 1024  # bytes: a status is a few KiB


def _url(args: argparse.Namespace) -> str | None:
    from edge_agent.config import load_config, parse_listen

    if args.listen is not None:
        host, port = parse_listen(args.listen)
    else:
        cfg = load_config(args.config)
        if not cfg.http.enabled:
            return None
        host, port = cfg.http.host, cfg.http.port
    return f"http://{f'[{host}]' if ':' in host else host}:{port}/status.json"


def _lines(facts: dict) -> list[str]:
    from edge_agent.node.status_facts import shown

    out = [
        f"node {facts['node']}: {'OK' if facts['ok'] else 'PROBLEMS'} (edge-agent {facts['version']}, {facts['core']})"
    ]
    out += [f"  problem: {p}" for p in facts["problems"]]
    for name, s in facts["values"].items():
        values = ", ".join(
            f"{ch} {shown(v)}{' (stale)' if v['stale'] else ''}" for ch, v in s["channels"].items()
        )
        out.append(f"sensor {name} ({s['type']}): {s['state']}; {values or 'no reading yet'}")
    st, up = facts["store"], facts["uplink"]
    depth = "not open" if st["batches"] is None else f"{st['batches']} batches, {st['bytes']} B"
    out.append(f"queue: {depth}; oldest {st['oldest_age_s'] if st['oldest_age_s'] is not None else '-'} s")
    out.append(f"uplink: {up['state']} to {up['broker']}; delivered {up['delivered']}")
    out.append(f"clock: {'synchronised' if facts['clock']['synchronized'] else 'NOT synchronised'}")
    return out


def cmd_status(args: argparse.Namespace) -> int:
    try:
        url = _url(args)
    except ValueError as exc:
        print(f"edge-agent: --listen: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if url is None:
        print(
            'edge-agent: the configuration turns the status listener off (http.listen: "")', file=sys.stderr
        )
        return EXIT_USAGE
    try:
        # straight to the node's own listener, whatever http_proxy the shell has
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(url, timeout=TIMEOUT) as answer:
            body = answer.read(ANSWER_MAX + 1)
        if len(body) > ANSWER_MAX:
            raise ValueError(f"an answer of more than {ANSWER_MAX:,} bytes is no status")
        facts = json.loads(body)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        print(f"edge-agent: no status from {url}: {reason} (is the agent running?)", file=sys.stderr)
        return EXIT_FAIL
    if args.json:
        print(json.dumps(facts, ensure_ascii=False))
    else:
        print("\n".join(_lines(facts)))
    return EXIT_OK if facts.get("ok") else EXIT_FAIL


def add_parser(sub: argparse._SubParsersAction) -> None:
    st = sub.add_parser(
        "status",
        help="the running agent's state: sensors, queue, uplink, clock (exit 1 when a sensor "
        "fails or the queue grows with the link down)",
    )
    st.add_argument(
        "--config", metavar="FILE", help="node configuration, for http.listen (default: built-in)"
    )
    st.add_argument(
        "--listen", metavar="HOST:PORT", help="the agent's status listener (default: from the configuration)"
    )
    st.add_argument("--json", action="store_true", help="every fact, as one JSON object")
    st.set_defaults(func=cmd_status)
