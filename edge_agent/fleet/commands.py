"""Signed commands to a running node, from a fixed list, answered on a reply topic
(docs/fleet.md, "Commands"). No remote shell: a command names one of ``NAMES``, nothing else.

A command is a signed object of kind ``command`` (edge_agent.fleet.signed) on
``{prefix}/{node}/cmd`` (QoS 1, not retained: a command is for now, and its expiry says how
long "now" is), with the body ``{"name": NAME, "id": ID}``; ``ID`` (1-64 of A-Z a-z 0-9 . _ -)
is the operator's (a letter or digit first), echoed in the reply. Its counter is recorded before it runs (persist, then
act): a replayed command is refused and never runs twice.

The reply, on ``{prefix}/{node}/cmd/reply`` (QoS 1, not retained)::

    {"id": ID or null, "name": NAME or null, "counter": N or null, "outcome": "done" | "refused",
     "reason": REASON (refused), "detail": TEXT, "result": {...} (report)}

- ``reload``: the configuration file read again (as SIGHUP);
- ``health``: a health message now, not at the next interval;
- ``flush``: the open batches sealed now (and so sent), not at the next interval;
- ``report``: the commissioning report of the running node: each sensor's state, reads and
  errors, and the streams' privacy levels (what the health message holds of the sampler);
- ``restart``: a clean stop; the service manager (or the launcher) starts the agent again;
- ``update``, with ``url``, ``sha256`` and ``size`` in its body: the bundle fetched over HTTPS,
  installed as a new release and the agent restarted into its trial (edge_agent.fleet.updates).
  Answered ``started`` at once, then ``done`` or ``failed``/``refused`` under the same id.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from typing import Any, Protocol

from edge_agent.config import AgentConfig
from edge_agent.fleet import signed
from edge_agent.fleet.counters import CounterStore
from edge_agent.fleet.keys import TrustStore
from edge_agent.fleet.refusal import Refused
from edge_agent.fleet.updates import Updates, check_body
from edge_agent.keyfile import KeyFileError
from edge_agent.node.command_names import NAMES, REVOKE, UPDATE
from edge_agent.node.control import ControlChannel, Message
from edge_agent.wire.format import NAME_PATTERN

log = logging.getLogger("edge_agent.fleet")

KIND = "command"
_ID = re.compile(rf"^{NAME_PATTERN}$")


class _Agent(Protocol):
    cfg: AgentConfig
    control: ControlChannel | None

    def command(self, name: str) -> dict | None: ...


def command_topic(cfg: AgentConfig) -> str:
    return f"{cfg.mqtt.topic_prefix}/{cfg.node_id}/cmd"


def reply_topic(cfg: AgentConfig) -> str:
    return f"{cfg.mqtt.topic_prefix}/{cfg.node_id}/cmd/reply"


class Commands:
    """The command topic's handler, a part of fleet.node_side.FleetNode."""

    def __init__(
        self,
        agent: _Agent,
        trust: TrustStore,
        audience: signed.Audience,
        counters: CounterStore,
        *,
        now: Callable[[], float] | None = None,
        updates: Updates | None = None,
        revoked: str | None = None,
    ) -> None:
        self.updates = updates
        self.revoked = revoked  # the node's revoked-keys file (fleet.keys.REVOKED)
        self.agent = agent
        self.trust = trust
        self.audience = audience
        self.counters = counters
        self.now = now

    def handle(self, message: Message) -> None:
        reply: dict[str, Any] = {"id": None, "name": None, "counter": None}
        try:
            # the counter is checked where it is recorded, once the body is read: a replay's
            # refusal then names the command's id (its signature verified: the id is its own)
            v = signed.verify(
                message.payload,
                kind=KIND,
                trust=self.trust,
                audience=self.audience,
                counters=_LATER,
                now=self.now() if self.now is not None else None,
            )
            reply["counter"] = v.counter
            name, ident = _body(v.body, reply)
            if name == UPDATE:
                if self.updates is None:
                    raise Refused("unsupported", "this node takes no updates over the fleet's topics")
                fetch_args = check_body(v.body, self.updates.limits)
                self.updates.refuse_now()
            elif name == REVOKE:
                kid = _revocable(v.body, self.trust, self.revoked)
            self.counters.record(KIND, v.counter, v.digest)  # persist, then act
        except Refused as exc:
            if reply["counter"] is not None:  # (signed.verify logged the others)
                log.warning("event=signed_refused kind=command reason=%s detail=%r", exc.reason, exc.detail)
            reply.update(outcome="refused", reason=exc.reason, detail=exc.detail)
            self._reply(reply)
            return
        log.info("event=command name=%s id=%s counter=%d key=%s", name, ident, v.counter, v.key_id)
        if name == UPDATE:
            assert self.updates is not None
            self.updates.start(ident, v.counter, *fetch_args)
            reply.update(
                outcome="started", detail=f"fetching {fetch_args[2]} bytes from {fetch_args[0][:120]}"
            )
            self._reply(reply)
            return
        if name == REVOKE:
            assert self.revoked is not None
            try:
                self.trust.revoke(kid, self.revoked)
            except (KeyFileError, OSError) as exc:  # a full disk, say: still trusted
                reply.update(outcome="failed", detail=str(exc)[:300])
            else:
                log.warning("event=key_revoked key=%s by=%s", kid, v.key_id)
                reply.update(
                    outcome="done", detail=f"key {kid} revoked; trusted: {', '.join(self.trust.ids)}"
                )
            self._reply(reply)
            return
        result = self.agent.command(name)
        started = name in ("reload", "restart")  # at the loop's next turn: said in the log
        reply.update(outcome="done", detail=f"{name} {'started' if started else 'done'}")
        if result is not None:
            reply["result"] = result
        self._reply(reply)

    def tick(self) -> None:
        """On the agent's thread: an update that has ended is answered, and a done one restarts."""
        job = self.updates.finished() if self.updates is not None else None
        if job is None:
            return
        self._reply({"id": job.command_id, "name": UPDATE, "counter": job.counter, **job.reply()})
        if job.outcome == "done":
            self.agent.command("restart")

    def _reply(self, reply: dict) -> None:
        if self.agent.control is not None:
            payload = json.dumps(reply, sort_keys=True, separators=(",", ":")).encode()
            self.agent.control.answer(reply_topic(self.agent.cfg), payload, retain=False)


