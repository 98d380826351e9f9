"""The server core: request pipeline (prep -> sync -> final), sessions, and the data it owns.

Owns, per server: the session table and expiry, the zxid counter, the transaction log with its
group committer and the only LMDB write transaction. Frontends (zkpy.server.frontend; in worker
processes, or in this process when workers=0) are its *origins*: they hand it connects, writes,
closeSession and sync requests, and receive per applied batch the watch events (every origin)
and the replies (the origin that asked), then word that the batch is committed in LMDB. An
origin implements
    connected(conn_id, ok, session_id, timeout_ms, passwd, read_only)
                                        (read_only: None = the client sent no flag, else the
                                         server's: True for a session on a read-only server)
    batch(zxid, events, replies)        committed(zxid)        close_conn(conn_id)

Write path, as in ZooKeeper's processor chain (zkpy.server.pipeline: one module per stage, each
stating what it may assume and what it hands on; Core is made of the three):
    prep   validate against the committed tree + outstanding changes (PendingOverlay), assign the
           next zxid, produce a txn (an ERROR txn for a failed request, which still takes a zxid);
    sync   append the txn to the log; the group committer fsyncs many txns at once;
    final  after the fsync: apply the batch in one LMDB write txn, fire watches, then reply.
This module keeps the front door (connect, request: reads, the fused common writes, sync), the
sessions, the timers (expiry, containers, checkpoints) and the start and stop.
Reads run against the committed LMDB state; a read queued behind a write of its own session runs
only after that write was answered (per-session FIFO, see Connection).

Only this module and zkpy.server.connection touch the event loop; they import the pure layers.
"""

import asyncio
import collections
import functools
import logging
import operator
import os
import struct
import time

import lmdb

from zkpy import errors
from zkpy.errors import StorageCorruptError, ZkError
from zkpy.proto import codec, consts
from zkpy.proto import records as r
from zkpy.proto.twins import compiled_twin
from zkpy.server.audit import AuditLog
from zkpy.server.pipeline.common import (CONFIG_NODE, LOG_RETRY_S, encode_reply, log,
                                         now_ms, rw)
from zkpy.server.pipeline.final import FinalStage
from zkpy.server.pipeline.final import node_reply_frame, node_reply_frame_pure  # noqa: F401
from zkpy.server.pipeline.prep import PrepStage
from zkpy.server.pipeline.sync import SyncStage
from zkpy.server.sessions import SessionTable, session_password
from zkpy.storage.groupcommit import GroupCommitter
from zkpy.storage.lmdb_tree import LmdbTree
from zkpy.storage.txnlog import TxnLog, append_bound, fsync_dir
from zkpy.tree import acl as acls
from zkpy.tree import datatree, txns
from zkpy.tree.overlay import PendingOverlay

_WRITE_REQUESTS = {
    consts.OP_CREATE_CONTAINER: r.CreateRequest,
    consts.OP_CREATE_TTL: r.CreateTTLRequest,
    consts.OP_SET_ACL: r.SetACLRequest,
    consts.OP_CREATE: r.CreateRequest,
    consts.OP_CREATE2: r.CreateRequest,
    consts.OP_DELETE: r.DeleteRequest,
    consts.OP_SET_DATA: r.SetDataRequest,
    consts.OP_RECONFIG: r.ReconfigRequest,
}

_encode_reply = encode_reply
_ZERO_PASSWD = b"\0" * 16
# After a checkpoint the log starts a new file once the current one holds this much: recovery
# reads from the file holding the checkpoint's zxid on, and purge removes whole files.
LOG_ROLL_AT_CHECKPOINT_BYTES = 4 << 20
_I32 = struct.Struct(">i")
ALL_CONNECTIONS = 0xFFFFFFFF   # close_conn(ALL_CONNECTIONS): every connection of the origin


def create_request_fields(body):
    """(path, data, [(perms, scheme, id)], flags) of a CreateRequest body, or None: decode the
    record instead. The compiled twin answers the common case; this one always says None."""
    return None


def set_data_request_fields(body):
    """(path, data, version) of a SetDataRequest body, or None (the record decoder judges)."""
    req = codec.DECODERS[r.SetDataRequest](body, 0)[0]
    return req.path, req.data, req.version


def delete_request_fields(body):
    """(path, version) of a DeleteRequest body, or None (the record decoder judges)."""
    req = codec.DECODERS[r.DeleteRequest](body, 0)[0]
    return req.path, req.version


