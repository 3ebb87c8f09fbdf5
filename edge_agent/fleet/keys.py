"""Operator keys (Ed25519, through PyNaCl's libsodium) and a node's trust store.

Two files per key pair, one line each, so a person can tell them apart and a script can grep:

    NAME.key   ``edge-agent-ed25519-secret <base64 of the 32-byte seed>``   mode 0600, never printed
    NAME.pub   ``edge-agent-ed25519-public <base64 of the 32-byte key> [comment]``

A key's id is the first 16 hex digits of the SHA-256 of its 32 public bytes: computed, never
read from a file, so a file cannot claim another key's id. A node's trust store is a directory
of ``<key id>.pub`` files (``/etc/edge-agent/trust``: put there at first boot from ``image
provision --trust``, root's, readable by the agent, which cannot change it). The format is
also read, without PyNaCl, by ``edge_agent.field.provision`` (the layering keeps field from
importing fleet); tests/test_fleet_keys.py holds the two readers to the same answers.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import os
import stat
from pathlib import Path

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from edge_agent.errors import EdgeAgentError
from edge_agent.files import TooLarge, read_at_most

PUBLIC_TAG = "edge-agent-ed25519-public"
SECRET_TAG = "edge-agent-ed25519-secret"
KEY_FILE_MAX = 4096  # bytes: a key file is one short line
MAX_TRUSTED = 64  # keys in a trust store: more is a mistake, and each costs a file read


class KeyFileError(EdgeAgentError, ValueError):
    """A key file is missing, unreadable, of the wrong kind or damaged: says which and why."""


def key_id(public: bytes) -> str:
    return hashlib.sha256(public).hexdigest()[:16]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str, size: int, where: str) -> bytes:
    """Strict: the only spelling of ``size`` bytes (no spaces, no other padding bits)."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != size or _b64(raw) != text:
        raise KeyFileError(f"{where}: the key is not {size} bytes in base64")
    return raw


@dataclasses.dataclass(frozen=True)
class PublicKey:
    raw: bytes
    comment: str = ""

    @property
    def id(self) -> str:
        return key_id(self.raw)

    def line(self) -> bytes:
        return f"{PUBLIC_TAG} {_b64(self.raw)}{' ' + self.comment if self.comment else ''}\n".encode()


def parse_public(data: bytes, where: str) -> PublicKey:
    """The public key of a ``.pub`` file's bytes; KeyFileError naming ``where`` otherwise."""
    try:
        line = data.decode("ascii").splitlines()[0] if data else ""
    except UnicodeDecodeError:
        line = ""
    fields = line.split(" ", 2)
    if fields[0] == SECRET_TAG:
        raise KeyFileError(f"{where}: this is a private key; give its .pub file")
    if fields[0] != PUBLIC_TAG or len(fields) < 2:
        raise KeyFileError(f"{where}: not an edge-agent public key (expected a line '{PUBLIC_TAG} ...')")
    comment = fields[2] if len(fields) > 2 else ""
    if not comment.isprintable():
        raise KeyFileError(f"{where}: the comment holds control characters")
    return PublicKey(_unb64(fields[1], 32, where), comment)


def read_public(path: str | os.PathLike) -> PublicKey:
    try:
        return parse_public(read_at_most(path, KEY_FILE_MAX), str(path))
    except TooLarge:
        raise KeyFileError(f"{path}: more than {KEY_FILE_MAX} bytes: not a key file") from None
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot read: {exc.strerror or exc}") from None


