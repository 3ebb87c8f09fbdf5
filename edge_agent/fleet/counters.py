"""The node's record of signed objects accepted: per kind, the highest counter and the SHA-256 of
that object, in one small file of the state directory (``fleet/counters.json``, 0600).

A counter only goes up. The file is replaced atomically (written beside, fsynced, renamed over,
the directory fsynced), so a power cut or a kill at any instant leaves the old record or the new
one, never a torn one and never a lower counter.

The order is persist, then act: ``record`` returns only once the new counter is on disk, and a
caller acts on the object only after that. A kill before the rename leaves nothing done and
nothing recorded: the same object is accepted when it comes again, and acted on once. A kill
after the rename and before the act leaves the object recorded and not acted on: it is never
acted on (at most once). The other order, act then persist, would let a kill in between
replay a command or re-apply a configuration after the restart. What a lost object costs is
a new one from the operator with a higher counter; an update's installer keeps its own
journal from the moment its manifest is recorded, so it resumes rather than asks again.

A record that cannot be read (damaged, not ours) refuses every object (``counter_state``):
failing closed costs a visit; failing open would accept replays of anything ever signed.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
from collections.abc import Iterator
from pathlib import Path

from edge_agent.files import TooLarge, read_at_most
from edge_agent.fleet import canonical
from edge_agent.fleet.refusal import Refused

KINDS = ("update", "config", "command")
_STATE_MAX = 4096  # bytes: three kinds of a counter and a hash
_DIGEST = re.compile(r"^[0-9a-f]{64}$")


class CounterStore:
    """The counters file at ``path`` (its directory is made 0700 when missing)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def _read(self) -> dict[str, tuple[int, str]]:
        try:
            data = read_at_most(self.path, _STATE_MAX)
        except FileNotFoundError:
            return {}
        except (OSError, TooLarge) as exc:
            raise Refused("counter_state", f"{self.path}: cannot read: {exc}") from None
        try:
            doc = canonical.loads(data, max_bytes=_STATE_MAX, max_depth=3)
            out = {}
            for kind, entry in doc.items():
                counter, digest = entry["counter"], entry["sha256"]
                if kind not in KINDS or not isinstance(counter, int) or counter < 0:
                    raise ValueError(kind)
                if isinstance(counter, bool) or not (isinstance(digest, str) and _DIGEST.match(digest)):
                    raise ValueError(kind)
                out[kind] = (counter, digest)
        except (canonical.NotCanonical, AttributeError, KeyError, TypeError, ValueError) as exc:
            raise Refused("counter_state", f"{self.path}: damaged ({exc}); nothing is accepted") from None
        return out

    def last(self, kind: str) -> tuple[int, str]:
        """(counter, SHA-256 hex) of the last object of ``kind`` accepted; (0, "") before any."""
        return self._read().get(kind, (0, ""))

    @staticmethod
    def _compare(kind: str, counter: int, digest: str, last: tuple[int, str]) -> None:
        if counter <= last[0]:
            if counter == last[0] and digest == last[1]:
                raise Refused("replayed", f"{kind} {counter} was accepted already")
            raise Refused("older", f"{kind} counter {counter} is not above {last[0]}, the last accepted")

    def check(self, kind: str, counter: int, digest: str) -> None:
        """Refused (``replayed``, ``older``) unless ``counter`` is above the last of its kind."""
        self._compare(kind, counter, digest, self.last(kind))

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.path.with_name(self.path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def record(self, kind: str, counter: int, digest: str) -> None:
        """Raise ``kind``'s counter to ``counter`` on disk, checked again under the lock (another
        process may have accepted one meanwhile). Returns once it is durable."""
        if kind not in KINDS:
            raise ValueError(f"unknown kind {kind!r}")
        with self._locked():
            state = self._read()
            self._compare(kind, counter, digest, state.get(kind, (0, "")))
            state[kind] = (counter, digest)
            data = canonical.dumps({k: {"counter": c, "sha256": d} for k, (c, d) in state.items()})
            tmp = self.path.with_name(f".{self.path.name}.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
            try:
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
            dfd = os.open(self.path.parent, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
