"""A filesystem that loses, at a power cut, everything that was not made durable.

``python -m powercut.fs BACKING MOUNTPOINT --control SOCKET`` mounts BACKING at MOUNTPOINT
with FUSE (mfusepy on libfuse 2 or 3) in the foreground, one request at a time. The backing
directory is the disk: it holds only what is durable. Everything else lives in this
process's memory, as it would in a disk cache and the kernel's page cache, and a cut throws
it away.

What is durable, and when
-------------------------
* File data. A write (and a truncate, and the size a write gives a file) lands in memory:
  the dirty 512-byte sectors of each file, its size, and how far it was truncated. Reads
  see it at once. ``fsync`` or ``fdatasync`` of that file writes it to the backing file;
  nothing else does (no 5 s writeback, no flush at close, no journal commit of another
  file carrying it): harsher than ext4 with ``data=ordered``, where another file's fsync
  commits this file's new size and writes its data first.
* Names: create, mkdir, unlink, rmdir, rename. They are done on the backing directory at
  once (so the namespace the mount shows is the backing's) and kept in an ordered journal
  of pending changes, each with what undoes it; removed files go to a trash directory
  beside the backing one until their removal is durable. A cut undoes every pending
  change, newest first. What makes them durable (``names``):
    - ``ordered`` (as ext4 with its one journal, but with no commit timer): ``fsync`` of a
      file makes durable the journal up to and including the last change that named that
      file (its creation, its renames), ``fsync`` of a directory up to the last change in
      that directory. Everything before in the journal goes with it: it is written in order.
    - ``strict`` (POSIX): only a directory's fsync makes names durable; a file fsync'ed
      after its creation still disappears at a cut unless its directory was fsync'ed.
* Not modelled: permissions, owners and times (chmod, chown, utimens are durable at
  once); hard and symbolic links (refused); extended attributes, fallocate and POSIX locks
  (the kernel keeps locks itself, which is what a local filesystem does: SQLite's locks
  work between the processes of this machine); the backing directory is never fsync'ed (the
  host does not lose power); a directory's own rename is journalled by the paths it had.

A cut
-----
``drop`` (the default) loses every write and every name change not yet durable. ``torn``
is what a disk cache that wrote part of what it held would leave: each dirty sector of a
file reaches the disk or not, independently (sector writes are atomic, their order is
not kept), a truncate not yet durable reaches it or not, a file that grew keeps the size
of the farthest sector that reached the disk (the sectors between read as zeros), and a
random prefix of the pending name changes reaches it (the journal is written in order).
A random choice comes from the seed the cut was armed with, so a cut can be replayed.
What a -shm file (SQLite's WAL index) was written since its last fsync is lost whole
either way.

A cut is armed from the control socket (``arm``): the Nth counted operation from then
on (any write, truncate, fsync, create, rename, unlink, mkdir or rmdir, or with
``count: syncs`` the Nth fsync) does not happen: the filesystem freezes (from that moment
every change is refused with EIO, and -shm writes, which the kernel writes back from a
dead process's mappings, are dropped), the calling process is killed with SIGKILL (its
whole thread group: the caller is blocked in this very operation, so it runs no more code
of its own; its other threads are refused any change), and what was not durable is
thrown away. ``thaw`` lets changes in again. Writes to SQLite's -shm (the WAL index that
SQLite rebuilds from the WAL after a crash, written through a shared mapping) are
volatile like any other data but are not counted, as their writeback is the kernel's
timing, not the program's.

Every file but a -shm one is opened with direct_io, so no page cache stands between the
programs and this model, and attributes and names are never cached by the kernel
(attr_timeout, entry_timeout and negative_timeout are 0): after a cut, the next program sees
what the disk holds.

The control socket takes one JSON object per connection and answers one:
``{"cmd": "ping"}``, ``{"cmd": "arm", "after": N, "count": "ops"|"syncs", "mode":
"drop"|"torn", "seed": S, "kill": true, "names": "ordered"|"strict"}``, ``{"cmd":
"disarm"}``, ``{"cmd": "cut", "mode": ..., "seed": ...}`` (at once, killing nobody),
``{"cmd": "thaw"}``, ``{"cmd": "stats"}``.

The model (``PowerCutFS``) does not import mfusepy, so it is tested without a mount
(tests/test_powercut_fs.py); ``FuseAdapter`` turns libfuse's calls into its calls.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import random
import signal
import socket
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

SECTOR = 512
ZERO = bytes(SECTOR)
COUNTS = ("ops", "syncs")
MODES = ("drop", "torn")
NAMES = ("ordered", "strict")


def _err(code: int) -> OSError:
    return OSError(code, os.strerror(code))


def _parent(path: str) -> str:
    head = path.rstrip("/").rsplit("/", 1)[0]
    return head or "/"


def _is_shm(path: str) -> bool:
    return path.endswith("-shm")


def thread_group(pid: int) -> int:
    """The process (thread group) a thread id belongs to: libfuse names the calling thread."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("Tgid:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return pid


