"""crashfs: a FUSE filesystem for crash-consistency tests, in the manner of LazyFS.

A passthrough over a backing directory that keeps every write not yet fsynced in memory and, on a
simulated power loss, persists none, a prefix, or a random subset of those writes; then it fails
all I/O with EIO until it is mounted again. With it a test can power-cut a real server process
(zkpy; Apache ZooKeeper's FileChannel writes + force() alike) and check that no acknowledged write
is lost after the restart:

    with CrashFS(tmp_path / "backing", tmp_path / "mnt") as fs:
        start the server with its dataDir under fs.mountpoint, load it, SIGKILL it
        fs.power_cut("random", seed)     # prints the mode and seed; returns a summary dict
        fs.remount()                     # fresh kernel page cache, I/O works again
        restart the server on the same dataDir and check

This module is the test-process side: it starts the daemon (crashfs_daemon.py) in its own
process, never in the test's, and talks to it over a UNIX socket. The page model and what each
power-cut mode leaves are described in crashfs_model.py, the FUSE side in crashfs_daemon.py.

Limits of the model (see those modules):
  * only file data and sizes are volatile: names (create, rename, unlink, mkdir, ...) reach the
    backing directory at once, so a missing directory fsync is not caught;
  * truncates are volatile like writes; a "random" cut loses them all, "prefix" keeps those in
    its prefix;
  * the kernel's page cache can still serve reads through an fd opened before a cut: remount
    (which drops the cache) before reading what survived;
  * unmount() is a clean unmount: what is still pending is persisted (after a cut nothing is);
  * settings (fsync delay, space limit) are kept by this object and applied again on remount;
  * the unit of loss is what the kernel sends: a write() that ends in a page the kernel has not
    cached reaches crashfs as one FUSE write per such page, so "prefix" can tear it at a page
    boundary; data written through a writable shared mmap reaches crashfs only when the kernel
    writes it back (msync, fsync, or later), so a cut before that loses it even in mode "all";
  * the backing dir must not be changed behind the mount's back while it is mounted.

What the kernel sends (seen with Linux 6.x, libfuse 3.14): fsync() -> FSYNC datasync=0,
fdatasync() -> datasync=1; Java's FileChannel.force(false) (ZooKeeper's log commit) -> datasync=1,
force(true) -> datasync=0; a write on an O_SYNC/O_DSYNC fd -> WRITE then FSYNC; O_DIRECT writes
-> WRITE (volatile here, like any other).

API
  crashfs_unavailable() -> None or the reason crashfs can't run here (for pytest.skip).
  CrashFS(backing_dir, mountpoint, log_path=None, max_pending_mb=256)
    (past max_pending_mb of unsynced data the daemon writes back the file holding most, as the
    kernel does under memory pressure: that data is then durable)
    mount(), unmount(), remount(); context manager (mounts, always unmounts)
    power_cut(mode="random", seed=None) -> summary dict; mode in MODES
    set_fsync_delay(ms), set_space_limit(nbytes or None), stats() -> dict
    writeback() -> files: every pending write durable now (the kernel's periodic writeback)
"""

import functools
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODES = ("none", "all", "prefix", "random")
DAEMON = str(Path(__file__).resolve().with_name("crashfs_daemon.py"))
MOUNT_TIMEOUT = 15.0


def _mountinfo_points():
    points = set()
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                field = line.split()[4]
                points.add(field.encode().decode("unicode_escape"))  # \040 for spaces etc.
    except OSError:
        pass
    return points


def is_mounted(path):
    """Whether path is a mount point (from /proc/self/mountinfo: never stats a hung mount)."""
    return os.path.realpath(path) in _mountinfo_points()


@functools.lru_cache(maxsize=None)
def crashfs_unavailable():
    """None if crashfs can mount here, else why not (no /dev/fuse, no fusermount3, no mfusepy, or
    mounting is not permitted). Tries one real mount, once per process."""
    if not os.path.exists("/dev/fuse"):
        return "crashfs: no /dev/fuse"
    try:
        os.close(os.open("/dev/fuse", os.O_RDWR))
    except OSError as e:
        return "crashfs: /dev/fuse not usable: %s" % e
    if not shutil.which("fusermount3"):
        return "crashfs: fusermount3 not installed (apt-get install fuse3)"
    probe = subprocess.run([sys.executable, "-c", "import mfusepy"], capture_output=True,
                           text=True)
    if probe.returncode != 0:
        err = (probe.stderr.strip().splitlines() or ["?"])[-1]
        return "crashfs: mfusepy not importable (pip install mfusepy): %s" % err
    tmp = tempfile.mkdtemp(prefix="crashfs-probe-")
    try:
        fs = CrashFS(os.path.join(tmp, "b"), os.path.join(tmp, "m"))
        try:
            fs.mount()
        finally:
            fs.unmount()
    except Exception as e:
        return "crashfs: mounting a FUSE filesystem failed: %s" % e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return None


class CrashFSError(RuntimeError):
    pass


