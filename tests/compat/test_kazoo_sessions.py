"""Sessions with kazoo against both servers: expiry, reconnect with id+password, close, restarts.

Short timeouts throughout: the servers run with tickTime=500, minSessionTimeout=1000 and
maxSessionTimeout=6000. A session is expired without closing it by cutting its TCP path
(`TcpProxy` below, which test_kazoo_watches also imports) or by dropping a raw socket.
"""

import logging
import queue
import socket
import threading
import time

import pytest
from kazoo.client import KazooClient, KazooState
from kazoo.protocol.states import EventType

from compat import servers as zkservers
from compat.test_bad_input import OP_CREATE, OP_PING, RawZk, create_body

SESSION_CFG = {"tickTime": "500", "minSessionTimeout": "1000", "maxSessionTimeout": "6000"}
FAST_RETRY = {"max_tries": -1, "delay": 0.05, "backoff": 1.5, "max_delay": 0.3}


class TcpProxy(object):
    """A 127.0.0.1 port forwarding to `target_port`. `cut()` drops every connection and makes
    new ones fail (accepted and closed at once) until `restore()`: to the client it looks like
    the server went away, while the server sees a silent session."""

    def __init__(self, target_port):
        self.target_port = target_port
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(16)
        self.lsock.settimeout(0.2)
        self.port = self.lsock.getsockname()[1]
        self.hosts = "127.0.0.1:%d" % self.port
        self.blocked = False
        self.stopped = False
        self.lock = threading.Lock()
        self.socks = []
        self.thread = threading.Thread(target=self._accept_loop, daemon=True)
        self.thread.start()

    def _accept_loop(self):
        while not self.stopped:
            try:
                client, _ = self.lsock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            if self.blocked:
                client.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            client.settimeout(None)
            with self.lock:
                self.socks += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self):
        self.blocked = True
        with self.lock:
            socks, self.socks = self.socks, []
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def restore(self):
        self.blocked = False

    def close(self):
        self.stopped = True
        self.cut()
        self.lsock.close()
        self.thread.join(2)


