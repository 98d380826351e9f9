"""zkpy's worker processes (zoo.cfg `workers`): one core process plus N workers that hold the
client connections. zkpy only; real processes, kazoo and raw-socket clients on 127.0.0.1.

Which process serves a client is read from /proc (Linux): the workers are the core's children,
and a client's connection belongs to the process holding the socket whose /proc/net/tcp entry has
the client's local port as its remote port (`ProcMap.holder`). The core hands connections out
round robin, so opening clients until two workers are used is quick (`clients_on_two_workers`).
"""

import glob
import os
import signal
import threading
import time

import pytest
from kazoo.client import KazooClient, KazooState
from kazoo.protocol.states import EventType

from compat import servers as zkservers
from compat.test_bad_input import (OP_CREATE, OP_GET_DATA, OP_SET_DATA, RawZk,
                                   create_body, get_data_body, set_data_body)
from compat.test_kazoo_sessions import FAST_RETRY, StateLog, wait_until

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs Linux /proc")

SESSION_CFG = {"tickTime": "500", "minSessionTimeout": "1000", "maxSessionTimeout": "6000"}
EPHEMERAL = 1
NODE_DATA_CHANGED = 3


# ---------------------------------------------------------------------------------------------
# /proc: which process holds which client connection


def _alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            stat = f.read()
    except OSError:
        return False
    # "pid (comm) S ..." - comm may hold spaces or parentheses; the state follows the last ')'.
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def worker_pids(core_pid):
    """The live child processes of the core (its workers)."""
    pids = set()
    for path in glob.glob("/proc/%d/task/*/children" % core_pid):
        try:
            with open(path) as f:
                pids.update(int(p) for p in f.read().split())
        except OSError:
            pass
    return {p for p in pids if _alive(p)}


def socket_inodes(pid):
    inodes = set()
    try:
        fds = os.listdir("/proc/%d/fd" % pid)
    except OSError:
        return inodes
    for fd in fds:
        try:
            link = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(int(link[8:-1]))
    return inodes


def server_side_inode(server_port, client_port):
    """The inode of the server's end of the 127.0.0.1 connection from `client_port`."""
    with open("/proc/net/tcp") as f:
        lines = f.readlines()[1:]
    for line in lines:
        parts = line.split()
        local, remote, state, inode = parts[1], parts[2], parts[3], int(parts[9])
        if (int(local.split(":")[1], 16) == server_port
                and int(remote.split(":")[1], 16) == client_port and state == "01"):
            return inode
    return None


class ProcMap(object):
    def __init__(self, server):
        self.server = server
        self.core = server.proc.pid

    def workers(self):
        return worker_pids(self.core)

    def holder(self, client_port):
        """The pid (core or worker) holding the server side of the connection, or None."""
        inode = server_side_inode(self.server.port, client_port)
        if inode is None:
            return None
        for pid in [self.core] + sorted(self.workers()):
            if inode in socket_inodes(pid):
                return pid
        return None

    def holder_of(self, client):
        return self.holder(local_port(client))

    def wait_holder(self, client, timeout=5.0):
        return wait_until(lambda: self.holder_of(client), timeout, "the client's server process")


def local_port(client):
    if isinstance(client, RawZk):
        return client.sock.getsockname()[1]
    sock = client._connection._socket  # kazoo keeps its socket there
    return sock.getsockname()[1]


def clients_on_two_workers(pm, make, limit=8):
    """make() -> a connected client; returns (a, b) served by different workers (the others
    made on the way stay open)."""
    seen = {}
    for _ in range(limit):
        c = make()
        pid = pm.wait_holder(c)
        assert pid != pm.core, "the core process holds a client connection"
        for other_pid, other in seen.items():
            if other_pid != pid:
                return other, c
        seen.setdefault(pid, c)
    raise AssertionError("%d clients all landed on one worker: %s" % (limit, list(seen)))


# ---------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="module", autouse=True)
def _zkpy_only(zk_targets):
    if "zkpy" not in zk_targets:
        pytest.skip("zkpy not in ZKPY_TEST_TARGETS")
    reason = zkservers.zkpy_unavailable()
    if reason:
        pytest.skip(reason)


