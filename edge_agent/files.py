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


def _zero_in_place(fd: int) -> None:
    """Overwrite the whole file with zeros, where its bytes are, and fsync."""
    left = os.fstat(fd).st_size
    zeros = bytes(min(left, 1 << 16))
    os.lseek(fd, 0, os.SEEK_SET)
    while left:
        left -= os.write(fd, zeros[: min(left, len(zeros))])
    os.fsync(fd)


def unlink_wiped(path: str | os.PathLike) -> None:
    """Remove a file whose bytes must not outlive it (a secret on the boot partition).

    On FAT, unlinking only marks the clusters free: the data stays readable in the raw
    partition. FAT writes a file in place (no copy-on-write), so zeros written over the
    file land on its clusters before they are freed. (What an SD card's flash translation
    layer keeps of the old pages is out of reach of any file system: a card is no safe.)"""
    fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW)
    try:
        _zero_in_place(fd)
    finally:
        os.close(fd)
    os.unlink(path)


def replace_wiped(path: str | os.PathLike, data: bytes, mode: int = 0o600) -> None:
    """Give ``path`` new contents, and leave none of the old ones in free space: the new
    file is written and fsynced beside it, the old one zeroed in place, then replaced."""
    tmp = f"{os.fspath(path)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        try:
            old = os.open(path, os.O_WRONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            pass
        else:
            try:
                _zero_in_place(old)
            finally:
                os.close(old)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def os_error_text(exc: OSError) -> str:
    """What an operating-system error says, with the file it names (for a person)."""
    name = getattr(exc, "filename", None)
    return f"{exc.strerror or exc}" + (f": {name}" if name else "")
