"""Signed objects: one envelope for update manifests, configurations and commands.

The envelope is DSSE's (the Dead Simple Signing Envelope of in-toto and Sigstore), in canonical
JSON, with exactly one signature::

    {"payload":"<base64>","payloadType":"application/vnd.edge-agent.<kind>+json",
     "signatures":[{"keyid":"<16 hex>","sig":"<base64 of 64 bytes>"}]}

The signature is Ed25519 over DSSE's pre-authentication encoding,
``DSSEv1 SP LEN(type) SP type SP LEN(payload) SP payload``, so a signature made for one kind
never verifies as another. The payload is canonical JSON (edge_agent.fleet.canonical)::

    {"body":{...},"counter":17,"expires":1767225600,"issued":1764633600,
     "kind":"update","target":"node:lamp-0042","v":1}

``target`` is ``node:<id>`` or ``group:<name>``; ``counter`` goes up per kind (the node keeps the
last it accepted, edge_agent.fleet.counters); ``issued`` and ``expires`` are whole seconds of
Unix time. Since the envelope and the payload must each be in canonical form, and base64 in its
one spelling, every change of a byte is refused: as malformed, or by the signature.

Verification reads nothing of the payload before the signature verifies, then checks, in this
order, kind, target, expiry and counter; a refusal is a ``Refused`` with its reason, logged as
one line ``event=signed_refused kind=... reason=... key=... detail=...``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import re
import time
from typing import Any

from edge_agent.fleet import canonical
from edge_agent.fleet.counters import KINDS, CounterStore
from edge_agent.fleet.keys import OperatorKey, TrustStore
from edge_agent.fleet.refusal import Refused
from edge_agent.keyfile import b64, strict_b64
from edge_agent.wire.format import NAME_PATTERN

log = logging.getLogger("edge_agent.fleet")

MAX_ENVELOPE = 256 * 1024  # bytes: a manifest of a few hundred files, a node configuration
MAX_DEPTH = 16  # of the payload; the envelope itself is 3 deep
VERSION = 1
_TARGET = re.compile(rf"^(node|group):({NAME_PATTERN})$")
_KEYID = re.compile(r"^[0-9a-f]{16}$")


def payload_type(kind: str) -> str:
    return f"application/vnd.edge-agent.{kind}+json"


def pae(ptype: str, payload: bytes) -> bytes:
    """DSSE's pre-authentication encoding: the bytes a signature covers."""
    t = ptype.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(payload), payload)


@dataclasses.dataclass(frozen=True)
class Audience:
    """Who the verifier is: a node id and the groups it belongs to."""

    node_id: str
    groups: frozenset[str] = frozenset()

    def addressed_by(self, target: str) -> bool:
        scope, _, name = target.partition(":")
        return (scope == "node" and name == self.node_id) or (scope == "group" and name in self.groups)


@dataclasses.dataclass(frozen=True)
class Verified:
    """A signed object that passed every check; ``digest`` is the SHA-256 of its envelope bytes."""

    kind: str
    target: str
    counter: int
    issued: int
    expires: int
    body: Any
    key_id: str
    digest: str


def check_target(target: str) -> str:
    if not isinstance(target, str) or not _TARGET.match(target):
        raise ValueError(f"target {target!r}: expected node:<node id> or group:<group name>")
    return target


def sign(
    kind: str,
    body: Any,
    *,
    key: OperatorKey,
    target: str,
    counter: int,
    expires: int,
    issued: int | None = None,
) -> bytes:
    """The envelope bytes of one signed object (ValueError for what could never verify)."""
    if kind not in KINDS:
        raise ValueError(f"kind {kind!r}: one of {', '.join(KINDS)}")
    check_target(target)
    issued = int(time.time()) if issued is None else issued
    if not (isinstance(counter, int) and 0 < counter <= canonical.MAX_INT):
        raise ValueError(f"counter {counter!r}: a whole number from 1 to 2^53 - 1")
    if not expires > issued:
        raise ValueError("expires must come after issued")
    payload = canonical.dumps(
        {
            "body": body,
            "counter": counter,
            "expires": expires,
            "issued": issued,
            "kind": kind,
            "target": target,
            "v": VERSION,
        },
        MAX_DEPTH,
    )
    sig = key.sign(pae(payload_type(kind), payload))
    envelope = {
        "payload": b64(payload),
        "payloadType": payload_type(kind),
        "signatures": [{"keyid": key.public.id, "sig": b64(sig)}],
    }
    data = canonical.dumps(envelope)
    if len(data) > MAX_ENVELOPE:
        raise ValueError(f"the signed object is {len(data):,} bytes, more than {MAX_ENVELOPE:,}")
    return data


def _strict_b64(text: Any, what: str) -> bytes:
    if not isinstance(text, str):
        raise Refused("malformed", f"{what}: not a string")
    raw = strict_b64(text)
    if raw is None:
        raise Refused("malformed", f"{what}: not base64, or not the one spelling of its bytes in it")
    return raw


