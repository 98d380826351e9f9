"""Znode semantics: prep (validate a request into a txn) and apply (a txn onto a view). Pure.

Both run against a *view* with this interface, so one piece of code serves the prep overlay (state
including not-yet-durable txns, ZooKeeper's outstandingChanges) and the LMDB write transaction:

    get(path) -> Node | None            put(path, node)          delete(path)
    add_child(parent, name)             remove_child(parent, name)
    add_ephemeral(owner, path)          remove_ephemeral(owner, path)
    ephemerals(owner) -> list[path]     put_session(sid, timeout_ms)    delete_session(sid)

prep_* raise ZkError for request errors (the caller logs an ERROR txn, as ZooKeeper's
PrepRequestProcessor does, so failed writes consume a zxid). apply() never fails on a txn that prep
produced from the same state; it returns the watch events [(zxid, event_type, path, acl)], acl
being what a watcher needs READ on to receive the event (None: anyone may read it).
Mirrors PrepRequestProcessor.pRequest2Txn and DataTree.processTxn of apache/zookeeper.
"""

from zkpy import errors
from zkpy.errors import ZkError
from zkpy.proto import consts
from zkpy.tree import acl as acls
from zkpy.tree import quota
from zkpy.tree import txns
from zkpy.tree.node import Node, OPEN_ACL_UNSAFE, READ_ACL_UNSAFE, _int32, copy_node
from zkpy.tree.paths import is_special, validate_path
from zkpy import compiled

# Create flags served by this module; CONTAINER and TTL arrive with the API issue.
_MODES = frozenset(range(7))  # CreateMode flags 0..6
_PLAIN_MODES = (consts.CREATE_PERSISTENT, consts.CREATE_EPHEMERAL,
                consts.CREATE_PERSISTENT_SEQUENTIAL, consts.CREATE_EPHEMERAL_SEQUENTIAL)  # 0-3
_TTL_MODES = (consts.CREATE_PERSISTENT_WITH_TTL, consts.CREATE_PERSISTENT_SEQUENTIAL_WITH_TTL)
_SEQUENTIAL_MODES = (consts.CREATE_PERSISTENT_SEQUENTIAL, consts.CREATE_EPHEMERAL_SEQUENTIAL,
                     consts.CREATE_PERSISTENT_SEQUENTIAL_WITH_TTL)

# EphemeralType: ephemeralOwner of a container, and of a TTL node (high byte 0xFF + the ttl).
CONTAINER_OWNER = -(1 << 63)
_TTL_BASE = -(1 << 56)          # 0xFF00000000000000 as a signed long
MAX_TTL_MS = (1 << 40) - 1      # 0x000000ffffffffff


def ttl_owner(ttl_ms):
    return _TTL_BASE | ttl_ms


def owner_kind(owner):
    """"void", "normal" (a session), "container" or "ttl" (EphemeralType.get)."""
    if owner == 0:
        return "void"
    if owner == CONTAINER_OWNER:
        return "container"
    if (owner >> 56) & 0xFF == 0xFF:  # EXTENDED_MASK; server ids stay below 255
        return "ttl"
    return "normal"


def ttl_of(owner):
    return owner & MAX_TTL_MS if owner_kind(owner) == "ttl" else 0


def initial_nodes():
    """The nodes a fresh ZooKeeper DataTree holds, with the Stat values the real server reports.

    Checked against Apache ZooKeeper 3.8.0: "/" shows cversion -1 (stored 0, 1 child) and
    "/zookeeper" cversion -2; "/zookeeper/config" is world-readable only and has aversion -1.
    """
    def mk(num_children, acl=OPEN_ACL_UNSAFE, aversion=0):
        return Node(0, 0, 0, 0, 0, 0, aversion, 0, num_children, 0, b"", acl)
    return [
        ("/", mk(1)),
        ("/zookeeper", mk(2)),
        ("/zookeeper/quota", mk(0)),
        ("/zookeeper/config", mk(0, READ_ACL_UNSAFE, -1)),
    ]


# (identities, skipACL) of the requester; the default skips ACL checks (unit tests, replay).
NO_CHECK = ((), True)


def _existing(view, path):
    node = view.get(path)
    if node is None:
        raise ZkError(errors.NONODE, path)
    return node


def _check_version(node, expected, path):
    if expected != -1 and expected != node.version:
        raise ZkError(errors.BADVERSION, path)
    return _int32(node.version + 1)


def _null_checked(path):
    # A null ustring path: Java's prep hits a NullPointerException and answers MARSHALLINGERROR.
    if path is None:
        raise ZkError(errors.MARSHALLINGERROR, "null path")
    return path


