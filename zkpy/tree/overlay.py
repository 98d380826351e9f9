"""Views over the data tree. Pure.

`PendingOverlay` is ZooKeeper's outstandingChanges: the committed state (a base view, e.g. an
LMDB read transaction) plus the effects of txns that prep has issued but that are not yet durable
and applied. Prep validates each new request against it, so a create right after another create of
the same path fails with NODEEXISTS even while the first waits for its fsync.

Every change made through a PendingOverlay is also recorded, in order, in its `ops` list as
(kind, a, b) tuples (the PUT ... DELETE_SESSION kinds below): a txn's list, taken right after it
is applied here, is exactly what applying it again to the committed state would do (the overlay
*is* that state plus the txns before it), so the core replays it onto the LMDB write txn
(`replay`) instead of running datatree.apply a second time -- unless the overlay says it could
not do what the committed state will (`exact` false: quota stats need child lists).

`MemoryView` is a complete in-memory tree with the same interface: the model in unit tests.
"""

from zkpy.tree.paths import split
from zkpy.tree.quota import QUOTA_ROOT


# Kinds of the recorded changes: (kind, a, b) calls view.<method>(a[, b]).
PUT, DELETE, ADD_CHILD, REMOVE_CHILD, ADD_EPHEMERAL, REMOVE_EPHEMERAL, PUT_SESSION, \
    DELETE_SESSION = range(8)


def replay(view, ops):
    """Make the changes recorded in `ops` on `view` (any view of the datatree interface)."""
    for kind, a, b in ops:
        if kind == PUT:
            view.put(a, b)
        elif kind == DELETE:
            view.delete(a)
        elif kind == ADD_CHILD:
            view.add_child(a, b)
        elif kind == REMOVE_CHILD:
            view.remove_child(a, b)
        elif kind == ADD_EPHEMERAL:
            view.add_ephemeral(a, b)
        elif kind == REMOVE_EPHEMERAL:
            view.remove_ephemeral(a, b)
        elif kind == PUT_SESSION:
            view.put_session(a, b)
        elif kind == DELETE_SESSION:
            view.delete_session(a)
        else:
            raise AssertionError("unknown recorded change %r" % (kind,))


class MemoryView(object):
    def __init__(self, nodes=()):
        self.nodes = {}
        self.children = {}
        self.ephemeral = {}
        self.sessions = {}
        for path, node in nodes:
            self.nodes[path] = node
            self.children.setdefault(path, set())
            if path != "/":
                parent, name = split(path)
                self.children.setdefault(parent, set()).add(name)

    def get(self, path):
        return self.nodes.get(path)

    def put(self, path, node):
        self.nodes[path] = node

    def delete(self, path):
        del self.nodes[path]
        self.children.pop(path, None)

    def add_child(self, parent, name):
        self.children.setdefault(parent, set()).add(name)

    def remove_child(self, parent, name):
        self.children.get(parent, set()).discard(name)

    def get_children(self, path):
        return sorted(self.children.get(path, ()))

    def add_ephemeral(self, owner, path):
        self.ephemeral.setdefault(owner, set()).add(path)

    def remove_ephemeral(self, owner, path):
        self.ephemeral.get(owner, set()).discard(path)

    def ephemerals(self, owner):
        return list(self.ephemeral.get(owner, ()))

    def put_session(self, sid, timeout_ms):
        self.sessions[sid] = timeout_ms

    def delete_session(self, sid):
        self.sessions.pop(sid, None)
        self.ephemeral.pop(sid, None)


class PendingOverlay(object):
    """Committed view + not-yet-applied changes, each tagged with the zxid that made it."""

    def __init__(self, base_getter):
        # base_getter() returns the current committed view; it changes after every applied batch.
        self._base = base_getter
        self._nodes = {}       # path -> (zxid, Node | None)
        self._eph = {}         # owner -> {path: (zxid, present)}
        self.zxid = 0          # zxid tag for the puts of the txn being applied (only grows)
        # True: no quota in base + changes, known (zkpy.tree.quota); reset when /zookeeper/quota
        # is put here and whenever the base moves on (applied()).
        self.quota_free = False
        self.ops = []          # changes recorded since the owner last replaced this list
        # False once a change was made here that differs from what the committed state would
        # get (a quota stats node's totals need child lists): the owner then applies that txn
        # afresh instead of replaying `ops`. The owner sets it back to True.
        self.exact = True

    def inexact(self):
        self.exact = False

    def __len__(self):
        return len(self._nodes)

    def get(self, path):
        hit = self._nodes.get(path)
        if hit is not None:
            return hit[1]
        return self._base().get(path)

    def put(self, path, node):
        self._nodes[path] = (self.zxid, node)
        self.ops.append((PUT, path, node))
        if path == QUOTA_ROOT:
            self.quota_free = False

    def delete(self, path):
        self._nodes[path] = (self.zxid, None)
        self.ops.append((DELETE, path, None))
        if path == QUOTA_ROOT:
            self.quota_free = False

    def add_child(self, parent, name):
        # prep needs counts (in the parent's Node), not child lists: only recorded
        self.ops.append((ADD_CHILD, parent, name))

    def remove_child(self, parent, name):
        self.ops.append((REMOVE_CHILD, parent, name))

    def add_ephemeral(self, owner, path):
        self._eph.setdefault(owner, {})[path] = (self.zxid, True)
        self.ops.append((ADD_EPHEMERAL, owner, path))

    def remove_ephemeral(self, owner, path):
        self._eph.setdefault(owner, {})[path] = (self.zxid, False)
        self.ops.append((REMOVE_EPHEMERAL, owner, path))

    def ephemerals(self, owner):
        paths = set(self._base().ephemerals(owner))
        for path, (_, present) in self._eph.get(owner, {}).items():
            if present:
                paths.add(path)
            else:
                paths.discard(path)
        return list(paths)

    def put_session(self, sid, timeout_ms):
        # the session table lives in the session tracker: only recorded (for LMDB's copy)
        self.ops.append((PUT_SESSION, sid, timeout_ms))

    def delete_session(self, sid):
        self.ops.append((DELETE_SESSION, sid, None))

    def applied(self, zxid):
        """Drop every change made by txns up to `zxid`: the base view now holds them."""
        self.quota_free = False  # the base is a newer view now
        if not self._nodes and not self._eph:
            return
        if self.zxid <= zxid:  # every change here is from txns up to zxid (the usual case)
            self._nodes = {}
            self._eph = {}
            return
        self._nodes = {p: v for p, v in self._nodes.items() if v[0] > zxid}
        eph = {}
        for owner, changes in self._eph.items():
            kept = {p: v for p, v in changes.items() if v[0] > zxid}
            if kept:
                eph[owner] = kept
        self._eph = eph
