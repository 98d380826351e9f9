"""The write-ahead transaction log: zkpy's own, documented, append-only file format.

Owns the files ``<dir>/log.<first zxid as 16 lowercase hex digits>`` and nothing else in that
directory. Used by the server's persistence layer (through zkpy.storage.groupcommit for appends);
nothing in the pure layers (proto, tree, config) may import it, since it does file I/O.

This is *not* ZooKeeper's FileTxnLog format; it only keeps the same file naming idea, the same
"forceSync" and "fsync.warningthresholdms" behaviour and the same purge semantics.

File grammar (all integers big-endian, unsigned)::

    log-file    = file-header *record
    file-header = magic version header-crc                     ; 16 bytes
    magic       = "ZKPYTLOG"                                   ; 8 bytes
    version     = u32                                          ; 1
    header-crc  = u32     ; crc32c(magic || version)
    record      = length crc zxid payload                      ; 16 + length bytes
    length      = u32     ; number of payload bytes
    crc         = u32     ; crc32c(zxid || payload), i.e. over the 8 zxid bytes then the payload
    zxid        = u64     ; strictly increasing within a file and across files
    payload     = length OCTET    ; opaque to this module (a serialized txn)

    File name: "log." followed by the zxid of the file's first record as 16 lowercase hex digits.
    A file is created together with its first batch (header and records in one write), so every
    complete file holds at least one record and its first record's zxid equals its name.
    Every record of file N has a zxid lower than the name zxid of file N+1.

Recovery rules (see TxnLog.recover):

  * A damaged region at the very end of the newest file -- a torn/incomplete record, a record whose
    CRC does not match, a zero-filled tail (as left by preallocation or delayed allocation) -- is
    the expected result of a crash during a write: it is cut off (the file is truncated to its last
    good record, or removed if none is left) and one WARNING is logged.
  * So is damage in the newest file that valid records follow, if it shows a lost write (16 zero
    bytes where the record starts, or a zeroed 512-byte-aligned sector in it) and lies within one
    append's reach of the end (max_append_bytes): a power cut keeps any subset of the pages of
    the one append not yet fdatasynced (the kernel writes pages back in any order; pages never
    written back read as zeros in an append-only file), so the records after the lost page are
    of that same append -- never acknowledged -- and go with it.
  * Any other damaged record with a valid record after it, or damage anywhere in an older file,
    cannot come from a torn write: StorageCorruptError naming the file and byte offset.

Durability: each append_batch is one write followed (if force_sync) by fdatasync. Creating a new
file also fsyncs the directory so that the file's name survives a crash.

Preallocation (``prealloc_bytes``, zoo.cfg's preAllocSize, as ZooKeeper's FilePadding): the file
being appended to is extended (ftruncate: a sparse tail of zeros) in steps of prealloc_bytes
ahead of the records, so an append's fdatasync does not also have to write the file's new size
(on ext4 here: ~0.10 ms instead of ~0.15 ms). The zero tail is not part of the log: a file is
cut back to its last record (ftruncate + fdatasync) before appends move to the next file and on
close, so only the newest file can end in zeros, and recovery cuts them off as it cuts a torn
tail (logged at INFO when the file ends at a step of prealloc_bytes: after a crash they are the
expected preallocated space).

A full or failing disk (ENOSPC, EDQUOT or EIO from the write, the fdatasync or the file's creation):
append_batch cuts the file back to its size before the batch (ftruncate + fsync; a file created for
the batch is unlinked and the directory fsynced) and raises LogAppendError -- none of the batch is
in the log and the next append_batch may try again. Only if cutting back fails too is the log
unusable (the OSError propagates; every later call raises). Every fsync slower than
``fsync_warning_ms`` logs ZooKeeper's warning and counts in fsync_threshold_exceed_count.

Ensemble operations (Zab):

  * truncate_after(zxid) -- TRUNC: drop every record above zxid. Later files are deleted newest
    first, each deletion made durable (directory fsync) before the next, and only then is the file
    holding the boundary cut at the end of its last kept record (ftruncate + fsync). So every state
    a crash can leave is the old log cut at some zxid >= the target (a prefix of the old log that
    contains the new one): never a hole (a later file surviving an earlier deleted or cut one) and
    never a damaged header (a file is deleted whole or keeps at least its first record). Calling
    truncate_after again with the same zxid finishes the job.
  * reset() -- SNAP: delete every file, newest first, with a directory fsync after each; a crash
    leaves a prefix of the old log. The caller must redo it after a crash (see
    LmdbTree.install_snapshot: LMDB's meta key log_reset_pending records that it is owed).
  * read_after(zxid) -- read records while appends go on in another thread: never past the bytes
    that were complete (written and, with force_sync, fdatasync'ed) when the call was made.
"""

import errno
import logging
import mmap
import os
import re
import struct
import threading
import time

from zkpy.errors import LogAppendError, StorageCorruptError
from zkpy.proto.twins import compiled_twin
from zkpy.storage.crc import crc32c

