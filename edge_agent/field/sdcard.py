"""SD cards and their images: the partition table (MBR or GPT) and the FAT boot
partition, read and written without root and without loop devices.

The boot partition is found from the partition table here; its FAT file system is
read and written by mtools (Debian package ``mtools``) at that byte offset. A target
is either a whole disk (an image file or a block device: ``FatImage``) or a mounted
boot partition (any directory standing for one: ``BootDir``); both read, list and
write files by their path on the partition.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import stat
import struct
import subprocess
import tempfile
import uuid
import zlib
from pathlib import Path

from edge_agent.errors import ProvisionError

SECTOR = 512
_MBR_FAT_TYPES = {0x01, 0x04, 0x06, 0x0B, 0x0C, 0x0E, 0xEF}
_MBR_PROTECTIVE = 0xEE
_GPT_FAT_TYPES = {
    "ebd0a0a2-b9e5-4433-87c0-68b6b72699c7": "Microsoft basic data",
    "c12a7328-f81f-11d2-ba4b-00a0c93ec93b": "EFI system",
}


# --- partition tables -------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Partition:
    number: int  # 1-based, as the partition table numbers it
    offset: int  # bytes from the start of the image
    size: int  # bytes
    kind: str  # "mbr type 0x0c", "gpt Microsoft basic data", ...


def _read_at(f, offset: int, length: int) -> bytes:
    f.seek(offset)
    return f.read(length)


def _is_fat(boot_sector: bytes) -> bool:
    """A FAT12/16/32 boot sector: jump instruction, 0x55AA, and a sane BIOS parameter block."""
    if len(boot_sector) < SECTOR or boot_sector[510:512] != b"\x55\xaa":
        return False
    if boot_sector[0] not in (0xEB, 0xE9):
        return False
    bytes_per_sector = struct.unpack_from("<H", boot_sector, 11)[0]
    fats = boot_sector[16]
    return bytes_per_sector in (512, 1024, 2048, 4096) and fats in (1, 2)


def partitions(path: str) -> tuple[str, list[Partition]]:
    """The partition scheme ("mbr" or "gpt") of a disk image or device, and its partitions."""
    try:
        with open(path, "rb") as f:
            mbr = _read_at(f, 0, SECTOR)
            if len(mbr) < SECTOR or mbr[510:512] != b"\x55\xaa":
                raise ProvisionError(f"{path}: no partition table (no MBR signature in the first sector)")
            entries = [struct.unpack_from("<B3xB3xII", mbr, 446 + 16 * i) for i in range(4)]
            if any(e[1] == _MBR_PROTECTIVE for e in entries):
                return "gpt", _gpt_partitions(f, path)
            return "mbr", [
                Partition(i + 1, start * SECTOR, count * SECTOR, f"mbr type 0x{ptype:02x}")
                for i, (_, ptype, start, count) in enumerate(entries)
                if ptype and count
            ]
    except OSError as exc:
        raise ProvisionError(f"{path}: cannot read: {exc.strerror or exc}") from None


GPT_MAX_ENTRIES = 1024  # UEFI asks for room for at least 128; no tool writes more than a few hundred
GPT_MAX_ENTRY_SIZE = 4096  # 128 x 2^n bytes; 128 in every table in use


def _gpt_partitions(f, path: str) -> list[Partition]:
    """The partitions of a GPT, every field bounds-checked before it is used: a card from
    the field, or an image from anywhere, may hold any bytes."""
    header = _read_at(f, SECTOR, SECTOR)
    if len(header) < 92 or header[:8] != b"EFI PART":
        raise ProvisionError(f"{path}: protective MBR but no GPT header at LBA 1")
    header_size = struct.unpack_from("<I", header, 12)[0]
    if not 92 <= header_size <= SECTOR:
        raise ProvisionError(
            f"{path}: GPT header size {header_size} is outside 92..{SECTOR} (a damaged table)"
        )
    crc = struct.unpack_from("<I", header, 16)[0]
    full = bytearray(header[:header_size])
    full[16:20] = b"\0\0\0\0"
    if zlib.crc32(full) != crc:
        raise ProvisionError(f"{path}: GPT header checksum does not match (a damaged table)")
    entries_lba, count, entry_size, entries_crc = struct.unpack_from("<QIII", header, 72)
    if not (128 <= entry_size <= GPT_MAX_ENTRY_SIZE and entry_size % 128 == 0):
        raise ProvisionError(
            f"{path}: GPT entry size {entry_size} is not a multiple of 128 up to {GPT_MAX_ENTRY_SIZE} (a damaged table)"
        )
    if count > GPT_MAX_ENTRIES:
        raise ProvisionError(
            f"{path}: GPT claims {count} partition entries, more than {GPT_MAX_ENTRIES} (a damaged table)"
        )
    size = os.fstat(f.fileno()).st_size or _device_size(f)
    if entries_lba < 2 or (size and (entries_lba * SECTOR + count * entry_size > size)):
        raise ProvisionError(
            f"{path}: GPT partition entries at LBA {entries_lba} are outside the disk (a damaged table)"
        )
    table = _read_at(f, entries_lba * SECTOR, count * entry_size)
    if len(table) != count * entry_size or zlib.crc32(table) != entries_crc:
        raise ProvisionError(f"{path}: GPT partition entries checksum does not match (a damaged table)")
    out = []
    for i in range(count):
        e = table[i * entry_size : (i + 1) * entry_size]
        type_guid = str(uuid.UUID(bytes_le=bytes(e[:16])))
        if type_guid == "00000000-0000-0000-0000-000000000000":
            continue
        first, last = struct.unpack_from("<QQ", e, 32)
        if first > last or (size and last * SECTOR >= size):
            raise ProvisionError(
                f"{path}: GPT partition {i + 1} spans LBA {first}..{last}, which is not on the disk (a damaged table)"
            )
        out.append(
            Partition(
                i + 1,
                first * SECTOR,
                (last - first + 1) * SECTOR,
                f"gpt {_GPT_FAT_TYPES.get(type_guid, type_guid)}",
            )
        )
    return out


def _device_size(f) -> int:
    """A block device's size (fstat says 0 for one), or 0 when it cannot be told."""
    try:
        return f.seek(0, os.SEEK_END)
    except OSError:
        return 0


