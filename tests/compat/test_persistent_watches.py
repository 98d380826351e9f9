"""Persistent and persistent recursive watches (addWatch, op 106), checkWatches (17),
removeWatches (18) and the persistent lists of setWatches2 (105), side by side on both servers.

kazoo 2.11 has no addWatch, so the requests go on a raw socket (RawZk); every event sequence is
read up to a sync point (an exists request of the watching session, answered only after the
events of every write acknowledged before it) so "no further event" is exact, not a timeout.

zkpy follows ZooKeeper 3.9's watch tables. Where Apache ZooKeeper 3.8.0 (the server these tests
run) differs, the test says so and checks each server against its own documented behaviour:
  - WatcherType Persistent (4) and PersistentRecursive (5) are 3.9 additions: 3.8.0 answers
    MARSHALLINGERROR.
  - 3.8.0 keeps one mode per (connection, path): Data/Children match a persistent watch, and a
    getData(watch) after addWatch turns the data half one-shot (ZOOKEEPER-4466, fixed in 3.9).
  - 3.8.0's checkWatches answers OK when *any* session watches the path; 3.9 checks the caller.
  - 3.8.0 also puts a recursive watch in the child table (counted twice by mntr, matched by
    Children); 3.9 keeps it in the data table only.
The notifications themselves are the same on both for every sequence here.
"""

import re
import struct
import time

import pytest

from compat import servers as zkservers
from compat.test_bad_input import RawZk, create_body, get_data_body, j_int, j_long, j_string, \
    set_data_body

OP_DELETE, OP_EXISTS, OP_GET_DATA, OP_SET_DATA, OP_CREATE = 2, 3, 4, 5, 1
OP_CHECK_WATCHES, OP_REMOVE_WATCHES, OP_SET_WATCHES2, OP_ADD_WATCH = 17, 18, 105, 106
PERSISTENT, RECURSIVE = 0, 1                                   # AddWatchMode
CHILDREN, DATA, ANY, W_PERSISTENT, W_RECURSIVE = 1, 2, 3, 4, 5  # WatcherType
CREATED, DELETED, CHANGED, CHILD = 1, 2, 3, 4                  # EventType
OK, MARSHALLINGERROR, NOWATCHER = 0, -5, -121
SYNC_CONNECTED = 3


def j_strings(items):
    return j_int(len(items)) + b"".join(j_string(s) for s in items)


class Session(object):
    """A raw session that keeps the watch events it receives, in order."""

    def __init__(self, port):
        self.zk = RawZk(port)
        self.zk.connect()
        self.events = []

    def close(self):
        self.zk.close()

    def call(self, op, body, xid=None):
        """(err, body) of the reply; events read on the way are kept."""
        xid = self.zk.send_request(op, body, xid)
        while True:
            reply = self.zk.recv_reply()
            if reply.is_event:
                etype, state, path = reply.event()
                assert state == SYNC_CONNECTED
                self.events.append((etype, path))
            elif reply.xid == xid:
                return reply.err, reply.body

    def take_events(self):
        """Every event delivered for writes acknowledged so far (then forgets them)."""
        err, _ = self.call(OP_EXISTS, get_data_body("/", False))
        assert err == OK
        out, self.events = self.events, []
        return out

    def add_watch(self, path, mode):
        return self.call(OP_ADD_WATCH, j_string(path) + j_int(mode))

    def check(self, path, wtype):
        return self.call(OP_CHECK_WATCHES, j_string(path) + j_int(wtype))[0]

    def remove(self, path, wtype):
        return self.call(OP_REMOVE_WATCHES, j_string(path) + j_int(wtype))[0]

    def get_watch(self, path):
        return self.call(OP_GET_DATA, get_data_body(path, True))[0]

    def create(self, path, data=b""):
        assert self.call(OP_CREATE, create_body(path, data))[0] == OK, path

    def set(self, path, data):
        assert self.call(OP_SET_DATA, set_data_body(path, data))[0] == OK, path

    def delete(self, path):
        assert self.call(OP_DELETE, j_string(path) + j_int(-1))[0] == OK, path


@pytest.fixture
def sessions(shared_zk_server):
    made = []

    def factory():
        s = Session(shared_zk_server.port)
        made.append(s)
        return s

    yield factory
    for s in made:
        s.close()


