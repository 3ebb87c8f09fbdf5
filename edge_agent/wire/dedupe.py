"""What a backbone does with what arrives: deduplicate by (node, stream, seq), find the gaps.

Delivery is at least once, so a batch may arrive twice (identical); a sequence
number that never arrives is a batch not yet delivered, or lost (counted on the
node, see docs/operations.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class StreamSeqs:
    seen: set[int] = field(default_factory=set)
    duplicates: int = 0

    def gaps(self) -> list[tuple[int, int]]:
        """Missing sequence ranges (inclusive) between the lowest and highest seen."""
        if not self.seen:
            return []
        out, prev = [], None
        for s in sorted(self.seen):
            if prev is not None and s > prev + 1:
                out.append((prev + 1, s - 1))
            prev = s
        return out


class SeqTracker:
    """Per (node, stream): which sequence numbers arrived, and how often twice."""

    def __init__(self) -> None:
        self.streams: dict[tuple[str, str], StreamSeqs] = {}

    def add(self, node: str, stream: str, seq: int) -> bool:
        """Record one batch; False when it is a duplicate."""
        st = self.streams.setdefault((node, stream), StreamSeqs())
        if seq in st.seen:
            st.duplicates += 1
            return False
        st.seen.add(seq)
        return True

    def report(self) -> list[dict]:
        out = []
        for (node, stream), st in sorted(self.streams.items()):
            gaps = st.gaps()
            out.append(
                {
                    "node": node,
                    "stream": stream,
                    "received": len(st.seen),
                    "first": min(st.seen),
                    "last": max(st.seen),
                    "duplicates": st.duplicates,
                    "missing": sum(b - a + 1 for a, b in gaps),
                    "gaps": [list(g) for g in gaps],
                }
            )
        return out
