"""One-shot watch tables (ZooKeeper's WatchManager: dataWatches and childWatches). Pure.

Watchers are opaque hashable objects (a connection, a session id). Exists watches live in the data
table as in ZooKeeper. trigger() removes and returns the watchers an event fires, so each fires once.
"""

from zkpy.proto import consts


class WatchManager(object):
    def __init__(self):
        self.data = {}   # path -> set(watcher)
        self.child = {}  # path -> set(watcher)

    def add_data(self, path, watcher):
        self.data.setdefault(path, set()).add(watcher)

    def add_child(self, path, watcher):
        self.child.setdefault(path, set()).add(watcher)

    def trigger(self, event_type, path):
        """Return the watchers fired by (event_type, path), removing their one-shot watches."""
        if event_type == consts.EVENT_NODE_CHILDREN_CHANGED:
            return self.child.pop(path, ())
        fired = self.data.pop(path, None) or set()
        if event_type == consts.EVENT_NODE_DELETED:
            fired |= self.child.pop(path, set())
        return fired

    def remove_watcher(self, watcher):
        for table in (self.data, self.child):
            for path in [p for p, ws in table.items() if watcher in ws]:
                ws = table[path]
                ws.discard(watcher)
                if not ws:
                    del table[path]

    def count(self):
        return sum(len(w) for w in self.data.values()) + sum(len(w) for w in self.child.values())

    def paths(self):
        return len(set(self.data) | set(self.child))
