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

Write path, as in ZooKeeper's processor chain:
    prep   validate against the committed tree + outstanding changes (PendingOverlay), assign the
           next zxid, produce a txn (an ERROR txn for a failed request, which still takes a zxid);
    sync   append the txn to the log; the group committer fsyncs many txns at once;
    final  after the fsync: apply the batch in one LMDB write txn, fire watches, then reply.
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
import shutil
import struct
import time

import lmdb

from zkpy import errors
from zkpy.errors import StorageCorruptError, ZkError
from zkpy.proto import codec, consts
from zkpy.proto import records as r
from zkpy.proto.twins import compiled_twin
from zkpy.server.audit import AuditLog
from zkpy.server.sessions import SessionTable, session_password
from zkpy.storage.groupcommit import GroupCommitter
from zkpy.storage.lmdb_tree import LmdbTree
from zkpy.storage.txnlog import TxnLog, append_bound, fsync_dir
from zkpy.tree import acl as acls
from zkpy.tree import datatree, txns
from zkpy.tree.overlay import PendingOverlay, replay

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

log = logging.getLogger("zkpy.server")

_encode_reply = codec.encode_reply_frame
_ZERO_PASSWD = b"\0" * 16
# After a checkpoint the log starts a new file once the current one holds this much: recovery
# reads from the file holding the checkpoint's zxid on, and purge removes whole files.
LOG_ROLL_AT_CHECKPOINT_BYTES = 4 << 20
_I32 = struct.Struct(">i")
CONFIG_NODE = "/zookeeper/config"
ALL_CONNECTIONS = 0xFFFFFFFF   # close_conn(ALL_CONNECTIONS): every connection of the origin
APPLY_RETRY_S = 0.5   # while LMDB cannot be written: how often the waiting txns are retried
LOG_RETRY_S = 0.5     # an ensemble member's log that cannot be written: how often it is retried


_CREATE_OPS = (consts.OP_CREATE, consts.OP_CREATE2, consts.OP_CREATE_CONTAINER,
               consts.OP_CREATE_TTL)
_CREATE2_REPLY_OPS = (consts.OP_CREATE2, consts.OP_CREATE_CONTAINER, consts.OP_CREATE_TTL)


def _prep_create_in_multi(ttl, extended_types, enforce_quota=False):
    def prep(view, session_id, cxid, now_ms, path, data, acl, flags, auth=None):
        return datatree.prep_create(view, session_id, cxid, now_ms, path, data, acl, flags,
                                    auth=auth, ttl=ttl, extended_types=extended_types,
                                    enforce_quota=enforce_quota, quota_warn=log.warning)
    return prep


def _prep_set_data_in_multi(enforce_quota):
    def prep(view, session_id, cxid, now_ms, path, data, version, auth=None):
        return datatree.prep_set_data(view, session_id, cxid, now_ms, path, data, version,
                                      auth=auth, enforce_quota=enforce_quota,
                                      quota_warn=log.warning)
    return prep


def _rw(client_flag):
    """The readOnly byte of a read-write server's ConnectResponse (None: the client sent none)."""
    return None if client_flag is None else False


def _refuse(view, session_id, cxid, now_ms, code, auth=None):
    raise ZkError(code)


def now_ms():
    return int(time.time() * 1000)


def _free_space(directory):
    """'N bytes free in <directory>', for the log lines of a full disk."""
    try:
        return "%d bytes free in %s" % (shutil.disk_usage(directory).free, directory)
    except OSError as e:
        return "free space of %s unknown: %s" % (directory, e)


_time = time.time   # Core._fused calls it inline: a Python frame less per write


def _stat(node):
    return r.Stat(*node.wire_stat())


def node_reply_frame(xid, zxid, path, node):
    """A write's reply frame carrying `node`'s Stat: SetDataResponse (path None) or
    Create2Response(path). The compiled twin (zkpy.proto._fastcodec) skips the records."""
    if path is None:
        return _encode_reply(xid, zxid, 0, r.SetDataResponse(_stat(node)))
    return _encode_reply(xid, zxid, 0, r.Create2Response(path, _stat(node)))


node_reply_frame_pure = node_reply_frame
node_reply_frame = compiled_twin("node_reply_frame", node_reply_frame_pure)


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