@pytest.fixture
def base(request, sessions):
    """A fresh parent path for one test on the module's server."""
    path = "/pw-" + re.sub(r"[^A-Za-z0-9_-]", "-", request.node.name)
    w = sessions()
    w.create(path)
    w.close()
    return path


def test_add_watch_answers_error_response_zero(sessions, base):
    a = sessions()
    err, body = a.add_watch(base + "/x", PERSISTENT)
    assert (err, body) == (OK, struct.pack(">i", 0))  # ErrorResponse{err=0}
    err, body = a.add_watch(base + "/x", RECURSIVE)
    assert (err, body) == (OK, struct.pack(">i", 0))
    # a mode that is neither: WatcherMode.fromZooDef throws -> MARSHALLINGERROR
    assert a.add_watch(base + "/x", 2)[0] == MARSHALLINGERROR
    assert a.add_watch(base + "/x", -1)[0] == MARSHALLINGERROR


def test_persistent_watch_sequence(sessions, base):
    a, b = sessions(), sessions()
    p = base + "/a"
    assert a.add_watch(p, PERSISTENT)[0] == OK
    b.create(p)
    b.create(p + "/b")
    b.set(p, b"1")
    b.set(p + "/b", b"1")        # a child's data: not this watch's business
    b.set(p, b"2")
    b.delete(p + "/b")
    b.delete(p)
    b.create(p)                  # still there after the node went away
    assert a.take_events() == [
        (CREATED, p), (CHILD, p), (CHANGED, p), (CHANGED, p), (CHILD, p), (DELETED, p),
        (CREATED, p)]
    b.create(p + "/b")
    b.create(p + "/b/c")          # grandchildren are not seen
    assert a.take_events() == [(CHILD, p)]


def test_recursive_watch_sequence(sessions, base):
    a, b = sessions(), sessions()
    r = base + "/r"
    assert a.add_watch(r, RECURSIVE)[0] == OK
    b.create(r)
    b.create(r + "/x")
    b.create(r + "/x/y")
    b.set(r + "/x/y", b"1")
    b.set(r, b"1")
    b.delete(r + "/x/y")
    b.create(base + "/rx")        # a sibling sharing the prefix
    b.set(base, b"1")             # the parent
    b.delete(r + "/x")
    assert a.take_events() == [
        (CREATED, r), (CREATED, r + "/x"), (CREATED, r + "/x/y"), (CHANGED, r + "/x/y"),
        (CHANGED, r), (DELETED, r + "/x/y"), (DELETED, r + "/x")]  # never NodeChildrenChanged


def test_one_notification_per_event_per_session(sessions, base):
    a, b = sessions(), sessions()
    p = base + "/a"
    b.create(p)
    assert a.get_watch(p) == OK                      # one-shot data watch
    assert a.add_watch(p, PERSISTENT)[0] == OK       # persistent on the same path
    assert a.add_watch(base, RECURSIVE)[0] == OK     # and recursive above it
    b.set(p, b"1")
    b.set(p, b"2")
    b.create(p + "/c")
    b.delete(p + "/c")
    b.delete(p)
    assert a.take_events() == [
        (CHANGED, p), (CHANGED, p), (CREATED, p + "/c"), (CHILD, p), (DELETED, p + "/c"),
        (CHILD, p), (DELETED, p)]


def test_watches_of_two_sessions(sessions, base):
    a, b, c = sessions(), sessions(), sessions()
    p = base + "/a"
    assert a.add_watch(p, PERSISTENT)[0] == OK
    assert b.add_watch(base, RECURSIVE)[0] == OK
    c.create(p)
    c.set(p, b"1")
    assert a.take_events() == [(CREATED, p), (CHANGED, p)]
    assert b.take_events() == [(CREATED, p), (CHANGED, p)]
    assert c.take_events() == []


def test_set_watches2_reregisters_persistent_watches_without_replay(sessions, base):
    writer = sessions()
    p, q = base + "/p", base + "/q"
    writer.create(p)          # before the watches exist: not replayed for persistent watches
    a = sessions()
    body = (j_long(0) + j_strings([]) + j_strings([]) + j_strings([]) + j_strings([p])
            + j_strings([q]))
    err, _ = a.call(OP_SET_WATCHES2, body, xid=-8)
    assert err == OK
    assert a.take_events() == []
    writer.set(p, b"1")
    writer.create(p + "/1")
    writer.create(q)
    writer.create(q + "/1")
    writer.set(q + "/1", b"x")
    assert a.take_events() == [
        (CHANGED, p), (CHILD, p), (CREATED, q), (CREATED, q + "/1"), (CHANGED, q + "/1")]
    assert a.check(p, ANY) == OK and a.check(q, ANY) == OK


