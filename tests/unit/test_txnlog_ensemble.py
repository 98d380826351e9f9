"""TxnLog pieces for the ensemble: truncate_after (TRUNC), reset (SNAP), read_after (reading while
appends run in another thread). Only files in pytest temp dirs."""

import os
import shutil
import threading
import time

import pytest

from zkpy.errors import StorageCorruptError
from zkpy.storage import txnlog as txnlog_mod
from zkpy.storage.txnlog import (
    FILE_HEADER_SIZE,
    LogChangedError,
    TxnLog,
    encode_record,
    list_log_files,
)

EPOCH = 5 << 32


def payload(z):
    return b"txn-%d-" % z + bytes([z & 0xFF]) * (z % 37)


def recs(lo, hi):
    return [(EPOCH + z, payload(z)) for z in range(lo, hi)]


def open_log(d, **kw):
    log = TxnLog(str(d), **kw)
    got = list(log.recover(0))
    log.open_for_append()
    return log, got


def recover_all(d, after=0):
    log = TxnLog(str(d))
    got = list(log.recover(after))
    return log, got


def files(d):
    return [p for _, p in list_log_files(str(d))]


def three_files(d):
    """Files holding 1..10, 11..20, 21..30 (one per batch)."""
    log, _ = open_log(d, roll_bytes=1)
    for lo in (1, 11, 21):
        log.append_batch(recs(lo, lo + 10))
    log.close()
    assert len(files(d)) == 3
    return recs(1, 31)


@pytest.mark.parametrize("keep_to,expect_files", [
    (15, 2),    # middle of the second file
    (10, 1),    # file boundary: the end of the first file
    (20, 2),    # file boundary: the end of the second file
    (11, 2),    # only the first record of the second file stays
    (0, 0),     # before everything: empties the log
    (30, 3),    # the last record: no-op
    (1000, 3),  # beyond the end: no-op
])
@pytest.mark.parametrize("opened", [False, True])
def test_truncate_then_append_and_recover(tmp_path, keep_to, expect_files, opened):
    everything = three_files(tmp_path)
    before = {p: os.path.getsize(p) for p in files(tmp_path)}
    log = TxnLog(str(tmp_path), roll_bytes=1 << 20)
    if opened:
        list(log.recover(0))
        log.open_for_append()
    last = log.truncate_after(EPOCH + keep_to if keep_to else 0)
    kept = [r for r in everything if r[0] <= EPOCH + keep_to]
    assert last == log.last_zxid == (kept[-1][0] if kept else 0)
    assert len(files(tmp_path)) == expect_files
    if keep_to >= 30:
        assert {p: os.path.getsize(p) for p in files(tmp_path)} == before  # untouched
    if not opened:
        assert list(log.recover(0)) == kept
        log.open_for_append()
    new = [(EPOCH + (1 << 20) + z, b"new-%d" % z) for z in range(3)]
    with pytest.raises(ValueError):  # appends must still continue above the kept records
        log.append_batch([(kept[-1][0] if kept else 0, b"x")])
    log.append_batch(new[:2])
    log.append_batch(new[2:])
    log.close()
    log2, got = recover_all(tmp_path)
    assert got == kept + new and log2.last_zxid == new[-1][0]


def test_truncate_before_recover_cuts_a_torn_tail(tmp_path):
    everything = three_files(tmp_path)
    with open(files(tmp_path)[-1], "ab") as f:
        f.write(encode_record(EPOCH + 31, b"torn")[:-2])
    log = TxnLog(str(tmp_path))
    assert log.truncate_after(EPOCH + 25) == EPOCH + 25
    assert recover_all(tmp_path)[1] == everything[:25]


def test_truncate_refuses_damage_below_the_boundary(tmp_path):
    three_files(tmp_path)
    path = files(tmp_path)[1]
    sizes = {p: os.path.getsize(p) for p in files(tmp_path)}
    with open(path, "r+b") as f:  # flip a payload byte of the second file's first record
        f.seek(FILE_HEADER_SIZE + 20)
        b = f.read(1)
        f.seek(FILE_HEADER_SIZE + 20)
        f.write(bytes([b[0] ^ 0xFF]))
    with pytest.raises(StorageCorruptError, match="log.%016x" % (EPOCH + 11)):
        TxnLog(str(tmp_path)).truncate_after(EPOCH + 15)
    assert {p: os.path.getsize(p) for p in files(tmp_path)} == sizes  # nothing changed


