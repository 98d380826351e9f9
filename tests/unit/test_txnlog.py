"""TxnLog: format round trip, rolling, torn-tail recovery, corruption detection, purge, forceSync."""

import errno
import logging
import os
import time

import pytest

from zkpy.errors import LogAppendError, StorageCorruptError
from zkpy.storage import txnlog as txnlog_mod
from zkpy.storage.txnlog import (
    FILE_HEADER_SIZE,
    RECORD_HEADER_SIZE,
    TxnLog,
    list_log_files,
    log_file_name,
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


def write_log(d, batches, **kw):
    log, _ = open_log(d, **kw)
    for b in batches:
        log.append_batch(b)
    log.close()


def recover_all(d, after=0, **kw):
    log = TxnLog(str(d), **kw)
    got = list(log.recover(after))
    return log, got


def files(d):
    return [p for _, p in list_log_files(str(d))]


def test_empty_dir(tmp_path):
    log, got = recover_all(tmp_path / "missing")
    assert got == [] and log.last_zxid == 0
    log.open_for_append()
    log.append_batch(recs(1, 3))
    log.close()
    assert recover_all(tmp_path / "missing")[1] == recs(1, 3)


def test_round_trip_and_roll(tmp_path):
    batches = [recs(i * 10 + 1, i * 10 + 11) for i in range(12)]
    write_log(tmp_path, batches, roll_bytes=500)
    fs = files(tmp_path)
    assert len(fs) > 3
    # Each file is named after its first record, and rolls happened at batch boundaries.
    starts = {b[0][0] for b in batches}
    for first, _ in list_log_files(str(tmp_path)):
        assert first in starts
    log, got = recover_all(tmp_path)
    assert got == [r for b in batches for r in b]
    assert log.last_zxid == EPOCH + 120
    # Reopen and keep appending: continues the last file or starts a new one, still consistent.
    log.open_for_append()
    log.append_batch(recs(121, 125))
    log.close()
    assert recover_all(tmp_path)[1] == recs(1, 125)


def test_recover_after_zxid(tmp_path):
    batches = [recs(i * 10 + 1, i * 10 + 11) for i in range(10)]
    write_log(tmp_path, batches, roll_bytes=400)
    for after in (0, 1, 10, 11, 55, 99, 100, 200):
        log, got = recover_all(tmp_path, after=EPOCH + after)
        assert got == [r for r in recs(1, 101) if r[0] > EPOCH + after]
        assert log.last_zxid == EPOCH + 100


def test_zxids_must_increase(tmp_path):
    log, _ = open_log(tmp_path)
    log.append_batch(recs(5, 7))
    with pytest.raises(ValueError):
        log.append_batch(recs(6, 8))
    with pytest.raises(ValueError):
        log.append_batch([(EPOCH + 9, b"a"), (EPOCH + 9, b"b")])
    log.append_batch(recs(7, 8))  # a rejected batch writes nothing
    log.close()
    assert recover_all(tmp_path)[1] == recs(5, 8)


def test_open_for_append_requires_recover(tmp_path):
    with pytest.raises(RuntimeError):
        TxnLog(str(tmp_path)).open_for_append()


def _two_file_log(d):
    """Two files; the last holds records 11..15. Returns (all records, last file, offsets in it)."""
    log, _ = open_log(d, roll_bytes=1)
    log.append_batch(recs(1, 11))  # exceeds roll_bytes: the next batch starts a new file
    log.roll_bytes = 1 << 20
    log.append_batch(recs(11, 14))
    log.append_batch(recs(14, 16))
    log.close()
    fs = files(d)
    assert len(fs) == 2
    offsets, off = [], FILE_HEADER_SIZE
    for z, p in recs(11, 16):
        offsets.append(off)
        off += RECORD_HEADER_SIZE + len(p)
    assert os.path.getsize(fs[-1]) == off
    return recs(1, 16), fs[-1], offsets


def test_torn_last_record_every_offset(tmp_path, caplog):
    src = tmp_path / "src"
    src.mkdir()
    allrecs, last, offsets = _two_file_log(src)
    data = open(last, "rb").read()
    start = offsets[-1]
    for cut in range(start, len(data)):
        with open(last, "wb") as f:
            f.write(data[:cut])
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="zkpy.storage.txnlog"):
            log, got = recover_all(src)
        assert got == allrecs[:-1], cut
        assert log.last_zxid == allrecs[-2][0]
        if cut > start:
            assert os.path.getsize(last) == start
            warns = [r for r in caplog.records if r.levelno == logging.WARNING]
            assert len(warns) == 1
            msg = warns[0].getMessage()
            assert last in msg and str(start) in msg
        else:
            assert not caplog.records  # exactly at a record boundary: nothing torn
    # After truncation, appending works and the next recovery is clean.
    log.open_for_append()
    log.append_batch(recs(15, 17))
    log.close()
    assert recover_all(src)[1] == recs(1, 17)