def test_check_and_remove_watches(sessions, base):
    a, b = sessions(), sessions()
    p, r = base + "/p", base + "/r"
    assert a.add_watch(p, PERSISTENT)[0] == OK
    assert a.add_watch(r, RECURSIVE)[0] == OK
    assert a.check(p, ANY) == OK
    assert a.check(r, ANY) == OK
    assert a.check(r + "/x", ANY) == NOWATCHER     # under a recursive watch: not a watch of its own
    assert a.check(base + "/none", ANY) == NOWATCHER
    for bad in (0, 6, -1):
        assert a.check(p, bad) == MARSHALLINGERROR  # WatcherType.fromInt throws
        assert a.remove(p, bad) == MARSHALLINGERROR
    # removeWatches answers with the header only: DataWatchRemoved / ChildWatchRemoved /
    # PersistentWatchRemoved are made by the client library, the server sends nothing.
    assert a.remove(p, ANY) == OK
    assert a.remove(p, ANY) == NOWATCHER
    assert a.check(p, ANY) == NOWATCHER
    b.create(p)
    b.create(r)
    assert a.take_events() == [(CREATED, r)]
    assert a.remove(r, ANY) == OK
    b.create(r + "/x")
    assert a.take_events() == []
    # one-shot watches: removed by Any as well, and by their own type
    assert a.get_watch(p) == OK
    assert a.check(p, DATA) == OK
    assert a.remove(p, DATA) == OK
    assert a.check(p, DATA) == NOWATCHER
    b.set(p, b"1")
    assert a.take_events() == []


def test_watcher_types_3_9(sessions, base, zk_kind):
    """Where 3.8.0 and 3.9 differ (see the module docstring)."""
    a, b = sessions(), sessions()
    p, r = base + "/p", base + "/r"
    assert a.add_watch(p, PERSISTENT)[0] == OK
    assert a.add_watch(r, RECURSIVE)[0] == OK
    got = {(path, t): a.check(path, t) for path in (p, r)
           for t in (CHILDREN, DATA, W_PERSISTENT, W_RECURSIVE)}
    got["other session"] = b.check(p, ANY)
    if zk_kind == "apache":  # 3.8.0
        want = {(path, t): OK for path in (p, r) for t in (CHILDREN, DATA)}
        want.update({(path, t): MARSHALLINGERROR for path in (p, r)
                     for t in (W_PERSISTENT, W_RECURSIVE)})
        want["other session"] = OK
    else:  # 3.9: Children/Data name one-shot watches; the caller's own watches only
        want = {(path, t): NOWATCHER for path in (p, r) for t in (CHILDREN, DATA)}
        want.update({(p, W_PERSISTENT): OK, (p, W_RECURSIVE): NOWATCHER,
                     (r, W_PERSISTENT): NOWATCHER, (r, W_RECURSIVE): OK})
        want["other session"] = NOWATCHER
    assert got == want

    if zk_kind == "zkpy":
        assert a.remove(r, W_PERSISTENT) == NOWATCHER
        assert a.remove(r, W_RECURSIVE) == OK
        assert a.remove(p, W_PERSISTENT) == OK
        b.create(p)
        b.create(r)
        assert a.take_events() == []

    # a one-shot getData watch on top of a persistent one (ZOOKEEPER-4466)
    q = base + "/q"
    b.create(q)
    assert a.add_watch(q, PERSISTENT)[0] == OK
    assert a.get_watch(q) == OK
    b.set(q, b"1")
    b.set(q, b"2")
    if zk_kind == "apache":
        assert a.take_events() == [(CHANGED, q)]  # 3.8.0 lost the persistent data watch
    else:
        assert a.take_events() == [(CHANGED, q), (CHANGED, q)]


def _watch_lines(server, session_id):
    """wchs, and the paths of one session in wchc and wchp."""
    wchs = zkservers.four_letter(server.port, "wchs")
    wchc = zkservers.four_letter(server.port, "wchc")
    wchp = zkservers.four_letter(server.port, "wchp")
    sid = "0x%x" % session_id
    by_session = {}
    current = None
    for line in wchc.splitlines():
        if line.startswith("0x"):
            current = line
        elif line.startswith("\t") and current == sid:
            by_session.setdefault(current, set()).add(line[1:])
    by_path = set()
    current = None
    for line in wchp.splitlines():
        if line and not line.startswith("\t"):
            current = line
        elif line == "\t" + sid:
            by_path.add(current)
    return wchs, by_session.get(sid, set()), by_path


