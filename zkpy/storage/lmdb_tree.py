"""The znode tree in LMDB: one writer (the core process), many readers (any process).

Owns the LMDB environment at <dataDir>/zkpy-db. Databases:
    nodes       path (utf-8)                     -> node bytes (storage/nodecodec.py grammar)
    ephemerals  session_id:i64 + path            -> b""   (a session's ephemerals are one range)
    sessions    session_id:i64                   -> timeout_ms:i32
    meta        b"last_zxid"                     -> zxid:i64 (the last txn applied, written in
                                                    the same LMDB txn as the txn's effects)
                b"log_reset_pending"             -> zxid:i64 (set by install_snapshot: the txn
                                                    log must be reset before it is read)
There is no separate child index: a node's children are the keys below `path + "/"` in key
order, each child's own subtree one range `[path/child/, path/child0)` ("0" sorts right after
"/") that the scan steps over with one seek. So a create or delete writes one key, and getChildren
of a node with 100k children, or of one whose children hold millions of znodes, touches only its
children's keys and one seek per child that has children. (Data directories of zkpy 0.x before
this layout had a "children" database; it is dropped when the writer opens one.)

Durability: the transaction log is the source of truth. LMDB commits without fsync
(sync=False); `checkpoint()` makes its current state the one a restart comes back to, whatever a
power cut leaves of the pages written since (zkpy.storage.lmdb_checkpoint: pin, sync, store the
meta pages; on open they are put back). The log is only purged up to the checkpoint's zxid, and
the log past it is replayed on start.
"""

import os
import shutil
import struct
import threading

import lmdb

from zkpy.errors import StorageCorruptError
from zkpy.storage import lmdb_checkpoint
from zkpy.storage.codec_impl import pack_node, unpack_node
from zkpy.storage.crc import crc32c
from zkpy.storage.txnlog import fsync_dir
from zkpy.tree.datatree import initial_nodes, owner_kind
from zkpy.tree.quota import QUOTA_ROOT

_Q = struct.Struct(">q")
_I = struct.Struct(">i")
_U32 = struct.Struct(">I")
_LAST_ZXID = b"last_zxid"
_MISS = object()
# Decoded znodes a view keeps (an LMDB snapshot never changes under its read txn, and nothing
# mutates a Node it got from a view: datatree and quota copy before changing one). Bounded, so
# a long scan on one snapshot does not pile up Node objects; past the bound the cache restarts.
CACHE_NODES = 8192
_CHECKPOINT_ZXID = b"checkpoint_zxid"
_LOG_RESET_PENDING = b"log_reset_pending"

# Snapshot stream (see LmdbTree.snapshot_chunks)
SNAPSHOT_MAGIC = b"ZKPYSNAP"
SNAPSHOT_VERSION = 1
_SNAP_HEADER = struct.Struct(">8sI")   # magic, version
_SNAP_ENTRY = struct.Struct(">BII")    # db id, key length, value length
_SNAP_END = struct.Struct(">BQ")       # end tag, entry count (then the crc as u32)
_SNAP_END_TAG = 0xFF
# db id -> LmdbTree attribute of the database
_SNAP_DBS = ((1, "db_nodes"), (3, "db_ephemerals"), (4, "db_sessions"), (5, "db_meta"))
_SNAP_META = 5


