"""Watch tables of one frontend (ZooKeeper's two WatchManagers, dataWatches and childWatches). Pure.

Owns which watcher an event reaches and which watches survive it: one-shot watches set by reads
(exists and getData in the data table, getChildren in the child table), persistent and persistent
recursive watches set by addWatch or setWatches2, and the checkWatches / removeWatches lookups.
Imported by zkpy.server (frontend, connection) and the benchmarks; it does no I/O.

Watchers are opaque hashable objects (a connection). Each table maps path -> {watcher: modes}, a
bit set of the modes that watcher holds on that path, as ZooKeeper 3.9's WatchStats does: a
watcher may hold a one-shot and a persistent watch on the same path, and firing removes only the
one-shot one (ZooKeeper 3.8.0 kept one mode per watcher and path, so a later getData(watch) on a
persistently watched path silently made it one-shot: ZOOKEEPER-4466, fixed in 3.9).

Where the modes live (DataTree.addWatch / setWatches in 3.9):
  PERSISTENT            data table and child table: the path's create/delete/data events and its
                        NodeChildrenChanged, like a data and a child watch that are never used up.
  PERSISTENT_RECURSIVE  data table only: every create/delete/data event of the path and of any
                        descendant, and never NodeChildrenChanged (3.8.0 also put it in the child
                        table, where it never fired but was counted twice by mntr).
trigger() returns each watcher once per event, however many of its watches match.
"""

from zkpy.proto import consts

# Bits of a watcher's modes on one path (WatcherMode).
STANDARD = 1
PERSISTENT = 2
RECURSIVE = 4

# AddWatchMode (the addWatch request's `mode`)
ADD_WATCH_PERSISTENT = 0
ADD_WATCH_PERSISTENT_RECURSIVE = 1

# Watcher.WatcherType (the checkWatches / removeWatches request's `type`); 4 and 5 since 3.9.
WATCHER_CHILDREN = 1
WATCHER_DATA = 2
WATCHER_ANY = 3
WATCHER_PERSISTENT = 4
WATCHER_PERSISTENT_RECURSIVE = 5
WATCHER_TYPES = frozenset([WATCHER_CHILDREN, WATCHER_DATA, WATCHER_ANY, WATCHER_PERSISTENT,
                           WATCHER_PERSISTENT_RECURSIVE])


def _parent(path):
    i = path.rfind("/")
    return "/" if i <= 0 else path[:i]


class _Table(object):
    """One WatchManager: path -> {watcher: modes}, and its reverse index."""
    __slots__ = ("paths", "by_watcher", "lasting", "recursive")

    def __init__(self):
        self.paths = {}       # path -> {watcher: mode bits}
        self.by_watcher = {}  # watcher -> set(path): a closing connection needs no table scan
        self.lasting = 0      # (watcher, path) entries holding PERSISTENT or RECURSIVE
        self.recursive = 0    # entries holding RECURSIVE: 0 means no walk up the parents

    def add(self, path, watcher, mode):
        ws = self.paths.get(path)
        if ws is None:
            ws = self.paths[path] = {}
        old = ws.get(watcher, 0)
        if old & mode:
            return
        new = old | mode
        ws[watcher] = new
        if not old:
            self.by_watcher.setdefault(watcher, set()).add(path)
        self._count(old, new)

    def _count(self, old, new):
        lasting = PERSISTENT | RECURSIVE
        self.lasting += bool(new & lasting) - bool(old & lasting)
        self.recursive += bool(new & RECURSIVE) - bool(old & RECURSIVE)

    def _forget(self, path, watcher):
        paths = self.by_watcher.get(watcher)
        if paths is not None:
            paths.discard(path)
            if not paths:
                del self.by_watcher[watcher]

    def fire(self, path, fired):
        """Add to `fired` the watchers an event on `path` reaches; use up one-shot watches."""
        ws = self.paths.get(path)
        if ws:
            if not self.lasting:
                # Only one-shot watches in this table: the whole set goes (the common case).
                del self.paths[path]
                fired.update(ws)
                for w in ws:
                    self._forget(path, w)
            else:
                for w, modes in list(ws.items()):
                    fired.add(w)
                    if modes & STANDARD:
                        if modes == STANDARD:
                            del ws[w]
                            self._forget(path, w)
                        else:
                            ws[w] = modes & ~STANDARD
                if not ws:
                    del self.paths[path]
        if self.recursive:
            p = path
            while p != "/":
                p = _parent(p)
                ws = self.paths.get(p)
                if ws:
                    for w, modes in ws.items():
                        if modes & RECURSIVE:
                            fired.add(w)
        return fired

    def has(self, path, watcher, mode):
        """True if watcher holds `mode` on path (mode None: any mode)."""
        modes = self.paths.get(path, {}).get(watcher, 0)
        return bool(modes if mode is None else modes & mode)

    def remove(self, path, watcher, mode):
        """Take `mode` (None: every mode) of watcher off path; True if it held it."""
        ws = self.paths.get(path)
        if not ws:
            return False
        old = ws.get(watcher, 0)
        new = 0 if mode is None else old & ~mode
        if old == new:
            return False
        self._count(old, new)
        if new:
            ws[watcher] = new
        else:
            del ws[watcher]
            self._forget(path, watcher)
            if not ws:
                del self.paths[path]
        return True

    def remove_watcher(self, watcher):
        for path in self.by_watcher.pop(watcher, ()):
            ws = self.paths.get(path)
            if ws is None:
                continue
            old = ws.pop(watcher, 0)
            self._count(old, 0)
            if not ws:
                del self.paths[path]

    def size(self):
        return sum(len(ws) for ws in self.paths.values())


