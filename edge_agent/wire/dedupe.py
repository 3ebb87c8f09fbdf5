"""What a backbone does with what arrives: deduplicate by (node, stream, epoch, seq), find
the gaps and the node's store losses (docs/backbone.md, "Duplicates, gaps and store losses").

Delivery is at least once, so a batch may arrive twice (identical): the key tells. A node
numbers a stream's batches from its store, so the numbers continue across its starts (each
start draws a new epoch) as long as the store survives; when the store is lost (a card
swapped, a damaged file moved aside, the WAL deleted after a crash) they restart near 0
under a new epoch. The tracker keeps, per (node, stream) and epoch, the sequence numbers
seen as ranges (so a long run costs a range per hole, not an int per batch) and the
earliest batch time seen. Its report is a function of the set of batches seen, never of
the order they came in: a node's backlog from an old epoch that arrives after live
batches of the new one changes nothing once it is all there.

- Epochs are ordered by the earliest t0 seen in each (the node's clock), taken from
  batches with a synchronised clock when the epoch has any (ties: by lowest seq, then
  epoch). Sequence numbers cannot order them: after a store loss they start again.
- A store loss lies between two epochs next in that order when the later one's lowest seq
  is not above the earlier one's highest: the numbers went back, so the store that gave
  them is not the one that gave the others. Both are kept; nothing is a duplicate.
- A store lineage is a run of epochs with no store loss between them: one sequence. A gap
  is a hole in it, reported under the epoch it follows (a hole between two epochs belongs
  to the earlier: batches sealed under it and not yet seen). What came before the first
  seq seen of a lineage, and after its last, is not known, so it is no gap.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, field
from typing import Any

from edge_agent.wire.format import FLAG_CLOCK_UNSYNCED
from edge_agent.wire.model import Batch


class SeqRanges:
    """A set of integers held as sorted, disjoint, non-adjacent ranges [lo, hi]: a run of
    consecutive numbers costs one range however long it is."""

    __slots__ = ("count", "his", "los")

    def __init__(self) -> None:
        self.los: list[int] = []
        self.his: list[int] = []
        self.count = 0

    def add(self, n: int) -> bool:
        """Add ``n``; False when it was there already."""
        los, his = self.los, self.his
        if his and n == his[-1] + 1:  # the common case: the next one
            his[-1] = n
            self.count += 1
            return True
        i = bisect_right(los, n) - 1  # the range starting at or before n
        if i >= 0 and n <= his[i]:
            return False
        joins_left = i >= 0 and his[i] == n - 1
        joins_right = i + 1 < len(los) and los[i + 1] == n + 1
        if joins_left and joins_right:
            his[i] = his[i + 1]
            del los[i + 1], his[i + 1]
        elif joins_left:
            his[i] = n
        elif joins_right:
            los[i + 1] = n
        else:
            los.insert(i + 1, n)
            his.insert(i + 1, n)
        self.count += 1
        return True

    def __contains__(self, n: object) -> bool:
        if not isinstance(n, int):
            return False
        i = bisect_right(self.los, n) - 1
        return i >= 0 and n <= self.his[i]

    def __len__(self) -> int:
        return self.count

    def ranges(self) -> list[tuple[int, int]]:
        return list(zip(self.los, self.his))

    def holes(self) -> list[tuple[int, int]]:
        """The missing ranges (inclusive) between the lowest and the highest."""
        return [(hi + 1, lo - 1) for hi, lo in zip(self.his, self.los[1:])]


@dataclass
class EpochSeqs:
    """One epoch of a stream: the seqs seen, and the earliest batch time seen in it
    (Unix ms) from a synchronised clock and from any."""

    seqs: SeqRanges = field(default_factory=SeqRanges)
    t0_synced: int | None = None
    t0_any: int | None = None

    def add(self, seq: int, t0_ms: int, clock_unsynced: bool) -> bool:
        if self.t0_any is None or t0_ms < self.t0_any:
            self.t0_any = t0_ms
        if not clock_unsynced and (self.t0_synced is None or t0_ms < self.t0_synced):
            self.t0_synced = t0_ms
        return self.seqs.add(seq)

    @property
    def t0_ms(self) -> int:
        """The time the epoch is ordered by: the synchronised clock's where there is one."""
        t = self.t0_synced if self.t0_synced is not None else self.t0_any
        assert t is not None  # an epoch exists once a batch is added
        return t

    @property
    def first(self) -> int:
        return self.seqs.los[0]

    @property
    def last(self) -> int:
        return self.seqs.his[-1]


