"""Views over the data tree. Pure.

`PendingOverlay` is ZooKeeper's outstandingChanges: the committed state (a base view, e.g. an
LMDB read transaction) plus the effects of txns that prep has issued but that are not yet durable
and applied. Prep validates each new request against it, so a create right after another create of
the same path fails with NODEEXISTS even while the first waits for its fsync.

Every change made through a PendingOverlay is also recorded, in order, as (kind, a, b) tuples
(the PUT ... DELETE_SESSION kinds below): a txn's list (begin() ... end()) is exactly what
applying it again to the committed state will do (the overlay *is* that state plus the txns
before it), so the core replays it onto the LMDB write txn (`replay`) instead of running
datatree.apply a second time -- unless end() says it may not (quota stats need child lists).

`MemoryView` is a complete in-memory tree with the same interface: the model in unit tests.
"""

from zkpy.tree.paths import split
from zkpy.tree.quota import QUOTA_ROOT


# applied() keeps entries of applied txns until there are this many (see there).
PRUNE_MIN = 4096

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
    """Committed view + not-yet-applied changes, each tagged with the zxid that made it.

    zkpy.tree._fastpath (the compiled fused writes) does get / put / delete / add_child /
    remove_child inline on `_nodes`, `ops`, `zxid`, `_child_lists`, `_base` and `quota_free`:
    a change here needs the same change there (tests/unit/test_datatree.py's random-request
    test runs both twins through this class and would tell them apart).
    """

    def __init__(self, base_getter, child_lists=True):
        # base_getter() returns the current committed view; it changes after every applied batch.
        self._base = base_getter
        # False: the views the recorded changes are replayed onto keep no child lists of their
        # own (LmdbTree's children are key ranges of its nodes), so add_child / remove_child
        # are not recorded.
        self._child_lists = child_lists
        self._nodes = {}       # path -> (zxid, Node | None)
        self._eph = {}         # owner -> {path: (zxid, present)}
        self.zxid = 0          # zxid tag for the puts of the txn being applied (only grows)
        # True: no quota in base + changes, known (zkpy.tree.quota); reset when /zookeeper/quota
        # is put here and whenever the base moves on (applied()).
        self.quota_free = False
        self.ops = []          # changes recorded since begin()
        # False once a change was made here that differs from what the committed state would
        # get (a quota stats node's totals need child lists): see end().
        self.exact = True
        self.inexact_zxid = 0  # the newest txn applied here inexactly
        self.applied_zxid = 0  # the newest txn the base holds (applied())
        self._prune_at = PRUNE_MIN

    def begin(self, zxid):
        """Txn `zxid` is about to be applied here: tag and record its changes."""
        self.zxid = zxid
        self.ops = []
        self.exact = True

    def end(self):
        """The changes recorded since begin() -- what applying that txn to the committed state
        will do -- or None when they may not be: the txn was inexact here, or an inexact one is
        still pending before it (its entries here are not what the base will hold)."""
        if not self.exact:
            self.inexact_zxid = self.zxid
        if self.inexact_zxid > self.applied_zxid:
            return None
        return self.ops

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
        if self._child_lists:
            self.ops.append((ADD_CHILD, parent, name))

    def remove_child(self, parent, name):
        if self._child_lists:
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
        """The base view now holds every change of the txns up to `zxid`.

        Their entries here may stay: an entry is the newest change to its path (or ephemeral),
        so while its txn is applied it says what the base says. They are dropped all at once
        when nothing newer is pending (the usual case when idle), else only once there are
        many (at most twice as many as were left by the last pruning), so a batch applied
        while the next ones wait does not copy their entries each time -- and at once when
        an inexact txn (see end()) was pending, whose entries the base now outdoes."""
        self.quota_free = False  # the base is a newer view now
        # An inexact txn pending until now: its entries say less than the base; drop them.
        inexact_pending = self.inexact_zxid > self.applied_zxid
        if zxid > self.applied_zxid:
            self.applied_zxid = zxid
        if not self._nodes and not self._eph:
            return
        if self.zxid <= zxid:  # every change here is from txns up to zxid
            self._nodes = {}
            self._eph = {}
            return
        if not inexact_pending and len(self._nodes) + len(self._eph) < self._prune_at:
            return
        self._nodes = {p: v for p, v in self._nodes.items() if v[0] > zxid}
        eph = {}
        for owner, changes in self._eph.items():
            kept = {p: v for p, v in changes.items() if v[0] > zxid}
            if kept:
                eph[owner] = kept
        self._eph = eph
        self._prune_at = max(PRUNE_MIN, 2 * (len(self._nodes) + len(self._eph)))

    def forget(self, path):
        """The base changed `path` outside the txn pipeline (Core.set_config_node): drop its
        entry here unless a txn not yet applied made it, so reads see the base's node."""
        hit = self._nodes.get(path)
        if hit is not None and hit[0] <= self.applied_zxid:
            del self._nodes[path]