def test_truncate_order_newest_first_with_dir_fsync(tmp_path, monkeypatch):
    three_files(tmp_path)
    fs = files(tmp_path)
    ops = []
    real_unlink, real_ftruncate, real_fsync = os.unlink, os.ftruncate, os.fsync
    monkeypatch.setattr(os, "unlink", lambda p: (ops.append(("unlink", p)), real_unlink(p))[1])
    monkeypatch.setattr(os, "ftruncate", lambda fd, n: (ops.append(("ftruncate", n)),
                                                        real_ftruncate(fd, n))[1])

    def fsync(fd):
        import stat
        ops.append(("fsync-dir",) if stat.S_ISDIR(os.fstat(fd).st_mode) else ("fsync",))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    TxnLog(str(tmp_path)).truncate_after(EPOCH + 5)
    assert ops[:4] == [("unlink", fs[2]), ("fsync-dir",), ("unlink", fs[1]), ("fsync-dir",)]
    assert ops[4][0] == "ftruncate" and ops[5:] == [("fsync",)]


class _Crash(Exception):
    pass


@pytest.mark.parametrize("keep_to", [0, 5, 10, 15])
def test_crash_at_every_step_of_truncate_leaves_a_prefix(tmp_path, monkeypatch, keep_to):
    """Stop truncate_after after each of its durable steps (kill -9 there: every completed step
    was fsync'ed): recovery always finds the old log cut at some zxid >= the target, without a
    hole; truncating again finishes the job."""
    src = tmp_path / "src"
    everything = three_files(src)
    step = 0
    while True:
        d = tmp_path / ("crash%d" % step)
        shutil.copytree(str(src), str(d))
        budget = [step]

        def guard(real):
            def f(*a):
                if budget[0] == 0:
                    raise _Crash()
                budget[0] -= 1
                return real(*a)
            return f

        monkeypatch.setattr(os, "unlink", guard(os.unlink))
        monkeypatch.setattr(os, "ftruncate", guard(os.ftruncate))
        crashed = False
        try:
            TxnLog(str(d)).truncate_after(EPOCH + keep_to)
        except _Crash:
            crashed = True
        monkeypatch.undo()
        _, got = recover_all(d)
        assert got == everything[:len(got)] and len(got) >= keep_to  # a prefix holding the new log
        TxnLog(str(d)).truncate_after(EPOCH + keep_to)
        assert recover_all(d)[1] == everything[:keep_to]
        if not crashed:
            break
        step += 1
    assert step >= 1


def test_truncate_while_open_waits_for_an_append(tmp_path, monkeypatch):
    log, _ = open_log(tmp_path)
    log.append_batch(recs(1, 6))
    entered, release = threading.Event(), threading.Event()
    real = txnlog_mod._data_sync

    def slow_sync(fd):
        entered.set()
        release.wait(5)
        real(fd)

    monkeypatch.setattr(txnlog_mod, "_data_sync", slow_sync)
    t = threading.Thread(target=log.append_batch, args=(recs(6, 9),))
    t.start()
    assert entered.wait(5)
    done = []
    tr = threading.Thread(target=lambda: done.append(log.truncate_after(EPOCH + 3)))
    tr.start()
    time.sleep(0.05)
    assert not done  # waits for the in-flight batch
    release.set()
    t.join(5)
    tr.join(5)
    monkeypatch.setattr(txnlog_mod, "_data_sync", real)
    assert done == [EPOCH + 3]
    log.append_batch(recs(100, 102))
    assert list(log.read_after(0)) == recs(1, 4) + recs(100, 102)
    log.close()
    assert recover_all(tmp_path)[1] == recs(1, 4) + recs(100, 102)


@pytest.mark.parametrize("opened", [False, True])
def test_reset(tmp_path, opened):
    three_files(tmp_path)
    log = TxnLog(str(tmp_path))
    if opened:
        list(log.recover(0))
        log.open_for_append()
    log.reset()
    assert files(tmp_path) == [] and log.last_zxid == 0
    if not opened:
        assert list(log.recover(0)) == []
        log.open_for_append()
    new = [((7 << 32) + 1, b"a"), ((7 << 32) + 2, b"b")]
    log.append_batch(new)
    log.close()
    assert [os.path.basename(p) for p in files(tmp_path)] == ["log.%016x" % new[0][0]]
    assert recover_all(tmp_path)[1] == new