def _open(data: bytes, kind: str, trust: TrustStore) -> tuple[bytes, str]:
    """The payload bytes and the key id, once the signature verified; Refused otherwise."""
    try:
        env = canonical.loads(data, max_bytes=MAX_ENVELOPE, max_depth=3)
    except canonical.NotCanonical as exc:
        raise Refused("malformed", f"envelope: {exc}") from None
    if not isinstance(env, dict) or set(env) != {"payload", "payloadType", "signatures"}:
        raise Refused("malformed", "envelope: expected exactly payload, payloadType and signatures")
    sigs = env["signatures"]
    if not (isinstance(sigs, list) and len(sigs) == 1 and isinstance(sigs[0], dict)):
        raise Refused("malformed", "envelope: expected exactly one signature")
    if set(sigs[0]) != {"keyid", "sig"} or not isinstance(sigs[0]["keyid"], str):
        raise Refused("malformed", "envelope: a signature has exactly keyid and sig")
    kid = sigs[0]["keyid"]
    if not _KEYID.match(kid):
        raise Refused("malformed", "envelope: keyid is not 16 hex digits")
    ptype = env["payloadType"]
    if not isinstance(ptype, str):
        raise Refused("malformed", "envelope: payloadType is not a string")
    payload = _strict_b64(env["payload"], "payload")
    sig = _strict_b64(sigs[0]["sig"], "sig")
    if not trust.knows(kid):
        raise Refused("unknown_key", f"key {kid} is not in the trust store {trust.where}".rstrip())
    if len(sig) != 64 or not trust.verifies(kid, pae(ptype, payload), sig):
        raise Refused("bad_signature", f"the signature by key {kid} does not verify")
    if ptype != payload_type(kind):  # signed, so the signer's own mistake; still not ours to act on
        raise Refused("wrong_kind", f"signed as {ptype!r}, expected {payload_type(kind)!r}")
    return payload, kid


def _fields(payload: bytes, kind: str) -> dict:
    try:
        doc = canonical.loads(payload, max_bytes=MAX_ENVELOPE, max_depth=MAX_DEPTH)
    except canonical.NotCanonical as exc:
        raise Refused("malformed", f"payload: {exc}") from None
    want = {"body", "counter", "expires", "issued", "kind", "target", "v"}
    if not isinstance(doc, dict) or set(doc) != want:
        raise Refused("malformed", f"payload: expected exactly the fields {', '.join(sorted(want))}")
    if doc["v"] != VERSION:
        raise Refused("malformed", f"payload: version {doc['v']!r}, this node reads {VERSION}")
    for name in ("counter", "expires", "issued"):
        if not isinstance(doc[name], int) or isinstance(doc[name], bool) or doc[name] < 0:
            raise Refused("malformed", f"payload: {name} is not a whole number")
    if doc["counter"] < 1 or doc["expires"] <= doc["issued"]:
        raise Refused("malformed", "payload: counter below 1, or expiry not after issue")
    if doc["kind"] != kind:
        raise Refused("wrong_kind", f"a {doc['kind']!r} object, expected {kind!r}")
    if not isinstance(doc["target"], str) or not _TARGET.match(doc["target"]):
        raise Refused("malformed", "payload: target is not node:<id> or group:<name>")
    return doc


def verify(
    data: bytes,
    *,
    kind: str,
    trust: TrustStore,
    audience: Audience,
    counters: CounterStore,
    now: float | None = None,
) -> Verified:
    """Every check, and nothing recorded: Verified, or Refused (logged) with the reason."""
    kid = "-"
    try:
        payload, kid = _open(data, kind, trust)
        doc = _fields(payload, kind)
        if not audience.addressed_by(doc["target"]):
            raise Refused("wrong_target", f"for {doc['target']}, this is node:{audience.node_id}")
        now = time.time() if now is None else now
        if doc["expires"] <= now:
            raise Refused("expired", f"expired at {_utc(doc['expires'])}, now is {_utc(int(now))}")
        digest = hashlib.sha256(data).hexdigest()
        counters.check(kind, doc["counter"], digest)
    except Refused as exc:
        log.warning(
            "event=signed_refused kind=%s reason=%s key=%s detail=%r", kind, exc.reason, kid, exc.detail
        )
        raise
    return Verified(
        kind, doc["target"], doc["counter"], doc["issued"], doc["expires"], doc["body"], kid, digest
    )


def accept(data: bytes, *, counters: CounterStore, **checks: Any) -> Verified:
    """verify(), then the counter recorded durably: act on the object only after this returns
    (persist, then act: edge_agent.fleet.counters says why)."""
    v = verify(data, counters=counters, **checks)
    try:
        counters.record(v.kind, v.counter, v.digest)
    except Refused as exc:  # another process accepted one meanwhile
        log.warning(
            "event=signed_refused kind=%s reason=%s key=%s detail=%r",
            v.kind,
            exc.reason,
            v.key_id,
            exc.detail,
        )
        raise
    log.info(
        "event=signed_accepted kind=%s counter=%d key=%s target=%s", v.kind, v.counter, v.key_id, v.target
    )
    return v


def _utc(t: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