def _parent_path(path):
    """ZooKeeper's parent: everything before the last "/" ("" is the root), after the cheap
    checks PrepRequestProcessor makes before any lookup (a "/" present, no NUL)."""
    i = path.rfind("/")
    if i == -1 or "\0" in path:
        raise ZkError(errors.BADARGUMENTS, "invalid path %r" % path)
    return path[:i] or "/"


def prep_create(view, session_id, cxid, now_ms, path, data, acl, flags, auth=NO_CHECK, ttl=-1,
                extended_types=False, enforce_quota=False, quota_warn=None):
    # Order of checks as in PrepRequestProcessor.pRequest2TxnCreate: mode and TTL, last "/" and
    # NUL, ACL, parent lookup (NONODE), CREATE permission, sequence suffix, full path
    # validation, NODEEXISTS, ephemeral parent.
    _null_checked(path)
    if flags not in _MODES:
        raise ZkError(errors.BADARGUMENTS, "unknown create mode %d" % flags)
    if flags in _TTL_MODES:
        if not extended_types:
            # TTL nodes need zookeeper.extendedTypesEnabled (zoo.cfg: extendedTypesEnabled).
            raise ZkError(errors.UNIMPLEMENTED, "TTL nodes are disabled")
        if ttl <= 0 or ttl > MAX_TTL_MS:
            raise ZkError(errors.BADARGUMENTS, "ttl %d out of range" % ttl)
    elif ttl >= 0:
        raise ZkError(errors.BADARGUMENTS, "ttl is not valid for create mode %d" % flags)
    parent_path = _parent_path(path)
    ids, skip = auth
    acl = acls.fixup(acl, ids)
    parent = _existing(view, parent_path)
    acls.check(parent.acl, acls.CREATE, ids, skip, path)
    if flags in _SEQUENTIAL_MODES:
        path = path + "%010d" % _int32(parent.cversion)
    validate_path(path)
    if view.get(path) is not None:
        raise ZkError(errors.NODEEXISTS, path)
    owner = parent.ephemeral_owner
    if owner and owner_kind(owner) == "normal":
        raise ZkError(errors.NOCHILDRENFOREPHEMERALS, path)
    if enforce_quota:  # zookeeper.enforceQuota: hard limits refuse, soft ones are logged
        quota.check(view, path, len(data) if data is not None else 0, 1, quota_warn)
    if flags in (consts.CREATE_EPHEMERAL, consts.CREATE_EPHEMERAL_SEQUENTIAL):
        owner = session_id
    elif flags == consts.CREATE_CONTAINER:
        owner = CONTAINER_OWNER
    elif flags in _TTL_MODES:
        owner = ttl_owner(ttl)
    else:
        owner = 0
    return txns.Txn(txns.CREATE, session_id, cxid, now_ms, path, data, acl, owner)


def prep_delete(view, session_id, cxid, now_ms, path, version, auth=NO_CHECK):
    # PrepRequestProcessor checks only the last "/", NUL and the special paths, then looks up
    # parent and node: an otherwise malformed path is simply not found.
    _null_checked(path)
    parent_path = _parent_path(path)
    if is_special(path):
        raise ZkError(errors.BADARGUMENTS, "cannot delete %s" % path)
    parent = _existing(view, parent_path)
    node = _existing(view, path)
    acls.check(parent.acl, acls.DELETE, auth[0], auth[1], path)
    _check_version(node, version, path)
    if node.num_children > 0:
        raise ZkError(errors.NOTEMPTY, path)
    return txns.Txn(txns.DELETE, session_id, cxid, now_ms, path)


def prep_set_data(view, session_id, cxid, now_ms, path, data, version, auth=NO_CHECK,
                  enforce_quota=False, quota_warn=None):
    validate_path(path)  # null: BADARGUMENTS "Path cannot be null", as ZooKeeper
    node = _existing(view, path)
    acls.check(node.acl, acls.WRITE, auth[0], auth[1], path)
    new_version = _check_version(node, version, path)
    if enforce_quota:
        quota.check(view, path, (len(data) if data is not None else 0)
                    - (len(node.data) if node.data is not None else 0), 0, quota_warn)
    # positional (path, data, acl, ephemeral_owner, version): keywords cost on the write path
    return txns.Txn(txns.SET_DATA, session_id, cxid, now_ms, path, data, None, 0, new_version)


# fused_*: prep and apply in one, for the core's common writes. Each gives (txn, events, node) of
# txn `zxid`, applied to `view` -- exactly what prep_* then apply() give -- or None, `view`
# untouched, when prep would refuse the request or the tree holds a quota: the caller then runs
# prep_* and apply(), which answer the error or keep the quota stats. They check what prep_*
# check, inline (no exceptions, fewer calls); tests/unit/test_datatree.py holds them to prep_*
# + apply() on random requests.

