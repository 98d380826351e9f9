"""The client-facing half of a server: connections, watches, and reads from LMDB.

One Frontend lives in each worker process (or in the core process when workers=0). It owns its
connections, their watch tables and a read-only LMDB transaction; it talks to the core through a
*link* (in-process calls, or the IPC socket of zkpy.workers.worker):

    link.connect(conn_id, request_bytes, read_only)
    link.request(conn_id, entry_id, session_id, xid, op, body)   writes, closeSession, sync
    link.touch(session_id)        link.closed(conn_id, session_id)

and receives from the core, for each applied batch:

    batch(zxid, events, replies)   once the core committed it to LMDB: fire the watches
    committed(zxid)                after every frontend got the batch: deliver the replies
and also connected(conn_id, ok, session_id, timeout_ms, passwd, read_only), close_conn(conn_id).

A read is answered from an LMDB snapshot that
  - holds every batch delivered here when the read's turn came (its `required` zxid): so a
    client reads its own writes, and anything any client was answered before it asked;
  - holds no batch whose events were not delivered here: a snapshot newer than the events
    delivered (the core commits a batch, then writes it to every worker socket) waits until
    `pump()` (drain the control socket) or the socket's next read brings them (can_read). No
    client reads data before the event announcing it (ZooKeeper Programmer's Guide, "Ordering
    guarantees"). The core commits first so that a commit that fails (a full disk) has sent
    nothing: no frontend ever holds a batch LMDB does not have.
"""

import collections
import logging
import time

from zkpy.proto import codec
from zkpy.proto import records as r
from zkpy.tree import acl as acls

from zkpy.tree.watches import WatchManager

log = logging.getLogger("zkpy.server.frontend")

CHILDREN_CACHE_SIZE = 400  # ZooKeeper's maxGetChildrenResponseCacheSize default


def _nothing():
    pass


class Latency(object):
    """min/max/sum/count of request latencies in ms (a frontend's, or one connection's)."""
    __slots__ = ("min", "max", "sum", "count")

    def __init__(self):
        self.min = None
        self.max = 0
        self.sum = 0
        self.count = 0

    def record(self, ms):
        self.sum += ms
        self.count += 1
        if self.min is None or ms < self.min:
            self.min = ms
        if ms > self.max:
            self.max = ms


class FrontendStats(object):
    def __init__(self):
        self.started = time.monotonic()
        self.packets_received = 0
        self.packets_sent = 0
        self.latency = Latency()

    def reset(self):
        self.__init__()


