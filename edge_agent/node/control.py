"""The node's control channel: the topics the uplink subscribes to for the fleet (a signed
configuration on ``{prefix}/{node}/config/set``, signed commands), and the retained answers it
publishes (``config/state``).

The node layer does not read what arrives: ``edge_agent.fleet`` does (signatures, counters,
the configuration's trial), through a ``Handler`` that ``cli/run.py`` gives the agent. This
module only moves bytes between the uplink's thread and the agent's:

- what arrived on the subscribed topics, handed to the agent's thread: bounded (a flood of
  the topic costs at most ``MAX_PENDING`` messages of at most ``MAX_MESSAGE`` bytes; more
  are dropped, counted and logged, and a retained configuration comes again at the next
  connect);
- the answers, published (QoS 1) when the link is up: a retained state, the newest per topic,
  again at each connect (a broker without persistence forgets it at a restart); a reply once.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable
from typing import Protocol

import paho.mqtt.client as mqtt

from edge_agent.config import AgentConfig

log = logging.getLogger("edge_agent.control")

MAX_MESSAGE = 256 * 1024  # bytes: a signed configuration (signed.MAX_ENVELOPE)
MAX_PENDING = 16  # messages waiting for the agent's thread


@dataclasses.dataclass(frozen=True)
class Message:
    topic: str
    payload: bytes
    retained: bool


class Handler(Protocol):
    """What reads the control channel (edge_agent.fleet's node side)."""

    def topics(self, cfg: AgentConfig) -> list[str]:
        """The topics to subscribe to (QoS 1, no wildcards) under ``cfg``."""
        ...

    def holds(self) -> str | None:
        """What runs in place of the configuration file, if anything (a SIGHUP then keeps it)."""
        ...

    def handle(self, message: Message) -> None:
        """One message, on the agent's thread."""
        ...

    def tick(self, now: float) -> None:
        """Each turn of the agent's loop (at least once a second): a trial's deadline."""
        ...


class ControlChannel:
    """The uplink's side of the control channel: what arrived, for the agent's thread (bounded
    in number and size), and the answers to publish from the uplink's thread."""

    def __init__(self, topics: list[str]) -> None:
        self.topics = list(topics)
        self._lock = threading.Lock()
        self._pending: list[Message] = []
        self._retained: dict[str, bytes] = {}  # topic: the newest state, sent at each connect
        self._once: list[tuple[str, bytes, bool]] = []  # replies, each sent once
        self._unsent: set[str] = set()
        self.dropped = 0
        self.wake: Callable[[], None] = lambda: None  # set by the uplink: answers to send

    # --- the uplink's thread ------------------------------------------------------------------
    def attach(self, client: mqtt.Client, current: Callable[[int], bool]) -> None:
        """A new client: what it receives comes here while ``current(its generation)``."""

        def on_message(client: mqtt.Client, gen: int, msg: mqtt.MQTTMessage) -> None:
            if current(gen):
                self.received(msg.topic, bytes(msg.payload), bool(msg.retain))

        client.on_message = on_message

    def connected(self, client: mqtt.Client) -> None:
        """The link is up: subscribe (a retained configuration comes at once), then send the
        answers: the retained ones again (the broker may have lost them), the others once."""
        if self.topics:
            client.subscribe([(t, 1) for t in self.topics])
        self.send(client, again=True)

    def send(self, client: mqtt.Client, *, again: bool = False) -> None:
        """Publish the answers not yet sent (``again``: the retained ones too)."""
        with self._lock:
            items = [(t, p, True) for t, p in self._retained.items() if again or t in self._unsent]
            items += self._once
            self._once, self._unsent = [], set()
        for topic, payload, retain in items:
            client.publish(topic, payload, qos=1, retain=retain)

    def received(self, topic: str, payload: bytes, retained: bool) -> bool:
        """A message, kept for the agent's thread; False (logged) when refused."""
        if topic not in self.topics:
            return False  # not subscribed: not ours
        why = None
        if len(payload) > MAX_MESSAGE:
            why = f"over {MAX_MESSAGE} bytes"
        with self._lock:
            if why is None and len(self._pending) >= MAX_PENDING:
                why = f"{MAX_PENDING} messages wait already"
            if why is None:
                self._pending.append(Message(topic, bytes(payload), retained))
                return True
            self.dropped += 1
        log.warning("event=control_dropped topic=%s bytes=%d reason=%r", topic, len(payload), why)
        return False

    # --- the agent's thread -------------------------------------------------------------------
    def take(self) -> list[Message]:
        """Everything that waits, oldest first."""
        with self._lock:
            taken, self._pending = self._pending, []
        return taken

    def answer(self, topic: str, payload: bytes, *, retain: bool) -> None:
        """Publish ``payload`` when the link is up. A retained answer (a state) is sent again at
        each connect until a newer one for its topic replaces it; the others (replies) each
        once, the oldest dropped past ``MAX_PENDING`` waiting."""
        with self._lock:
            if retain:
                self._retained[topic] = payload
                self._unsent.add(topic)
            else:
                self._once.append((topic, payload, False))
                del self._once[:-MAX_PENDING]
        self.wake()