class ReadView(object):
    """Reads over one LMDB transaction (read-only or the write txn)."""

    def __init__(self, tree, txn):
        self._t = tree
        self.txn = txn
        self._cache = {}   # path -> Node | None, as this txn sees it
        # The decoded nodes of the view of the state one batch older (LmdbTree.read_view), or
        # None: right for this state wherever _cache, which holds every node that batch wrote,
        # has no entry; the two are dropped together.
        self._base = None
        self.quota_free = False   # True: no quota in this state, known (zkpy.tree.quota)

    def get(self, path):
        node = self._cache.get(path, _MISS)
        if node is not _MISS:
            return node
        base = self._base
        if base is not None:
            node = base.get(path, _MISS)
            if node is not _MISS:
                self._remember(path, node)
                return node
        key = path.encode("utf-8")
        if not key or len(key) > self._t.max_key_size:
            return None  # no znode can have such a key (see Core._check_path_size)
        v = self.txn.get(key, None, self._t.db_nodes)   # positional: py-lmdb's kwargs cost
        node = None if v is None else unpack_node(v)
        self._remember(path, node)
        return node

    def _remember(self, path, node):
        cache = self._cache
        if len(cache) >= CACHE_NODES:
            cache.clear()
            self._base = None   # (it stands behind the nodes just dropped: both go)
        cache[path] = node

    def get_children(self, path):
        """Names of the children of `path`, in key (bytewise UTF-8) order."""
        prefix = b"/" if path == "/" else path.encode("utf-8") + b"/"
        n = len(prefix)
        if n > self._t.max_key_size:
            return []
        out = []
        cur = self.txn.cursor(db=self._t.db_nodes)
        seek = prefix
        while cur.set_range(seek):
            for key in cur.iternext(keys=True, values=False):
                if key[:n] != prefix:
                    return out
                rest = key[n:]
                j = rest.find(b"/")
                if j < 0:
                    if rest:   # (not the root's own key "/")
                        out.append(rest.decode("utf-8"))
                    continue
                seek = prefix + rest[:j] + b"0"   # past rest[:j]'s subtree
                break
            else:
                return out
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
        if path == QUOTA_ROOT:
            self.quota_free = False

    def delete(self, path):
        self._dirty[path] = None
        if path == QUOTA_ROOT:
            self.quota_free = False

    def flush(self):
        db = self._t.db_nodes
        txn = self.txn
        cache = self._cache
        if len(cache) + len(self._dirty) >= CACHE_NODES:
            cache.clear()
        put = txn.cursor(db).put   # a cursor's put: cheaper per call than txn.put(db=...)
        delete = txn.delete
        for path, node in self._dirty.items():
            key = path.encode("utf-8")
            if node is None:
                delete(key, b"", db)
            else:
                put(key, pack_node(node))
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

    def get_children(self, path):
        self.flush()
        return ReadView.get_children(self, path)

    # A node's children are the keys below it (see the module docstring): nothing to write.
    def add_child(self, parent, name):
        pass

    def remove_child(self, parent, name):
        pass

    # Positional arguments (put: dupdata, overwrite, append, db; delete: value, db): py-lmdb
    # parses keywords per call, and these run once or twice per write.
    def add_ephemeral(self, owner, path):
        self.txn.put(_Q.pack(owner) + path.encode("utf-8"), b"", False, True, False,
                     self._t.db_ephemerals)

    def remove_ephemeral(self, owner, path):
        self.txn.delete(_Q.pack(owner) + path.encode("utf-8"), b"", self._t.db_ephemerals)

    def put_session(self, sid, timeout_ms):
        self.txn.put(_Q.pack(sid), _I.pack(timeout_ms), db=self._t.db_sessions)

    def delete_session(self, sid):
        self.txn.delete(_Q.pack(sid), db=self._t.db_sessions)

    def set_last_zxid(self, zxid):
        self.txn.put(_LAST_ZXID, _Q.pack(zxid), db=self._t.db_meta)


class PendingCheckpoint(object):
    """A checkpoint between LmdbTree.begin_checkpoint and end_checkpoint: its pin (a read txn
    on the state it covers) and what finish_checkpoint stores."""

    __slots__ = ("pin", "record")

    def __init__(self, pin, record):
        self.pin = pin
        self.record = record

