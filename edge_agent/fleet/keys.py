"""Operator keys (Ed25519, through PyNaCl's libsodium) and a node's trust store.

Two files per key pair, one line each, so a person can tell them apart and a script can grep:

    NAME.key   ``edge-agent-ed25519-secret <base64 of the 32-byte seed>``   mode 0600, never printed
    NAME.pub   ``edge-agent-ed25519-public <base64 of the 32-byte key> [comment]``

A key's id is computed from its bytes (edge_agent.keyfile: the format, read there for this
module and for the card's provisioning alike). A node's trust store is a directory
of ``<key id>.pub`` files (``/etc/edge-agent/trust``: put there at first boot from ``image
provision --trust``, root's, readable by the agent, which cannot change it).
"""

from __future__ import annotations

import dataclasses
import json
import os
import stat
from pathlib import Path

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from edge_agent import keyfile
from edge_agent.files import TooLarge, read_at_most, replace_wiped, unlink_wiped
from edge_agent.keyfile import PUBLIC_TAG, SECRET_TAG, KeyFileError, b64, key_bytes, key_id

__all__ = ["PUBLIC_TAG", "SECRET_TAG", "KeyFileError", "OperatorKey", "PublicKey", "TrustStore", "key_id"]

KEY_FILE_MAX = 4096  # bytes: a key file is one short line
MAX_TRUSTED = 64  # keys in a trust store: more is a mistake, and each costs a file read


@dataclasses.dataclass(frozen=True)
class PublicKey:
    raw: bytes
    comment: str = ""

    @property
    def id(self) -> str:
        return key_id(self.raw)

    def line(self) -> bytes:
        return f"{PUBLIC_TAG} {b64(self.raw)}{' ' + self.comment if self.comment else ''}\n".encode()


def parse_public(data: bytes, where: str) -> PublicKey:
    """The public key of a ``.pub`` file's bytes; KeyFileError naming ``where`` otherwise."""
    raw, comment, _ = keyfile.parse_public(data, where)
    return PublicKey(raw, comment)


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
        return cls(key_bytes(fields[1], str(path)))

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message).signature


REVOKED = "revoked.json"  # in the node's state_dir/fleet, beside the counters
_REVOKED_MAX = 64 * 1024


def read_revoked(path: str | os.PathLike) -> list[str]:
    """The key ids a node has revoked (``{"revoked": [ID, ...]}``); none when there is no file."""
    try:
        data = read_at_most(path, _REVOKED_MAX)
    except FileNotFoundError:
        return []
    except (OSError, TooLarge) as exc:
        raise KeyFileError(f"{path}: cannot read the revoked keys: {exc}") from None
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):
        doc = None
    ids = doc.get("revoked") if isinstance(doc, dict) else None
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise KeyFileError(f'{path}: not a list of revoked keys ({{"revoked": [ID, ...]}})')
    return ids


def _write_new(path: Path, data: bytes, mode: int, made: list[Path]) -> None:
    """Create ``path`` (never over an existing file or through a link), ``mode`` whatever the
    umask; appended to ``made`` once it exists, so a failure after can remove it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    made.append(path)
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
    try:
        out.mkdir(mode=0o700, parents=True, exist_ok=True)
        mode = out.stat().st_mode
    except OSError as exc:
        raise KeyFileError(f"--out {out}: cannot make the directory: {exc.strerror or exc}") from None
    if mode & 0o022:  # others could replace the public key, or remove the private one
        raise KeyFileError(
            f"--out {out}: writable by others (mode {stat.S_IMODE(mode):04o}): give the keys a "
            f"directory of your own, or chmod go-w {out}"
        )
    secret, public = out / f"{name}.key", out / f"{name}.pub"
    for p in (secret, public):
        if os.path.lexists(p):
            raise KeyFileError(f"{p}: exists; a key is never replaced (choose another --name or --out)")
    seed = os.urandom(32)
    key = OperatorKey(seed)
    pub = dataclasses.replace(key.public, comment=comment or name)
    made: list[Path] = []
    try:
        for path, data, perm in (
            (secret, f"{SECRET_TAG} {b64(seed)}\n".encode(), 0o600),
            (public, pub.line(), 0o644),
        ):
            _write_new(path, data, perm, made)
        dfd = os.open(out, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError as exc:  # a full disk, say: no half a key pair, no bytes of the secret left
        for path in made:
            unlink_wiped(path)
        raise KeyFileError(f"--out {out}: cannot write the key pair: {exc.strerror or exc}") from None
    return secret, public, pub.id


class TrustStore:
    """The public keys a node accepts signatures from, by key id."""

    def __init__(self, keys: list[PublicKey], where: str = "") -> None:
        self.where = where
        self._keys = {k.id: VerifyKey(k.raw) for k in keys}

    @classmethod
    def load(cls, directory: str | os.PathLike, revoked: str | os.PathLike | None = None) -> TrustStore:
        """Every ``*.pub`` file in ``directory`` but the ids the node's ``revoked`` file lists;
        an unreadable or damaged one is an error (a trust store is written once, by the
        first-boot import: damage is worth a visit)."""
        d = Path(directory)
        try:
            names = sorted(p.name for p in d.iterdir() if p.name.endswith(".pub"))
        except OSError as exc:
            raise KeyFileError(f"trust store {d}: cannot read: {exc.strerror or exc}") from None
        if len(names) > MAX_TRUSTED:
            raise KeyFileError(f"trust store {d}: {len(names)} keys, more than {MAX_TRUSTED}")
        gone = set(read_revoked(revoked)) if revoked is not None else set()
        return cls([k for k in (read_public(d / n) for n in names) if k.id not in gone], str(d))

    @property
    def ids(self) -> list[str]:
        return sorted(self._keys)

    def knows(self, kid: str) -> bool:
        return kid in self._keys

    def revoke(self, kid: str, revoked: str | os.PathLike) -> None:
        """Trust ``kid`` no more, from now and after every restart (its id added to the node's
        ``revoked`` file first: persist, then act). Never the last key: a node that trusted
        none could never be reached again."""
        if kid not in self._keys:
            raise KeyFileError(f"key {kid[:64]!r} is not in the trust store")
        if len(self._keys) == 1:
            raise KeyFileError(f"key {kid} is the last the node trusts: it is never revoked")
        ids = sorted({*read_revoked(revoked), kid})
        Path(revoked).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        replace_wiped(revoked, json.dumps({"revoked": ids}).encode(), 0o600)
        del self._keys[kid]

    def verifies(self, kid: str, message: bytes, signature: bytes) -> bool:
        """Whether ``signature`` is the key ``kid``'s over ``message`` (libsodium's check, which
        refuses non-canonical signatures and small-order keys)."""
        try:
            self._keys[kid].verify(message, signature)
        except (BadSignatureError, ValueError):
            return False
        return True
