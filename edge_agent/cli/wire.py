"""The payload tools: ``decode`` (one saved payload), ``tail`` (the data topics of a
broker, decoded as they come) and ``compress-report`` (what the core would do to a CSV)."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time
import uuid
from typing import Any

from edge_agent.cli.exitcodes import EXIT_FAIL, EXIT_OK
from edge_agent.cli.mqtt_flags import add_client_arguments, client_options
from edge_agent.errors import ConfigError, WireFormatError
from edge_agent.files import TooLarge, os_error_text, read_at_most
from edge_agent.wire.dedupe import SeqTracker

MAX_INPUT = 64 << 20  # bytes decode reads: many hex lines of payloads of at most 1 MiB each
_HEX = frozenset(b"0123456789abcdefABCDEF \t\r\n")


def _row(batch, row: dict, duplicate: bool = False) -> dict:
    """A sample as printed: Batch.rows() with the epoch as its 8 hex digits (as docs and
    logs show it), the payload's version, and ``duplicate`` where tail saw its key before."""
    out = dict(row, epoch=f"{batch.epoch:08x}", version=batch.version)
    if duplicate:
        out["duplicate"] = True
    return out


def _shown(text: str) -> str:
    """Text from a payload or a topic as it may reach a terminal: a character that is not
    printable (a control, an escape sequence's start, a bidi override) as its escape."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def _shown_json(line: str) -> str:
    """A JSON line with every character that is not printable as its JSON escape."""
    if line.isprintable():
        return line
    return "".join(c if c.isprintable() else json.dumps(c)[1:-1] for c in line)


def _sample_line(row: dict) -> str:
    t = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(row["t"])) + f".{int(row['t'] * 1000) % 1000:03d}Z"
    tags = "".join(f" {k}" for k in ("historical", "clock_unsynced", "duplicate") if row.get(k))
    quality = f" quality={row['quality']:#04x}" if "quality" in row else ""
    node, stream, channel, unit = (_shown(str(row[k])) for k in ("node", "stream", "channel", "unit"))
    return (
        f"{node} {stream} epoch={row['epoch']} seq={row['seq']} v{row['version']} {t} "
        f"{channel}={row['value']} {unit} ({row['reconstruction']} ±{row['bound']:g})"
        f"{quality}{tags}"
    )


def _print_batch(batch, as_json: bool, duplicate: bool = False) -> None:
    for row in batch.rows():
        out = _row(batch, row, duplicate)
        print(_shown_json(json.dumps(out, ensure_ascii=False)) if as_json else _sample_line(out), flush=True)


def _hex_epochs(report: dict) -> dict:
    """A tracker's stream report with its epochs as 8 hex digits, as tail prints them."""
    epochs = [dict(e, epoch=f"{e['epoch']:08x}") for e in report["epochs"]]
    losses = [
        dict(x, epoch_before=f"{x['epoch_before']:08x}", epoch_after=f"{x['epoch_after']:08x}")
        for x in report["store_losses"]
    ]
    return dict(report, epochs=epochs, store_losses=losses)


def report_lines(report: dict) -> list[str]:
    """tail's closing report of one stream in words: the stream, each epoch, each store loss."""
    r = _hex_epochs(report)
    where = f"{r['node']}/{r['stream']}"
    lines = [
        (
            f"{where}: {r['received']} received, {r['duplicates']} duplicates, {r['missing']} missing, "
            f"{len(r['store_losses'])} store losses"
        )
    ]
    for e in r["epochs"]:
        gaps = ", ".join(f"{a}-{b}" if a != b else str(a) for a, b in e["gaps"]) or "none"
        unsynced = " (clock unsynchronised: its order is a guess)" if e["clock_unsynced"] else ""
        lines.append(
            f"{where} epoch {e['epoch']}: seq {e['first']}..{e['last']}, {e['received']} received, "
            f"{e['missing']} missing (gaps: {gaps}){unsynced}"
        )
    for x in r["store_losses"]:
        lines.append(
            f"{where}: store lost between epoch {x['epoch_before']} (last seq {x['last_seq_before']}) "
            f"and epoch {x['epoch_after']} (first seq {x['first_seq_after']})"
        )
    return lines


def payloads_of(data: bytes, name: str) -> list[tuple[str, bytes]]:
    """The payloads in what decode read, each with where it came from: the bytes of one
    payload as they are (a batch starts with its magic, "EA"), or hex text with one payload
    per line, as ``mosquitto_sub -F %x`` prints them and tests/vectors/*.hex hold them."""
    from edge_agent import wire

    if data.startswith(wire.MAGIC) or not data.strip() or not _HEX.issuperset(data):
        return [(name, data)]
    found = []
    for lineno, line in enumerate(data.splitlines(), 1):
        text = b"".join(line.split())
        if not text:
            continue
        if len(text) % 2:
            raise WireFormatError(f"{name}:{lineno}: an odd number of hex digits ({len(text)})")
        found.append((f"{name}:{lineno}", bytes.fromhex(text.decode("ascii"))))
    return found