@pytest.fixture
def two_workers(server_factory):
    """A zkpy server with workers=2 (and short session timeouts)."""
    return server_factory("zkpy", dict(SESSION_CFG, workers=2))


@pytest.fixture
def raws():
    made = []

    def factory(port, **connect_kw):
        r = RawZk(port)
        made.append(r)
        r.connect(**connect_kw)
        return r

    yield factory
    for r in made:
        r.close()


def fast_client(make_client, server, **kw):
    kw.setdefault("connection_retry", dict(FAST_RETRY))
    kw.setdefault("timeout", 6.0)
    return make_client(server, **kw)


# ---------------------------------------------------------------------------------------------
# 1. connections are spread over the workers, none stays in the core


def test_connections_are_served_by_different_workers(two_workers, make_client):
    pm = ProcMap(two_workers)
    workers = wait_until(lambda: len(pm.workers()) == 2 and pm.workers(), 5, "2 workers")
    clients = [fast_client(make_client, two_workers) for _ in range(6)]
    holders = {}
    for c in clients:
        c.get("/")  # served, so certainly handed over by now
        holders[local_port(c)] = pm.wait_holder(c)
    core_inodes = socket_inodes(pm.core)
    for port in holders:
        assert server_side_inode(two_workers.port, port) not in core_inodes
    assert set(holders.values()) <= workers, holders
    assert len(set(holders.values())) == 2, "all clients on one worker: %s" % holders


# ---------------------------------------------------------------------------------------------
# 2. FIFO per session through the core and back


def test_pipelined_write_then_read_sees_the_write(two_workers, make_client):
    zk = fast_client(make_client, two_workers)
    zk.create("/fifo")
    pairs = []
    for i in range(300):
        path = "/fifo/n%03d" % i
        pairs.append((zk.create_async(path, b"v%d" % i), zk.get_async(path),
                      zk.exists_async(path)))
    for i, (c, g, e) in enumerate(pairs):
        assert c.get(timeout=10) == "/fifo/n%03d" % i
        assert g.get(timeout=10)[0] == b"v%d" % i
        assert e.get(timeout=10) is not None
    # children after pipelined deletes on the same session
    dels = [zk.delete_async("/fifo/n%03d" % i) for i in range(0, 300, 2)]
    kids = zk.get_children_async("/fifo")
    for d in dels:
        d.get(timeout=10)
    assert len(kids.get(timeout=10)) == 150


# ZooKeeper answers a session's requests in order: the read between the two writes sees the
# first and not the second (a worker holds the second write until that read is answered).
@pytest.mark.parametrize("workers", [0, 2])
def test_pipelined_read_between_two_writes_sees_only_the_first(workers, server_factory,
                                                              make_client):
    srv = server_factory("zkpy", {"workers": workers})
    zk = fast_client(make_client, srv)
    zk.create("/fifo2", b"0")
    rounds = []
    for i in range(1, 201):
        rounds.append((zk.set_async("/fifo2", b"%d-a" % i), zk.get_async("/fifo2"),
                       zk.set_async("/fifo2", b"%d-b" % i), zk.get_async("/fifo2")))
    wrong = []
    for i, (s1, g1, s2, g2) in enumerate(rounds, 1):
        s1.get(timeout=10)
        s2.get(timeout=10)
        got = (g1.get(timeout=10)[0], g2.get(timeout=10)[0])
        if got != (b"%d-a" % i, b"%d-b" % i):
            wrong.append((i, got))
    assert wrong == [], "%d of 200 reads saw a later write, e.g. %s" % (len(wrong), wrong[:3])


# ---------------------------------------------------------------------------------------------
# 3. the watch event comes before the data it announces, across processes


