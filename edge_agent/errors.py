"""Exceptions of edge-agent. Each also inherits the matching builtin, so callers can catch either."""

import sqlite3


class EdgeAgentError(Exception):
    """Base of every error edge-agent raises on purpose."""


class ConfigError(EdgeAgentError, ValueError):
    """A configuration file (or flag) does not validate: says file, key path and what was expected."""


class WireFormatError(EdgeAgentError, ValueError):
    """A payload does not decode: bad magic, unknown version, truncated, or checksum mismatch."""


class StoreError(EdgeAgentError, OSError):
    """The on-disk queue could not be opened or written."""


class DiskFullError(StoreError, sqlite3.OperationalError):
    """A transaction failed for want of space (the disk, or the file's page limit).

    Also a sqlite3.OperationalError, as SQLite raised it. Nothing of the transaction
    was kept; storing resumes once there is space."""


class ProvisionError(EdgeAgentError, ValueError):
    """An image, a configuration or a credentials file cannot be provisioned: says what and where."""