create_request_fields_pure = create_request_fields
create_request_fields = compiled_twin("create_request_fields", create_request_fields_pure)
set_data_request_fields_pure = set_data_request_fields
set_data_request_fields = compiled_twin("set_data_request_fields", set_data_request_fields_pure)
delete_request_fields_pure = delete_request_fields
delete_request_fields = compiled_twin("delete_request_fields", delete_request_fields_pure)
_FIELDS_CREATE_OPS = (consts.OP_CREATE, consts.OP_CREATE2)   # their body is a CreateRequest
# op -> (the fields of its body, or None; the fused prep + apply taking them): Core.request
_FUSED = {
    consts.OP_SET_DATA: (set_data_request_fields, datatree.fused_set_data),
    consts.OP_DELETE: (delete_request_fields, datatree.fused_delete),
    consts.OP_CREATE: (create_request_fields, datatree.fused_create),
    consts.OP_CREATE2: (create_request_fields, datatree.fused_create),
}


class Core(PrepStage, SyncStage, FinalStage):
    def __init__(self, config):
        self.config = config
        # The x509 ACL scheme exists while its provider does (zkpy.server.tls.x509_enabled).
        acls.set_x509(config.secure_client_port or config.client_port_unification
                      or config.x509_provider)
        self.started = time.monotonic()
        self.origins = []          # every frontend: each gets every batch's watch events
        self.sessions = SessionTable(config.tick_time_ms, server_id=1)
        self._syncs = []           # (target zxid, origin, conn_id, entry_id, frame, xid, path)
        self._auth = {}            # (origin, conn_id) -> identities, for ACL checks of writes
        self.tree = None
        self.txnlog = None
        self.committer = None
        self.last_zxid = 0        # last zxid applied to LMDB (what reads see)
        self.next_zxid = 1
        self._rtxn = None
        self._read_view = None
        self.overlay = self._new_overlay()
        self._expiry_task = None
        self._checkpoint_task = None
        self._reaper_task = None
        self._txns_since_checkpoint = 0
        self.fatal = None
        self.on_fatal = None   # callback set by the process shell
        # Replication (zkpy.quorum.peer): None when standalone. Txns go to the log in zxid order
        # and wait in _pending until they are both durable here and committed (standalone:
        # durable is committed; in an ensemble the leader commits on a quorum of acks).
        self.quorum = None
        self.mode = "standalone"   # or looking / leader / follower
        self.serving = True        # False while the ensemble has no leader: clients refused
        self.read_only = False     # readonlymode.enabled and no leader: read-only sessions
        self._pending = collections.deque()   # (zxid, txn, token, prepped) logged, not applied
        self.durable_zxid = 0
        self.commit_zxid = 0
        # A full or failing disk (standalone; see _on_log_failed and _stall):
        self.log_error = None      # the LogAppendError of a log outage not yet over
        self._log_failed_txns = 0  # txns failed during it
        self._expiry_failed = set()  # sessions whose expiry failed during it (logged once)
        self.apply_error = None    # the LMDB error that stops the apply: new writes refused
        self._stalled_since = None  # time.monotonic() when that began
        self._retry_handle = None  # the timer of the next apply retry
        # audit.enable: every answered client write, by the server holding the connection
        # (zkpy.server.audit); the token's shape carries what it is logged with.
        self.audit = AuditLog() if config.audit_enable else None

    # ------------------------------------------------------------------ start / stop

    def open(self, replay=True):
        """Open LMDB, replay the log past LMDB's last zxid, restore sessions. Blocking.

        replay=False (an ensemble member): the log past LMDB may hold txns that were never
        committed; they stay in the log until the leader says which are (zkpy.quorum.peer)."""
        cfg = self.config
        os.makedirs(cfg.data_dir, exist_ok=True)
        os.makedirs(cfg.data_log_dir, exist_ok=True)
        db_path = os.path.join(cfg.data_dir, "zkpy-db")
        self.tree = LmdbTree(db_path, map_size=cfg.lmdb_map_size)
        if self.tree.restored:
            log.info("the last stop of %s was not clean: LMDB restored to its checkpoint at "
                     "zxid 0x%x; the log after it is replayed", db_path,
                     self.tree.checkpoint_zxid)
        elif self.tree.created:
            log.info("created a new database at %s", db_path)
        self._renew_read()
        applied = self._read_view.last_zxid()
        kw = {}
        if cfg.txn_log_size_limit_kb > 0:   # ZooKeeper's zookeeper.txnLogSizeLimitInKb
            kw["roll_bytes"] = cfg.txn_log_size_limit_kb * 1024
        # How far a power cut can have torn the log's newest file: one group-committed batch
        # (the recovery rules in zkpy.storage.txnlog).
        kw["max_append_bytes"] = append_bound(cfg.commit_max_bytes, cfg.max_batch_size)
        kw["prealloc_bytes"] = cfg.pre_alloc_size_kb * 1024   # ZooKeeper's preAllocSize
        self.txnlog = TxnLog(os.path.join(cfg.data_log_dir, "zkpy-log"), force_sync=cfg.force_sync,
                             logger=logging.getLogger("zkpy.txnlog"),
                             fsync_warning_ms=cfg.fsync_warning_threshold_ms, **kw)
        pending_reset = self.tree.log_reset_pending()
        if pending_reset is not None:
            # A SNAP sync installed LMDB but stopped before the old log was removed.
            log.info("finishing an interrupted snapshot install at 0x%x: removing the old log",
                     pending_reset)
            self.txnlog.reset()
            self.tree.clear_log_reset()
        try:
            last, replayed = self._replay(applied) if replay else (applied, 0)
        except (lmdb.CorruptedError, lmdb.PageNotFoundError, lmdb.InvalidError,
                lmdb.VersionMismatchError) as e:
            raise StorageCorruptError("the LMDB database %s is damaged: %s" % (db_path, e))
        if not replay:
            list(self.txnlog.recover(applied))  # checks the log, finds its last zxid
        if last < self.txnlog.last_zxid:
            last = self.txnlog.last_zxid
        self.txnlog.open_for_append()
        self._renew_read()
        self.last_zxid = self._read_view.last_zxid()
        self.next_zxid = max(last, self.last_zxid) + 1
        self.durable_zxid = self.commit_zxid = self.last_zxid
        self._txns_since_checkpoint = replayed   # the first checkpoint makes the replay stick
        t = now_ms()
        for sid, timeout in self._read_view.sessions().items():
            self.sessions.add(sid, timeout, t)
        log.info("loaded %d znodes, %d sessions; replayed %d txns from the log; last zxid 0x%x",
                 self._read_view.node_count(), len(self.sessions.sessions), replayed,
                 self.last_zxid)

    def _replay(self, applied):
        """Apply the log's txns past `applied` to LMDB; returns (last zxid, count)."""
        replayed = 0
        wv = None
        last = applied
        for zxid, payload in self.txnlog.recover(applied):
            if replayed == 0 and zxid > applied + 1 and zxid >> 32 == applied >> 32:
                # Every txn takes the next zxid within an epoch: a hole means log files that
                # LMDB's state does not cover were removed.
                raise StorageCorruptError(
                    "the transaction log in %s starts at zxid 0x%x but the database at %s holds "
                    "only up to 0x%x: txns 0x%x..0x%x are missing"
                    % (self.txnlog.dir, zxid, self.tree.path, applied, applied + 1, zxid - 1))
            if wv is None:
                wv = self.tree.write()
            try:
                datatree.apply(wv, zxid, txns.decode(payload))
            except lmdb.Error:
                raise
            except Exception as e:
                raise StorageCorruptError(
                    "txn 0x%x of the log in %s does not apply to the database at %s (%s: %s): "
                    "the log and the database do not belong together"
                    % (zxid, self.txnlog.dir, self.tree.path, type(e).__name__, e))
            last = zxid
            replayed += 1
            if replayed % 10000 == 0:
                wv.set_last_zxid(last)
                wv.commit()
                wv = None
        if wv is not None:
            wv.set_last_zxid(last)
            wv.commit()
        return last, replayed

    def start(self):
        """Start the loop-side machinery (call inside the running loop)."""
        cfg = self.config
        self.committer = GroupCommitter(
            self.txnlog, self._on_durable, max_count=cfg.max_batch_size,
            max_bytes=cfg.commit_max_bytes, max_delay_ms=cfg.flush_delay_ms,
            on_fatal=self._on_fatal, logger=logging.getLogger("zkpy.groupcommit"),
            on_failed=self._on_log_failed,
            retry_s=LOG_RETRY_S if self.quorum is not None else None,
            on_stalled=self._on_log_stalled,
            before_append=self.quorum.before_log_append if self.quorum is not None else None)
        self.committer.start()
        self._expiry_task = asyncio.get_running_loop().create_task(self._expire_loop())
        self._checkpoint_task = asyncio.get_running_loop().create_task(self._checkpoint_loop())
        self._reaper_task = asyncio.get_running_loop().create_task(self._reaper_loop())

    async def drain(self):
        """A clean stop, once no more requests come in (the frontends are paused): wait until
        every txn taken so far is durable -- standalone also applied to LMDB, and its reply on
        its way to the frontend (the apply runs before the committer reports the flush done)."""
        if self.committer is None or self.fatal is not None:
            return
        self.committer.give_up()   # a log being retried (full disk) does not hold the stop
        try:
            await self.committer.flush()
        except Exception:  # noqa: BLE001 - a fatal log error, already reported through on_fatal
            pass

    async def stop(self):
        # A request still coming in (from a worker that did not pause in time) closes its
        # connection instead of meeting a closed group committer.
        self.serving = False
        tasks = [t for t in (self._expiry_task, self._checkpoint_task, self._reaper_task)
                 if t is not None]
        for task in tasks:
            task.cancel()
        # Wait for them: a checkpoint under way finishes (or is abandoned) in its task, which
        # holds the tree's checkpoint lock until then -- close_storage's own final checkpoint
        # would otherwise wait for a lock only this loop can release.
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._retry_handle is not None:
            self._retry_handle.cancel()   # txns still waiting for LMDB are in the log
            self._retry_handle = None
        if self.committer is not None:
            try:
                await self.committer.close()
            except Exception as e:  # already reported through on_fatal
                log.error("closing the group committer: %s", e)
        self.close_storage()

    def close_storage(self):
        if self.tree is not None:
            if self._rtxn is not None:
                self._rtxn.abort()
                self._rtxn = None
            try:
                self.tree.close()   # checkpoints first: a clean stop restores and replays nothing
            except Exception as e:  # noqa: BLE001 - closed all the same (LmdbTree.close)
                log.error("the final LMDB checkpoint of %s failed: %s; the next start comes "
                          "back to the last checkpoint and replays the log from there",
                          self.tree.path, e)
            self.tree = None
        if self.txnlog is not None:
            self.txnlog.close()
            self.txnlog = None

    def set_aside_local_data(self):
        """Damaged local data of an ensemble member: close what is open (no checkpoint) and
        rename zkpy-db and zkpy-log to <name>.damaged-<time> (kept for a post-mortem, never
        read again). Returns the new paths."""
        if self.tree is not None:
            self.tree.close(checkpoint=False)
            self.tree = None
            self._rtxn = self._read_view = None
        if self.txnlog is not None:
            self.txnlog.close()
            self.txnlog = None
        stamp = time.strftime("%Y%m%d-%H%M%S")
        moved = []
        for parent, name in ((self.config.data_dir, "zkpy-db"),
                             (self.config.data_log_dir, "zkpy-log")):
            path = os.path.join(parent, name)
            if os.path.exists(path):
                dest = "%s.damaged-%s" % (path, stamp)
                os.rename(path, dest)
                moved.append(dest)
            fsync_dir(parent)
        return moved

    def _on_fatal(self, exc):
        log.error("fatal transaction log error, stopping: %s", exc)
        self.fatal = exc
        if self.on_fatal is not None:
            self.on_fatal(exc)

    def _new_overlay(self):
        # The overlay asks for the committed view on every lookup it does not hold: an
        # attrgetter bound by partial is two C calls, a lambda a Python frame. Its changes are
        # replayed onto LMDB only, which keeps no child lists (lmdb_tree: key ranges).
        return PendingOverlay(functools.partial(operator.attrgetter("_read_view"), self),
                              child_lists=False)

    def _renew_read(self):
        # A read txn sees the state of its start; after every applied batch reads move on to
        # a fresh one (py-lmdb has no reset/renew; begin on an MDB_NOTLS env is cheap).
        if self._rtxn is not None:
            self._rtxn.abort()
        self._rtxn = self.tree.read_txn()
        self._read_view = self.tree.read_view(self._rtxn)

    @property
    def view(self):
        """The committed tree, as reads see it."""
        return self._read_view

    # ------------------------------------------------------------------ write pipeline

    async def install_snapshot(self, chunks):
        """A learner's SNAP sync: the leader's LMDB state replaces ours (one LMDB txn, in a
        thread), the old log goes (LmdbTree.install_snapshot's sequence), and the core's view,
        zxids and session table follow the new state. Call with the pipeline reset."""
        if self._rtxn is not None:
            self._rtxn.abort()
            self._rtxn = None
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.tree.install_snapshot, chunks)
        # In a thread too: clear_log_reset checkpoints, and waits for a checkpoint the loop
        # may have begun meanwhile -- which only this loop can end.
        await loop.run_in_executor(None, self._reset_log_after_snapshot)
        self._renew_read()
        self.last_zxid = self.view.last_zxid()
        self.durable_zxid = self.commit_zxid = self.last_zxid
        self.next_zxid = self.last_zxid + 1
        self.overlay = self._new_overlay()   # nothing of the old state
        self.overlay.applied(self.last_zxid)
        t = now_ms()
        self.sessions.sessions.clear()
        for sid, timeout in self.view.sessions().items():
            self.sessions.add(sid, timeout, t)
        for origin in self.origins:
            origin.batch(self.last_zxid, (), (), True)

    def _reset_log_after_snapshot(self):
        self.txnlog.reset()
        self.tree.clear_log_reset()

    # ------------------------------------------------------------------ full or failing disk

    def _writes_refused(self):
        """Why this server's clients' new writes fail now (None: they do not): LMDB cannot be
        written (apply_error), or, in an ensemble, the log is being retried (_on_log_stalled)."""
        if self.apply_error is not None:
            return "the database cannot be written (%s)" % (self.apply_error,)
        if self.quorum is not None:
            if self.log_error is not None:
                return "the transaction log cannot be written (%s)" % (self.log_error,)
            return self.quorum.writes_refused()
        return None

    def forward_refused(self, token):
        """A learner: the leader did not take a request forwarded for `token` (no quorum can
        write its log): the write fails with SystemError, a new session's connection closes."""
        if len(token) == 3:
            origin, conn_id, read_only = token
            log.info("closing a new connection: the leader cannot write a session now")
            origin.connected(conn_id, 2, 0, 0, b"", read_only)
        else:
            origin, conn_id, entry_id, xid, _ = token
            self._refuse_write(origin, conn_id, entry_id, xid)

    def _refuse_write(self, origin, conn_id, entry_id, xid):
        """LMDB or (ensemble) the log cannot be written: a new write is not logged, it fails
        now."""
        data = _encode_reply(xid, self.last_zxid, errors.SYSTEMERROR)
        origin.batch(self.last_zxid, (), ((conn_id, entry_id, False, data),), True)

    # ------------------------------------------------------------------ requests from frontends

    def connect(self, origin, conn_id, frame, read_only):
        """A client's ConnectRequest: create a session, or reopen a live one."""
        req, _ = codec.decode_connect_request(frame)
        if not self.serving:
            if self.read_only and read_only:
                self._connect_read_only(origin, conn_id, req)
                return
            log.info("refusing a client connection: this server is %s, not serving requests%s",
                     self.mode, " to clients that do not accept a read-only server"
                     if self.read_only else "")
            origin.connected(conn_id, 2, 0, 0, b"", read_only)
            return
        if req.lastZxidSeen > self.last_zxid:
            log.warning("refusing session request as the client has seen zxid 0x%x; our last "
                        "zxid is 0x%x; client must try another server",
                        req.lastZxidSeen, self.last_zxid)
            origin.connected(conn_id, 2, 0, 0, b"", read_only)
            return
        if req.sessionId == 0:
            stalled = self._writes_refused()
            if stalled is not None:
                log.info("refusing a new session: %s", stalled)
                origin.connected(conn_id, 2, 0, 0, b"", read_only)
                return
            timeout = self.negotiate_timeout(req.timeOut)
            sid = self.sessions.next_session_id(now_ms())
            if self.quorum is not None and not self.quorum.leading:
                self.quorum.forward((origin, conn_id, read_only), sid, 0,
                                    consts.OP_CREATE_SESSION, _I32.pack(timeout), ())
                return
            txn = txns.Txn(txns.CREATE_SESSION, sid, 0, now_ms(), timeout_ms=timeout)
            self.submit(txn, (origin, conn_id, read_only))
            return
        session = self.sessions.get(req.sessionId)
        if (session is None or session.closing
                or bytes(req.passwd or b"") != session_password(req.sessionId)):
            log.info("invalid session 0x%x, probably expired", req.sessionId)
            origin.connected(conn_id, 0, 0, 0, _ZERO_PASSWD, rw(read_only))
            return
        old = session.owner
        if old is not None and old != (origin, conn_id):
            log.info("session 0x%x moved to a new connection; closing the old one",
                     req.sessionId)
            old[0].close_conn(old[1])
        session.owner = (origin, conn_id)
        self.touch(req.sessionId)
        origin.connected(conn_id, 1, req.sessionId, self.negotiate_timeout(req.timeOut),
                         session_password(req.sessionId), rw(read_only))

    def _connect_read_only(self, origin, conn_id, req):
        """readonlymode.enabled and no quorum: a client that accepts a read-only server gets a
        session of this server only (ReadOnlyZooKeeperServer); it reads, every write answers
        NOTREADONLY, and the connection closes once the server has a quorum again."""
        timeout = self.negotiate_timeout(req.timeOut)
        sid = req.sessionId
        if sid == 0 or bytes(req.passwd or b"") != session_password(sid):
            sid = self.sessions.next_session_id(now_ms())
        log.info("read-only session 0x%x", sid)
        origin.connected(conn_id, 1, sid, timeout, session_password(sid), True)

    def request(self, origin, conn_id, entry_id, session_id, xid, op, body):
        """A write, closeSession or sync from a frontend (body already checked there)."""
        if not self.serving:
            if self.read_only:
                self._refuse_read_only(origin, conn_id, entry_id, xid, op)
            else:
                origin.close_conn(conn_id)   # lost the quorum: the client reconnects elsewhere
            return
        if op != consts.OP_SYNC and self._writes_refused() is not None:
            self._refuse_write(origin, conn_id, entry_id, xid)
            return
        forward = self.quorum is not None and not self.quorum.leading
        if op == consts.OP_CLOSE_SESSION:
            token = (origin, conn_id, entry_id, xid, None)
            if forward:
                session = self.sessions.get(session_id)
                if session is not None:
                    session.closing = True
                self.quorum.forward(token, session_id, xid, op, b"", ())
            else:
                self.close_session(session_id, token)
            return
        if op == consts.OP_SYNC:
            req, _ = codec.DECODERS[r.SyncRequest](body, 0)
            if forward:
                self.quorum.forward_sync((origin, conn_id, entry_id, xid, req.path))
            else:
                self.sync_reached(self.next_zxid - 1, (origin, conn_id, entry_id, xid, req.path))
            return
        if op == consts.OP_MULTI:
            ops = codec.decode_multi(body, 0)
            req = ops
            shape = (op, [o for o, _ in ops])
        else:
            req = fused = None
            if not forward:
                fused = _FUSED.get(op)
                if fused is not None:
                    req = fused[0](body)   # the fields, no records, for the common writes
                if req is None:
                    req = codec.DECODERS[_WRITE_REQUESTS[op]](body, 0)[0]
            shape = (op, None)
        ids = self._auth.get((origin, conn_id), ())
        if self.audit is not None:
            shape = shape + (self.audit.request_info(op, body, ids), session_id)
        token = (origin, conn_id, entry_id, xid, shape)
        if forward:
            self.quorum.forward(token, session_id, xid, op, body, ids)
            return
        if type(req) is tuple:
            if (op not in _FIELDS_CREATE_OPS or self._path_fits(req[0])) and \
                    self._fused(fused[1], session_id, xid, req, ids, token):
                return
            if op not in _FIELDS_CREATE_OPS:   # prep_request takes a create's fields, not these
                req = codec.DECODERS[_WRITE_REQUESTS[op]](body, 0)[0]
        self.submit(self.prep_request(session_id, xid, op, req, ids), token)

    def _refuse_read_only(self, origin, conn_id, entry_id, xid, op):
        close = op == consts.OP_CLOSE_SESSION
        data = _encode_reply(xid, self.last_zxid, 0 if close else errors.NOTREADONLY)
        origin.batch(self.last_zxid, (), ((conn_id, entry_id, close, data),), True)

    def remote_request(self, origin, req_id, session_id, xid, op, body, ids):
        """The leader: a request a learner's client sent (see request); the learner replies.
        False: refused (_writes_refused; a closeSession never is) -- the learner answers."""
        if op != consts.OP_CLOSE_SESSION and self._writes_refused() is not None:
            return False
        if op == consts.OP_CREATE_SESSION:
            timeout = _I32.unpack(body)[0]
            txn = txns.Txn(txns.CREATE_SESSION, session_id, 0, now_ms(), timeout_ms=timeout)
            self.submit(txn, None, origin, req_id)
            # Tracked from now on, as ZooKeeper's leader does in prep: a quorum may commit the
            # session (and the client use it through another server) before it is applied here.
            if self.sessions.get(session_id) is None:
                self.sessions.add(session_id, timeout, now_ms())
        elif op == consts.OP_CLOSE_SESSION:
            self.close_session(session_id, None, xid, origin, req_id)
        else:
            if op == consts.OP_MULTI:
                req = codec.decode_multi(body, 0)
            else:
                req, _ = codec.DECODERS[_WRITE_REQUESTS[op]](body, 0)
            txn = self.prep_request(session_id, xid, op, req, ids)
            self.submit(txn, None, origin, req_id)
        return True

    def sync_reached(self, target, token):
        """Answer a sync once everything up to `target` is applied here."""
        origin, conn_id, entry_id, xid, path = token
        data = _encode_reply(xid, target, 0, r.SyncResponse(path))
        if target <= self.last_zxid and not self._syncs:
            origin.batch(self.last_zxid, (), ((conn_id, entry_id, False, data),), True)
        else:
            self._syncs.append((target, origin, conn_id, entry_id, data, xid, path))

    def set_config_node(self, data, version):
        """/zookeeper/config := data, in LMDB only (not a txn): an ensemble member's own view
        of the membership when reconfig is disabled (ZKDatabase.initConfigInZKDatabase)."""
        node = self.view.get(CONFIG_NODE)
        if node is None or (node.data == data and node.mzxid == version):
            return
        node = node.copy()
        node.data = data
        node.mzxid = version
        node.version = -1
        node.mtime = int(time.time() * 1000)
        wv = self.tree.write()
        try:
            wv.put(CONFIG_NODE, node)
            wv.set_last_zxid(self.last_zxid)
        except BaseException:
            wv.abort()
            raise
        wv.commit()
        self._renew_read()
        self.overlay.forget(CONFIG_NODE)   # an applied txn's entry there is older now

    def close_all_clients(self):
        """Drop every client connection (this server stopped serving: no quorum)."""
        for origin in self.origins:
            origin.close_conn(ALL_CONNECTIONS)
        for session in self.sessions.sessions.values():
            session.owner = None
        self._auth.clear()

    def set_auth(self, origin, conn_id, ids):
        self._auth[(origin, conn_id)] = tuple(tuple(i) for i in ids)

    def touch(self, session_id):
        self.sessions.touch(session_id, now_ms())
        if self.quorum is not None:
            self.quorum.touched(session_id)

    def conn_closed(self, origin, conn_id, session_id):
        self._auth.pop((origin, conn_id), None)
        session = self.sessions.get(session_id)
        if session is not None and session.owner == (origin, conn_id):
            session.owner = None

    def origin_lost(self, origin):
        """A worker died: its connections are gone; their sessions live on until they expire."""
        for session in self.sessions.sessions.values():
            if session.owner is not None and session.owner[0] is origin:
                session.owner = None
        self._auth = {k: v for k, v in self._auth.items() if k[0] is not origin}
        self._syncs = [s for s in self._syncs if s[1] is not origin]

    # ------------------------------------------------------------------ sessions

    def leads(self):
        """Standalone, or the serving leader of an ensemble: the one that expires sessions."""
        return self.serving and (self.quorum is None or self.quorum.leading)

    def negotiate_timeout(self, requested):
        cfg = self.config
        return max(cfg.min_session_timeout_ms, min(cfg.max_session_timeout_ms, requested))

    async def _expire_loop(self):
        """The clock of session expiry: deadlines are tick boundaries (SessionTable), so it
        wakes just past each one, as ZooKeeper's ExpiryQueue does (expire_sessions): a session
        goes within a few ms of its deadline, not up to half a tick later."""
        tick = self.config.tick_time_ms
        while True:
            now = now_ms()
            await asyncio.sleep(((now // tick + 1) * tick - now + 1) / 1000.0)
            self.expire_sessions(now_ms())

    def expire_sessions(self, now):
        """Expire every session past its deadline at `now` (ms): one closeSession txn each,
        logged like a client's. Only the server that leads does it (standalone, or the serving
        leader), and not while LMDB cannot be written (expiry is a write: it waits). Returns the
        ids expired. Driven by _expire_loop; tests call it with their own clock."""
        if not self.leads() or self.apply_error is not None:
            return []
        done = []
        for s in self.sessions.expired(now):
            if s.session_id not in self._expiry_failed:   # (once while the log is full)
                log.info("expiring session 0x%x, timeout of %dms exceeded",
                         s.session_id, s.timeout_ms)
            try:
                self.close_session(s.session_id, None)
                done.append(s.session_id)
            except Exception:
                log.exception("expiring session 0x%x", s.session_id)
        return done

    async def _reaper_loop(self):
        """ContainerManager: delete empty containers and expired TTL nodes, at most
        znode.container.maxPerMinute a minute, every znode.container.checkIntervalMs."""
        cfg = self.config
        interval_s = max(0.05, cfg.container_check_interval_ms / 1000.0)
        while True:
            await asyncio.sleep(interval_s)
            if not self.leads() or self.apply_error is not None:
                continue
            try:
                paths = datatree.reap_candidates(self.view.special_nodes(), now_ms(),
                                                 cfg.container_max_never_used_interval_ms)
                limit = max(1, int(cfg.container_max_per_minute * interval_s / 60.0))
                for path in paths[:limit]:
                    try:
                        txn = datatree.prep_delete_container(self.overlay, path)
                    except ZkError:
                        continue  # gained a child or went meanwhile
                    txn.time_ms = now_ms()
                    self.submit(txn, None)
            except Exception:
                log.exception("container/TTL reaper")

    async def _checkpoint_loop(self):
        """Checkpoint LMDB now and then (zkpy.storage.lmdb_checkpoint): what a restart after a
        power cut comes back to, and how far the log behind it can be purged (autopurge)."""
        cfg = self.config
        interval_s = cfg.autopurge_purge_interval_ms / 1000.0
        last_purge = time.monotonic()
        loop = asyncio.get_running_loop()
        failing = 0
        while True:
            # checkpointIntervalMs: a power cut comes back to the last checkpoint and replays
            # the log from there; until the next one, pages freed by writes are not reused (the
            # checkpoint's pin), so data.mdb may grow by what that much time of writes touches.
            await asyncio.sleep(cfg.checkpoint_interval_ms / 1000.0)
            if self._txns_since_checkpoint == 0:
                continue
            covered = self._txns_since_checkpoint
            try:
                zxid = await self.checkpoint_now()
            except Exception as e:
                # Once per outage (a full disk fails one every interval): ERROR, then DEBUG.
                (log.debug if failing else log.error)(
                    "LMDB checkpoint of %s failed (retried; the log is kept): %s",
                    self.tree.path, e)
                failing += 1
                continue
            if zxid is None:   # one under way already (a snapshot install)
                continue
            if failing:
                log.info("LMDB checkpoint of %s done, after %d failed attempts",
                         self.tree.path, failing)
                failing = 0
            self._txns_since_checkpoint -= covered
            if self.txnlog.size_since_roll() >= LOG_ROLL_AT_CHECKPOINT_BYTES:
                self.txnlog.request_roll()
            if interval_s and time.monotonic() - last_purge >= interval_s:
                last_purge = time.monotonic()
                deleted = await loop.run_in_executor(
                    None, self.txnlog.purge, zxid, cfg.autopurge_snap_retain_count)
                if deleted:
                    log.info("autopurge removed %d old log files", len(deleted))

    async def checkpoint_now(self):
        """One LMDB checkpoint: pinned here between batches, synced and stored in a thread.
        Returns the zxid it covers, None if one was already under way. A cancel waits for the
        thread: a stored checkpoint must keep its pin (LmdbTree.abandon_checkpoint)."""
        tree = self.tree
        pending = tree.begin_checkpoint()
        if pending is None:
            return None
        fut = asyncio.get_running_loop().run_in_executor(None, tree.finish_checkpoint, pending)
        try:
            await asyncio.shield(fut)
        except asyncio.CancelledError:
            await asyncio.wait([fut])   # the thread goes on: its outcome decides the pin
            try:
                self._settle_checkpoint(tree, pending, fut)
            except Exception:
                pass   # abandoned: kept pinned, retried by a later checkpoint
            raise
        except Exception:
            pass   # fut holds it
        return self._settle_checkpoint(tree, pending, fut)

    @staticmethod
    def _settle_checkpoint(tree, pending, fut):
        if fut.exception() is not None:
            tree.abandon_checkpoint(pending)
            raise fut.exception()
        return tree.end_checkpoint(pending)
