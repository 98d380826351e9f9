"""zkpy.server.tls: stores, the server context, cipher names, x509 subjects, reload; the TLS
keys of zoo.cfg (zkpy.config) and the x509 ACL scheme (zkpy.tree.acl).

Handshakes run in memory (ssl.MemoryBIO) against the context the module builds; the servers
on real sockets are tests/compat/test_tls.py.
"""

import os
import ssl

import pytest

from compat import tlsstores as ts
from zkpy import config as zcfg
from zkpy.errors import ConfigError
from zkpy.server import tls
from zkpy.tree import acl as acls
from zkpy.errors import ZkError

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    ca = ts.make_ca()
    other_ca = ts.make_ca("another CA")
    server = ts.make_cert(ca, "localhost", server=True)
    alice = ts.make_cert(ca, ts.name("alice", ou="Eng", o="Example, Inc.", c="US"))
    stranger = ts.make_cert(other_ca, "stranger")
    expired = ts.make_cert(ca, "late", expired=True)
    return dict(dir=d, ca=ca, other_ca=other_ca, server=server, alice=alice,
                stranger=stranger, expired=expired)


def _cfg(d, **keys):
    text = "dataDir=%s\nclientPort=2181\n" % d + "".join("%s=%s\n" % kv for kv in keys.items())
    return zcfg.parse_config(text, str(d / "zoo.cfg"))


def _server_cfg(pki, **keys):
    d = pki["dir"]
    _, _, pem = ts.write_pem_files(d, "server", pki["server"])
    trust = ts.write_pem_trust(d / "trust.pem", pki["ca"])
    base = {"secureClientPort": "2281", "ssl.keyStore.location": pem,
            "ssl.trustStore.location": trust}
    base.update(keys)
    return _cfg(d, **base)


def _handshake(server_ctx, client_ident=None, ca=None, client_ctx=None):
    """A TLS handshake in memory; returns the server's SSLObject (raises the server's error)."""
    if client_ctx is None:
        client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        client_ctx.check_hostname = False
        client_ctx.verify_mode = ssl.CERT_NONE
        if client_ident is not None:
            d = os.path.dirname(os.path.abspath(__file__))
            import tempfile
            with tempfile.TemporaryDirectory(dir=d if os.access(d, os.W_OK) else None) as t:
                crt, key, _ = ts.write_pem_files(t, "c", client_ident)
                client_ctx.load_cert_chain(crt, key)
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client = client_ctx.wrap_bio(c_in, c_out, server_side=False)
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    done_c = done_s = False
    for _ in range(20):
        if not done_c:
            try:
                client.do_handshake()
                done_c = True
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLError:
                done_c = True   # the server's alert: its own error is what the test wants
        s_in.write(c_out.read())
        if not done_s:
            try:
                server.do_handshake()
                done_s = True
            except ssl.SSLWantReadError:
                pass
        c_in.write(s_out.read())
        if done_c and done_s:
            break
    # TLS 1.3 clients send their certificate after the server's Finished: one more round
    try:
        client.write(b"x")
    except ssl.SSLError:
        pass
    s_in.write(c_out.read())
    try:
        server.read(1)
    except ssl.SSLWantReadError:
        pass
    return server


# ---------------------------------------------------------------------------------------------
# store types and loading

def test_store_type_from_value_or_extension():
    assert tls.store_type(None, "/x/k.jks", "ssl.keyStore.type") == "JKS"
    assert tls.store_type(None, "/x/k.pem", "ssl.keyStore.type") == "PEM"
    assert tls.store_type(None, "/x/k.p12", "ssl.keyStore.type") == "PKCS12"
    assert tls.store_type("pkcs12", "/x/k.bin", "ssl.keyStore.type") == "PKCS12"
    # ZooKeeper 3.8's KeyStoreFileType knows .jks, .pem, .p12 (and .bcfks) only
    for name in ("/x/k.pfx", "/x/k", "/x/k.JKS"):
        with pytest.raises(tls.TlsError) as e:
            tls.store_type(None, name, "ssl.trustStore.type")
        assert e.value.key == "ssl.trustStore.type"
    with pytest.raises(tls.TlsError):
        tls.store_type(None, "/x/k.bcfks", "ssl.keyStore.type")


def test_pem_key_store_plain_and_encrypted(pki):
    d = pki["dir"]
    _, _, plain = ts.write_pem_files(d, "alice-plain", pki["alice"])
    _, _, enc = ts.write_pem_files(d, "alice-enc", pki["alice"], password="s3cret")
    key, chain = tls.load_key_store(plain, "", None)
    assert chain[0] == pki["alice"].cert and len(chain) == 2
    key, chain = tls.load_key_store(enc, "s3cret", None)
    assert chain[0] == pki["alice"].cert
    for pw in ("wrong", ""):
        with pytest.raises(tls.TlsError) as e:
            tls.load_key_store(enc, pw, None)
        assert e.value.key == "ssl.keyStore.password"


