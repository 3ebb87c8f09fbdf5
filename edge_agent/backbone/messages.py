"""What an MQTT message is to the ingest: a batch, a status, a health report, or a dead
letter with the reason it is one. Pure Python, no database.

Data payloads are decoded with ``edge_agent.wire.decode``, the decoder the node's tests and
every tool use. The topic is the sender's identity (docs/wire-format.md, "Topics"): a
payload whose node or stream differ from its data topic's, or a status or health report
naming another node than its topic, is a dead letter, never stored under either name.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from edge_agent import wire
from edge_agent.errors import WireFormatError
from edge_agent.wire.limits import name_problem

MAX_JSON = 1 << 20  # bytes of a status or health payload we parse


@dataclass(frozen=True)
class Message:
    """One message as the worker took it from paho: ``received`` is Unix seconds at the
    worker; ``mid``, ``qos`` and ``generation`` (which connection brought it) are for its
    acknowledgement."""

    topic: str
    payload: bytes
    received: float
    mid: int = 0
    qos: int = 1
    generation: int = 0


@dataclass(frozen=True)
class BatchRecord:
    batch: wire.Batch
    msg: Message


@dataclass(frozen=True)
class StatusRecord:
    node: str
    state: str  # "online" (birth) or "offline" (will, or a clean stop)
    doc: dict
    msg: Message


@dataclass(frozen=True)
class HealthRecord:
    node: str
    doc: dict
    msg: Message


@dataclass(frozen=True)
class DeadLetter:
    """A message kept as it came, with why it is not stored as what it claims to be."""

    msg: Message
    reason: str


Record = BatchRecord | StatusRecord | HealthRecord | DeadLetter


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _json_object(payload: bytes) -> dict:
    """A JSON object from UTF-8 (no NaN or Infinity: PostgreSQL's jsonb has neither); ValueError."""
    if len(payload) > MAX_JSON:
        raise ValueError(f"{len(payload)} bytes, more than {MAX_JSON}")
    try:
        doc = json.loads(payload.decode("utf-8"), parse_constant=_no_constant)
    except RecursionError:  # deeper than the parser's stack: "[" * 100_000
        raise ValueError("nested deeper than the JSON parser goes") from None
    if not isinstance(doc, dict):
        raise ValueError(f"a JSON {type(doc).__name__}, not an object")
    return doc


def _kind(topic: str, prefix: str) -> tuple[str, str, str | None] | None:
    """(kind, node, stream) of ``{prefix}/{node}/data/{stream}``, ``.../status`` or ``.../health``."""
    if not topic.startswith(prefix + "/"):
        return None
    parts = topic[len(prefix) + 1 :].split("/")
    if len(parts) == 3 and parts[1] == "data" and parts[0] and parts[2]:
        return "data", parts[0], parts[2]
    if len(parts) == 2 and parts[1] in ("status", "health") and parts[0]:
        return parts[1], parts[0], None
    return None


def classify(msg: Message, prefix: str = "edge") -> Record:
    """The record a message is; anything that is not one of the node's messages as the
    specification says is a DeadLetter with the reason."""

    def dead(reason: str) -> DeadLetter:
        return DeadLetter(msg, reason)

    kind = _kind(msg.topic, prefix)
    if kind is None:
        return dead(f"not a node's topic under {prefix!r} (PREFIX/NODE/data/STREAM, /status or /health)")
    what, node, stream = kind
    if problem := name_problem(node, "the topic's node id"):  # no node has it: not one's message
        return dead(problem)
    if what == "data":
        try:
            batch = wire.decode(msg.payload)
        except WireFormatError as exc:
            return dead(f"does not decode: {exc}")
        if (batch.node, batch.stream) != (node, stream):
            return dead(
                f"the payload says node {batch.node!r} stream {batch.stream!r}, "
                f"its topic node {node!r} stream {stream!r}"
            )
        return BatchRecord(batch, msg)
    try:
        doc = _json_object(msg.payload)
    except (ValueError, UnicodeDecodeError) as exc:
        return dead(f"{what} is not a JSON object: {exc}")
    if "node" in doc and doc["node"] != node:
        return dead(f"the {what} says node {doc['node']!r}, its topic {node!r}")
    if what == "health":
        return HealthRecord(node, doc, msg)
    state = doc.get("state")
    if state not in ("online", "offline"):
        return dead(f"status state {state!r} is neither 'online' nor 'offline'")
    return StatusRecord(node, state, doc, msg)


def sample_rows(batch: wire.Batch, channel_ids: list[int]) -> list[tuple[int, float, int, int | None, bool]]:
    """The batch's points as samples rows: (t in Unix ms, value, channel id, quality or None,
    clock_unsynced), in channel order; ``channel_ids`` are its channels' ids, in order."""
    unsynced = bool(batch.flags & wire.FLAG_CLOCK_UNSYNCED)
    rows: list[tuple[int, float, int, int | None, bool]] = []
    for ch, cid in zip(batch.channels, channel_ids):
        quality = dict(ch.flags)
        values = ch.values()
        if quality:
            rows.extend(
                (t, v, cid, quality.get(i), unsynced) for i, (t, v) in enumerate(zip(ch.times_ms, values))
            )
        else:
            rows.extend((t, v, cid, None, unsynced) for t, v in zip(ch.times_ms, values))
    return rows
