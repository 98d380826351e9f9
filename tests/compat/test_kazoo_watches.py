"""Watches against both servers: one-shot data/exists/child watches, exact event types and paths,
the event-before-reply ordering guarantee (checked frame by frame on a raw socket), and watches
re-registered with setWatches after a reconnect, including changes made while the client was away.
"""

import queue
import struct
import time

import pytest
from kazoo.client import KazooState
from kazoo.protocol.states import EventType

from compat.test_bad_input import (OP_GET_DATA, OP_PING, OP_SET_DATA, RawZk, get_data_body,
                                   set_data_body)
from compat.test_kazoo_sessions import FAST_RETRY, StateLog, TcpProxy, wait_until

# Watcher.Event.EventType / KeeperState on the wire
NODE_CREATED, NODE_DELETED, NODE_DATA_CHANGED, NODE_CHILDREN_CHANGED = 1, 2, 3, 4
SYNC_CONNECTED = 3
OP_GET_CHILDREN = 8


class Events(object):
    """Collects kazoo watch events from any number of callbacks."""

    def __init__(self):
        self.q = queue.Queue()

    def cb(self, event):
        self.q.put((event.type, event.path))

    def take(self, n=1, timeout=10.0):
        out = []
        deadline = time.monotonic() + timeout
        while len(out) < n:
            left = deadline - time.monotonic()
            try:
                out.append(self.q.get(timeout=max(0.01, left)))
            except queue.Empty:
                raise AssertionError("got %d of %d watch events: %r" % (len(out), n, out))
        return out

    def none_within(self, seconds=0.3):
        try:
            extra = self.q.get(timeout=seconds)
        except queue.Empty:
            return True
        raise AssertionError("unexpected extra watch event %r" % (extra,))


@pytest.fixture(scope="module")
def clients(shared_zk_server):
    """(watcher, writer): two sessions on the module's server."""
    from kazoo.client import KazooClient

    made = []
    for _ in range(2):
        c = KazooClient(hosts=shared_zk_server.hosts, timeout=10.0)
        c.start(timeout=15)
        made.append(c)
    yield tuple(made)
    for c in made:
        c.stop()
        c.close()


@pytest.fixture
def base(clients, request):
    """A fresh persistent parent path for one test."""
    path = "/w-" + request.node.name.replace("[", "-").replace("]", "")
    clients[1].create(path, makepath=True)
    return path


def test_data_watch_fires_once(clients, base):
    watcher, writer = clients
    ev = Events()
    path = base + "/d"
    writer.create(path, b"0")
    assert watcher.get(path, watch=ev.cb)[0] == b"0"
    writer.set(path, b"1")
    assert ev.take() == [(EventType.CHANGED, path)]
    writer.set(path, b"2")
    writer.set(path, b"3")
    assert watcher.get(path)[0] == b"3"
    ev.none_within()


def test_exists_watch_on_missing_node_fires_created(clients, base):
    watcher, writer = clients
    ev = Events()
    path = base + "/later"
    assert watcher.exists(path, watch=ev.cb) is None
    writer.create(path, b"x")
    assert ev.take() == [(EventType.CREATED, path)]
    writer.set(path, b"y")
    ev.none_within()


def test_exists_watch_on_existing_node_fires_changed_then_deleted(clients, base):
    watcher, writer = clients
    path = base + "/e"
    writer.create(path)
    ev = Events()
    watcher.exists(path, watch=ev.cb)
    writer.set(path, b"v")
    assert ev.take() == [(EventType.CHANGED, path)]
    watcher.exists(path, watch=ev.cb)
    writer.delete(path)
    assert ev.take() == [(EventType.DELETED, path)]


def test_child_watch_fires_on_child_create_and_delete(clients, base):
    watcher, writer = clients
    ev = Events()
    assert watcher.get_children(base, watch=ev.cb) == []
    writer.create(base + "/c1")
    assert ev.take() == [(EventType.CHILD, base)]
    assert watcher.get_children(base, watch=ev.cb) == ["c1"]
    writer.delete(base + "/c1")
    assert ev.take() == [(EventType.CHILD, base)]
    # A child's data change is not a children change; the parent's own data change neither.
    writer.create(base + "/c2")
    assert watcher.get_children(base, watch=ev.cb) == ["c2"]
    ev.none_within(0.1)  # registered after c2 existed: nothing to report


def test_child_watch_ignores_data_changes(clients, base):
    watcher, writer = clients
    writer.create(base + "/kid", b"a")
    ev = Events()
    watcher.get_children(base, watch=ev.cb)
    writer.set(base + "/kid", b"b")
    writer.set(base, b"parent data")
    assert watcher.get(base + "/kid")[0] == b"b"
    ev.none_within()


def test_delete_fires_node_deleted_on_data_and_child_watches(clients, base):
    watcher, writer = clients
    path = base + "/gone"
    writer.create(path)
    data_ev, child_ev, parent_ev = Events(), Events(), Events()
    watcher.get(path, watch=data_ev.cb)
    watcher.get_children(path, watch=child_ev.cb)
    watcher.get_children(base, watch=parent_ev.cb)
    writer.delete(path)
    assert data_ev.take() == [(EventType.DELETED, path)]
    assert child_ev.take() == [(EventType.DELETED, path)]
    assert parent_ev.take() == [(EventType.CHILD, base)]