def test_watch_event_before_new_data_across_workers(two_workers, raws):
    """Client A (worker 1) watches N nodes and streams reads of them from a second thread while
    client B (worker 2) sets them all in one burst. In A's frame stream, for each node, every
    read before its NodeDataChanged event returns the old data and every read after it the new
    data (ZooKeeper Programmer's Guide, "Ordering guarantees")."""
    pm = ProcMap(two_workers)
    reader, writer = clients_on_two_workers(pm, lambda: raws(two_workers.port))
    n_nodes = 40
    paths = ["/wbd-%02d" % k for k in range(n_nodes)]
    for path in paths:
        writer.send_request(OP_CREATE, create_body(path, b"old"))
    for _ in paths:
        assert writer.recv_reply().err == 0
    for path in paths:
        reply = reader.call(OP_GET_DATA, get_data_body(path, watch=True))
        assert reply.err == 0 and reply.data() == b"old"
    reader.frames = []

    sent = {}                      # xid -> path, filled by the sender thread
    stop = threading.Event()

    def stream_reads():
        while not stop.is_set() and len(sent) < 4000:
            for path in paths:
                sent[reader.send_request(OP_GET_DATA, get_data_body(path))] = path
            time.sleep(0.002)

    sender = threading.Thread(target=stream_reads, daemon=True)
    sender.start()
    try:
        wait_until(lambda: len(sent) >= 2 * n_nodes, 5, "reads under way")
        for path in paths:
            writer.send_request(OP_SET_DATA, set_data_body(path, b"new"))
        events = 0
        while events < n_nodes:
            events += reader.recv_reply().is_event
        for _ in paths:
            assert writer.recv_reply().err == 0
        time.sleep(0.02)  # a few reads after the last event
    finally:
        stop.set()
        sender.join(5)
    while sum(1 for f in reader.frames if not f.is_event) < len(sent):
        reader.recv_reply()

    seen_event = set()
    early_new = late_old = 0
    for f in reader.frames:
        if f.is_event:
            etype, _, path = f.event()
            assert etype == NODE_DATA_CHANGED and path not in seen_event
            seen_event.add(path)
            continue
        path = sent[f.xid]
        assert f.err == 0
        if path in seen_event:
            late_old += f.data() != b"new"
        else:
            early_new += f.data() == b"new"
    assert seen_event == set(paths)
    assert early_new == 0, "%d reads returned new data before its watch event" % early_new
    assert late_old == 0, "%d reads after the watch event returned old data" % late_old


# ---------------------------------------------------------------------------------------------
# 4. a session moves between workers


def test_kazoo_reconnect_to_other_worker_keeps_session_and_watches(two_workers, make_client):
    pm = ProcMap(two_workers)
    zk = fast_client(make_client, two_workers)
    other = fast_client(make_client, two_workers)
    zk.create("/moved", b"0")
    eph = zk.create("/eph-moved", b"e", ephemeral=True)
    sid = zk.client_id[0]
    seen = []
    cond = threading.Condition()

    @zk.DataWatch("/moved")
    def _watch(data, stat):
        with cond:
            seen.append(data)
            cond.notify_all()

    states = StateLog(zk)
    first = pm.wait_holder(zk)
    moved_to = None
    for attempt in range(4):  # round robin: one of the next reconnects lands elsewhere
        n_connected = states.states.count(KazooState.CONNECTED)
        zk._connection._socket.shutdown(2)  # the client side drops; the session stays
        wait_until(lambda: states.states.count(KazooState.CONNECTED) > n_connected, 10,
                   "kazoo reconnected")
        pid = pm.wait_holder(zk)
        if pid != first:
            moved_to = pid
            break
    assert moved_to is not None, "the reconnects never left worker %d" % first
    assert KazooState.LOST not in states.states
    assert zk.client_id[0] == sid
    assert other.exists(eph) is not None and zk.get(eph)[0] == b"e"
    assert other.get_children("/") and "eph-moved" in other.get_children("/")
    other.set("/moved", b"1")
    with cond:
        assert cond.wait_for(lambda: b"1" in seen, 5), seen
    assert seen[0] == b"0"


