"""crashfs (tests/crash/crashfs.py) can fail the way a power loss does, and only that way.

Each test mounts crashfs over a backing dir in tmp_path, writes through the mount, cuts the power
and looks at what survived: in the backing dir (the cut is written there before power_cut()
returns) or through a fresh mount. The first test checks the page model alone (no FUSE) against
a plain reference, so it runs wherever this file does; the others skip with the reason when FUSE
can't be used here.
"""

import errno
import mmap
import os
import random
import time

import pytest

from crash.crashfs import CrashFS, crashfs_unavailable, is_mounted
from crash.crashfs_model import PAGE, VolatileFile

pytestmark = [pytest.mark.timeout(60)]


@pytest.fixture
def fs(crashfs):   # tests/crash/conftest.py: skips with the reason when FUSE is unavailable
    return crashfs


def put(path, data, sync=True, flags=0):
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC | flags, 0o644)
    try:
        os.write(fd, data)
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)


def get(path):
    with open(path, "rb") as f:
        return f.read()


def close_after_cut(fd):
    try:
        os.close(fd)
    except OSError:   # its flush fails with EIO after a cut; the fd is closed all the same
        pass


def pages_of(data):
    return [data[i:i + PAGE] for i in range(0, len(data), PAGE)]


# -- the model alone -------------------------------------------------------------------------

def _random_ops(rng, n, size):
    """n random writes and truncates: [("w", off, bytes) | ("t", length)]."""
    ops = []
    for _ in range(n):
        if rng.random() < 0.12:
            ops.append(("t", rng.randrange(0, size + 3 * PAGE)))
        else:
            off = rng.randrange(0, size + 2 * PAGE)
            fill = 0 if rng.random() < 0.2 else rng.randrange(1, 256)
            n = rng.choice([1, 7, 100, PAGE, PAGE + 5, 3 * PAGE])
            ops.append(("w", off, bytes([fill]) * n))
    return ops


def _replay(data, ops):
    data = bytearray(data)
    for op in ops:
        if op[0] == "w":
            _, off, b = op
            if off > len(data):
                data += bytes(off - len(data))
            data[off:off + len(b)] = b
        else:
            del data[op[1]:]
            data += bytes(max(0, op[1] - len(data)))
    return bytes(data)


def test_model_view_sync_and_cuts_match_a_replay(tmp_path):
    """Reads see the newest data, sync() and cut("all") write it, cut("none") keeps the durable
    state, cut("prefix") the replay of the events up to the cut point, and cut("random") leaves
    each page as it was after one of the writes (random is checked on writes only: it drops
    truncates, so its pages need not match any replayed state)."""
    for seed in range(12):
        rng = random.Random(seed)
        durable = bytes(rng.randrange(256) for _ in range(rng.choice([0, 100, 3 * PAGE + 17])))
        all_ops = _random_ops(rng, 40, len(durable) + PAGE)
        for mode in ("sync", "all", "none", "prefix", "random"):
            ops = [op for op in all_ops if op[0] == "w"] if mode == "random" else all_ops
            want = _replay(durable, ops)
            path = tmp_path / ("f%d-%s" % (seed, mode))
            path.write_bytes(durable)
            fd = os.open(path, os.O_RDWR)
            try:
                vf = VolatileFile(fd)
                for seq, op in enumerate(ops, 1):
                    if op[0] == "w":
                        vf.write(seq, op[1], op[2])
                    else:
                        vf.truncate(seq, op[1])
                assert vf.size == len(want)
                assert vf.read(0, len(want) + 10) == want
                off = rng.randrange(0, len(want) + 1)
                assert vf.read(off, 5000) == want[off:off + 5000]
                cut_seq = rng.randrange(0, len(ops) + 1)
                if mode == "sync":
                    vf.sync()
                else:
                    vf.cut(mode, random.Random(seed), cut_seq)
            finally:
                os.close(fd)
            got = path.read_bytes()
            if mode in ("sync", "all"):
                assert got == want
            elif mode == "none":
                assert got == durable
            elif mode == "prefix":
                assert got == _replay(durable, ops[:cut_seq])
            else:
                assert len(durable) <= len(got) <= len(want)
                states = [_replay(durable, ops[:k]) for k in range(len(ops) + 1)]
                pad = bytes(len(want) + PAGE)
                for i, page in enumerate(pages_of(got)):
                    assert any((s + pad)[i * PAGE:i * PAGE + len(page)] == page
                               for s in states), (seed, i)


