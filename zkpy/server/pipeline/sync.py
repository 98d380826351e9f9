"""sync: txns reach the log, fsynced in groups (ZooKeeper's SyncRequestProcessor), then commit.

SyncStage is one of the three stages Core (zkpy.server.core) is made of; see
zkpy.server.pipeline for the chain.

May assume: txns come in zxid order (from prep, or -- a learner -- from the leader through
log_txn), each already in the group committer's queue and in `_pending`.
Hands on: to final (`_apply`) the txns of `_pending`, in zxid order, once they are both durable
here (the committer's fsync: `_on_durable` -> durable_zxid) and committed (standalone: durable
is committed; in an ensemble the quorum says so through `commit`): apply up to
min(durable_zxid, commit_zxid), never further, so LMDB holds committed txns only and no reply
leaves before the fsync it depends on. A log that cannot be written: standalone, the txns are
forgotten and answered SystemError (`_on_log_failed`); an ensemble member keeps and retries
them (`_on_log_stalled`).
State it writes: durable_zxid, commit_zxid, `_pending`, log_error (and, rolling back a failed
append, next_zxid and the overlay).
"""

import collections

from zkpy import errors
from zkpy.proto import records as r
from zkpy.server.pipeline.common import LOG_RETRY_S, encode_reply, free_space, log
from zkpy.tree import datatree, txns


class SyncStage(object):
    """sync (see the module docstring); mixed into zkpy.server.core.Core."""

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
                      exc.error, free_space(exc.directory))
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
                (conn_id, entry_id, False, encode_reply(xid, self.last_zxid, errors.SYSTEMERROR)))
        top = self.next_zxid - 1
        if self._syncs and self._syncs[-1][0] > top:
            # A sync waited for txns that are gone: it waits for what was logged before them.
            syncs = []
            for target, origin, conn_id, entry_id, data, xid, path in self._syncs:
                if target > top:
                    target = top
                    data = encode_reply(xid, top, 0, r.SyncResponse(path))
                syncs.append((target, origin, conn_id, entry_id, data, xid, path))
            self._syncs = syncs
            while self._syncs and self._syncs[0][0] <= self.last_zxid:
                s = self._syncs.pop(0)
                replies.setdefault(s[1], []).append((s[2], s[3], False, s[4]))
        for origin, rs in replies.items():
            origin.batch(self.last_zxid, (), rs, True)
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
                  free_space(exc.directory), self.durable_zxid + 1, LOG_RETRY_S)
