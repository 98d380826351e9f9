"""TLS client connections and x509 identities, side by side with Apache ZooKeeper 3.8.

Both servers get the same zoo.cfg (secureClientPort or client.portUnification, the ssl.* keys,
NettyServerCnxnFactory for ZooKeeper) and the same stores: PEM, PKCS12 and JKS (keytool-made,
as ZooKeeper's admin guide makes them), generated here (tests/compat/tlsstores.py). Clients:
kazoo with use_ssl (a PEM certificate and key) and zkCli.sh with the Netty socket and JKS stores.
Each test asserts the same outcome on both servers; what only zkpy has (client.certReload,
which Debian's ZooKeeper 3.8.0 predates, and the log lines) is checked on zkpy alone.
"""

import os
import select
import socket
import ssl
import struct
import subprocess
import signal
import time

import pytest
from kazoo.exceptions import NoAuthError
from kazoo.handlers.threading import KazooTimeoutError
from kazoo.security import ACL, Id, Permissions

from . import tlsstores as ts
from .servers import ZKCLI, free_port, zkcli_unavailable

pytestmark = pytest.mark.timeout(180)


def _subject(ident):
    from zkpy.server.tls import subject_name
    return subject_name(ident.cert)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    reason = ts.keytool_unavailable()
    if reason:
        pytest.skip(reason)
    d = tmp_path_factory.mktemp("tls")
    ca = ts.make_ca()
    other = ts.make_ca("another CA")
    idents = {
        "server": ts.make_cert(ca, "localhost", server=True),
        "alice": ts.make_cert(ca, ts.name("alice", ou="Eng", o="Example, Inc.", c="US")),
        "bob": ts.make_cert(ca, "bob"),
        "admin": ts.make_cert(ca, "admin"),
        "stranger": ts.make_cert(other, "stranger"),
        "expired": ts.make_cert(ca, "late", expired=True),
    }
    files = {k: ts.write_pem_files(d, k, v)[:2] for k, v in idents.items()}
    ca_pem = ts.write_pem_trust(d / "ca.pem", ca)
    stores = {
        "pem": (ts.write_pem_files(d, "server", idents["server"])[2], ca_pem, None),
        "pkcs12": (ts.write_p12(d / "server.p12", idents["server"]),
                   ts.keytool_truststore(d / "trust.p12", ca, storetype="PKCS12"), ts.PASSWORD),
        "jks": (ts.keytool_keystore(d / "server.jks", idents["server"]),
                ts.keytool_truststore(d / "trust.jks", ca), ts.PASSWORD),
    }
    return dict(dir=d, ca=ca, other=other, idents=idents, files=files, ca_pem=ca_pem,
                stores=stores)


def start(server_factory, kind, pki, stores="pem", secure=True, workers=None, **extra):
    """A server with TLS: secureClientPort beside clientPort (secure=True), or TLS on the
    client port itself (client.portUnification=true, secure=False)."""
    ks, trust, pw = pki["stores"][stores]
    cfg = ts.tls_cfg(ks, trust, password=pw)
    secure_port = None
    if secure:
        secure_port = free_port()
        cfg.update({"secureClientPort": secure_port, "secureClientPortAddress": "127.0.0.1"})
    else:
        cfg["client.portUnification"] = "true"
    if workers is not None and kind == "zkpy":
        cfg["workers"] = workers
    cfg.update(extra)
    server = server_factory(kind, cfg)
    server.secure_port = secure_port or server.port
    return server


@pytest.fixture
def tls_client(pki):
    made = []

    def connect(server, who="alice", timeout=10.0, port=None):
        from kazoo.client import KazooClient
        kw = {}
        if who is not None:
            crt, key = pki["files"][who]
            kw = dict(certfile=crt, keyfile=key)
        c = KazooClient(hosts="127.0.0.1:%d" % (port or server.secure_port), use_ssl=True,
                        ca=pki["ca_pem"], verify_certs=True, timeout=10.0,
                        connection_retry={"max_tries": -1, "delay": 0.2, "max_delay": 0.5},
                        **kw)
        made.append(c)
        c.start(timeout=timeout)
        return c

    yield connect
    for c in made:
        try:
            c.stop()
        finally:
            c.close()


def refused(connect, *args, **kw):
    """True when a TLS client cannot get a session (the server closes its connection)."""
    try:
        connect(*args, timeout=2.0, **kw)   # a session comes in ~0.1 s when granted
    except KazooTimeoutError:
        return True
    return False