def test_model_zero_fill_preallocation_is_compact(tmp_path):
    """ZooKeeper-style preallocation (one byte at 64 MiB) or 64 MiB of zeros hold ~no memory."""
    fd = os.open(tmp_path / "log", os.O_CREAT | os.O_RDWR)
    try:
        vf = VolatileFile(fd)
        vf.write(1, (64 << 20) - 1, b"\0")
        vf.write(2, 0, bytes(64 << 20))
        assert vf.size == 64 << 20
        assert vf.mem < 2 * PAGE + 128 * (64 << 20) // PAGE   # no 4 KiB per page
        assert vf.read((64 << 20) - 10, 100) == bytes(10)
    finally:
        os.close(fd)


# -- through the mount ----------------------------------------------------------------------

def test_unsynced_write_lost_on_none_cut_synced_one_kept(fs):
    m = fs.mountpoint
    put(m / "synced", b"S" * 5000, sync=True)
    put(m / "unsynced", b"U" * 5000, sync=False)
    assert get(m / "unsynced") == b"U" * 5000           # readers see it before the cut
    summary = fs.power_cut("none", seed=1)
    assert summary["pages_pending"] == 2 and summary["pages_dropped"] == 2
    fs.remount()
    assert get(m / "synced") == b"S" * 5000
    assert get(m / "unsynced") == b""                    # the name was durable, the data not


def test_all_cut_keeps_unsynced_writes(fs):
    m = fs.mountpoint
    put(m / "f", b"A" * 10000, sync=False)
    summary = fs.power_cut("all", seed=2)
    assert summary["pages_persisted"] == 3
    assert get(fs.backing / "f") == b"A" * 10000         # in the backing dir before remount
    fs.remount()
    assert get(m / "f") == b"A" * 10000


def test_random_cut_leaves_each_page_at_one_of_its_versions(fs):
    """Three unsynced overwrites of 16 durable pages: after a random cut each page is wholly one
    of old/a/b/c, seeds give mixes, and a seed repeats its result."""
    m = fs.mountpoint
    npages = 16
    results = {}
    for seed in (101, 102, 103, 101):
        put(m / "f", b"o" * (npages * PAGE), sync=True)
        fd = os.open(m / "f", os.O_WRONLY)
        for fill in b"abc":
            os.pwrite(fd, bytes([fill]) * (npages * PAGE), 0)
        summary = fs.power_cut("random", seed)
        close_after_cut(fd)
        data = get(fs.backing / "f")
        assert len(data) == npages * PAGE
        got = []
        for page in pages_of(data):
            assert page == page[:1] * PAGE, "a page mixes versions"
            got.append(page[:1].decode())
        assert summary["pages_pending"] == npages
        if seed in results:
            assert "".join(got) == results[seed], "the same seed gave another result"
        results[seed] = "".join(got)
        fs.remount()
    assert any(len(set(r)) > 1 for r in results.values()), results
    assert set("".join(results.values())) >= {"o", "c"}, results


def test_prefix_cut_keeps_an_ordered_prefix(fs):
    """Unsynced appends: a prefix cut keeps a prefix of them, data and size. (Not always whole
    appends: the kernel sends an append that ends in a page it has not cached as one FUSE write
    per page, so a cut can tear it at a page boundary, as a real power loss can.)"""
    m = fs.mountpoint
    head = b"H" * 1000
    recs = b"".join(bytes([65 + i]) * 700 for i in range(20))   # crossing page boundaries
    seen = set()
    for seed in (7, 8, 9):
        put(m / "log", head, sync=True)
        fd = os.open(m / "log", os.O_WRONLY | os.O_APPEND)
        for i in range(0, len(recs), 700):
            os.write(fd, recs[i:i + 700])
        summary = fs.power_cut("prefix", seed)
        close_after_cut(fd)
        data = get(fs.backing / "log")
        assert data == (head + recs)[:len(data)] and len(data) >= len(head)
        assert (len(data) - len(head)) % 700 == 0 or len(data) % PAGE == 0
        assert 0 <= summary["events_persisted"] <= summary["events_pending"]
        seen.add(len(data))
        fs.remount()
    assert len(seen) > 1, seen


