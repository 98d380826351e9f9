"""SASL DIGEST-MD5, the sasl ACL scheme and enforced authentication, side by side (issue 15).

Every server of each selected kind gets the same zoo.cfg and the same JAAS file, passed the way
ZooKeeper operators pass it: zkpy-server reads SERVER_JVMFLAGS
(-Djava.security.auth.login.config=..., -Dzookeeper.superUser=...) and conf/java.env itself;
Apache ZooKeeper 3.8 gets the words zkServer.sh would put on its java command line
(zkpy.testing.harness.ServerProcess.jvm_flag_words). Each check runs a client against each
server and asserts the transcripts are equal, and equal to what ZooKeeper answers:

- kazoo (sasl_options DIGEST-MD5): right password logs in; wrong password or unknown user:
  AUTHFAILED and the connection closed (kazoo: AuthFailedError, state AUTH_FAILED);
- sasl ACLs (a node only bob may read), `auth` ACLs naming the sasl id, superUser bypassing ACLs,
  invalid sasl ids refused (INVALIDACL); without the SASL provider sasl ACLs are INVALIDACL;
- raw SASL packets: the challenge's shape, garbage, a token over 4096 bytes, a replayed response
  (same and new connection), a token over jute.maxbuffer: AUTHFAILED and close (the last: closed);
- zkCli.sh with a JAAS Client section; Curator over SASL;
- sessionRequireClientSASLAuth / enforce.auth.*: every op but auth and sasl (ping included) from
  an unauthenticated connection is answered SESSIONCLOSEDREQUIRESASLAUTH and closed;
- allowSaslFailedClients; configurations both servers refuse to start with;
- -D flags from SERVER_JVMFLAGS and conf/java.env, zoo.cfg winning over a flag.
"""

import logging
import os
import re
import subprocess
import time

import pytest
from kazoo.handlers.threading import KazooTimeoutError

from compat import servers as zkservers
from compat.test_bad_input import (OP_GET_DATA, RawZk, create_body, get_data_body, j_buffer,
                                   j_int, j_string)

pytestmark = pytest.mark.timeout(180)

OP_PING = 11
OP_CREATE = 1
OP_CLOSE = -11
OP_AUTH = 100
OP_SASL = 102
OP_WHO_AM_I = 107
AUTHFAILED = -115
SESSIONCLOSEDREQUIRESASLAUTH = -124
NULL_TOKEN = j_int(-1)
SASL_PROVIDER = "org.apache.zookeeper.server.auth.SASLAuthenticationProvider"
SERVER_JAAS = """/* the DIGEST-MD5 users (ZooKeeper's admin guide format) */
Server {
    org.apache.zookeeper.server.auth.DigestLoginModule required
    user_bob="bobsecret"
    user_alice="alicesecret"
    user_admin="adminsecret";
};
"""
CLIENT_JAAS = """Client {
    org.apache.zookeeper.server.auth.DigestLoginModule required
    username="%s"
    password="%s";
};
"""
CHALLENGE = re.compile(rb'realm="zk-sasl-md5",nonce="[A-Za-z0-9+/]{40}",charset=utf-8,'
                       rb'algorithm=md5-sess')
SESSION_S = 4.0


def _start_all(zk_targets, tmp_path_factory, name, extra_cfg, jaas=SERVER_JAAS, flags="",
               java_env=None):
    """{kind: started server}; the JAAS file is passed with -Djava.security.auth.login.config
    in SERVER_JVMFLAGS (or by java_env, which may use $JAAS)."""
    made = {}
    for kind in zk_targets:
        if zkservers.UNAVAILABLE[kind]():
            continue
        root = tmp_path_factory.mktemp("%s-%s" % (kind, name))
        jvmflags = flags
        if jaas is not None:
            (root / "jaas.conf").write_text(jaas)
            jvmflags = "-Djava.security.auth.login.config=%s %s" % (root / "jaas.conf", flags)
        env_text = java_env.replace("$JAAS", str(root / "jaas.conf")) if java_env else None
        srv = zkservers.make_server(kind, root, extra_cfg, server_jvmflags=jvmflags.strip(),
                                    java_env=env_text)
        try:
            made[kind] = srv.start()
        except Exception:
            for other in made.values():
                other.stop()
            raise
    return made


def _same(results):
    if not results:
        pytest.skip("no server available")
    values = list(results.values())
    assert all(v == values[0] for v in values), results
    return values[0]