def boot_partition(path: str) -> Partition:
    """The first partition whose type and boot sector say FAT (the Raspberry Pi's boot partition)."""
    scheme, parts = partitions(path)
    with open(path, "rb") as f:
        for p in parts:
            typed_fat = (p.kind.startswith("mbr") and int(p.kind[-2:], 16) in _MBR_FAT_TYPES) or (
                p.kind.startswith("gpt") and p.kind[4:] in _GPT_FAT_TYPES.values()
            )
            if typed_fat and _is_fat(_read_at(f, p.offset, SECTOR)):
                return p
    found = ", ".join(f"{p.number}: {p.kind}" for p in parts) or "none"
    raise ProvisionError(
        f"{path}: no FAT boot partition in its {scheme.upper()} partition table (partitions: {found})"
    )


# --- the two kinds of target --------------------------------------------------------------------
class _Target:
    path: str

    def writable(self) -> bool:
        return os.access(self.path, os.W_OK)


class BootDir(_Target):
    """A mounted boot partition (or any directory standing for one)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.name = path

    def read(self, rel: str) -> bytes | None:
        try:
            return Path(self.path, rel).read_bytes()
        except FileNotFoundError:
            return None

    def names(self, rel_dir: str) -> set[str]:
        """The files in a directory of the partition (none when it does not exist)."""
        d = Path(self.path, rel_dir)
        return {p.name for p in d.iterdir() if p.is_file()} if d.is_dir() else set()

    def write_all(self, files: dict[str, bytes]) -> None:
        for rel, data in files.items():
            dest = Path(self.path, rel)
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_name(dest.name + ".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, dest)


class FatImage(_Target):
    """The FAT partition at ``offset`` of an image file or block device, through mtools.
    Files read are kept until the next write: each read is a process."""

    def __init__(self, path: str, partition: Partition) -> None:
        if shutil.which("mcopy") is None:
            raise ProvisionError(
                "mtools is not installed (Debian: apt-get install mtools); it writes the "
                "FAT partition without root"
            )
        self.path = path
        self.partition = partition
        self.name = f"{path} partition {partition.number}"
        self._drive = f"{path}@@{partition.offset}"
        self._read: dict[str, bytes | None] = {}

    def _mtools(self, *args: str) -> subprocess.CompletedProcess:
        env = dict(os.environ, MTOOLS_SKIP_CHECK="1", MTOOLSRC="/dev/null")
        return subprocess.run(list(args), capture_output=True, env=env, check=False)

    def _fail(self, what: str, proc: subprocess.CompletedProcess) -> ProvisionError:
        err = proc.stderr.decode(errors="replace").strip().splitlines()
        return ProvisionError(f"{self.name}: {what}: {err[-1] if err else f'exit {proc.returncode}'}")

    def read(self, rel: str) -> bytes | None:
        if rel not in self._read:
            with tempfile.TemporaryDirectory() as tmp:
                out = os.path.join(tmp, "f")
                proc = self._mtools("mcopy", "-n", "-i", self._drive, f"::/{rel}", out)
                if proc.returncode != 0 and b"not found" not in proc.stderr.lower():
                    raise self._fail(f"cannot read {rel}", proc)
                self._read[rel] = Path(out).read_bytes() if proc.returncode == 0 else None
        return self._read[rel]

    def names(self, rel_dir: str) -> set[str]:
        """The files in a directory of the partition (none when it does not exist)."""
        proc = self._mtools("mdir", "-b", "-i", self._drive, f"::/{rel_dir}")
        if proc.returncode != 0:
            return set()
        return {
            line.rstrip("/").rpartition("/")[2]
            for line in proc.stdout.decode(errors="replace").splitlines()
            if line.strip() and not line.endswith("/")
        }

    def _mkdirs(self, rel_dir: str) -> None:
        parts = [p for p in rel_dir.split("/") if p]
        for i in range(len(parts)):
            d = "/".join(parts[: i + 1])
            if self._mtools("mdir", "-b", "-i", self._drive, f"::/{d}").returncode != 0:
                proc = self._mtools("mmd", "-i", self._drive, f"::/{d}")
                if proc.returncode != 0:
                    raise self._fail(f"cannot create {d}/", proc)

    def write_all(self, files: dict[str, bytes]) -> None:
        self._read.clear()
        with tempfile.TemporaryDirectory() as tmp:
            by_dir: dict[str, list[str]] = {}
            for i, (rel, data) in enumerate(files.items()):
                d, _, base = rel.rpartition("/")
                local = os.path.join(tmp, str(i), base)
                os.makedirs(os.path.dirname(local))
                Path(local).write_bytes(data)
                by_dir.setdefault(d, []).append(local)
            for d, locals_ in by_dir.items():
                if d:
                    self._mkdirs(d)
                proc = self._mtools("mcopy", "-o", "-i", self._drive, *locals_, f"::/{d}/" if d else "::/")
                if proc.returncode != 0:
                    raise self._fail(f"cannot write into {d or 'the root directory'}", proc)


def open_target(path: str) -> BootDir | FatImage:
    """A directory is a mounted boot partition; a file or block device is a whole disk image."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise ProvisionError(f"{path}: {exc.strerror or exc}") from None
    if stat.S_ISDIR(st.st_mode):
        return BootDir(path)
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISBLK(st.st_mode)):
        raise ProvisionError(f"{path}: neither a disk image, a block device nor a directory")
    return FatImage(path, boot_partition(path))
