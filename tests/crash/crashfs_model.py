"""The volatile state of one file under crashfs: writes not yet synced, kept as 4 KiB page versions.

Used by crashfs_daemon.py (one VolatileFile per backing inode); no FUSE here, so it is tested on
plain files too. Not thread-safe: the daemon holds its lock around every call.

Model
  The backing file (an open fd) is the durable state. On top of it a VolatileFile keeps, since the
  last sync:
    * pages: {page index: _Page}; a page holds `cur`, its newest 4 KiB content (what reads see),
      and `vers`, the list of changes to it in global write order: (seq, offset in page, data,
      is_write). data is the bytes written, or an int n for n zero bytes (zero-filled pages and
      truncated tails cost no memory). Version j of a page is its content with the first j
      changes applied; version 0 is its pre-write (durable) content, read from the backing file
      when needed, so it is never stored.
    * size: the volatile size; sizes: [(seq, size after)] for every change of it;
    * visible: the lowest size since the last sync: durable bytes at or past it were cut off by
      a volatile truncate and read as zeros (a truncate down then up reads zeros, as on a real
      file).
  A write or a truncate is one event with one global sequence number `seq` (the daemon's counter),
  whatever the pages it touches.

  sync() writes every pending page and the size to the backing fd (the caller fsyncs it) and
  forgets the history. cut(mode, rng, cut_seq) instead writes what a power loss would have left:
    none    nothing: every page keeps its durable content, the size its durable size.
    all     everything, as sync() (a clean writeback).
    prefix  the events with seq <= cut_seq, replayed in order (the truncates among them too).
    random  each page independently ends at a random version 0..len(vers) (the kernel writes
            pages back in any order); truncates are lost (the durable bytes past them stay),
            the size is the durable size, or the end of the furthest write that persisted if
            that is larger (so unpersisted pages below it read as their old content or zeros).
  A truncate also adds a zeroing change to the pending pages it cuts, so prefix and random see it
  on pages that were written before it.
"""

import bisect
import os

PAGE = 4096
ZERO_PAGE = bytes(PAGE)
MODES = ("none", "all", "prefix", "random")
_IOV_MAX = 512


class _Page:
    __slots__ = ("cur", "vers")

    def __init__(self, cur):
        self.cur = cur      # bytes or bytearray of PAGE bytes (ZERO_PAGE when all zero)
        self.vers = []      # [(seq, offset, data bytes or zero count, is_write)]


def _apply(buf, off, data):
    if isinstance(data, int):
        buf[off:off + data] = bytes(data)
    else:
        buf[off:off + len(data)] = data


