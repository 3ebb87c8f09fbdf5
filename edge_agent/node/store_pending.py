"""The queue while a full disk keeps it from opening at a start.

A restart while the disk is full (SQLite cannot make the WAL or its index) is not damage:
the file is left as it is, and the agent samples on without it, as it does when the disk
fills while running. Each cycle's batches are counted as unstored, in memory until the
queue opens; the agent tries to open it again every RETRY seconds and, once it opens,
hands it to the sampler (Sampler.adopt), which carries the counts and the drivers' saved
totals over. Nothing is sent meanwhile: the uplink starts with the queue.
"""

from __future__ import annotations

from collections.abc import Sequence

from edge_agent.errors import DiskFullError
from edge_agent.node.store import BatchStore
from edge_agent.node.store_check import Background
from edge_agent.node.store_file import Recovery, WalLoss

RETRY = 5.0  # s between attempts to open the queue


class UnopenedStore:
    """What the sampler and the agent use of a BatchStore, for a queue not open yet: every
    write is a full disk, every read is empty. ``open()`` tries the real one."""

    recovery: Recovery | None = None
    wal_loss: WalLoss | None = None
    background: Background | None = None
    commits = 0
    epoch = 0  # no batch sealed through it is stored, so none carries it anywhere

    def __init__(self, path: str, error: DiskFullError, *, max_size: int | None, policy: str) -> None:
        self.path = path
        self.error = error
        self.max_size = max_size
        self.policy = policy
        self.attempts = 1
        self.unstored: dict[str, int] = {}  # batches counted while closed, for the queue's losses

    def open(self) -> BatchStore | None:
        """The queue, if it opens now (None: still full; the error kept for the next seal)."""
        self.attempts += 1
        try:
            return BatchStore(self.path, max_size=self.max_size, policy=self.policy, recover=True)
        except DiskFullError as exc:
            self.error = exc
            return None

    def seal_many(self, batches: Sequence[object], *args: object, **kwargs: object) -> list[tuple[int, int]]:
        raise self.error

    def save_chain_states(self, *args: object) -> None:
        raise self.error

    def count_unstored(self, stream: str, n: int = 1) -> bool:
        self.unstored[stream] = self.unstored.get(stream, 0) + n
        return True

    def chain_states(self, *args: object) -> dict[tuple[str, str], tuple[str, str]]:
        return {}

    def driver_states(self) -> dict[str, str]:
        return {}

    def expire(self, *args: object, **kwargs: object) -> dict[str, int]:
        return {}

    def restamp_unsynced(self, *args: object, **kwargs: object) -> int:
        return 0

    def take_deletes(self, wait: float | None) -> None:
        pass  # nothing is delivered, so nothing is acknowledged

    def close(self) -> None:
        pass
