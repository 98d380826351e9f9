"""The znode tree in LMDB: one writer (the core process), many readers (any process).

Owns the LMDB environment at <dataDir>/zkpy-db. Databases:
    nodes       path (utf-8)                     -> node bytes (storage/nodecodec.py grammar)
    children    parent path + b"\\0" + child name -> b""   (a node's children are one key range)
    ephemerals  session_id:i64 + path            -> b""   (a session's ephemerals are one range)
    sessions    session_id:i64                   -> timeout_ms:i32
    meta        b"last_zxid"                     -> zxid:i64 (the last txn applied, written in
                                                    the same LMDB txn as the txn's effects)
No lookup scans keys outside the range it asks for, so getChildren of a node with 100k children and
any op in a tree of millions of znodes touch only their own keys.

Durability: the transaction log is the source of truth. LMDB is opened without its own fsync
(sync=False); `checkpoint()` syncs it, and the log is only purged up to a checkpointed zxid. A
process crash (kill -9) loses nothing either way: committed LMDB pages live in the OS page cache.
"""

import struct

import lmdb

from zkpy.storage.codec_impl import pack_node, unpack_node
from zkpy.tree.datatree import initial_nodes, owner_kind
from zkpy.tree.paths import split

_Q = struct.Struct(">q")
_I = struct.Struct(">i")
_LAST_ZXID = b"last_zxid"
_MISS = object()
# Decoded znodes a view keeps (an LMDB snapshot never changes under its read txn, and nothing
# mutates a Node it got from a view: datatree and quota copy before changing one). Bounded, so
# a long scan on one snapshot does not pile up Node objects; past the bound the cache restarts.
CACHE_NODES = 8192
_CHECKPOINT_ZXID = b"checkpoint_zxid"


def _child_key(parent, name):
    return parent.encode("utf-8") + b"\x00" + name.encode("utf-8")


class ReadView(object):
    """Reads over one LMDB transaction (read-only or the write txn)."""

    def __init__(self, tree, txn):
        self._t = tree
        self.txn = txn
        self._cache = {}   # path -> Node | None, as this txn sees it

    def get(self, path):
        node = self._cache.get(path, _MISS)
        if node is not _MISS:
            return node
        key = path.encode("utf-8")
        if not key or len(key) > self._t.max_key_size:
            return None  # no znode can have such a key (see Core._check_path_size)
        v = self.txn.get(key, db=self._t.db_nodes)
        node = None if v is None else unpack_node(v)
        cache = self._cache
        if len(cache) >= CACHE_NODES:
            cache.clear()
        cache[path] = node
        return node

    def get_children(self, path):
        prefix = path.encode("utf-8") + b"\x00"
        n = len(prefix)
        if n > self._t.max_key_size:
            return []
        out = []
        cur = self.txn.cursor(db=self._t.db_children)
        if cur.set_range(prefix):
            for key in cur.iternext(keys=True, values=False):
                if key[:n] != prefix:
                    break
                out.append(key[n:].decode("utf-8"))
        return out

    def count_descendants(self, path):
        """Number of znodes below `path` (getAllChildrenNumber); walks only that subtree."""
        if path == "/":
            return self.node_count() - 1
        total = 0
        stack = [path]
        while stack:
            p = stack.pop()
            for name in self.get_children(p):
                total += 1
                stack.append(p + "/" + name)
        return total

    def ephemerals(self, owner):
        prefix = _Q.pack(owner)
        out = []
        cur = self.txn.cursor(db=self._t.db_ephemerals)
        if cur.set_range(prefix):
            for key in cur.iternext(keys=True, values=False):
                if key[:8] != prefix:
                    break
                out.append(key[8:].decode("utf-8"))
        return out

    def sessions(self):
        cur = self.txn.cursor(db=self._t.db_sessions)
        return {_Q.unpack(k)[0]: _I.unpack(v)[0] for k, v in cur}

    def all_ephemerals(self):
        """(session_id, path) of every session's ephemerals (containers and TTL nodes, indexed
        under their negative markers, are left out)."""
        cur = self.txn.cursor(db=self._t.db_ephemerals)
        out = []
        for k in cur.iternext(values=False):
            owner = _Q.unpack(k[:8])[0]
            if owner_kind(owner) == "normal":
                out.append((owner, k[8:].decode("utf-8")))
        return out

    def special_nodes(self):
        """(path, Node) of every container and TTL node: the index range of negative owners."""
        cur = self.txn.cursor(db=self._t.db_ephemerals)
        out = []
        # Both markers are negative: their keys sort from 0x80... on.
        if cur.set_range(b"\x80"):
            for k in cur.iternext(values=False):
                if owner_kind(_Q.unpack(k[:8])[0]) == "normal":
                    continue
                path = k[8:].decode("utf-8")
                node = self.get(path)
                if node is not None:
                    out.append((path, node))
        return out

    def last_zxid(self):
        v = self.txn.get(_LAST_ZXID, db=self._t.db_meta)
        return 0 if v is None else _Q.unpack(v)[0]

    def node_count(self):
        return self.txn.stat(self._t.db_nodes)["entries"]


