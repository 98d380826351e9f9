"""The crashfs FUSE daemon: a passthrough filesystem whose unsynced writes can be lost on command.

    python tests/crash/crashfs_daemon.py BACKING MOUNT --control SOCKET
           [--fsync-delay-ms MS] [--space-limit BYTES] [--max-pending-mb MB] [--parent-pid PID]

Runs in its own process (crashfs.CrashFS starts it); it serves the mount until unmounted (or
SIGTERM) and answers a line protocol on the UNIX socket (see _Control). The page model, and so
what a power cut can leave, is crashfs_model.py's; this module maps FUSE operations onto it:

  * one VolatileFile per backing inode (so renames and hard links carry pending data with the
    file), holding one O_RDWR fd on the backing file while open or pending;
  * read/write/truncate/fallocate go to the model; fsync/fdatasync (either flag) writes that file's
    pending state to the backing file and os.fsync()s it, after the configured delay; a write to a
    handle opened with O_SYNC/O_DSYNC syncs its file at once (the kernel also sends an FSYNC after
    such a write, which then finds nothing pending but still pays the delay);
  * metadata operations (create, mkdir, unlink, rmdir, rename, link, symlink, mknod, chmod, chown,
    utimens) are applied to the backing directory at once: they are durable immediately, so a
    missing directory fsync is NOT caught. An unlink or rename that removes a file's last name
    drops its pending data (open handles keep reading it); fsyncdir only pays the delay;
  * after a power cut every operation fails with EIO until the filesystem is mounted again
    (reads the kernel serves from its page cache through an already open fd are the exception);
  * a clean unmount (or SIGTERM) persists everything still pending, as a real umount syncs;
  * memory: when the pending data passes --max-pending-mb, the file holding most is written back
    to the backing file (as the kernel writes back under memory pressure); stats count these.

FUSE settings: no direct_io (LMDB mmaps its files; writes go through the kernel page cache,
write-through, as writeback_cache is off), keep_cache on (all access goes through this mount, so
the cache is the model's view), hard_remove (no .fuse_hidden files), default_permissions.
"""

import argparse
import errno
import json
import logging
import os
import random
import signal
import socket
import stat
import sys
import threading
import time

import mfusepy

try:
    from .crashfs_model import MODES, VolatileFile
except ImportError:  # run as a script: this directory is sys.path[0]
    from crashfs_model import MODES, VolatileFile

log = logging.getLogger("crashfs")

_RENAME_NOREPLACE = 1
_RENAME_EXCHANGE = 2
_FALLOC_FL_KEEP_SIZE = 1
_UTIME_NOW = (1 << 30) - 1
_UTIME_OMIT = (1 << 30) - 2


class _Handle:
    __slots__ = ("vf", "sync")

    def __init__(self, vf, sync):
        self.vf = vf
        self.sync = sync


def _dead_check(method):
    """Fail with EIO after a power cut (checked again under the lock by the operations)."""
    def op(self, *args):
        if self.dead:
            raise mfusepy.FuseOSError(errno.EIO)
        return method(self, *args)
    op.__name__ = method.__name__
    op.__doc__ = method.__doc__
    return op