def fused_set_data(view, zxid, session_id, cxid, now_ms, path, data, version, auth):
    if type(path) is not str or not quota.no_quota(view):
        return None
    old = view.get(path)
    if old is None:
        return None
    acl = old.acl
    if not (auth[1] or acl == OPEN_ACL_UNSAFE or acls.allowed(acl, acls.WRITE, auth[0])):
        return None
    v = old.version
    if version != -1 and version != v:
        return None
    # (no validate_path: a node exists only at a path that passed it when it was created)
    txn = txns.Txn(txns.SET_DATA, session_id, cxid, now_ms, path, data, None, 0,
                   v + 1 if v < 0x7FFFFFFF else _int32(v + 1))
    events, node = _apply_set_data(view, zxid, txn, old)
    return txn, events, node


def fused_delete(view, zxid, session_id, cxid, now_ms, path, version, auth):
    if type(path) is not str or "\0" in path or is_special(path) or not quota.no_quota(view):
        return None
    i = path.rfind("/")
    if i == -1:
        return None
    parent = view.get(path[:i] or "/")
    node = view.get(path)
    if parent is None or node is None or node.num_children > 0 or (
            version != -1 and version != node.version):
        return None
    acl = parent.acl
    if not (auth[1] or acl == OPEN_ACL_UNSAFE or acls.allowed(acl, acls.DELETE, auth[0])):
        return None
    txn = txns.Txn(txns.DELETE, session_id, cxid, now_ms, path)
    events = []
    _delete_node(view, zxid, path, node, path[:i] or "/", parent, events)
    return txn, events, None


def fused_create(view, zxid, session_id, cxid, now_ms, path, data, acl, flags, auth):
    """Persistent and ephemeral, sequential or not (CreateMode 0-3)."""
    if type(path) is not str or flags not in _PLAIN_MODES or not quota.no_quota(view):
        return None
    i = path.rfind("/")
    if i == -1 or "\0" in path:
        return None
    ids, skip = auth
    try:
        acl = acls.fixup(acl, ids)
    except ZkError:
        return None
    parent = view.get(path[:i] or "/")
    if parent is None:
        return None
    pacl = parent.acl
    if not (skip or pacl == OPEN_ACL_UNSAFE or acls.allowed(pacl, acls.CREATE, ids)):
        return None
    if flags & 2:   # sequential
        path = path + "%010d" % _int32(parent.cversion)
    try:
        validate_path(path)
    except ZkError:
        return None
    owner = parent.ephemeral_owner
    if view.get(path) is not None or (owner and owner_kind(owner) == "normal"):
        return None
    txn = txns.Txn(txns.CREATE, session_id, cxid, now_ms, path, data, acl,
                   session_id if flags & 1 else 0)
    events, node = _apply_create(view, zxid, txn, parent)
    return txn, events, node


def prep_set_acl(view, session_id, cxid, now_ms, path, acl, version, auth=NO_CHECK):
    validate_path(path)
    ids, skip = auth
    acl = acls.fixup(acl, ids)
    node = _existing(view, path)
    acls.check(node.acl, acls.ADMIN, ids, skip, path)
    if version != -1 and version != node.aversion:
        raise ZkError(errors.BADVERSION, path)
    return txns.Txn(txns.SET_ACL, session_id, cxid, now_ms, path=path, acl=acl,
                    version=_int32(node.aversion + 1))


def prep_check(view, session_id, cxid, now_ms, path, version, auth=NO_CHECK):
    validate_path(_null_checked(path))
    node = _existing(view, path)
    acls.check(node.acl, acls.READ, auth[0], auth[1], path)
    _check_version(node, version, path)
    return txns.Txn(txns.CHECK, session_id, cxid, now_ms, path=path, version=version)


def prep_multi(view, session_id, cxid, now_ms, ops, auth=NO_CHECK):
    """An atomic multi: each op is prepped against the state the ops before it produced.

    `ops` is [(op_code, prep_function, args)], prep_function(view, sid, cxid, now, *args) -> txn.
    Returns a MULTI txn; when an op fails it holds ERROR sub-txns only: 0 for the ops before the
    failing one, its code, RUNTIMEINCONSISTENCY after (PrepRequestProcessor's multi case).
    """
    scratch = ScratchView(view)
    subs = []
    for i, (_, fn, args) in enumerate(ops):
        try:
            sub = fn(scratch, session_id, cxid, now_ms, *args, auth=auth)
        except ZkError as e:
            errs = [0] * i + [e.code] + [errors.RUNTIMEINCONSISTENCY] * (len(ops) - i - 1)
            return txns.Txn(txns.MULTI, session_id, cxid, now_ms,
                            subs=[txns.Txn(txns.ERROR, session_id, cxid, now_ms, err=c)
                                  for c in errs])
        apply(scratch, 0, sub)
        subs.append(sub)
    return txns.Txn(txns.MULTI, session_id, cxid, now_ms, subs=subs)