def _kazoo(srv, user=None, password=None, **kw):
    from kazoo.client import KazooClient
    if user is not None:
        kw["sasl_options"] = {"mechanism": "DIGEST-MD5", "username": user, "password": password}
    client = KazooClient(hosts=srv.hosts, timeout=SESSION_S, connection_retry={"max_tries": 0},
                         **kw)
    states = []
    real = client._session_callback

    def spy(state):
        states.append(str(state))
        real(state)
    client._session_callback = spy
    client.states = states
    return client


def _attempt(fn):
    try:
        return ("ok", fn())
    except Exception as e:  # noqa: BLE001 -- the exception type is the result
        return (type(e).__name__,)


class _Quiet(object):
    """kazoo logs a refused login as an error with a traceback; the test asserts on results."""

    def __enter__(self):
        self.logger = logging.getLogger("kazoo.client")
        self.level = self.logger.level
        self.logger.setLevel(logging.CRITICAL)

    def __exit__(self, *exc):
        self.logger.setLevel(self.level)


# ---------------------------------------------------------------------------------------------
# SASL logins, ACLs, super user

@pytest.fixture(scope="module")
def sasl_servers(zk_targets, tmp_path_factory):
    made = _start_all(zk_targets, tmp_path_factory, "sasl", {"authProvider.1": SASL_PROVIDER},
                      flags="-Dzookeeper.superUser=admin")
    yield made
    for srv in made.values():
        srv.stop()


def _login(srv, user, password):
    client = _kazoo(srv, user, password)
    out = []
    try:
        client.start(timeout=10)
        out.append(_attempt(lambda: client.create("/login-" + user, b"x", ephemeral=True)))
    finally:
        client.stop()
        client.close()
    states = []
    for state in client.states:
        if state != "CONNECTING" and (not states or states[-1] != state):
            states.append(state)
    out.append(states)
    return out


@pytest.mark.parametrize("user,password,expected", [
    ("bob", "bobsecret", [("ok", "/login-bob"), ["CONNECTED", "CLOSED"]]),
    ("bob", "wrong", [("AuthFailedError",), ["CONNECTED", "AUTH_FAILED", "CLOSED"]]),
    ("eve", "evesecret", [("AuthFailedError",), ["CONNECTED", "AUTH_FAILED", "CLOSED"]]),
])
def test_kazoo_digest_md5_login(sasl_servers, user, password, expected):
    pytest.importorskip("puresasl", reason="kazoo's SASL needs pure-sasl (the test extras)")
    with _Quiet():
        results = {k: _login(s, user, password) for k, s in sorted(sasl_servers.items())}
    assert _same(results) == expected


def _acl_transcript(srv):
    from kazoo.security import make_acl
    out = []
    clients = {}
    try:
        for user, password in (("bob", "bobsecret"), ("alice", "alicesecret"),
                               ("admin", "adminsecret"), (None, None)):
            clients[user] = _kazoo(srv, user, password)
            clients[user].start(timeout=10)
        bob, alice, admin, anon = (clients[u] for u in ("bob", "alice", "admin", None))
        bob_only = [make_acl("sasl", "bob", all=True)]
        out.append(_attempt(lambda: bob.create("/acl-sasl", b"s", acl=bob_only)))
        out.append(_attempt(lambda: bob.create("/acl-auth", b"a",
                                               acl=[make_acl("auth", "", all=True)])))
        out.append(_attempt(lambda: [(a.perms, a.id.scheme, a.id.id)
                                     for a in bob.get_acls("/acl-auth")[0]]))
        out.append(_attempt(lambda: bob.get("/acl-sasl")[0]))
        out.append(_attempt(lambda: bob.set("/acl-sasl", b"s2").version))
        out.append(_attempt(lambda: alice.get("/acl-sasl")[0]))
        out.append(_attempt(lambda: alice.set("/acl-sasl", b"x")))
        out.append(_attempt(lambda: anon.get("/acl-auth")[0]))
        out.append(_attempt(lambda: anon.create("/acl-anon", b"", acl=bob_only)))
        out.append(_attempt(lambda: anon.get("/acl-anon")))
        out.append(_attempt(lambda: bob.create("/acl-bad", b"", acl=[
            make_acl("sasl", "a@b@c", read=True)])))
        out.append(_attempt(lambda: bob.create("/acl-krb", b"", acl=[
            make_acl("sasl", "bob/host@EXAMPLE.COM", read=True)])))
        # admin is a superUser: every ACL lets it through
        out.append(_attempt(lambda: admin.get("/acl-sasl")[0]))
        out.append(_attempt(lambda: admin.delete("/acl-sasl")))
    finally:
        for client in clients.values():
            client.stop()
            client.close()
    return out


