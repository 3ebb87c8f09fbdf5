"""``edge-agent fleet push-config | command | push-update | status``: the operator's side of remote
management, through the broker and the one MQTT client set-up (node/mqtt.py, the flags of
cli/mqtt_flags.py). Each signs with the operator's key (``keys new``), publishes on each
node's own topic and waits, bounded by ``--wait``, for the node's answer:

- ``push-config FILE --node ID...``: FILE checked as a node would (so a typo is said here, not
  by a thousand nodes), signed as kind ``config`` (for each node, or once for ``--group``) and
  published retained on ``{prefix}/{node}/config/set``; the answer is the ``config/state``
  naming its counter: ``applied``, ``rejected`` (and why) or ``reverted`` (docs/fleet.md).
- ``command NAME --node ID...``: one of the fixed list, answered on ``cmd/reply``.
- ``push-update BUNDLE --url URL --node ID...``: the command ``update`` naming BUNDLE's SHA-256
  and size and where the nodes fetch it (HTTPS); the answer is the node's ``done`` (installed,
  restarting into the trial, which ``status`` then shows) or ``failed``/``refused``.
- ``revoke-key KEY_ID --node ID...``: the nodes trust the key no more, after restarts too
  (never their last key).
- ``status``: every node's retained ``status`` and ``config/state`` under the prefix, and the
  health messages that arrive within ``--wait``.

Exit 0 when every node answered as hoped (applied, done), 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import uuid
from typing import Any

from edge_agent.cli.exitcodes import EXIT_FAIL, EXIT_OK
from edge_agent.cli.mqtt_flags import add_client_arguments, client_options
from edge_agent.errors import ConfigError

FINAL = ("applied", "rejected", "reverted")  # config/state outcomes that end a push


class _Listener:
    """A connected client that keeps what arrives on its topics, for a waiting thread."""

    def __init__(self, args: argparse.Namespace, topics: list[str]) -> None:
        from edge_agent.node.mqtt import ClientSettings, client_for_url, connect

        try:
            settings = ClientSettings(
                client_id=f"edge-agent-operator-{uuid.uuid4().hex[:8]}", **client_options(args)
            )
            self.client, broker = client_for_url(args.broker, settings)
        except ValueError as exc:
            raise ConfigError(f"command line: {exc}") from None
        self.cond = threading.Condition()
        self.messages: list[tuple[str, bytes]] = []
        self.error: str | None = None
        self.ready = False
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.topics = topics
        try:
            connect(self.client, broker, settings)
        except OSError as exc:
            raise ConfigError(f"--broker {args.broker}: cannot connect: {exc}") from None
        self.client.loop_start()

    def _on_connect(self, c, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            with self.cond:
                self.error = f"the broker refused the connection: {reason_code}"
                self.cond.notify_all()
            return
        c.subscribe([(t, 1) for t in self.topics])

    def _on_subscribe(self, c, userdata, mid, reason_codes, properties) -> None:
        with self.cond:
            if any(rc.is_failure for rc in reason_codes):
                self.error = f"the broker refused the subscription: {reason_codes}"
            self.ready = True
            self.cond.notify_all()

    def _on_message(self, c, userdata, msg) -> None:
        with self.cond:
            self.messages.append((msg.topic, bytes(msg.payload)))
            self.cond.notify_all()

    def wait(self, done, deadline: float) -> bool:
        """Until ``done(messages)`` holds (True) or ``deadline`` (monotonic) passes."""
        with self.cond:
            while not (self.error or (self.ready and done(self.messages))):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(min(left, 0.5))
            if self.error:
                raise ConfigError(self.error)
            return True

    def subscribed(self, timeout: float = 30.0) -> None:
        """Wait for the broker to take the subscriptions (answers sent before would be lost)."""
        if not self.wait(lambda m: True, time.monotonic() + timeout):
            raise ConfigError(
                f"the broker did not answer the connection and subscription within {timeout:g} s"
            )

    def publish(self, topic: str, payload: bytes, *, retain: bool) -> None:
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(30)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def _signer(args: argparse.Namespace):
    """``sign(kind, body, target, counter)`` with the operator's key and ``--expires``, both
    read (and refused, said) before anything connects."""
    from edge_agent.durations import parse_duration
    from edge_agent.fleet.keys import OperatorKey
    from edge_agent.fleet.signed import sign

    try:
        lifetime = parse_duration(args.expires)
    except ValueError as exc:
        raise ConfigError(f"--expires: {exc}") from None
    key = OperatorKey.read(args.key)

    def signed(kind: str, body: dict, target: str, counter: int) -> bytes:
        now = int(time.time())
        return sign(
            kind, body, key=key, target=target, counter=counter, expires=now + int(lifetime), issued=now
        )

    return signed


def _json(payload: bytes) -> Any:
    try:
        return json.loads(payload)
    except ValueError:
        return None


def cmd_fleet_push_config(args: argparse.Namespace) -> int:
    from edge_agent.config import parse_config_text
    from edge_agent.files import CONFIG_MAX, TooLarge, read_at_most

    try:
        text = read_at_most(args.file, CONFIG_MAX).decode("utf-8")
    except TooLarge as exc:
        raise ConfigError(f"{args.file}: {exc}, not a node configuration") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{args.file}: not UTF-8 text (byte {exc.start})") from None
    parse_config_text(text, args.file)  # what every node would say of it, said once here
    sign = _signer(args)
    counter = args.counter or time.time_ns() // 1_000_000
    topics = [f"{args.prefix}/{n}/config/state" for n in args.node]
    listener = _Listener(args, topics)
    try:
        listener.subscribed()
        for node in args.node:
            target = f"group:{args.group}" if args.group else f"node:{node}"
            envelope = sign("config", {"yaml": text}, target, counter)
            listener.publish(f"{args.prefix}/{node}/config/set", envelope, retain=True)

        def outcomes(messages) -> dict[str, dict]:
            out = {}
            for topic, payload in messages:
                state = _json(payload)
                if (
                    isinstance(state, dict)
                    and state.get("counter") == counter
                    and state.get("outcome") in FINAL
                ):
                    out[topic.split("/")[-3]] = state
            return out

        listener.wait(lambda m: len(outcomes(m)) == len(args.node), time.monotonic() + args.wait)
        got = outcomes(listener.messages)
    finally:
        listener.close()
    ok = True
    for node in args.node:
        state = got.get(node)
        if state is None:
            ok = False
            print(
                f"{node}: no answer within {args.wait:g} s (offline? it gets the configuration at its next connect)"
            )
        else:
            ok &= state["outcome"] == "applied"
            why = f" ({state['reason']})" if state.get("reason") else ""
            print(f"{node}: {state['outcome']}{why}: {state.get('detail', '')} [counter {counter}]")
    return EXIT_OK if ok else EXIT_FAIL


def cmd_fleet_command(args: argparse.Namespace) -> int:
    return _command(args, {"name": args.name})


def cmd_fleet_revoke_key(args: argparse.Namespace) -> int:
    from edge_agent.node.command_names import REVOKE

    return _command(args, {"name": REVOKE, "key": args.key_id})


def cmd_fleet_push_update(args: argparse.Namespace) -> int:
    import hashlib

    from edge_agent.fleet.fetch import check_url
    from edge_agent.fleet.refusal import Refused
    from edge_agent.node.command_names import UPDATE

    try:
        check_url(args.url)
    except Refused as exc:
        raise ConfigError(f"--url: {exc.detail}") from None
    h, size = hashlib.sha256(), 0
    try:
        with open(args.bundle, "rb") as f:
            while block := f.read(1 << 20):
                h.update(block)
                size += len(block)
    except OSError as exc:
        raise ConfigError(f"{args.bundle}: {exc.strerror or exc}") from None
    body = {"name": UPDATE, "url": args.url, "sha256": h.hexdigest(), "size": size}
    return _command(args, body)


def _command(args: argparse.Namespace, body: dict) -> int:
    """Send the signed command ``body`` (an id added) to each --node; print each one's final
    reply (an update's ``started`` is not final: its ``done`` or ``failed`` follows)."""
    sign = _signer(args)
    counter = args.counter or time.time_ns() // 1_000_000
    ident = uuid.uuid4().hex[:12]
    listener = _Listener(args, [f"{args.prefix}/{n}/cmd/reply" for n in args.node])
    try:
        listener.subscribed()
        for node in args.node:
            target = f"group:{args.group}" if args.group else f"node:{node}"
            envelope = sign("command", {**body, "id": ident}, target, counter)
            listener.publish(f"{args.prefix}/{node}/cmd", envelope, retain=False)

        def replies(messages) -> dict[str, dict]:
            out = {}
            for topic, payload in messages:
                reply = _json(payload)
                if isinstance(reply, dict) and reply.get("id") == ident and reply.get("outcome") != "started":
                    out[topic.split("/")[-3]] = reply
            return out

        listener.wait(lambda m: len(replies(m)) == len(args.node), time.monotonic() + args.wait)
        got = replies(listener.messages)
    finally:
        listener.close()
    ok = True
    for node in args.node:
        reply = got.get(node)
        ok &= reply is not None and reply.get("outcome") == "done"
        if args.json:
            print(json.dumps({"node": node, "reply": reply}, sort_keys=True))
        elif reply is None:
            print(f"{node}: no answer within {args.wait:g} s")
        else:
            why = f" ({reply['reason']})" if reply.get("reason") else ""
            print(f"{node}: {reply['outcome']}{why}: {reply.get('detail', '')}")
    return EXIT_OK if ok else EXIT_FAIL


def cmd_fleet_status(args: argparse.Namespace) -> int:
    kinds = ("status", "config/state", "health")
    listener = _Listener(args, [f"{args.prefix}/+/{k}" for k in kinds])
    try:
        listener.wait(lambda m: False, time.monotonic() + args.wait)
        messages = list(listener.messages)
    finally:
        listener.close()
    nodes: dict[str, dict] = {}
    for topic, payload in messages:
        rest = topic[len(args.prefix) + 1 :]
        node, _, kind = rest.partition("/")
        if kind in kinds:
            nodes.setdefault(node, {})[kind] = _json(payload)
    if args.json:
        print(json.dumps(nodes, sort_keys=True))
        return EXIT_OK
    for node in sorted(nodes):
        s, c = nodes[node].get("status") or {}, nodes[node].get("config/state") or {}
        conf = (
            f"config {c.get('outcome')} #{c.get('counter')} {c.get('config_hash')}" if c else "config local"
        )
        h = nodes[node].get("health")
        health = "health seen" if h else "no health within the wait"
        print(
            f"{node}: {s.get('state', '?')} version={s.get('version', '?')} core={s.get('core', '?')}"
            f"{_release((h or {}).get('release') or s.get('release'))} {conf}; {health}"
        )
    print(f"{len(nodes)} nodes", file=sys.stderr)
    return EXIT_OK


def _release(r: Any) -> str:
    """`` release=NAME (STATUS), last trial REL STATUS: REASON``; "" when not under a launcher."""
    if not isinstance(r, dict):
        return ""
    out = f" release={r.get('name', '?')}" + (f" ({r['status']})" if "status" in r else "")
    t = r.get("last_trial")
    if isinstance(t, dict):
        out += f", last trial {t.get('release', '?')} {t.get('status', '?')}"
        out += f": {t['reason']}" if "reason" in t else ""
    return out


def _common(p: argparse.ArgumentParser, *, signs: bool, default_wait: float) -> None:
    p.add_argument("--broker", required=True, metavar="URL", help="mqtt://host[:port] or mqtts://host[:port]")
    p.add_argument(
        "--prefix", default="edge", metavar="P", help="the nodes' mqtt.topic_prefix (default edge)"
    )
    p.add_argument(
        "--wait",
        type=float,
        default=default_wait,
        metavar="S",
        help=f"seconds to wait for answers (default {default_wait:g})",
    )
    if signs:
        p.add_argument("--key", required=True, metavar="KEY", help="the operator's private key (keys new)")
        p.add_argument(
            "--node", action="append", required=True, metavar="ID", help="a node to send to (repeat)"
        )
        p.add_argument("--counter", type=int, metavar="N", help="must go up (default: the time, in ms)")
        p.add_argument("--expires", default="1h", metavar="DURATION", help="valid for this long (default 1h)")
    add_client_arguments(p)


def _group(p: argparse.ArgumentParser) -> None:
    p.add_argument("--group", metavar="NAME", help="sign it for group:NAME (still sent to each --node)")


def _finish_command(p: argparse.ArgumentParser, func: Any, default_wait: float) -> None:
    """What every signed command's parser has: --json, --group, the signing and broker flags."""
    p.add_argument("--json", action="store_true", help="one JSON object per node")
    _group(p)
    _common(p, signs=True, default_wait=default_wait)
    p.set_defaults(func=func)


def add_parsers(fsub: argparse._SubParsersAction) -> None:
    from edge_agent.node.command_names import NAMES

    pc = fsub.add_parser("push-config", help="sign a node configuration and push it to nodes")
    pc.add_argument("file", metavar="FILE", help="the node configuration (as node.yaml)")
    _group(pc)
    _common(pc, signs=True, default_wait=90.0)
    pc.set_defaults(func=cmd_fleet_push_config)
    cm = fsub.add_parser("command", help="send a signed command to nodes and print their replies")
    cm.add_argument("name", choices=NAMES, help="the command")
    _finish_command(cm, cmd_fleet_command, 30.0)
    pu = fsub.add_parser(
        "push-update",
        help="send a signed update command: nodes fetch BUNDLE from --url, install it, restart",
    )
    pu.add_argument("bundle", metavar="BUNDLE", help="the bundle (fleet bundle), as served at --url")
    pu.add_argument("--url", required=True, metavar="URL", help="https:// where the nodes fetch it")
    _finish_command(pu, cmd_fleet_push_update, 600.0)
    rk = fsub.add_parser("revoke-key", help="nodes trust KEY_ID no more (never their last key)")
    rk.add_argument("key_id", metavar="KEY_ID", help="the key's id (keys show KEY.pub)")
    _finish_command(rk, cmd_fleet_revoke_key, 30.0)
    st = fsub.add_parser("status", help="what each node under the prefix says it runs")
    st.add_argument("--json", action="store_true", help="one JSON object")
    _common(st, signs=False, default_wait=2.0)
    st.set_defaults(func=cmd_fleet_status)