class CrashOps(mfusepy.Operations):
    """FUSE operations over BACKING; every in-memory state change happens under self._lock."""

    use_ns = True
    flag_nopath = True        # with flag_nullpath_ok: mfusepy sets nullpath_ok (no path for fh ops)
    flag_nullpath_ok = True

    def __init__(self, root, fsync_delay_ms=0, space_limit=None, max_pending=256 << 20):
        self.root = os.path.realpath(root)
        self._lock = threading.Lock()
        self.files = {}          # backing st_ino -> VolatileFile (not orphans)
        self.handles = {}        # fh -> _Handle
        self.dirs = {}           # directory fh -> path at opendir
        self.next_fh = 1
        self.seq = 0             # global event counter (writes and truncates)
        self.dead = False
        self.fsync_delay = fsync_delay_ms / 1000.0
        self.space_limit = space_limit
        self.max_pending = max_pending
        self.mem = 0             # pending bytes over all files
        self.total_size = self._walk_total()
        self.counts = dict(writes=0, bytes_written=0, reads=0, fsyncs=0, datasyncs=0, fsyncdirs=0,
                           sync_writes=0, truncates=0, writebacks=0, enospc=0)
        # mfusepy registers every attribute named like a FUSE operation ("lock", "flush", ...)
        clash = [k for k in vars(self) if hasattr(mfusepy.Operations, k)]
        assert not clash, "attributes named like FUSE operations: %s" % clash

    # -- helpers (called with self._lock held) ----------------------------------------------

    def _real(self, path):
        return self.root + path

    def _walk_total(self):
        seen, total = set(), 0
        for d, _dirs, names in os.walk(self.root):
            for name in names:
                st = os.lstat(os.path.join(d, name))
                if stat.S_ISREG(st.st_mode) and st.st_ino not in seen:
                    seen.add(st.st_ino)
                    total += st.st_size
        return total

    def _check_dead(self):
        if self.dead:
            raise mfusepy.FuseOSError(errno.EIO)

    def _file(self, path, fd=None):
        """The VolatileFile of the regular file at path (created, with its own fd, if needed)."""
        if fd is None:
            try:
                fd = os.open(self._real(path), os.O_RDWR | os.O_CLOEXEC)
            except PermissionError:
                fd = os.open(self._real(path), os.O_RDONLY | os.O_CLOEXEC)
        ino = os.fstat(fd).st_ino
        vf = self.files.get(ino)
        if vf is None:
            vf = self.files[ino] = VolatileFile(fd, path)
            vf.ino = ino
        else:
            os.close(fd)
            vf.path = path
        return vf

    def _release_file(self, vf):
        """Close a file's fd once it has no handles and nothing pending (orphans: no handles)."""
        if vf.opens > 0 or (vf.pending and not vf.orphan):
            return
        if self.files.get(vf.ino) is vf:
            del self.files[vf.ino]
        self.mem -= vf.mem
        os.close(vf.fd)
        vf.fd = -1

    def _orphan(self, ino):
        """A file lost its last name: its pending data can no longer persist anywhere."""
        vf = self.files.pop(ino, None)
        if vf is None:
            return None
        vf.orphan = True
        self.total_size -= vf.size
        self._release_file(vf)
        return vf

    def _grow_check(self, vf, new_size):
        if (self.space_limit is not None and not vf.orphan and new_size > vf.size
                and self.total_size + (new_size - vf.size) > self.space_limit):
            self.counts["enospc"] += 1
            raise mfusepy.FuseOSError(errno.ENOSPC)

    def _resize(self, vf, length):
        self._grow_check(vf, length)
        before = vf.mem
        self.seq += 1
        delta = vf.truncate(self.seq, length)
        self.mem += vf.mem - before
        if not vf.orphan:
            self.total_size += delta
        self.counts["truncates"] += 1

    def _sync_locked(self, vf):
        before = vf.mem
        did = vf.sync()
        self.mem += vf.mem - before
        return did

    def _writeback(self):
        """Too much pending: write back the file that holds most of it (not fsynced)."""
        while self.mem > self.max_pending:
            vf = max(self.files.values(), key=lambda f: f.mem, default=None)
            if vf is None or vf.mem == 0:
                return
            self._sync_locked(vf)
            self.counts["writebacks"] += 1
            self._release_file(vf)

    def writeback_all(self):
        """The kernel's periodic writeback (dirty data older than dirty_expire_centisecs, 30 s
        by default, reaches the disk without any fsync): every pending write becomes durable
        now, the filesystem stays up. Returns the number of files written back."""
        n = 0
        with self._lock:
            for vf in list(self.files.values()):
                if vf.pending and self._sync_locked(vf):
                    os.fsync(vf.fd)
                    n += 1
                    self._release_file(vf)
            self.counts["writebacks"] += n
        return n

    def _delay(self):
        if self.fsync_delay > 0:
            time.sleep(self.fsync_delay)

    def _handle(self, fi):
        try:
            return self.handles[fi.fh]
        except KeyError:
            raise mfusepy.FuseOSError(errno.EBADF) from None

    def _set_owner(self, path):
        uid, gid, _pid = mfusepy.fuse_get_context()
        if os.geteuid() == 0 and (uid, gid) != (0, 0):
            os.lchown(self._real(path), uid, gid)

    # -- files ---------------------------------------------------------------------------

    @_dead_check
    def getattr(self, path, fi=None):
        with self._lock:
            self._check_dead()
            if fi is not None and fi.fh in self.handles:
                vf = self.handles[fi.fh].vf
                st = os.fstat(vf.fd)
            else:
                st = os.lstat(self._real(path))
                vf = self.files.get(st.st_ino) if stat.S_ISREG(st.st_mode) else None
            attrs = {k: getattr(st, k) for k in ("st_mode", "st_ino", "st_nlink", "st_uid",
                                                   "st_gid", "st_size", "st_blocks", "st_rdev")}
            attrs.update(st_atime=st.st_atime_ns, st_mtime=st.st_mtime_ns, st_ctime=st.st_ctime_ns)
            if vf is not None:
                attrs["st_size"] = vf.size
            return attrs

    def _open(self, path, fi, fd=None):
        vf = self._file(path, fd)
        flags = fi.flags
        if flags & os.O_TRUNC and vf.size:
            try:
                self._resize(vf, 0)
            except OSError:
                self._release_file(vf)
                raise
        vf.opens += 1
        fh = self.next_fh
        self.next_fh += 1
        self.handles[fh] = _Handle(vf, bool(flags & (os.O_SYNC | os.O_DSYNC)))
        fi.fh = fh
        fi.direct_io = 0     # LMDB mmaps its data file: page cache I/O only
        fi.keep_cache = 1    # the page cache always holds the model's view (one mount)
        return 0

    @_dead_check
    def open(self, path, fi):
        with self._lock:
            self._check_dead()
            return self._open(path, fi)

    @_dead_check
    def create(self, path, mode, fi):
        with self._lock:
            self._check_dead()
            fd = os.open(self._real(path), os.O_CREAT | os.O_RDWR | os.O_CLOEXEC
                         | (fi.flags & os.O_EXCL), mode)
            self._set_owner(path)
            return self._open(path, fi, fd)

    @_dead_check
    def read(self, path, size, offset, fi):
        with self._lock:
            self._check_dead()
            self.counts["reads"] += 1
            return self._handle(fi).vf.read(offset, size)

    @_dead_check
    def write(self, path, data, offset, fi):
        with self._lock:
            self._check_dead()
            h = self._handle(fi)
            vf = h.vf
            self._grow_check(vf, offset + len(data))
            before = vf.mem
            self.seq += 1
            grew = vf.write(self.seq, offset, data)
            self.mem += vf.mem - before
            if not vf.orphan:
                self.total_size += grew
            self.counts["writes"] += 1
            self.counts["bytes_written"] += len(data)
            synced = False
            if h.sync:
                synced = self._sync_locked(vf)
                self.counts["sync_writes"] += 1
            elif self.mem > self.max_pending:
                self._writeback()
        if synced:
            os.fsync(vf.fd)
        return len(data)

    @_dead_check
    def truncate(self, path, length, fi=None):
        with self._lock:
            self._check_dead()
            if fi is not None and fi.fh in self.handles:
                self._resize(self.handles[fi.fh].vf, length)
                return 0
            vf = self._file(path)
            try:
                self._resize(vf, length)
            finally:
                self._release_file(vf)
            return 0

    @_dead_check
    def fallocate(self, path, mode, offset, length, fi):
        if mode & ~_FALLOC_FL_KEEP_SIZE:
            raise mfusepy.FuseOSError(errno.EOPNOTSUPP)  # punch hole, zero range, ...
        with self._lock:
            self._check_dead()
            vf = self._handle(fi).vf
            if not mode & _FALLOC_FL_KEEP_SIZE and offset + length > vf.size:
                self._resize(vf, offset + length)
            return 0

    @_dead_check
    def fsync(self, path, datasync, fi):
        self._delay()
        with self._lock:
            self._check_dead()
            vf = self._handle(fi).vf
            self.counts["fsyncs"] += 1
            self.counts["datasyncs"] += bool(datasync)
            did = self._sync_locked(vf)
        if did:
            os.fsync(vf.fd)   # the handle is open, so its fd stays open
        return 0

    @_dead_check
    def flush(self, path, fi):
        with self._lock:
            self._check_dead()
            return 0

    def release(self, path, fi):
        with self._lock:
            h = self.handles.pop(fi.fh, None)
            if h is not None:
                h.vf.opens -= 1
                self._release_file(h.vf)
            return 0

    # -- names (durable at once) -----------------------------------------------------------

    @_dead_check
    def unlink(self, path):
        with self._lock:
            self._check_dead()
            real = self._real(path)
            st = os.lstat(real)
            os.unlink(real)
            if stat.S_ISREG(st.st_mode) and st.st_nlink == 1:
                if self._orphan(st.st_ino) is None:
                    self.total_size -= st.st_size
            return 0

    @_dead_check
    def rename(self, old, new, flags=0):
        if flags & _RENAME_EXCHANGE or flags & ~(_RENAME_NOREPLACE | _RENAME_EXCHANGE):
            raise mfusepy.FuseOSError(errno.EINVAL)
        with self._lock:
            self._check_dead()
            real_old, real_new = self._real(old), self._real(new)
            st_old = os.lstat(real_old)
            try:
                st_new = os.lstat(real_new)
            except FileNotFoundError:
                st_new = None
            if st_new is not None and flags & _RENAME_NOREPLACE:
                raise mfusepy.FuseOSError(errno.EEXIST)
            os.rename(real_old, real_new)
            if (st_new is not None and stat.S_ISREG(st_new.st_mode) and st_new.st_nlink == 1
                    and st_new.st_ino != st_old.st_ino):
                if self._orphan(st_new.st_ino) is None:
                    self.total_size -= st_new.st_size
            if stat.S_ISDIR(st_old.st_mode):   # names for reports only
                for vf in self.files.values():
                    if vf.path.startswith(old + "/"):
                        vf.path = new + vf.path[len(old):]
            elif st_old.st_ino in self.files:
                self.files[st_old.st_ino].path = new
            return 0

    @_dead_check
    def link(self, target, source):
        with self._lock:
            self._check_dead()
            os.link(self._real(source), self._real(target))
            return 0

    @_dead_check
    def symlink(self, target, source):
        with self._lock:
            self._check_dead()
            os.symlink(source, self._real(target))
            self._set_owner(target)
            return 0

    @_dead_check
    def readlink(self, path):
        with self._lock:
            self._check_dead()
            return os.readlink(self._real(path))

    @_dead_check
    def mknod(self, path, mode, dev):
        with self._lock:
            self._check_dead()
            os.mknod(self._real(path), mode, dev)
            self._set_owner(path)
            return 0

    @_dead_check
    def mkdir(self, path, mode):
        with self._lock:
            self._check_dead()
            os.mkdir(self._real(path), mode)
            self._set_owner(path)
            return 0

    @_dead_check
    def rmdir(self, path):
        with self._lock:
            self._check_dead()
            os.rmdir(self._real(path))
            return 0

    def _target(self, path, fi):
        """(path or fd) for chmod/chown/utimens: the handle's fd when the path is unknown."""
        if fi is not None and fi.fh in self.handles:
            return self.handles[fi.fh].vf.fd
        return self._real(path)

    @_dead_check
    def chmod(self, path, mode, fi=None):
        with self._lock:
            self._check_dead()
            os.chmod(self._target(path, fi), mode)
            return 0

    @_dead_check
    def chown(self, path, uid, gid, fi=None):
        with self._lock:
            self._check_dead()
            target = self._target(path, fi)
            if isinstance(target, int):
                os.fchown(target, uid, gid)
            else:
                os.lchown(target, uid, gid)
            return 0

    @_dead_check
    def utimens(self, path, times=None, fi=None):
        with self._lock:
            self._check_dead()
            target = self._target(path, fi)
            kw = {} if isinstance(target, int) else {"follow_symlinks": False}
            if times is None:
                os.utime(target, **kw)
                return 0
            st = os.stat(target, **kw)
            now = time.time_ns()
            ns = []
            for (sec, nsec), old in zip(times, (st.st_atime_ns, st.st_mtime_ns)):
                ns.append(now if nsec == _UTIME_NOW else old if nsec == _UTIME_OMIT
                          else sec * 10**9 + nsec)
            os.utime(target, ns=tuple(ns), **kw)
            return 0

    @_dead_check
    def access(self, path, amode):
        with self._lock:
            self._check_dead()
            if not os.access(self._real(path), amode):
                raise mfusepy.FuseOSError(errno.EACCES)
            return 0

    @_dead_check
    def statfs(self, path):
        with self._lock:
            self._check_dead()
            sv = os.statvfs(self.root)
            out = {k: getattr(sv, k) for k in ("f_bsize", "f_frsize", "f_blocks", "f_bfree",
                                               "f_bavail", "f_files", "f_ffree", "f_favail",
                                               "f_flag", "f_namemax")}
            if self.space_limit is not None:
                bs = sv.f_frsize or 4096
                out["f_blocks"] = self.space_limit // bs
                out["f_bfree"] = out["f_bavail"] = max(0, self.space_limit - self.total_size) // bs
            return out

    # -- directories ---------------------------------------------------------------------

    @_dead_check
    def opendir(self, path):
        with self._lock:
            self._check_dead()
            if not os.path.isdir(self._real(path)):
                raise mfusepy.FuseOSError(errno.ENOTDIR)
            fh = self.next_fh
            self.next_fh += 1
            self.dirs[fh] = path
            return fh

    @_dead_check
    def readdir(self, path, fh):
        with self._lock:
            self._check_dead()
            if path is None:   # removed while open
                path = self.dirs.get(fh, "/")
            return [".", ".."] + os.listdir(self._real(path))

    def releasedir(self, path, fh):
        with self._lock:
            self.dirs.pop(fh, None)
            return 0

    @_dead_check
    def fsyncdir(self, path, datasync, fh):
        self._delay()   # names are durable at once: only the slow disk is simulated
        with self._lock:
            self._check_dead()
            self.counts["fsyncdirs"] += 1
            return 0

    # -- lifecycle -----------------------------------------------------------------------

    def destroy(self, path):
        """Unmounted: a clean unmount persists what is pending (nothing after a cut)."""
        with self._lock:
            if not self.dead:
                for vf in list(self.files.values()):
                    if vf.sync():
                        os.fsync(vf.fd)
            for vf in list(self.files.values()):
                os.close(vf.fd)
            self.files.clear()
            self.dead = True

    # -- control ---------------------------------------------------------------------------

    def power_cut(self, mode, seed):
        """Decide and write what survives (see crashfs_model), fsync it; then fail all I/O."""
        if mode not in MODES:
            raise ValueError("unknown power-cut mode %r (one of %s)" % (mode, ", ".join(MODES)))
        with self._lock:
            if self.dead:
                raise RuntimeError("already cut (or unmounted): remount first")
            self.dead = True
            rng = random.Random(seed)
            todo = sorted((vf for vf in self.files.values() if vf.pending),
                          key=lambda f: (f.path, f.ino))
            summary = {"mode": mode, "seed": seed, "files": [], "events_pending": 0}
            cut_seq = None
            events = sorted(set().union(*(vf.event_seqs() for vf in todo)))
            summary["events_pending"] = len(events)
            if mode == "prefix":
                kept = rng.randint(0, len(events))
                cut_seq = events[kept - 1] if kept else -1
                summary["events_persisted"] = kept
            for vf in todo:
                summary["files"].append(vf.cut(mode, rng, cut_seq))
                os.fsync(vf.fd)
            self.mem = 0
            for key in ("pages_pending", "pages_persisted", "pages_dropped", "pages_partial"):
                summary[key] = sum(f[key] for f in summary["files"])
            log.warning("power cut: mode=%s seed=%s pages pending=%d persisted=%d dropped=%d "
                        "partial=%d", mode, seed, summary["pages_pending"],
                        summary["pages_persisted"], summary["pages_dropped"],
                        summary["pages_partial"])
            return summary

    def stats(self):
        with self._lock:
            live = [vf for vf in self.files.values() if vf.pending]
            return dict(self.counts, dead=self.dead, files_open=len(self.files),
                        files_pending=len(live), pages_pending=sum(len(v.pages) for v in live),
                        pending_bytes=self.mem, total_size=self.total_size,
                        space_limit=self.space_limit, fsync_delay_ms=self.fsync_delay * 1000.0,
                        handles=len(self.handles))


