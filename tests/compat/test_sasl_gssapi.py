"""SASL GSSAPI (Kerberos) with a real MIT KDC, side by side with Apache ZooKeeper 3.8 (issue 15).

The test starts a KDC of its own (tests/compat/kdc.py, Debian's krb5-kdc) with the service
principal zookeeper/localhost and the users bob and carol, each with a keytab. Each server gets
the same zoo.cfg (authProvider.1=SASLAuthenticationProvider) and the same JAAS file, a Server
section with Krb5LoginModule reading the service keytab, passed as operators pass it
(SERVER_JVMFLAGS: -Djava.security.auth.login.config, -Djava.security.krb5.conf). Checked on
both, with the same results:
  * kazoo (sasl_options GSSAPI, pure-sasl over pykerberos; a ticket cache from kinit) logs in
    as bob@EXAMPLE.COM: a node with the ACL sasl:bob@EXAMPLE.COM is bob's, carol gets NoAuth;
  * zkCli.sh with a JAAS Client section (Krb5LoginModule, bob's keytab): SaslAuthenticated,
    whoami `sasl: bob@EXAMPLE.COM`;
  * raw SASL packets: a token that is no GSS token is AUTHFAILED and the connection closed;
  * kerberos.removeRealmFromPrincipal=true: the id is `bob`.
"""

import json
import os
import subprocess
import sys

import pytest

from compat import kdc as kdcmod
from compat import servers as zkservers
from compat.test_bad_input import RawZk, j_buffer, j_int
from compat.test_sasl import AUTHFAILED, OP_SASL, SASL_PROVIDER, _same, _start_all

pytestmark = pytest.mark.timeout(180)

SERVICE = "zookeeper/localhost"
NULL_TOKEN = j_int(-1)

_KRB5_SECTION = """%(section)s {
    com.sun.security.auth.module.Krb5LoginModule required
    useKeyTab=true
    keyTab="%(keytab)s"
    storeKey=true
    useTicketCache=false
    principal="%(principal)s";
};
"""
SERVER_JAAS = _KRB5_SECTION.replace("%(section)s", "Server")
CLIENT_JAAS = _KRB5_SECTION.replace("%(section)s", "Client")

# Run in a process of its own, with KRB5_CONFIG and KRB5CCNAME set for MIT Kerberos.
KAZOO_SCRIPT = r"""
import json, sys
from kazoo.client import KazooClient
from kazoo.security import make_acl
from kazoo.exceptions import NoAuthError
port, create, node, owner = sys.argv[1], sys.argv[2] == "create", sys.argv[3], sys.argv[4]
out = {}
zk = KazooClient(hosts="localhost:%s" % port, timeout=10,
                 sasl_options={"mechanism": "GSSAPI", "service": "zookeeper"},
                 connection_retry={"max_tries": 0})
try:
    zk.start(timeout=15)
    out["state"] = str(zk.state)
    if create:
        zk.create(node, b"secret", acl=[make_acl("sasl", owner, all=True)])
        out["acl"] = [(a.id.scheme, a.id.id, a.perms) for a in zk.get_acls(node)[0]]
    try:
        out["read"] = zk.get(node)[0].decode()
    except NoAuthError:
        out["read"] = "NoAuthError"
except Exception as e:
    out["error"] = type(e).__name__
finally:
    zk.stop(); zk.close()
print(json.dumps(out))
"""


def _unavailable():
    reason = kdcmod.unavailable()
    if reason:
        return reason
    for mod, pkg in (("gssapi", "gssapi"), ("kerberos", "kerberos (pykerberos)"),
                     ("puresasl", "pure-sasl")):
        try:
            __import__(mod)
        except ImportError:
            return "needs the %s package (the test extras)" % pkg
    return None


@pytest.fixture(scope="module")
def kdc(tmp_path_factory):
    reason = _unavailable()
    if reason:
        pytest.skip(reason)
    k = kdcmod.Kdc(tmp_path_factory.mktemp("kdc"))
    k.start()
    k.service_keytab = k.add_principal(SERVICE)
    k.keytabs = {u: k.add_principal(u) for u in ("bob", "carol")}
    k.ccaches = {u: k.kinit(u, kt, tmp_path_factory.mktemp("cc-" + u) / "ccache")
                 for u, kt in k.keytabs.items()}
    yield k
    k.stop()


def _servers(zk_targets, tmp_path_factory, kdc, name, extra_cfg=None):
    jaas = SERVER_JAAS % {"keytab": kdc.service_keytab, "principal": kdc.principal(SERVICE)}
    cfg = dict({"authProvider.1": SASL_PROVIDER}, **(extra_cfg or {}))
    return _start_all(zk_targets, tmp_path_factory, name, cfg, jaas=jaas,
                      flags="-Djava.security.krb5.conf=%s" % kdc.krb5_conf)


@pytest.fixture(scope="module")
def gss_servers(zk_targets, tmp_path_factory, kdc):
    made = _servers(zk_targets, tmp_path_factory, kdc, "gssapi")
    yield made
    for srv in made.values():
        srv.stop()


def _kazoo(kdc, srv, who, node, owner, create=False):
    env = dict(kdc.env, KRB5CCNAME=kdc.ccaches[who])
    proc = subprocess.run([sys.executable, "-c", KAZOO_SCRIPT, str(srv.port),
                           "create" if create else "read", node, owner],
                          env=env, capture_output=True, text=True, timeout=60)
    lines = proc.stdout.strip().splitlines()
    assert lines, proc.stderr[-3000:]
    return json.loads(lines[-1])


