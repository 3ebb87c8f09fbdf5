"""Log lines: key=value, one per event, repeated warnings rate-limited with a count."""

from __future__ import annotations

import logging

from edge_agent.node.logfmt import KeyValueFormatter, RepeatLimiter


class Clock:
    t = 0.0

    def __call__(self):
        return self.t


def run(limiter, n, msg="event=read_failed sensor=%s error=%r", arg="air", level=logging.WARNING):
    out = []
    for _ in range(n):
        rec = logging.LogRecord("edge_agent.sampler", level, __file__, 1, msg, (arg, "EIO"), None)
        if limiter.filter(rec):
            out.append(rec.getMessage())
    return out


def test_repeated_warnings_are_limited_and_counted():
    clock = Clock()
    lim = RepeatLimiter(burst=3, window=60.0, clock=clock)
    assert len(run(lim, 100)) == 3
    assert len(run(lim, 5, arg="gas")) == 3  # another subject has its own budget
    assert lim.suppressed_total == 97 + 2
    clock.t = 61.0
    (first, *rest) = run(lim, 2)
    assert first.endswith("suppressed=97") and rest == ["event=read_failed sensor=air error='EIO'"]


def test_info_lines_are_never_limited():
    lim = RepeatLimiter(burst=1, window=60.0, clock=Clock())
    assert len(run(lim, 50, level=logging.INFO)) == 50


def test_formatter_is_one_line_key_value():
    rec = logging.LogRecord("edge_agent.uplink", logging.ERROR, __file__, 1, "event=x a=%d", (1,), None)
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        import sys

        rec.exc_info = sys.exc_info()
    line = KeyValueFormatter(with_time=False).format(rec)
    assert "\n" not in line
    assert line.startswith("level=error logger=edge_agent.uplink event=x a=1 exc=")
