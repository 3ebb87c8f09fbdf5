"""The power-cut filesystem's model (tests/powercut/fs.py), called directly, no mount: what
is fsync'ed survives a cut, what is not does not, reads see what was written, names
behave as its docstring says, and an armed cut fires on the operation it was armed for.
(tests/integration/test_power_loss.py runs it under a real FUSE mount.)"""

from __future__ import annotations

import errno
import os
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from powercut.fs import SECTOR, PowerCutFS


@pytest.fixture
def fs(tmp_path):
    (tmp_path / "disk").mkdir()
    return PowerCutFS(str(tmp_path / "disk"), str(tmp_path / "trash"))


def disk(fs: PowerCutFS, path: str) -> bytes:
    """What the backing directory (the disk) holds for a file."""
    with open(fs._b(path), "rb") as f:
        return f.read()


def new_file(fs: PowerCutFS, path: str, data: bytes = b"", *, durable: bool = True) -> int:
    fh = fs.create(path, 0o600)
    fs.write(fh, data, 0)
    if durable:
        fs.fsync(fh)
        fs.fsyncdir("/")
    return fh


def test_fsynced_data_survives_a_cut_and_the_rest_does_not(fs):
    fh = new_file(fs, "/f", b"A" * 3000)
    fs.write(fh, b"B" * 100, 1000)
    fs.write(fh, b"C" * 50, 2990)  # grows the file past what is durable
    assert fs.read(fh, 4000, 0) == b"A" * 1000 + b"B" * 100 + b"A" * 1890 + b"C" * 50
    assert fs.getattr("/f")["st_size"] == 3040
    assert disk(fs, "/f") == b"A" * 3000  # nothing of it on the disk yet
    report = fs.cut()
    assert report["files"] == 1 and report["lost_bytes"] > 0
    fs.thaw()
    assert fs.read(fh, 4000, 0) == b"A" * 3000
    assert fs.getattr("/f")["st_size"] == 3000


def test_a_write_after_the_fsync_is_lost_alone(fs):
    fh = new_file(fs, "/f", b"one")
    fs.write(fh, b"two", 3)
    fs.fsync(fh)
    fs.write(fh, b"three", 6)
    assert fs.read(fh, 100, 0) == b"onetwothree"
    fs.cut()
    fs.thaw()
    assert fs.read(fh, 100, 0) == b"onetwo" == disk(fs, "/f")


def test_data_closed_without_fsync_is_still_read_and_still_lost(fs):
    fh = new_file(fs, "/f", b"kept")
    fs.write(fh, b"volatile", 4)
    fs.release(fh)  # a close flushes nothing
    fh = fs.open("/f", os.O_RDONLY)
    assert fs.read(fh, 100, 0) == b"keptvolatile"
    fs.cut()
    assert fs.read(fh, 100, 0) == b"kept"


def test_truncate_is_volatile_until_fsync(fs):
    fh = new_file(fs, "/f", bytes(range(256)) * 8)
    fs.truncate("/f", 700, fh)
    fs.truncate("/f", 1500, fh)  # grows again: what was cut off reads as zeros
    assert fs.read(fh, 2048, 0) == (bytes(range(256)) * 8)[:700] + bytes(800)
    fs.cut()
    assert fs.read(fh, 4096, 0) == bytes(range(256)) * 8
    fs.thaw()
    fs.truncate(None, 10, fh)
    fs.fsync(fh)
    assert disk(fs, "/f") == bytes(range(10))


def test_an_armed_cut_fires_on_its_operation_and_freezes(fs):
    fh = new_file(fs, "/f", b"durable")
    ops = fs.stats.ops
    fs.arm(3, kill=False)
    fs.write(fh, b"1", 7)
    fs.write(fh, b"2", 8)
    with pytest.raises(OSError) as exc:
        fs.write(fh, b"3", 9)  # the third: not done, and the power is gone
    assert exc.value.errno == errno.EIO
    cut = fs.stats.cuts[-1]
    assert (cut["trigger"], cut["at_op"], cut["victim"]) == ("write", ops + 3, 0)
    assert fs.read(fh, 100, 0) == b"durable"
    for change in (lambda: fs.write(fh, b"x", 0), lambda: fs.fsync(fh), lambda: fs.create("/g", 0o600)):
        with pytest.raises(OSError):
            change()
    fs.thaw()
    fs.write(fh, b"!", 7)
    assert fs.read(fh, 100, 0) == b"durable!"