def test_sasl_acls_and_super_user(sasl_servers):
    pytest.importorskip("puresasl", reason="kazoo's SASL needs pure-sasl (the test extras)")
    results = {k: _acl_transcript(s) for k, s in sorted(sasl_servers.items())}
    assert _same(results) == [
        ("ok", "/acl-sasl"), ("ok", "/acl-auth"), ("ok", [(31, "sasl", "bob")]),
        ("ok", b"s"), ("ok", 1), ("NoAuthError",), ("NoAuthError",), ("NoAuthError",),
        ("ok", "/acl-anon"), ("NoAuthError",), ("InvalidACLError",), ("ok", "/acl-krb"),
        ("ok", b"s2"), ("ok", True)]


def test_kazoo_sasl_auth_data(sasl_servers):
    # kazoo turns the deprecated auth_data=[("sasl", "user:password")] into a DIGEST-MD5 login
    pytest.importorskip("puresasl", reason="kazoo's SASL needs pure-sasl (the test extras)")

    def run(srv):
        with pytest.warns(DeprecationWarning):
            client = _kazoo(srv, auth_data=[("sasl", "bob:bobsecret")])
        try:
            client.start(timeout=10)
            return _attempt(lambda: client.get("/zookeeper")[0])
        finally:
            client.stop()
            client.close()
    results = {k: run(s) for k, s in sorted(sasl_servers.items())}
    assert _same(results) == ("ok", b"")


def test_without_the_sasl_provider(zk_targets, tmp_path_factory):
    """A JAAS Server section without authProvider.N=...SASLAuthenticationProvider: logins work,
    but the sasl scheme has no provider: sasl ACLs are INVALIDACL, whoAmI names no user."""
    pytest.importorskip("puresasl", reason="kazoo's SASL needs pure-sasl (the test extras)")
    from kazoo.security import make_acl
    made = _start_all(zk_targets, tmp_path_factory, "noprovider", {})
    try:
        def run(srv):
            bob = _kazoo(srv, "bob", "bobsecret")
            bob.start(timeout=10)
            try:
                out = [_attempt(lambda: bob.create("/np", b"", acl=[
                    make_acl("sasl", "bob", all=True)])),
                    _attempt(lambda: bob.create("/np", b"", acl=[
                        make_acl("auth", "", all=True)]))]
            finally:
                bob.stop()
                bob.close()
            import puresasl.client
            with RawZk(srv.port) as raw:
                raw.connect()
                client = puresasl.client.SASLClient(
                    "zk-sasl-md5", service="zookeeper", mechanism="DIGEST-MD5", username="bob",
                    password="bobsecret")
                challenge = raw.call(OP_SASL, j_buffer(b"")).body[4:]
                raw.call(OP_SASL, j_buffer(client.process(challenge)))
                out.append(raw.call(OP_WHO_AM_I).body)
            return out
        assert _same({k: run(s) for k, s in sorted(made.items())}) == [
            ("InvalidACLError",), ("InvalidACLError",),
            j_int(2) + j_string("sasl") + j_string("") + j_string("ip") + j_string("127.0.0.1")]
    finally:
        for srv in made.values():
            srv.stop()