MAGIC = b"ZKPYTLOG"
FORMAT_VERSION = 1
_FILE_HEADER = struct.Struct(">8sII")  # magic, version, header crc
FILE_HEADER_SIZE = _FILE_HEADER.size  # 16
_REC_HEADER = struct.Struct(">IIQ")  # length, crc, zxid
RECORD_HEADER_SIZE = _REC_HEADER.size  # 16
_ZXID = struct.Struct(">Q")
_U32 = struct.Struct(">I")

DEFAULT_ROLL_BYTES = 64 * 1024 * 1024
# The unit a power cut loses at the least (a disk sector; the page cache loses 4 KiB pages):
# a zeroed aligned one in a damaged record is the mark of a write that never reached the disk.
SECTOR = 512
_NAME_RE = re.compile(r"^log\.([0-9a-f]{16})$")

_DEFAULT_LOGGER = logging.getLogger("zkpy.storage.txnlog")

# Errors of a write or fsync after which the log is cut back and appends go on (a full disk, a
# quota, an I/O error): any other OSError leaves the log unusable.
RECOVERABLE_ERRNOS = frozenset(e for e in (errno.ENOSPC, getattr(errno, "EDQUOT", None), errno.EIO)
                               if e is not None)


def append_bound(max_bytes=1 << 20, max_count=1000):
    """The most bytes one append_batch writes with more than one record in it when its batches
    come from a GroupCommitter(max_bytes=, max_count=) (defaults: its defaults): their payload
    bytes, their record headers and a new file's header. (A lone record of any size is one
    append too, but then no record follows it in that append.)"""
    return max_bytes + max_count * RECORD_HEADER_SIZE + FILE_HEADER_SIZE


