"""The fleet's part in a running agent: it reads the control channel (node/control.py) and
runs a remote configuration's life (edge_agent.fleet.remote_config) through the agent's reload
path, from the agent's own thread.

``{prefix}/{node}/config/set`` (retained) carries a signed configuration. Offered, it is
checked as a file is; accepted, it is applied and on trial: the uplink must be connected under
it within ``remote_config.TRIAL`` (60 s), or it is reverted to the last good one (else the
local file), and never tried again. Each outcome is published, retained, on
``{prefix}/{node}/config/state``: ``{"outcome": trial | applied | rejected | reverted,
"counter", "config_hash", "detail", "at", "reason"?}``. Commands from a fixed list come on
``{prefix}/{node}/cmd`` (edge_agent.fleet.commands).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from typing import Protocol

from edge_agent.config import AgentConfig
from edge_agent.fleet import remote_config
from edge_agent.fleet.commands import Commands, command_topic
from edge_agent.fleet.keys import REVOKED, TrustStore
from edge_agent.fleet.refusal import Refused
from edge_agent.fleet.remote_config import RemoteConfig
from edge_agent.fleet.signed import Audience
from edge_agent.fleet.updates import Updates
from edge_agent.keyfile import KeyFileError
from edge_agent.node.control import ControlChannel, Message

log = logging.getLogger("edge_agent.fleet")


class _Agent(Protocol):
    """What this needs of the agent (edge_agent.node.agent.Agent)."""

    cfg: AgentConfig
    control: ControlChannel | None

    def apply_config(self, new: AgentConfig) -> None: ...

    def link_up(self) -> bool: ...

    def command(self, name: str) -> dict | None: ...


def config_set_topic(cfg: AgentConfig) -> str:
    return f"{cfg.mqtt.topic_prefix}/{cfg.node_id}/config/set"


def config_state_topic(cfg: AgentConfig) -> str:
    return f"{cfg.mqtt.topic_prefix}/{cfg.node_id}/config/state"


def remote_for(local: AgentConfig, trust_dir: str) -> tuple[AgentConfig, Callable[..., FleetNode] | None]:
    """What ``edge-agent run`` runs: the configuration (a good remote one in place of the
    file's, a trial a stop interrupted reverted) and the maker of the control channel's
    handler; none when the node trusts no key, since nothing could verify."""
    if not os.path.isdir(trust_dir):
        log.info("event=remote_config_off reason=%r", f"no trust store at {trust_dir}")
        return local, None
    try:
        revoked = os.path.join(local.state_dir, "fleet", REVOKED)
        trust = TrustStore.load(trust_dir, revoked)
    except KeyFileError as exc:  # a damaged store: the node samples on, without the fleet
        log.error("event=remote_config_off reason=%r", str(exc))
        return local, None
    if not trust.ids:
        log.info("event=remote_config_off reason=%r", f"no trusted key in {trust_dir}")
        return local, None
    audience = Audience(local.node_id, frozenset(local.groups))
    remote = RemoteConfig(local.state_dir, trust, audience)
    running = remote.at_start(local)

    def make(agent: _Agent) -> FleetNode:
        updates = Updates(trust, audience, remote.counters, ca_file=local.mqtt.ca_file)
        commands = Commands(agent, trust, audience, remote.counters, updates=updates, revoked=revoked)
        return FleetNode(agent, remote, local, commands=commands)

    return running, make


class FleetNode:
    """The control channel's handler for one agent (node/control.py ``Handler``)."""

    def __init__(
        self,
        agent: _Agent,
        remote: RemoteConfig,
        local: AgentConfig,
        *,
        commands: Commands | None = None,
        trial: float = remote_config.TRIAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.agent = agent
        self.remote = remote
        self.commands = commands
        self.local = local  # the file's configuration: where a revert with no good one goes
        self.trial = trial
        self.clock = clock
        self.deadline: float | None = None  # of the trial under way
        self._answer(remote.state())  # the outcome at the start (a trial a stop ended: reverted)

    # --- node/control.py Handler ---------------------------------------------------------------
    def topics(self, cfg: AgentConfig) -> list[str]:
        return [config_set_topic(cfg)] + ([command_topic(cfg)] if self.commands is not None else [])

    def holds(self) -> str | None:
        held = self.remote.trial() or self.remote.good()
        return held.source() if held is not None else None

    def handle(self, message: Message) -> None:
        if self.commands is not None and message.topic == command_topic(self.agent.cfg):
            if message.retained:  # a command is for now: one left retained would come at each connect
                log.warning("event=command_ignored reason=%r", "a retained command")
            else:
                self.commands.handle(message)
            return
        if message.topic != config_set_topic(self.agent.cfg) or not message.payload:
            return  # an empty retained message: the operator cleared the topic
        if self.deadline is not None:
            # one trial at a time: the offer comes again (retained) at the next connect
            log.warning("event=remote_config_deferred reason=%r", "a trial is under way")
            return
        try:
            offer = self.remote.offer(message.payload, self.agent.cfg)
        except Refused as exc:
            self._answer(self.remote.refuse(exc))
            return
        self.remote.accept(offer)
        self._answer(self.remote.state())
        self.agent.apply_config(offer.cfg)
        self.deadline = self.clock() + self.trial

    def tick(self, now: float) -> None:
        if self.commands is not None:
            self.commands.tick()
        if self.deadline is None:
            return
        if self.agent.link_up():
            self.deadline = None
            self._answer(self.remote.confirm())
        elif self.clock() >= self.deadline:
            self.deadline = None
            back = self.remote.revert(
                self.local, f"the uplink did not come back within {self.trial:g} s of applying it"
            )
            self.agent.apply_config(back)
            self._answer(self.remote.state())

    # ------------------------------------------------------------------------------------------
    def _answer(self, state: dict | None) -> None:
        if state is None or self.agent.control is None:
            return
        payload = json.dumps(state, sort_keys=True, separators=(",", ":")).encode()
        self.agent.control.answer(config_state_topic(self.agent.cfg), payload, retain=True)