def _raw_transcript(srv):
    import puresasl.client
    out = []
    with RawZk(srv.port) as raw:
        raw.connect()
        reply = raw.call(OP_SASL, j_buffer(b""))
        challenge = reply.body[4:]
        out.append(("challenge", reply.err, reply.zxid, bool(CHALLENGE.fullmatch(challenge))))
        client = puresasl.client.SASLClient("zk-sasl-md5", service="zookeeper",
                                            mechanism="DIGEST-MD5", username="bob",
                                            password="bobsecret")
        response = client.process(challenge)
        reply = raw.call(OP_SASL, j_buffer(response))
        out.append(("response", reply.err, reply.body[4:12]))
        reply = raw.call(OP_GET_DATA, get_data_body("/zookeeper"))
        out.append(("then getData", reply.err))
        # the same response again on this connection: illegal state
        reply = raw.call(OP_SASL, j_buffer(response))
        out.append(("replayed", reply.err, reply.body, raw.wait_closed()))
    with RawZk(srv.port) as raw:
        raw.connect()
        raw.call(OP_SASL, j_buffer(b""))
        reply = raw.call(OP_SASL, j_buffer(response))   # another nonce
        out.append(("replayed on a new connection", reply.err, reply.body, raw.wait_closed()))
    for name, tokens in (("garbage", [b"", b'username="bob,\xff\x00']),
                         ("no response directive", [b"", b'username="bob",realm="zk-sasl-md5"']),
                         ("over 4096 bytes", [b"x" * 5000])):
        with RawZk(srv.port) as raw:
            raw.connect()
            for token in tokens:
                reply = raw.call(OP_SASL, j_buffer(token))
            out.append((name, reply.err, reply.body, raw.wait_closed()))
    with RawZk(srv.port) as raw:
        raw.connect()
        try:
            raw.send_request(OP_SASL, j_buffer(b"x" * (1 << 20)))   # over jute.maxbuffer
        except (BrokenPipeError, ConnectionResetError):
            pass
        out.append(("over jute.maxbuffer: closed", raw.wait_closed()))
    return out


def test_raw_sasl_exchange_and_bad_input(sasl_servers):
    pytest.importorskip("puresasl", reason="needs pure-sasl (the test extras)")
    results = {k: _raw_transcript(s) for k, s in sorted(sasl_servers.items())}
    assert _same(results) == [
        ("challenge", 0, 0, True),
        ("response", 0, b"rspauth="),
        ("then getData", 0),
        ("replayed", AUTHFAILED, NULL_TOKEN, True),
        ("replayed on a new connection", AUTHFAILED, NULL_TOKEN, True),
        ("garbage", AUTHFAILED, NULL_TOKEN, True),
        ("no response directive", AUTHFAILED, NULL_TOKEN, True),
        ("over 4096 bytes", AUTHFAILED, NULL_TOKEN, True),
        ("over jute.maxbuffer: closed", True),
    ]
    for srv in sasl_servers.values():
        assert srv.running()


def test_zkpy_logs_one_line_per_failed_login_no_traceback(sasl_servers):
    srv = sasl_servers.get("zkpy")
    if srv is None:
        pytest.skip("zkpy not selected or unavailable")
    before = srv.log_text()
    with RawZk(srv.port) as raw:
        raw.connect()
        raw.call(OP_SASL, j_buffer(b""))
        assert raw.call(OP_SASL, j_buffer(b"garbage")).err == AUTHFAILED
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and srv.log_text() == before:
        time.sleep(0.05)
    new = [ln for ln in srv.log_text()[len(before):].splitlines()
           if "established session" not in ln]
    assert len(new) == 1 and "failed to SASL authenticate" in new[0], new
    assert "answering AUTHFAILED and closing the connection" in new[0]
    assert "Traceback" not in srv.log_text()


# ---------------------------------------------------------------------------------------------
# zkCli.sh and Curator with a JAAS Client section

def _client_jaas(srv, user, password):
    d = srv.root / ("client-%s-%s" % (user, password))
    d.mkdir(exist_ok=True)
    (d / "client.jaas").write_text(CLIENT_JAAS % (user, password))
    return d


def _zkcli(srv, user, password, script):
    d = _client_jaas(srv, user, password)
    env = dict(os.environ)
    env["ZOO_LOG_DIR"] = str(d)
    env["CLIENT_JVMFLAGS"] = ("-Dzookeeper.log.dir=%s -Xmx128m -XX:+UseSerialGC "
                              "-XX:TieredStopAtLevel=1 -Djava.security.auth.login.config=%s"
                              % (d, d / "client.jaas"))
    proc = subprocess.run([str(zkservers.ZKCLI), "-server", srv.hosts], input=script, env=env,
                          cwd=d, capture_output=True, text=True, timeout=90)
    lines = [ln for ln in (proc.stdout + proc.stderr).splitlines()
             if ln.strip() and not ln.startswith("SLF4J:") and not ln.startswith("Connecting to")]
    return lines


