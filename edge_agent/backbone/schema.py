"""The database's schema version, and the migrations that bring it to this code's.

``schema_version`` holds one row per step applied (backbone/migrations.py). ``migrate()``
applies what is missing, each step in its own transaction together with its row, under an
advisory lock, so two workers started with ``--migrate`` at once apply each step once and
a step that fails leaves nothing behind. Applying again is a no-op. A database whose
version is newer than this code's is refused (``SchemaError``) and left as it is: older
workers must not write into tables they do not know; ``check()`` refuses an older one too,
naming ``--migrate``.
"""

from __future__ import annotations

import logging
from typing import Any

from edge_agent.backbone.migrations import MIGRATIONS
from edge_agent.errors import EdgeAgentError

log = logging.getLogger("edge_agent.backbone")

LATEST = MIGRATIONS[-1][0]
_LOCK = 0x6564_6765_0001  # pg_advisory_xact_lock key of migrations ("edge" 1)

_VERSION_TABLE = """
CREATE TABLE IF NOT EXISTS schema_version (
    version integer PRIMARY KEY,
    name text NOT NULL,
    applied timestamptz NOT NULL DEFAULT now()
)
"""


class SchemaError(EdgeAgentError, RuntimeError):
    """The database's schema is not the one this code writes: newer, older, or missing."""


def current_version(conn: Any) -> int:
    """The highest step applied; 0 for a database without edge-agent's tables."""
    with conn.transaction():
        if conn.execute("SELECT to_regclass('schema_version')").fetchone()[0] is None:
            return 0
        return int(conn.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()[0])


def _refuse_newer(version: int) -> None:
    if version > LATEST:
        raise SchemaError(
            f"the database's schema is version {version}, newer than this edge-agent's ({LATEST}): "
            "upgrade the ingest workers; the database was not changed"
        )


def migrate(conn: Any) -> list[int]:
    """Apply the missing steps, each in one transaction; the numbers applied (none: up to date).

    ``conn`` is a psycopg connection in autocommit mode (each ``transaction()`` a real one).
    """
    applied = []
    for number, name, sql in MIGRATIONS:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK,))
            conn.execute(_VERSION_TABLE)
            version = int(conn.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()[0])
            _refuse_newer(version)
            if number <= version:
                continue
            conn.execute(sql)
            conn.execute("INSERT INTO schema_version (version, name) VALUES (%s, %s)", (number, name))
        log.info("event=schema_migrated version=%d name=%r", number, name)
        applied.append(number)
    return applied


def check(conn: Any) -> int:
    """The database's version when it is this code's; SchemaError otherwise."""
    version = current_version(conn)
    _refuse_newer(version)
    if version < LATEST:
        what = "has no edge-agent tables" if version == 0 else f"is at schema version {version}"
        raise SchemaError(
            f"the database {what}; this edge-agent needs version {LATEST}: "
            "run `edge-agent ingest --migrate` (or apply the migrations) first"
        )
    return version


def ensure_partitions(conn: Any, months_back: int = 1, months_ahead: int = 3) -> int:
    """The months of samples around now made as partitions; how many were new."""
    with conn.transaction():
        made = conn.execute("SELECT ensure_sample_partitions(%s, %s)", (months_back, months_ahead)).fetchone()
    return int(made[0])