def test_watches_of_other_paths_do_not_fire(clients, base):
    watcher, writer = clients
    writer.create(base + "/a")
    writer.create(base + "/ab")
    ev = Events()
    watcher.get(base + "/a", watch=ev.cb)
    writer.set(base + "/ab", b"x")
    writer.create(base + "/a/child")
    ev.none_within()


# -- the wire: one notification per watcher, event before the reply ---------------------------


def _drain_until_ping(raw):
    """Round-trip a ping; return every notification that arrived before its reply."""
    raw.call(OP_PING, xid=-2)
    return [f.event() for f in raw.frames if f.is_event]


def test_raw_one_notification_for_data_and_child_watch_on_delete(shared_zk_server, clients,
                                                                base):
    _, writer = clients
    path = base + "/n"
    writer.create(path, b"v")
    with RawZk(shared_zk_server.port) as raw:
        raw.connect()
        assert raw.call(OP_GET_DATA, get_data_body(path, watch=True)).err == 0
        assert raw.call(OP_GET_CHILDREN, get_data_body(path, watch=True)).err == 0
        assert raw.call(3, get_data_body(path, watch=True)).err == 0  # exists
        writer.delete(path)
        wait_until(lambda: _drain_until_ping(raw), what="notification")
        time.sleep(0.2)
        # One NodeDeleted frame for the connection, though three watches named the path.
        assert _drain_until_ping(raw) == [(NODE_DELETED, SYNC_CONNECTED, path)]


def test_event_arrives_before_read_returns_new_data(shared_zk_server, clients, base):
    """Ordering guarantee: a watcher sees the event before it can see the change it reports."""
    _, writer = clients
    path = base + "/ord"
    writer.create(path, b"old")
    with RawZk(shared_zk_server.port) as raw:
        raw.connect()
        assert raw.call(OP_GET_DATA, get_data_body(path, watch=True)).data() == b"old"
        writer.set(path, b"new")
        deadline = time.monotonic() + 10
        while True:
            reply = raw.call(OP_GET_DATA, get_data_body(path))
            if reply.data() == b"new":
                break
            assert time.monotonic() < deadline
        kinds = [("event", f.event()) if f.is_event else ("reply", f.data()) for f in raw.frames]
        first_new = kinds.index(("reply", b"new"))
        events = [i for i, k in enumerate(kinds) if k[0] == "event"]
        assert kinds[events[0]] == ("event", (NODE_DATA_CHANGED, SYNC_CONNECTED, path)), kinds
        assert events == [events[0]] and events[0] < first_new, kinds


def test_event_arrives_before_own_write_reply(shared_zk_server, clients, base):
    _, writer = clients
    path = base + "/own"
    writer.create(path, b"a")
    with RawZk(shared_zk_server.port) as raw:
        raw.connect()
        raw.call(OP_GET_DATA, get_data_body(path, watch=True))
        n = len(raw.frames)
        reply = raw.call(OP_SET_DATA, set_data_body(path, b"b"))
        assert reply.err == 0
        after = raw.frames[n:]
        assert [f.is_event for f in after] == [True, False]
        assert after[0].event() == (NODE_DATA_CHANGED, SYNC_CONNECTED, path)
        # SetDataResponse's Stat: version 1 (mzxid is the reply's zxid)
        czxid, mzxid, ctime, mtime, version = struct.unpack_from(">qqqqi", reply.body, 0)
        assert version == 1 and mzxid == reply.zxid


# -- reconnects ------------------------------------------------------------------------------
# kazoo 2.11 sends no SetWatches: on a disconnect it drops its one-shot watches (each callback
# gets an EventType.NONE event) and its recipes (DataWatch, ChildrenWatch) read again after the
# reconnect. So the server side of setWatches is checked with a raw client, and the user-level
# behaviour with kazoo's recipes.

OP_SET_WATCHES = 101
XID_SET_WATCHES = -8


def _vec(paths):
    out = struct.pack(">i", len(paths))
    for p in paths:
        b = p.encode("utf-8")
        out += struct.pack(">i", len(b)) + b
    return out


def set_watches_body(rel_zxid, data=(), exist=(), child=()):
    return struct.pack(">q", rel_zxid) + _vec(data) + _vec(exist) + _vec(child)


def _make_nodes(writer, root):
    writer.create(root + "/data", b"0", makepath=True)
    writer.create(root + "/gone", b"0")
    writer.create(root + "/kids")
    writer.create(root + "/same", b"0")


def _change_all(writer, root):
    writer.set(root + "/data", b"1")
    writer.delete(root + "/gone")
    writer.create(root + "/born")
    writer.create(root + "/kids/k")


def _watch_request(root, rel_zxid):
    return set_watches_body(rel_zxid, data=[root + "/data", root + "/gone", root + "/same"],
                            exist=[root + "/born"], child=[root + "/kids"])


