"""A running agent's change of configuration: from its file at a SIGHUP (``reload_file``), or
one already validated (``apply``: a remote configuration's trial or revert, edge_agent.fleet).

The open batches are sealed under the old configuration, then the new one runs: new drivers,
and a new uplink when the MQTT settings, the node id or the clock hold changed (what stays
unacknowledged, the new one sends). The queue never moves: a configuration that would move it
is refused before anything changes.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from edge_agent.config import AgentConfig, load_config, store_path, with_overrides
from edge_agent.errors import ConfigError
from edge_agent.node.store_pending import UnopenedStore

if TYPE_CHECKING:
    from edge_agent.node.agent import Agent

log = logging.getLogger("edge_agent.service")


def reload_file(agent: Agent) -> None:
    """SIGHUP: the configuration file read again and applied; an invalid one is rejected with
    its error logged, and the old configuration keeps running."""
    agent.reload_event.clear()
    if agent.config_path is None:
        log.warning("event=reload_ignored reason=%r", "running the built-in default node, no file to re-read")
        return
    held = agent.control_handler.holds() if agent.control_handler is not None else None
    if held is not None:
        log.warning("event=reload_ignored reason=%r", f"{held} is in force in place of {agent.config_path}")
        return
    try:
        new = with_overrides(load_config(agent.config_path), **agent.overrides)
        if store_path(new) != store_path(agent.cfg):
            raise ConfigError(
                f"{agent.config_path}: state_dir/store.path: the queue cannot move "
                f"while running (restart the service to move it)"
            )
    except ConfigError as exc:
        agent.rejected_reloads += 1
        log.error("event=reload_rejected error=%r keeping=%s", str(exc), agent.cfg.config_hash)
        return
    apply(agent, new)


def apply(agent: Agent, new: AgentConfig) -> None:
    """Run ``new``, which the caller validated (and whose queue is the running one's)."""
    agent.notifier.reloading()
    old = agent.cfg
    old_hardware, agent.hardware = agent.hardware, agent._hardware(new)
    agent.sampler.reconfigure(new, agent.hardware.make)  # closes the old drivers
    old_hardware.close()
    if (new.mqtt, new.node_id, new.clock_hold) != (old.mqtt, old.node_id, old.clock_hold):
        # what stays unacknowledged, the new one sends
        agent._join_uplink(agent._stop_uplink(drain_timeout=1.0))
        agent.uplink = agent._new_uplink(new)
        if not isinstance(agent.store, UnopenedStore):
            agent.uplink.start()
    agent.cfg = new
    if new.flush_interval != old.flush_interval:
        agent._hand_over()  # a wait of the new interval's
    agent._watch()
    agent.reloads += 1
    agent.notifier.ready(agent.status())
    log.info(
        "event=reloaded config=%s hash=%s previous=%s sensors=%d",
        new.source,
        new.config_hash,
        old.config_hash,
        len(new.sensors),
    )