class OperatorKey:
    """A private key, read from its file (which must be its owner's alone, as ssh asks)."""

    def __init__(self, seed: bytes) -> None:
        self._key = SigningKey(seed)
        self.public = PublicKey(bytes(self._key.verify_key))

    @classmethod
    def read(cls, path: str | os.PathLike) -> OperatorKey:
        try:
            st = os.stat(path)
            data = read_at_most(path, KEY_FILE_MAX)
        except TooLarge:
            raise KeyFileError(f"{path}: more than {KEY_FILE_MAX} bytes: not a key file") from None
        except OSError as exc:
            raise KeyFileError(f"{path}: cannot read: {exc.strerror or exc}") from None
        if st.st_mode & 0o077:
            raise KeyFileError(
                f"{path}: a private key readable by others (mode {stat.S_IMODE(st.st_mode):04o}); "
                f"chmod 600 {path}"
            )
        fields = data.decode("ascii", errors="replace").split()
        if fields[:1] == [PUBLIC_TAG]:
            raise KeyFileError(f"{path}: this is a public key; signing needs the private key (.key)")
        if len(fields) != 2 or fields[0] != SECRET_TAG:
            raise KeyFileError(f"{path}: not an edge-agent private key (expected '{SECRET_TAG} ...')")
        return cls(_unb64(fields[1], 32, str(path)))

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message).signature


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Create ``path`` (never over an existing file or through a link), ``mode`` whatever the umask."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        os.fchmod(fd, mode)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def new_key_pair(
    out_dir: str | os.PathLike, name: str = "operator", comment: str = ""
) -> tuple[Path, Path, str]:
    """Make NAME.key (0600) and NAME.pub in ``out_dir`` (made 0700 when missing); refuses to
    replace either. Returns (private path, public path, key id)."""
    if not name or "/" in name or name.startswith(".") or not name.isprintable():
        raise KeyFileError(f"--name {name!r}: a file name, without '/'")
    if not (comment.isascii() and comment.isprintable() and (comment or name).isascii()):
        raise KeyFileError(f"--comment {comment or name!r}: printable ASCII (a key file is ASCII)")
    out = Path(out_dir)
    out.mkdir(mode=0o700, parents=True, exist_ok=True)
    secret, public = out / f"{name}.key", out / f"{name}.pub"
    for p in (secret, public):
        if os.path.lexists(p):
            raise KeyFileError(f"{p}: exists; a key is never replaced (choose another --name or --out)")
    seed = os.urandom(32)
    key = OperatorKey(seed)
    pub = dataclasses.replace(key.public, comment=comment or name)
    _write_new(secret, f"{SECRET_TAG} {_b64(seed)}\n".encode(), 0o600)
    try:
        _write_new(public, pub.line(), 0o644)
    except OSError:
        os.unlink(secret)
        raise
    dfd = os.open(out, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
    return secret, public, pub.id


class TrustStore:
    """The public keys a node accepts signatures from, by key id."""

    def __init__(self, keys: list[PublicKey], where: str = "") -> None:
        self.where = where
        self._keys = {k.id: VerifyKey(k.raw) for k in keys}

    @classmethod
    def load(cls, directory: str | os.PathLike) -> TrustStore:
        """Every ``*.pub`` file in ``directory``; an unreadable or damaged one is an error (a
        trust store is written once, by the first-boot import: damage is worth a visit)."""
        d = Path(directory)
        try:
            names = sorted(p.name for p in d.iterdir() if p.name.endswith(".pub"))
        except OSError as exc:
            raise KeyFileError(f"trust store {d}: cannot read: {exc.strerror or exc}") from None
        if len(names) > MAX_TRUSTED:
            raise KeyFileError(f"trust store {d}: {len(names)} keys, more than {MAX_TRUSTED}")
        return cls([read_public(d / n) for n in names], str(d))

    @property
    def ids(self) -> list[str]:
        return sorted(self._keys)

    def knows(self, kid: str) -> bool:
        return kid in self._keys

    def verifies(self, kid: str, message: bytes, signature: bytes) -> bool:
        """Whether ``signature`` is the key ``kid``'s over ``message`` (libsodium's check, which
        refuses non-canonical signatures and small-order keys)."""
        try:
            self._keys[kid].verify(message, signature)
        except (BadSignatureError, ValueError):
            return False
        return True
