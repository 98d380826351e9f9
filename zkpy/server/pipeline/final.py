"""final: committed txns are applied to LMDB, watches fire, replies leave (FinalRequestProcessor).

FinalStage is one of the three stages Core (zkpy.server.core) is made of; see
zkpy.server.pipeline for the chain.

May assume: every txn handed to `_apply` is durable in the log and committed, in zxid order,
after every txn applied before it; its `prepped` (when not None) is exactly what applying it to
the committed state does.
Hands on: one LMDB write txn per batch, committed before anything is said; then to every
frontend (origin) the batch's watch events and its own replies (`batch`), then `committed`
(reads that must see the batch may run). A failed LMDB commit says nothing and keeps the batch
(`_stall`, retried every APPLY_RETRY_S): the frontends never hold a batch LMDB does not.
State it writes: last_zxid, the read view, the session table (created / closed sessions).
"""

import asyncio
import time

import lmdb

from zkpy.proto import codec, consts
from zkpy.proto import records as r
from zkpy.proto.twins import compiled_twin
from zkpy.server.pipeline import common
from zkpy.server.pipeline.common import (CONFIG_NODE, CREATE2_REPLY_OPS, encode_reply,
                                         free_space, log, now_ms, rw)
from zkpy.server.sessions import session_password
from zkpy.storage.lmdb_tree import LmdbTree
from zkpy.tree import datatree, txns
from zkpy.tree.overlay import replay

_encode_reply = encode_reply


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
            elif op in CREATE2_REPLY_OPS:
                results.append((op, 0, r.Create2Response(sub.path, _stat(node))))
            elif op == consts.OP_SET_DATA:
                results.append((op, 0, r.SetDataResponse(_stat(node))))
            else:
                results.append((op, 0, None))
    body = codec.encode_reply_header(xid, zxid, 0) + codec.encode_multi_response(results)
    return len(body).to_bytes(4, "big") + body


class FinalStage(object):
    """final (see the module docstring); mixed into zkpy.server.core.Core."""

    def _apply(self, tokens):
        """final: every txn in `tokens` is durable and committed; apply, notify, reply.

        Order, for the guarantees across worker processes:
          1. apply the batch in the LMDB write txn and commit it;
          2. send every frontend the batch (events, and its replies);
          3. tell every frontend it is committed: replies leave, and reads that must see the
             batch (read-your-writes, or anything answered before the read came in) may run.
             A frontend without replies in the batch is told with its batch: no reply
             leaves before every batch was sent.
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
        # Every frontend has the batch in its socket before any reply of it can leave. Those
        # with replies are written to first (woken first: on 2 cores the one a client waits
        # on does not queue behind the others), those without get `committed` with the batch
        # (one write each: it releases nothing of this batch there), and then the first ones
        # get theirs.
        origins = tuple(self.origins)
        if replies and len(origins) > 1:
            origins = tuple([o for o in origins if o in replies]
                            + [o for o in origins if o not in replies])
        alone = len(origins) == 1   # (workers=0 or 1: nobody else to wait for)
        late = []
        for origin in origins:
            mine = replies.get(origin, ())
            together = alone or not mine
            origin.batch(last, events, mine, together)
            if not together:
                late.append(origin)
        self._txns_since_checkpoint += len(tokens)
        for origin in late:
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
                                                  rw(read_only)))
            return
        if t == txns.CLOSE_SESSION:
            if self.audit is not None and txn.paths:
                self.audit.ephemerals_deleted(txn.session_id, txn.paths)
            session = self.sessions.remove(txn.session_id)
            if token is not None:
                origin, conn_id, entry_id, xid, _ = token
                replies.setdefault(origin, []).append(
                    (conn_id, entry_id, True, encode_reply(xid, zxid, 0)))
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
            data = encode_reply(xid, zxid, txn.err)
        elif t == txns.CREATE:
            if req[0] in CREATE2_REPLY_OPS:
                data = node_reply_frame(xid, zxid, txn.path, node)
            else:
                data = encode_reply(xid, zxid, 0, r.CreateResponse(txn.path))
        elif t == txns.SET_DATA:
            if req[0] == consts.OP_RECONFIG:
                data = encode_reply(xid, zxid, 0, r.GetDataResponse(node.data, _stat(node)))
            else:
                data = node_reply_frame(xid, zxid, None, node)
        elif t == txns.SET_ACL:
            data = encode_reply(xid, zxid, 0, r.SetACLResponse(_stat(node)))
        elif t == txns.MULTI:
            data = _multi_reply(xid, zxid, req[1], txn.subs, node)
        else:
            data = encode_reply(xid, zxid, 0)
        del op
        replies.setdefault(origin, []).append((conn_id, entry_id, False, data))
        if len(req) > 2 and req[2] is not None:   # audit.enable: (request_info, session)
            self.audit.done(req[3], req[2], txn)

    def _stall(self, tokens, exc):
        """The LMDB commit of `tokens` failed (dataDir full, map full, I/O error): they are
        durable in the log, so they are not answered with an error -- they stay pending (their
        clients wait) and the apply is retried every common.APPLY_RETRY_S; meanwhile new writes are
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
                why = "%s (%s)" % (exc, free_space(self.config.data_dir))
            log.error("cannot apply txns 0x%x..0x%x to the database in %s: %s; they are durable "
                      "in the transaction log and wait (retried every %.1fs); new writes fail "
                      "with SystemError meanwhile, reads go on", tokens[0][0], tokens[-1][0],
                      path, why, common.APPLY_RETRY_S)
        if self._retry_handle is None:
            self._retry_handle = asyncio.get_running_loop().call_later(common.APPLY_RETRY_S,
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
                    common.APPLY_RETRY_S, self._retry_apply)
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