def test_reset_deletes_newest_first_and_a_crash_leaves_a_prefix(tmp_path, monkeypatch):
    everything = three_files(tmp_path)
    fs = files(tmp_path)
    ops = []
    real_unlink = os.unlink

    def unlink(p):
        if len(ops) == 2:
            raise _Crash()
        ops.append(p)
        real_unlink(p)

    monkeypatch.setattr(os, "unlink", unlink)
    with pytest.raises(_Crash):
        TxnLog(str(tmp_path)).reset()
    monkeypatch.undo()
    assert ops == [fs[2], fs[1]]
    assert recover_all(tmp_path)[1] == everything[:10]
    TxnLog(str(tmp_path)).reset()
    assert files(tmp_path) == []


def test_read_after_not_open(tmp_path):
    everything = three_files(tmp_path)
    log = TxnLog(str(tmp_path))
    assert list(log.read_after(0)) == everything
    assert list(log.read_after(EPOCH + 14)) == everything[14:]
    assert list(log.read_after(EPOCH + 30)) == []
    # a torn tail of the newest file ends the iteration quietly
    with open(files(tmp_path)[-1], "ab") as f:
        f.write(encode_record(EPOCH + 31, b"torn-tail")[:-3])
    assert list(log.read_after(EPOCH + 25)) == everything[25:]
    # damage in an older file is corruption
    with open(files(tmp_path)[0], "r+b") as f:
        f.seek(FILE_HEADER_SIZE + 18)
        f.write(b"\xff\xff")
    with pytest.raises(StorageCorruptError, match="log.%016x" % (EPOCH + 1)):
        list(log.read_after(0))


def test_read_after_small_chunks(tmp_path):
    everything = three_files(tmp_path)
    log, _ = open_log(tmp_path)
    assert list(log.read_after(EPOCH + 3, chunk_bytes=7)) == everything[3:]
    log.close()


def test_read_after_never_reads_past_complete_data(tmp_path, monkeypatch):
    """A batch written but not yet fdatasync'ed, and bytes beyond it, are not read."""
    log, _ = open_log(tmp_path)
    log.append_batch(recs(1, 6))
    entered, release = threading.Event(), threading.Event()
    real = txnlog_mod._data_sync

    def slow_sync(fd):
        entered.set()
        release.wait(5)
        real(fd)

    monkeypatch.setattr(txnlog_mod, "_data_sync", slow_sync)
    t = threading.Thread(target=log.append_batch, args=(recs(6, 9),))
    t.start()
    assert entered.wait(5)
    path = files(tmp_path)[-1]
    with open(path, "ab") as f:  # and a partial record after it, as a torn write would leave
        f.write(b"\x00\x00\x01\x00garbage")
    it = log.read_after(EPOCH + 2)  # started now: ends at the data complete now
    release.set()
    t.join(5)
    assert list(it) == recs(3, 6)
    log.close()


def test_read_after_with_concurrent_appends(tmp_path):
    log, _ = open_log(tmp_path, roll_bytes=4096)
    n_batches = 400
    appended = [0]  # number of records known complete (updated after append_batch returns)
    errors = []

    def writer():
        try:
            z = 1
            for i in range(n_batches):
                k = 1 + i % 7
                log.append_batch(recs(z, z + k))
                z += k
                appended[0] = z - 1
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    t = threading.Thread(target=writer)
    t.start()
    reads = 0
    while t.is_alive() or reads < 3:
        done_before = appended[0]
        after = done_before // 2
        got = list(log.read_after(EPOCH + after))
        assert len(got) >= done_before - after
        assert got == recs(after + 1, after + 1 + len(got))
        reads += 1
    t.join()
    assert not errors
    assert list(log.read_after(0)) == recs(1, appended[0] + 1)
    assert len(files(tmp_path)) > 3  # rolled several times meanwhile
    log.close()


def test_read_after_survives_purge_and_fails_on_truncate(tmp_path):
    everything = three_files(tmp_path)
    log, _ = open_log(tmp_path)
    it = log.read_after(0)
    assert next(it) == everything[0]
    assert log.purge(EPOCH + 1000, retain_files=1)  # files opened at the call stay readable
    assert list(it) == everything[1:]
    it = log.read_after(0)
    assert next(it) == everything[20]
    log.truncate_after(EPOCH + 25)
    with pytest.raises(LogChangedError):
        list(it)
    log.close()