def test_a_cut_armed_on_syncs_counts_fsyncs_only(fs):
    fh = new_file(fs, "/f")
    fs.arm(2, count="syncs", kill=False)
    for i in range(5):
        fs.write(fh, b"x", i)
    fs.fsync(fh)  # the first: done
    fs.write(fh, b"y", 5)
    with pytest.raises(OSError):
        fs.fsync(fh)  # the second: the cut
    assert fs.read(fh, 100, 0) == b"xxxxx"


def test_shm_writes_are_not_counted_and_vanish_while_frozen(fs):
    fh = new_file(fs, "/q-shm", bytes(64))
    fs.arm(1, kill=False)
    fs.write(fh, b"wal-index", 0)  # not counted
    assert fs.armed is not None
    fs.cut()
    assert fs.write(fh, b"late", 0) == 4  # the kernel writing back a dead process's mapping
    fs.thaw()
    assert fs.read(fh, 64, 0) == bytes(64)


def test_names_in_ordered_mode_are_durable_with_their_files_fsync(fs):
    fh = fs.create("/f", 0o600)
    fs.write(fh, b"data", 0)
    fs.fsync(fh)
    g = fs.create("/g", 0o600)  # created after: still pending
    fs.write(g, b"gone", 0)
    fs.cut()
    assert [n for n, *_ in fs.readdir("/")][2:] == ["f"]
    assert disk(fs, "/f") == b"data"


def test_names_in_strict_mode_need_the_directorys_fsync(fs):
    fs.names = "strict"
    os.mkdir(fs._b("/d"))
    fh = fs.create("/d/f", 0o600)
    fs.write(fh, b"data", 0)
    fs.fsync(fh)
    fs.cut()
    fs.thaw()
    assert not os.path.exists(fs._b("/d/f"))  # its data was durable, its name was not
    fh = fs.create("/d/f", 0o600)
    fs.write(fh, b"data", 0)
    fs.fsync(fh)
    fs.fsyncdir("/d")
    fs.cut()
    assert disk(fs, "/d/f") == b"data"


def test_unlink_rename_and_mkdir_are_undone_by_a_cut(fs):
    new_file(fs, "/a", b"A")
    new_file(fs, "/b", b"B")
    new_file(fs, "/c", b"C")
    fs.rename("/a", "/b")  # over an existing file
    fs.unlink("/c")
    fs.mkdir("/d", 0o700)
    fs.create("/d/e", 0o600)
    assert [n for n, *_ in fs.readdir("/")][2:] == ["b", "d"]
    report = fs.cut()
    assert report["names_undone"] == 4
    assert [n for n, *_ in fs.readdir("/")][2:] == ["a", "b", "c"]
    assert (disk(fs, "/a"), disk(fs, "/b"), disk(fs, "/c")) == (b"A", b"B", b"C")
    assert os.listdir(fs.trash) == []


def test_removals_made_durable_empty_the_trash(fs):
    new_file(fs, "/a", b"A")
    new_file(fs, "/b", b"B")
    fs.rename("/a", "/b")
    fs.mkdir("/d", 0o700)
    fs.rmdir("/d")
    assert len(os.listdir(fs.trash)) == 2
    fs.fsyncdir("/")
    assert os.listdir(fs.trash) == []
    fs.cut()
    assert [n for n, *_ in fs.readdir("/")][2:] == ["b"] and disk(fs, "/b") == b"A"


def test_a_torn_cut_keeps_a_prefix_of_the_name_changes(fs):
    for seed in range(20):
        fs.thaw()
        for i in range(6):
            fs.create(f"/n{seed}-{i}", 0o600)
        fs.cut("torn", seed)
        left = sorted(int(n.rsplit("-", 1)[1]) for n in os.listdir(fs.backing) if n.startswith(f"n{seed}-"))
        assert left == list(range(len(left))), f"seed {seed}: {left}"


