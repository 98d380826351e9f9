"""zkpy.tree.watches.WatchManager: one-shot, persistent and persistent recursive watches, one
notification per watcher per event, checkWatches / removeWatches by WatcherType, counts; and a
hypothesis run against a brute-force model of ZooKeeper 3.9's WatchManager (WatchStats)."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zkpy.proto import consts
from zkpy.tree import watches as wt
from zkpy.tree.watches import WatchManager

CREATED = consts.EVENT_NODE_CREATED
DELETED = consts.EVENT_NODE_DELETED
CHANGED = consts.EVENT_NODE_DATA_CHANGED
CHILDREN = consts.EVENT_NODE_CHILDREN_CHANGED


def test_one_shot_watches_fire_once():
    wm = WatchManager()
    wm.add_data("/a", "w1")
    wm.add_child("/a", "w2")
    assert wm.count() == 2
    assert wm.trigger(CHANGED, "/a") == {"w1"}
    assert wm.trigger(CHANGED, "/a") == set()
    assert wm.trigger(CHILDREN, "/a") == {"w2"}
    assert wm.count() == 0 and wm.data == {} and wm.child == {}


def test_delete_reaches_data_and_child_watchers_once():
    wm = WatchManager()
    wm.add_data("/a", "w")
    wm.add_child("/a", "w")
    wm.add_child("/a", "v")
    assert wm.trigger(DELETED, "/a") == {"w", "v"}
    assert wm.count() == 0


def test_persistent_watch_is_data_and_child_watch_that_stays():
    wm = WatchManager()
    wm.add_persistent("/a", "w")
    assert wm.count() == 2  # one entry in each table, as ZooKeeper counts it
    for _ in range(3):
        assert wm.trigger(CREATED, "/a") == {"w"}
        assert wm.trigger(CHANGED, "/a") == {"w"}
        assert wm.trigger(CHILDREN, "/a") == {"w"}
        assert wm.trigger(DELETED, "/a") == {"w"}
    # never its descendants
    assert wm.trigger(CREATED, "/a/b") == set()
    assert wm.trigger(CHILDREN, "/a/b") == set()
    assert wm.count() == 2


def test_recursive_watch_sees_descendants_and_no_children_changed():
    wm = WatchManager()
    wm.add_persistent("/r", "w", recursive=True)
    assert wm.count() == 1  # data table only (ZooKeeper 3.9)
    for etype in (CREATED, CHANGED, DELETED):
        assert wm.trigger(etype, "/r") == {"w"}
        assert wm.trigger(etype, "/r/x") == {"w"}
        assert wm.trigger(etype, "/r/x/y/z") == {"w"}
    assert wm.trigger(CHILDREN, "/r") == set()
    assert wm.trigger(CHILDREN, "/r/x") == set()
    # not a sibling with the same prefix, nor the parent
    assert wm.trigger(CREATED, "/rx") == set()
    assert wm.trigger(CREATED, "/") == set()
    assert wm.count() == 1


def test_recursive_watch_on_root():
    wm = WatchManager()
    wm.add_persistent("/", "w", recursive=True)
    assert wm.trigger(CREATED, "/a") == {"w"}
    assert wm.trigger(CHANGED, "/") == {"w"}
    assert wm.trigger(CHILDREN, "/") == set()


def test_one_notification_per_watcher_when_several_watches_match():
    wm = WatchManager()
    wm.add_data("/a/b", "w")
    wm.add_persistent("/a/b", "w")
    wm.add_persistent("/a", "w", recursive=True)
    wm.add_persistent("/", "w", recursive=True)
    wm.add_child("/a/b", "w")
    assert wm.trigger(CHANGED, "/a/b") == {"w"}
    assert wm.trigger(DELETED, "/a/b") == {"w"}
    # the one-shot data watch was used up, the rest stay
    assert not wm.contains("/a/b", "w", wt.WATCHER_DATA)
    assert not wm.contains("/a/b", "w", wt.WATCHER_CHILDREN)
    assert wm.contains("/a/b", "w", wt.WATCHER_PERSISTENT)


def test_one_shot_and_persistent_on_one_path_keep_both_modes():
    # ZooKeeper 3.8.0 kept one mode per (watcher, path): a getData(watch) after addWatch made
    # the data half one-shot. 3.9 keeps both (WatchStats); so does zkpy.
    wm = WatchManager()
    wm.add_persistent("/p", "w")
    wm.add_data("/p", "w")
    assert wm.contains("/p", "w", wt.WATCHER_DATA)
    assert wm.trigger(CHANGED, "/p") == {"w"}
    assert not wm.contains("/p", "w", wt.WATCHER_DATA)
    assert wm.trigger(CHANGED, "/p") == {"w"}
    assert wm.count() == 2


def test_contains_by_type():
    wm = WatchManager()
    wm.add_persistent("/p", "w")
    wm.add_persistent("/r", "w", recursive=True)
    wm.add_data("/d", "w")
    wm.add_child("/c", "w")
    expect = {
        "/p": {wt.WATCHER_ANY, wt.WATCHER_PERSISTENT},
        "/r": {wt.WATCHER_ANY, wt.WATCHER_PERSISTENT_RECURSIVE},
        "/d": {wt.WATCHER_ANY, wt.WATCHER_DATA},
        "/c": {wt.WATCHER_ANY, wt.WATCHER_CHILDREN},
        "/r/x": set(),  # under a recursive watch, but not a watch of its own
        "/none": set(),
    }
    for path, types in expect.items():
        for t in sorted(wt.WATCHER_TYPES):
            assert wm.contains(path, "w", t) == (t in types), (path, t)
            assert not wm.contains(path, "other", t)
    with pytest.raises(ValueError):
        wm.contains("/p", "w", 6)
    with pytest.raises(ValueError):
        wm.remove("/p", "w", 0)


def test_remove_by_type():
    wm = WatchManager()
    wm.add_persistent("/p", "w")
    wm.add_data("/p", "w")
    assert not wm.remove("/p", "w", wt.WATCHER_CHILDREN)  # no one-shot child watch there
    assert wm.remove("/p", "w", wt.WATCHER_DATA)
    assert not wm.remove("/p", "w", wt.WATCHER_DATA)
    assert wm.trigger(CHANGED, "/p") == {"w"}  # still persistent
    assert wm.remove("/p", "w", wt.WATCHER_PERSISTENT)
    assert wm.count() == 0 and wm.trigger(CHANGED, "/p") == set()
    assert not wm.remove("/p", "w", wt.WATCHER_ANY)

    wm.add_persistent("/r", "w", recursive=True)
    assert not wm.remove("/r", "w", wt.WATCHER_PERSISTENT)
    assert wm.remove("/r", "w", wt.WATCHER_PERSISTENT_RECURSIVE)
    assert wm.trigger(CREATED, "/r/x") == set()

    wm.add_persistent("/r", "w", recursive=True)
    wm.add_persistent("/r", "w")
    wm.add_child("/r", "w")
    assert wm.remove("/r", "w", wt.WATCHER_ANY)
    assert wm.count() == 0
    assert wm.trigger(CREATED, "/r/x") == set() and wm.trigger(CHILDREN, "/r") == set()


def test_remove_watcher_drops_everything_of_that_watcher_only():
    wm = WatchManager()
    for w in ("a", "b"):
        wm.add_data("/x", w)
        wm.add_child("/x", w)
        wm.add_persistent("/p", w)
        wm.add_persistent("/", w, recursive=True)
    wm.remove_watcher("a")
    assert wm.count() == 5
    assert wm.trigger(CREATED, "/q/r") == {"b"}
    wm.remove_watcher("b")
    wm.remove_watcher("b")
    assert wm.count() == 0 and wm.data == {} and wm.child == {}
    assert wm.trigger(CREATED, "/q/r") == set()


def test_data_table_is_what_wchs_reads():
    wm = WatchManager()
    wm.add_persistent("/p", "w")
    wm.add_persistent("/r", "w", recursive=True)
    wm.add_child("/c", "w")
    assert sorted(wm.data) == ["/p", "/r"]
    assert list(wm.data["/p"]) == ["w"]
    assert wm.paths() == 3


# ---------------------------------------------------------------------------------------------
# Against a brute-force model of ZooKeeper 3.9's two WatchManagers


class Model(object):
    """Sets of (path, watcher, mode) per table; trigger walks every entry."""

    def __init__(self):
        self.data = set()
        self.child = set()

    def add(self, table, path, w, mode):
        table.add((path, w, mode))

    def _fire(self, table, path):
        fired = set()
        for (p, w, m) in list(table):
            if p == path:
                fired.add(w)
                if m == wt.STANDARD:
                    table.discard((p, w, m))
            elif m == wt.RECURSIVE and (p == "/" or path.startswith(p + "/")):
                fired.add(w)
        return fired

    def trigger(self, etype, path):
        if etype == CHILDREN:
            return self._fire(self.child, path)
        fired = self._fire(self.data, path)
        if etype == DELETED:
            fired |= self._fire(self.child, path)
        return fired

    def _has(self, table, path, w, mode):
        return any(p == path and x == w and (mode is None or m == mode) for p, x, m in table)

    def _drop(self, table, path, w, mode):
        gone = {(p, x, m) for p, x, m in table
                if p == path and x == w and (mode is None or m == mode)}
        table -= gone
        return bool(gone)

    _TYPES = {
        wt.WATCHER_CHILDREN: [("child", wt.STANDARD)],
        wt.WATCHER_DATA: [("data", wt.STANDARD)],
        wt.WATCHER_ANY: [("child", None), ("data", None)],
        wt.WATCHER_PERSISTENT: [("child", wt.PERSISTENT), ("data", wt.PERSISTENT)],
        wt.WATCHER_PERSISTENT_RECURSIVE: [("data", wt.RECURSIVE)],
    }

    def contains(self, path, w, t):
        if t == wt.WATCHER_PERSISTENT:  # DataTree.containsWatcher looks at the data table only
            return self._has(self.data, path, w, wt.PERSISTENT)
        return any(self._has(getattr(self, tab), path, w, m) for tab, m in self._TYPES[t])

    def remove(self, path, w, t):
        return any([self._drop(getattr(self, tab), path, w, m) for tab, m in self._TYPES[t]])

    def count(self):
        return len({(p, w) for p, w, _ in self.data}) + len({(p, w) for p, w, _ in self.child})


PATHS = st.sampled_from(["/", "/a", "/a/b", "/a/b/c", "/ab", "/x"])
WATCHERS = st.sampled_from(["w1", "w2", "w3"])
OPS = st.one_of(
    st.tuples(st.just("data"), PATHS, WATCHERS),
    st.tuples(st.just("child"), PATHS, WATCHERS),
    st.tuples(st.just("persistent"), PATHS, WATCHERS),
    st.tuples(st.just("recursive"), PATHS, WATCHERS),
    st.tuples(st.just("trigger"), st.sampled_from([CREATED, DELETED, CHANGED, CHILDREN]), PATHS),
    st.tuples(st.just("contains"), PATHS, WATCHERS, st.sampled_from(sorted(wt.WATCHER_TYPES))),
    st.tuples(st.just("remove"), PATHS, WATCHERS, st.sampled_from(sorted(wt.WATCHER_TYPES))),
    st.tuples(st.just("close"), WATCHERS),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(OPS, max_size=40))
def test_matches_model(ops):
    wm, m = WatchManager(), Model()
    for op in ops:
        kind = op[0]
        if kind == "data":
            wm.add_data(op[1], op[2])
            m.add(m.data, op[1], op[2], wt.STANDARD)
        elif kind == "child":
            wm.add_child(op[1], op[2])
            m.add(m.child, op[1], op[2], wt.STANDARD)
        elif kind == "persistent":
            wm.add_persistent(op[1], op[2])
            m.add(m.data, op[1], op[2], wt.PERSISTENT)
            m.add(m.child, op[1], op[2], wt.PERSISTENT)
        elif kind == "recursive":
            wm.add_persistent(op[1], op[2], recursive=True)
            m.add(m.data, op[1], op[2], wt.RECURSIVE)
        elif kind == "trigger":
            assert wm.trigger(op[1], op[2]) == m.trigger(op[1], op[2]), op
        elif kind == "contains":
            assert wm.contains(*op[1:]) == m.contains(*op[1:]), op
        elif kind == "remove":
            assert wm.remove(*op[1:]) == m.remove(*op[1:]), op
        else:
            wm.remove_watcher(op[1])
            m.data = {e for e in m.data if e[1] != op[1]}
            m.child = {e for e in m.child if e[1] != op[1]}
        assert wm.count() == m.count()
    # internal counters agree with the tables
    for table in (wm._data, wm._child):
        entries = [modes for ws in table.paths.values() for modes in ws.values()]
        assert all(entries)
        assert table.lasting == sum(1 for x in entries if x & (wt.PERSISTENT | wt.RECURSIVE))
        assert table.recursive == sum(1 for x in entries if x & wt.RECURSIVE)
        assert sum(len(p) for p in table.by_watcher.values()) == len(entries)