def test_session_id_and_password_on_another_worker(two_workers, raws, make_client):
    pm = ProcMap(two_workers)
    raw = raws(two_workers.port, timeout_ms=6000)
    assert raw.call(OP_CREATE, create_body("/eph-raw", b"r", flags=EPHEMERAL)).err == 0
    first = pm.wait_holder(raw)
    # Handoffs alternate strictly between the 2 workers: after a filler connection on the same
    # worker as the raw session, the next connection goes to the other one.
    filler = raws(two_workers.port)
    if pm.wait_holder(filler) != first:
        filler = raws(two_workers.port)
        assert pm.wait_holder(filler) == first
    raw.close()  # no closeSession: the session lives on for 6 s
    zk = fast_client(make_client, two_workers, client_id=(raw.session_id, raw.passwd))
    assert pm.wait_holder(zk) not in (first, pm.core)
    assert zk.client_id[0] == raw.session_id
    assert zk.get("/eph-raw")[0] == b"r"
    assert zk.get("/eph-raw")[1].ephemeralOwner == raw.session_id


# ---------------------------------------------------------------------------------------------
# 5. session expiry reaches the watchers on every worker


def test_expiry_deletes_ephemerals_and_fires_watches_on_all_workers(two_workers, raws,
                                                                    make_client):
    pm = ProcMap(two_workers)
    a, b = clients_on_two_workers(pm, lambda: fast_client(make_client, two_workers))
    a.create("/exp")
    raw = raws(two_workers.port, timeout_ms=1000)
    assert raw.timeout_ms == 1000
    assert raw.call(OP_CREATE, create_body("/exp/e", b"", flags=EPHEMERAL)).err == 0
    got = {}
    lock = threading.Lock()

    def recorder(name):
        def cb(event):
            with lock:
                got.setdefault(name, []).append((event.type, event.path))
        return cb

    for name, c in (("a", a), ("b", b)):
        assert c.exists("/exp/e", watch=recorder(name + "-data")) is not None
        assert c.get_children("/exp", watch=recorder(name + "-child")) == ["e"]
    t0 = time.monotonic()
    raw.close()  # silent: the session has to expire
    want = {"a-data": [(EventType.DELETED, "/exp/e")], "b-data": [(EventType.DELETED, "/exp/e")],
            "a-child": [(EventType.CHILD, "/exp")], "b-child": [(EventType.CHILD, "/exp")]}
    wait_until(lambda: dict(got) == want, 6, "expiry events on both workers (got %r)" % got)
    assert time.monotonic() - t0 >= 0.9  # not before the session timed out
    assert a.exists("/exp/e") is None and b.exists("/exp/e") is None


# ---------------------------------------------------------------------------------------------
# 6. kill -9 of one worker


def test_kill9_worker_only_its_clients_reconnect_and_keep_sessions(two_workers, make_client):
    pm = ProcMap(two_workers)
    clients = [fast_client(make_client, two_workers) for _ in range(4)]
    info = []
    for i, c in enumerate(clients):
        c.create("/k9-%d" % i, b"%d" % i, ephemeral=True)
        info.append((c, pm.wait_holder(c), c.client_id[0], local_port(c), StateLog(c)))
    victim = info[0][1]
    survivors_pid = {pid for _, pid, _, _, _ in info} - {victim}
    assert survivors_pid, "all clients on one worker"
    os.kill(victim, signal.SIGKILL)
    new_workers = wait_until(
        lambda: (lambda w: len(w) == 2 and victim not in w and w)(pm.workers()),
        5, "a replacement worker")
    for c, pid, sid, port, states in info:
        if pid == victim:
            wait_until(lambda: KazooState.SUSPENDED in states.states
                       and states.states[-1] == KazooState.CONNECTED, 10, "reconnect")
            assert KazooState.LOST not in states.states
            assert pm.wait_holder(c) in new_workers
        else:
            assert states.states == [], "a client of the other worker saw %s" % states.states
            assert local_port(c) == port
        assert c.client_id[0] == sid
    for i, (c, _, sid, _, _) in enumerate(info):
        data, stat = c.get("/k9-%d" % i)
        assert data == b"%d" % i and stat.ephemeralOwner == sid
    assert all(s.states == [] for _, pid, _, _, s in info if pid != victim)
    assert "worker" in two_workers.log_text()


# ---------------------------------------------------------------------------------------------
# 7. kill -9 of the core