class ScratchView(object):
    """Copy-on-write layer over a view, discarded if a multi fails (nothing reaches the base)."""

    def __init__(self, base):
        self.base = base
        self.nodes = {}
        self.eph = {}

    def get(self, path):
        if path in self.nodes:
            return self.nodes[path]
        return self.base.get(path)

    def put(self, path, node):
        self.nodes[path] = node

    def delete(self, path):
        self.nodes[path] = None

    def add_child(self, parent, name):
        pass

    def remove_child(self, parent, name):
        pass

    def add_ephemeral(self, owner, path):
        self.eph.setdefault(owner, {})[path] = True

    def remove_ephemeral(self, owner, path):
        self.eph.setdefault(owner, {})[path] = False

    def ephemerals(self, owner):
        paths = set(self.base.ephemerals(owner))
        for path, present in self.eph.get(owner, {}).items():
            (paths.add if present else paths.discard)(path)
        return list(paths)

    def put_session(self, sid, timeout_ms):
        pass

    def delete_session(self, sid):
        pass


def prep_delete_container(view, path):
    """The reaper's delete (OpCode.deleteContainer): only while the node is still empty."""
    node = _existing(view, path)
    if node.num_children > 0:
        raise ZkError(errors.NOTEMPTY, path)
    return txns.Txn(txns.DELETE, 0, 0, 0, path=path)


def reap_candidates(nodes, now_ms, max_never_used_ms=0):
    """Containers and TTL nodes to delete (ContainerManager.getCandidates).

    `nodes`: (path, Node) of every container and TTL node. A container goes once it had a child
    (stored cversion > 0) and has none, or, never used, after max_never_used_ms when that is set;
    a TTL node once childless and unmodified for its ttl.
    """
    out = []
    for path, node in nodes:
        if node.num_children:
            continue
        kind = owner_kind(node.ephemeral_owner)
        if kind == "container":
            if node.cversion > 0 or (max_never_used_ms and
                                     now_ms - node.ctime > max_never_used_ms):
                out.append(path)
        elif kind == "ttl":
            if now_ms - node.mtime > ttl_of(node.ephemeral_owner):
                out.append(path)
    return out


def prep_close_session(view, session_id, cxid, now_ms):
    paths = sorted(view.ephemerals(session_id))
    return txns.Txn(txns.CLOSE_SESSION, session_id, cxid, now_ms, paths=paths)


def _reader_acl(acl):
    """The ACL a watcher needs READ on to receive an event about a node with `acl` -- the node's,
    the parent's for NodeChildrenChanged, at the moment of the change, as DataTree passes it to
    triggerWatch (ZooKeeper 3.8.4+ / 3.9.2+, CVE-2024-23944) -- or None when anyone may read."""
    if acl == OPEN_ACL_UNSAFE:
        return None
    for perms, scheme, ident in acl:
        if perms & acls.READ and scheme == "world" and ident == "anyone":
            return None
    return acl


def _apply_delete(view, zxid, path, events):
    node = view.get(path)
    if node is None:
        return
    i = path.rfind("/")  # paths.split, inline: this is the write path's hot loop
    parent_path = path[:i] or "/"
    _delete_node(view, zxid, path, node, parent_path, view.get(parent_path), events)


def _delete_node(view, zxid, path, node, parent_path, parent, events):
    """_apply_delete of `node` at `path`, its parent (None if gone) looked up by the caller."""
    view.delete(path)
    view.remove_child(parent_path, path[path.rfind("/") + 1:])
    if node.ephemeral_owner:
        view.remove_ephemeral(node.ephemeral_owner, path)
    if parent is not None:
        parent = copy_node(parent)
        parent.num_children -= 1
        if zxid > parent.pzxid:
            parent.pzxid = zxid
        view.put(parent_path, parent)
    quota.on_delete(view, path, node)
    events.append((zxid, consts.EVENT_NODE_DELETED, path, _reader_acl(node.acl)))
    events.append((zxid, consts.EVENT_NODE_CHILDREN_CHANGED, parent_path,
                   None if parent is None else _reader_acl(parent.acl)))