# ---------------------------------------------------------------------------------------------
# kazoo over TLS

@pytest.mark.parametrize("stores", ["pem", "pkcs12", "jks"])
def test_kazoo_over_tls(server_factory, zk_kind, pki, tls_client, make_client, stores):
    server = start(server_factory, zk_kind, pki, stores)
    c = tls_client(server)
    c.create("/tls", b"over tls")
    assert c.get("/tls")[0] == b"over tls"
    # the plaintext clientPort beside it is unchanged
    plain = make_client(server)
    assert plain.get("/tls")[0] == b"over tls"


@pytest.mark.parametrize("workers", [0, 2])
def test_kazoo_over_tls_workers(server_factory, pki, tls_client, workers):
    server = start(server_factory, "zkpy", pki, workers=workers)
    clients = [tls_client(server, who) for who in ("alice", "bob", "alice")]
    clients[0].create("/w", b"1")
    for c in clients:
        assert c.get("/w")[0] == b"1"


def test_secure_client_port_alone(server_factory, pki, tls_client, tmp_path):
    """secureClientPort without clientPort: TLS clients only (zkpy; the harness needs a
    plaintext port to see ZooKeeper up)."""
    ks, trust, _ = pki["stores"]["pem"]
    port = free_port()
    cfg = ts.tls_cfg(ks, trust, password=None, secureClientPort=port,
                     secureClientPortAddress="127.0.0.1")
    server = server_factory("zkpy", dict(cfg, clientPort=None, clientPortAddress=None),
                            start=False)
    server.write_config()
    server.proc = subprocess.Popen(server.command(), cwd=server.root, env=server.env(),
                                   stdout=open(server.log_path, "ab"), stderr=subprocess.STDOUT,
                                   start_new_session=True)
    server.secure_port = port
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), 1).close()
            break
        except OSError:
            assert time.monotonic() < deadline, server.log_tail()
            time.sleep(0.1)
    c = tls_client(server)
    assert c.exists("/zookeeper")


@pytest.mark.parametrize("who", ["stranger", "expired", None])
def test_refused_client_certificates(server_factory, zk_kind, pki, tls_client, who):
    """ssl.clientAuth=need (the default): an untrusted, expired or missing certificate gets
    no session; the server goes on serving the others."""
    server = start(server_factory, zk_kind, pki)
    ok = tls_client(server, "bob")
    assert refused(tls_client, server, who)
    ok.create("/still", b"serving")
    assert tls_client(server, "alice").get("/still")[0] == b"serving"
    if zk_kind == "zkpy":
        wait_for_log(server, "TLS handshake with")
        lines = [ln for ln in server.log_text().splitlines() if "TLS handshake with" in ln]
        assert "Traceback" not in server.log_text()
        why = {"stranger": "client certificate refused", "expired": "expired",
               None: "sent no certificate"}[who]
        assert why in lines[0], lines


def test_client_auth_want_and_none(server_factory, zk_kind, pki, tls_client):
    server = start(server_factory, zk_kind, pki, **{"ssl.clientAuth": "want"})
    # want: no certificate is fine; one is checked and gives the x509 identity
    anon = tls_client(server, None)
    alice = tls_client(server, "alice")
    assert refused(tls_client, server, "stranger")
    alice.create("/mine", b"a", acl=[ACL(Permissions.ALL, Id("x509", _subject(
        pki["idents"]["alice"])))])
    assert alice.get("/mine")[0] == b"a"
    with pytest.raises(NoAuthError):
        anon.get("/mine")
    server.stop()
    server = start(server_factory, zk_kind, pki, **{"ssl.clientAuth": "none"})
    # none: no certificate asked for, none checked, no x509 identity
    c = tls_client(server, "stranger")
    c.create("/n", b"1")
    with pytest.raises(Exception) as e:   # the auth scheme needs an authenticated identity
        c.create("/n2", b"1", acl=[ACL(Permissions.ALL, Id("auth", ""))])
    assert type(e.value).__name__ == "InvalidACLError"


# ---------------------------------------------------------------------------------------------
# x509 identities in ACLs

