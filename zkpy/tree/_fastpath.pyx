# cython: language_level=3
"""Compiled twins of the core's fused writes (zkpy.tree.datatree.fused_delete, fused_set_data,
fused_create) for the one view they run on in the server: a PendingOverlay with no quota in it.

Each gives exactly what its pure twin gives -- (txn, events, node) or None, the same changes
recorded in the overlay, in the same order -- and hands every other case to the pure twin
before it changes anything: another kind of view, a quota anywhere in the tree (or not yet
known absent), a non-open ACL to check, a parent that is /zookeeper/quota. What it saves is the
Python frames of the pure path: the overlay's get / put / delete, the Txn's __init__, the quota
and ACL helpers (tests/unit/test_datatree.py runs the random-request test on both twins).

The pure modules install it (datatree.py, at import, through `install`); not loaded when
ZKPY_PURE=1, as every zkpy accelerator.
"""

import os

if os.environ.get("ZKPY_PURE") == "1":
    raise ImportError("ZKPY_PURE=1: compiled fused writes disabled")

from zkpy._slots cimport slot_init, slot_offsets

# What the pure modules hand over (install): their functions, classes and constants.
cdef object _pure_delete = None
cdef object _pure_set_data = None
cdef object _pure_create = None
cdef object _reader_acl = None
cdef object _int32 = None
cdef object _copy_node = None
cdef object _node_cls = None
cdef object _overlay_cls = None
cdef object _txn_cls = None
cdef object _open_acl = None
cdef object _special = None
cdef object _quota_root = None
cdef object _k_put = None
cdef object _k_delete = None
cdef object _k_add_child = None
cdef object _k_remove_child = None
cdef object _t_create = None
cdef object _t_delete = None
cdef object _t_set_data = None
cdef object _ev_created = None
cdef object _ev_deleted = None
cdef object _ev_children = None
cdef object _ev_data = None
cdef bint _ready = False

# Txn's 13 __slots__ (learnt at install; the field order below is checked there).
_TXN_FIELDS = ("type", "session_id", "cxid", "time_ms", "path", "data", "acl",
               "ephemeral_owner", "version", "timeout_ms", "paths", "err", "subs")
cdef Py_ssize_t _txn_off[13]
cdef bint _txn_slots = False
# Node's 12, likewise.
_NODE_FIELDS = ("czxid", "mzxid", "ctime", "mtime", "version", "cversion", "aversion",
                "ephemeral_owner", "num_children", "pzxid", "data", "acl")
cdef Py_ssize_t _node_off[12]
cdef bint _node_slots = False


def install(pure_delete, pure_set_data, pure_create, reader_acl, int32, copy_node, node_cls,
            overlay_cls, txn_cls, open_acl, special, quota_root, op_kinds, txn_types,
            event_types):
    """Called by zkpy.tree.datatree with what the compiled twins use."""
    global _pure_delete, _pure_set_data, _pure_create, _reader_acl, _int32, _copy_node
    global _node_cls, _overlay_cls, _txn_cls, _open_acl, _special, _quota_root, _k_put, _k_delete
    global _k_add_child, _k_remove_child, _t_create, _t_delete, _t_set_data, _ev_created
    global _ev_deleted, _ev_children, _ev_data, _ready, _txn_slots, _node_slots
    _pure_delete = pure_delete
    _pure_set_data = pure_set_data
    _pure_create = pure_create
    _reader_acl = reader_acl
    _int32 = int32   # zkpy.tree.node._int32: a sequential suffix, a counter past 2^31 - 1
    _copy_node = copy_node
    _node_cls = node_cls
    _overlay_cls = overlay_cls
    _txn_cls = txn_cls
    _open_acl = open_acl
    _special = special
    _quota_root = quota_root
    _k_put, _k_delete, _k_add_child, _k_remove_child = op_kinds
    _t_create, _t_delete, _t_set_data = txn_types
    _ev_created, _ev_deleted, _ev_children, _ev_data = event_types
    _txn_slots = (tuple(txn_cls.__dict__.get("__slots__", ())) == _TXN_FIELDS
                  and slot_offsets(txn_cls, _txn_off, 13))
    _node_slots = (tuple(node_cls.__dict__.get("__slots__", ())) == _NODE_FIELDS
                   and slot_offsets(node_cls, _node_off, 12))
    _ready = True