class _Later:
    """Counters for signed.verify whose check is the record's, after the body is read."""

    def check(self, kind: str, counter: int, digest: str) -> None:
        pass


_LATER: Any = _Later()


def _body(body: Any, reply: dict) -> tuple[str, str]:
    """The command's name and id, each put in ``reply`` once it is known to be one."""
    if not isinstance(body, dict) or not {"name", "id"} <= set(body):
        raise Refused("malformed", 'a command\'s body is {"name": NAME, "id": ID}')
    name, ident = body["name"], body["id"]
    if not isinstance(ident, str) or not _ID.fullmatch(ident):
        raise Refused("malformed", "a command's id is 1-64 of A-Z a-z 0-9 . _ -, a letter or digit first")
    reply["id"] = ident
    if name not in (*NAMES, UPDATE, REVOKE):
        known = ", ".join((*NAMES, UPDATE, REVOKE))
        raise Refused("unknown_command", f"{str(name)[:64]!r}: the node runs only {known}")
    if name not in (UPDATE, REVOKE) and set(body) != {"name", "id"}:
        raise Refused("malformed", 'a command\'s body is {"name": NAME, "id": ID}')
    reply["name"] = name
    return name, ident


def _revocable(body: dict, trust: TrustStore, revoked: str | None) -> str:
    """The key id a revoke command names, refused before its counter is spent when it cannot be."""
    if set(body) != {"name", "id", "key"} or not isinstance(body["key"], str):
        raise Refused("malformed", 'a revoke command\'s body is {"name": "revoke", "id": ID, "key": KEY_ID}')
    kid = body["key"]
    if revoked is None:
        raise Refused("unsupported", "this node keeps no record of revoked keys")
    if not trust.knows(kid):
        raise Refused("revocation", f"key {kid[:64]!r} is not one the node trusts")
    if len(trust.ids) == 1:
        raise Refused("revocation", f"key {kid} is the last the node trusts: it is never revoked")
    return kid