class _FUSE(mfusepy.FUSE):
    """mfusepy's FUSE, passing the file handle to truncate/chmod/chown/utimens (ftruncate,
    fchmod, ... on an unlinked file have no path) and the flags to rename."""

    def _p(self, path):
        return None if path is None else path.decode(self.encoding, self.errors)

    def _fi(self, fip):
        return fip.contents if fip else None

    def truncate_fuse_3(self, path, length, fip):
        return self.operations.truncate(self._p(path), length, self._fi(fip))

    def chmod_fuse_3(self, path, mode, fip):
        return self.operations.chmod(self._p(path), mode, self._fi(fip))

    def chown_fuse_3(self, path, uid, gid, fip):
        if mfusepy.c_uid_t(uid + 1).value == 0:
            uid = -1
        if mfusepy.c_gid_t(gid + 1).value == 0:
            gid = -1
        return self.operations.chown(self._p(path), uid, gid, self._fi(fip))

    def utimens_fuse_3(self, path, buf, fip):
        times = None   # else ((sec, nsec) of atime, of mtime); nsec may be UTIME_NOW/UTIME_OMIT
        if buf:
            ts = (buf.contents.actime, buf.contents.modtime)
            times = tuple((t.tv_sec, t.tv_nsec) for t in ts)
        return self.operations.utimens(self._p(path), times, self._fi(fip))

    def rename_fuse_3(self, old, new, flags):
        return self.operations.rename(self._p(old), self._p(new), flags)


