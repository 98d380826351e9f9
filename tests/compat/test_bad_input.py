"""Bad input on the client port (zkpy only): oversize and malformed frames, unknown ops, refused
handshakes, the per-IP connection limit. After each one the server must still serve others.

Also owns `RawZk`, a minimal raw-socket jute client (struct.pack only, no zkpy imports, so it
speaks to Apache ZooKeeper just as well); test_kazoo_sessions and test_kazoo_watches import it
for what kazoo hides (negotiated timeouts, the order of frames on the wire).
"""

import socket
import struct
import time

import pytest

from compat import servers as zkservers

OP_CREATE = 1
OP_GET_DATA = 4
OP_SET_DATA = 5
OP_PING = 11
OP_CLOSE_SESSION = -11
XID_NOTIFICATION = -1
OPEN_ACL = [(31, "world", "anyone")]


# ---------------------------------------------------------------------------------------------
# Raw jute


def j_int(v):
    return struct.pack(">i", v)


def j_long(v):
    return struct.pack(">q", v)


def j_bool(v):
    return b"\1" if v else b"\0"


def j_buffer(b):
    return j_int(-1) if b is None else j_int(len(b)) + b


def j_string(s):
    return j_buffer(None if s is None else s.encode("utf-8"))


def j_acl(acl):
    out = j_int(len(acl))
    for perms, scheme, ident in acl:
        out += j_int(perms) + j_string(scheme) + j_string(ident)
    return out


def connect_request(timeout_ms=10000, session_id=0, passwd=b"\0" * 16, last_zxid=0,
                    read_only=False):
    return (j_int(0) + j_long(last_zxid) + j_int(timeout_ms) + j_long(session_id)
            + j_buffer(passwd) + j_bool(read_only))


def get_data_body(path, watch=False):
    return j_string(path) + j_bool(watch)


def create_body(path, data=b"", flags=0, acl=OPEN_ACL):
    return j_string(path) + j_buffer(data) + j_acl(acl) + j_int(flags)


def set_data_body(path, data, version=-1):
    return j_string(path) + j_buffer(data) + j_int(version)


class Reply(object):
    def __init__(self, xid, zxid, err, body):
        self.xid, self.zxid, self.err, self.body = xid, zxid, err, body

    def __repr__(self):
        return "Reply(xid=%d, zxid=0x%x, err=%d, %d body bytes)" % (
            self.xid, self.zxid, self.err, len(self.body))

    @property
    def is_event(self):
        return self.xid == XID_NOTIFICATION

    def event(self):
        """(type, state, path) of a watch notification."""
        etype, state, n = struct.unpack_from(">iii", self.body, 0)
        return etype, state, self.body[12:12 + n].decode("utf-8")

    def data(self):
        """The data of a GetDataResponse."""
        (n,) = struct.unpack_from(">i", self.body, 0)
        return b"" if n < 0 else self.body[4:4 + n]


