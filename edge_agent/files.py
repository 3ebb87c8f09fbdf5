"""Reading files that people (or a card from the field) hand us, with a bound: a path may name
a device that never ends (``/dev/zero``) or a file far larger than what it should hold, and
reading it whole would take the machine's memory before any check ran."""

from __future__ import annotations

import os

CONFIG_MAX = 1 << 20  # bytes: a node configuration, a credential, a file of the boot partition


class TooLarge(ValueError):
    """The file holds more than the bound the caller gave."""


def read_at_most(path: str | os.PathLike, limit: int) -> bytes:
    """The file's bytes; TooLarge past ``limit`` (only ``limit + 1`` bytes are read), OSError
    as open() and read() raise it."""
    with open(path, "rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise TooLarge(f"more than {limit:,} bytes")
    return data
