"""The audit log (`audit.enable=true`): who changed what, from where, with what result -- the
lines of ZooKeeper's Slf4jAuditLogger, to the logger `zkpy.audit`.

A line is tab-separated key=value pairs in ZooKeeper's order (AuditEvent, ZKAuditProvider):
    session=0x...  user=...  ip=...  operation=...  znode=...  znode_type=...  acl=...  result=...
with the pairs that have no value left out; result is success, failure or invoked. Logged at
INFO, a failure at ERROR. What is logged, as ZooKeeper's AuditHelper does it:
  * a client's create (znode_type: persistent, ephemeral_sequential, container,
    persistent_with_ttl, ...), delete, setData, setAcl (acl: scheme:id:perms of each entry, run
    together as ZKUtil.aclToString prints them), reconfig, by the server holding the client's
    connection, when the request is answered; a multi as one line per create/delete/setData in
    it, or one `multiOperation` failure line;
  * each ephemeral node a session close or expiry deletes
    (`ephemeralZNodeDeletionOnSessionCloseOrExpire`, user = the server's user), on every
    member, as each applies it;
  * `serverStart` (success) and `serverStop` (invoked).
user is the connection's identities, as their providers name users: digest's user name, the
ip, a SASL or x509 name, joined by commas (AuthUtil.getUsers).

Pure formatting here (format_event, users, acl_string, create_mode) and a small AuditLog the core
calls; no I/O but the logger.
"""

import getpass
import logging

from zkpy.proto import codec, consts
from zkpy.proto import records as r
from zkpy.tree import acl as acls
from zkpy.tree import txns

LOGGER = logging.getLogger("zkpy.audit")

SUCCESS, FAILURE, INVOKED = "success", "failure", "invoked"

OP_CREATE = "create"
OP_DELETE = "delete"
OP_SETDATA = "setData"
OP_SETACL = "setAcl"
OP_MULTI = "multiOperation"
OP_RECONFIG = "reconfig"
OP_START = "serverStart"
OP_STOP = "serverStop"
OP_DEL_EPHEMERAL = "ephemeralZNodeDeletionOnSessionCloseOrExpire"

_ERROR = txns.ERROR
_SUB_OPS = {txns.CREATE: OP_CREATE, txns.DELETE: OP_DELETE, txns.SET_DATA: OP_SETDATA}

_OPS = {
    consts.OP_CREATE: OP_CREATE, consts.OP_CREATE2: OP_CREATE,
    consts.OP_CREATE_CONTAINER: OP_CREATE, consts.OP_CREATE_TTL: OP_CREATE,
    consts.OP_DELETE: OP_DELETE, consts.OP_DELETE_CONTAINER: OP_DELETE,
    consts.OP_SET_DATA: OP_SETDATA, consts.OP_SET_ACL: OP_SETACL,
    consts.OP_MULTI: OP_MULTI, consts.OP_RECONFIG: OP_RECONFIG,
}
_REQUESTS = {
    consts.OP_CREATE: r.CreateRequest, consts.OP_CREATE2: r.CreateRequest,
    consts.OP_CREATE_CONTAINER: r.CreateRequest, consts.OP_CREATE_TTL: r.CreateTTLRequest,
    consts.OP_DELETE: r.DeleteRequest, consts.OP_SET_DATA: r.SetDataRequest,
    consts.OP_SET_ACL: r.SetACLRequest,
}
# CreateMode by flag, as CreateMode.toString().toLowerCase() prints it.
_CREATE_MODES = {
    0: "persistent", 1: "ephemeral", 2: "persistent_sequential", 3: "ephemeral_sequential",
    4: "container", 5: "persistent_with_ttl", 6: "persistent_sequential_with_ttl",
}
_FIELDS = ("session", "user", "ip", "operation", "znode", "znode_type", "acl")


def format_event(result, **fields):
    """One audit line: the fields present, in ZooKeeper's order, then result."""
    parts = ["%s=%s" % (k, fields[k]) for k in _FIELDS if fields.get(k) is not None]
    parts.append("result=%s" % result)
    return "\t".join(parts)


def user_name(scheme, ident):
    """What the scheme's provider calls the user of an identity (getUserName); None for a
    scheme with no provider registered (AuthUtil.getUser: `sasl` without its authProvider)."""
    if scheme == "digest":
        return ident.split(":")[0]
    if scheme == "sasl" and not acls.sasl_enabled():
        return None
    return ident


def users(ids):
    """The connection's identities as users, comma-joined; None if there are none."""
    names = [user_name(s, i) for s, i in ids]
    names = [n for n in names if n and n.strip()]
    return ",".join(names) if names else None