cdef object _txn(t, session_id, cxid, now_ms, path, data, acl, owner, version):
    """Txn(t, session_id, cxid, now_ms, path, data, acl, owner, version): the fields stored in
    place (no __init__ frame), the rest as Txn.__init__'s defaults."""
    if not _txn_slots:
        return _txn_cls(t, session_id, cxid, now_ms, path, data, acl, owner, version)
    txn = _txn_cls.__new__(_txn_cls)
    cdef tuple values = (t, session_id, cxid, now_ms, path, data, acl, owner, version, 0, None,
                         0, None)
    cdef int i
    for i in range(13):
        slot_init(txn, _txn_off[i], values[i])
    return txn


cdef object _node(tuple values):
    """Node(*values), likewise."""
    if not _node_slots:
        return _node_cls(*values)
    node = _node_cls.__new__(_node_cls)
    cdef int i
    for i in range(12):
        slot_init(node, _node_off[i], values[i])
    return node


cdef inline object _get(view, dict nodes, path):
    """PendingOverlay.get, inline."""
    hit = nodes.get(path)
    if hit is not None:
        return (<tuple>hit)[1]
    return view._base().get(path)


cdef inline object _reader(acl):
    """datatree._reader_acl: None for the open ACL without a call."""
    if acl is _open_acl or acl == _open_acl:
        return None
    return _reader_acl(acl)


def fused_delete(view, zxid, session_id, cxid, now_ms, path, version, auth):
    if not _ready or type(view) is not _overlay_cls or type(path) is not str or \
            view.quota_free is not True:
        return _pure_delete(view, zxid, session_id, cxid, now_ms, path, version, auth)
    cdef str p = path
    if "\0" in p or p in _special:
        return None
    cdef Py_ssize_t i = p.rfind("/")
    if i == -1:
        return None
    parent_path = p[:i] or "/"
    if parent_path == _quota_root:   # its put resets the overlay's quota_free: the pure path
        return _pure_delete(view, zxid, session_id, cxid, now_ms, path, version, auth)
    cdef dict nodes = view._nodes
    parent = _get(view, nodes, parent_path)
    node = _get(view, nodes, p)
    if parent is None or node is None or node.num_children > 0 or (
            version != -1 and version != node.version):
        return None
    if not (auth[1] or parent.acl == _open_acl):   # the ACL check: the pure path
        return _pure_delete(view, zxid, session_id, cxid, now_ms, path, version, auth)
    txn = _txn(_t_delete, session_id, cxid, now_ms, p, None, None, 0, 0)
    # _delete_node through the overlay's delete / remove_child / put, in their order
    tag = view.zxid
    cdef list ops = view.ops
    nodes[p] = (tag, None)
    ops.append((_k_delete, p, None))
    if view._child_lists:
        ops.append((_k_remove_child, parent_path, p[i + 1:]))
    owner = node.ephemeral_owner
    if owner:
        view.remove_ephemeral(owner, p)
    parent = _copy_node(parent)
    parent.num_children -= 1
    if zxid > parent.pzxid:
        parent.pzxid = zxid
    nodes[parent_path] = (tag, parent)
    ops.append((_k_put, parent_path, parent))
    # (quota.on_delete: nothing, the tree holds no quota)
    return txn, [(zxid, _ev_deleted, p, _reader(node.acl)),
                 (zxid, _ev_children, parent_path, _reader(parent.acl))], None


