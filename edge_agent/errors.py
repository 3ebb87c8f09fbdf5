"""Exceptions of edge-agent. Each also inherits the matching builtin, so callers can catch either."""


class EdgeAgentError(Exception):
    """Base of every error edge-agent raises on purpose."""


class ConfigError(EdgeAgentError, ValueError):
    """A configuration file (or flag) does not validate: says file, key path and what was expected."""


class WireFormatError(EdgeAgentError, ValueError):
    """A payload does not decode: bad magic, unknown version, truncated, or checksum mismatch."""


class StoreError(EdgeAgentError, OSError):
    """The on-disk queue could not be opened or written."""