class Inode:
    """One backing file as the programs see it: its durable bytes (the backing file) under
    the sectors written since the last fsync, its size, and how far it was truncated."""

    def __init__(self, fd: int, shm: bool = False) -> None:
        self.fd = fd
        self.ino = os.fstat(fd).st_ino
        self.shm = shm  # SQLite's WAL index (counted apart in a cut's report)
        self.handles = 0
        self.reset()

    def reset(self) -> None:
        """Forget everything not durable."""
        self.durable = os.fstat(self.fd).st_size
        self.size = self.durable  # the size the programs see
        self.keep = self.durable  # durable bytes at and past this were truncated away
        self.sectors: dict[int, bytes] = {}  # sector index -> its SECTOR bytes as written

    @property
    def dirty(self) -> bool:
        return bool(self.sectors) or self.size != self.durable or self.keep != self.durable

    def dirty_bytes(self) -> int:
        return len(self.sectors) * SECTOR + abs(self.size - self.durable)

    def _sector(self, i: int) -> bytes:
        """Sector i as the programs see it."""
        got = self.sectors.get(i)
        if got is not None:
            return got
        start = i * SECTOR
        if start >= self.keep:
            return ZERO
        data = os.pread(self.fd, min(SECTOR, self.keep - start), start)
        return data.ljust(SECTOR, b"\0")

    def read(self, offset: int, size: int) -> bytes:
        size = max(0, min(size, self.size - offset))
        if size == 0:
            return b""
        buf = bytearray(size)
        if offset < self.keep:
            durable = os.pread(self.fd, min(size, self.keep - offset), offset)
            buf[: len(durable)] = durable
        if self.sectors:
            end = offset + size
            for i in range(offset // SECTOR, (end - 1) // SECTOR + 1):
                sec = self.sectors.get(i)
                if sec is not None:
                    lo, hi = max(offset, i * SECTOR), min(end, (i + 1) * SECTOR)
                    buf[lo - offset : hi - offset] = sec[lo - i * SECTOR : hi - i * SECTOR]
        return bytes(buf)

    def write(self, data: bytes, offset: int) -> int:
        end = offset + len(data)
        if not data:
            return 0
        for i in range(offset // SECTOR, (end - 1) // SECTOR + 1):
            s0 = i * SECTOR
            lo, hi = max(offset, s0), min(end, s0 + SECTOR)
            if lo == s0 and hi == s0 + SECTOR:
                self.sectors[i] = bytes(data[lo - offset : hi - offset])
            else:
                sec = bytearray(self._sector(i))
                sec[lo - s0 : hi - s0] = data[lo - offset : hi - offset]
                self.sectors[i] = bytes(sec)
        self.size = max(self.size, end)
        return len(data)

    def truncate(self, length: int) -> None:
        if length < self.size:
            for i in [i for i in self.sectors if i * SECTOR >= length]:
                del self.sectors[i]
            cut = length % SECTOR
            if cut:  # the sector the file now ends in reads zeros past its end, if it grows again
                i = length // SECTOR
                self.sectors[i] = self._sector(i)[:cut] + bytes(SECTOR - cut)
            self.keep = min(self.keep, length)
        self.size = length

    def _write_out(self, sectors: dict[int, bytes], truncated: bool, size: int) -> None:
        if truncated:
            os.ftruncate(self.fd, self.keep)
        for i, sec in sorted(sectors.items()):
            os.pwrite(self.fd, sec, i * SECTOR)
        os.ftruncate(self.fd, size)

    def apply(self) -> None:
        """fsync: everything written becomes durable."""
        if self.dirty:
            self._write_out(self.sectors, self.keep < self.durable, self.size)
        self.reset()

    def tear(self, rng: random.Random) -> int:
        """A torn cut: part of what was written reaches the disk (see the module's docstring).
        Returns the bytes that did; the rest is forgotten."""
        if not self.dirty:
            return 0
        truncated = self.keep < self.durable and rng.random() < 0.5
        reached = {i: s for i, s in sorted(self.sectors.items()) if rng.random() < 0.5}
        base = self.keep if truncated else self.durable
        far = max(((i + 1) * SECTOR for i in reached), default=0)
        size = max(base, min(self.size, far))
        self._write_out(reached, truncated, size)
        self.reset()
        return len(reached) * SECTOR


@dataclass
class Change:
    """A change of names not yet durable: where it was done, and how to undo it."""

    op: str
    path: str
    dirs: frozenset[str]  # the directories it changed (mount paths)
    inos: frozenset[int]  # the files it named (backing inode numbers)
    undo: list[tuple[str, str, str]]  # ("move", src, dst) | ("unlink", path, "") | ("rmdir", path, "")
    trash: str | None = None  # removed for good once the change is durable


@dataclass
class Armed:
    after: int
    count: str = "ops"
    mode: str = "drop"
    seed: int = 0
    kill: bool = True


@dataclass
class Handle:
    node: Inode
    path: str


@dataclass
class Stats:
    ops: int = 0  # counted operations (the ones a cut can be armed on)
    syncs: int = 0
    cuts: list[dict] = field(default_factory=list)


class PowerCutFS:
    """The model: every operation a mount needs, on paths of the mount ("/a/b"), with
    integer file handles; OSError(errno) for a failure."""

    def __init__(
        self, backing: str, trash: str, *, names: str = "ordered", caller: Callable[[], int] = lambda: 0
    ) -> None:
        if names not in NAMES:
            raise ValueError(f"names must be one of {NAMES}")
        self.backing = os.path.abspath(backing)
        self.trash = os.path.abspath(trash)
        os.makedirs(self.trash, exist_ok=True)
        self.names = names
        self.caller = caller  # the pid of the thread whose call this is (libfuse's context)
        self.lock = threading.RLock()
        self.inodes: dict[int, Inode] = {}
        self.handles: dict[int, Handle] = {}
        self.journal: list[Change] = []
        self.frozen = False
        self.armed: Armed | None = None
        self.stats = Stats()
        self._next_fh = 1
        self._next_trash = 0

    # --- helpers ----------------------------------------------------------------------------
    def _b(self, path: str) -> str:
        return os.path.join(self.backing, path.lstrip("/"))

    def _trash_path(self) -> str:
        self._next_trash += 1
        return os.path.join(self.trash, f"{self._next_trash:08d}")

    def _node(self, path: str) -> Inode:
        bpath = self._b(path)
        st = os.lstat(bpath)
        node = self.inodes.get(st.st_ino)
        if node is None:
            if not stat.S_ISREG(st.st_mode):
                raise _err(errno.EINVAL)
            node = Inode(os.open(bpath, os.O_RDWR | os.O_NOFOLLOW), _is_shm(path))
            self.inodes[node.ino] = node
        return node

    def _gc(self, node: Inode) -> None:
        if node.handles == 0 and not node.dirty and self.inodes.get(node.ino) is node:
            del self.inodes[node.ino]
            os.close(node.fd)

    def _handle(self, node: Inode, path: str) -> int:
        fh = self._next_fh
        self._next_fh += 1
        node.handles += 1
        self.handles[fh] = Handle(node, path)
        return fh

    def _get(self, fh: int) -> Handle:
        h = self.handles.get(fh)
        if h is None:
            raise _err(errno.EBADF)
        return h

    def _change(self, op: str, path: str, *, sync: bool = False, counted: bool = True) -> None:
        """At the start of every change, under the lock: refused while frozen; counted; and
        an armed cut fires on its Nth, which then does not happen."""
        if self.frozen:
            raise _err(errno.EIO)
        if not counted:
            return
        self.stats.ops += 1
        self.stats.syncs += sync
        arm = self.armed
        if arm is not None and (arm.count == "ops" or sync):
            arm.after -= 1
            if arm.after <= 0:
                self._fire(arm, op, path)

    def _fire(self, arm: Armed, op: str, path: str) -> None:
        self.armed = None
        self.frozen = True
        victim = 0
        pid = self.caller()
        if arm.kill and pid > 0 and pid != os.getpid():
            victim = thread_group(pid)
            try:
                os.kill(victim, signal.SIGKILL)
            except OSError:
                victim = 0
        report = self._cut(arm.mode, arm.seed)
        report.update(trigger=op, path=path, victim=victim, at_op=self.stats.ops, at_sync=self.stats.syncs)
        self.stats.cuts.append(report)
        raise _err(errno.EIO)

    def _log(
        self, op: str, path: str, ino: int, undo: list[tuple[str, str, str]], trash: str | None = None
    ) -> None:
        """A change in one directory, naming one file or directory."""
        self.journal.append(Change(op, path, frozenset({_parent(path)}), frozenset({ino}), undo, trash))

    def _commit(self, n: int) -> None:
        """The first n pending name changes become durable."""
        for change in self.journal[:n]:
            if change.trash is not None:
                if os.path.isdir(change.trash) and not os.path.islink(change.trash):
                    os.rmdir(change.trash)
                else:
                    os.unlink(change.trash)
        del self.journal[:n]

    def _commit_through(self, concerns: Callable[[Change], bool]) -> None:
        last = max((i for i, c in enumerate(self.journal) if concerns(c)), default=-1)
        self._commit(last + 1)

    def _undo_all(self) -> int:
        n = len(self.journal)
        for change in reversed(self.journal):
            for action, a, b in change.undo:
                if action == "move":
                    os.rename(a, b)
                elif action == "unlink":
                    os.unlink(a)
                else:
                    os.rmdir(a)
        self.journal.clear()
        return n

    def _cut(self, mode: str, seed: int) -> dict:
        rng = random.Random(seed)
        lost = reached = files = shm = 0
        for node in list(self.inodes.values()):
            if node.dirty:
                if node.shm:
                    shm += node.dirty_bytes()
                else:
                    files += 1
                    lost += node.dirty_bytes()
                    if mode == "torn":
                        reached += node.tear(rng)
                node.reset()
            self._gc(node)
        pending = len(self.journal)
        if mode == "torn" and pending:
            self._commit(rng.randint(0, pending))
        kept = pending - len(self.journal)
        undone = self._undo_all()
        return {
            "mode": mode,
            "seed": seed,
            "files": files,
            "lost_bytes": lost - reached,  # of files other than -shm
            "reached_bytes": reached,
            "shm_bytes": shm,  # the WAL index's, lost whole (SQLite rebuilds it)
            "names_undone": undone,
            "names_kept": kept,
            "at": time.time(),
        }

    # --- control --------------------------------------------------------------------------
    def arm(
        self, after: int, count: str = "ops", mode: str = "drop", seed: int = 0, kill: bool = True
    ) -> None:
        if after < 1 or count not in COUNTS or mode not in MODES:
            raise ValueError(f"arm: after >= 1, count in {COUNTS}, mode in {MODES}")
        with self.lock:
            self.armed = Armed(after, count, mode, seed, kill)

    def disarm(self) -> None:
        with self.lock:
            self.armed = None

    def cut(self, mode: str = "drop", seed: int = 0) -> dict:
        """A power cut now (the test's own; nobody is killed). Leaves the filesystem frozen."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        with self.lock:
            self.armed = None
            self.frozen = True
            report = self._cut(mode, seed)
            report.update(
                trigger="control", path="", victim=0, at_op=self.stats.ops, at_sync=self.stats.syncs
            )
            self.stats.cuts.append(report)
            return report

    def thaw(self) -> None:
        with self.lock:
            self.frozen = False

    def snapshot(self) -> dict:
        with self.lock:
            return {
                "ops": self.stats.ops,
                "syncs": self.stats.syncs,
                "frozen": self.frozen,
                "armed": None if self.armed is None else vars(self.armed).copy(),
                "names": self.names,
                "dirty_files": sum(n.dirty for n in self.inodes.values()),
                "dirty_bytes": sum(n.dirty_bytes() for n in self.inodes.values()),
                "pending_names": len(self.journal),
                "cuts": list(self.stats.cuts),
            }

    def control(self, request: dict) -> dict:
        cmd = request.get("cmd")
        if cmd == "ping":
            return {"ok": True, "pid": os.getpid()}
        if cmd == "arm":
            if "names" in request:
                if request["names"] not in NAMES:
                    raise ValueError(f"names must be one of {NAMES}")
                with self.lock:
                    self.names = request["names"]
            self.arm(
                int(request["after"]),
                request.get("count", "ops"),
                request.get("mode", "drop"),
                int(request.get("seed", 0)),
                bool(request.get("kill", True)),
            )
            return {"ok": True}
        if cmd == "disarm":
            self.disarm()
            return {"ok": True}
        if cmd == "cut":
            return {"ok": True, "cut": self.cut(request.get("mode", "drop"), int(request.get("seed", 0)))}
        if cmd == "thaw":
            self.thaw()
            return {"ok": True}
        if cmd == "stats":
            return {"ok": True, **self.snapshot()}
        raise ValueError(f"unknown command {cmd!r}")

    # --- files ------------------------------------------------------------------------------
    def getattr(self, path: str | None, fh: int | None = None) -> dict:
        with self.lock:
            if path is None:  # an open file whose name is gone: by its handle
                st = os.fstat(self._get(fh if fh is not None else -1).node.fd)
            else:
                st = os.lstat(self._b(path))
            size = st.st_size
            node = self.inodes.get(st.st_ino) if stat.S_ISREG(st.st_mode) else None
            if node is not None:
                size = node.size
            return {
                "st_mode": st.st_mode,
                "st_ino": st.st_ino,
                "st_nlink": st.st_nlink,
                "st_uid": st.st_uid,
                "st_gid": st.st_gid,
                "st_size": size,
                "st_blocks": (size + 511) // 512,
                "st_blksize": 4096,
                "st_atime": st.st_atime_ns,
                "st_mtime": st.st_mtime_ns,
                "st_ctime": st.st_ctime_ns,
            }

    def open(self, path: str, flags: int) -> int:
        with self.lock:
            return self._handle(self._node(path), path)

    def create(self, path: str, mode: int) -> int:
        with self.lock:
            self._change("create", path)
            bp = self._b(path)
            fd = os.open(bp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, stat.S_IMODE(mode))
            node = Inode(fd, _is_shm(path))
            self.inodes[node.ino] = node
            self._log("create", path, node.ino, [("unlink", bp, "")])
            return self._handle(node, path)

    def read(self, fh: int, size: int, offset: int) -> bytes:
        with self.lock:
            return self._get(fh).node.read(offset, size)

    def write(self, fh: int, data: bytes, offset: int) -> int:
        with self.lock:
            h = self._get(fh)
            if self.frozen and _is_shm(h.path):
                return len(data)  # the kernel writing back a dead process's mapping: lost
            self._change("write", h.path, counted=not _is_shm(h.path))
            return h.node.write(data, offset)

    def truncate(self, path: str | None, length: int, fh: int | None = None) -> None:
        with self.lock:
            h = self._get(fh) if fh is not None else None
            where = h.path if h is not None else str(path)
            self._change("truncate", where, counted=not _is_shm(where))
            node = h.node if h is not None else self._node(where)
            node.truncate(length)
            self._gc(node)

    def fsync(self, fh: int, datasync: bool = False) -> None:
        with self.lock:
            h = self._get(fh)
            self._change("fsync", h.path, sync=True, counted=not _is_shm(h.path))
            if self.names == "ordered":
                self._commit_through(lambda c: h.node.ino in c.inos)
            h.node.apply()

    def flush(self, fh: int) -> None:
        self._get(fh)

    def release(self, fh: int) -> None:
        with self.lock:
            h = self.handles.pop(fh, None)
            if h is not None:
                h.node.handles -= 1
                self._gc(h.node)

    # --- names ------------------------------------------------------------------------------
    def mkdir(self, path: str, mode: int) -> None:
        with self.lock:
            self._change("mkdir", path)
            bp = self._b(path)
            os.mkdir(bp, stat.S_IMODE(mode))
            ino = os.lstat(bp).st_ino
            self._log("mkdir", path, ino, [("rmdir", bp, "")])

    def unlink(self, path: str) -> None:
        with self.lock:
            self._change("unlink", path)
            bp = self._b(path)
            ino = os.lstat(bp).st_ino
            if stat.S_ISDIR(os.lstat(bp).st_mode):
                raise _err(errno.EISDIR)
            t = self._trash_path()
            os.rename(bp, t)
            self._log("unlink", path, ino, [("move", t, bp)], t)

    def rmdir(self, path: str) -> None:
        with self.lock:
            self._change("rmdir", path)
            bp = self._b(path)
            st = os.lstat(bp)
            if not stat.S_ISDIR(st.st_mode):
                raise _err(errno.ENOTDIR)
            if os.listdir(bp):
                raise _err(errno.ENOTEMPTY)
            t = self._trash_path()
            os.rename(bp, t)
            self._log("rmdir", path, st.st_ino, [("move", t, bp)], t)

    def rename(self, old: str, new: str) -> None:
        with self.lock:
            self._change("rename", old)
            bo, bn = self._b(old), self._b(new)
            ino = os.lstat(bo).st_ino
            undo = [("move", bn, bo)]
            t = None
            if os.path.lexists(bn):
                if os.path.samefile(bo, bn):
                    return
                t = self._trash_path()
                os.rename(bn, t)
                undo.append(("move", t, bn))
            try:
                os.rename(bo, bn)
            except OSError:
                if t is not None:
                    os.rename(t, bn)
                raise
            dirs = frozenset({_parent(old), _parent(new)})
            self.journal.append(Change("rename", f"{old} -> {new}", dirs, frozenset({ino}), undo, t))

    def fsyncdir(self, path: str) -> None:
        with self.lock:
            self._change("fsyncdir", path, sync=True)
            self._commit_through(lambda c: path in c.dirs)

    def readdir(self, path: str) -> list[tuple[str, dict, int]]:
        """(name, {st_mode, st_ino}, 0) for each entry: with use_ino an entry of inode 0
        would be skipped by readdir(3)."""
        with self.lock:
            bp = self._b(path)
            out = []
            for name in (".", "..", *sorted(os.listdir(bp))):
                st = os.lstat(os.path.join(bp, name))
                out.append((name, {"st_mode": st.st_mode, "st_ino": st.st_ino}, 0))
            return out

    # --- what is not modelled: done at once -------------------------------------------------
    def chmod(self, path: str, mode: int) -> None:
        with self.lock:
            self._change("chmod", path, counted=False)
            os.chmod(self._b(path), stat.S_IMODE(mode), follow_symlinks=False)

    def chown(self, path: str, uid: int, gid: int) -> None:
        with self.lock:
            self._change("chown", path, counted=False)
            os.lchown(self._b(path), uid, gid)

    def utimens(self, path: str, times: tuple[int, int] | None = None) -> None:
        with self.lock:
            self._change("utimens", path, counted=False)
            if times is None:
                os.utime(self._b(path), follow_symlinks=False)
            else:
                os.utime(self._b(path), ns=times, follow_symlinks=False)

    def readlink(self, path: str) -> str:
        return os.readlink(self._b(path))

    def statfs(self, path: str) -> dict:
        sv = os.statvfs(self.backing)
        keys = ("f_bsize", "f_frsize", "f_blocks", "f_bfree", "f_bavail", "f_files", "f_ffree", "f_favail")
        return {k: getattr(sv, k) for k in keys} | {"f_namemax": sv.f_namemax}

    def access(self, path: str, amode: int) -> None:
        if not os.path.lexists(self._b(path)):
            raise _err(errno.ENOENT)


class FuseAdapter:
    """libfuse's calls (mfusepy with raw_fi=True) to the model's. Files but a -shm get
    direct_io; the caller's pid comes from libfuse's context."""

    use_ns = True

    def __init__(self, fs: PowerCutFS) -> None:
        self.fs = fs

    def getattr(self, path, fh=None):
        return self.fs.getattr(path, None if fh is None else fh.fh)

    def open(self, path, fi):
        fi.fh = self.fs.open(path, fi.flags)
        fi.direct_io = 0 if _is_shm(path) else 1
        fi.keep_cache = 0
        return 0

    def create(self, path, mode, fi):
        fi.fh = self.fs.create(path, mode)
        fi.direct_io = 0 if _is_shm(path) else 1
        fi.keep_cache = 0
        return 0

    def read(self, path, size, offset, fi):
        return self.fs.read(fi.fh, size, offset)

    def write(self, path, data, offset, fi):
        return self.fs.write(fi.fh, data, offset)

    def truncate(self, path, length, fh=None):
        self.fs.truncate(path, length, None if fh is None else fh.fh)
        return 0

    def fsync(self, path, datasync, fi):
        self.fs.fsync(fi.fh, bool(datasync))
        return 0

    def flush(self, path, fi):
        return 0

    def release(self, path, fi):
        self.fs.release(fi.fh)
        return 0

    def mkdir(self, path, mode):
        self.fs.mkdir(path, mode)
        return 0

    def unlink(self, path):
        self.fs.unlink(path)
        return 0

    def rmdir(self, path):
        self.fs.rmdir(path)
        return 0

    def rename(self, old, new):
        self.fs.rename(old, new)
        return 0

    def opendir(self, path):
        return 0

    def readdir(self, path, fh):
        return self.fs.readdir(path)

    def releasedir(self, path, fh):
        return 0

    def fsyncdir(self, path, datasync, fh):
        self.fs.fsyncdir(path)
        return 0

    def chmod(self, path, mode):
        self.fs.chmod(path, mode)
        return 0

    def chown(self, path, uid, gid):
        self.fs.chown(path, uid, gid)
        return 0

    def utimens(self, path, times=None):
        self.fs.utimens(path, times)
        return 0

    def readlink(self, path):
        return self.fs.readlink(path)

    def statfs(self, path):
        return self.fs.statfs(path)

    def access(self, path, amode):
        self.fs.access(path, amode)
        return 0

    def symlink(self, target, source):
        raise _err(errno.EPERM)

    def link(self, target, source):
        raise _err(errno.EPERM)


def serve_control(fs: PowerCutFS, path: str) -> socket.socket:
    """Answer the control socket on a thread of its own (see the module's docstring)."""
    if os.path.exists(path):
        os.unlink(path)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(8)

    def loop() -> None:
        while True:
            conn, _ = server.accept()
            with conn:
                data = b""
                while not data.endswith(b"\n"):
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                try:
                    answer = fs.control(json.loads(data))
                except Exception as exc:  # noqa: BLE001 - every failure goes back to the caller
                    answer = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
                conn.sendall(json.dumps(answer).encode() + b"\n")

    threading.Thread(target=loop, name="control", daemon=True).start()
    return server


def request(path: str, cmd: str, timeout: float = 30.0, **args) -> dict:
    """One control request (what the tests call): the answer, or RuntimeError."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(path)
        s.sendall(json.dumps({"cmd": cmd, **args}).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(1 << 20)
            if not chunk:
                break
            data += chunk
    answer = json.loads(data)
    if not answer.get("ok"):
        raise RuntimeError(f"powercut control {cmd}: {answer.get('error')}")
    return answer


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="powercut.fs", description=__doc__.split("\n")[0])
    p.add_argument("backing")
    p.add_argument("mountpoint")
    p.add_argument("--control", required=True, help="the control socket's path")
    p.add_argument("--trash", help="where removed files wait (default: BACKING.trash)")
    p.add_argument("--names", choices=NAMES, default="ordered")
    args = p.parse_args(argv)
    import mfusepy  # here: the model and its unit tests need no libfuse

    os.umask(0)  # the kernel applied the caller's umask already
    fs = PowerCutFS(
        args.backing,
        args.trash or args.backing.rstrip("/") + ".trash",
        names=args.names,
        caller=lambda: mfusepy.fuse_get_context()[2],
    )
    serve_control(fs, args.control)
    options = {
        "foreground": True,
        "nothreads": True,
        "fsname": "powercut",
        "attr_timeout": 0,
        "entry_timeout": 0,
        "negative_timeout": 0,
        "hard_remove": True,
        "use_ino": True,
        "default_permissions": True,
    }
    if mfusepy.fuse_version_major == 2:
        options["big_writes"] = True
    mfusepy.FUSE(FuseAdapter(fs), args.mountpoint, raw_fi=True, **options)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
