"""Security fails closed (issue 15, first part).

- A zoo.cfg key asking for security zkpy does not provide stops zkpy-server: exit status 2 and
  one line on stderr naming the file, line and key; nothing listens on the client port.
- SASL with `authProvider.1=...SASLAuthenticationProvider` and no JAAS file, side by side with
  Apache ZooKeeper 3.8 (same zoo.cfg): both serve plain sessions, and a SASL login fails the same
  way. ZooKeeper without a JAAS `Server` section has no SASL server for the connection: it answers
  every SASL token (opcode 102) with OK and a null token and never completes the login, and the
  SASL packets do not touch the session. kazoo (DIGEST-MD5) then keeps sending tokens until the
  server expires its session and drops the connection: AuthFailedError ("Connection dropped in
  SASL"), state AUTH_FAILED. `addauth sasl ...` answers AUTHFAILED and closes on both.
"""

import logging
import socket
import struct
import subprocess
import sys
import time

import pytest

from compat import servers as zkservers
from compat.test_bad_input import OP_GET_DATA, RawZk, get_data_body, j_buffer, j_int, j_string

OP_AUTH = 100
OP_SASL = 102
AUTHFAILED = -115
SASL_PROVIDER = "org.apache.zookeeper.server.auth.SASLAuthenticationProvider"
# tickTime=500 (both servers): minSessionTimeout 1000 ms, so the expiry waits stay short.
SASL_CFG = {"authProvider.1": SASL_PROVIDER, "tickTime": "500"}
SESSION_MS = 1500
SASL_OPTIONS = {"mechanism": "DIGEST-MD5", "username": "u", "password": "p"}


# ---------------------------------------------------------------------------------------------
# refused keys: the server does not start

@pytest.mark.parametrize("key,value", [
    # (TLS and SASL, between servers too, are provided: test_tls.py, test_quorum_security.py)
    ("admin.forceHttps", "true"),
    ("kerberos.canonicalizeHostNames", "true"),
])
def test_zkpy_server_refuses_to_start_naming_key_and_line(zk_targets, tmp_path, key, value):
    if "zkpy" not in zk_targets:
        pytest.skip("zkpy not in ZKPY_TEST_TARGETS")
    reason = zkservers.zkpy_unavailable()
    if reason:
        pytest.skip(reason)
    port = zkservers.free_port()
    if value is None:
        value = str(zkservers.free_port())
    cfg = tmp_path / "zoo.cfg"
    lines = [
        "# a production zoo.cfg, as a new user would try it",
        "tickTime=2000",
        "dataDir=%s" % (tmp_path / "data"),
        "clientPort=%d" % port,
        "clientPortAddress=127.0.0.1",
        "admin.enableServer=false",
        "%s=%s" % (key, value),  # line 7
        "authProvider.1=" + SASL_PROVIDER,
    ]
    cfg.write_text("\n".join(lines) + "\n")
    server = zkservers.make_server("zkpy", tmp_path / "unused")
    proc = subprocess.run(
        [sys.executable, "-m", "zkpy.cli.server", "start-foreground", str(cfg)],
        cwd=str(tmp_path), env=server.env(), stdin=subprocess.DEVNULL, capture_output=True,
        timeout=60)
    err = proc.stderr.decode("utf-8", "replace")
    assert proc.returncode == 2, (proc.returncode, err, proc.stdout)
    err_lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(err_lines) == 1, err
    assert err_lines[0].startswith("zkpy-server: invalid config: %s:7: %s: " % (cfg, key)), err
    assert "does not provide" in err_lines[0]
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1.0).close()
    assert not (tmp_path / "data" / "zkpy-db").exists()


# ---------------------------------------------------------------------------------------------
# SASL provider without a JAAS file, side by side

@pytest.fixture(scope="module")
def sasl_servers(zk_targets, tmp_path_factory):
    """{kind: started server with authProvider.1=SASLAuthenticationProvider and no JAAS file}."""
    made = {}
    try:
        for kind in zk_targets:
            if zkservers.UNAVAILABLE[kind]():
                continue
            srv = zkservers.make_server(kind, tmp_path_factory.mktemp("%s-sasl" % kind),
                                        SASL_CFG)
            made[kind] = srv.start()
        yield made
    finally:
        for srv in made.values():
            srv.stop()


def _kinds(sasl_servers):
    if not sasl_servers:
        pytest.skip("no server available")
    return sorted(sasl_servers)


def _same_on_all(results):
    """The per-kind results are equal (with one kind: the expected value is checked by the
    caller)."""
    values = list(results.values())
    assert all(v == values[0] for v in values), results
    return values[0]


def _raw_sasl_transcript(srv):
    out = []
    with RawZk(srv.port) as raw:
        _, timeout_ms, _, _ = raw.connect(timeout_ms=SESSION_MS)
        assert timeout_ms == SESSION_MS
        # kazoo's first DIGEST-MD5 token is empty; then anything: no SASL server reads them.
        for token in (b"", b"charset=utf-8,username=\"u\",response=00", b"\0" * 100):
            body = j_buffer(token)
            reply = raw.call(OP_SASL, body)
            out.append(("sasl", reply.xid == raw.xid, reply.zxid, reply.err, reply.body))
        # A plain request on the same connection still works.
        reply = raw.call(OP_GET_DATA, get_data_body("/zookeeper"))
        out.append(("getData", reply.err))
        # SASL tokens alone do not keep the session alive: it expires and the server closes.
        t0 = time.monotonic()
        closed_after = None
        raw.sock.settimeout(0.2)
        while time.monotonic() - t0 < 4 * SESSION_MS / 1000.0:
            try:
                raw.send_request(OP_SASL, j_buffer(b""))
                while True:
                    raw.recv_reply()
            except socket.timeout:
                continue
            except (EOFError, ConnectionResetError, BrokenPipeError):
                closed_after = time.monotonic() - t0
                break
            except struct.error:
                closed_after = time.monotonic() - t0
                break
    out.append(("closed by expiry", closed_after is not None
                and closed_after >= SESSION_MS / 1000.0 * 0.7))
    return out