class _Control(threading.Thread):
    """The control socket: one request line per connection, one JSON reply line.

        PING | CUT <mode> <seed> | FSYNC_DELAY <ms> | SPACE_LIMIT <bytes|none> | STATS
    Reply: {"ok": true, ...} or {"ok": false, "error": "..."}."""

    def __init__(self, ops, path):
        super().__init__(name="crashfs-control", daemon=True)
        self.ops = ops
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        if os.path.exists(path):
            os.unlink(path)
        self.sock.bind(path)
        self.sock.listen(8)

    def run(self):
        while True:
            conn, _ = self.sock.accept()
            with conn:
                try:
                    line = conn.makefile("rb").readline().decode().split()
                    reply = {"ok": True}
                    reply.update(self.handle(line) or {})
                except Exception as e:  # reported to the caller, the daemon goes on
                    reply = {"ok": False, "error": "%s: %s" % (type(e).__name__, e)}
                try:
                    conn.sendall(json.dumps(reply).encode() + b"\n")
                except OSError:
                    pass

    def handle(self, words):
        cmd, args = (words[0].upper(), words[1:]) if words else ("", [])
        if cmd == "PING":
            return {"pid": os.getpid()}
        if cmd == "CUT":
            return {"summary": self.ops.power_cut(args[0], int(args[1]))}
        if cmd == "FSYNC_DELAY":
            self.ops.fsync_delay = max(0.0, float(args[0]) / 1000.0)
            return None
        if cmd == "SPACE_LIMIT":
            with self.ops._lock:
                self.ops.space_limit = None if args[0].lower() == "none" else int(args[0])
            return None
        if cmd == "WRITEBACK":
            return {"files": self.ops.writeback_all()}
        if cmd == "STATS":
            return {"stats": self.ops.stats()}
        raise ValueError("unknown command %r" % " ".join(words))


