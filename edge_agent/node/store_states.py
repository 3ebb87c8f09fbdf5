"""The saved states of the filter chains and of the drivers (an energy meter's total) in the
queue file: the part of BatchStore (a mixin on its connection) that the sampler restores
from at a start and keeps in its seals' transactions."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from contextlib import AbstractContextManager

DRIVER_STATE = "__driver__"  # chain_state rows with this channel hold a driver's own state


def save_states(
    db: sqlite3.Connection, states: Sequence[tuple[str, str, str, str]], boot_id: str | None, mono: float
) -> None:
    """Upsert chain_state rows. Updated in place, not replaced (a delete and an insert): the
    key's index is left alone, so a seal that keeps a total writes one page more, not two."""
    db.executemany(
        "INSERT INTO chain_state VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (stream, channel) DO UPDATE SET "
        "spec = excluded.spec, state = excluded.state, boot_id = excluded.boot_id, mono = excluded.mono",
        [(*row, boot_id, mono) for row in states],
    )


class SavedStates:
    """Chain and driver states, for BatchStore: its connection, and its transactions."""

    _db: sqlite3.Connection

    def _transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        raise NotImplementedError

    def save_chain_states(
        self, states: list[tuple[str, str, str, str]], boot_id: str | None, mono: float
    ) -> None:
        """Keep (stream, channel, spec JSON, state JSON) rows, replacing older ones, in one transaction."""
        with self._transaction() as db:
            save_states(db, states, boot_id, mono)

    def chain_states(
        self, boot_id: str | None, newer_than_mono: float
    ) -> dict[tuple[str, str], tuple[str, str]]:
        """Saved states of this boot younger than the given monotonic time: (stream, channel) -> (spec, state)."""
        if boot_id is None:
            return {}
        rows = self._db.execute(
            "SELECT stream, channel, spec, state FROM chain_state WHERE boot_id = ? AND mono >= ?",
            (boot_id, newer_than_mono),
        ).fetchall()
        return {(r[0], r[1]): (r[2], r[3]) for r in rows}

    def driver_states(self) -> dict[str, str]:
        """Saved driver states (JSON) by stream, whatever boot or age: totals such as an energy
        meter's must survive reboots too."""
        rows = self._db.execute(
            "SELECT stream, state FROM chain_state WHERE channel = ?", (DRIVER_STATE,)
        ).fetchall()
        return dict(rows)
