"""Durable checkpoints of an LMDB environment: what makes LMDB safe across a power cut.

zkpy commits LMDB without fsync (MDB_NOSYNC: no sync on the reply path; the transaction log is
what an acknowledgement waits for). Without more, a power cut could leave a meta page on disk
that points at pages the kernel never wrote back: a damaged tree. A checkpoint closes that gap:

  1. ``pin``: in the writer process, between write transactions, a read transaction is begun on
     the newest committed state T. LMDB never reuses a page that a live reader's snapshot can
     reach (mdb_page_alloc takes only free-list records older than the oldest reader), so from
     here on no write touches a page of T -- nor of T-1, whose freed pages are recorded under T.
     The two meta pages of data.mdb (pages 0 and 1: T and T-1) are read at that moment.
  2. ``sync``: fdatasync data.mdb (env.sync): every page of T is on disk.
  3. ``store``: the two meta pages, T's txnid and last zxid go to one of two slot files,
     ``checkpoint.0`` / ``checkpoint.1`` (sequence number n in slot n % 2), written in place and
     fdatasync'ed; a CRC32C over the slot tells a torn write.
  4. Only then is the previous checkpoint's pin released.

So at every instant the newest valid slot names a state T whose pages are all on disk and
untouched: the pages reachable from T were synced in step 2 and have been protected by a pin
ever since (a power cut kills the pin, but it also stops every writer). On start the writer
calls ``restore``: it writes the slot's meta pages back over pages 0 and 1 (only if they differ:
after a clean stop they are equal) and fsyncs, which turns data.mdb back into exactly state T.
Pages written after T are unreachable from T's meta pages; those that T's free list names are
free again. The caller then replays the transaction log past T's zxid, pins again before its
first write, and the cycle goes on.

A new environment is built in ``<name>.new`` (database created, first checkpoint stored, every
file fsynced) and renamed into place, so a directory named ``<name>`` always holds a
checkpoint; one without any checkpoint slot is from zkpy before checkpoints (trusted as is,
and checkpointed at once) and one whose slots are all unreadable is damaged.

Slot file grammar (integers big-endian)::

    slot   = magic version seq txnid zxid psize meta0 meta1 crc
    magic  = "ZKPYCKPT"; version = u32 (1); seq, txnid, zxid = u64; psize = u32
    meta0, meta1 = psize bytes each: data.mdb's pages 0 and 1, raw
    crc    = u32: crc32c of every byte before it
An empty slot file is "no checkpoint here yet".

The LMDB facts this relies on (LMDB 0.9, the version py-lmdb bundles; lmdb/verify.py in py-lmdb
reads the same layout): the meta pages are pages 0 and 1; a page header is 16 bytes with its
flags (P_META = 0x08) at byte 10; the MDB_meta record follows it: magic 0xBEEFC0DE (u32), format
version 1 (u32), ..., mm_last_pg at +120, mm_txnid at +128, native byte order; LMDB opens the
meta page with the higher txnid. ``meta_txnid`` checks all of that before a page is trusted.
"""

import collections
import fcntl
import os
import struct
import sys
import time

from zkpy.errors import StorageCorruptError
from zkpy.storage.crc import crc32c

MAGIC = b"ZKPYCKPT"
VERSION = 1
SLOT_FILES = ("checkpoint.0", "checkpoint.1")
_HEAD = struct.Struct(">8sIQQQI")   # magic, version, seq, txnid, zxid, psize
_CRC = struct.Struct(">I")

# LMDB 0.9 on-disk layout (native byte order)
_E = "<" if sys.byteorder == "little" else ">"
_PAGE_FLAGS = struct.Struct(_E + "H")     # at byte 10 of a page header
_U32 = struct.Struct(_E + "I")
_U64 = struct.Struct(_E + "Q")
PAGEHDRSZ = 16
P_META = 0x08
MDB_MAGIC = 0xBEEFC0DE
MDB_DATA_VERSION = 1
_MM_TXNID = PAGEHDRSZ + 128
_MM_PSIZE = PAGEHDRSZ + 24            # mm_dbs[FREE_DBI].md_pad holds the page size
MIN_PSIZE = 512

Checkpoint = collections.namedtuple("Checkpoint", "seq txnid zxid psize metas")
Checkpoint.__doc__ = """One stored checkpoint: metas = data.mdb's pages 0 and 1 (2 * psize bytes)."""


def data_file(env_dir):
    return os.path.join(env_dir, "data.mdb")


def meta_txnid(page):
    """The txnid of one raw LMDB meta page; ValueError if it is not a valid meta page."""
    if len(page) < _MM_TXNID + 8:
        raise ValueError("short meta page (%d bytes)" % len(page))
    if not _PAGE_FLAGS.unpack_from(page, 10)[0] & P_META:
        raise ValueError("not a meta page")
    if _U32.unpack_from(page, PAGEHDRSZ)[0] != MDB_MAGIC:
        raise ValueError("bad LMDB magic")
    if _U32.unpack_from(page, PAGEHDRSZ + 4)[0] != MDB_DATA_VERSION:
        raise ValueError("unsupported LMDB data version %d"
                         % _U32.unpack_from(page, PAGEHDRSZ + 4)[0])
    return _U64.unpack_from(page, _MM_TXNID)[0]