def test_x509_acl_and_super_user(server_factory, zk_kind, pki, tls_client, make_client):
    admin = _subject(pki["idents"]["admin"])
    server = start(server_factory, zk_kind, pki,
                   **{"X509AuthenticationProvider.superUser": admin})
    alice_id = _subject(pki["idents"]["alice"])
    assert alice_id == "CN=alice,OU=Eng,O=Example\\, Inc.,C=US"
    alice = tls_client(server, "alice")
    alice.create("/secret", b"for alice", acl=[ACL(Permissions.ALL, Id("x509", alice_id))])
    assert alice.get("/secret")[0] == b"for alice"
    assert alice.get_acls("/secret")[0][0].id == Id("x509", alice_id)
    with pytest.raises(NoAuthError):
        tls_client(server, "bob").get("/secret")
    with pytest.raises(NoAuthError):
        make_client(server).get("/secret")        # plaintext: only an ip identity
    # the super user's certificate passes every ACL
    root = tls_client(server, "admin")
    assert root.get("/secret")[0] == b"for alice"
    root.set("/secret", b"changed")
    # "auth" ACLs take the x509 identity of the connection
    bob = tls_client(server, "bob")
    bob.create("/bobs", b"", acl=[ACL(Permissions.ALL, Id("auth", ""))])
    assert [a.id for a in bob.get_acls("/bobs")[0]] == [Id("x509", "CN=bob")]


def test_x509_acl_invalid_without_tls(zk_server, make_client):
    """No TLS configured: no x509 provider, so an x509 ACL is INVALIDACL (as ZooKeeper)."""
    c = make_client(zk_server)
    with pytest.raises(Exception) as e:
        c.create("/x", b"", acl=[ACL(Permissions.ALL, Id("x509", "CN=alice"))])
    assert type(e.value).__name__ == "InvalidACLError"


# ---------------------------------------------------------------------------------------------
# port unification, bad input

def test_port_unification(server_factory, zk_kind, pki, tls_client, make_client):
    # authProvider.x509: ZooKeeper 3.8.0 with portUnification but no secureClientPort does not
    # register the x509 provider itself and closes every client that sends a certificate ("X509
    # Auth provider not found: x509"); zkpy registers it (as with secureClientPort).
    server = start(server_factory, zk_kind, pki, secure=False,
                   **{"authProvider.x509": "org.apache.zookeeper.server.auth."
                                           "X509AuthenticationProvider"})
    tls = tls_client(server, "alice", port=server.port)
    tls.create("/u", b"tls")
    plain = make_client(server)
    assert plain.get("/u")[0] == b"tls"
    plain.set("/u", b"plain")
    assert tls.get("/u")[0] == b"plain"
    assert server.four_letter("ruok") == "imok"
    assert refused(tls_client, server, "stranger", port=server.port)


def wait_for_log(server, text, timeout=5.0):
    """The server's log line about a closed connection may come just after the close."""
    deadline = time.monotonic() + timeout
    while text not in server.log_text():
        assert time.monotonic() < deadline, "%r not in the log:\n%s" % (text, server.log_tail())
        time.sleep(0.05)


def _connect_request():
    body = struct.pack(">iqiq", 0, 0, 30000, 0) + struct.pack(">i", 16) + b"\0" * 16
    return struct.pack(">i", len(body)) + body


def _closed_without_answer(sock, timeout=15.0):
    sock.settimeout(timeout)
    data = b""
    try:
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                return True
            data += chunk
            if len(data) > 4096:
                return False
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def test_plaintext_to_tls_port_and_tls_to_plaintext_port(server_factory, zk_kind, pki,
                                                         tls_client, make_client):
    server = start(server_factory, zk_kind, pki)
    # a plaintext ZooKeeper client on the TLS port: the handshake fails, the socket closes
    with socket.create_connection(("127.0.0.1", server.secure_port)) as s:
        s.sendall(_connect_request())
        assert _closed_without_answer(s)
    # a TLS client on the plaintext port: no session, the socket closes
    ctx = ssl.create_default_context(cafile=pki["ca_pem"])
    with socket.create_connection(("127.0.0.1", server.port)) as raw:
        with pytest.raises((ssl.SSLError, OSError)):
            with ctx.wrap_socket(raw, server_hostname="localhost") as s:
                s.sendall(_connect_request())
                s.recv(10)
    # everyone else is served
    assert tls_client(server, "alice").exists("/zookeeper")
    assert make_client(server).exists("/zookeeper")
    if zk_kind == "zkpy":
        wait_for_log(server, "a plaintext client on a TLS port")
        wait_for_log(server, "a TLS handshake on the plaintext client port")
        assert "Traceback" not in server.log_text()