class RawZk(object):
    """One TCP connection speaking ZooKeeper's framing by hand."""

    def __init__(self, port, io_timeout=5.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=io_timeout)
        self.xid = 0
        self.session_id = 0
        self.passwd = None
        self.timeout_ms = None
        self.frames = []  # every frame received, in order (events and replies)

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send_raw(self, data):
        self.sock.sendall(data)

    def send_frame(self, body):
        self.sock.sendall(j_int(len(body)) + body)

    def _recv_exact(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise EOFError("connection closed by the server")
            buf += chunk
        return buf

    def recv_frame(self):
        (n,) = struct.unpack(">i", self._recv_exact(4))
        return self._recv_exact(n)

    def connect(self, **kw):
        """Handshake; returns (protocolVersion, timeOut, sessionId, passwd)."""
        self.send_frame(connect_request(**kw))
        body = self.recv_frame()
        proto, timeout_ms, sid, plen = struct.unpack_from(">iiqi", body, 0)
        passwd = body[20:20 + plen]
        self.session_id, self.passwd, self.timeout_ms = sid, passwd, timeout_ms
        return proto, timeout_ms, sid, passwd

    def send_request(self, op, body=b"", xid=None):
        if xid is None:
            self.xid += 1
            xid = self.xid
        self.send_frame(j_int(xid) + j_int(op) + body)
        return xid

    def recv_reply(self):
        body = self.recv_frame()
        xid, zxid, err = struct.unpack_from(">iqi", body, 0)
        reply = Reply(xid, zxid, err, body[16:])
        self.frames.append(reply)
        return reply

    def call(self, op, body=b"", xid=None):
        """Send a request and read frames until its reply (events on the way are kept)."""
        xid = self.send_request(op, body, xid)
        while True:
            reply = self.recv_reply()
            if reply.xid == xid:
                return reply

    def wait_closed(self, timeout=5.0):
        """True when the server closes the connection within `timeout` (any data is dropped)."""
        self.sock.settimeout(timeout)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if not self.sock.recv(65536):
                    return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False
        return False


# ---------------------------------------------------------------------------------------------
# Fixtures


def _require_zkpy(zk_targets):
    if "zkpy" not in zk_targets:
        pytest.skip("zkpy not in ZKPY_TEST_TARGETS")
    reason = zkservers.zkpy_unavailable()
    if reason:
        pytest.skip(reason)


@pytest.fixture(scope="module")
def server(zk_targets, tmp_path_factory):
    _require_zkpy(zk_targets)
    srv = zkservers.make_server("zkpy", tmp_path_factory.mktemp("zkpy-bad"))
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def log_since(server):
    """log_since() -> the server log written since the test started."""
    start = len(server.log_text())
    return lambda: server.log_text()[start:]


@pytest.fixture(autouse=True)
def still_serving(request):
    """After every test: the server process is alive and a normal kazoo client works."""
    yield
    if "server" not in request.fixturenames:
        return
    srv = request.getfixturevalue("server")
    assert srv.running(), "zkpy server process died:\n" + srv.log_tail()
    assert_kazoo_works(srv)


def assert_kazoo_works(srv):
    from kazoo.client import KazooClient

    client = KazooClient(hosts=srv.hosts, timeout=5.0)
    client.start(timeout=10)
    try:
        path = client.create("/alive-", b"ok", sequence=True, ephemeral=True)
        assert client.get(path)[0] == b"ok"
    finally:
        client.stop()
        client.close()


def wait_for_log(log_since, needle, timeout=3.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if needle in log_since():
            return True
        time.sleep(0.05)
    return False


# ---------------------------------------------------------------------------------------------
# Tests


def test_raw_client_sanity(server):
    with RawZk(server.port) as raw:
        proto, timeout_ms, sid, passwd = raw.connect(timeout_ms=6000)
        assert (proto, timeout_ms) == (0, 6000) and sid != 0 and len(passwd) == 16
        assert raw.call(OP_PING, xid=-2).err == 0
        assert raw.call(OP_GET_DATA, get_data_body("/missing")).err == -101  # NONODE


def test_frame_over_jute_maxbuffer_closes_connection(server, log_since):
    with RawZk(server.port) as raw:
        raw.connect()
        raw.send_raw(j_int(0xFFFFF + 1) + b"\0" * 64)
        assert raw.wait_closed()
    assert wait_for_log(log_since, "exceeds jute.maxbuffer"), log_since()


def test_oversize_first_frame_closes_connection(server, log_since):
    with RawZk(server.port) as raw:
        raw.send_raw(j_int(50_000_000) + b"\0" * 64)
        assert raw.wait_closed()
    assert wait_for_log(log_since, "jute.maxbuffer"), log_since()


def test_negative_frame_length_closes_connection(server):
    with RawZk(server.port) as raw:
        raw.connect()
        raw.send_raw(j_int(-5))
        assert raw.wait_closed()


def test_truncated_connect_request_closes_connection(server, log_since):
    with RawZk(server.port) as raw:
        raw.send_frame(connect_request()[:10])
        assert raw.wait_closed()
    assert wait_for_log(log_since, "closing connection"), log_since()


def test_connect_request_with_bad_passwd_length_closes_connection(server):
    body = j_int(0) + j_long(0) + j_int(10000) + j_long(0) + j_int(4096) + b"\0" * 16
    with RawZk(server.port) as raw:
        raw.send_frame(body)
        assert raw.wait_closed()


def test_unknown_opcode_answers_unimplemented_and_connection_stays(server):
    with RawZk(server.port) as raw:
        raw.connect()
        reply = raw.call(999, b"\0\1\2\3")
        assert reply.err == -6  # UNIMPLEMENTED
        assert reply.body == b""
        # The same connection keeps working.
        created = raw.call(OP_CREATE, create_body("/after-unknown-op", b"v", flags=1))
        assert created.err == 0
        got = raw.call(OP_GET_DATA, get_data_body("/after-unknown-op"))
        assert got.err == 0 and got.data() == b"v"
        assert got.xid == raw.xid


def test_garbage_get_data_body_closes_connection(server, log_since):
    with RawZk(server.port) as raw:
        raw.connect()
        # A path length of -16777216: neither null (-1) nor a length.
        raw.send_request(OP_GET_DATA, b"\xff\x00\x00\x00\x01")
        assert raw.wait_closed()
    assert wait_for_log(log_since, "closing connection"), log_since()


def test_truncated_get_data_body_closes_connection(server, log_since):
    with RawZk(server.port) as raw:
        raw.connect()
        raw.send_request(OP_GET_DATA, j_int(100) + b"/short")
        assert raw.wait_closed()
    assert wait_for_log(log_since, "closing connection"), log_since()


def test_request_before_handshake_is_taken_as_connect_request(server):
    # The first frame is always a ConnectRequest: a getData header + body read as one gives a
    # lastZxidSeen of 0x4_0000000c (op 4, path length 12), far beyond the server's zxid.
    with RawZk(server.port) as raw:
        raw.send_request(OP_GET_DATA, get_data_body("/zookeeper/x"), xid=1)
        raw.sock.settimeout(5.0)
        try:
            data = raw.sock.recv(65536)
        except ConnectionResetError:
            data = b""
        assert data == b"", "the server answered a request sent before the handshake"


def test_last_zxid_seen_ahead_of_server_is_refused(server, log_since):
    with RawZk(server.port) as raw:
        raw.send_frame(connect_request(last_zxid=1 << 40))
        raw.sock.settimeout(5.0)
        try:
            data = raw.sock.recv(65536)
        except ConnectionResetError:
            data = b""
        assert data == b"", "no ConnectResponse for a client from the future"
    assert wait_for_log(log_since, "client must try another server"), log_since()


def test_close_session_closes_connection(server):
    with RawZk(server.port) as raw:
        raw.connect()
        assert raw.call(OP_CLOSE_SESSION).err == 0
        assert raw.wait_closed()


def test_pipelined_requests_answered_in_order(server):
    with RawZk(server.port) as raw:
        raw.connect()
        xids = [raw.send_request(OP_CREATE, create_body("/pipe-%d" % i, flags=1))
                for i in range(5)]
        xids += [raw.send_request(OP_GET_DATA, get_data_body("/pipe-4"))]
        got = [raw.recv_reply() for _ in xids]
        assert [r.xid for r in got] == xids
        assert all(r.err == 0 for r in got)


def test_max_client_cnxns_per_ip(zk_targets, tmp_path_factory):
    _require_zkpy(zk_targets)
    srv = zkservers.make_server("zkpy", tmp_path_factory.mktemp("zkpy-cnx"),
                                {"maxClientCnxns": "3"})
    srv.start()
    raws = []
    try:
        for _ in range(3):
            raw = RawZk(srv.port)
            raws.append(raw)
            assert raw.connect()[2] != 0
        fourth = RawZk(srv.port)
        raws.append(fourth)
        assert fourth.wait_closed(), "the 4th connection from 127.0.0.1 was not closed"
        assert "too many connections" in srv.log_text()
        # The first three still work.
        for raw in raws[:3]:
            assert raw.call(OP_PING, xid=-2).err == 0
        # A freed slot can be used again.
        raws[0].close()
        deadline = time.monotonic() + 5
        while True:
            again = RawZk(srv.port)
            raws.append(again)
            try:
                assert again.connect()[2] != 0
                break
            except (EOFError, ConnectionResetError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        for raw in raws[1:3]:
            raw.close()
        assert srv.running()
        deadline = time.monotonic() + 5
        while True:  # the server notices the closed sockets asynchronously
            try:
                assert_kazoo_works(srv)
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
    finally:
        for raw in raws:
            raw.close()
        srv.stop()


def test_server_alive_after_everything(server):
    assert server.running()
    assert server.four_letter("ruok") == "imok"
