"""The operator key files' format, with no cryptography: what the card's provisioning
(edge_agent.field, which does not import fleet or PyNaCl) and the node's trust store
(edge_agent.fleet.keys) both read, one reader for both.

    NAME.key   ``edge-agent-ed25519-secret <base64 of the 32-byte seed>``
    NAME.pub   ``edge-agent-ed25519-public <base64 of the 32-byte key> [comment]``

A key's id is the first 16 hex digits of the SHA-256 of its 32 public bytes: computed, never
read from a file, so a file cannot claim another key's id.
"""

from __future__ import annotations

import base64
import binascii
import hashlib

from edge_agent.errors import EdgeAgentError

PUBLIC_TAG = "edge-agent-ed25519-public"
SECRET_TAG = "edge-agent-ed25519-secret"
KEY_BYTES = 32


class KeyFileError(EdgeAgentError, ValueError):
    """A key file is missing, unreadable, of the wrong kind or damaged: says which and why."""


def key_id(public: bytes) -> str:
    return hashlib.sha256(public).hexdigest()[:16]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def strict_b64(text: str) -> bytes | None:
    """The bytes of the one base64 spelling of them (no spaces, no other padding bits), or
    None for any other text."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if b64(raw) == text else None


def key_bytes(text: str, where: str) -> bytes:
    """A key's 32 bytes from its base64 field; KeyFileError naming ``where`` otherwise."""
    raw = strict_b64(text)
    if raw is None or len(raw) != KEY_BYTES:
        raise KeyFileError(f"{where}: the key is not {KEY_BYTES} bytes in base64")
    return raw


def parse_public(data: bytes, where: str, *, private: str = "") -> tuple[bytes, str, str]:
    """(key bytes, comment, the file's line) of a ``.pub`` file's bytes; KeyFileError naming
    ``where`` otherwise. ``private`` is said after "this is a private key" when it is one."""
    try:
        line = data.decode("ascii").splitlines()[0] if data else ""
    except UnicodeDecodeError:
        line = ""
    fields = line.split(" ", 2)
    if fields[0] == SECRET_TAG:
        raise KeyFileError(f"{where}: this is a private key{private}; give its .pub file")
    if fields[0] != PUBLIC_TAG or len(fields) < 2:
        raise KeyFileError(f"{where}: not an edge-agent public key (expected a line '{PUBLIC_TAG} ...')")
    comment = fields[2] if len(fields) > 2 else ""
    if not comment.isprintable():
        raise KeyFileError(f"{where}: the comment holds control characters")
    return key_bytes(fields[1], where), comment, line