class CrashFS:
    """One crashfs mount of backing_dir at mountpoint, served by a daemon subprocess."""

    def __init__(self, backing_dir, mountpoint, log_path=None, max_pending_mb=256):
        self.backing = Path(backing_dir).resolve()
        self.mountpoint = Path(mountpoint).resolve()
        if (self.backing == self.mountpoint or self.mountpoint in self.backing.parents
                or self.backing in self.mountpoint.parents):
            raise ValueError("crashfs: backing dir and mount point must not contain each other")
        self._user_log = log_path
        self.log_path = None
        self._tmp = None
        self._proc = None
        self._fsync_delay_ms = 0.0
        self._space_limit = None
        self._max_pending_mb = int(max_pending_mb)

    # -- lifecycle -----------------------------------------------------------------------

    def mount(self):
        if self._proc is not None:
            raise CrashFSError("crashfs: already mounted at %s" % self.mountpoint)
        self.backing.mkdir(parents=True, exist_ok=True)
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        if is_mounted(self.mountpoint):
            raise CrashFSError("crashfs: something is mounted at %s already" % self.mountpoint)
        self._tmp = tempfile.mkdtemp(prefix="crashfs-")   # short: UNIX socket paths are limited
        self._sock = os.path.join(self._tmp, "control")
        self.log_path = Path(self._user_log or os.path.join(self._tmp, "daemon.log"))
        cmd = [sys.executable, DAEMON, str(self.backing), str(self.mountpoint),
               "--control", self._sock, "--fsync-delay-ms", str(self._fsync_delay_ms),
               "--parent-pid", str(os.getpid()), "--max-pending-mb", str(self._max_pending_mb)]
        if self._space_limit is not None:
            cmd += ["--space-limit", str(self._space_limit)]
        with open(self.log_path, "ab") as logf:
            self._proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=logf,
                                          stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + MOUNT_TIMEOUT
        while True:
            rc = self._proc.poll()
            if rc is not None:
                tail = self.log_tail()
                self._proc = None
                self._cleanup_tmp()
                raise CrashFSError("crashfs: the daemon exited (status %s) before mounting:\n%s"
                                   % (rc, tail))
            if is_mounted(self.mountpoint) and os.path.exists(self._sock):
                try:
                    self._request("PING")
                    return self
                except OSError:
                    pass
            if time.monotonic() > deadline:
                tail = self.log_tail()
                self.unmount()
                raise CrashFSError("crashfs: no mount after %.0f s:\n%s" % (MOUNT_TIMEOUT, tail))
            time.sleep(0.02)

    def unmount(self):
        """Unmount (fusermount3 -u, lazily if busy) and end the daemon. Safe to call twice."""
        proc = self._proc
        if proc is None:
            return
        mp = str(self.mountpoint)
        lazy = False
        if is_mounted(mp):
            r = subprocess.run(["fusermount3", "-u", mp], capture_output=True, timeout=30)
            if r.returncode != 0:   # busy: a process still has a file or cwd there
                subprocess.run(["fusermount3", "-u", "-z", mp], capture_output=True, timeout=30)
                lazy = True
        try:   # a lazily unmounted daemon goes on serving the open files: don't wait for those
            proc.wait(timeout=1 if lazy else 10)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if is_mounted(mp):   # the daemon died without unmounting
            subprocess.run(["fusermount3", "-u", "-z", mp], capture_output=True, timeout=30)
        self._proc = None
        self._cleanup_tmp()

    def _cleanup_tmp(self):
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def remount(self):
        self.unmount()
        return self.mount()

    def __enter__(self):
        if self._proc is None:
            self.mount()
        return self

    def __exit__(self, *exc):
        self.unmount()

    def __del__(self):
        if getattr(self, "_proc", None) is not None:
            try:
                self.unmount()
            except Exception:
                pass

    def log_tail(self, lines=30):
        try:
            return "\n".join(Path(self.log_path).read_text(errors="replace").splitlines()[-lines:])
        except (OSError, TypeError):
            return ""

    # -- control -------------------------------------------------------------------------

    def _request(self, line):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(60)
            s.connect(self._sock)
            s.sendall(line.encode() + b"\n")
            buf = b""
            while not buf.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
        reply = json.loads(buf)
        if not reply.get("ok"):
            raise CrashFSError("crashfs: %s: %s" % (line, reply.get("error")))
        return reply

    def _live(self):
        if self._proc is None:
            raise CrashFSError("crashfs: not mounted")

    def power_cut(self, mode="random", seed=None):
        """Simulate a power loss now: persist what `mode` decides of the pending writes (and
        fsync it to the backing dir before returning), then fail all I/O until remount.
        Returns {"mode", "seed", "pages_pending", "pages_persisted", "pages_dropped",
        "pages_partial", "events_pending", ["events_persisted" for prefix], "files": [...]}."""
        if mode not in MODES:
            raise ValueError("crashfs: mode must be one of %s" % (MODES,))
        if seed is None:
            seed = random.SystemRandom().randrange(1 << 32)
        self._live()
        print("crashfs: power cut mode=%s seed=%d" % (mode, seed), flush=True)
        summary = self._request("CUT %s %d" % (mode, seed))["summary"]
        print("crashfs: pages pending=%d persisted=%d partial=%d dropped=%d"
              % (summary["pages_pending"], summary["pages_persisted"], summary["pages_partial"],
                 summary["pages_dropped"]), flush=True)
        return summary

    def set_fsync_delay(self, ms):
        """Slow disk: every fsync/fdatasync (and fsyncdir) sleeps ms before doing its work."""
        self._fsync_delay_ms = float(ms)
        if self._proc is not None:
            self._request("FSYNC_DELAY %s" % float(ms))

    def set_space_limit(self, nbytes):
        """Full disk: writes/truncates that would take the total size of the files past nbytes
        fail with ENOSPC (None: no limit)."""
        self._space_limit = None if nbytes is None else int(nbytes)
        if self._proc is not None:
            self._request("SPACE_LIMIT %s" % ("none" if nbytes is None else int(nbytes)))

    def writeback(self):
        """Everything pending becomes durable, as the kernel's periodic writeback does with
        dirty data older than ~30 s: a test calls it for data written "long ago" (rounds run
        seconds apart here). Returns the number of files written back."""
        self._live()
        return self._request("WRITEBACK")["files"]

    def stats(self):
        self._live()
        return self._request("STATS")["stats"]