def test_handshake_that_never_completes(server_factory, pki, tls_client):
    """A client that opens the TLS port and stalls mid-handshake is closed after 10 s (Netty's
    SslHandler timeout, which ZooKeeper uses); the others are served meanwhile."""
    server = start(server_factory, "zkpy", pki)
    with socket.create_connection(("127.0.0.1", server.secure_port)) as s:
        s.sendall(b"\x16\x03\x01\x00\x80")     # a ClientHello's header, and nothing more
        t0 = time.monotonic()
        assert tls_client(server, "alice").exists("/zookeeper")
        assert _closed_without_answer(s, timeout=20)
        assert 8 < time.monotonic() - t0 < 20
    wait_for_log(server, "did not complete within 10 s")


# ---------------------------------------------------------------------------------------------
# reload (client.certReload: ZooKeeper 3.8.1+; Debian's 3.8.0 has not got it)

@pytest.mark.parametrize("workers", [0, 1])
def test_trust_store_reload(server_factory, pki, tls_client, workers):
    d = pki["dir"]
    trust = d / ("reload-%d.pem" % workers)
    ts.write_pem_trust(trust, pki["ca"])
    ks, _, _ = pki["stores"]["pem"]
    server = start(server_factory, "zkpy", pki, workers=workers,
                   **{"ssl.trustStore.location": str(trust), "client.certReload": "true"})
    old = tls_client(server, "alice")
    assert refused(tls_client, server, "stranger")
    tmp = d / "reload.tmp"
    ts.write_pem_trust(tmp, pki["ca"], pki["other"])
    os.replace(tmp, trust)
    deadline = time.monotonic() + 15
    while refused(tls_client, server, "stranger"):
        assert time.monotonic() < deadline, server.log_tail()
    assert "reloaded the TLS key/trust stores" in server.log_text()
    assert old.exists("/zookeeper")    # open connections keep going


def tls_four_letter(port, cmd, pki, who="alice", timeout=10.0):
    """A four-letter word sent inside TLS, as `echo ruok | openssl s_client -quiet -cert ..`
    sends it: the whole answer, up to the server's close."""
    ctx = ssl.create_default_context(cafile=pki["ca_pem"])
    ctx.load_cert_chain(*pki["files"][who])
    data = b""
    with socket.create_connection(("127.0.0.1", port), timeout) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            s.sendall(cmd.encode("ascii"))
            while True:
                try:
                    chunk = s.recv(65536)
                except (ssl.SSLEOFError, ConnectionResetError):
                    break    # closed without close_notify
                if not chunk:
                    break
                data += chunk
    return data.decode("utf-8")


@pytest.mark.parametrize("kind,workers", [("apache", None), ("zkpy", 0), ("zkpy", 2)])
def test_four_letter_words_over_tls(server_factory, pki, tls_client, kind, workers):
    """ZooKeeper's NettyServerCnxn answers a four-letter word sent inside TLS on
    secureClientPort, whitelist and all; zkpy too, with any worker count (a worker asks the
    core, which has every worker's figures)."""
    server = start(server_factory, kind, pki, workers=workers,
                   **{"4lw.commands.whitelist": "ruok, srvr, cons"})
    sessions = [tls_client(server, who) for who in ("alice", "bob", "alice")]
    port = server.secure_port
    assert tls_four_letter(port, "ruok", pki) == "imok"
    srvr = tls_four_letter(port, "srvr", pki, "bob")
    assert srvr.startswith("Zookeeper version: ") and "\nMode: standalone\n" in srvr, srvr
    assert tls_four_letter(port, "conf", pki) == (
        "conf is not executed because it is not in the whitelist.\n")
    for _ in range(3):     # (round robin: each worker answers once at least)
        cons = tls_four_letter(port, "cons", pki)
        for c in sessions:
            assert "sid=0x%x" % c.client_id[0] in cons, cons
    assert server.four_letter("ruok") == "imok"
    if kind == "zkpy":
        # ZooKeeper's cons lists the connections of the port it is asked on (one
        # ServerCnxnFactory each: its plaintext cons leaves these TLS sessions out); zkpy's
        # lists every connection of the server, on either port.
        assert "sid=0x%x" % sessions[1].client_id[0] in server.four_letter("cons")
        assert "Traceback" not in server.log_text()