@dataclass
class StreamSeqs:
    """One (node, stream): its epochs and the duplicates that arrived."""

    epochs: dict[int, EpochSeqs] = field(default_factory=dict)
    duplicates: int = 0

    def ordered(self) -> list[tuple[int, EpochSeqs]]:
        """Epochs in the order the node ran them (the module's rule)."""
        return sorted(self.epochs.items(), key=lambda item: (item[1].t0_ms, item[1].first, item[0]))


class SeqTracker:
    """Per (node, stream): the batches seen by their key, the duplicates, the gaps per
    epoch and the store losses. ``add`` a batch as it arrives; ``report`` at any time."""

    def __init__(self) -> None:
        self.streams: dict[tuple[str, str], StreamSeqs] = {}

    def add(self, batch: Batch) -> bool:
        """Record one decoded batch; False when its key was seen before (a duplicate)."""
        return self.add_key(
            batch.node,
            batch.stream,
            batch.epoch,
            batch.seq,
            batch.t0_ms,
            clock_unsynced=bool(batch.flags & FLAG_CLOCK_UNSYNCED),
        )

    def add_key(
        self, node: str, stream: str, epoch: int, seq: int, t0_ms: int, *, clock_unsynced: bool = False
    ) -> bool:
        """Record a batch by its key and its time base; False when it is a duplicate."""
        st = self.streams.setdefault((node, stream), StreamSeqs())
        ep = st.epochs.get(epoch)
        if ep is None:
            ep = st.epochs[epoch] = EpochSeqs()
        if ep.add(seq, t0_ms, clock_unsynced):
            return True
        st.duplicates += 1
        return False

    def seen(self, key: tuple[str, str, int, int]) -> bool:
        """Whether a batch with this key (Batch.key) arrived."""
        node, stream, epoch, seq = key
        st = self.streams.get((node, stream))
        ep = st.epochs.get(epoch) if st else None
        return ep is not None and seq in ep.seqs

    def report(self) -> list[dict[str, Any]]:
        """Per (node, stream), sorted: received, duplicates, missing; its epochs in order,
        each with first, last, received, missing, gaps (inclusive [a, b] lists), t0_ms
        (what orders it) and clock_unsynced (no batch of it had a synchronised clock: its
        place in the order is a guess); and its store losses, each with epoch_before,
        epoch_after, last_seq_before, first_seq_after and clock_unsynced (either epoch's)."""
        return [_stream_report(node, stream, st) for (node, stream), st in sorted(self.streams.items())]


def _stream_report(node: str, stream: str, st: StreamSeqs) -> dict[str, Any]:
    ordered = st.ordered()
    epochs: list[dict[str, Any]] = []
    losses: list[dict[str, Any]] = []
    for i, (epoch, ep) in enumerate(ordered):
        gaps = ep.seqs.holes()
        if i + 1 < len(ordered):
            nxt_epoch, nxt = ordered[i + 1]
            unsynced = ep.t0_synced is None or nxt.t0_synced is None
            if nxt.first <= ep.last:
                losses.append(
                    {
                        "epoch_before": epoch,
                        "epoch_after": nxt_epoch,
                        "last_seq_before": ep.last,
                        "first_seq_after": nxt.first,
                        "clock_unsynced": unsynced,
                    }
                )
            elif nxt.first > ep.last + 1:  # same store: the hole up to the next epoch is ours
                gaps.append((ep.last + 1, nxt.first - 1))
        epochs.append(
            {
                "epoch": epoch,
                "first": ep.first,
                "last": ep.last,
                "received": len(ep.seqs),
                "missing": sum(b - a + 1 for a, b in gaps),
                "gaps": [[a, b] for a, b in gaps],
                "t0_ms": ep.t0_ms,
                "clock_unsynced": ep.t0_synced is None,
            }
        )
    return {
        "node": node,
        "stream": stream,
        "received": sum(e["received"] for e in epochs),
        "duplicates": st.duplicates,
        "missing": sum(e["missing"] for e in epochs),
        "epochs": epochs,
        "store_losses": losses,
    }
