"""Views over the data tree. Pure.

`PendingOverlay` is ZooKeeper's outstandingChanges: the committed state (a base view, e.g. an
LMDB read transaction) plus the effects of txns that prep has issued but that are not yet durable
and applied. Prep validates each new request against it, so a create right after another create of
the same path fails with NODEEXISTS even while the first waits for its fsync.

`MemoryView` is a complete in-memory tree with the same interface: the model in unit tests.
"""

from zkpy.tree.paths import split
from zkpy.tree.quota import QUOTA_ROOT


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

    def __len__(self):
        return len(self._nodes)

    def get(self, path):
        hit = self._nodes.get(path)
        if hit is not None:
            return hit[1]
        return self._base().get(path)

    def put(self, path, node):
        self._nodes[path] = (self.zxid, node)
        if path == QUOTA_ROOT:
            self.quota_free = False

    def delete(self, path):
        self._nodes[path] = (self.zxid, None)
        if path == QUOTA_ROOT:
            self.quota_free = False

    def add_child(self, parent, name):
        pass  # prep needs counts (in the parent's Node), not child lists

    def remove_child(self, parent, name):
        pass

    def add_ephemeral(self, owner, path):
        self._eph.setdefault(owner, {})[path] = (self.zxid, True)

    def remove_ephemeral(self, owner, path):
        self._eph.setdefault(owner, {})[path] = (self.zxid, False)

    def ephemerals(self, owner):
        paths = set(self._base().ephemerals(owner))
        for path, (_, present) in self._eph.get(owner, {}).items():
            if present:
                paths.add(path)
            else:
                paths.discard(path)
        return list(paths)

    def put_session(self, sid, timeout_ms):
        pass  # the session table lives in the session tracker

    def delete_session(self, sid):
        pass

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