def test_pkcs12_stores(pki):
    d = pki["dir"]
    p12 = ts.write_p12(d / "alice.p12", pki["alice"], "pw12")
    key, chain = tls.load_key_store(p12, "pw12", None)
    assert chain[0] == pki["alice"].cert
    with pytest.raises(tls.TlsError) as e:
        tls.load_key_store(p12, "nope", None)
    assert e.value.key == "ssl.keyStore.password"
    # every certificate of a PKCS12 trust store is trusted
    certs = tls.load_trust_store(p12, "pw12", None)
    assert pki["alice"].cert in certs


def test_missing_and_empty_stores(pki):
    d = pki["dir"]
    with pytest.raises(tls.TlsError) as e:
        tls.load_key_store(str(d / "nothing.pem"), "", None)
    assert e.value.key == "ssl.keyStore.location" and "No such file" in e.value.message
    only_certs = ts.write_pem_trust(d / "certs-only.pem", pki["ca"])
    with pytest.raises(tls.TlsError) as e:
        tls.load_key_store(only_certs, "", None)
    assert "no private key" in e.value.message
    (d / "empty.pem").write_text("")
    with pytest.raises(tls.TlsError):
        tls.load_trust_store(str(d / "empty.pem"), "", None)


@pytest.fixture(scope="module")
def jks_stores(pki):
    reason = ts.keytool_unavailable()
    if reason:
        pytest.skip(reason)
    d = pki["dir"]
    ks = ts.keytool_keystore(d / "alice.jks", pki["alice"])
    trust = ts.keytool_truststore(d / "trust.jks", pki["ca"])
    # the admin guide's keytool -genkeypair: on JDK 9+ a PKCS12 file named .jks
    modern, cer = ts.keytool_genkeypair(d / "modern.jks", "cn=modern")
    return dict(ks=ks, trust=trust, modern=modern, cer=cer)


def test_jks_stores_made_by_keytool(pki, jks_stores):
    key, chain = tls.load_key_store(jks_stores["ks"], ts.PASSWORD, None)
    assert chain[0] == pki["alice"].cert
    assert tls.load_trust_store(jks_stores["trust"], ts.PASSWORD, None) == [pki["ca"].cert]
    with pytest.raises(tls.TlsError) as e:
        tls.load_trust_store(jks_stores["trust"], "wrong", None)
    assert e.value.key == "ssl.trustStore.password"
    with pytest.raises(tls.TlsError) as e:
        tls.load_key_store(jks_stores["ks"], "wrong", "JKS")
    assert e.value.key == "ssl.keyStore.password"
    # a .jks file that is PKCS12 inside is read as Java reads it
    key, chain = tls.load_key_store(jks_stores["modern"], ts.PASSWORD, None)
    assert tls.subject_name(chain[0]) == "CN=modern"


# ---------------------------------------------------------------------------------------------
# cipher suites, protocols, the context

def test_java_cipher_names_map_to_openssl():
    old, new = tls.openssl_ciphers(tls.DEFAULT_CIPHERSUITES)
    assert old[:2] == ["ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256"]
    assert "ECDHE-RSA-AES256-SHA" in old and new == []
    old, new = tls.openssl_ciphers(["TLS_AES_128_GCM_SHA256", "TLS_RSA_WITH_AES_128_CBC_SHA",
                                    "SSL_RSA_WITH_AES_256_CBC_SHA",
                                    "TLS_DHE_RSA_WITH_CHACHA20_POLY1305_SHA256"])
    assert old == ["AES128-SHA", "AES256-SHA", "DHE-RSA-CHACHA20-POLY1305"]
    assert new == ["TLS_AES_128_GCM_SHA256"]
    with pytest.raises(tls.TlsError) as e:
        tls.openssl_ciphers(["TLS_NOT_A_SUITE"])
    assert e.value.key == "ssl.ciphersuites"
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.set_ciphers(":".join(tls.openssl_ciphers(tls.DEFAULT_CIPHERSUITES)[0]))


def test_default_context_is_tls12_need(pki):
    ctx = tls.build_context(_server_cfg(pki))
    assert ctx.minimum_version == ctx.maximum_version == ssl.TLSVersion.TLSv1_2
    assert ctx.verify_mode == ssl.CERT_REQUIRED
    names = {c["name"] for c in ctx.get_ciphers() if c["protocol"] == "TLSv1.2"}
    assert names <= set(tls.openssl_ciphers(tls.DEFAULT_CIPHERSUITES)[0])