class LmdbTree(object):
    """The LMDB environment of one server. The writer (readonly=False) opens it through the
    checkpoint protocol of zkpy.storage.lmdb_checkpoint: a new directory is built aside and
    renamed into place; an existing one is put back to its last checkpoint (a no-op after a clean
    stop) and pinned there before anything writes. Damage -- a database that will not open, a
    named database missing, no valid checkpoint -- raises StorageCorruptError naming the file,
    never creates anything in its place."""

    DB_NAMES = (b"nodes", b"ephemerals", b"sessions", b"meta")

    def __init__(self, path, map_size=1 << 36, readonly=False, restore=True):
        """restore=False (the writer reopening its environment in a running server, whose
        workers have it open): open the state as it is and checkpoint it at once, before any
        write -- the pages of the last checkpoint lost their pin with the old handle."""
        self.path = path
        self.generation = 0     # write txns committed through this object
        self._last_read = None  # (txn, generation) of the newest read_txn()
        self._shared = None     # (read view, generation): the newest view of the newest txn
        self._carry = None      # (generation, nodes, nodes written) from the last commit
        self._pin = None        # read txn on the state of the newest durable checkpoint
        self._stale_pins = []   # pins of checkpoints whose store failed (maybe on disk)
        self._ckpt_lock = threading.Lock()   # one checkpoint (or snapshot install) at a time
        self.checkpoint_seq = 0
        self.checkpoint_zxid = 0
        self.restored = False   # open() put data.mdb back to its checkpoint
        self.created = False    # open() made a new, empty database
        if readonly:
            self.env = self._open_env(map_size, readonly=True)
            self._open_dbs()
            return
        if restore:
            record = self._prepare(map_size)
        else:
            record = None
            prior = lmdb_checkpoint.load(self.path)
            self.checkpoint_seq = prior.seq if prior is not None else 0   # numbering goes on
        self.env = self._open_env(map_size, readonly=False)
        try:
            self._open_dbs()
            self._pin = self.env.begin(buffers=False)   # before any write: see lmdb_checkpoint
            self._check_open_state(record)
            self._drop_old_layout()
        except BaseException:
            self.env.close()
            raise
        if record is None:   # not restored, or from before checkpoints: trusted as it is
            self.checkpoint()
        else:
            self.checkpoint_seq = record.seq
            self.checkpoint_zxid = record.zxid

    # ------------------------------------------------------------------ open

    def _require_data_file(self):
        data = lmdb_checkpoint.data_file(self.path)
        if not os.path.exists(data):
            raise StorageCorruptError("%s is missing: the database directory %s is damaged"
                                      % (data, self.path))
        return data

    def _open_env(self, map_size, readonly):
        data = self._require_data_file()
        try:
            return lmdb.open(self.path, map_size=map_size, max_dbs=8, subdir=True,
                             readonly=readonly, sync=False, metasync=False, readahead=False,
                             max_readers=1024, lock=True, create=False)
        except lmdb.Error as e:
            raise StorageCorruptError("cannot open the LMDB database %s: %s" % (data, e))

    def _open_dbs(self):
        try:
            with self.env.begin() as txn:
                present = set(k for k, _ in txn.cursor())
            for name in self.DB_NAMES:
                if name not in present:
                    raise StorageCorruptError(
                        "the LMDB database %s has no %r database: the data directory is "
                        "damaged" % (lmdb_checkpoint.data_file(self.path), name.decode()))
                setattr(self, "db_" + name.decode(), self.env.open_db(name, create=False))
            self.max_key_size = self.env.max_key_size()
        except lmdb.Error as e:
            raise StorageCorruptError("the LMDB database %s is damaged: %s"
                                      % (lmdb_checkpoint.data_file(self.path), e))

    def _prepare(self, map_size):
        """Before the writer opens the environment: build a new one if there is none, else put
        it back to its checkpoint. Returns the checkpoint record (None: older database)."""
        fresh = self.path + ".new"
        if os.path.isdir(fresh):
            shutil.rmtree(fresh)   # a build a crash interrupted: never renamed into place
        if not os.path.exists(self.path):
            self._create(fresh, map_size)
            os.rename(fresh, self.path)
            fsync_dir(os.path.dirname(os.path.abspath(self.path)))
            self.created = True
            return lmdb_checkpoint.load(self.path)
        self._require_data_file()   # before restore() writes into it
        lmdb_checkpoint.wait_exclusive(self.path)
        record = lmdb_checkpoint.load(self.path)
        if record is not None:
            try:
                self.restored = lmdb_checkpoint.restore(self.path, record)
            except OSError as e:
                raise StorageCorruptError("cannot restore %s to its checkpoint: %s"
                                          % (lmdb_checkpoint.data_file(self.path), e))
        return record

    def _create(self, path, map_size):
        os.makedirs(path)
        env = lmdb.open(path, map_size=map_size, max_dbs=8, subdir=True, sync=False,
                        metasync=False, readahead=False, lock=True, create=True)
        try:
            with env.begin(write=True) as txn:
                dbs = [env.open_db(name, txn=txn, create=True) for name in self.DB_NAMES]
                nodes, meta = dbs[0], dbs[3]
                for p, node in initial_nodes():
                    txn.put(p.encode("utf-8"), pack_node(node), db=nodes)
                txn.put(_LAST_ZXID, _Q.pack(0), db=meta)
            txnid = env.info()["last_txnid"]
            env.sync(True)
        finally:
            env.close()
        psize, metas = lmdb_checkpoint.read_metas(path)
        lmdb_checkpoint.create_slots(path, lmdb_checkpoint.Checkpoint(1, txnid, 0, psize, metas))
        for name in os.listdir(path):
            if name != "lock.mdb":
                fd = os.open(os.path.join(path, name), os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        fsync_dir(path)

    def _check_open_state(self, record):
        v = self._pin.get(_LAST_ZXID, db=self.db_meta)
        if v is None:
            raise StorageCorruptError("the LMDB database %s holds no last zxid: the data "
                                      "directory is damaged"
                                      % lmdb_checkpoint.data_file(self.path))
        if record is None:
            return
        zxid = _Q.unpack(v)[0]
        if self._pin.id() != record.txnid or zxid != record.zxid:
            raise StorageCorruptError(
                "the LMDB database %s opened at txn %d, zxid 0x%x; its checkpoint says txn %d, "
                "zxid 0x%x: the data directory is damaged"
                % (lmdb_checkpoint.data_file(self.path), self._pin.id(), zxid, record.txnid,
                   record.zxid))

    def _drop_old_layout(self):
        if self._pin.get(b"children") is None:
            return
        with self.env.begin(write=True) as txn:   # the child index of an older layout
            txn.drop(self.env.open_db(b"children", txn=txn), delete=True)

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
                if len(written) < CACHE_NODES:
                    # Not a copy of `base` (up to CACHE_NODES entries, per batch: 50 us at one
                    # write a batch): it stays the older view's, looked up behind what the
                    # batch wrote. Entries the older view adds later are of a state that
                    # differs from this one only in `written`.
                    view._cache = dict(written)
                    view._base = base
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

    # ------------------------------------------------------------------ checkpoints

    def begin_checkpoint(self):
        """Step 1 of a checkpoint (lmdb_checkpoint): pin the newest committed state. Call in
        the writer's thread with no write txn open; then finish_checkpoint (any thread,
        blocking), then end_checkpoint -- or abandon_checkpoint if finishing failed. Returns
        None when another checkpoint (or a snapshot install) is under way."""
        if not self._ckpt_lock.acquire(blocking=False):
            return None
        try:
            return self._begin_checkpoint()
        except BaseException:
            self._ckpt_lock.release()
            raise

    def _begin_checkpoint(self):
        pin = self.env.begin(buffers=False)
        try:
            v = pin.get(_LAST_ZXID, db=self.db_meta)
            psize, metas = lmdb_checkpoint.read_metas(self.path)
            txnid = pin.id()
            if lmdb_checkpoint.newest_txnid(psize, metas) != txnid:
                raise RuntimeError("data.mdb's meta pages moved while a checkpoint was begun "
                                   "(a write txn was open)")
        except BaseException:
            pin.abort()
            raise
        # seq moves on only when a checkpoint is stored: after a failed store the next attempt
        # rewrites the same slot, so the other slot (the last good one) is never overwritten
        # while this one may be torn.
        record = lmdb_checkpoint.Checkpoint(self.checkpoint_seq + 1, txnid,
                                            0 if v is None else _Q.unpack(v)[0], psize, metas)
        return PendingCheckpoint(pin, record)

    def finish_checkpoint(self, pending):
        """Steps 2 and 3: sync data.mdb, then store the checkpoint record. Blocking."""
        self.env.sync(True)
        lmdb_checkpoint.store(self.path, pending.record)

    def end_checkpoint(self, pending):
        """Step 4: the new checkpoint is durable; release the pins of the older ones."""
        try:
            return self._stored(pending)
        finally:
            self._ckpt_lock.release()

    def abandon_checkpoint(self, pending):
        """finish_checkpoint failed: its record may or may not be on disk, so its pin stays
        (until a later checkpoint is stored) -- a stored record's pages must never be reused."""
        self._stale_pins.append(pending.pin)
        self._ckpt_lock.release()

    def checkpoint(self):
        """A whole checkpoint, in this thread: LMDB's current state becomes the one a restart
        comes back to. Returns the zxid it covers."""
        with self._ckpt_lock:
            return self._checkpoint_locked()

    def _checkpoint_locked(self):
        pending = self._begin_checkpoint()
        try:
            self.finish_checkpoint(pending)
        except BaseException:
            self._stale_pins.append(pending.pin)
            raise
        return self._stored(pending)

    def _stored(self, pending):
        old, self._pin = self._pin, pending.pin
        for txn in [old] + self._stale_pins:
            if txn is not None:
                txn.abort()
        self._stale_pins = []
        self.checkpoint_seq = pending.record.seq
        self.checkpoint_zxid = pending.record.zxid
        return pending.record.zxid

    # ------------------------------------------------------------------ SNAP sync (Zab)

    def snapshot_chunks(self, txn=None, chunk_bytes=1 << 20):
        """Iterate bytes chunks (about ``chunk_bytes`` each) holding the whole tree.

        Every key/value of every database (nodes, ephemerals, sessions and meta, which
        holds last_zxid; meta's log_reset_pending is left out) from ONE read transaction: ``txn``
        if given (the caller's, left open -- e.g. to read the snapshot's last_zxid from the same
        txn), else one begun here at the call (not at the first next()) and ended when the
        iteration ends or the generator is closed. A long-lived read txn keeps LMDB from reusing
        pages, so stream it promptly.

        Stream format (integers big-endian, unsigned; chunk boundaries are arbitrary -- an entry
        may span chunks -- and the stream may be re-chunked in transit)::

            stream = header *entry end
            header = "ZKPYSNAP" version:u32                     ; 12 bytes, version 1
            entry  = db:u8 klen:u32 vlen:u32 key value          ; 9 + klen + vlen bytes
            db     = 1 nodes / 3 ephemerals / 4 sessions / 5 meta (2 was a child index)
            end    = 0xFF count:u64 crc:u32                     ; 13 bytes, the last of the stream
            count  = the number of entries
            crc    = crc32c of every stream byte before it (header, entries, 0xFF, count)

        Entries come database by database in the order above, each in LMDB key order; keys and
        values are the raw LMDB bytes (see the module docstring for their grammar).
        """
        own = txn is None
        if own:
            txn = self.env.begin(buffers=False)
        return self._snapshot_gen(txn, own, max(int(chunk_bytes), 1))

    def _snapshot_gen(self, txn, own, chunk_bytes):
        try:
            parts = [_SNAP_HEADER.pack(SNAPSHOT_MAGIC, SNAPSHOT_VERSION)]
            size = len(parts[0])
            crc = 0
            count = 0
            pack = _SNAP_ENTRY.pack
            for db_id, attr in _SNAP_DBS:
                cur = txn.cursor(db=getattr(self, attr))
                for k, v in cur.iternext():
                    if db_id == _SNAP_META and k == _LOG_RESET_PENDING:
                        continue
                    parts.append(pack(db_id, len(k), len(v)))
                    parts.append(k)
                    parts.append(v)
                    size += 9 + len(k) + len(v)
                    count += 1
                    if size >= chunk_bytes:
                        chunk = b"".join(parts)
                        crc = crc32c(chunk, crc)
                        parts = []
                        size = 0
                        yield chunk
            parts.append(_SNAP_END.pack(_SNAP_END_TAG, count))
            chunk = b"".join(parts)
            crc = crc32c(chunk, crc)
            yield chunk + _U32.pack(crc)
        finally:
            if own:
                txn.abort()

    def install_snapshot(self, chunks):
        """Replace the whole tree with a snapshot_chunks() stream (Zab SNAP); returns its zxid.

        Consumes ``chunks`` (any iterable of bytes-like, chunked any way) inside ONE LMDB write
        txn: every database is emptied, every entry put, meta last_zxid comes from the snapshot and
        meta log_reset_pending is set to that zxid; only once the end marker's count and CRC32C
        check out is the txn committed, then checkpointed (a restart comes back to it). A truncated, damaged
        or trailing-garbage stream -- or one without last_zxid -- raises StorageCorruptError
        (and an exception from the iterable itself propagates) with the txn aborted: the old
        contents stay, untouched. Readers see the old tree until the commit, the new one after.

        The caller must then make the txn log agree, in this order::

            zxid = tree.install_snapshot(chunks)   # LMDB = snapshot, log_reset_pending = zxid
            txnlog.reset()                         # the old history is gone (newest file first)
            tree.clear_log_reset()                 # commit + sync
            ... then log the txns after zxid as usual

        and on startup, before anything reads the log (recover, read_after)::

            if tree.log_reset_pending() is not None:
                txnlog.reset(); tree.clear_log_reset()

        A crash anywhere in between leaves log_reset_pending set, so the old log (whose records
        above zxid may belong to a discarded history) is never replayed onto the snapshot.
        The caller also renews any read txn / cached view it holds on this tree afterwards.
        """
        with self._ckpt_lock:
            return self._install_locked(chunks)

    def _install_locked(self, chunks):
        txn = self.env.begin(write=True)
        try:
            zxid = self._install(txn, chunks)
            txn.put(_LOG_RESET_PENDING, _Q.pack(zxid), db=self.db_meta)
        except lmdb.BadValsizeError as e:  # an empty or over-long key: a damaged stream
            txn.abort()
            raise StorageCorruptError("snapshot stream refused by LMDB: %s" % e)
        except BaseException:
            txn.abort()
            raise
        txn.commit()
        self._forget_decoded()
        self._checkpoint_locked()   # a power cut from here on comes back to the snapshot
        return zxid

    def _forget_decoded(self):
        """A write that did not go through a WriteView (SNAP install, meta only): no view may
        carry decoded nodes of the state before it into the state after it."""
        self.generation += 1
        self._carry = None
        self._shared = None

    def _install(self, txn, chunks):
        def bad(why):
            return StorageCorruptError("snapshot stream %s at byte offset %d"
                                       % (why, consumed + pos))

        it = iter(chunks)
        buf = bytearray()
        pos = 0          # parse position in buf
        crc_from = 0     # buf[:crc_from] is already in crc
        crc = 0
        consumed = 0     # stream bytes dropped from the front of buf

        def need(n):
            nonlocal buf, pos, crc_from, crc, consumed
            while len(buf) - pos < n:
                chunk = next(it, None)
                if chunk is None:
                    raise bad("truncated (%d more bytes expected)" % (n - (len(buf) - pos)))
                if pos >= (1 << 20):
                    crc = crc32c(bytes(buf[crc_from:pos]), crc)
                    del buf[:pos]
                    consumed += pos
                    pos = crc_from = 0
                buf += chunk

        need(_SNAP_HEADER.size)
        magic, version = _SNAP_HEADER.unpack_from(buf, pos)
        if magic != SNAPSHOT_MAGIC:
            raise bad("has a bad magic")
        if version != SNAPSHOT_VERSION:
            raise bad("has unsupported version %d" % version)
        pos += _SNAP_HEADER.size
        cursors = {}
        for db_id, attr in _SNAP_DBS:
            db = getattr(self, attr)
            txn.drop(db, delete=False)
            cursors[db_id] = txn.cursor(db=db)
        zxid = None
        count = 0
        unpack = _SNAP_ENTRY.unpack_from
        while True:
            need(1)
            db_id = buf[pos]
            if db_id == _SNAP_END_TAG:
                break
            cur = cursors.get(db_id)
            if cur is None:
                raise bad("has an unknown database id %d" % db_id)
            need(_SNAP_ENTRY.size)
            _, klen, vlen = unpack(buf, pos)
            pos += _SNAP_ENTRY.size
            need(klen + vlen)
            key = bytes(buf[pos:pos + klen])
            value = bytes(buf[pos + klen:pos + klen + vlen])
            pos += klen + vlen
            if not cur.put(key, value, append=True):
                raise bad("has keys out of order")
            if db_id == _SNAP_META and key == _LAST_ZXID:
                if len(value) != 8:
                    raise bad("has a bad last_zxid")
                zxid = _Q.unpack(value)[0]
            count += 1
        need(_SNAP_END.size + 4)
        _, want_count = _SNAP_END.unpack_from(buf, pos)
        pos += _SNAP_END.size
        crc = crc32c(bytes(buf[crc_from:pos]), crc)
        want_crc = _U32.unpack_from(buf, pos)[0]
        if crc != want_crc:
            raise bad("fails its CRC check (0x%08x, end marker says 0x%08x)" % (crc, want_crc))
        if want_count != count:
            raise bad("holds %d entries, its end marker says %d" % (count, want_count))
        pos += 4
        if len(buf) > pos or any(len(c) for c in it):
            raise bad("has data after its end marker")
        if zxid is None:
            raise bad("has no last_zxid")
        return zxid

    def log_reset_pending(self):
        """The zxid of a snapshot installed since the txn log was last reset, or None."""
        with self.env.begin() as txn:
            v = txn.get(_LOG_RESET_PENDING, db=self.db_meta)
        return None if v is None else _Q.unpack(v)[0]

    def clear_log_reset(self):
        """Forget log_reset_pending (after txnlog.reset()): commit, then sync LMDB."""
        with self._ckpt_lock:
            with self.env.begin(write=True) as txn:
                txn.delete(_LOG_RESET_PENDING, db=self.db_meta)
            self._forget_decoded()
            self._checkpoint_locked()

    def close(self, checkpoint=True):
        """Close the environment; a writer first checkpoints (a clean stop: the next open
        restores nothing and replays nothing). checkpoint=False: as after a crash, the next open
        comes back to the last checkpoint."""
        try:
            if checkpoint and self._pin is not None:
                self.checkpoint()
        finally:
            for txn in self._stale_pins:
                txn.abort()
            self._stale_pins = []
            if self._pin is not None:
                self._pin.abort()
                self._pin = None
            self.env.close()