def test_kill9_core_workers_exit_and_acked_writes_survive(two_workers, make_client):
    pm = ProcMap(two_workers)
    workers = wait_until(lambda: len(pm.workers()) == 2 and pm.workers(), 5, "2 workers")
    clients = []
    for _ in range(2):
        c = KazooClient(hosts=two_workers.hosts, timeout=6.0,
                        connection_retry={"max_tries": 0, "delay": 0.05})
        c.start(timeout=10)
        clients.append(c)
    try:
        for c in clients:
            c.ensure_path("/acked")
        results = []
        for i in range(600):
            c = clients[i % 2]
            path = "/acked/n%04d" % i
            results.append((path, c.create_async(path, path.encode())))
            if i == 300:
                wait_until(lambda: sum(r.ready() for _, r in results) >= 50, 5, "some acks")
                os.kill(pm.core, signal.SIGKILL)
        # Every worker notices the core is gone and exits.
        wait_until(lambda: not any(_alive(p) for p in workers), 5, "the workers to exit")
        time.sleep(0.3)
        acked = [p for p, r in results if r.ready() and r.successful()]
        assert len(acked) >= 50
    finally:
        for c in clients:
            c.stop()
            c.close()
    two_workers.kill()  # reaps the dead core
    two_workers.start()
    check = make_client(two_workers)
    present = set(check.get_children("/acked"))
    lost = [p for p in acked if p.rsplit("/", 1)[1] not in present]
    assert lost == [], "%d acknowledged creates lost, e.g. %s" % (len(lost), lost[:5])
    for p in acked[:: max(1, len(acked) // 20)]:
        assert check.get(p)[0] == p.encode()
    assert len(ProcMap(two_workers).workers()) == 2


# ---------------------------------------------------------------------------------------------
# 8. the four-letter words see every worker


def _field(text, name):
    for line in text.splitlines():
        if line.startswith(name):
            return int(line.split()[-1])
    raise AssertionError("%s missing from:\n%s" % (name, text))


def test_four_letter_words_report_all_workers(two_workers, make_client):
    pm = ProcMap(two_workers)
    clients = [fast_client(make_client, two_workers) for _ in range(4)]
    by_worker = {}
    for c in clients:
        by_worker.setdefault(pm.wait_holder(c), []).append(c)
    assert len(by_worker) == 2, by_worker
    ports = [local_port(c) for c in clients]

    cons = two_workers.four_letter("cons")
    stat = two_workers.four_letter("stat")
    for port in ports:
        assert "/127.0.0.1:%d[" % port in cons, cons
        assert "/127.0.0.1:%d[" % port in stat, stat
    n = _field(two_workers.four_letter("mntr"), "zk_num_alive_connections")
    assert n in (len(clients), len(clients) + 1)  # ZooKeeper counts the 4lw connection too
    assert _field(two_workers.four_letter("srvr"), "Connections:") in (len(clients),
                                                                       len(clients) + 1)

    for pid, group in sorted(by_worker.items()):
        before = two_workers.four_letter("srvr")
        for _ in range(10):
            group[0].exists("/")
        after = two_workers.four_letter("srvr")
        assert _field(after, "Received:") >= _field(before, "Received:") + 10, (pid, after)
        assert _field(after, "Sent:") >= _field(before, "Sent:") + 10, (pid, after)


# ---------------------------------------------------------------------------------------------
# 9. each worker count serves the basics


@pytest.mark.parametrize("workers", [0, 1, 4])
def test_smoke_per_worker_count(workers, server_factory, make_client):
    srv = server_factory("zkpy", {"workers": workers})
    pm = ProcMap(srv)
    wait_until(lambda: len(pm.workers()) == workers, 10, "%d workers" % workers)
    time.sleep(0.2)
    assert len(pm.workers()) == workers
    a = fast_client(make_client, srv)
    b = fast_client(make_client, srv)
    holders = {pm.wait_holder(a), pm.wait_holder(b)}
    if workers == 0:
        assert holders == {pm.core}
    else:
        assert pm.core not in holders and holders <= pm.workers()
    fired = threading.Event()
    a.create("/smoke", b"1")
    assert b.get("/smoke", watch=lambda e: fired.set())[0] == b"1"
    a.set("/smoke", b"2")
    assert fired.wait(5)
    assert b.get("/smoke")[0] == b"2"
    assert "Mode: standalone" in srv.four_letter("srvr")