def test_raw_sasl_packets_answered_ok_with_null_token_and_session_expires(sasl_servers):
    results = {kind: _raw_sasl_transcript(sasl_servers[kind]) for kind in _kinds(sasl_servers)}
    got = _same_on_all(results)
    null_token = j_int(-1)
    assert got == [("sasl", True, 0, 0, null_token)] * 3 + [
        ("getData", 0), ("closed by expiry", True)], results


def _null_sasl_token(srv):
    with RawZk(srv.port) as raw:
        raw.connect()
        raw.send_request(OP_SASL, j_buffer(None))
        return raw.wait_closed()


def test_null_sasl_token_closes_the_connection(sasl_servers):
    # ZooKeeper fails on the null token (NullPointerException) and drops the connection.
    results = {kind: _null_sasl_token(sasl_servers[kind]) for kind in _kinds(sasl_servers)}
    assert _same_on_all(results) is True, results
    for srv in sasl_servers.values():
        assert srv.running()


def _addauth_sasl(srv):
    with RawZk(srv.port) as raw:
        raw.connect()
        reply = raw.call(OP_AUTH, j_int(0) + j_string("sasl") + j_buffer(b"u:p"), xid=-4)
        return reply.err, raw.wait_closed()


def test_addauth_sasl_fails_and_closes(sasl_servers):
    results = {kind: _addauth_sasl(sasl_servers[kind]) for kind in _kinds(sasl_servers)}
    assert _same_on_all(results) == (AUTHFAILED, True), results


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def _kazoo_sasl_transcript(srv):
    from kazoo.client import KazooClient

    records = _Records()
    kazoo_log = logging.getLogger("kazoo.client")
    kazoo_log.addHandler(records)
    client = KazooClient(hosts=srv.hosts, timeout=SESSION_MS / 1000.0,
                         sasl_options=dict(SASL_OPTIONS), connection_retry={"max_tries": 0})
    states = []
    real_callback = client._session_callback

    def spy(state):
        states.append(str(state))
        real_callback(state)

    client._session_callback = spy
    out = []
    try:
        t0 = time.monotonic()
        client.start(timeout=15)  # CONNECTED comes before the SASL exchange
        out.append(("start", client.connected))
        try:
            client.create("/made-by-sasl-client", b"x")
            out.append(("create", "ok"))
        except Exception as e:  # noqa: BLE001 -- the exception type is the result
            out.append(("create", type(e).__name__))
        out.append(("failed after the session timeout",
                    time.monotonic() - t0 >= SESSION_MS / 1000.0 * 0.7))
        deadline = time.monotonic() + 10
        while "CLOSED" not in states and time.monotonic() < deadline:
            time.sleep(0.05)
        out.append(("states", [s for s in states if s != "CONNECTING"]))
        out.append(("kazoo says", [m for m in records.messages if "AUTH_FAILED" in m]))
    finally:
        kazoo_log.removeHandler(records)
        client.stop()
        client.close()
    # A plain session on the same server works, and the SASL client created nothing.
    plain = KazooClient(hosts=srv.hosts, timeout=10.0)
    plain.start(timeout=15)
    try:
        out.append(("sasl client's node exists", plain.exists("/made-by-sasl-client") is not None))
        path = plain.create("/plain-", b"v", sequence=True, ephemeral=True)
        out.append(("plain session", plain.get(path)[0]))
    finally:
        plain.stop()
        plain.close()
    return out


def test_kazoo_sasl_login_fails_as_on_zookeeper_plain_sessions_work(sasl_servers):
    pytest.importorskip("puresasl", reason="kazoo's SASL needs pure-sasl (the test extras)")
    results = {kind: _kazoo_sasl_transcript(sasl_servers[kind])
               for kind in _kinds(sasl_servers)}
    got = _same_on_all(results)
    assert got == [
        ("start", True),
        ("create", "AuthFailedError"),
        ("failed after the session timeout", True),
        ("states", ["CONNECTED", "AUTH_FAILED", "CLOSED"]),
        ("kazoo says", ["AUTH_FAILED closing: Connection dropped in SASL"]),
        ("sasl client's node exists", False),
        ("plain session", b"v"),
    ], results


def test_zkpy_logs_one_line_per_sasl_connection(sasl_servers):
    srv = sasl_servers.get("zkpy")
    if srv is None:
        pytest.skip("zkpy not selected or unavailable")
    before = srv.log_text().count("asked for SASL authentication")
    with RawZk(srv.port) as raw:
        raw.connect()
        for _ in range(20):
            assert raw.call(OP_SASL, j_buffer(b"")).err == 0
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        if srv.log_text().count("asked for SASL authentication") > before:
            break
        time.sleep(0.05)
    assert srv.log_text().count("asked for SASL authentication") == before + 1