def read_metas(env_dir):
    """(psize, pages 0 and 1 of data.mdb as one bytes) as the file holds them now."""
    with open(data_file(env_dir), "rb") as f:
        head = f.read(PAGEHDRSZ + 160)
        if len(head) < PAGEHDRSZ + 160:
            raise ValueError("data.mdb is %d bytes long: no meta page" % len(head))
        psize = _U32.unpack_from(head, _MM_PSIZE)[0]
        if psize < MIN_PSIZE or psize & (psize - 1) or psize > 1 << 16:
            raise ValueError("implausible page size %d in the first meta page" % psize)
        f.seek(0)
        metas = f.read(2 * psize)
    if len(metas) != 2 * psize:
        raise ValueError("data.mdb is shorter than its two meta pages")
    return psize, metas


def newest_txnid(psize, metas):
    return max(meta_txnid(metas[:psize]), meta_txnid(metas[psize:]))


def encode(cp):
    body = _HEAD.pack(MAGIC, VERSION, cp.seq, cp.txnid, cp.zxid, cp.psize) + cp.metas
    return body + _CRC.pack(crc32c(body))


def decode(data):
    """A Checkpoint from one slot's bytes; None for an empty slot; ValueError if damaged."""
    if not data:
        return None
    if len(data) < _HEAD.size + _CRC.size:
        raise ValueError("truncated (%d bytes)" % len(data))
    magic, version, seq, txnid, zxid, psize = _HEAD.unpack_from(data)
    if magic != MAGIC:
        raise ValueError("bad magic")
    if version != VERSION:
        raise ValueError("unsupported version %d" % version)
    end = _HEAD.size + 2 * psize
    if len(data) != end + _CRC.size:
        raise ValueError("%d bytes, %d expected" % (len(data), end + _CRC.size))
    if crc32c(data[:end]) != _CRC.unpack_from(data, end)[0]:
        raise ValueError("CRC mismatch (a torn write)")
    metas = bytes(data[_HEAD.size:end])
    if newest_txnid(psize, metas) != txnid:
        raise ValueError("its meta pages do not hold txn %d" % txnid)
    return Checkpoint(seq, txnid, zxid, psize, metas)


def load(env_dir):
    """The newest valid checkpoint of env_dir; None if it has no slot file at all (a database
    from before checkpoints). StorageCorruptError if slots exist and none is valid."""
    found = []
    problems = []
    present = 0
    for name in SLOT_FILES:
        path = os.path.join(env_dir, name)
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            continue
        present += 1
        try:
            cp = decode(data)
        except ValueError as e:
            problems.append("%s: %s" % (path, e))
            continue
        if cp is not None:
            found.append(cp)
    if found:
        return max(found, key=lambda cp: cp.seq)
    if present == 0:
        return None
    raise StorageCorruptError(
        "no valid checkpoint in %s (%s): the database cannot be trusted"
        % (env_dir, "; ".join(problems) or "every slot is empty"))


def store(env_dir, cp):
    """Write cp into slot cp.seq % 2 in place and fdatasync it (the other slot, the previous
    checkpoint, stays valid whatever a power cut does to this write)."""
    path = os.path.join(env_dir, SLOT_FILES[cp.seq % 2])
    data = encode(cp)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        _write_all(fd, data, 0)
        os.ftruncate(fd, len(data))
        os.fdatasync(fd)
    finally:
        os.close(fd)


def create_slots(env_dir, cp):
    """A new environment's slot files: cp in its slot, the other empty; all fsynced."""
    for i, name in enumerate(SLOT_FILES):
        path = os.path.join(env_dir, name)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            if i == cp.seq % 2:
                _write_all(fd, encode(cp), 0)
            os.fsync(fd)
        finally:
            os.close(fd)


def restore(env_dir, cp):
    """Put cp's meta pages back into data.mdb if it holds others; True if it wrote them."""
    path = data_file(env_dir)
    fd = os.open(path, os.O_RDWR)
    try:
        current = os.pread(fd, 2 * cp.psize, 0)
        if current == cp.metas:
            return False
        _write_all(fd, cp.metas, 0)
        os.fdatasync(fd)
    finally:
        os.close(fd)
    return True


def wait_exclusive(env_dir, timeout_s=10.0):
    """Wait until no other process has the environment open (LMDB's own test: a write lock on
    byte 0 of lock.mdb, which every process that opened it holds shared). Rewriting the meta
    pages under another process's feet would show it a state its lock table does not know."""
    path = os.path.join(env_dir, "lock.mdb")
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 0, os.SEEK_SET)
                fcntl.lockf(fd, fcntl.LOCK_UN, 1, 0, os.SEEK_SET)
                return
            except OSError:
                if time.monotonic() >= deadline:
                    raise StorageCorruptError(
                        "another process still has the database %s open (lock.mdb is held); "
                        "stop it first" % env_dir)
                time.sleep(0.05)
    finally:
        os.close(fd)


def _write_all(fd, data, offset):
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        view = view[n:]
        offset += n
