"""prep: a client write becomes a txn under the next zxid (ZooKeeper's PrepRequestProcessor).

PrepStage is one of the three stages Core (zkpy.server.core) is made of; see
zkpy.server.pipeline for the chain.

May assume: the overlay (a PendingOverlay over the committed LMDB tree) holds the effect of
every txn prepped and not yet applied, in zxid order; next_zxid is one past the last prepped;
the session table says which sessions are open (`closing` once a closeSession is prepped).
Hands on: each txn, in zxid order, to sync (`_logged`: the group committer's queue, the
`_pending` deque, and in an ensemble the leader's proposal to the learners), with what applying
it will do worked out once (`prepped`: the overlay's ops, watch events and node) for final to
replay, or None for final to work out. A request that fails validation still takes a zxid as
an ERROR txn (its error goes back in order with the writes around it). Never writes LMDB.
State it writes: next_zxid, overlay, the sessions' `closing`.
"""

import time

from zkpy import errors
from zkpy.errors import ZkError
from zkpy.proto import consts
from zkpy.server.pipeline.common import CONFIG_NODE, CREATE_OPS, log, now_ms
from zkpy.tree import acl as acls
from zkpy.tree import datatree, txns


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


def _refuse(view, session_id, cxid, now_ms, code, auth=None):
    raise ZkError(code)


_time = time.time   # Core._fused calls it inline: a Python frame less per write


class PrepStage(object):
    """prep (see the module docstring); mixed into zkpy.server.core.Core."""

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

    def close_session(self, session_id, token, cxid=0, origin=0, req_id=0):
        """closeSession from the client (token; or origin/req_id: a learner's client) or
        expiry (neither): one logged txn."""
        session = self.sessions.get(session_id)
        if session is not None:
            session.closing = True
        txn = datatree.prep_close_session(self.overlay, session_id,
                                          token[3] if token else cxid, now_ms())
        self.submit(txn, token, origin, req_id)

    def prep_request(self, session_id, xid, op, req, ids=()):
        """prep: turn a client write into a txn; a request error becomes an ERROR txn."""
        t = now_ms()
        view = self.overlay
        auth = (ids, self.config.skip_acl)
        try:
            session = self.sessions.sessions.get(session_id)
            if session is None or session.closing:
                raise ZkError(errors.SESSIONEXPIRED)
            if op in CREATE_OPS:
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
        if op in CREATE_OPS:
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