def _apply_create(view, zxid, txn, parent=None):
    """`parent`: the parent's node, if the caller has looked it up."""
    path = txn.path
    i = path.rfind("/")  # paths.split, inline
    parent_path = path[:i] or "/"
    if parent is None:
        parent = view.get(parent_path)
    parent = copy_node(parent)
    cversion = parent.cversion + 1
    parent.cversion = cversion if cversion <= 0x7FFFFFFF else _int32(cversion)
    parent.num_children += 1
    parent.pzxid = zxid
    view.put(parent_path, parent)
    owner = txn.ephemeral_owner
    node = Node(zxid, zxid, txn.time_ms, txn.time_ms, 0, 0, 0, owner, 0, zxid, txn.data, txn.acl)
    view.put(path, node)
    view.add_child(parent_path, path[i + 1:])
    if owner:
        view.add_ephemeral(owner, path)
    # Quota stats are part of the applied state (deterministic, so replay agrees).
    quota.on_create(view, path, txn.data)
    return [(zxid, consts.EVENT_NODE_CREATED, path, _reader_acl(txn.acl)),
            (zxid, consts.EVENT_NODE_CHILDREN_CHANGED, parent_path, _reader_acl(parent.acl))], node


def _apply_set_data(view, zxid, txn, old):
    path = txn.path
    node = Node(old.czxid, zxid, old.ctime, txn.time_ms, txn.version, old.cversion,
                old.aversion, old.ephemeral_owner, old.num_children, old.pzxid, txn.data, old.acl)
    view.put(path, node)
    quota.on_set_data(view, path, old.data, txn.data)
    return [(zxid, consts.EVENT_NODE_DATA_CHANGED, path, _reader_acl(old.acl))], node


def apply(view, zxid, txn):
    """Apply `txn` (logged at `zxid`) to `view`; return (events, node_or_None)."""
    t = txn.type
    events = []
    if t == txns.CREATE:
        return _apply_create(view, zxid, txn)
    if t == txns.DELETE:
        _apply_delete(view, zxid, txn.path, events)
        return events, None
    if t == txns.SET_DATA:
        return _apply_set_data(view, zxid, txn, view.get(txn.path))
    if t == txns.SET_ACL:
        node = view.get(txn.path).copy()
        node.acl = txn.acl
        node.aversion = txn.version
        view.put(txn.path, node)
        return events, node
    if t == txns.CREATE_SESSION:
        view.put_session(txn.session_id, txn.timeout_ms)
        return events, None
    if t == txns.CLOSE_SESSION:
        for path in txn.paths:
            _apply_delete(view, zxid, path, events)
        view.delete_session(txn.session_id)
        return events, None
    if t == txns.ERROR or t == txns.CHECK:
        return events, None
    if t == txns.MULTI:
        nodes = []
        for sub in txn.subs:
            sub_events, node = apply(view, zxid, sub)
            events.extend(sub_events)
            nodes.append(node)
        return events, nodes
    raise AssertionError("unknown txn type %r" % t)


# The compiled twins of the fused writes (zkpy.tree._fastpath: the overlay's
# methods, Txn's __init__ and the quota / ACL helpers inline) when built and not ZKPY_PURE=1;
# they hand every case but the common one to these.
fused_delete_pure = fused_delete
fused_set_data_pure = fused_set_data
fused_create_pure = fused_create
_fastpath = compiled.load("_fastpath")


def _install_fastpath(pure_delete=fused_delete_pure, pure_set_data=fused_set_data_pure,
                      pure_create=fused_create_pure):
    """Hand _fastpath what it uses: the pure twins it falls back to, classes, constants."""
    from zkpy.tree import overlay
    from zkpy.tree.paths import _SPECIAL
    _fastpath.install(pure_delete, pure_set_data, pure_create, _reader_acl, _int32, copy_node,
                      Node, overlay.PendingOverlay, txns.Txn, OPEN_ACL_UNSAFE, _SPECIAL,
                      quota.QUOTA_ROOT,
                      (overlay.PUT, overlay.DELETE, overlay.ADD_CHILD, overlay.REMOVE_CHILD),
                      (txns.CREATE, txns.DELETE, txns.SET_DATA),
                      (consts.EVENT_NODE_CREATED, consts.EVENT_NODE_DELETED,
                       consts.EVENT_NODE_CHILDREN_CHANGED, consts.EVENT_NODE_DATA_CHANGED))


if _fastpath is not None:
    _install_fastpath()
    fused_delete = _fastpath.fused_delete
    fused_set_data = _fastpath.fused_set_data
    fused_create = _fastpath.fused_create