def test_watch_reports(zk_server, zk_kind):
    """wchs/wchc/wchp list the data table (persistent and recursive watches are in it);
    mntr's watch count adds the child table."""
    a = Session(zk_server.port)
    try:
        assert a.add_watch("/p", PERSISTENT)[0] == OK
        assert a.add_watch("/r", RECURSIVE)[0] == OK
        wchs, paths_c, paths_p = _watch_lines(zk_server, a.zk.session_id)
        assert wchs == "1 connections watching 2 paths\nTotal watches:2\n"
        assert paths_c == {"/p", "/r"} and paths_p == {"/p", "/r"}
        mntr = zkservers.four_letter(zk_server.port, "mntr")
        count = int(re.search(r"^zk_watch_count\t(\d+)$", mntr, re.M).group(1))
        # persistent: data + child table; recursive: both in 3.8.0, data table only in 3.9
        assert count == (4 if zk_kind == "apache" else 3)
        assert a.remove("/p", ANY) == OK and a.remove("/r", ANY) == OK
        wchs, _, _ = _watch_lines(zk_server, a.zk.session_id)
        # 3.8.0 keeps the emptied per-connection entry ("1 connections"); 3.9 drops it
        assert wchs.endswith(" connections watching 0 paths\nTotal watches:0\n")
    finally:
        a.close()


def test_closed_connection_drops_its_watches(zk_server):
    a = Session(zk_server.port)
    assert a.add_watch("/p", PERSISTENT)[0] == OK
    assert a.add_watch("/", RECURSIVE)[0] == OK
    a.call(-11, b"")  # closeSession
    a.close()
    b = Session(zk_server.port)
    try:
        b.create("/p")
        for _ in range(50):
            wchs = zkservers.four_letter(zk_server.port, "wchs")
            if wchs.startswith("0 connections"):
                break
            time.sleep(0.1)
        assert wchs == "0 connections watching 0 paths\nTotal watches:0\n"
        assert b.take_events() == []
    finally:
        b.close()


def test_zkcli_add_watch(zk_server, tmp_path):
    """zkCli.sh `addWatch -m PERSISTENT` and `removewatches -a` (the Java client makes the
    PersistentWatchRemoved event itself)."""
    from compat.test_zkcli import after_connect, assert_in_order, zkcli

    reason = zkservers.zkcli_unavailable()
    if reason:
        pytest.skip(reason)
    script = "\n".join([
        "addWatch -m PERSISTENT /pw",
        "create /pw a",
        "set /pw b",
        "create /pw/c",
        "delete /pw/c",
        "removewatches /pw -a",
        "set /pw c",
        "removewatches /pw -a",
        "get /pw",
        "quit",
    ]) + "\n"
    rc, lines = zkcli(zk_server, stdin=script, cwd=tmp_path)
    lines = after_connect(lines)
    # Events are printed by the client's event thread, results by its main thread: compare
    # each stream on its own.
    events = [line for line in lines if line.startswith("WatchedEvent")]
    # The Closed event is the client's own, queued as `quit` closes the session: zkCli calls
    # System.exit right after close(), so on a busy machine its event thread sometimes has not
    # printed it yet (seen once in CI, the worker matrix beside the pure-twin run).
    closed = "WatchedEvent state:Closed type:None path:null"
    if events and events[-1] == closed:
        events.pop()
    assert events == [
        "WatchedEvent state:SyncConnected type:NodeCreated path:/pw",
        "WatchedEvent state:SyncConnected type:NodeDataChanged path:/pw",
        "WatchedEvent state:SyncConnected type:NodeChildrenChanged path:/pw",
        "WatchedEvent state:SyncConnected type:NodeChildrenChanged path:/pw",
        "WatchedEvent state:SyncConnected type:PersistentWatchRemoved path:/pw",
    ]
    results = [line for line in lines if not line.startswith("WatchedEvent")
               and line not in ("", "WATCHER::")]
    assert_in_order(results, ["Created /pw", "Created /pw/c",
                              "KeeperErrorCode = No such watcher for /pw", "c"])