def test_protocol_keys(pki):
    ctx = tls.build_context(_server_cfg(pki, **{
        "ssl.enabledProtocols": "TLSv1.2,TLSv1.3",
        "ssl.ciphersuites": "TLS_AES_128_GCM_SHA256,TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"}))
    assert (ctx.minimum_version, ctx.maximum_version) == (ssl.TLSVersion.TLSv1_2,
                                                          ssl.TLSVersion.TLSv1_3)
    ctx = tls.build_context(_server_cfg(pki, **{"ssl.protocol": "TLSv1.3",
                                                "ssl.ciphersuites": "TLS_AES_256_GCM_SHA384"}))
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_3
    # TLSv1.3 only with ZooKeeper's default (TLSv1.2) suites: no handshake could succeed
    with pytest.raises(tls.TlsError) as e:
        tls.build_context(_server_cfg(pki, **{"ssl.protocol": "TLSv1.3"}))
    assert e.value.key == "ssl.protocol"
    # "TLS" names no version to enable by itself
    with pytest.raises(tls.TlsError):
        tls.build_context(_server_cfg(pki, **{"ssl.protocol": "TLS"}))
    ctx = tls.build_context(_server_cfg(pki, **{"ssl.protocol": "TLS",
                                                "ssl.enabledProtocols": "TLSv1.2"}))
    assert ctx.maximum_version == ssl.TLSVersion.TLSv1_2


def test_client_auth_and_trust(pki):
    cfg = _server_cfg(pki)
    srv = tls.ServerTls(cfg)
    ok = _handshake(srv.context, pki["alice"])
    assert srv.peer_identities(ok, "p") == [("x509", "CN=alice,OU=Eng,O=Example\\, Inc.,C=US")]
    for ident, why in ((pki["stranger"], "certificate verify failed"),
                       (pki["expired"], "expired"), (None, "PEER_DID_NOT_RETURN")):
        with pytest.raises(ssl.SSLError) as e:
            _handshake(srv.context, ident)
        assert why in str(e.value)
    # want: no certificate is fine (no x509 identity), a bad one is not
    srv = tls.ServerTls(_server_cfg(pki, **{"ssl.clientAuth": "want"}))
    assert srv.peer_identities(_handshake(srv.context), "p") == []
    with pytest.raises(ssl.SSLError):
        _handshake(srv.context, pki["stranger"])
    # none: nothing asked for, nothing checked
    srv = tls.ServerTls(_server_cfg(pki, **{"ssl.clientAuth": "none"}))
    assert srv.peer_identities(_handshake(srv.context, pki["stranger"]), "p") == []


def test_trusting_a_leaf_certificate_directly(pki):
    """Java's PKIX takes any certificate of the trust store as an anchor (keytool users import
    the client's own certificate): so does zkpy."""
    d = pki["dir"]
    leaf_trust = d / "leaf-trust.pem"
    leaf_trust.write_bytes(pki["alice"].chain_pem()[:pki["alice"].chain_pem().index(b"-----END")
                                                     + 25])
    srv = tls.ServerTls(_server_cfg(pki, **{"ssl.trustStore.location": str(leaf_trust)}))
    assert srv.peer_identities(_handshake(srv.context, pki["alice"]), "p")[0][0] == "x509"


def test_super_user(pki):
    subject = tls.subject_name(pki["alice"].cert)
    # zoo.cfg is a Java properties file: the backslash of "\," is written twice there
    srv = tls.ServerTls(_server_cfg(pki, **{"X509AuthenticationProvider.superUser":
                                            subject.replace("\\", "\\\\")}))
    assert srv.peer_identities(_handshake(srv.context, pki["alice"]), "p") == [
        ("super", subject), ("x509", subject)]


def test_reload_when_the_trust_store_changes(pki):
    d = pki["dir"]
    trust = d / "reload-trust.pem"
    ts.write_pem_trust(trust, pki["ca"])
    srv = tls.ServerTls(_server_cfg(pki, **{"ssl.trustStore.location": str(trust)}))
    assert not srv.maybe_reload()
    with pytest.raises(ssl.SSLError):
        _handshake(srv.context, pki["stranger"])
    tmp = d / "reload-trust.tmp"
    ts.write_pem_trust(tmp, pki["ca"], pki["other_ca"])
    os.replace(tmp, trust)
    assert srv.maybe_reload()
    _handshake(srv.context, pki["stranger"])
    # a broken store keeps the context in use
    old = srv.context
    trust.write_text("garbage")
    assert not srv.maybe_reload()
    assert srv.context is old


