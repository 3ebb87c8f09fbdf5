"""Journald-friendly logging: one event per line on stderr, key=value fields.

Warnings and errors that repeat (a failing sensor read every second, a broker
that refuses us) are rate-limited per event and subject: the first few in a
window pass, the rest are counted, and the next line that passes says how many
were suppressed. So a failing part cannot fill the SD card with logs.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable


class KeyValueFormatter(logging.Formatter):
    """``<time> level=<level> logger=<name> <message>``; exceptions on the same line."""

    def __init__(self, with_time: bool = True) -> None:
        super().__init__()
        self.with_time = with_time

    def format(self, record: logging.LogRecord) -> str:
        head = f"{self.formatTime(record, '%Y-%m-%dT%H:%M:%S')} " if self.with_time else ""
        line = f"{head}level={record.levelname.lower()} logger={record.name} {record.getMessage()}"
        if record.exc_info:
            line += " exc=" + repr(self.formatException(record.exc_info))
        return line


class RepeatLimiter(logging.Filter):
    """Pass at most ``burst`` records per (logger, message template, first argument) per
    ``window`` seconds at WARNING and above; count the rest."""

    def __init__(
        self, burst: int = 5, window: float = 300.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__()
        self.burst, self.window, self.clock = burst, window, clock
        self._state: dict[tuple, list] = {}  # key -> [window start, passed, suppressed]
        self.suppressed_total = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        args = record.args if isinstance(record.args, tuple) else ()
        key = (record.name, record.msg, args[0] if args else None)
        now = self.clock()
        st = self._state.get(key)
        if st is None or now - st[0] >= self.window:
            suppressed = st[2] if st else 0
            self._state[key] = [now, 1, 0]
            if suppressed:
                record.msg = f"{record.msg} suppressed={suppressed}"
            return True
        if st[1] < self.burst:
            st[1] += 1
            return True
        st[2] += 1
        self.suppressed_total += 1
        return False


def setup_logging(level: str = "info") -> None:
    """One handler on stderr; no timestamp under journald, which stamps lines itself."""
    import os

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(KeyValueFormatter(with_time="JOURNAL_STREAM" not in os.environ))
    handler.addFilter(RepeatLimiter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