class WriteView(ReadView):
    """The datatree view interface over the LMDB write transaction.

    Znodes written in the txn are kept as objects until commit(): a batch of creates under one
    parent updates the parent's Stat once per create but packs and writes it once.
    """

    def __init__(self, tree, txn, base_cache=None):
        ReadView.__init__(self, tree, txn)
        self._dirty = {}   # path -> Node, or None when deleted
        # The decoded nodes of a read view of the state this txn started from (see
        # LmdbTree.write): read, never written; this view's own changes shadow it.
        self._base_cache = base_cache if base_cache is not None else {}
        self._borrowed = base_cache is not None
        self._written = {}  # every node this txn wrote: path -> Node | None

    def get(self, path):
        node = self._dirty.get(path, _MISS)
        if node is not _MISS:
            return node
        node = self._cache.get(path, _MISS)
        if node is not _MISS:
            return node
        node = self._base_cache.get(path, _MISS)
        if node is not _MISS:
            return node
        return ReadView.get(self, path)

    def put(self, path, node):
        self._dirty[path] = node

    def delete(self, path):
        self._dirty[path] = None

    def flush(self):
        db = self._t.db_nodes
        txn = self.txn
        cache = self._cache
        if len(cache) + len(self._dirty) >= CACHE_NODES:
            cache.clear()
        for path, node in self._dirty.items():
            key = path.encode("utf-8")
            if node is None:
                txn.delete(key, db=db)
            else:
                txn.put(key, pack_node(node), db=db)
            cache[path] = node  # what the txn holds now
        self._written.update(self._dirty)
        self._dirty.clear()

    def commit(self):
        self.flush()
        self.txn.commit()
        tree = self._t
        tree.generation += 1
        # The state now committed is the borrowed view's plus what this txn wrote: the next
        # read view (if no other commit comes first) starts with those nodes decoded.
        tree._carry = ((tree.generation, self._base_cache, self._written) if self._borrowed
                       else None)

    def abort(self):
        self._dirty.clear()
        self._cache.clear()
        self.txn.abort()

    def node_count(self):
        self.flush()
        return ReadView.node_count(self)

    def add_child(self, parent, name):
        self.txn.put(_child_key(parent, name), b"", db=self._t.db_children)

    def remove_child(self, parent, name):
        self.txn.delete(_child_key(parent, name), db=self._t.db_children)

    def add_ephemeral(self, owner, path):
        self.txn.put(_Q.pack(owner) + path.encode("utf-8"), b"", db=self._t.db_ephemerals)

    def remove_ephemeral(self, owner, path):
        self.txn.delete(_Q.pack(owner) + path.encode("utf-8"), db=self._t.db_ephemerals)

    def put_session(self, sid, timeout_ms):
        self.txn.put(_Q.pack(sid), _I.pack(timeout_ms), db=self._t.db_sessions)

    def delete_session(self, sid):
        self.txn.delete(_Q.pack(sid), db=self._t.db_sessions)

    def set_last_zxid(self, zxid):
        self.txn.put(_LAST_ZXID, _Q.pack(zxid), db=self._t.db_meta)


class LmdbTree(object):
    def __init__(self, path, map_size=1 << 36, readonly=False):
        self.path = path
        self.env = lmdb.open(path, map_size=map_size, max_dbs=8, subdir=True, readonly=readonly,
                             sync=False, metasync=False, readahead=False, max_readers=1024,
                             lock=True, create=not readonly)
        self.max_key_size = self.env.max_key_size()
        self.db_nodes = self.env.open_db(b"nodes", create=not readonly)
        self.db_children = self.env.open_db(b"children", create=not readonly)
        self.db_ephemerals = self.env.open_db(b"ephemerals", create=not readonly)
        self.db_sessions = self.env.open_db(b"sessions", create=not readonly)
        self.db_meta = self.env.open_db(b"meta", create=not readonly)
        self.generation = 0     # write txns committed through this object
        self._last_read = None  # (txn, generation) of the newest read_txn()
        self._shared = None     # (read view, generation): the newest view of the newest txn
        self._carry = None      # (generation, nodes, nodes written) from the last commit
        if not readonly:
            self._initialize()

    def _initialize(self):
        with self.env.begin(write=True) as txn:
            if txn.get(_LAST_ZXID, db=self.db_meta) is not None:
                return
            view = WriteView(self, txn)
            for path, node in initial_nodes():
                view.put(path, node)
                if path != "/":
                    view.add_child(*split(path))
            view.set_last_zxid(0)
            view.flush()
        self.env.sync(True)

    def read_txn(self):
        txn = self.env.begin(buffers=False)
        self._last_read = (txn, self.generation)
        return txn

    def read_view(self, txn=None):
        view = ReadView(self, txn if txn is not None else self.read_txn())
        last = self._last_read
        if last is not None and last[0] is view.txn and last[1] == self.generation:
            self._shared = (view, last[1])
            carry = self._carry
            if carry is not None and carry[0] == self.generation:
                self._carry = None
                _, base, written = carry
                if len(base) + len(written) < CACHE_NODES:
                    view._cache = dict(base)
                    view._cache.update(written)
        return view

    def write(self):
        """Begin the write transaction for one applied batch; commit() or abort() it.

        It starts from the state of the newest read view when no write was committed since that
        view's txn began (the core renews its read view after every batch): it then reuses
        the nodes that view has decoded instead of reading and decoding them again."""
        wv = WriteView(self, self.env.begin(write=True))
        shared = self._shared
        if shared is not None:
            view, gen = shared
            try:
                same = gen == self.generation and view.last_zxid() == wv.last_zxid()
            except lmdb.Error:  # its txn has ended
                same = False
            if same:
                wv._base_cache = view._cache
                wv._borrowed = True
            else:
                self._shared = None
        return wv

    def checkpoint(self):
        """Make LMDB's applied state durable on disk; returns the zxid it covers."""
        with self.env.begin() as txn:
            zxid = ReadView(self, txn).last_zxid()
        self.env.sync(True)
        return zxid

    def close(self):
        self.env.close()