# ---------------------------------------------------------------------------------------------
# x509 subjects as Java prints them

def test_subject_name_rfc2253_as_java():
    from cryptography import x509
    from cryptography.x509.oid import NameOID
    ca = ts.make_ca()
    cases = [
        (ts.name("alice", ou="Eng", o="Example, Inc.", c="US"),
         "CN=alice,OU=Eng,O=Example\\, Inc.,C=US"),
        # Java escapes = and # anywhere, and leading/trailing spaces
        (ts.name("a=b #1 "), "CN=a\\=b \\#1\\ "),
        (ts.name(" x+y;<z>\"\\"), "CN=\\ x\\+y\\;\\<z\\>\\\"\\\\"),
        # no RFC 2253 keyword: the OID and the DER of the value in hex
        (x509.Name([x509.NameAttribute(NameOID.EMAIL_ADDRESS, "a@b.c"),
                    x509.NameAttribute(NameOID.COMMON_NAME, "m")]),
         "CN=m,1.2.840.113549.1.9.1=#16056140622e63"),
        (x509.Name([x509.NameAttribute(NameOID.DOMAIN_COMPONENT, "org"),
                    x509.NameAttribute(NameOID.USER_ID, "u1"),
                    x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, "Zürich")]),
         "ST=Zürich,UID=u1,DC=org"),
    ]
    for subject, java in cases:
        assert tls.subject_name(ts.make_cert(ca, subject).cert) == java


# ---------------------------------------------------------------------------------------------
# zoo.cfg keys

def test_tls_keys_parsed(tmp_path):
    c = _cfg(tmp_path, **{"secureClientPort": "2281", "secureClientPortAddress": "127.0.0.1",
                          "client.portUnification": "true", "client.certReload": "true",
                          "ssl.keyStore.location": "ks.jks", "ssl.keyStore.password": "a b",
                          "ssl.trustStore.type": "pkcs12", "ssl.clientAuth": "WANT",
                          "ssl.enabledProtocols": "TLSv1.2, TLSv1.3",
                          "ssl.ciphersuites": "TLS_AES_128_GCM_SHA256,x",
                          "ssl.hostnameVerification": "false",
                          "X509AuthenticationProvider.superUser": "CN=admin",
                          "authProvider.x509": tls.X509_PROVIDER_CLASS})
    assert (c.secure_client_port, c.secure_client_port_address) == (2281, "127.0.0.1")
    assert c.client_port_unification and c.client_cert_reload
    assert c.ssl_key_store_location == os.path.abspath("ks.jks")
    assert c.ssl_key_store_password == "a b" and c.ssl_trust_store_type == "PKCS12"
    assert c.ssl_client_auth == "want"
    assert c.ssl_enabled_protocols == ("TLSv1.2", "TLSv1.3")
    assert c.ssl_ciphersuites == ("TLS_AES_128_GCM_SHA256", "x")
    assert c.ssl_hostname_verification is False
    assert c.x509_super_user == "CN=admin" and c.x509_provider
    assert not any("ssl." in w or "secureClient" in w for w in c.warnings)
    # defaults: ZooKeeper's
    d = _cfg(tmp_path)
    assert (d.secure_client_port, d.ssl_client_auth, d.ssl_protocol) == (0, "need", "TLSv1.2")
    # the quorum's TLS keys are their own (tests/unit/test_quorum_security.py); an unknown
    # ssl.quorum.* key fails closed
    q = _cfg(tmp_path, **{"ssl.quorum.keyStore.location": "/x"})
    assert q.ssl_quorum_key_store_location == "/x" and q.ssl_key_store_location != "/x"
    with pytest.raises(ConfigError) as info:
        _cfg(tmp_path, **{"ssl.quorum.keyStor.location": "/x"})
    assert "ssl.quorum.keyStor.location" in str(info.value)


@pytest.mark.parametrize("key,value,words", [
    ("ssl.clientAuth", "maybe", "none, want, need"),
    ("ssl.keyStore.type", "PKCS11", "unknown store type"),
    ("ssl.trustStore.type", "BCFKS", "not supported"),
    ("ssl.protocol", "SSLv3", "not a protocol"),
    ("ssl.enabledProtocols", "TLSv1.2,TLSv9", "TLSv9"),
    ("secureClientPort", "70000", "1..65535"),
    ("ssl.crl", "maybe", "invalid option"),
    ("ssl.ocsp", "yes please", "invalid option"),
    ("ssl.context.supplier.class", "com.example.Ctx", "Java class"),
    ("ssl.clientHostnameVerification", "true", "ZooKeeper 3.9"),
    ("client.portUnification", "yes please", "invalid option"),
])
def test_bad_tls_values_name_key_and_line(tmp_path, key, value, words):
    with pytest.raises(ConfigError) as e:
        _cfg(tmp_path, **{key: value})
    assert e.value.key == key and e.value.line == 3 and words in str(e.value)