def test_kazoo_gssapi_login_and_sasl_acl(gss_servers, kdc):
    owner = kdc.principal("bob")
    results = {}
    for kind, srv in sorted(gss_servers.items()):
        node = "/krb-%s" % kind
        results[kind] = (_kazoo(kdc, srv, "bob", node, owner, create=True),
                         _kazoo(kdc, srv, "carol", node, owner))
    bob, carol = _same(results)
    assert bob == {"state": "CONNECTED", "acl": [["sasl", owner, 31]], "read": "secret"}, bob
    assert carol == {"state": "CONNECTED", "read": "NoAuthError"}, carol


def test_zkcli_with_a_kerberos_client_section(gss_servers, kdc):
    reason = zkservers.zkcli_unavailable()
    if reason:
        pytest.skip(reason)
    out = {kind: [ln.replace(str(srv.port), "PORT") for ln in _zkcli_krb(srv, kdc)]
           for kind, srv in sorted(gss_servers.items())}
    # (The watcher's lines interleave with the command's output, and whoami lists a
    # connection's identities in no particular order: compared as sets.)
    sets = {k: sorted(set(v)) for k, v in out.items()}
    if len(sets) == 2:
        assert sets["zkpy"] == sets["apache"], (sorted(set(sets["zkpy"]) - set(sets["apache"])),
                                                sorted(set(sets["apache"]) - set(sets["zkpy"])))
    lines = _same(sets)
    assert "WatchedEvent state:SaslAuthenticated type:None path:null" in lines, lines
    assert "sasl: %s" % kdc.principal("bob") in lines, lines


def _zkcli_krb(srv, kdc):
    d = srv.root / "zkcli-krb"
    d.mkdir(exist_ok=True)
    (d / "client.jaas").write_text(CLIENT_JAAS % {"keytab": kdc.keytabs["bob"],
                                                  "principal": kdc.principal("bob")})
    env = dict(os.environ)
    env["ZOO_LOG_DIR"] = str(d)
    env["CLIENT_JVMFLAGS"] = ("-Dzookeeper.log.dir=%s -Xmx128m -XX:+UseSerialGC "
                              "-XX:TieredStopAtLevel=1 -Djava.security.auth.login.config=%s "
                              "-Djava.security.krb5.conf=%s" % (d, d / "client.jaas",
                                                                 kdc.krb5_conf))
    proc = subprocess.run([str(zkservers.ZKCLI), "-server", "localhost:%d" % srv.port],
                          input="whoami\nquit\n", env=env, cwd=d, capture_output=True,
                          text=True, timeout=90)
    return [ln for ln in (proc.stdout + proc.stderr).splitlines()
            if ln.strip() and not ln.startswith("SLF4J:") and not ln.startswith("Connecting to")]


def _raw(srv):
    out = []
    with RawZk(srv.port) as raw:
        raw.connect()
        reply = raw.call(OP_SASL, j_buffer(b"\x60\x03not a GSS token"))
        out.append(("garbage", reply.err, reply.body, raw.wait_closed()))
    return out


def test_raw_garbage_token_is_authfailed_and_closed(gss_servers):
    results = {k: _raw(s) for k, s in sorted(gss_servers.items())}
    assert _same(results) == [("garbage", AUTHFAILED, NULL_TOKEN, True)]
    for srv in gss_servers.values():
        assert srv.running()


def test_remove_realm_from_principal(zk_targets, tmp_path_factory, kdc):
    made = _servers(zk_targets, tmp_path_factory, kdc, "gssapi-norealm",
                    {"kerberos.removeRealmFromPrincipal": "true"})
    try:
        results = {kind: _kazoo(kdc, srv, "bob", "/norealm-%s" % kind, "bob", create=True)
                   for kind, srv in sorted(made.items())}
        assert _same(results) == {"state": "CONNECTED", "acl": [["sasl", "bob", 31]],
                                  "read": "secret"}
    finally:
        for srv in made.values():
            srv.stop()


def test_zkpy_refuses_to_start_without_the_service_key(tmp_path, kdc):
    """A keytab without the section's principal stops zkpy at start with one line naming the
    JAAS file (ZooKeeper fails its Kerberos login at start too)."""
    reason = zkservers.zkpy_unavailable()
    if reason:
        pytest.skip(reason)
    jaas = tmp_path / "jaas.conf"
    jaas.write_text(SERVER_JAAS % {"keytab": kdc.keytabs["bob"],
                                   "principal": kdc.principal(SERVICE)})
    srv = zkservers.make_server("zkpy", tmp_path / "zkpy", {"authProvider.1": SASL_PROVIDER},
                                 server_jvmflags="-Djava.security.auth.login.config=%s "
                                 "-Djava.security.krb5.conf=%s" % (jaas, kdc.krb5_conf))
    with pytest.raises(zkservers.ServerStartError):
        srv.start(timeout=20)
    lines = [ln for ln in srv.log_text().splitlines() if "cannot start" in ln]
    assert len(lines) == 1 and str(jaas) in lines[0] and SERVICE in lines[0], lines
    assert "Traceback" not in srv.log_text()
