"""Durations ("10s", "250ms") and sizes ("512MiB", "10 MB") of edge_agent/durations.py, and what
they refuse."""

from __future__ import annotations

import pytest

from edge_agent.durations import parse_duration, parse_size


@pytest.mark.parametrize(
    "text, seconds",
    [("10s", 10), ("250ms", 0.25), ("5min", 300), ("2h", 7200), ("1d", 86400), (3, 3), ("1.5s", 1.5)],
)
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "s", "10 parsecs", "-1s", True, "1e3s"])
def test_bad_durations(text):
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize(
    "text, size",
    [
        ("512MiB", 512 * 2**20),
        ("10 MB", 10**7),
        ("4096", 4096),
        (100, 100),
        ("1GiB", 2**30),
        ("1.5KiB", 1536),
    ],
)
def test_sizes(text, size):
    assert parse_size(text) == size


def test_numbers_of_hundreds_of_digits_and_infinities_are_refused_shortly():
    from edge_agent.durations import parse_duration, parse_size

    huge = "9" * 400
    for bad in (huge, int(huge), float("inf"), "1e400", "3651d"):
        with pytest.raises(ValueError) as caught:
            parse_duration(bad)
        assert len(str(caught.value)) < 120
    for bad in (huge, int(huge), f"{huge}GiB", 1 << 53):
        with pytest.raises(ValueError, match="at most 8PiB") as caught:
            parse_size(bad)
        assert len(str(caught.value)) < 120
    assert parse_duration("3650d") == 3650 * 86400 and parse_size((1 << 53) - 1) == (1 << 53) - 1