def test_zkcli_with_jaas_client_section(sasl_servers):
    reason = zkservers.zkcli_unavailable()
    if reason:
        pytest.skip(reason)
    script = ("whoami\ncreate /zkcli-sasl data sasl:bob:cdrwa\ngetAcl /zkcli-sasl\n"
              "get /zkcli-sasl\nquit\n")
    good = {k: _zkcli(s, "bob", "bobsecret", script) for k, s in sorted(sasl_servers.items())}
    lines = _same({k: [ln.replace(str(s.port), "PORT") for ln in good[k]]
                   for k, s in sorted(sasl_servers.items())})
    for expected in ("WatchedEvent state:SaslAuthenticated type:None path:null", "sasl: bob",
                     "'sasl,'bob", ": cdrwa", "data", "Created /zkcli-sasl"):
        assert expected in lines, lines
    wrong = {k: _zkcli(s, "bob", "wrong", "whoami\nget /zkcli-sasl\nquit\n")
             for k, s in sorted(sasl_servers.items())}
    lines = _same(wrong)
    assert "WatchedEvent state:AuthFailed type:None path:null" in lines, lines
    assert "Not connected" in lines and "data" not in lines


CURATOR_SOURCE = zkservers.REPO_ROOT / "tests" / "compat" / "curator" / "CuratorSasl.java"