# --- the data of one file against a plain model of it ------------------------------------

OPS = st.lists(
    st.one_of(
        st.tuples(st.just("write"), st.integers(0, 5000), st.binary(min_size=1, max_size=1500)),
        st.tuples(st.just("truncate"), st.integers(0, 6000), st.just(b"")),
        st.tuples(st.just("fsync"), st.just(0), st.just(b"")),
        st.tuples(st.just("read"), st.integers(0, 6000), st.just(b"")),
    ),
    max_size=25,
)


def _run(fs: PowerCutFS, ops) -> tuple[int, bytearray, bytearray]:
    fh = new_file(fs, "/f", b"")
    seen, durable = bytearray(), bytearray()
    for op, at, data in ops:
        if op == "write":
            seen.extend(bytes(max(0, at - len(seen))))
            seen[at : at + len(data)] = data
            assert fs.write(fh, data, at) == len(data)
        elif op == "truncate":
            del seen[at:]
            seen.extend(bytes(at - len(seen)))
            fs.truncate("/f", at, fh)
        elif op == "fsync":
            fs.fsync(fh)
            durable[:] = seen
        else:
            assert fs.read(fh, 2000, at) == bytes(seen[at : at + 2000])
        assert fs.getattr("/f")["st_size"] == len(seen)
    assert fs.read(fh, 10000, 0) == bytes(seen)
    return fh, seen, durable


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=OPS)
def test_reads_see_every_write_and_a_drop_cut_leaves_the_last_fsync(tmp_path_factory, ops):
    fs = PowerCutFS(str(tmp_path_factory.mktemp("disk")), str(tmp_path_factory.mktemp("trash")))
    fh, _, durable = _run(fs, ops)
    fs.cut("drop")
    assert fs.read(fh, 10000, 0) == bytes(durable) == disk(fs, "/f")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=OPS, seed=st.integers(0, 2**32 - 1))
def test_a_torn_cut_leaves_each_sector_old_or_new(tmp_path_factory, ops, seed):
    """After a torn cut every sector on the disk is the one last fsync'ed, the one last
    written, or zeros (never a mix: sector writes are atomic), and the size lies between."""
    fs = PowerCutFS(str(tmp_path_factory.mktemp("disk")), str(tmp_path_factory.mktemp("trash")))
    fh, seen, durable = _run(fs, ops)
    fs.cut("torn", seed)
    after = disk(fs, "/f")
    assert fs.read(fh, 10000, 0) == after
    assert len(after) <= max(len(seen), len(durable))

    def sector(buf: bytes | bytearray, i: int) -> bytes:
        return bytes(buf[i * SECTOR : (i + 1) * SECTOR]).ljust(SECTOR, b"\0")

    for i in range((len(after) + SECTOR - 1) // SECTOR):
        got = sector(after, i)
        # a truncate that reached the disk leaves zeros past its length in the old sector
        old = sector(durable, i)
        candidates = {sector(seen, i), old, bytes(SECTOR)} | {
            old[:cut] + bytes(SECTOR - cut) for cut in range(1, SECTOR)
        }
        end = len(after) - i * SECTOR
        if end < SECTOR:  # the last sector is shorter: compare what is there
            assert any(got[:end] == c[:end] for c in candidates), f"sector {i}"
        else:
            assert got in candidates, f"sector {i}"


def test_a_torn_cut_keeps_some_and_loses_some(tmp_path):
    """Over many seeds a torn cut neither keeps everything nor nothing."""
    reached = set()
    for seed in range(30):
        (tmp_path / f"disk{seed}").mkdir()
        fs = PowerCutFS(str(tmp_path / f"disk{seed}"), str(tmp_path / f"trash{seed}"))
        fh = new_file(fs, "/f", bytes(4 * SECTOR))
        fs.write(fh, random.Random(seed).randbytes(4 * SECTOR), 0)
        reached.add(fs.cut("torn", seed)["reached_bytes"])
    assert 0 in reached and 4 * SECTOR in reached and len(reached) > 2