def fused_set_data(view, zxid, session_id, cxid, now_ms, path, data, version, auth):
    if not _ready or type(view) is not _overlay_cls or type(path) is not str or \
            view.quota_free is not True or path == _quota_root:
        return _pure_set_data(view, zxid, session_id, cxid, now_ms, path, data, version, auth)
    cdef dict nodes = view._nodes
    old = _get(view, nodes, path)
    if old is None:
        return None
    acl = old.acl
    if not (auth[1] or acl == _open_acl):   # the ACL check: the pure path
        return _pure_set_data(view, zxid, session_id, cxid, now_ms, path, data, version, auth)
    v = old.version
    if version != -1 and version != v:
        return None
    v = v + 1 if v < 0x7FFFFFFF else _int32(v + 1)
    txn = _txn(_t_set_data, session_id, cxid, now_ms, path, data, None, 0, v)
    # _apply_set_data through the overlay's put
    node = _node((old.czxid, zxid, old.ctime, now_ms, v, old.cversion, old.aversion,
                  old.ephemeral_owner, old.num_children, old.pzxid, data, acl))
    nodes[path] = (view.zxid, node)
    (<list>view.ops).append((_k_put, path, node))
    # (quota.on_set_data: nothing, the tree holds no quota)
    return txn, [(zxid, _ev_data, path, _reader(acl))], node


def fused_create(view, zxid, session_id, cxid, now_ms, path, data, acl, flags, auth):
    """Persistent and ephemeral, sequential or not (CreateMode 0-3), with one world:anyone ACL
    entry; anything else (another ACL, a parent that is ephemeral, a container or a TTL node, a
    path the quick validity check does not pass) by the pure twin."""
    if not _ready or type(view) is not _overlay_cls or type(path) is not str or \
            view.quota_free is not True:
        return _pure_create(view, zxid, session_id, cxid, now_ms, path, data, acl, flags, auth)
    if not (flags == 0 or flags == 1 or flags == 2 or flags == 3):
        return None
    cdef str p = path
    cdef Py_ssize_t i = p.rfind("/")
    if i == -1 or "\0" in p:
        return None
    parent_path = p[:i] or "/"
    # acls.fixup's common case: one world:anyone entry
    if not ((type(acl) is list or type(acl) is tuple) and len(acl) == 1):
        return _pure_create(view, zxid, session_id, cxid, now_ms, path, data, acl, flags, auth)
    entry = acl[0]
    if not (type(entry) is tuple and len(<tuple>entry) == 3 and entry[1] == "world"
            and entry[2] == "anyone" and type(entry[0]) is int):
        return _pure_create(view, zxid, session_id, cxid, now_ms, path, data, acl, flags, auth)
    fixed = _open_acl if entry[0] == 31 else (entry,)   # equal to what fixup returns
    cdef dict nodes = view._nodes
    parent = _get(view, nodes, parent_path)
    if parent is None:
        return None
    if not (auth[1] or parent.acl == _open_acl) or parent.ephemeral_owner or \
            parent_path == _quota_root:
        return _pure_create(view, zxid, session_id, cxid, now_ms, path, data, acl, flags, auth)
    if flags & 2:   # sequential
        p = p + "%010d" % _int32(parent.cversion)
    # validate_path's quick check (printable ASCII, no empty, "." or ".." name); else pure
    if not (p.isascii() and p.isprintable() and p[-1] != "/" and "//" not in p and
            "/." not in p and p[0] == "/"):
        return _pure_create(view, zxid, session_id, cxid, now_ms, path, data, acl, flags, auth)
    if _get(view, nodes, p) is not None:
        return None
    owner = session_id if flags & 1 else 0
    txn = _txn(_t_create, session_id, cxid, now_ms, p, data, fixed, owner, 0)
    # _apply_create through the overlay's put / add_child / add_ephemeral, in their order
    parent = _copy_node(parent)
    cversion = parent.cversion + 1
    parent.cversion = cversion if cversion <= 0x7FFFFFFF else _int32(cversion)
    parent.num_children += 1
    parent.pzxid = zxid
    tag = view.zxid
    cdef list ops = view.ops
    nodes[parent_path] = (tag, parent)
    ops.append((_k_put, parent_path, parent))
    node = _node((zxid, zxid, now_ms, now_ms, 0, 0, 0, owner, 0, zxid, data, fixed))
    nodes[p] = (tag, node)
    ops.append((_k_put, p, node))
    if view._child_lists:
        ops.append((_k_add_child, parent_path, p[i + 1:]))
    if owner:
        view.add_ephemeral(owner, p)
    # (quota.on_create: nothing, the tree holds no quota)
    return txn, [(zxid, _ev_created, p, _reader(fixed)),
                 (zxid, _ev_children, parent_path, _reader(parent.acl))], node