@pytest.fixture(scope="module")
def curator_sasl_classpath(tmp_path_factory):
    from compat.test_curator import CURATOR_JARS, curator_unavailable
    reason = curator_unavailable()
    if reason:
        pytest.skip(reason)
    jars = ":".join(str(zkservers.JAVA_DIR / j) for j in CURATOR_JARS)
    out = tmp_path_factory.mktemp("curator-sasl-classes")
    proc = subprocess.run(["javac", "-nowarn", "-d", str(out), "-cp", jars,
                           str(CURATOR_SOURCE)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return "%s:%s" % (out, jars)


def _curator(classpath, srv, user, password, path):
    d = _client_jaas(srv, user, password)
    proc = subprocess.run(
        ["java", "-Xmx128m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
         "-Dorg.slf4j.simpleLogger.defaultLogLevel=off",
         "-Djava.security.auth.login.config=%s" % (d / "client.jaas"),
         "-cp", classpath, "CuratorSasl", srv.hosts, path],
        capture_output=True, text=True, timeout=90, cwd=d)
    return proc.stdout.splitlines()


@pytest.mark.parametrize("password,expected", [
    ("bobsecret", ["connected true", "create /curator-bobsecret", "get curator",
                   "acl [31,s{'sasl,'bob}", "]", "whoami sasl:bob;ip:127.0.0.1;"]),
    # the ZooKeeper client gets AuthFailed; every Curator operation then fails with it
    ("wrong", ["connected true", "create AuthFailedException", "get AuthFailedException",
               "acl AuthFailedException", "whoami NullPointerException"]),
])
def test_curator_over_sasl(sasl_servers, curator_sasl_classpath, password, expected):
    results = {k: _curator(curator_sasl_classpath, s, "bob", password, "/curator-" + password)
               for k, s in sorted(sasl_servers.items())}
    assert _same(results) == expected


# ---------------------------------------------------------------------------------------------
# enforcement

# sessionRequireClientSASLAuth comes from conf/java.env here: the flags zkServer.sh reads there.
JAVA_ENV = """# conf/java.env, sourced by zkEnv.sh
export SERVER_JVMFLAGS="-Djava.security.auth.login.config=$JAAS $SERVER_JVMFLAGS"
SERVER_JVMFLAGS="$SERVER_JVMFLAGS -Dzookeeper.sessionRequireClientSASLAuth=true"
"""


@pytest.fixture(scope="module")
def required_servers(zk_targets, tmp_path_factory):
    made = _start_all(zk_targets, tmp_path_factory, "required", {"authProvider.1": SASL_PROVIDER},
                      java_env=JAVA_ENV, flags="-Xmx64m")
    yield made
    for srv in made.values():
        srv.stop()


@pytest.fixture(scope="module")
def digest_enforced_servers(zk_targets, tmp_path_factory):
    made = _start_all(zk_targets, tmp_path_factory, "enforced",
                      {"enforce.auth.enabled": "true", "enforce.auth.schemes": "digest"})
    yield made
    for srv in made.values():
        srv.stop()


def _raw_enforcement(srv):
    out = []
    for name, op, body, xid in (("ping", OP_PING, b"", -2),
                                ("getData", OP_GET_DATA, get_data_body("/zookeeper"), None),
                                ("create", OP_CREATE, create_body("/enforced"), None),
                                ("closeSession", OP_CLOSE, b"", None)):
        with RawZk(srv.port) as raw:
            raw.connect()
            reply = raw.call(op, body, xid=xid)
            out.append((name, reply.zxid, reply.err, reply.body, raw.wait_closed()))
    with RawZk(srv.port) as raw:
        raw.connect()
        auth = raw.call(OP_AUTH, j_int(0) + j_string("digest") + j_buffer(b"u:p"), xid=-4)
        reply = raw.call(OP_GET_DATA, get_data_body("/zookeeper"))
        out.append(("addauth digest, getData", auth.err, reply.err))
    return out


def test_session_require_client_sasl_auth(required_servers):
    results = {k: _raw_enforcement(s) for k, s in sorted(required_servers.items())}
    refused = lambda name: (name, 0, SESSIONCLOSEDREQUIRESASLAUTH, b"", True)  # noqa: E731
    assert _same(results) == [refused("ping"), refused("getData"), refused("create"),
                              refused("closeSession"),
                              ("addauth digest, getData", 0, SESSIONCLOSEDREQUIRESASLAUTH)]


def _kazoo_enforced(srv, user=None, password=None):
    out = []
    client = _kazoo(srv, user, password)
    try:
        try:
            client.start(timeout=10)
        except KazooTimeoutError:
            # A failed login drops the connection; whether kazoo reported CONNECTED before
            # that (then the create below fails) depends on timing: on a loaded machine it
            # may never get there. Either way the client has no session to write with.
            out.append(("ConnectionLoss",))
            return _after_kazoo(srv, user, out)
        out.append(_attempt(lambda: client.create("/req-%s" % user, b"x", ephemeral=True)))
    finally:
        client.stop()
        client.close()
    return _after_kazoo(srv, user, out)


def _after_kazoo(srv, user, out):
    with _AsBob(srv) as admin:
        out.append(admin.exists("/req-%s" % user) is not None)
    return out


class _AsBob(object):
    """A SASL-authenticated kazoo client (bob) to look at what others did."""

    def __init__(self, srv):
        self.client = _kazoo(srv, "bob", "bobsecret")

    def __enter__(self):
        self.client.start(timeout=10)
        return self.client

    def __exit__(self, *exc):
        self.client.stop()
        self.client.close()


# kazoo's connection thread dies on SessionClosedRequireSaslError during its SASL login (a kazoo
# bug, the same against both servers)
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
@pytest.mark.parametrize("user,password,expected", [
    (None, None, [("SessionClosedRequireSaslError",), False]),
    ("bob", "bobsecret", [("ok", "/req-bob"), False]),   # ephemeral: gone with its session
    ("alice", "wrong", [("ConnectionLoss",), False]),
])
def test_session_require_client_sasl_auth_kazoo(required_servers, user, password, expected):
    pytest.importorskip("puresasl", reason="kazoo's SASL needs pure-sasl (the test extras)")
    with _Quiet():
        results = {k: _kazoo_enforced(s, user, password)
                   for k, s in sorted(required_servers.items())}
    assert _same(results) == expected


def test_enforce_auth_digest(digest_enforced_servers):
    results = {k: _raw_enforcement(s) for k, s in sorted(digest_enforced_servers.items())}
    refused = lambda name: (name, 0, SESSIONCLOSEDREQUIRESASLAUTH, b"", True)  # noqa: E731
    assert _same(results) == [refused("ping"), refused("getData"), refused("create"),
                              refused("closeSession"), ("addauth digest, getData", 0, 0)]

    def kazoo_digest(srv):
        client = _kazoo(srv, auth_data=[("digest", "u:p")])
        try:
            client.start(timeout=10)
            return _attempt(lambda: client.create("/digest-enforced", b"x", ephemeral=True))
        finally:
            client.stop()
            client.close()
    assert _same({k: kazoo_digest(s) for k, s in sorted(digest_enforced_servers.items())}) == (
        "ok", "/digest-enforced")


def test_allow_sasl_failed_clients(zk_targets, tmp_path_factory):
    pytest.importorskip("puresasl", reason="kazoo's SASL needs pure-sasl (the test extras)")
    made = _start_all(zk_targets, tmp_path_factory, "allowfailed",
                      {"authProvider.1": SASL_PROVIDER, "allowSaslFailedClients": "true"})
    try:
        def run(srv):
            out = []
            with RawZk(srv.port) as raw:
                raw.connect()
                raw.call(OP_SASL, j_buffer(b""))
                for _ in range(2):
                    reply = raw.call(OP_SASL, j_buffer(b"garbage"))
                    out.append((reply.err, reply.body))
                out.append(raw.call(OP_GET_DATA, get_data_body("/zookeeper")).err)
            return out
        # the failed login is answered OK with a null token and the connection kept (kazoo then
        # waits out its session: AUTH_FAILED, not asserted here for the time it takes)
        assert _same({k: run(s) for k, s in sorted(made.items())}) == [
            (0, NULL_TOKEN), (0, NULL_TOKEN), 0]
    finally:
        for srv in made.values():
            srv.stop()


# ---------------------------------------------------------------------------------------------
# configurations both refuse to start with

KRB5_JAAS = """Server {
    com.sun.security.auth.module.Krb5LoginModule required
    useKeyTab=true keyTab="/nonexistent/zk.keytab" storeKey=true
    principal="zookeeper/localhost@EXAMPLE.COM";
};
"""


@pytest.mark.parametrize("name,extra,jaas,zkpy_error", [
    ("require-without-provider", {"sessionRequireClientSASLAuth": "true"}, SERVER_JAAS,
     "sessionRequireClientSASLAuth: authentication scheme 'sasl' is not available"),
    ("enforce-without-schemes", {"enforce.auth.enabled": "true"}, None,
     "enforce.auth.enabled is true: enforce.auth.schemes must be set"),
    ("enforce-unknown-scheme", {"enforce.auth.enabled": "true", "enforce.auth.schemes": "x509"},
     None, "enforce.auth.schemes: authentication scheme 'x509' is not available"),
    ("jaas-missing", {"authProvider.1": SASL_PROVIDER}, "MISSING",
     "cannot read the JAAS file"),
    ("jaas-syntax", {"authProvider.1": SASL_PROVIDER}, "Server {\n  a.B mandatory;\n};\n",
     "jaas.conf:2: Invalid control flag, MANDATORY"),
    # (a Kerberos section whose keytab is missing: GSSAPI is served, tests/compat/
    # test_sasl_gssapi.py; ZooKeeper's Kerberos login fails at start too)
    ("jaas-kerberos", {"authProvider.1": SASL_PROVIDER}, KRB5_JAAS,
     "jaas.conf:2: section Server: keyTab '/nonexistent/zk.keytab' is not a file"),
])
def test_refused_configurations(zk_targets, tmp_path_factory, name, extra, jaas, zkpy_error):
    outcomes = {}
    for kind in zk_targets:
        if zkservers.UNAVAILABLE[kind]():
            continue
        root = tmp_path_factory.mktemp("%s-%s" % (kind, name))
        flags = ""
        if jaas is not None:
            path = root / "jaas.conf"
            if jaas != "MISSING":
                path.write_text(jaas)
            flags = "-Djava.security.auth.login.config=%s" % path
        srv = zkservers.make_server(kind, root, extra, server_jvmflags=flags)
        try:
            srv.start(timeout=20)
            outcomes[kind] = "serving"
            srv.stop()
        except zkservers.ServerStartError as e:
            outcomes[kind] = "refused to start"
            if kind == "zkpy":
                errors = [ln for ln in srv.log_text().splitlines()
                          if ln.startswith("zkpy-server: invalid config: ")]
                assert len(errors) == 1 and zkpy_error in errors[0], str(e)
    assert _same(outcomes) == "refused to start"


# ---------------------------------------------------------------------------------------------
# JVM flags

SUPER_DIGEST = "super:D/InIHSb7yEEbrWz8b9l71RjZJU="   # super:test


def test_jvm_flags_side_by_side(zk_targets, tmp_path_factory):
    """A -Dzookeeper.K flag is zoo.cfg's key K; zoo.cfg's own value wins over the flag."""
    made = _start_all(zk_targets, tmp_path_factory, "flags", {"4lw.commands.whitelist": "stat"},
                      jaas=None, flags="-Dzookeeper.4lw.commands.whitelist=conf "
                      "-Dzookeeper.DigestAuthenticationProvider.superDigest=" + SUPER_DIGEST)
    try:
        def run(srv):
            out = [srv.four_letter("conf").startswith("conf is not executed"),
                   srv.four_letter("stat").startswith("Zookeeper version")]
            out.append(_super_reads_private_node(srv))
            return out
        assert _same({k: run(s) for k, s in sorted(made.items())}) == [True, True, ("ok", b"p")]
    finally:
        for srv in made.values():
            srv.stop()


def _super_reads_private_node(srv):
    """An owner's digest-only node, then the superDigest's "super:test" reads it: the
    _attempt result (("ok", b"p") when the superDigest flag took effect)."""
    from kazoo.security import make_acl
    owner = _kazoo(srv, auth_data=[("digest", "owner:pw")])
    owner.start(timeout=10)
    owner.create("/private", b"p", acl=[make_acl("digest", "owner:x", all=True)])
    owner.stop()
    owner.close()
    admin = _kazoo(srv, auth_data=[("digest", "super:test")])
    admin.start(timeout=10)
    try:
        return _attempt(lambda: admin.get("/private")[0])
    finally:
        admin.stop()
        admin.close()


def test_flags_from_zookeeper_env_sh_side_by_side(zk_targets, tmp_path_factory):
    """conf/zookeeper-env.sh (sourced by zkEnv.sh before java.env) gives flags too: a whitelist
    set only there takes effect, and java.env adds a superDigest to it through
    $SERVER_JVMFLAGS (which holds zookeeper-env.sh's value by then)."""
    made = {}
    try:
        for kind in zk_targets:
            if zkservers.UNAVAILABLE[kind]():
                continue
            srv = zkservers.make_server(
                kind, tmp_path_factory.mktemp("%s-zkenv" % kind),
                {"4lw.commands.whitelist": None},
                zookeeper_env='ZOO_LOG_DIR="/var/log/zookeeper"\n'
                              'export SERVER_JVMFLAGS="-Dzookeeper.4lw.commands.whitelist=ruok"\n',
                java_env='SERVER_JVMFLAGS="$SERVER_JVMFLAGS '
                         '-Dzookeeper.DigestAuthenticationProvider.superDigest=%s"\n'
                         % SUPER_DIGEST)
            made[kind] = srv.start()

        def run(srv):
            out = [srv.four_letter("ruok"), srv.four_letter("stat")]
            out.append(_super_reads_private_node(srv))
            return out
        assert _same({k: run(s) for k, s in sorted(made.items())}) == [
            "imok", "stat is not executed because it is not in the whitelist.\n", ("ok", b"p")]
    finally:
        for srv in made.values():
            srv.stop()


@pytest.mark.parametrize("where", ["SERVER_JVMFLAGS", "java.env"])
def test_refused_flag_stops_zkpy_naming_it(zk_targets, tmp_path, where):
    if "zkpy" not in zk_targets or zkservers.zkpy_unavailable():
        pytest.skip("zkpy not selected or unavailable")
    flag = "-Dzookeeper.authProvider.2=com.example.MyProvider"
    if where == "java.env":
        srv = zkservers.make_server("zkpy", tmp_path,
                                    java_env="# flags\nJVMFLAGS=\"-Xmx1g %s\"\n" % flag)
        prefix = "%s:2 (JVMFLAGS): %s: authProvider.2: " % (tmp_path / "java.env", flag)
    else:
        srv = zkservers.make_server("zkpy", tmp_path, server_jvmflags="-Xmx1g " + flag)
        prefix = "environment variable SERVER_JVMFLAGS: %s: authProvider.2: " % flag
    with pytest.raises(zkservers.ServerStartError):
        srv.start(timeout=20)
    errors = [ln for ln in srv.log_text().splitlines() if ln.startswith("zkpy-server: ")]
    assert len(errors) == 1 and errors[0].startswith(
        "zkpy-server: invalid config: " + prefix + "'com.example.MyProvider' is an authentication "
        "provider zkpy does not provide yet"), errors


def test_zkpy_java_env_unreadable_line_stops(zk_targets, tmp_path):
    if "zkpy" not in zk_targets or zkservers.zkpy_unavailable():
        pytest.skip("zkpy not selected or unavailable")
    srv = zkservers.make_server("zkpy", tmp_path, java_env="SERVER_JVMFLAGS=$(cat /etc/zk-flags)\n")
    with pytest.raises(zkservers.ServerStartError):
        srv.start(timeout=20)
    assert ("zkpy-server: invalid config: %s:1: cannot read this line without running it"
            % (tmp_path / "java.env")) in srv.log_text()