def _read_input(path: str) -> bytes:
    """The file, or standard input for "-"; OSError, or ValueError beyond MAX_INPUT."""
    if path != "-":
        return read_at_most(path, MAX_INPUT)
    data = sys.stdin.buffer.read(MAX_INPUT + 1)
    if len(data) > MAX_INPUT:
        raise TooLarge(f"more than {MAX_INPUT:,} bytes")
    return data


def cmd_decode(args: argparse.Namespace) -> int:
    from edge_agent import wire

    name = "stdin" if args.file == "-" else args.file
    try:
        found = payloads_of(_read_input(args.file), name)
    except OSError as exc:
        print(f"edge-agent decode: {name}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_FAIL
    except WireFormatError as exc:  # hex that is not (it names the line)
        print(f"edge-agent decode: {exc}", file=sys.stderr)
        return EXIT_FAIL
    except ValueError as exc:  # too much input
        print(f"edge-agent decode: {name}: {exc}", file=sys.stderr)
        return EXIT_FAIL
    failed = 0
    for where, payload in found:
        try:
            batch = wire.decode(payload)
        except WireFormatError as exc:
            print(f"edge-agent decode: {where}: {exc}", file=sys.stderr)
            failed += 1
            continue
        if args.topic:
            topic = wire.parse_data_topic(args.topic)
            if topic is None or topic != (batch.node, batch.stream):
                print(
                    f"edge-agent decode: {where}: topic {args.topic!r} does not match the payload's node "
                    f"{batch.node!r} and stream {batch.stream!r}",
                    file=sys.stderr,
                )
                failed += 1
                continue
        _print_batch(batch, args.json)
    return EXIT_FAIL if failed else EXIT_OK


def _tail_client(args: argparse.Namespace):
    """tail's client through the one MQTT set-up (node/mqtt.py): TLS verified against
    --ca-file (else the system's CAs), a client certificate, a username with a password file;
    a persistent session under --client-id. (client, broker, settings), or None when it
    cannot be set up (said on stderr)."""
    from edge_agent.node.mqtt import ClientSettings, client_for_url

    persistent = args.client_id is not None
    try:
        settings = ClientSettings(
            client_id=args.client_id or f"edge-agent-tail-{uuid.uuid4().hex[:8]}",
            # a persistent session keeps our subscription and queued messages
            session_expiry=7 * 86400 if persistent else 0,
            **client_options(args),
        )
    except ValueError as exc:
        raise ConfigError(f"command line: {exc}") from None
    try:
        client, broker = client_for_url(args.broker, settings)
    except ValueError as exc:
        raise ConfigError(f"command line: --broker: {exc}") from None
    except OSError as exc:  # an unreadable CA, certificate, key or password file
        print(f"edge-agent tail: cannot set up the client: {os_error_text(exc)}", file=sys.stderr)
        return None
    return client, broker, settings


def cmd_tail(args: argparse.Namespace) -> int:
    from edge_agent import wire
    from edge_agent.node.mqtt import connect

    made = _tail_client(args)
    if made is None:
        return EXIT_FAIL
    client, broker, settings = made
    persistent = settings.persistent
    done = threading.Event()
    state: dict[str, Any] = {"messages": 0, "error": None, "connected": False}
    topic = args.topic or f"{args.prefix}/+/data/+"
    tracker = SeqTracker()

    def on_connect(c, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            state["error"] = f"broker refused the connection: {reason_code}"
            done.set()
            return
        state["connected"] = True
        c.subscribe(topic, qos=1)

    def on_disconnect(c, userdata, flags, reason_code, properties):
        # Before any CONNACK: the broker ended the TLS session (TLS 1.3 checks a client
        # certificate after the handshake the client saw succeed) or the connection.
        if not state["connected"] and not done.is_set():
            state["error"] = (
                f"the broker closed the connection before accepting it ({reason_code}): "
                "does it require a client certificate (--cert-file, --key-file) it did not get, "
                "or refuse the one given?"
            )
            done.set()

    def on_message(c, userdata, msg):
        try:
            batch = wire.decode(msg.payload)
        except WireFormatError as exc:
            print(f"edge-agent tail: {msg.topic!r}: {_shown(str(exc))}", file=sys.stderr, flush=True)
            return
        if wire.parse_data_topic(msg.topic) != (batch.node, batch.stream):
            # Broker ACLs make the topic the sender's identity: a payload naming another
            # node (or stream) than its topic is forged or misrouted, and never counted.
            print(
                f"edge-agent tail: {msg.topic!r}: refused: the payload says node {_shown(batch.node)} "
                f"stream {_shown(batch.stream)}, not what its topic says",
                file=sys.stderr,
                flush=True,
            )
            return
        state["messages"] += 1
        new = tracker.add(batch)
        if new or args.all:
            _print_batch(batch, args.json, duplicate=not new)
        if not new:
            print(
                f"edge-agent tail: duplicate {batch.node}/{batch.stream} epoch={batch.epoch:08x} "
                f"seq={batch.seq}" + ("" if args.all else " (not printed again)"),
                file=sys.stderr,
                flush=True,
            )
        if args.count and state["messages"] >= args.count:
            done.set()

    def on_subscribe(c, userdata, mid, reason_codes, properties):
        if any(rc.is_failure for rc in reason_codes):
            state["error"] = f"subscription to {topic!r} refused: {reason_codes[0]}"
            done.set()
        else:
            logging.getLogger("edge_agent.tail").info(
                "event=subscribed broker=%s topic=%s session=%s",
                broker.url,
                topic,
                "persistent" if persistent else "clean",
            )

    client.on_connect = on_connect
    client.on_message = on_message
    client.on_subscribe = on_subscribe
    client.on_disconnect = on_disconnect
    try:
        connect(client, broker, settings)
    except OSError as exc:
        print(f"edge-agent tail: cannot connect to {broker.url}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_FAIL
    for s in (signal.SIGTERM, signal.SIGINT):
        signal.signal(s, lambda *_: done.set())
    client.loop_start()
    done.wait(args.timeout)
    client.disconnect()
    client.loop_stop()
    for r in tracker.report():
        if args.json:
            print(json.dumps({"summary": _hex_epochs(r)}), file=sys.stderr)
        else:
            for line in report_lines(r):
                print(f"edge-agent tail: {line}", file=sys.stderr)
    if state["error"]:
        print(f"edge-agent tail: {state['error']}", file=sys.stderr)
        return EXIT_FAIL
    if args.count and state["messages"] < args.count:
        print(
            f"edge-agent tail: {state['messages']} of {args.count} messages before the timeout",
            file=sys.stderr,
        )
        return EXIT_FAIL
    return EXIT_OK


def cmd_compress_report(args: argparse.Namespace) -> int:
    from edge_agent.wire.compress_report import compress_report, format_report, read_series

    ts, xs = read_series(args.file)
    r = compress_report(ts, xs, args.resolution, args.deviation, args.mode, source=args.file)
    print(json.dumps(r) if args.json else format_report(args.file, r))
    return EXIT_OK


def add_parser(sub: argparse._SubParsersAction) -> None:
    t = sub.add_parser("tail", help="subscribe to data topics, decode and print samples")
    t.add_argument("--broker", required=True, metavar="URL")
    t.add_argument("--json", action="store_true", help="one JSON object per sample")
    t.add_argument("--count", type=int, default=0, metavar="N", help="stop after N data messages")
    t.add_argument("--timeout", type=float, default=None, metavar="S", help="stop after S seconds")
    t.add_argument(
        "--client-id",
        metavar="ID",
        help="use a persistent session under this client id, so nothing is missed across restarts of tail",
    )
    t.add_argument("--prefix", default="edge", help="topic prefix (default: edge)")
    t.add_argument("--topic", metavar="FILTER", help="subscription filter (default: PREFIX/+/data/+)")
    add_client_arguments(t)
    t.add_argument(
        "--all",
        action="store_true",
        help="print duplicates too, marked duplicate (they are always reported on stderr)",
    )
    t.set_defaults(func=cmd_tail)

    cr = sub.add_parser("compress-report", help="what the core would do to a CSV of t,value rows")
    cr.add_argument("file", metavar="FILE.csv", help="rows of t,value (Unix seconds), a header allowed")
    cr.add_argument("--resolution", type=float, required=True, metavar="R", help="quantisation step")
    cr.add_argument(
        "--deviation",
        type=float,
        default=None,
        metavar="E",
        help="allowed deviation (omit for lossless at the resolution)",
    )
    cr.add_argument(
        "--mode",
        choices=["swing", "bound"],
        default="swing",
        help="with --deviation: the swinging door (points on lines), or error-bounded "
        "quantisation of every sample (default swing)",
    )
    cr.add_argument("--json", action="store_true", help="one JSON object")
    cr.set_defaults(func=cmd_compress_report)

    d = sub.add_parser(
        "decode",
        help="decode saved payloads and print their samples",
        description="FILE (or - for standard input) holds one payload as its bytes, or hex text "
        "with one payload per line (what mosquitto_sub -F %%x prints). Exit 1 if any does not decode.",
    )
    d.add_argument("file", metavar="FILE", help="the payload file, or - for standard input")
    d.add_argument("--json", action="store_true", help="one JSON object per sample")
    d.add_argument("--topic", help="the topic it was received on, checked against the payload")
    d.set_defaults(func=cmd_decode)
