"""Partition tables built byte by byte, crafted as an attacker or a damaged card would:
every field of a GPT is bounds-checked before it is used, so `image inspect` and
`provision` say what is wrong instead of raising, allocating gigabytes or looping."""

from __future__ import annotations

import struct
import uuid
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_agent.errors import ProvisionError
from edge_agent.field import sdcard

BASIC_DATA = uuid.UUID("ebd0a0a2-b9e5-4433-87c0-68b6b72699c7").bytes_le


def gpt_image(
    *,
    header_size: int = 92,
    entries_lba: int = 2,
    count: int = 128,
    entry_size: int = 128,
    parts: tuple[tuple[int, int], ...] = ((2048, 4095),),
    disk_sectors: int = 8192,
    good_crcs: bool = True,
) -> bytes:
    """A disk of ``disk_sectors`` sectors: a protective MBR, a GPT header at LBA 1 with its
    fields as given (checksums made right unless told), the entries at ``entries_lba``."""
    disk = bytearray(disk_sectors * 512)
    struct.pack_into("<B3xB3xII", disk, 446, 0, 0xEE, 1, disk_sectors - 1)
    disk[510:512] = b"\x55\xaa"
    table = bytearray(min(count * entry_size, 1 << 20))
    for i, (first, last) in enumerate(parts):
        if (i + 1) * entry_size <= len(table) and entry_size >= 56:
            table[i * entry_size : i * entry_size + 16] = BASIC_DATA
            struct.pack_into("<QQ", table, i * entry_size + 32, first, last)
    header = bytearray(512)
    header[:8] = b"EFI PART"
    struct.pack_into("<II", header, 8, 0x00010000, header_size)
    entries_crc = zlib.crc32(table) if good_crcs else 0
    struct.pack_into("<QIII", header, 72, entries_lba, count, entry_size, entries_crc)
    size = min(max(header_size, 92), 512)
    struct.pack_into("<I", header, 16, zlib.crc32(bytes(header[:16]) + bytes(4) + bytes(header[20:size])))
    disk[512:1024] = header
    at = entries_lba * 512
    if 2 * 512 <= at < len(disk):  # never over the MBR and the header
        disk[at : at + len(table)] = table[: max(0, len(disk) - at)]
    return bytes(disk)


def partitions_of(tmp_path, image: bytes):
    p = tmp_path / "disk.img"
    p.write_bytes(image)
    return sdcard.partitions(str(p))


def test_a_well_formed_table_is_read(tmp_path):
    scheme, parts = partitions_of(tmp_path, gpt_image())
    assert scheme == "gpt" and [(p.number, p.offset, p.size) for p in parts] == [(1, 2048 * 512, 2048 * 512)]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"entry_size": 0}, "entry size 0"),
        ({"entry_size": 16}, "entry size 16"),
        ({"entry_size": 200}, "entry size 200"),
        ({"count": 2**32 - 1}, "4294967295 partition entries"),
        ({"count": 1024, "entry_size": 4096}, "outside the disk"),  # a 4 MiB table on a 4 MiB disk
        ({"entries_lba": 0}, "outside the disk"),
        ({"entries_lba": 2**63}, "outside the disk"),
        ({"header_size": 8}, "header size 8"),
        ({"header_size": 2**32 - 1}, "header size"),
        ({"parts": ((4000, 100),)}, "spans LBA 4000..100"),
        ({"parts": ((2048, 2**40),)}, "not on the disk"),
        ({"good_crcs": False}, "entries checksum"),
    ],
)
def test_a_crafted_table_is_refused_saying_what_is_wrong(tmp_path, fields, message):
    with pytest.raises(ProvisionError, match=message):
        partitions_of(tmp_path, gpt_image(**fields))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    header_size=st.one_of(st.integers(0, 1024), st.just(2**32 - 1)),
    entries_lba=st.one_of(st.integers(0, 40), st.integers(0, 2**64 - 1)),
    count=st.one_of(st.integers(0, 300), st.integers(0, 2**32 - 1)),
    entry_size=st.one_of(st.sampled_from([0, 8, 16, 127, 128, 256, 4096]), st.integers(0, 2**32 - 1)),
    parts=st.lists(st.tuples(st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1)), max_size=3),
)
def test_any_table_is_read_or_refused_with_a_provision_error(
    tmp_path, header_size, entries_lba, count, entry_size, parts
):
    image = gpt_image(
        header_size=header_size,
        entries_lba=entries_lba,
        count=count,
        entry_size=entry_size,
        parts=tuple(parts),
        disk_sectors=64,
    )
    try:
        _, found = partitions_of(tmp_path, image)
    except ProvisionError as exc:
        assert str(tmp_path) in str(exc)
    else:
        assert all(0 < p.size and p.offset + p.size <= len(image) for p in found)