def test_torn_new_file_header_is_removed(tmp_path, caplog):
    write_log(tmp_path, [recs(1, 5)])
    for partial in (b"", txnlog_mod.FILE_HEADER[:5], txnlog_mod.FILE_HEADER + b"\x07\x00"):
        path = os.path.join(str(tmp_path), log_file_name(EPOCH + 5))
        with open(path, "wb") as f:
            f.write(partial)
        with caplog.at_level(logging.WARNING, logger="zkpy.storage.txnlog"):
            log, got = recover_all(tmp_path)
        assert got == recs(1, 5)
        assert log.last_zxid == EPOCH + 4
        assert not os.path.exists(path)
        assert any(path in r.getMessage() for r in caplog.records)
    log.open_for_append()
    log.append_batch(recs(5, 6))
    log.close()
    assert recover_all(tmp_path)[1] == recs(1, 6)


def _flip(path, offset):
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0x01]))


@pytest.mark.parametrize("field", [4, 12, RECORD_HEADER_SIZE + 2])  # crc, zxid, payload
def test_crc_flip_last_record_dropped(tmp_path, caplog, field):
    allrecs, last, offsets = _two_file_log(tmp_path)
    _flip(last, offsets[-1] + field)
    with caplog.at_level(logging.WARNING, logger="zkpy.storage.txnlog"):
        log, got = recover_all(tmp_path)
    assert got == allrecs[:-1]
    assert os.path.getsize(last) == offsets[-1]
    assert any("CRC" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("field", [0, 4, 12, RECORD_HEADER_SIZE + 2])  # length, crc, zxid, payload
def test_crc_flip_middle_record_is_corruption(tmp_path, field):
    allrecs, last, offsets = _two_file_log(tmp_path)
    size = os.path.getsize(last)
    bad = offsets[2]
    if field == 0:
        # Make the length point past the end of file, so it looks torn: the search must still see
        # the valid records after it.
        with open(last, "r+b") as f:
            f.seek(bad)
            f.write((10_000).to_bytes(4, "big"))
    else:
        _flip(last, bad + field)
    with pytest.raises(StorageCorruptError) as ei:
        list(TxnLog(str(tmp_path)).recover(0))
    msg = str(ei.value)
    assert last in msg and "offset %d" % bad in msg
    assert os.path.getsize(last) == size  # never truncate data we cannot explain


def test_corruption_in_older_file(tmp_path):
    allrecs, last, offsets = _two_file_log(tmp_path)
    first = files(tmp_path)[0]
    size = os.path.getsize(first)
    _flip(first, size - 1)  # last record of the older file
    with pytest.raises(StorageCorruptError) as ei:
        list(TxnLog(str(tmp_path)).recover(0))
    assert first in str(ei.value) and "offset" in str(ei.value)
    # A torn (short) older file is corruption too.
    _flip(first, size - 1)
    with open(first, "r+b") as f:
        f.truncate(size - 3)
    with pytest.raises(StorageCorruptError):
        list(TxnLog(str(tmp_path)).recover(0))


def test_bad_header(tmp_path):
    write_log(tmp_path, [recs(1, 3)])
    path = files(tmp_path)[0]
    _flip(path, 2)
    with pytest.raises(StorageCorruptError) as ei:
        list(TxnLog(str(tmp_path)).recover(0))
    assert path in str(ei.value)


@pytest.mark.parametrize("zeros", [1, 15, 16, 17, 4096])
def test_zero_tail(tmp_path, caplog, zeros):
    allrecs, last, offsets = _two_file_log(tmp_path)
    size = os.path.getsize(last)
    with open(last, "ab") as f:
        f.write(b"\0" * zeros)
    with caplog.at_level(logging.WARNING, logger="zkpy.storage.txnlog"):
        log, got = recover_all(tmp_path)
    assert got == allrecs
    assert os.path.getsize(last) == size
    assert any("zero" in r.getMessage() for r in caplog.records)


def test_zeroed_region_followed_by_data_is_corruption(tmp_path):
    # Further from the end than one append can reach (max_append_bytes): no power cut left it.
    allrecs, last, offsets = _two_file_log(tmp_path)
    with open(last, "r+b") as f:
        f.seek(offsets[1])
        f.write(b"\0" * (offsets[2] - offsets[1]))
    reach = os.path.getsize(last) - offsets[1] - 1
    with pytest.raises(StorageCorruptError) as ei:
        list(TxnLog(str(tmp_path), max_append_bytes=reach).recover(0))
    assert "offset %d" % offsets[1] in str(ei.value)


def _big_batch_log(d, lost_pages, page=4096):
    """One synced batch, then one batch of many records spanning several pages whose pages
    `lost_pages` (indexes in the file) read as zeros -- what a power cut leaves of an append
    written but not yet fdatasynced when the kernel wrote some of its pages back and not
    others. Returns (the first batch's records, the file, the second batch's offsets)."""
    first = recs(1, 4)
    second = [(EPOCH + z, b"big-%d-" % z + bytes([z & 0xFF]) * 700) for z in range(4, 40)]
    write_log(d, [first, second])
    path = files(d)[-1]
    offsets, off = [], FILE_HEADER_SIZE + sum(RECORD_HEADER_SIZE + len(p) for _, p in first)
    for _, p in second:
        offsets.append(off)
        off += RECORD_HEADER_SIZE + len(p)
    with open(path, "r+b") as f:
        for i in lost_pages:
            f.seek(i * page)
            f.write(bytes(page))
    return first, path, second, offsets


@pytest.mark.parametrize("lost", [[1], [2], [1, 3], [2, 4, 5]])
def test_power_cut_tore_an_unsynced_multi_page_append(tmp_path, caplog, lost):
    # Pages of one write not yet synced reach the disk in any order: a lost page can be
    # followed by written ones, so valid records after the damage are not corruption here --
    # they belong to the same torn, never acknowledged append. The log is cut at the damage.
    first, path, second, offsets = _big_batch_log(tmp_path, lost)
    bad = next(i for i, (off, (_, p)) in enumerate(zip(offsets, second))
               if off + RECORD_HEADER_SIZE + len(p) > lost[0] * 4096)   # overlaps the 1st lost
    with caplog.at_level(logging.WARNING, logger="zkpy.storage.txnlog"):
        log, got = recover_all(tmp_path)
    assert got == first + second[:bad]
    assert os.path.getsize(path) == offsets[bad]
    assert any("torn" in r.getMessage() for r in caplog.records)
    log.open_for_append()
    log.append_batch(second[bad:])   # the log goes on from there
    log.close()
    assert recover_all(tmp_path)[1] == first + second


def test_bit_flip_in_an_unsynced_append_is_still_corruption(tmp_path):
    # No zeroed sector in the damage: not a lost write, whatever its distance from the end.
    first, path, second, offsets = _big_batch_log(tmp_path, [])
    _flip(path, offsets[3] + RECORD_HEADER_SIZE + 5)
    with pytest.raises(StorageCorruptError) as ei:
        list(TxnLog(str(tmp_path)).recover(0))
    assert "offset %d" % offsets[3] in str(ei.value)


def test_new_file_whose_first_page_was_lost_is_removed(tmp_path, caplog):
    # A new file is written with its first batch in one write: a zeroed header followed by
    # data is that write torn by a power cut (the file never held anything synced).
    write_log(tmp_path, [recs(1, 5)])
    path = os.path.join(str(tmp_path), log_file_name(EPOCH + 5))
    later = [(EPOCH + z, b"x" * 700) for z in range(5, 20)]
    body = txnlog_mod.FILE_HEADER + txnlog_mod.encode_records(later, EPOCH + 4)
    assert len(body) > 2 * 4096
    with open(path, "wb") as f:
        f.write(bytes(4096) + body[4096:])
    with caplog.at_level(logging.WARNING, logger="zkpy.storage.txnlog"):
        log, got = recover_all(tmp_path)
    assert got == recs(1, 5) and not os.path.exists(path)
    # a zeroed header in an older file, or one that reaches too far, is corruption
    with open(path, "wb") as f:
        f.write(bytes(4096) + body[4096:])
    with pytest.raises(StorageCorruptError):
        list(TxnLog(str(tmp_path), max_append_bytes=4096).recover(0))


def test_purge(tmp_path):
    batches = [recs(i * 10 + 1, i * 10 + 11) for i in range(8)]
    write_log(tmp_path, batches, roll_bytes=1)  # one file per batch
    fs = files(tmp_path)
    assert len(fs) == 8
    log = TxnLog(str(tmp_path))
    assert log.purge(EPOCH + 9, retain_files=3) == []  # file 1 still needs its record 10
    assert log.purge(EPOCH + 10, retain_files=3) == fs[:1]
    assert log.purge(EPOCH + 35, retain_files=3) == fs[1:3]
    assert log.purge(EPOCH + 10_000, retain_files=3) == fs[3:5]  # keep the 3 newest
    assert files(tmp_path) == fs[5:]
    assert log.purge(EPOCH + 10_000, retain_files=0) == fs[5:7]  # the newest file always stays
    log2, got = recover_all(tmp_path)
    assert got == recs(71, 81)


@pytest.mark.parametrize("cut_after", range(5))
def test_power_cut_during_purge_leaves_no_hole(tmp_path, monkeypatch, cut_after):
    """Purge deletes oldest first, each deletion durable (directory fsync) before the next: a
    power cut after any number of them leaves the log from some file on, every record past
    the checkpoint zxid still there and no gap."""
    batches = [recs(i * 10 + 1, i * 10 + 11) for i in range(8)]
    write_log(tmp_path, batches, roll_bytes=1)
    checkpoint = EPOCH + 55
    real_unlink = os.unlink
    done = []

    def unlink(path):
        if len(done) == cut_after:
            raise KeyboardInterrupt("power cut")
        real_unlink(path)
        done.append(path)
    monkeypatch.setattr(os, "unlink", unlink)
    log = TxnLog(str(tmp_path))
    try:
        log.purge(checkpoint, retain_files=1)
    except KeyboardInterrupt:
        pass
    monkeypatch.undo()
    fs = files(tmp_path)
    assert fs == sorted(fs) and len(fs) == 8 - min(cut_after, 5)
    got = recover_all(tmp_path)[1]
    zxids = [z for z, _ in got]
    assert zxids == list(range(zxids[0], EPOCH + 81))        # contiguous to the end
    assert zxids[0] <= checkpoint + 1                          # everything past the checkpoint


def test_force_sync_no_skips_fsync(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(os, "fsync", lambda fd: calls.append(("fsync", fd)))
    monkeypatch.setattr(os, "fdatasync", lambda fd: calls.append(("fdatasync", fd)), raising=False)
    log, _ = open_log(tmp_path, force_sync=False, roll_bytes=100)
    for i in range(5):
        log.append_batch(recs(i * 3 + 1, i * 3 + 4))
    log.close()
    assert calls == []
    assert log.last_fsync_ms is None
    log, _ = open_log(tmp_path, force_sync=True)
    log.append_batch(recs(100, 101))
    log.close()
    assert calls  # and force_sync=True does sync
    assert recover_all(tmp_path)[1] == recs(1, 16) + recs(100, 101)


def test_new_file_fsyncs_directory(tmp_path, monkeypatch):
    synced_dirs = []
    real_fsync = os.fsync

    def fsync(fd):
        import stat

        if stat.S_ISDIR(os.fstat(fd).st_mode):
            synced_dirs.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    log, _ = open_log(tmp_path, roll_bytes=1)
    log.append_batch(recs(1, 2))
    log.append_batch(recs(2, 3))
    log.close()
    assert len(synced_dirs) == 2


def test_slow_fsync_warns(tmp_path, monkeypatch, caplog):
    log, _ = open_log(tmp_path, fsync_warning_ms=0)
    monkeypatch.setattr(txnlog_mod, "_data_sync", lambda fd: __import__("time").sleep(0.002))
    with caplog.at_level(logging.WARNING, logger="zkpy.storage.txnlog"):
        log.append_batch(recs(1, 2))
    log.close()
    assert any("fsync-ing the write ahead log" in r.getMessage() for r in caplog.records)


def test_write_error_propagates_and_poisons(tmp_path, monkeypatch):
    """An error that is not a full or failing disk (here EROFS: a file system remounted
    read-only) leaves the log unusable."""
    log, _ = open_log(tmp_path)
    log.append_batch(recs(1, 2))

    def boom(fd, data, offset):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(os, "pwrite", boom)
    with pytest.raises(OSError):
        log.append_batch(recs(2, 3))
    monkeypatch.undo()
    with pytest.raises(RuntimeError):
        log.append_batch(recs(3, 4))
    log.close()


def test_request_roll_starts_a_new_file_after_the_next_batch(tmp_path):
    from zkpy.storage.txnlog import TxnLog, list_log_files
    log = TxnLog(str(tmp_path), force_sync=False)
    list(log.recover(0))
    log.open_for_append()
    log.append_batch([(1, b"a"), (2, b"b")])
    log.request_roll()
    log.append_batch([(3, b"c")])
    log.append_batch([(4, b"d")])
    log.close()
    assert [z for z, _ in list_log_files(str(tmp_path))] == [1, 4]
    again = TxnLog(str(tmp_path))
    assert [z for z, _ in again.recover(0)] == [1, 2, 3, 4]


# --- a full or failing disk: the batch is cut back, the log goes on ------------------------------

def _sizes(d):
    return {os.path.basename(p): os.path.getsize(p) for _, p in list_log_files(str(d))}


def _short_then_enospc(monkeypatch):
    """os.pwrite writes half of what it is given, then fails with ENOSPC (a file system filling
    up in the middle of a batch)."""
    real = os.pwrite
    calls = []

    def write(fd, data, offset):
        calls.append(len(data))
        if len(calls) == 1:
            return real(fd, bytes(data[:len(data) // 2]), offset)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "pwrite", write)
    return calls


@pytest.mark.parametrize("force_sync", [True, False])
def test_enospc_mid_batch_cuts_back_and_appends_go_on(tmp_path, monkeypatch, force_sync):
    log, _ = open_log(tmp_path, force_sync=force_sync)
    log.append_batch(recs(1, 5))
    before = _sizes(tmp_path)
    _short_then_enospc(monkeypatch)
    with pytest.raises(LogAppendError) as info:
        log.append_batch(recs(5, 40))
    monkeypatch.undo()
    e = info.value
    assert e.directory == str(tmp_path) and e.error.errno == errno.ENOSPC
    assert str(tmp_path) in str(e) and "No space left on device" in str(e)
    assert _sizes(tmp_path) == before   # the half-written batch is gone
    assert log.last_zxid == EPOCH + 4
    # The same zxids again (the core reuses them for other txns), then more.
    log.append_batch(recs(5, 8))
    log.append_batch(recs(8, 9))
    assert [z for z, _ in log.read_after(0)] == [EPOCH + z for z in range(1, 9)]
    log.close()
    assert list(TxnLog(str(tmp_path)).recover(0)) == recs(1, 9)


def test_eio_from_fdatasync_cuts_back(tmp_path, monkeypatch):
    log, _ = open_log(tmp_path)
    log.append_batch(recs(1, 3))
    before = _sizes(tmp_path)
    real = os.fdatasync
    failures = []

    def fdatasync(fd):
        if not failures:
            failures.append(fd)
            raise OSError(errno.EIO, "Input/output error")
        return real(fd)

    monkeypatch.setattr(os, "fdatasync", fdatasync)
    with pytest.raises(LogAppendError) as info:
        log.append_batch(recs(3, 6))
    assert info.value.error.errno == errno.EIO
    assert _sizes(tmp_path) == before
    log.append_batch(recs(3, 4))
    log.close()
    assert list(TxnLog(str(tmp_path)).recover(0)) == recs(1, 4)


def test_failure_in_a_new_file_removes_it(tmp_path, monkeypatch):
    """A batch that starts a file (the first one, or after a roll) and fails: the file goes
    (a header without records would be torn), the next append creates it again."""
    log, _ = open_log(tmp_path)
    _short_then_enospc(monkeypatch)
    with pytest.raises(LogAppendError):
        log.append_batch(recs(1, 10))
    monkeypatch.undo()
    assert list_log_files(str(tmp_path)) == []
    log.append_batch(recs(1, 3))
    log.request_roll()
    log.append_batch(recs(3, 4))   # ends the first file
    _short_then_enospc(monkeypatch)
    with pytest.raises(LogAppendError):
        log.append_batch(recs(4, 9))
    monkeypatch.undo()
    assert [z for z, _ in list_log_files(str(tmp_path))] == [EPOCH + 1]
    log.append_batch(recs(4, 6))
    log.close()
    assert [z for z, _ in list_log_files(str(tmp_path))] == [EPOCH + 1, EPOCH + 4]
    assert list(TxnLog(str(tmp_path)).recover(0)) == recs(1, 6)


def test_enospc_creating_the_file(tmp_path, monkeypatch):
    log, _ = open_log(tmp_path)
    real = os.open

    def no_inode(path, flags, *a):
        if flags & os.O_CREAT:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, flags, *a)

    monkeypatch.setattr(os, "open", no_inode)
    with pytest.raises(LogAppendError):
        log.append_batch(recs(1, 2))
    monkeypatch.undo()
    log.append_batch(recs(1, 2))
    log.close()
    assert list(TxnLog(str(tmp_path)).recover(0)) == recs(1, 2)


def test_failed_cut_back_poisons(tmp_path, monkeypatch, caplog):
    """If the file cannot be cut back, what it holds is unknown: the log is unusable."""
    log, _ = open_log(tmp_path)
    log.append_batch(recs(1, 2))
    _short_then_enospc(monkeypatch)

    def no_truncate(fd, size):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "ftruncate", no_truncate)
    with caplog.at_level(logging.ERROR, logger="zkpy.storage.txnlog"):
        with pytest.raises(OSError) as info:
            log.append_batch(recs(2, 5))
    assert not isinstance(info.value, LogAppendError)
    assert info.value.errno == errno.ENOSPC
    assert any("cannot cut the file back" in r.getMessage() for r in caplog.records)
    monkeypatch.undo()
    with pytest.raises(RuntimeError):
        log.append_batch(recs(2, 3))
    log.close()


# --- a slow disk ---------------------------------------------------------------------------------

def test_slow_fsync_warns_and_counts(tmp_path, monkeypatch, caplog):
    """Past fsync.warningthresholdms: ZooKeeper's warning (FileTxnLog.commit) and the count
    mntr reports as zk_fsync_threshold_exceed_count. Below it: neither."""
    log, _ = open_log(tmp_path, fsync_warning_ms=40)
    real = os.fdatasync
    delay = [0.08]

    def slow(fd):
        time.sleep(delay[0])
        return real(fd)

    monkeypatch.setattr(os, "fdatasync", slow)
    with caplog.at_level(logging.WARNING, logger="zkpy.storage.txnlog"):
        log.append_batch(recs(1, 3))
        log.append_batch(recs(3, 4))
        delay[0] = 0.0
        log.append_batch(recs(4, 5))
    assert log.fsync_threshold_exceed_count == 2
    assert log.last_fsync_ms < 40
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    size = os.path.getsize(list_log_files(str(tmp_path))[0][1])
    import re
    m = re.fullmatch(r"fsync-ing the write ahead log in (\S+) took (\d+)ms which will adversely "
                     r"effect operation latency\. File size is (\d+) bytes\. See the ZooKeeper "
                     r"troubleshooting guide", warnings[0])
    assert m, warnings[0]
    assert int(m.group(2)) >= 80
    assert int(m.group(3)) < size   # the size after that batch
    log.close()


# --- preallocation (preAllocSize): a sparse tail of zeros ahead of the records -------------------

def _data_end(path):
    return sum(len(r) for r in [open(path, "rb").read().rstrip(b"\0")])


def test_preallocation_extends_in_steps_and_close_cuts_the_zeros(tmp_path):
    log, _ = open_log(tmp_path, prealloc_bytes=4096)
    log.append_batch(recs(1, 3))
    path = files(tmp_path)[-1]
    assert os.path.getsize(path) == 4096
    for lo in range(3, 200, 20):
        log.append_batch(recs(lo, lo + 20))
        size = os.path.getsize(path)
        assert size % 4096 == 0 and size > log.size_since_roll()
    # Readers never see the zeros: read_after stops at the last complete record.
    assert list(log.read_after(0)) == recs(1, 203)
    log.close()
    assert os.path.getsize(path) == _data_end(path) == sum(
        RECORD_HEADER_SIZE + len(p) for _, p in recs(1, 203)) + FILE_HEADER_SIZE
    assert list(recover_all(tmp_path)[1]) == recs(1, 203)


def test_a_crash_leaves_zeros_that_recovery_cuts_quietly(tmp_path, caplog):
    log, _ = open_log(tmp_path, prealloc_bytes=1 << 16)
    log.append_batch(recs(1, 50))
    path = files(tmp_path)[-1]
    assert os.path.getsize(path) == 1 << 16
    # A crash: the process is gone without close(); the file keeps its preallocated length.
    os.close(log._fd)
    with caplog.at_level(logging.INFO, logger="zkpy.storage.txnlog"):
        again, got = recover_all(tmp_path, prealloc_bytes=1 << 16)
    assert got == recs(1, 50)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("preallocated space" in r.getMessage() for r in caplog.records)
    assert os.path.getsize(path) == _data_end(path)
    again.open_for_append()
    again.append_batch(recs(50, 60))
    again.close()
    assert recover_all(tmp_path)[1] == recs(1, 60)


def test_a_roll_cuts_the_older_files_zeros(tmp_path):
    """Only the newest file may end in zeros: a strict read of an older one would call them
    corruption."""
    log, _ = open_log(tmp_path, prealloc_bytes=4096)
    log.append_batch(recs(1, 5))
    log.request_roll()
    log.append_batch(recs(5, 6))
    log.append_batch(recs(6, 9))
    old, new = files(tmp_path)
    assert os.path.getsize(old) == _data_end(old)
    assert os.path.getsize(new) == 4096
    assert list(log.read_after(0)) == recs(1, 9)
    os.close(log._fd)   # a crash: the newest file keeps its zeros
    assert recover_all(tmp_path)[1] == recs(1, 9)


def test_truncate_after_with_a_preallocated_file(tmp_path):
    log, _ = open_log(tmp_path, prealloc_bytes=4096)
    log.append_batch(recs(1, 10))
    assert log.truncate_after(EPOCH + 5) == EPOCH + 5
    assert list(log.read_after(0)) == recs(1, 6)
    other = [(EPOCH + z, b"other-%d" % z) for z in range(6, 9)]
    log.append_batch(other)
    assert list(log.read_after(0)) == recs(1, 6) + other
    # Nothing to cut: the zeros are not records, so no file is touched.
    assert log.truncate_after(EPOCH + 8) == EPOCH + 8
    log.close()
    assert recover_all(tmp_path)[1] == recs(1, 6) + other


def test_a_lost_write_in_the_last_append_before_preallocated_zeros_is_a_torn_tail(tmp_path):
    """A power cut lost the first page of the last (unacknowledged) append but kept a later
    record of it: within one append's reach of the last record -- not of the file's
    preallocated end -- it is a torn tail, not corruption."""
    log, _ = open_log(tmp_path, prealloc_bytes=1 << 20, max_append_bytes=4096)
    log.append_batch(recs(1, 4))
    start = log.size_since_roll()
    log.append_batch(recs(4, 30))
    path = files(tmp_path)[-1]
    os.close(log._fd)
    fd = os.open(path, os.O_WRONLY)
    os.pwrite(fd, bytes(RECORD_HEADER_SIZE), start)   # the append's first record header: lost
    os.close(fd)
    assert os.path.getsize(path) == 1 << 20
    got = recover_all(tmp_path, max_append_bytes=4096)[1]
    assert got == recs(1, 4)


def test_a_damaged_last_record_before_preallocated_zeros_is_a_torn_tail(tmp_path):
    """Epoch 0 (a standalone server's zxids): the search for a valid record after the damage
    looks for the zxid's epoch bytes, 0 -- which every position of the zero tail matches. Only
    starts before the zeros are candidates (this took minutes on a 64 MiB tail before)."""
    log = TxnLog(str(tmp_path), prealloc_bytes=8 << 20)
    list(log.recover(0))
    log.open_for_append()
    records = [(z, b"payload-%d" % z) for z in range(1, 40)]
    log.append_batch(records[:-1])
    end = log.size_since_roll()
    log.append_batch(records[-1:])
    path = files(tmp_path)[-1]
    os.close(log._fd)
    fd = os.open(path, os.O_RDWR)
    last = os.pread(fd, 1, end + RECORD_HEADER_SIZE + 3)
    os.pwrite(fd, bytes([last[0] ^ 0x40]), end + RECORD_HEADER_SIZE + 3)   # its CRC fails
    os.close(fd)
    again, got = recover_all(tmp_path, prealloc_bytes=8 << 20)
    assert got == records[:-1]
    assert os.path.getsize(path) == end