def ip_of(ids):
    for scheme, ident in ids:
        if scheme == "ip":
            return ident
    return None


def perm_string(perms):
    return "".join(c for bit, c in ((1 << 2, "c"), (1 << 3, "d"), (1 << 0, "r"), (1 << 1, "w"),
                                    (1 << 4, "a")) if perms & bit)


def acl_string(acl):
    """ZKUtil.aclToString: scheme:id:perms of each entry, with no separator between entries
    (as ZooKeeper prints it)."""
    return "".join("%s:%s:%s" % (a.id.scheme, a.id.id, perm_string(a.perms)) for a in acl)


def create_mode(flags):
    return _CREATE_MODES.get(flags, str(flags))


def session_hex(session_id):
    return "0x%x" % (session_id & 0xFFFFFFFFFFFFFFFF)


class AuditLog(object):
    """What the core calls: request_info when a write comes in (its connection's identities
    are known then), done when it is answered, ephemerals_deleted when a session's close is
    applied."""

    def __init__(self, logger=LOGGER, server_user=None):
        self.logger = logger
        if server_user is None:
            try:
                server_user = getpass.getuser()
            except Exception:  # noqa: BLE001 - no name for this uid
                server_user = None
        self.server_user = server_user

    def _log(self, result, **fields):
        (self.logger.error if result == FAILURE else self.logger.info)(
            format_event(result, **fields))

    def server_start(self):
        self._log(SUCCESS, user=self.server_user, operation=OP_START)

    def server_stop(self):
        self._log(INVOKED, user=self.server_user, operation=OP_STOP)

    @staticmethod
    def request_info(op, body, ids):
        """What a request's answer is logged with: (operation, path, znode_type, acl, user,
        ip), or None for an op that is not audited (closeSession, sync, createSession)."""
        operation = _OPS.get(op)
        if operation is None:
            return None
        path = mode = acl = None
        if op == consts.OP_MULTI:
            # The create modes by the path each create asked for (AuditHelper.getCreateModes:
            # a sequential create's line has none, its real name differs).
            try:
                ops = codec.decode_multi(body, 0)
            except Exception:  # noqa: BLE001
                ops = ()
            mode = {}
            for sub_op, req in ops:
                if sub_op in (consts.OP_CREATE, consts.OP_CREATE2, consts.OP_CREATE_TTL):
                    mode[req.path] = create_mode(req.flags)
                elif sub_op == consts.OP_CREATE_CONTAINER:
                    mode[req.path] = "container"
        rec = _REQUESTS.get(op)
        if rec is not None:
            try:
                req = codec.DECODERS[rec](body, 0)[0]
            except Exception:  # noqa: BLE001 - the pipeline answers a bad body; log no path
                req = None
            if req is not None:
                path = req.path
                if op in (consts.OP_CREATE, consts.OP_CREATE2, consts.OP_CREATE_TTL):
                    mode = create_mode(req.flags)
                elif op == consts.OP_CREATE_CONTAINER:
                    mode = "container"
                if op == consts.OP_SET_ACL:
                    acl = acl_string(req.acl)
        return operation, path, mode, acl, users(ids), ip_of(ids)

    def done(self, session_id, info, txn):
        """A request of `info` (request_info) answered with the applied `txn`: an error txn
        (failed), or its own (a sequential create's real name; a multi's subs, failed when
        they are errors)."""
        operation, path, mode, acl, user, ip = info
        session = session_hex(session_id)
        ok = txn.type != _ERROR
        if operation == OP_MULTI:
            if ok and txn.subs and not any(sub.type == _ERROR for sub in txn.subs):
                modes = mode or {}
                for sub in txn.subs:
                    name = _SUB_OPS.get(sub.type)
                    if name is None:
                        continue
                    self._log(SUCCESS, session=session, user=user, ip=ip, operation=name,
                              znode=sub.path, znode_type=modes.get(sub.path) if
                              name == OP_CREATE else None)
                return
            self._log(FAILURE, session=session, user=user, ip=ip, operation=OP_MULTI)
            return
        if ok and txn.path is not None:
            path = txn.path
        self._log(SUCCESS if ok else FAILURE, session=session, user=user, ip=ip,
                  operation=operation, znode=path, znode_type=mode, acl=acl)

    def ephemerals_deleted(self, session_id, paths):
        session = session_hex(session_id)
        for path in paths:
            self._log(SUCCESS, session=session, user=self.server_user,
                      operation=OP_DEL_EPHEMERAL, znode=path)