def test_requests_pipelined_behind_connect(zk_server):
    """The Java client's Netty socket (the one TLS needs) writes its queued requests right
    behind the ConnectRequest; the server answers them once the session exists."""
    exists = struct.pack(">ii", 1, 3) + struct.pack(">i", 1) + b"/" + b"\0"
    with socket.create_connection(("127.0.0.1", zk_server.port)) as s:
        s.sendall(_connect_request() + struct.pack(">i", len(exists)) + exists)
        s.settimeout(10)
        data = b""
        while len(data) < 4 or len(data) < 4 + struct.unpack(">i", data[:4])[0] + 4 + 16:
            chunk = s.recv(4096)
            assert chunk, "closed after %r" % data
            data += chunk
        n = struct.unpack(">i", data[:4])[0]
        reply = data[4 + n:]
        xid, zxid, err = struct.unpack(">iqi", reply[4:20])
        assert (xid, err) == (1, 0)


# ---------------------------------------------------------------------------------------------
# zkCli.sh over TLS (Netty client socket, JKS stores)

def zkcli_tls(server, pki, keystore, script, cwd, timeout=60):
    env = dict(os.environ)
    env["ZOO_LOG_DIR"] = str(cwd)
    _, trust, _ = pki["stores"]["jks"]
    env["CLIENT_JVMFLAGS"] = " ".join([
        # Debian's zookeeper.jar lists netty's jars in its manifest but not netty-resolver and
        # netty-codec, which ClientCnxnSocketNetty needs: this later -cp wins over zkCli.sh's.
        "-cp", ":".join(["/etc/zookeeper/conf", "/usr/share/java/zookeeper.jar",
                         "/usr/share/java/netty-resolver.jar", "/usr/share/java/netty-codec.jar"]),
        "-Dzookeeper.log.dir=%s" % cwd, "-Xmx128m", "-XX:+UseSerialGC",
        "-XX:TieredStopAtLevel=1", "-Dzookeeper.client.secure=true",
        "-Dzookeeper.clientCnxnSocket=org.apache.zookeeper.ClientCnxnSocketNetty",
        "-Dzookeeper.ssl.keyStore.location=%s" % keystore,
        "-Dzookeeper.ssl.keyStore.password=%s" % ts.PASSWORD,
        "-Dzookeeper.ssl.trustStore.location=%s" % trust,
        "-Dzookeeper.ssl.trustStore.password=%s" % ts.PASSWORD])
    proc = subprocess.Popen([str(ZKCLI), "-server", "127.0.0.1:%d" % server.secure_port],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, env=env, cwd=cwd,
                            start_new_session=True)
    # The script goes in once the session is up (the TLS handshake takes a JVM a moment;
    # commands typed before it fail with ConnectionLoss).
    buf = b""
    deadline = time.monotonic() + timeout
    connected = False
    fd = proc.stdout.fileno()
    while time.monotonic() < deadline and not connected:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            break
        chunk = os.read(fd, 65536)   # (not proc.stdout: its buffer would hide lines from select)
        if not chunk:
            break
        buf += chunk
        connected = b"state:SyncConnected" in buf
    lines = buf.decode("utf-8", "replace").splitlines()
    if not connected:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return connected, [ln for ln in lines if not ln.startswith("SLF4J:")]
    try:
        out, _ = proc.communicate(script.encode(), timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
    lines += out.decode("utf-8", "replace").splitlines()
    return connected, [ln for ln in lines if not ln.startswith("SLF4J:")]


@pytest.fixture(scope="module")
def client_jks(pki):
    d = pki["dir"]
    return {who: ts.keytool_keystore(d / ("%s.jks" % who), pki["idents"][who])
            for who in ("alice", "stranger")}


def test_zkcli_over_tls_with_jks(server_factory, zk_kind, pki, client_jks, tmp_path):
    reason = zkcli_unavailable()
    if reason:
        pytest.skip(reason)
    server = start(server_factory, zk_kind, pki, "jks")
    connected, lines = zkcli_tls(server, pki, client_jks["alice"],
                                 "create /cli tls-data\nget /cli\nwhoami\nquit\n", tmp_path)
    assert connected and "Created /cli" in lines, "\n".join(lines)
    assert "tls-data" in lines
    alice = _subject(pki["idents"]["alice"])
    # whoami: the certificate's subject as the x509 identity, as ZooKeeper prints it
    i = lines.index("Auth scheme: User")
    assert lines[i + 1:i + 3] == ["x509: %s" % alice, "ip: 127.0.0.1"], "\n".join(lines)
    # an untrusted certificate: zkCli never gets a session
    connected, lines = zkcli_tls(server, pki, client_jks["stranger"], "ls /\nquit\n",
                                 tmp_path, timeout=15)
    assert not connected and "[zookeeper]" not in lines