def test_io_fails_with_eio_after_a_cut_until_remount(fs):
    m = fs.mountpoint
    put(m / "f", b"x" * 100)
    fd = os.open(m / "f", os.O_RDWR)
    fs.power_cut("none", seed=3)
    for attempt in (lambda: os.pwrite(fd, b"y", 0), lambda: os.fsync(fd),
                    lambda: os.open(m / "f", os.O_RDONLY), lambda: os.listdir(m),
                    lambda: os.open(m / "new", os.O_CREAT | os.O_WRONLY), lambda: os.stat(m / "g")):
        with pytest.raises(OSError) as e:
            attempt()
        assert e.value.errno == errno.EIO
    with pytest.raises(OSError):
        os.close(fd)   # close's flush fails too; the fd is gone anyway
    assert fs.stats()["dead"]
    fs.remount()
    put(m / "g", b"fine")
    assert get(m / "g") == b"fine" and get(m / "f") == b"x" * 100


def test_unmount_while_a_file_is_open(fs):
    """Busy mount: unmount falls back to a lazy unmount and ends the daemon promptly."""
    fd = os.open(fs.mountpoint / "held", os.O_CREAT | os.O_RDWR, 0o644)
    os.write(fd, b"synced")
    os.fsync(fd)
    fs.power_cut("none", seed=9)
    t0 = time.monotonic()
    fs.unmount()
    assert time.monotonic() - t0 < 5
    assert not is_mounted(fs.mountpoint)
    close_after_cut(fd)
    fs.mount()
    assert get(fs.mountpoint / "held") == b"synced"


def test_space_limit_gives_enospc_then_writes_work_again(fs):
    m = fs.mountpoint
    put(m / "a", b"a" * 4000)
    fs.set_space_limit(10000)
    fd = os.open(m / "b", os.O_CREAT | os.O_RDWR, 0o644)
    try:
        os.write(fd, b"b" * 5000)                         # 9000 in all
        with pytest.raises(OSError) as e:
            os.write(fd, b"b" * 2000)
        assert e.value.errno == errno.ENOSPC
        with pytest.raises(OSError) as e:
            os.ftruncate(fd, 20000)
        assert e.value.errno == errno.ENOSPC
        os.pwrite(fd, b"B" * 3000, 1000)                  # overwrite within the size
        fs.set_space_limit(None)
        os.write(fd, b"c" * 2000)
        fs.set_space_limit(12000)
        assert os.statvfs(m).f_bavail * os.statvfs(m).f_frsize < 2000
        os.fsync(fd)
    finally:
        os.close(fd)
    assert get(m / "b") == b"b" * 1000 + b"B" * 3000 + b"b" * 1000 + b"c" * 2000
    assert fs.stats()["enospc"] == 2


def test_fsync_delay_is_a_lower_bound_on_fsync_time(fs):
    fd = os.open(fs.mountpoint / "f", os.O_CREAT | os.O_RDWR, 0o644)
    try:
        os.write(fd, b"x")
        fs.set_fsync_delay(150)
        for sync in (os.fsync, os.fdatasync):
            t0 = time.monotonic()
            sync(fd)
            assert time.monotonic() - t0 >= 0.15
        fs.set_fsync_delay(0)
    finally:
        os.close(fd)


def test_mmap_reader_sees_unsynced_writes(fs):
    """LMDB reads its data file through a read-only MAP_SHARED mapping: page faults must see
    the newest (unsynced) data, also when the kernel has to ask crashfs for it."""
    path = fs.mountpoint / "data.mdb"
    put(path, b"o" * (4 * PAGE))
    wfd = os.open(path, os.O_RDWR)
    rfd = os.open(path, os.O_RDONLY)
    try:
        os.pwrite(wfd, b"n" * PAGE, PAGE)
        os.posix_fadvise(rfd, 0, 0, os.POSIX_FADV_DONTNEED)   # drop the kernel's copy
        with mmap.mmap(rfd, 0, prot=mmap.PROT_READ, flags=mmap.MAP_SHARED) as mm:
            assert mm[PAGE:2 * PAGE] == b"n" * PAGE and mm[:PAGE] == b"o" * PAGE
            os.pwrite(wfd, b"z" * 10, 3 * PAGE)               # while mapped
            assert mm[3 * PAGE:3 * PAGE + 11] == b"z" * 10 + b"o"
        assert fs.stats()["reads"] > 0
    finally:
        os.close(rfd)
        os.close(wfd)