class Frontend(object):
    def __init__(self, config, tree, link, worker_id=0):
        self.config = config
        self.tree = tree              # an LmdbTree (read-only in a worker)
        self.link = link
        self.worker_id = worker_id
        self.stats = FrontendStats()
        self.watches = WatchManager()
        self.connections = set()
        self.conns = {}               # conn_id -> Connection
        self.waiting = set()          # connections with a read waiting for can_read()
        self.to_flush = []            # connections with output to write at the end of this pass
        self._held = []               # (zxid, replies) of batches not yet committed
        self._children_cache = collections.OrderedDict()  # path -> (pzxid, count, body)
        self._next_conn_id = 1
        self.paused = False           # the server is stopping: no more requests are read
        self.pump = _nothing          # drains the control socket (set by the worker)
        self.four_letter = None       # async (cmd, peer) -> text of a whitelisted word read
                                      # here (inside TLS; a plaintext one when workers=0)
        self._rtxn = None
        self.view = None
        self.view_zxid = 0
        self.refresh_view()
        self.delivered_zxid = self.view_zxid
        self.committed_zxid = self.view_zxid

    @property
    def last_zxid(self):
        """The zxid this frontend's clients have seen everything up to."""
        return self.delivered_zxid

    # ------------------------------------------------------------------ connections

    def add(self, conn):
        if not conn.conn_id:  # in a worker the core numbers connections
            conn.conn_id = self._next_conn_id
            self._next_conn_id = (self._next_conn_id % 0xFFFFFFFF) + 1
        self.conns[conn.conn_id] = conn
        self.connections.add(conn)

    def pause(self):
        """A clean stop begins: read no more requests from any client, take no new connection
        (Connection.connection_made closes it); the answers to what was read still go out."""
        self.paused = True
        for conn in self.connections:
            conn.pause_reading()

    def flush_all(self):
        """The loop-pass callback that writes what each connection was given (Connection.write)."""
        conns, self.to_flush = self.to_flush, []
        for conn in conns:
            conn._flush()

    def remove(self, conn):
        self.connections.discard(conn)
        self.conns.pop(conn.conn_id, None)
        self.waiting.discard(conn)
        self.watches.remove_watcher(conn)
        self.link.closed(conn.conn_id, conn.session_id)

    # ------------------------------------------------------------------ reads

    def refresh_view(self):
        if self._rtxn is not None:
            self._rtxn.abort()
            self._rtxn = None
        self._rtxn = self.tree.read_txn()
        self.view = self.tree.read_view(self._rtxn)
        self.view_zxid = self.view.last_zxid()

    def reopened(self, tree):
        """The core reopened the LMDB environment this frontend shares (workers=0) after a
        fatal LMDB error: the old one and its read txn are gone; read from the new one."""
        self.tree = tree
        self._rtxn = None
        self.view = None
        self.view_zxid = -1

    def can_read(self, required):
        """True when self.view may answer a read that must see `required`."""
        if self.committed_zxid < required:
            return False  # wait for committed()
        if self.view_zxid < required:
            self.refresh_view()
        # A snapshot newer than the events delivered here: its batch is in the control socket
        # or about to be (the core writes it right after the commit); wait until it has been
        # processed (batch() retries).
        return self.view_zxid <= self.delivered_zxid

    def children_body(self, path, node):
        """The encoded children vector of `path` (a GetChildrenResponse body).

        Kept per path while the node's pzxid (changed by every child create and delete) stays
        the same: ZooKeeper's getChildren response cache (maxGetChildrenResponseCacheSize)."""
        cache = self._children_cache
        hit = cache.get(path)
        if hit is not None and hit[0] == node.pzxid and hit[1] == node.num_children:
            cache.move_to_end(path)
            return hit[2]
        body = codec.encode(r.GetChildrenResponse(self.view.get_children(path)))
        cache[path] = (node.pzxid, node.num_children, body)
        if len(cache) > CHILDREN_CACHE_SIZE:
            cache.popitem(last=False)
        return body

    # ------------------------------------------------------------------ from the core

    def connected(self, conn_id, ok, session_id, timeout_ms, passwd, read_only):
        conn = self.conns.get(conn_id)
        if conn is None:
            return
        conn.connect_answer(ok, session_id, timeout_ms, passwd, read_only)

    def batch(self, zxid, events, replies, committed=False):
        watches = self.watches
        if not watches.data and not watches.child:
            events = ()  # no watch at all: nothing to fire (the common case under writes)
        skip = self.config.skip_acl
        for ezxid, etype, path, acl in events:
            fired = watches.trigger(etype, path)
            for watcher in fired:
                # A watcher without READ on the node (the parent for NodeChildrenChanged) loses
                # its watch silently (ZooKeeper 3.8.4+, CVE-2024-23944).
                if acl is None or acls.allowed(acl, acls.READ, watcher.ids, skip):
                    watcher.send_event(ezxid, etype, path)
        if zxid > self.delivered_zxid:
            self.delivered_zxid = zxid
        if replies:
            # Answered only once committed: by then every worker has this batch in its socket,
            # so whoever this client tells next reads it anywhere on this server.
            self._held.append((zxid, replies))
        if committed:
            self.committed(zxid)   # (which retries the waiting reads)
        else:
            self._retry()

    def committed(self, zxid):
        if zxid > self.committed_zxid:
            self.committed_zxid = zxid
        if self._rtxn is not None and not self.waiting:
            # Let go of the old snapshot: an LMDB reader pins the pages of its snapshot, and an
            # idle worker holding one forever would make the file grow under writes. The next
            # read opens a fresh one (can_read).
            self._rtxn.abort()
            self._rtxn = None
            self.view = None
            self.view_zxid = -1
        held = self._held
        if held and held[0][0] <= zxid:
            conns = self.conns
            ready = {}  # the connections that got answers, in order: each drains once
            while held and held[0][0] <= zxid:
                _, replies = held.pop(0)
                # Reads queued behind these writes get required >= zxid when their turn comes.
                for conn_id, entry_id, close_after, data in replies:
                    conn = conns.get(conn_id)
                    if conn is not None and conn.fill(entry_id, data, close_after):
                        ready[conn] = None
            for conn in ready:
                conn.drain()
        self._retry()

    def _retry(self):
        if self.waiting:
            waiting, self.waiting = self.waiting, set()
            for conn in waiting:
                conn.drain()

    def close_conn(self, conn_id):
        if conn_id == 0xFFFFFFFF:   # core.ALL_CONNECTIONS: the server stopped serving
            for conn in list(self.conns.values()):
                conn.close()
            return
        conn = self.conns.get(conn_id)
        if conn is not None:
            conn.close()

    # ------------------------------------------------------------------ reporting

    def snapshot(self):
        """What this frontend contributes to srvr/stat/mntr/cons/wchs/... (JSON-able)."""
        s = self.stats
        conns = []
        for c in self.connections:
            if c.closed:
                continue
            conns.append(c.describe())
        return {
            "worker_id": self.worker_id,
            "connections": conns,
            "packets_received": s.packets_received,
            "packets_sent": s.packets_sent,
            "latency_min": s.latency.min,
            "latency_max": s.latency.max,
            "latency_sum": s.latency.sum,
            "latency_count": s.latency.count,
            "data_watches": {p: [w.session_id for w in ws]
                             for p, ws in self.watches.data.items()},
            "watch_count": self.watches.count(),
            "delivered_zxid": self.delivered_zxid,
        }

    def reset_stats(self):
        self.stats.reset()

    def reset_connection_stats(self):
        for c in self.connections:
            c.reset_stats()