def _expected_wire(root):
    return {(NODE_DATA_CHANGED, SYNC_CONNECTED, root + "/data"),
            (NODE_DELETED, SYNC_CONNECTED, root + "/gone"),
            (NODE_CREATED, SYNC_CONNECTED, root + "/born"),
            (NODE_CHILDREN_CHANGED, SYNC_CONNECTED, root + "/kids")}


def _events_until(raw, n, timeout=10.0):
    deadline = time.monotonic() + timeout
    while True:
        events = _drain_until_ping(raw)
        if len(events) >= n or time.monotonic() > deadline:
            return events
        time.sleep(0.05)


def test_set_watches_delivers_changes_missed_while_away(shared_zk_server, clients):
    _, writer = clients
    root = "/away"
    _make_nodes(writer, root)
    raw = RawZk(shared_zk_server.port)
    _, _, sid, passwd = raw.connect(timeout_ms=10000)
    seen = raw.call(OP_GET_DATA, get_data_body(root + "/data", watch=True)).zxid
    raw.close()  # the session lives on (10 s)
    _change_all(writer, root)
    with RawZk(shared_zk_server.port) as again:
        assert again.connect(session_id=sid, passwd=passwd, last_zxid=seen,
                             timeout_ms=10000)[2] == sid
        reply = again.call(OP_SET_WATCHES, _watch_request(root, seen), xid=XID_SET_WATCHES)
        assert reply.err == 0
        events = _events_until(again, 4)
        assert len(events) == 4 and set(events) == _expected_wire(root), events
        # /same did not change: its watch is registered and fires on the next change.
        writer.set(root + "/same", b"1")
        assert _events_until(again, 5)[4:] == [(NODE_DATA_CHANGED, SYNC_CONNECTED,
                                                root + "/same")]


def test_set_watches_after_server_restart(zk_kind, server_factory, make_client):
    server = server_factory(zk_kind)
    writer = make_client(server, timeout=10.0, connection_retry=FAST_RETRY)
    root = "/rs"
    _make_nodes(writer, root)
    raw = RawZk(server.port)
    _, _, sid, passwd = raw.connect(timeout_ms=10000)
    seen = raw.call(OP_PING, xid=-2).zxid
    raw.close()
    server.restart()
    wait_until(lambda: writer.connected, timeout=15, what="writer reconnect")
    with RawZk(server.port) as again:
        assert again.connect(session_id=sid, passwd=passwd, last_zxid=seen,
                             timeout_ms=10000)[2] == sid
        assert again.call(OP_SET_WATCHES, _watch_request(root, seen),
                          xid=XID_SET_WATCHES).err == 0
        assert _drain_until_ping(again) == []  # nothing changed yet
        _change_all(writer, root)
        events = _events_until(again, 4)
        assert len(events) == 4 and set(events) == _expected_wire(root), events


def test_kazoo_drops_one_shot_watches_on_disconnect(shared_zk_server, clients, make_client):
    """kazoo's own behaviour, pinned so the tests above stay honest about who re-registers."""
    _, writer = clients
    writer.create("/drop/x", makepath=True)
    proxy = TcpProxy(shared_zk_server.port)
    try:
        watcher = make_client(proxy.hosts, timeout=10.0, connection_retry=FAST_RETRY)
        ev = Events()
        watcher.get("/drop/x", watch=ev.cb)
        proxy.cut()
        assert ev.take() == [(EventType.NONE, None)]
    finally:
        proxy.close()


def test_kazoo_recipes_see_changes_across_restart(zk_kind, server_factory, make_client):
    server = server_factory(zk_kind)
    watcher = make_client(server, timeout=10.0, connection_retry=FAST_RETRY)
    states = StateLog(watcher)
    writer = make_client(server, timeout=10.0, connection_retry=FAST_RETRY)
    writer.create("/rec/data", b"0", makepath=True)
    data_seen, kids_seen = queue.Queue(), queue.Queue()
    watcher.DataWatch("/rec/data", lambda data, stat: data_seen.put(data))
    watcher.ChildrenWatch("/rec", lambda children: kids_seen.put(sorted(children)))
    assert data_seen.get(timeout=5) == b"0"
    assert kids_seen.get(timeout=5) == ["data"]
    server.restart()
    wait_until(lambda: states.states[-1] == KazooState.CONNECTED
               and KazooState.SUSPENDED in states.states, timeout=15, what="watcher reconnect")
    wait_until(lambda: writer.connected, timeout=15, what="writer reconnect")
    writer.set("/rec/data", b"1")
    writer.create("/rec/new")
    wait_until(lambda: _last(data_seen) == b"1", what="DataWatch sees b'1'")
    wait_until(lambda: _last(kids_seen) == ["data", "new"], what="ChildrenWatch sees new")


_LAST = {}


def _last(q):
    try:
        while True:
            _LAST[id(q)] = q.get_nowait()
    except queue.Empty:
        pass
    return _LAST.get(id(q))