def test_o_dsync_write_survives_a_none_cut_o_direct_does_not(fs):
    m = fs.mountpoint
    put(m / "meta", b"M" * 100, sync=False, flags=os.O_DSYNC)
    put(m / "plain", b"P" * 100, sync=False)
    aligned = mmap.mmap(-1, PAGE)
    aligned.write(b"D" * PAGE)
    put(m / "direct", aligned, sync=False, flags=os.O_DIRECT)   # an ordinary, volatile write
    assert get(m / "direct") == b"D" * PAGE
    fs.power_cut("none", seed=4)
    assert get(fs.backing / "meta") == b"M" * 100
    assert get(fs.backing / "plain") == b"" and get(fs.backing / "direct") == b""


def test_rename_and_unlink_keep_pending_data_consistent(fs):
    m = fs.mountpoint
    put(m / "target", b"old" * 100)                      # durable
    put(m / "tmp", b"new" * 100, sync=False)
    os.rename(m / "tmp", m / "target")                  # a pending file replaces a durable one
    put(m / "moved.tmp", b"kept" * 100, sync=False)
    fd = os.open(m / "moved.tmp", os.O_RDWR)
    os.rename(m / "moved.tmp", m / "moved")
    os.fsync(fd)                                          # the fd follows the file
    os.close(fd)
    put(m / "gone", b"g" * 100, sync=False)
    os.unlink(m / "gone")
    assert get(m / "target") == b"new" * 100
    summary = fs.power_cut("none", seed=5)
    assert summary["pages_pending"] == 1                 # target's; "gone" was dropped
    assert sorted(os.listdir(fs.backing)) == ["moved", "target"]
    assert get(fs.backing / "target") == b""             # renamed at once, its data not synced
    assert get(fs.backing / "moved") == b"kept" * 100


def test_truncate_is_volatile_until_fsync(fs):
    m = fs.mountpoint
    put(m / "a", b"a" * (3 * PAGE))
    put(m / "b", b"b" * (3 * PAGE))
    os.truncate(m / "a", 100)
    fd = os.open(m / "b", os.O_RDWR)
    os.ftruncate(fd, 100)
    os.fsync(fd)
    os.close(fd)
    assert os.path.getsize(m / "a") == 100
    fs.power_cut("none", seed=6)
    assert get(fs.backing / "a") == b"a" * (3 * PAGE)
    assert get(fs.backing / "b") == b"b" * 100


def test_memory_pressure_writes_back_the_biggest_file(tmp_path):
    reason = crashfs_unavailable()
    if reason:
        pytest.skip(reason)
    with CrashFS(tmp_path / "b", tmp_path / "m", max_pending_mb=1) as fs:
        put(fs.mountpoint / "small", b"s" * 100, sync=False)
        put(fs.mountpoint / "big", b"B" * (2 << 20), sync=False)
        assert fs.stats()["writebacks"] >= 1
        fs.power_cut("none", seed=10)
        assert get(fs.backing / "small") == b""
        assert len(get(fs.backing / "big")) >= 1 << 20   # written back, so durable


def test_zookeeper_style_preallocation_is_cheap(fs):
    """A write of one byte at 64 MiB, as ZooKeeper pads its log: fast, little memory, and a
    sparse 64 MiB file after fsync."""
    path = fs.mountpoint / "log.1"
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        t0 = time.monotonic()
        os.pwrite(fd, b"\0", (64 << 20) - 1)
        os.pwrite(fd, b"record", 16)
        os.fdatasync(fd)
        assert time.monotonic() - t0 < 2.0
        assert os.fstat(fd).st_size == 64 << 20
        assert os.pread(fd, 8, 14) == b"\0\0record"
    finally:
        os.close(fd)
    st = os.stat(fs.backing / "log.1")
    assert st.st_size == 64 << 20 and st.st_blocks * 512 < (1 << 20)


def test_writeback_makes_pending_writes_durable(crashfs):
    """writeback(): the kernel's periodic flush -- what was pending survives a "none" cut."""
    path = crashfs.mountpoint / "wb"
    with open(path, "wb") as f:
        f.write(b"flushed" * 1000)
        assert crashfs.writeback() >= 1
        f.write(b"+lost")
    crashfs.power_cut("none", 1)
    crashfs.remount()
    assert (crashfs.mountpoint / "wb").read_bytes() == b"flushed" * 1000