def _multi_reply(xid, zxid, ops, subs, nodes):
    """A multi's reply: one result per op (MultiResponse); a failed multi is error results only,
    under a ReplyHeader with err 0 (as Apache ZooKeeper 3.8 answers)."""
    if any(sub.type == txns.ERROR for sub in subs):
        results = [(consts.OP_ERROR, sub.err, None) for sub in subs]
    else:
        results = []
        for op, sub, node in zip(ops, subs, nodes):
            if op == consts.OP_CREATE:
                results.append((op, 0, r.CreateResponse(sub.path)))
            elif op in _CREATE2_REPLY_OPS:
                results.append((op, 0, r.Create2Response(sub.path, _stat(node))))
            elif op == consts.OP_SET_DATA:
                results.append((op, 0, r.SetDataResponse(_stat(node))))
            else:
                results.append((op, 0, None))
    body = codec.encode_reply_header(xid, zxid, 0) + codec.encode_multi_response(results)
    return len(body).to_bytes(4, "big") + body


class Core(object):
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
            on_stalled=self._on_log_stalled)
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

    def _assign(self, txn):
        """prep -> sync: give txn the next zxid and apply it to the overlay. Returns (zxid,
        prepped): what applying it to the committed state will do, worked out here once --
        (the overlay's recorded changes, its watch events, its node) -- for _apply to replay
        (see zkpy.tree.overlay), or None when the overlay could not."""
        zxid = self.next_zxid
        self.next_zxid += 1
        overlay = self.overlay
        overlay.begin(zxid)
        events, node = datatree.apply(overlay, zxid, txn)
        ops = overlay.end()
        if ops is None:   # _apply works it out on the committed state
            return zxid, None
        return zxid, (ops, events, node)

    def submit(self, txn, token, origin=0, req_id=0):
        """Log txn under the next zxid; in an ensemble (leader) also propose it to the learners.
        origin/req_id: the learner whose client asked (the leader holds no token for it)."""
        if self.quorum is not None and not self.quorum.can_propose():
            raise ZkError(errors.CONNECTIONLOSS, "not leading")
        payload = txns.encode(txn)  # before _assign: a failure must not leave the overlay ahead
        zxid, prepped = self._assign(txn)
        self._logged(zxid, txn, payload, token, prepped, origin, req_id)
        return zxid

    def _logged(self, zxid, txn, payload, token, prepped, origin=0, req_id=0):
        self.committer.submit(zxid, payload, zxid)
        self._pending.append((zxid, txn, token, prepped))
        if self.quorum is not None:
            self.quorum.proposed(zxid, payload, origin, req_id)

    def _fused(self, fused, session_id, xid, args, ids, token):
        """A common write, prep and overlay apply in one (datatree.fused_*: `fused`, called with
        `args`); False when it is not that common: the caller takes the general path
        (prep_request, submit), which gives the same txn or the error."""
        session = self.sessions.sessions.get(session_id)
        if session is None or session.closing or (self.quorum is not None
                                                  and not self.quorum.can_propose()):
            return False
        zxid = self.next_zxid
        overlay = self.overlay
        overlay.begin(zxid)
        done = fused(overlay, zxid, session_id, xid, int(_time() * 1000), *args,
                     (ids, self.config.skip_acl))
        if done is None:
            return False
        txn, events, node = done
        # encode after the overlay changed (submit encodes first): a fused txn holds only what
        # the request decoder made -- str path, bytes data, an ACL fixup took -- which it takes
        payload = txns.encode(txn)
        self.next_zxid = zxid + 1
        ops = overlay.end()
        self._logged(zxid, txn, payload, token, None if ops is None else (ops, events, node))
        return True

    def log_txn(self, zxid, txn, payload, token=None):
        """A learner: log a txn the leader proposed (applied once committed and durable)."""
        self.committer.submit(zxid, payload, zxid)
        self._pending.append((zxid, txn, token, None))
        self.next_zxid = zxid + 1

    def load_unapplied(self):
        """The txns in the log past LMDB (never known committed here): queue them for apply,
        as durable. Returns their (zxid, payload) list. An ensemble member calls this once its
        log agrees with the leader's (TRUNC done)."""
        out = list(self.txnlog.read_after(self.last_zxid))
        for zxid, payload in out:
            self._pending.append((zxid, txns.decode(payload), None, None))
        last = out[-1][0] if out else self.last_zxid
        self.durable_zxid = max(self.durable_zxid, last)
        self.next_zxid = max(self.next_zxid, last + 1)
        return out

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
            origin.batch(self.last_zxid, (), ())
            origin.committed(self.last_zxid)

    def _reset_log_after_snapshot(self):
        self.txnlog.reset()
        self.tree.clear_log_reset()

    def reset_pipeline(self):
        """Forget every txn not yet applied (they stay in the log) and the prep overlay: a
        change of role in an ensemble. Call after committer.flush()."""
        self._pending.clear()
        self.overlay = self._new_overlay()
        self.overlay.applied(self.last_zxid)
        self.durable_zxid = self.commit_zxid = self.last_zxid
        self._syncs = []
        for session in self.sessions.sessions.values():
            session.closing = False   # a closeSession not applied yet may never commit

    def commit(self, zxid):
        """An ensemble committed every txn up to zxid: apply those that are durable here."""
        if zxid > self.commit_zxid:
            self.commit_zxid = zxid
        self._apply_ready()

    def _apply_ready(self):
        if self.apply_error is not None:
            return   # LMDB cannot be written: _retry_apply tries again
        upto = min(self.durable_zxid, self.commit_zxid)
        pending = self._pending
        if not pending or pending[0][0] > upto:
            return
        if pending[-1][0] <= upto:  # all of them (the usual case standalone)
            batch = list(pending)
            pending.clear()
        else:
            batch = []
            while pending and pending[0][0] <= upto:
                batch.append(pending.popleft())
        self._apply(batch)

    def prep_request(self, session_id, xid, op, req, ids=()):
        """prep: turn a client write into a txn; a request error becomes an ERROR txn."""
        t = now_ms()
        view = self.overlay
        auth = (ids, self.config.skip_acl)
        try:
            session = self.sessions.sessions.get(session_id)
            if session is None or session.closing:
                raise ZkError(errors.SESSIONEXPIRED)
            if op in _CREATE_OPS:
                if type(req) is tuple:   # create_request_fields (see request())
                    path, data, acl, flags = req
                    ttl = -1
                else:
                    acl = [(a.perms, a.id.scheme, a.id.id) for a in (req.acl or ())]
                    path, data, flags, ttl = req.path, req.data, req.flags, getattr(req, "ttl", -1)
                self._check_path_size(path)
                return datatree.prep_create(view, session_id, xid, t, path, data, acl, flags,
                                            auth=auth, ttl=ttl,
                                            extended_types=self.config.extended_types_enabled,
                                            enforce_quota=self.config.enforce_quota,
                                            quota_warn=log.warning)
            if op == consts.OP_DELETE:
                return datatree.prep_delete(view, session_id, xid, t, req.path, req.version,
                                            auth=auth)
            if op == consts.OP_SET_DATA:
                return datatree.prep_set_data(view, session_id, xid, t, req.path, req.data,
                                              req.version, auth=auth,
                                              enforce_quota=self.config.enforce_quota,
                                              quota_warn=log.warning)
            if op == consts.OP_SET_ACL:
                acl = [(a.perms, a.id.scheme, a.id.id) for a in (req.acl or ())]
                return datatree.prep_set_acl(view, session_id, xid, t, req.path, acl,
                                             req.version, auth=auth)
            if op == consts.OP_RECONFIG:
                return self._prep_reconfig(view, session_id, xid, t, req, auth)
            if op == consts.OP_MULTI:
                return datatree.prep_multi(view, session_id, xid, t,
                                           [self._multi_op(o, rec) for o, rec in req],
                                           auth=auth)
            raise AssertionError("not a write op: %d" % op)
        except ZkError as e:
            return txns.Txn(txns.ERROR, session_id, xid, t, err=e.code)

    def _prep_reconfig(self, view, session_id, xid, t, req, auth):
        """reconfig: a setData of /zookeeper/config (version -1) holding the new membership,
        as ZooKeeper logs it; the ensemble switches to it when the txn is applied."""
        if not self.config.reconfig_enabled:
            raise ZkError(errors.RECONFIGDISABLED, "reconfig is disabled (reconfigEnabled)")
        if self.quorum is None:
            raise ZkError(errors.UNIMPLEMENTED, "reconfig of a standalone server")
        node = view.get(CONFIG_NODE)
        # ZooKeeper's order: the request is checked (RECONFIGINPROGRESS, BADVERSION,
        # BADARGUMENTS, NEWCONFIGNOQUORUM) before the ACL of /zookeeper/config (NOAUTH), which
        # the leader runs last, before it takes the reconfig on.
        text = self.quorum.prep_reconfig(
            req, lambda: acls.check(node.acl, acls.WRITE, auth[0], auth[1], CONFIG_NODE))
        return txns.Txn(txns.SET_DATA, session_id, xid, t, path=CONFIG_NODE,
                        data=text.encode("utf-8"), version=-1)

    def _multi_op(self, op, rec):
        """(op, prep function, args) for one op of a multi."""
        if op in _CREATE_OPS:
            self._check_path_size(rec.path)
            acl = [(a.perms, a.id.scheme, a.id.id) for a in (rec.acl or ())]
            return op, _prep_create_in_multi(getattr(rec, "ttl", -1),
                                             self.config.extended_types_enabled,
                                             self.config.enforce_quota), \
                (rec.path, rec.data, acl, rec.flags)
        if op == consts.OP_DELETE:
            return op, datatree.prep_delete, (rec.path, rec.version)
        if op == consts.OP_SET_DATA:
            return op, _prep_set_data_in_multi(self.config.enforce_quota), \
                (rec.path, rec.data, rec.version)
        if op == consts.OP_CHECK:
            return op, datatree.prep_check, (rec.path, rec.version)
        return op, _refuse, (errors.BADARGUMENTS,)

    def _path_fits(self, path):
        try:
            self._check_path_size(path)
        except ZkError:
            return False
        return True

    def _check_path_size(self, path):
        if path is None:
            return
        # LMDB keys are at most max_key_size (511) bytes; the ephemeral index adds 8 and a
        # sequential suffix 10. ZooKeeper has no such limit; a longer path is refused up front.
        if (len(path) if path.isascii() else len(path.encode("utf-8"))) + 18 \
                > self.tree.max_key_size:
            raise ZkError(errors.BADARGUMENTS, "path longer than %d bytes"
                          % (self.tree.max_key_size - 18))

    def _on_durable(self, zxids):
        """sync done: the txns of `zxids` are fsynced (or forceSync=no). Standalone, that makes
        them committed; in an ensemble the quorum decides (a learner acks them)."""
        if self.log_error is not None:
            if self.quorum is not None:
                log.info("the transaction log in %s takes writes again: the waiting txns are "
                         "logged, accepting writes", self.log_error.directory)
                self.quorum.log_stalled(False)
            else:
                log.info("the transaction log in %s takes writes again (%d txn(s) failed "
                         "meanwhile)", self.log_error.directory, self._log_failed_txns)
            self.log_error = None
            self._log_failed_txns = 0
            self._expiry_failed.clear()
        self.durable_zxid = zxids[-1]
        if self.quorum is None:
            self.commit_zxid = self.durable_zxid
        else:
            self.quorum.durable(self.durable_zxid)
        self._apply_ready()

    def _apply(self, tokens):
        """final: every txn in `tokens` is durable and committed; apply, notify, reply.

        Order, for the guarantees across worker processes:
          1. apply the batch in the LMDB write txn and commit it;
          2. send every frontend the batch (events, and its replies);
          3. tell every frontend it is committed: replies leave, and reads that must see the
             batch (read-your-writes, or anything answered before the read came in) may run.
        A frontend whose snapshot shows the batch before its events arrived (between 1 and 2)
        waits for them (Frontend.can_read), so no client reads data before the event announcing
        it. Committing first means a failed commit (dataDir full, LMDB map full) has sent
        nothing: the frontends never hold a batch that is not in LMDB, so reads go on while the
        core retries (_stall). Replies may leave in step 2: their txns are durable in the log.
        """
        try:
            results, last = self._commit_batch(tokens)
        except lmdb.Error as e:
            self._stall(tokens, e)
            return
        self.last_zxid = last
        self._renew_read()
        self.overlay.applied(last)
        events = []
        replies = {}
        after = []
        for zxid, txn, token, zxid_events, node in results:
            events += zxid_events
            self._finish(zxid, txn, token, node, replies, after)
            if (self.quorum is not None and txn.type == txns.SET_DATA
                    and txn.path == CONFIG_NODE):
                after.append(lambda zxid=zxid, data=txn.data:
                             self.quorum.config_applied(zxid, data))
        while self._syncs and self._syncs[0][0] <= last:
            s = self._syncs.pop(0)
            replies.setdefault(s[1], []).append((s[2], s[3], False, s[4]))
        # Each frontend fires the watches before it sends the replies, so a client sees the
        # event before it can see the data that triggered it (Programmer's Guide, "Ordering").
        # Over a copy: a worker found gone while its batch is written leaves self.origins
        # (Supervisor.worker_lost) and must not make the next one miss the batch.
        origins = tuple(self.origins)
        for origin in origins:
            origin.batch(last, events, replies.get(origin, ()))
        self._txns_since_checkpoint += len(tokens)
        for origin in origins:
            origin.committed(last)
        for fn in after:
            fn()

    def _commit_batch(self, tokens):
        """Apply `tokens` to LMDB in one write txn and commit it: (results, last zxid). Raises
        lmdb.Error with LMDB unchanged (the txn aborted); nothing else is changed either, so
        the same batch can be applied again."""
        wv = self.tree.write()
        results = []
        last = self.last_zxid
        try:
            for zxid, txn, token, prepped in tokens:
                if prepped is None:   # logged without prep (a learner, a restart), or inexact
                    zxid_events, node = datatree.apply(wv, zxid, txn)
                    results.append((zxid, txn, token, zxid_events, node))
                else:
                    ops, zxid_events, node = prepped
                    replay(wv, ops)
                    results.append((zxid, txn, token, zxid_events, node))
                last = zxid
            wv.set_last_zxid(last)
            wv.commit()
        except BaseException:
            try:
                wv.abort()   # (after a failed commit LMDB has ended the txn already)
            except lmdb.Error:
                pass
            raise
        return results, last

    # ------------------------------------------------------------------ full or failing disk

    def _stall(self, tokens, exc):
        """The LMDB commit of `tokens` failed (dataDir full, map full, I/O error): they are
        durable in the log, so they are not answered with an error -- they stay pending (their
        clients wait) and the apply is retried every APPLY_RETRY_S; meanwhile new writes are
        refused with SYSTEMERROR before they are logged (request, connect). One ERROR line."""
        self._pending.extendleft(reversed(tokens))
        self.apply_error = exc
        if self._stalled_since is None:
            self._stalled_since = time.monotonic()
            path = self.tree.path if self.tree is not None else self.config.data_dir
            if isinstance(exc, lmdb.MapFullError):
                why = ("the LMDB map is full (lmdbMapSize=%d bytes): raise lmdbMapSize in %s and "
                       "restart" % (self.config.lmdb_map_size, self.config.path))
            else:
                why = "%s (%s)" % (exc, _free_space(self.config.data_dir))
            log.error("cannot apply txns 0x%x..0x%x to the database in %s: %s; they are durable "
                      "in the transaction log and wait (retried every %.1fs); new writes fail "
                      "with SystemError meanwhile, reads go on", tokens[0][0], tokens[-1][0],
                      path, why, APPLY_RETRY_S)
        if self._retry_handle is None:
            self._retry_handle = asyncio.get_running_loop().call_later(APPLY_RETRY_S,
                                                                      self._retry_apply)

    def _retry_apply(self):
        self._retry_handle = None
        exc = self.apply_error
        if exc is None:
            return
        if isinstance(exc, lmdb.PanicError):
            # LMDB's fatal environment error (a failed meta page write): only a new environment
            # handle can write again. Readers in the worker processes have their own.
            try:
                self._reopen_tree()
            except lmdb.Error as e:
                log.error("reopening the database in %s: %s", self.config.data_dir, e)
                self._retry_handle = asyncio.get_running_loop().call_later(
                    APPLY_RETRY_S, self._retry_apply)
                return
        self.apply_error = None
        self._apply_ready()
        if self.apply_error is None:
            log.info("the database in %s takes writes again after %.1fs: applied the waiting "
                     "txns up to 0x%x, accepting writes", self.config.data_dir,
                     time.monotonic() - self._stalled_since, self.last_zxid)
            self._stalled_since = None

    def _reopen_tree(self):
        old = self.tree
        if self._rtxn is not None:
            try:
                self._rtxn.abort()
            except lmdb.Error:
                pass
            self._rtxn = None
        try:
            old.close(checkpoint=False)
        except lmdb.Error:
            pass
        # As it is, not back to its checkpoint: the workers have it open, and what it holds
        # past the checkpoint is what this core applied (LmdbTree checkpoints it first thing).
        self.tree = LmdbTree(old.path, map_size=self.config.lmdb_map_size, restore=False)
        self._renew_read()
        for origin in self.origins:   # workers=0: the in-process frontend reads this tree
            if getattr(origin, "tree", None) is old:
                origin.reopened(self.tree)
        log.info("reopened the database in %s after a fatal LMDB error", old.path)

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
        origin.batch(self.last_zxid, (), ((conn_id, entry_id, False, data),))
        origin.committed(self.last_zxid)

    def _on_log_failed(self, zxids, exc):
        """GroupCommitter.on_failed: the log could not take the txns `zxids` (a failed batch and
        everything queued after it, in zxid order) and was cut back. None is durable: forget
        them -- next_zxid and the prep overlay go back to what is logged -- and answer each
        with SYSTEMERROR (a createSession: its connection closes). Reads go on; the next write
        tries the log again. (An ensemble member keeps and retries them: _on_log_stalled.)"""
        if self.quorum is not None or not zxids:
            return False
        first = zxids[0]
        keep = collections.deque()
        failed = []
        for entry in self._pending:
            (failed if entry[0] >= first else keep).append(entry)
        # The bookkeeping first, the answers after: an answer can bring the next request in
        # (workers=0 calls back into request()), which must find the pipeline rolled back.
        self._pending = keep
        self.next_zxid = first
        self.overlay = self._new_overlay()
        self.overlay.applied(self.last_zxid)
        for zxid, txn, _, _ in keep:   # durable, waiting for LMDB (_stall): still ahead of prep
            self.overlay.begin(zxid)
            datatree.apply(self.overlay, zxid, txn)
            self.overlay.end()
        self._log_failed_txns += len(failed)
        if self.log_error is None:
            self.log_error = exc
            log.error("cannot write the transaction log in %s: %s (%s); writes fail with "
                      "SystemError until it can be written again, reads go on", exc.directory,
                      exc.error, _free_space(exc.directory))
        replies = {}
        closing = []
        for zxid, txn, token, _ in failed:
            t = txn.type
            if t == txns.CLOSE_SESSION:
                session = self.sessions.get(txn.session_id)
                if session is not None:
                    session.closing = False   # expiry tries again
                if token is None:
                    self._expiry_failed.add(txn.session_id)
            if token is None:
                continue
            if t == txns.CREATE_SESSION:
                origin, conn_id, read_only = token
                log.warning("closing a new connection: its session 0x%x could not be logged "
                            "(%s)", txn.session_id, exc)
                closing.append((origin, conn_id, read_only))
                continue
            origin, conn_id, entry_id, xid, _ = token
            replies.setdefault(origin, []).append(
                (conn_id, entry_id, False, _encode_reply(xid, self.last_zxid, errors.SYSTEMERROR)))
        top = self.next_zxid - 1
        if self._syncs and self._syncs[-1][0] > top:
            # A sync waited for txns that are gone: it waits for what was logged before them.
            syncs = []
            for target, origin, conn_id, entry_id, data, xid, path in self._syncs:
                if target > top:
                    target = top
                    data = _encode_reply(xid, top, 0, r.SyncResponse(path))
                syncs.append((target, origin, conn_id, entry_id, data, xid, path))
            self._syncs = syncs
            while self._syncs and self._syncs[0][0] <= self.last_zxid:
                s = self._syncs.pop(0)
                replies.setdefault(s[1], []).append((s[2], s[3], False, s[4]))
        for origin, rs in replies.items():
            origin.batch(self.last_zxid, (), rs)
            origin.committed(self.last_zxid)
        for origin, conn_id, read_only in closing:
            origin.connected(conn_id, 2, 0, 0, b"", read_only)
        return True

    def _on_log_stalled(self, exc):
        """GroupCommitter.on_stalled (an ensemble member): the log could not take a batch and
        was cut back. Its txns were proposed under their zxids (to the learners, or by the
        leader), so they are kept and the append retried every LOG_RETRY_S: nothing is acked
        for them meanwhile (the leader commits on the other voters' acks; what it commits is
        applied here only once logged here). This server's clients' new writes and sessions
        fail with SystemError until the log takes writes again; reads go on. One ERROR line;
        _on_durable logs the end."""
        self.log_error = exc
        self.quorum.log_stalled(True)
        log.error("cannot write the transaction log in %s: %s (%s); the txns from 0x%x wait "
                  "and are retried every %.1fs; writes to this server fail with SystemError "
                  "until it can be written again, reads go on", exc.directory, exc.error,
                  _free_space(exc.directory), self.durable_zxid + 1, LOG_RETRY_S)

    def _finish(self, zxid, txn, token, node, replies, after):
        t = txn.type
        if t == txns.CREATE_SESSION:
            session = self.sessions.get(txn.session_id)   # a leader tracks it from prep on
            if session is None:
                session = self.sessions.add(txn.session_id, txn.timeout_ms, now_ms())
            if token is None:   # asked through another server of the ensemble
                return
            origin, conn_id, read_only = token
            session.owner = (origin, conn_id)
            after.append(lambda: origin.connected(conn_id, 1, txn.session_id, txn.timeout_ms,
                                                  session_password(txn.session_id),
                                                  _rw(read_only)))
            return
        if t == txns.CLOSE_SESSION:
            if self.audit is not None and txn.paths:
                self.audit.ephemerals_deleted(txn.session_id, txn.paths)
            session = self.sessions.remove(txn.session_id)
            if token is not None:
                origin, conn_id, entry_id, xid, _ = token
                replies.setdefault(origin, []).append(
                    (conn_id, entry_id, True, _encode_reply(xid, zxid, 0)))
            elif session is not None and session.owner is not None:
                origin, conn_id = session.owner
                log.info("closing connection of expired session 0x%x", txn.session_id)
                after.append(lambda: origin.close_conn(conn_id))
            return
        if token is None:
            return
        origin, conn_id, entry_id, xid, req = token
        op = txn.type
        if t == txns.ERROR:
            data = _encode_reply(xid, zxid, txn.err)
        elif t == txns.CREATE:
            if req[0] in _CREATE2_REPLY_OPS:
                data = node_reply_frame(xid, zxid, txn.path, node)
            else:
                data = _encode_reply(xid, zxid, 0, r.CreateResponse(txn.path))
        elif t == txns.SET_DATA:
            if req[0] == consts.OP_RECONFIG:
                data = _encode_reply(xid, zxid, 0, r.GetDataResponse(node.data, _stat(node)))
            else:
                data = node_reply_frame(xid, zxid, None, node)
        elif t == txns.SET_ACL:
            data = _encode_reply(xid, zxid, 0, r.SetACLResponse(_stat(node)))
        elif t == txns.MULTI:
            data = _multi_reply(xid, zxid, req[1], txn.subs, node)
        else:
            data = _encode_reply(xid, zxid, 0)
        del op
        replies.setdefault(origin, []).append((conn_id, entry_id, False, data))
        if len(req) > 2 and req[2] is not None:   # audit.enable: (request_info, session)
            self.audit.done(req[3], req[2], txn)

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
            origin.connected(conn_id, 0, 0, 0, _ZERO_PASSWD, _rw(read_only))
            return
        old = session.owner
        if old is not None and old != (origin, conn_id):
            log.info("session 0x%x moved to a new connection; closing the old one",
                     req.sessionId)
            old[0].close_conn(old[1])
        session.owner = (origin, conn_id)
        self.touch(req.sessionId)
        origin.connected(conn_id, 1, req.sessionId, self.negotiate_timeout(req.timeOut),
                         session_password(req.sessionId), _rw(read_only))

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
        origin.batch(self.last_zxid, (), ((conn_id, entry_id, close, data),))
        origin.committed(self.last_zxid)

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
            origin.batch(self.last_zxid, (), ((conn_id, entry_id, False, data),))
            origin.committed(self.last_zxid)
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

    def close_session(self, session_id, token, cxid=0, origin=0, req_id=0):
        """closeSession from the client (token; or origin/req_id: a learner's client) or
        expiry (neither): one logged txn."""
        session = self.sessions.get(session_id)
        if session is not None:
            session.closing = True
        txn = datatree.prep_close_session(self.overlay, session_id,
                                          token[3] if token else cxid, now_ms())
        self.submit(txn, token, origin, req_id)

    async def _expire_loop(self):
        """The clock of session expiry: a tick every half tickTime (expire_sessions)."""
        tick = self.config.tick_time_ms / 1000.0
        while True:
            await asyncio.sleep(tick / 2)
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