def test_ports(tmp_path):
    # secureClientPort alone serves (TLS clients only)
    c = zcfg.parse_config("dataDir=%s\nsecureClientPort=2281\n" % tmp_path)
    assert c.client_port is None and c.secure_client_port == 2281
    with pytest.raises(ConfigError) as e:
        zcfg.parse_config("dataDir=%s\nclientPort=1\nsecureClientPortAddress=127.0.0.1\n"
                          % tmp_path)
    assert e.value.key == "secureClientPortAddress"
    with pytest.raises(ConfigError):
        zcfg.parse_config("dataDir=%s\n" % tmp_path)


def test_store_problems_are_config_errors_with_line(pki, tmp_path):
    _, _, pem = ts.write_pem_files(pki["dir"], "srv-enc", pki["server"], password="good")
    trust = ts.write_pem_trust(pki["dir"] / "t.pem", pki["ca"])
    base = "dataDir=%s\nclientPort=1\nsecureClientPort=2\n" % tmp_path
    cases = [
        ("ssl.keyStore.location=%s\nssl.keyStore.password=bad\nssl.trustStore.location=%s\n"
         % (pem, trust), "ssl.keyStore.password", 5),
        ("ssl.keyStore.location=/nonexistent/k.pem\n", "ssl.keyStore.location", 4),
        ("ssl.keyStore.location=%s\nssl.keyStore.password=good\n"
         "ssl.trustStore.location=/nonexistent.p12\n" % pem, "ssl.trustStore.location", 6),
        ("ssl.trustStore.location=%s\n" % trust, "ssl.keyStore.location", None),
        ("ssl.keyStore.location=%s\nssl.keyStore.password=good\n"
         "ssl.ciphersuites=TLS_FOO\n" % pem, "ssl.ciphersuites", 6),
        ("ssl.keyStore.location=%s\nssl.keyStore.password=good\nssl.authProvider=foo\n"
         % pem, "ssl.authProvider", 6),
    ]
    for extra, key, line in cases:
        c = zcfg.parse_config(base + extra, str(tmp_path / "zoo.cfg"))
        with pytest.raises(ConfigError) as e:
            tls.check(c)
        assert (e.value.key, e.value.line) == (key, line), str(e.value)
    good = zcfg.parse_config(base + "ssl.keyStore.location=%s\nssl.keyStore.password=good\n"
                             "ssl.trustStore.location=%s\n" % (pem, trust))
    tls.check(good)
    # the password from a file (ssl.keyStore.passwordPath), one trailing newline dropped
    (tmp_path / "pw").write_text("good\n")
    tls.check(zcfg.parse_config(base + "ssl.keyStore.location=%s\nssl.keyStore.passwordPath=%s\n"
                                % (pem, tmp_path / "pw")))


# ---------------------------------------------------------------------------------------------
# the x509 ACL scheme

def test_x509_acl_scheme():
    acl = [(31, "x509", "CN=alice,O=Example\\, Inc.")]
    try:
        acls.set_x509(False)
        with pytest.raises(ZkError):   # no provider: INVALIDACL, as ZooKeeper
            acls.fixup(acl, [("ip", "127.0.0.1")])
        acls.set_x509(True)
        assert acls.fixup(acl, []) == tuple(acl)
        for bad in ("alice", "CN", "FOO=bar", "CN=a,,"):
            with pytest.raises(ZkError):
                acls.fixup([(31, "x509", bad)], [])
        assert acls.valid_x500_name("1.2.3.4=#0403,OID.2.5.4.3=x;cn=y+ou=z")
        ids = [("ip", "127.0.0.1"), ("x509", "CN=alice,O=Example\\, Inc.")]
        assert acls.allowed(acl, acls.READ, ids)
        assert not acls.allowed(acl, acls.READ, [("x509", "CN=bob")])
        # the auth scheme takes the x509 identity
        assert acls.fixup([(1, "auth", "")], ids) == ((1, "x509", ids[1][1]),)
        # an x509 super user passes everything
        assert acls.allowed(acl, acls.READ, [("super", "CN=admin"), ("x509", "CN=admin")])
    finally:
        acls.set_x509(False)