def _shows_lost_write(mm, start, end):
    """Whether mm[start:end] -- a damaged record and what follows it up to the next valid one --
    bears the mark of a write that never reached the disk: 16 zero bytes where the record starts
    (no record header is all zeros: its zxid is not 0), or an all-zero SECTOR-aligned sector."""
    if end - start >= RECORD_HEADER_SIZE and \
            mm[start:start + RECORD_HEADER_SIZE].count(0) == RECORD_HEADER_SIZE:
        return True
    zero = bytes(SECTOR)
    off = -(-start // SECTOR) * SECTOR   # the first sector boundary at or after start
    while off + SECTOR <= end:
        if mm[off:off + SECTOR] == zero:
            return True
        off += SECTOR
    return False


def _nonzero_end(mm, start, end, chunk=1 << 20):
    """The offset just past the last non-zero byte of mm[start:end] (start if there is none),
    read backwards in chunks: a preallocated tail of zeros costs no Python loop per byte."""
    pos = end
    while pos > start:
        lo = max(start, pos - chunk)
        part = mm[lo:pos]
        kept = len(part.rstrip(b"\0"))
        if kept:
            return lo + kept
        pos = lo
    return start


def _header_bytes():
    head = MAGIC + _U32.pack(FORMAT_VERSION)
    return head + _U32.pack(crc32c(head))


FILE_HEADER = _header_bytes()


def log_file_name(zxid):
    """The file name for a log whose first record has ``zxid``."""
    return "log.%016x" % zxid


def encode_record(zxid, payload):
    """One record's bytes (header + payload)."""
    body = _ZXID.pack(zxid) + bytes(payload)  # the CRC covers zxid + payload: one call
    return _U32.pack(len(payload)) + _U32.pack(crc32c(body)) + body


def encode_records(records, last_zxid):
    """The bytes of [(zxid, payload)] as records, zxids strictly increasing above last_zxid
    (else ValueError). A compiled twin (zkpy.proto._fastcodec.log_records) takes over below."""
    parts = []
    prev = last_zxid
    for zxid, payload in records:
        if zxid <= prev:
            raise ValueError("txnlog zxids must be strictly increasing: 0x%x after 0x%x"
                             % (zxid, prev))
        prev = zxid
        parts.append(encode_record(zxid, payload))
    return b"".join(parts)


encode_records_pure = encode_records
encode_records = compiled_twin("log_records", encode_records_pure)


def list_log_files(directory):
    """[(first_zxid, path)] of the log files in ``directory``, oldest first."""
    found = []
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    for name in names:
        m = _NAME_RE.match(name)
        if m:
            found.append((int(m.group(1), 16), os.path.join(directory, name)))
    found.sort()
    return found


def fsync_dir(directory):
    """Make a directory's entries (created, renamed, removed files) durable."""
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _data_sync(fd):
    # Looked up at call time (not bound at import) so tests can monkeypatch os.fdatasync/os.fsync.
    if hasattr(os, "fdatasync"):
        os.fdatasync(fd)
    else:  # macOS has no fdatasync
        os.fsync(fd)


class _Torn(Exception):
    """Internal: the record at ``offset`` is not valid; ``reason`` says why."""

    def __init__(self, offset, reason):
        super().__init__(reason)
        self.offset = offset
        self.reason = reason


class LogChangedError(RuntimeError):
    """A read_after iteration overlapped truncate_after() or reset(): its records may be stale."""


class TxnLog:
    """A directory of log files. Call recover() (and consume it) before open_for_append().

    Not thread-safe for concurrent appends: one append_batch at a time (GroupCommitter guarantees
    it). purge() may run from another thread while an append is in flight: it never touches the
    newest file. read_after() may run in any thread at any time. truncate_after() and reset() wait
    for an in-flight append_batch and exclude purge() and the start of read_after().

    Locks, always taken in this order: _lock serializes append_batch / truncate_after / reset /
    open_for_append / close; _dir_lock serializes the directory changes (purge, truncate_after,
    reset) with read_after's snapshot-and-open of the files; _files_lock (held only for list
    updates, never across I/O) guards _files.
    """

    def __init__(self, directory, force_sync=True, roll_bytes=DEFAULT_ROLL_BYTES, logger=None,
                 fsync_warning_ms=1000, max_append_bytes=None, prealloc_bytes=0):
        """max_append_bytes: how far before the end of the newest file a torn append can have
        left damage (see the recovery rules; append_bound() of the batching in use, by default
        of a GroupCommitter's defaults). prealloc_bytes: extend the file being appended to in
        steps of this many bytes (0: never; the module docstring)."""
        self.dir = directory
        self.force_sync = force_sync
        self.roll_bytes = roll_bytes
        self.prealloc_bytes = max(0, prealloc_bytes)
        self.max_append_bytes = max_append_bytes or append_bound()
        self.fsync_warning_ms = fsync_warning_ms
        self.log = logger or _DEFAULT_LOGGER
        # Highest zxid in the log after recover() finished (0 if the log holds no records; zxid 0 is
        # never a transaction in ZooKeeper), then kept current by append_batch.
        self.last_zxid = 0
        # Duration of the most recent fdatasync in ms, or None if the last batch did not sync.
        # Read by GroupCommitter right after append_batch returns (same thread).
        self.last_fsync_ms = None
        # fsyncs that took longer than fsync_warning_ms (mntr zk_fsync_threshold_exceed_count).
        self.fsync_threshold_exceed_count = 0
        self._recovered = False
        self._append_ready = False
        self._failed = None  # the OSError that made the log unusable
        self._fd = None
        self._path = None  # path of the file _fd writes to
        self._size = 0  # the bytes of its records (and header)
        self._alloc = 0  # its length on disk: _size, or more when preallocated
        self._lock = threading.Lock()
        self._roll_requested = False
        self._dir_lock = threading.Lock()
        self._files_lock = threading.Lock()
        # While open for append: [[first_zxid, path, complete_size]] of every log file, oldest
        # first; complete_size is the length of the data that was complete (written and synced)
        # after the last append_batch. read_after never reads past it. None when not open.
        self._files = None
        # Bumped by truncate_after/reset before they change any file: read_after iterations that
        # started before see it and raise LogChangedError instead of yielding stale records.
        self._generation = 0

    # ------------------------------------------------------------------ recovery

    def recover(self, after_zxid=0):
        """Yield (zxid, payload) for every valid record with zxid > after_zxid, oldest first.

        A generator: it must be consumed to the end before open_for_append(). The torn tail of the
        newest file is truncated away when the iteration reaches it; StorageCorruptError is raised
        (possibly after some records were yielded) for corruption a crash cannot explain.
        """
        self._recovered = False
        files = list_log_files(self.dir)
        last_zxid = 0
        prev_bound = 0  # every record from here on must have zxid > prev_bound
        for i, (name_zxid, path) in enumerate(files):
            is_last = i == len(files) - 1
            if name_zxid <= prev_bound:
                raise StorageCorruptError(
                    "%s: file name zxid 0x%x is not above the previous file's records (0x%x)"
                    % (path, name_zxid, prev_bound))
            if i < len(files) - 2 and files[i + 1][0] - 1 <= after_zxid:
                # Every record here is below the next file's first zxid, hence <= after_zxid:
                # skip the file unread (as ZooKeeper does) to keep startup fast. The two newest
                # files are always read, so last_zxid is exact even if the newest is removed.
                prev_bound = files[i + 1][0] - 1
                continue
            file_last = yield from self._scan_file(path, name_zxid, prev_bound, is_last, after_zxid)
            if file_last is not None:
                last_zxid = file_last
                prev_bound = file_last
        self.last_zxid = last_zxid
        self._recovered = True

    def _scan_file(self, path, name_zxid, prev_bound, is_last, after_zxid):
        """Generator over one file; returns the file's last zxid (None if the file was removed)."""
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size == 0:
                mm = b""
            else:
                mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        try:
            bad = self._check_header(path, mm, size, is_last)
            last = None
            off = FILE_HEADER_SIZE
            while bad is None and off < size:
                try:
                    zxid, payload, end = self._read_record(mm, off, size)
                except _Torn as t:
                    bad = t
                    break
                if last is None and zxid != name_zxid:
                    raise StorageCorruptError(
                        "%s: first record at byte offset %d has zxid 0x%x, file name says 0x%x"
                        % (path, off, zxid, name_zxid))
                if zxid <= (last if last is not None else prev_bound):
                    raise StorageCorruptError(
                        "%s: record at byte offset %d has zxid 0x%x, not above the previous 0x%x"
                        % (path, off, zxid, last if last is not None else prev_bound))
                last = zxid
                if zxid > after_zxid:
                    yield zxid, payload
                off = end
            if bad is not None:
                bound = last if last is not None else prev_bound
                if not is_last:
                    raise StorageCorruptError("%s: corrupt record at byte offset %d (%s) in a log "
                                              "file that is not the newest"
                                              % (path, bad.offset, bad.reason))
                good = self._valid_after_damage(mm, bad.offset, size, bound)
                if good is not None:
                    raise StorageCorruptError("%s: corrupt record at byte offset %d (%s) followed by "
                                              "a valid record at byte offset %d"
                                              % (path, bad.offset, bad.reason, good))
        finally:
            if isinstance(mm, mmap.mmap):
                mm.close()
        if bad is None:
            return last
        # A torn tail of the newest file: the crash interrupted a write. Cut it off.
        if last is None:
            self.log.warning("txnlog %s: removing file, torn or incomplete data at byte offset %d "
                             "(%s), no complete record in it", path, bad.offset, bad.reason)
            os.unlink(path)
            fsync_dir(self.dir)
            return None
        if bad.reason == "zero-filled tail" and self.prealloc_bytes and \
                size % self.prealloc_bytes == 0:
            self.log.info("txnlog %s: cutting %d bytes of zeros (preallocated space) after the "
                          "last record at byte offset %d", path, size - bad.offset, bad.offset)
        else:
            self.log.warning("txnlog %s: truncating torn tail at byte offset %d (%s), %d bytes "
                             "dropped", path, bad.offset, bad.reason, size - bad.offset)
        fd = os.open(path, os.O_WRONLY)
        try:
            os.ftruncate(fd, bad.offset)
            os.fsync(fd)
        finally:
            os.close(fd)
        return last

    def _check_header(self, path, mm, size, is_last):
        """None if the header is fine, a _Torn for a torn header of the newest file; else raise."""
        head = mm[:FILE_HEADER_SIZE]
        if head == FILE_HEADER:
            return None
        # A torn header can only be a prefix of the real one (or zeros) with nothing after it.
        torn = (size <= FILE_HEADER_SIZE and FILE_HEADER.startswith(head)) or \
            mm[:size].count(0) == size
        if torn and is_last:
            return _Torn(0, "incomplete file header" if head else "empty file")
        if is_last and head == bytes(FILE_HEADER_SIZE):
            # The write that created the file (its header and first batch) was torn by a power
            # cut if the rest shows it too (_valid_after_damage decides): nothing in the file
            # was ever synced.
            return _Torn(0, "zeroed file header")
        magic, version, _ = _FILE_HEADER.unpack(head.ljust(FILE_HEADER_SIZE, b"\0"))
        if magic == MAGIC and version != FORMAT_VERSION and len(head) == FILE_HEADER_SIZE:
            reason = "unsupported format version %d" % version
        else:
            reason = "bad file header"
        raise StorageCorruptError("%s: %s at byte offset 0" % (path, reason))

    @staticmethod
    def _read_record(mm, off, size):
        """(zxid, payload, end offset) of the record at ``off``, or raise _Torn."""
        if size - off < RECORD_HEADER_SIZE:
            if mm[off:size].count(0) == size - off:
                raise _Torn(off, "zero-filled tail")
            raise _Torn(off, "incomplete record header")
        length, crc, zxid = _REC_HEADER.unpack_from(mm, off)
        if length == 0 and crc == 0 and zxid == 0:
            # Never a real record (the CRC of 8 zero bytes is not 0): preallocated space.
            if mm[off:size].count(0) == size - off:
                raise _Torn(off, "zero-filled tail")
            raise _Torn(off, "zeroed record header")
        end = off + RECORD_HEADER_SIZE + length
        if end > size:
            raise _Torn(off, "incomplete record (length %d, only %d bytes present)"
                        % (length, size - off - RECORD_HEADER_SIZE))
        # The zxid field and the payload are adjacent, so one CRC call covers both.
        body = mm[off + 8:end]
        if crc32c(body) != crc:
            raise _Torn(off, "CRC mismatch")
        return zxid, body[8:], end

    def _valid_after_damage(self, mm, bad_off, size, bound):
        """For damage at bad_off in the newest file: the offset of a valid record after it that
        makes it corruption, or None -- a torn tail (see the recovery rules). Records after a
        lost write within one append's reach of the end were written by that same append, the
        only one not yet fdatasynced at a power cut (one append at a time, each synced before
        the next): never acknowledged, they are dropped with it."""
        good = self._find_good_record(mm, bad_off, size, bound)
        if good is not None and self._records_end(mm, good, size) - bad_off <= \
                self.max_append_bytes and _shows_lost_write(mm, bad_off, good):
            return None
        return good

    @staticmethod
    def _records_end(mm, off, size):
        """Where the data of the file ends, for a valid record at ``off``: after the last record
        of the valid run starting there if only zeros (preallocated space) follow it, else
        ``size``."""
        while off + RECORD_HEADER_SIZE <= size:
            length, crc, zxid = _REC_HEADER.unpack_from(mm, off)
            end = off + RECORD_HEADER_SIZE + length
            if zxid == 0 or end > size or crc32c(mm[off + 8:end]) != crc:
                break
            off = end
        if mm[off:size].count(0) == size - off:
            return off
        return size

    def _find_good_record(self, mm, bad_off, size, bound):
        """Offset of a valid record (zxid > bound) somewhere after bad_off, or None.

        Tells a torn tail (nothing valid follows) from mid-file corruption. Checks the offset the
        bad record's own length field points at (a flipped payload or CRC bit), then every offset
        whose zxid field starts with the current or next epoch (a flipped length field) -- found
        with mmap.find, so no per-byte Python loop over a large remainder.
        """
        # A record starting in the zeros at the end (preallocated space, or pages a crash
        # lost) would have zxid 0: only starts before them are candidates.
        limit = _nonzero_end(mm, bad_off, size)
        if limit == bad_off:
            return None
        if size - bad_off >= RECORD_HEADER_SIZE:
            length = _U32.unpack_from(mm, bad_off)[0]
            nxt = bad_off + RECORD_HEADER_SIZE + length
            if nxt < limit and self._valid_at(mm, nxt, size, bound):
                return nxt
        epoch = bound >> 32
        candidates = set()
        stop = min(size, limit + 12)   # a zxid field's first 4 bytes start before limit + 8
        for e in (epoch, epoch + 1):
            if e > 0xFFFFFFFF:
                continue
            pat = _U32.pack(e)
            pos = mm.find(pat, bad_off + 1 + 8, stop)
            while pos != -1:
                if pos - 8 < limit:
                    candidates.add(pos - 8)
                pos = mm.find(pat, pos + 1, stop)
        for off in sorted(candidates):
            if self._valid_at(mm, off, size, bound):
                return off
        return None

    @staticmethod
    def _valid_at(mm, off, size, bound):
        if off + RECORD_HEADER_SIZE > size:
            return False
        length, crc, zxid = _REC_HEADER.unpack_from(mm, off)
        end = off + RECORD_HEADER_SIZE + length
        return zxid > bound and end <= size and crc32c(mm[off + 8:end]) == crc

    # ------------------------------------------------------------------ appending

    def open_for_append(self):
        """Prepare appends after recover(): reuse the newest file if it has room, else roll."""
        if not self._recovered:
            raise RuntimeError("TxnLog.recover() must be run to completion before open_for_append()")
        os.makedirs(self.dir, exist_ok=True)
        with self._lock:
            self._close_fd()
            self._open_newest_locked()
            self._append_ready = True

    def _open_newest_locked(self):
        """Point appends at the newest file if it has room (else the next append_batch creates a
        file named after its first zxid) and rebuild _files. Caller holds _lock, fd is closed."""
        files = list_log_files(self.dir)
        tracked = [[z, p, os.stat(p).st_size] for z, p in files]
        self._path = None
        self._size = 0
        if tracked and tracked[-1][2] < self.roll_bytes:
            path = tracked[-1][1]
            self._fd = os.open(path, os.O_WRONLY | getattr(os, "O_CLOEXEC", 0))
            self._path = path
            self._size = self._alloc = tracked[-1][2]
        with self._files_lock:
            self._files = tracked

    def append_batch(self, records):
        """Append [(zxid, payload)] with one write, then fdatasync if force_sync.

        Raises ValueError if the zxids are not strictly increasing above last_zxid.
        ENOSPC, EDQUOT or EIO from the write or fsync: the file is cut back to its size before
        the batch and LogAppendError is raised -- nothing of the batch is in the log, last_zxid is
        unchanged, the next append_batch (of the same or other zxids) may succeed. Any other
        OSError, or one while cutting back, propagates and leaves the log unusable (every later
        call raises): the caller must treat it as fatal, since what reached the disk is unknown.
        """
        if not records:
            return
        with self._lock:
            if self._failed is not None:
                raise RuntimeError("txnlog unusable after an earlier I/O error: %r" % (self._failed,))
            if not self._append_ready:
                raise RuntimeError("TxnLog.open_for_append() has not been called")
            data = encode_records(records, self.last_zxid)
            prev = records[-1][0]
            try:
                self._write_locked(records[0][0], [data])
            except LogAppendError:
                raise
            except OSError as e:
                self._failed = e
                raise
            self.last_zxid = prev

    def _write_locked(self, first_zxid, parts):
        created = False
        if self._fd is None:
            path = os.path.join(self.dir, log_file_name(first_zxid))
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
            try:
                self._fd = os.open(path, flags, 0o644)
            except OSError as e:
                if e.errno in RECOVERABLE_ERRNOS:   # nothing was created: nothing to undo
                    raise LogAppendError(self.dir, e) from e
                raise
            self._path = path
            self._size = self._alloc = 0
            # Header and first batch go out in the same write: a file never exists durably
            # without a record, so its name always equals its first record's zxid.
            parts.insert(0, FILE_HEADER)
            created = True
        data = b"".join(parts)
        ms = None
        try:
            end = self._size + len(data)
            if end > self._alloc and self.prealloc_bytes:
                self._preallocate(end)
            view = memoryview(data)
            written = 0
            while written < len(data):  # a regular-file write is only short on ENOSPC or a signal
                written += os.pwrite(self._fd, view[written:], self._size + written)
            if self.force_sync:
                t0 = time.monotonic()
                _data_sync(self._fd)
                if created:
                    fsync_dir(self.dir)
                ms = (time.monotonic() - t0) * 1000.0
        except OSError as e:
            self._cut_back(e, created)
            raise  # not reached: _cut_back raises
        self._size += len(data)
        self._alloc = max(self._alloc, self._size)
        if self.force_sync:
            self.last_fsync_ms = ms
            if ms > self.fsync_warning_ms:
                self.fsync_threshold_exceed_count += 1
                self.log.warning(
                    "fsync-ing the write ahead log in %s took %dms which will adversely effect "
                    "operation latency. File size is %d bytes. See the ZooKeeper troubleshooting "
                    "guide", threading.current_thread().name, ms, self._size)
        else:
            # forceSync=no: like ZooKeeper, never sync (not even the directory); unsafe on crash.
            self.last_fsync_ms = None
        # Only now (written and synced) may read_after see these bytes.
        with self._files_lock:
            if created:
                self._files.append([first_zxid, self._path, self._size])
            else:
                self._files[-1][2] = self._size
        if self._size > self.roll_bytes or self._roll_requested:
            # Roll only here, between batches: the next batch starts a new file.
            self._roll_requested = False
            self._close_fd()

    def size_since_roll(self):
        """Bytes in the file appends go to now (0 before the first append after a roll)."""
        return self._size

    def _cut_back(self, error, created):
        """A write or fsync of the batch failed with ``error``: remove what it may have left (the
        bytes past self._size; the whole file if it was created for this batch) and raise
        LogAppendError. ``error`` itself propagates if it is not a full/failing-disk error, or
        if cutting back fails (the caller then marks the log unusable)."""
        if error.errno not in RECOVERABLE_ERRNOS:
            raise error
        try:
            if created:
                fd, path = self._fd, self._path
                self._fd = self._path = None
                self._size = 0
                os.close(fd)
                os.unlink(path)
                if self.force_sync:
                    fsync_dir(self.dir)
            else:
                os.ftruncate(self._fd, self._size)
                self._alloc = self._size
                if self.force_sync:
                    os.fsync(self._fd)
        except OSError as e:
            self.log.error("txnlog %s: cannot cut the file back after a failed append (%s): %s",
                           self.dir, error, e)
            raise error
        raise LogAppendError(self.dir, error) from error

    def request_roll(self):
        """Start a new file after the current batch (called after an LMDB checkpoint, so that
        recovery only reads the files written since: startup stays short on a big tree)."""
        self._roll_requested = True

    # ------------------------------------------------------------------ retention

    def purge(self, applied_zxid, retain_files=3):
        """Delete log files whose records are all <= applied_zxid, keeping the retain_files newest.

        A file's records are all below the next file's name zxid, so file i is removable when
        name(i+1) - 1 <= applied_zxid; the newest file is never removed. Returns deleted paths.
        """
        with self._dir_lock:
            files = list_log_files(self.dir)
            keep_from = max(len(files) - max(retain_files, 1), 0)
            deleted = []
            for i in range(keep_from):
                if files[i + 1][0] - 1 > applied_zxid:
                    break
                path = files[i][1]
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    continue
                deleted.append(path)
                if self.force_sync:
                    # Oldest first, each deletion durable before the next: a crash never leaves
                    # an older file behind a deleted newer one (a hole in the history).
                    fsync_dir(self.dir)
            if deleted:
                gone = set(deleted)
                with self._files_lock:
                    if self._files is not None:
                        self._files = [f for f in self._files if f[1] not in gone]
        if deleted:
            self.log.info("txnlog purge: deleted %d file(s) up to %s", len(deleted), deleted[-1])
        return deleted

    # ------------------------------------------------------------------ ensemble (Zab)

    def truncate_after(self, zxid):
        """Remove every record with zxid > ``zxid`` (Zab TRUNC); returns the new last_zxid.

        Works with the log open for append (waits for an in-flight append_batch; later appends
        continue after the kept records) or not yet opened (before or after recover()). last_zxid
        becomes the last remaining record's zxid, 0 if none is left (``zxid`` below the first
        record empties the log). ``zxid`` at or beyond the last record changes nothing.

        Crash safety (see the module docstring): the files after the boundary are unlinked newest
        first, each followed by a directory fsync; then the boundary file is ftruncate'd at the end
        of its last kept record and fsync'ed. A crash at any point leaves the old log cut at some
        zxid >= ``zxid``; calling truncate_after(zxid) again completes it. The boundary file is
        read (and its records CRC-checked) before anything changes: damage among the kept records
        raises StorageCorruptError with the log untouched. A torn tail of the newest file (only
        possible before recover()) is cut away as recover() would.

        The caller must not truncate below what LMDB has applied (a TRUNC never goes below the
        committed history). An OSError while open for append leaves the log unusable, as in
        append_batch. read_after iterations running meanwhile raise LogChangedError.
        """
        with self._lock:
            if self._failed is not None:
                raise RuntimeError("txnlog unusable after an earlier I/O error: %r" % (self._failed,))
            try:
                self._trim_locked()   # the boundary is found in files that end at a record
            except OSError as e:
                self._failed = e
                raise
            with self._dir_lock:
                files = list_log_files(self.dir)
                keep = [f for f in files if f[0] <= zxid]
                drop = files[len(keep):]
                cut = None  # (path, offset) to ftruncate to
                last = 0
                # Find the boundary: the newest kept file that holds a complete record.
                while keep:
                    name_zxid, path = keep[-1]
                    is_newest = not drop
                    prev_bound = keep[-2][0] if len(keep) > 1 else 0
                    offset, file_last, size = self._boundary(path, name_zxid, zxid, is_newest,
                                                             prev_bound)
                    if offset is None:  # torn new file without any complete record: drop it
                        drop.insert(0, keep.pop())
                        continue
                    last = file_last
                    if offset < size:
                        cut = (path, offset)
                    break
                if not drop and cut is None:
                    self.last_zxid = last
                    return last
                self._generation += 1
                try:
                    if self._append_ready:
                        self._close_fd()
                    for _, path in reversed(drop):
                        os.unlink(path)
                        fsync_dir(self.dir)
                    if cut is not None:
                        fd = os.open(cut[0], os.O_WRONLY | getattr(os, "O_CLOEXEC", 0))
                        try:
                            os.ftruncate(fd, cut[1])
                            os.fsync(fd)
                        finally:
                            os.close(fd)
                    self.last_zxid = last
                    if self._append_ready:
                        self._open_newest_locked()
                except OSError as e:
                    if self._append_ready:
                        self._failed = e
                    raise
        self.log.info("txnlog truncated after zxid 0x%x: %d file(s) deleted%s; last zxid 0x%x",
                      zxid, len(drop), ", %s cut at byte %d" % cut if cut else "", last)
        return last

    def _boundary(self, path, name_zxid, zxid, is_newest, prev_bound):
        """(offset just past the last record <= zxid, that record's zxid, file size) for the
        boundary file; (None, None, size) if it is the newest file and holds no complete record."""
        with open(path, "rb") as f:
            data = f.read()
        size = len(data)
        bad = self._check_header(path, data, size, is_newest)
        if bad is not None:
            if self._valid_after_damage(data, 0, size, prev_bound) is not None:
                raise StorageCorruptError("%s: %s followed by valid records" % (path, bad.reason))
            return None, None, size
        off = FILE_HEADER_SIZE
        last = None
        while off < size:
            try:
                rz, _, end = self._read_record(data, off, size)
            except _Torn as t:
                bound = last if last is not None else prev_bound
                if not is_newest or self._valid_after_damage(data, t.offset, size,
                                                             bound) is not None:
                    raise StorageCorruptError("%s: corrupt record at byte offset %d (%s)"
                                              % (path, t.offset, t.reason))
                break  # torn tail of the newest file: cut it off with the rest
            if last is None and rz != name_zxid:
                raise StorageCorruptError(
                    "%s: first record at byte offset %d has zxid 0x%x, file name says 0x%x"
                    % (path, off, rz, name_zxid))
            if last is not None and rz <= last:
                raise StorageCorruptError(
                    "%s: record at byte offset %d has zxid 0x%x, not above the previous 0x%x"
                    % (path, off, rz, last))
            if rz > zxid:
                break
            last = rz
            off = end
        if last is None:
            return None, None, size
        return off, last, size

    def reset(self):
        """Delete every log file (Zab SNAP: the history is replaced by a snapshot).

        Works open for append or not; last_zxid becomes 0 and the next append_batch starts a new
        file named after its first zxid. Files are unlinked newest first, each followed by a
        directory fsync, so a crash leaves a prefix of the old log (never a hole); the caller must
        redo reset() after a crash -- LmdbTree.install_snapshot's log_reset_pending marker records
        that it is owed. read_after iterations running meanwhile raise LogChangedError.
        """
        with self._lock:
            if self._failed is not None:
                raise RuntimeError("txnlog unusable after an earlier I/O error: %r" % (self._failed,))
            with self._dir_lock:
                files = list_log_files(self.dir)
                self._generation += 1
                try:
                    if self._append_ready:
                        self._close_fd()
                    for _, path in reversed(files):
                        os.unlink(path)
                        fsync_dir(self.dir)
                    self.last_zxid = 0
                    if self._append_ready:
                        self._open_newest_locked()
                except OSError as e:
                    if self._append_ready:
                        self._failed = e
                    raise
        if files:
            self.log.info("txnlog reset: deleted %d file(s)", len(files))

    def read_after(self, zxid, chunk_bytes=1 << 20):
        """Iterate (zxid, payload) of every record with zxid > ``zxid``, oldest first.

        Safe from any thread while append_batch runs in another: the set of files and the length
        of each are taken when read_after is *called* (the files are opened then, so a later purge
        does not matter), and no byte past what was complete then is read -- while open for
        append, "complete" means written and (force_sync) fdatasync'ed by a finished append_batch;
        records appended later are not returned. Not open for append, every file is read to its
        end and a torn tail of the newest file ends the iteration quietly (recover() is what cuts
        it off). Damage anywhere else raises StorageCorruptError naming the file and offset; a
        truncate_after() or reset() during the iteration raises LogChangedError.

        Reads with os.pread in chunks of ``chunk_bytes`` (never mmap: a concurrent truncation would
        turn a mapped read into SIGBUS).
        """
        with self._dir_lock:
            gen = self._generation
            with self._files_lock:
                tracked = None if self._files is None else [tuple(f) for f in self._files]
            if tracked is None:
                snap = [(z, p, None) for z, p in list_log_files(self.dir)]
            else:
                snap = tracked
            opened = []
            try:
                for i, (name_zxid, path, size) in enumerate(snap):
                    if i + 1 < len(snap) and snap[i + 1][0] - 1 <= zxid:
                        continue  # every record here is < the next file's first zxid <= zxid
                    f = open(path, "rb", buffering=0)
                    if size is None:
                        size = os.fstat(f.fileno()).st_size
                    opened.append((name_zxid, path, f, size))
            except BaseException:
                for o in opened:
                    o[2].close()
                raise
        return self._read_files(opened, zxid, gen, tracked is None, chunk_bytes)

    def _read_files(self, opened, after, gen, lenient, chunk_bytes):
        try:
            prev = 0
            for i, (name_zxid, path, f, size) in enumerate(opened):
                is_newest = i == len(opened) - 1
                for rz, payload in self._read_one(path, name_zxid, f, size, prev, is_newest and
                                                  lenient, chunk_bytes, gen):
                    prev = rz
                    if rz > after:
                        if self._generation != gen:
                            raise LogChangedError("txnlog %s was truncated or reset during "
                                                  "read_after" % self.dir)
                        yield rz, payload
        finally:
            for o in opened:
                o[2].close()

    def _read_one(self, path, name_zxid, f, size, prev, lenient, chunk_bytes, gen):
        """Records of one file up to ``size`` bytes, with the checks recover() makes."""
        fd = f.fileno()
        buf = b""
        base = 0  # file offset of buf[0]

        def get(off, n):
            nonlocal buf, base
            if off >= base and off + n <= base + len(buf):
                return buf[off - base:off + n - base]
            data = os.pread(fd, min(max(n, chunk_bytes), size - off), off)
            if len(data) < n:
                if self._generation != gen:
                    raise LogChangedError("txnlog %s was truncated or reset during read_after"
                                          % self.dir)
                raise StorageCorruptError("%s: file shrank under read_after at byte offset %d"
                                          % (path, off))
            buf, base = data, off
            return data[:n]

        if name_zxid <= prev:
            raise StorageCorruptError("%s: file name zxid 0x%x is not above the previous file's "
                                      "records (0x%x)" % (path, name_zxid, prev))
        if size < FILE_HEADER_SIZE or get(0, FILE_HEADER_SIZE) != FILE_HEADER:
            if lenient:
                head = get(0, size) if size else b""
                if FILE_HEADER.startswith(head) or head.count(0) == size:
                    return  # torn header of the newest file
            raise StorageCorruptError("%s: bad file header at byte offset 0" % path)
        off = FILE_HEADER_SIZE
        first = True
        while off < size:
            bad = None
            if size - off < RECORD_HEADER_SIZE:
                bad = "incomplete record header"
            else:
                length, crc, rz = _REC_HEADER.unpack(get(off, RECORD_HEADER_SIZE))
                end = off + RECORD_HEADER_SIZE + length
                if length == 0 and crc == 0 and rz == 0:
                    bad = "zeroed record header"
                elif end > size:
                    bad = "incomplete record (length %d)" % length
                else:
                    body = get(off + 8, 8 + length)
                    if crc32c(body) != crc:
                        bad = "CRC mismatch"
            if bad is not None:
                if lenient:
                    data = get(0, size)
                    if self._find_good_record(data, off, size, prev) is None:
                        return  # torn tail of the newest file
                raise StorageCorruptError("%s: corrupt record at byte offset %d (%s)"
                                          % (path, off, bad))
            if first and rz != name_zxid:
                raise StorageCorruptError(
                    "%s: first record at byte offset %d has zxid 0x%x, file name says 0x%x"
                    % (path, off, rz, name_zxid))
            if rz <= prev:
                raise StorageCorruptError(
                    "%s: record at byte offset %d has zxid 0x%x, not above the previous 0x%x"
                    % (path, off, rz, prev))
            first = False
            prev = rz
            yield rz, body[8:]
            off = end

    def _preallocate(self, end):
        """Extend the file to the next step of prealloc_bytes past ``end`` (made durable by the
        append's fdatasync: its records' offsets need the new length). Only a speed-up: if the
        file system refuses (a quota counting the sparse length, a file size limit), the append
        goes on without it."""
        alloc = (end // self.prealloc_bytes + 1) * self.prealloc_bytes
        try:
            os.ftruncate(self._fd, alloc)
        except OSError as e:
            if e.errno not in RECOVERABLE_ERRNOS and e.errno != errno.EFBIG:
                raise
            return
        self._alloc = alloc

    def _trim_locked(self):
        """Cut the preallocated zeros off the file being appended to, durably (before another
        file can follow it: only the newest file may end in zeros)."""
        if self._fd is not None and self._alloc > self._size:
            os.ftruncate(self._fd, self._size)
            if self.force_sync:
                _data_sync(self._fd)
            self._alloc = self._size

    def _close_fd(self):
        if self._fd is not None:
            try:
                self._trim_locked()
            finally:
                fd, self._fd = self._fd, None
                os.close(fd)

    def close(self):
        with self._lock:
            self._close_fd()
            self._append_ready = False
            with self._files_lock:
                self._files = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