def wait_until(pred, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.1fs waiting for %s" % (timeout, what))
        time.sleep(0.05)


class StateLog(object):
    """A kazoo connection listener that records every state change."""

    def __init__(self, client):
        self.states = []
        client.add_listener(self.states.append)

    def saw(self, *states):
        return all(s in self.states for s in states)


def watch_queue():
    q = queue.Queue()
    return q, q.put


def next_event(q, timeout=10.0):
    try:
        return q.get(timeout=timeout)
    except queue.Empty:
        raise AssertionError("no watch event within %.1fs" % timeout) from None


@pytest.fixture(scope="module")
def sserver(zk_kind, tmp_path_factory):
    """One server per kind with short session timeouts, shared by the tests that don't
    restart it."""
    server = zkservers.make_server(zk_kind, tmp_path_factory.mktemp("%s-sess" % zk_kind),
                                   SESSION_CFG)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def proxy_to():
    made = []

    def factory(server):
        p = TcpProxy(server.port)
        made.append(p)
        return p

    yield factory
    for p in made:
        p.close()


# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("requested, negotiated", [(10, 1000), (2500, 2500), (10**6, 6000)])
def test_timeout_negotiation_clamps_to_min_max(sserver, requested, negotiated):
    with RawZk(sserver.port) as raw:
        proto, timeout_ms, sid, passwd = raw.connect(timeout_ms=requested)
        assert timeout_ms == negotiated
        assert sid != 0 and len(passwd) == 16


def test_kazoo_session_timeout_negotiated(sserver, make_client):
    """kazoo keeps its requested timeout in _session_timeout; the negotiated one is only in its
    BLATHER log line "Session created ... negotiated session timeout: N"."""
    seen = []

    class Grab(logging.Handler):
        def emit(self, record):
            if "negotiated session timeout" in str(record.msg):
                seen.append(record.args[2])

    logger = logging.getLogger("test_kazoo_sessions.kazoo")
    logger.setLevel(1)
    handler = Grab()
    logger.addHandler(handler)
    try:
        make_client(sserver, timeout=0.2, logger=logger)
        make_client(sserver, timeout=60.0, logger=logger)
    finally:
        logger.removeHandler(handler)
    assert seen == [1000, 6000]


def test_expiry_removes_ephemerals_and_fires_node_deleted(sserver, make_client):
    observer = make_client(sserver)
    raw = RawZk(sserver.port)
    _, timeout_ms, sid, _ = raw.connect(timeout_ms=1000)
    assert raw.call(OP_CREATE, create_body("/exp-eph", b"x", flags=1)).err == 0
    events, cb = watch_queue()
    stat = observer.exists("/exp-eph", watch=cb)
    assert stat.ephemeralOwner == sid
    t0 = time.monotonic()
    raw.close()  # no closeSession: the session lives on until it times out
    assert observer.exists("/exp-eph") is not None
    ev = next_event(events, timeout=10)
    elapsed = time.monotonic() - t0
    assert (ev.type, ev.path) == (EventType.DELETED, "/exp-eph")
    assert observer.exists("/exp-eph") is None
    assert elapsed > 0.5, "ephemeral removed before the session timeout (%.2fs)" % elapsed


def test_expired_session_reconnect_gets_zero_timeout(sserver):
    raw = RawZk(sserver.port)
    _, _, sid, passwd = raw.connect(timeout_ms=1000)
    raw.close()
    time.sleep(2.5)  # > timeout + a tick
    with RawZk(sserver.port) as again:
        proto, timeout_ms, new_sid, new_passwd = again.connect(session_id=sid, passwd=passwd,
                                                               timeout_ms=1000)
        assert (timeout_ms, new_sid, new_passwd) == (0, 0, b"\0" * 16)
        assert again.wait_closed()


def test_expired_kazoo_client_is_lost_and_gets_new_session(sserver, make_client, proxy_to):
    proxy = proxy_to(sserver)
    client = make_client(proxy.hosts, timeout=1.0, connection_retry=FAST_RETRY)
    states = StateLog(client)
    observer = make_client(sserver)
    old_sid = client.client_id[0]
    client.create("/lost-eph", ephemeral=True)
    events, cb = watch_queue()
    assert observer.exists("/lost-eph", watch=cb) is not None
    proxy.cut()
    ev = next_event(events, timeout=10)
    assert (ev.type, ev.path) == (EventType.DELETED, "/lost-eph")
    proxy.restore()
    wait_until(lambda: states.saw(KazooState.LOST), what="kazoo LOST state")
    wait_until(lambda: client.connected and client.client_id[0] != old_sid, what="new session")
    assert client.exists("/lost-eph") is None
    client.create("/lost-eph", ephemeral=True)
    assert client.exists("/lost-eph").ephemeralOwner == client.client_id[0]


def test_reconnect_with_session_id_and_password_keeps_ephemerals(sserver, make_client):
    raw = RawZk(sserver.port)
    _, timeout_ms, sid, passwd = raw.connect(timeout_ms=2000)
    assert raw.call(OP_CREATE, create_body("/keep-eph", b"k", flags=1)).err == 0
    raw.close()
    client = make_client(sserver, timeout=2.0, client_id=(sid, passwd))
    assert client.client_id[0] == sid
    assert client.exists("/keep-eph").ephemeralOwner == sid
    time.sleep(3.0)  # longer than the timeout: the kazoo pings keep the session
    observer = make_client(sserver)
    assert observer.exists("/keep-eph").ephemeralOwner == sid
    client.stop()  # closeSession: the ephemeral goes at once
    assert observer.exists("/keep-eph") is None


def test_wrong_password_is_expired_and_does_not_hurt_the_session(sserver, make_client, caplog):
    raw = RawZk(sserver.port)
    _, _, sid, passwd = raw.connect(timeout_ms=6000)
    assert raw.call(OP_CREATE, create_body("/pw-eph", flags=1)).err == 0
    bad = bytes(b ^ 0xFF for b in passwd)
    with RawZk(sserver.port) as other:
        assert other.connect(session_id=sid, passwd=bad)[1:] == (0, 0, b"\0" * 16)
        assert other.wait_closed()
    # kazoo with the wrong password: "Session has expired", then a fresh session. (kazoo
    # starts in LOST, so the listener sees no LOST transition here.)
    client = KazooClient(hosts=sserver.hosts, timeout=2.0, client_id=(sid, bad),
                         connection_retry=FAST_RETRY)
    try:
        with caplog.at_level(logging.WARNING, logger="kazoo.client"):
            client.start(timeout=15)
        assert "Session has expired" in caplog.text
        assert client.connected and client.client_id[0] != sid
    finally:
        client.stop()
        client.close()
    # The session and its ephemeral live on. (Apache closes the owner's connection as soon as
    # a reconnect names its session, before checking the password; zkpy checks first. Either
    # way the owner can come back with the right password.)
    raw.close()
    with RawZk(sserver.port) as owner:
        assert owner.connect(session_id=sid, passwd=passwd, timeout_ms=6000)[2] == sid
        assert owner.call(OP_PING, xid=-2).err == 0
        observer = make_client(sserver)
        assert observer.exists("/pw-eph").ephemeralOwner == sid


def test_close_removes_ephemerals_immediately(sserver, make_client):
    owner = make_client(sserver, timeout=6.0)
    observer = make_client(sserver)
    owner.create("/close-eph/a", makepath=True)
    owner.create("/close-eph/a/e", ephemeral=True)
    owner.create("/close-eph/seq-", ephemeral=True, sequence=True)
    events, cb = watch_queue()
    observer.get_children("/close-eph", watch=cb)
    t0 = time.monotonic()
    owner.stop()
    ev = next_event(events, timeout=5)
    assert (ev.type, ev.path) == (EventType.CHILD, "/close-eph")
    assert time.monotonic() - t0 < 3.0  # long before the 6 s session timeout
    assert observer.get_children("/close-eph") == ["a"]
    assert observer.get_children("/close-eph/a") == []


# -- restarts ---------------------------------------------------------------------------------


def test_session_and_ephemerals_survive_server_restart(zk_kind, server_factory, make_client,
                                                       proxy_to):
    # A session timeout well above a server restart on a loaded machine (Apache's JVM start
    # took > 6 s once in CI's load, and the session expired as it should).
    server = server_factory(zk_kind, dict(SESSION_CFG, maxSessionTimeout="20000"))
    # Through a proxy closed while the server starts: Apache 3.8 accepts connections before
    # its database is loaded, and one taken then can hang (the NullPointerException in
    # NIOServerCnxn.close of a "ZooKeeperServer not running" connection leaves it open), so
    # kazoo waited out its whole 20 s handshake timeout once in CI.
    proxy = proxy_to(server)
    client = make_client(proxy.hosts, timeout=20.0, connection_retry=FAST_RETRY)
    states = StateLog(client)
    sid = client.client_id[0]
    client.create("/r/eph", b"e", ephemeral=True, makepath=True)
    client.create("/r/persist", b"p")
    server.stop()
    wait_until(lambda: states.saw(KazooState.SUSPENDED), what="SUSPENDED")
    proxy.cut()
    server.start()
    proxy.restore()
    wait_until(lambda: states.states[-1] == KazooState.CONNECTED, timeout=15,
               what="reconnect after restart")
    assert KazooState.LOST not in states.states
    assert client.client_id[0] == sid
    assert client.get("/r/eph")[1].ephemeralOwner == sid
    assert client.get("/r/persist")[0] == b"p"
    observer = make_client(server)
    assert observer.exists("/r/eph").ephemeralOwner == sid
    client.stop()
    assert observer.exists("/r/eph") is None


@pytest.mark.parametrize("how", ["sigterm", "sigkill"])
def test_acknowledged_writes_survive_restart(zk_kind, server_factory, make_client, how):
    server = server_factory(zk_kind, SESSION_CFG)
    client = make_client(server, timeout=2.0)
    client.create("/dur", b"root")
    for i in range(30):
        client.create("/dur/n%02d" % i, b"v%d" % i)
    client.set("/dur/n00", b"changed")
    client.delete("/dur/n01")
    last = client.create("/dur/seq-", b"s", sequence=True, include_data=True)
    client.stop()
    client.close()
    if how == "sigkill":
        server.kill()
    else:
        server.stop()
    server.start()
    after = make_client(server, timeout=2.0)
    children = after.get_children("/dur")
    assert len(children) == 30 and "n01" not in children
    data, stat = after.get("/dur/n00")
    assert (data, stat.version) == (b"changed", 1)
    assert after.get("/dur/n29")[0] == b"v29"
    assert after.exists(last[0]).czxid == last[1].czxid
    # New zxids continue after the recovered ones.
    _, stat = after.create("/dur/later", include_data=True)
    assert stat.czxid > last[1].czxid