class VolatileFile:
    """Pending (unsynced) writes of one file over its backing fd; see the module docstring."""

    def __init__(self, fd, path=""):
        self.fd = fd
        self.path = path            # best-effort name (relative to the mount), for reports
        self.dsize = os.fstat(fd).st_size   # durable size (the backing file's)
        self.size = self.dsize      # volatile size
        self.visible = self.dsize   # durable bytes at >= visible read as zeros
        self.pages = {}
        self.sizes = []             # [(seq, size after)]
        self.mem = 0                # approximate bytes held for pending state (see write())
        self.opens = 0              # open handles (the daemon's bookkeeping)
        self.orphan = False         # unlinked: no name on disk any more
        self.ino = None             # the backing inode (the daemon's key)

    @property
    def pending(self):
        return bool(self.pages or self.sizes)

    # -- reads of the durable state --------------------------------------------------------

    def _backing(self, off, n, limit):
        """n bytes of the backing file at off, as zeros at and past `limit`."""
        if off >= limit:
            return bytes(n)
        data = os.pread(self.fd, min(n, limit - off), off)
        if len(data) < n:
            data += bytes(n - len(data))
        return data

    def _base(self, idx):
        """Page idx as the view shows it before any pending change: a fresh bytearray."""
        return bytearray(self._backing(idx * PAGE, PAGE, min(self.visible, self.dsize)))

    # -- volatile operations ---------------------------------------------------------------

    def read(self, off, n):
        end = min(off + n, self.size)
        if off >= end:
            return b""
        limit = min(self.visible, self.dsize)
        pages = self.pages
        if not pages:
            return self._backing(off, end - off, limit)
        out = []
        pos = off
        while pos < end:
            idx = pos // PAGE
            o = pos - idx * PAGE
            m = min(PAGE - o, end - pos)
            page = pages.get(idx)
            if page is not None:
                out.append(page.cur[o:o + m])
                pos += m
                continue
            run_end = pos + m   # a run of pages without pending changes: one pread
            idx += 1
            while run_end < end and idx not in pages:
                run_end = min((idx + 1) * PAGE, end)
                idx += 1
            out.append(self._backing(pos, run_end - pos, limit))
            pos = run_end
        return b"".join(out)

    def write(self, seq, off, data):
        """Record a write; returns how much it grew the size."""
        n_total = len(data)
        if n_total == 0:
            return 0
        mv = memoryview(data)
        end = off + n_total
        pages = self.pages
        pos = off
        while pos < end:
            idx = pos // PAGE
            o = pos - idx * PAGE
            n = min(PAGE - o, end - pos)
            chunk = bytes(mv[pos - off:pos - off + n])
            zero = chunk.count(0) == n
            page = pages.get(idx)
            if page is None:
                page = pages[idx] = _Page(ZERO_PAGE)
                self.mem += 64
                if n < PAGE:
                    page.cur = self._base(idx)
                    self.mem += PAGE
            if n == PAGE:
                page.cur = ZERO_PAGE if zero else chunk     # shared with the version below
            else:
                if type(page.cur) is not bytearray:
                    page.cur = bytearray(page.cur)
                    self.mem += PAGE
                page.cur[o:o + n] = chunk
            page.vers.append((seq, o, n if zero else chunk, True))
            self.mem += 32 if zero else 32 + n
            pos += n
        if end > self.size:
            grew = end - self.size
            self.size = end
            self.sizes.append((seq, end))
            return grew
        return 0

    def truncate(self, seq, length):
        """Record a truncate (either way); returns the size change."""
        old = self.size
        if length == old:
            return 0
        if length < old:
            for idx, page in self.pages.items():     # O(pending pages), not O(file size)
                start = idx * PAGE
                if start >= length:
                    page.cur = ZERO_PAGE
                    page.vers.append((seq, 0, PAGE, False))
                elif start + PAGE > length:
                    o = length - start
                    if type(page.cur) is not bytearray:
                        page.cur = bytearray(page.cur)
                        self.mem += PAGE
                    page.cur[o:] = bytes(PAGE - o)
                    page.vers.append((seq, o, PAGE - o, False))
                else:
                    continue
                self.mem += 32
            self.visible = min(self.visible, length)
        self.size = length
        self.sizes.append((seq, length))
        return length - old

    def event_seqs(self):
        """The sequence numbers of this file's pending events."""
        seqs = {s for s, _ in self.sizes}
        for page in self.pages.values():
            seqs.update(v[0] for v in page.vers)
        return seqs

    # -- making it durable -----------------------------------------------------------------

    def sync(self):
        """Write all pending state to the backing fd (not fsynced); returns whether it had any."""
        if not self.pending:
            return False
        backing = self.dsize
        if self.visible < backing:
            os.ftruncate(self.fd, self.visible)
            backing = self.visible
        writes = []
        for idx in sorted(self.pages):
            start = idx * PAGE
            if start >= self.size:
                break
            cur = self.pages[idx].cur
            if start + PAGE > self.size:
                cur = cur[:self.size - start]
            writes.append((start, cur))
        backing = max(backing, self._pwrite_runs(writes))
        if backing != self.size:
            os.ftruncate(self.fd, self.size)
        self._forget(self.size)
        return True

    def discard(self):
        """Drop every pending change (the durable state stays as it is)."""
        self._forget(self.dsize)

    def cut(self, mode, rng, cut_seq=None):
        """Write what a power loss in `mode` leaves (see the module docstring) and drop the rest.

        rng: a random.Random, used by "random" (one draw per pending page, in page order);
        cut_seq: for "prefix", the last event that persists. Returns a summary dict."""
        if mode not in MODES:
            raise ValueError("unknown power-cut mode %r" % (mode,))
        idxs = sorted(self.pages)
        chosen = {}
        for idx in idxs:
            vers = self.pages[idx].vers
            if mode == "none":
                j = 0
            elif mode == "all":
                j = len(vers)
            elif mode == "prefix":
                j = bisect.bisect_right([v[0] for v in vers], cut_seq)
            else:
                j = rng.randint(0, len(vers))
            chosen[idx] = j
        dsize = self.dsize
        if mode == "all":
            trunc_to, final = self.visible, self.size
        elif mode == "prefix":
            done = [s for q, s in self.sizes if q <= cut_seq]
            trunc_to = min([dsize] + done)
            final = done[-1] if done else dsize
        elif mode == "random":
            trunc_to, final = dsize, dsize
            for idx, j in chosen.items():
                for _seq, o, data, is_write in self.pages[idx].vers[:j]:
                    if is_write:
                        n = data if isinstance(data, int) else len(data)
                        final = max(final, idx * PAGE + o + n)
        else:
            trunc_to, final = dsize, dsize
        backing = dsize
        if trunc_to < dsize:
            os.ftruncate(self.fd, trunc_to)
            backing = trunc_to
        writes = []
        for idx in idxs:
            j = chosen[idx]
            start = idx * PAGE
            if j == 0 or start >= final:
                continue
            buf = bytearray(self._backing(start, PAGE, backing))
            for _seq, o, data, _w in self.pages[idx].vers[:j]:
                _apply(buf, o, data)
            writes.append((start, buf[:final - start] if start + PAGE > final else buf))
        backing = max(backing, self._pwrite_runs(writes))
        if backing != final:
            os.ftruncate(self.fd, final)
        summary = {
            "path": self.path,
            "pages_pending": len(idxs),
            "pages_persisted": sum(1 for i in idxs if chosen[i] == len(self.pages[i].vers)),
            "pages_dropped": sum(1 for i in idxs if chosen[i] == 0),
            "size_durable": dsize, "size_volatile": self.size, "size_after": final,
        }
        summary["pages_partial"] = (summary["pages_pending"] - summary["pages_persisted"]
                                    - summary["pages_dropped"])
        self._forget(final)
        return summary

    def _pwrite_runs(self, writes):
        """pwritev [(offset, buffer)] (sorted), coalescing adjacent ones; returns the end."""
        end = 0
        i = 0
        while i < len(writes):
            start, buf = writes[i]
            bufs = [buf]
            pos = start + len(buf)
            i += 1
            while i < len(writes) and writes[i][0] == pos and len(bufs) < _IOV_MAX:
                bufs.append(writes[i][1])
                pos += len(writes[i][1])
                i += 1
            done = os.pwritev(self.fd, bufs, start)
            if done != pos - start:   # regular files on a local fs: short only on error
                raise OSError(5, "short write to the backing file")
            end = max(end, pos)
        return end

    def _forget(self, size):
        self.pages = {}
        self.sizes = []
        self.mem = 0
        self.dsize = self.size = self.visible = size