class WatchManager(object):
    """The data and child watch tables of one frontend.

    `data` and `child` are the tables' path -> {watcher: modes} maps (read by the frontend's
    four-letter-word snapshot: wchs/wchc/wchp show the data table, as ZooKeeper's do)."""

    def __init__(self):
        self._data = _Table()
        self._child = _Table()
        self.data = self._data.paths
        self.child = self._child.paths

    # -- registering

    def add_data(self, path, watcher):
        """A one-shot data watch (getData) or exists watch."""
        self._data.add(path, watcher, STANDARD)

    def add_child(self, path, watcher):
        """A one-shot child watch (getChildren)."""
        self._child.add(path, watcher, STANDARD)

    def add_persistent(self, path, watcher, recursive=False):
        """addWatch PERSISTENT (recursive=False) or PERSISTENT_RECURSIVE."""
        if recursive:
            self._data.add(path, watcher, RECURSIVE)
        else:
            self._data.add(path, watcher, PERSISTENT)
            self._child.add(path, watcher, PERSISTENT)

    # -- events

    def trigger(self, event_type, path):
        """The set of watchers an event reaches, each once; their one-shot watches are used up.

        NodeChildrenChanged goes to the child table; the others to the data table, and a
        NodeDeleted also to the child table (DataTree.deleteNode)."""
        if event_type == consts.EVENT_NODE_CHILDREN_CHANGED:
            return self._child.fire(path, set())
        fired = self._data.fire(path, set())
        if event_type == consts.EVENT_NODE_DELETED:
            self._child.fire(path, fired)
        return fired

    # -- checkWatches / removeWatches (DataTree.containsWatcher / removeWatch, 3.9)

    def contains(self, path, watcher, wtype):
        """Whether watcher holds a watch of WatcherType `wtype` on path (ValueError: bad type).

        Children and Data name the one-shot watches; Any names every watch on the path."""
        if wtype == WATCHER_CHILDREN:
            return self._child.has(path, watcher, STANDARD)
        if wtype == WATCHER_DATA:
            return self._data.has(path, watcher, STANDARD)
        if wtype == WATCHER_ANY:
            return self._child.has(path, watcher, None) or self._data.has(path, watcher, None)
        if wtype == WATCHER_PERSISTENT:
            return self._data.has(path, watcher, PERSISTENT)
        if wtype == WATCHER_PERSISTENT_RECURSIVE:
            return self._data.has(path, watcher, RECURSIVE)
        raise ValueError("unknown watcher type %r" % (wtype,))

    def remove(self, path, watcher, wtype):
        """Remove watcher's watches of WatcherType `wtype` on path; True if there were any."""
        if wtype == WATCHER_CHILDREN:
            return self._child.remove(path, watcher, STANDARD)
        if wtype == WATCHER_DATA:
            return self._data.remove(path, watcher, STANDARD)
        if wtype == WATCHER_ANY:
            removed = self._child.remove(path, watcher, None)
            return self._data.remove(path, watcher, None) or removed
        if wtype == WATCHER_PERSISTENT:
            removed = self._child.remove(path, watcher, PERSISTENT)
            return self._data.remove(path, watcher, PERSISTENT) or removed
        if wtype == WATCHER_PERSISTENT_RECURSIVE:
            return self._data.remove(path, watcher, RECURSIVE)
        raise ValueError("unknown watcher type %r" % (wtype,))

    def remove_watcher(self, watcher):
        """Drop every watch of a watcher (its connection closed)."""
        self._data.remove_watcher(watcher)
        self._child.remove_watcher(watcher)

    # -- reporting

    def count(self):
        """(watcher, path) entries in both tables: mntr's zk_watch_count (a persistent watch
        counts twice, a recursive one once, as in ZooKeeper 3.9)."""
        return self._data.size() + self._child.size()

    def paths(self):
        return len(set(self.data) | set(self.child))