def _watch_parent(pid):
    """A test process that dies without unmounting must not leave the mount behind."""
    while os.getppid() == pid:
        time.sleep(0.5)
    log.warning("parent %d is gone: unmounting", pid)
    os.kill(os.getpid(), signal.SIGTERM)   # libfuse's handler ends the loop and unmounts


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("backing")
    ap.add_argument("mount")
    ap.add_argument("--control", required=True, help="UNIX socket path for the control channel")
    ap.add_argument("--fsync-delay-ms", type=float, default=0.0)
    ap.add_argument("--space-limit", type=int, default=None)
    ap.add_argument("--max-pending-mb", type=int, default=256)
    ap.add_argument("--parent-pid", type=int, default=None,
                    help="unmount (as on SIGTERM) when this process is gone")
    ap.add_argument("--debug", action="store_true", help="log every FUSE request (libfuse -d)")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s crashfs[%(process)d] %(levelname)s %(message)s")
    ops = CrashOps(a.backing, a.fsync_delay_ms, a.space_limit, a.max_pending_mb << 20)
    _Control(ops, a.control).start()
    if a.parent_pid:
        threading.Thread(target=_watch_parent, args=(a.parent_pid,), daemon=True).start()
    _FUSE(ops, a.mount, raw_fi=True, foreground=True, debug=a.debug, fsname="crashfs",
          hard_remove=True, default_permissions=True)


if __name__ == "__main__":
    main()
