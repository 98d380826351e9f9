"""Pure and in-process parts of security between servers: the AUTH packets, the DIGEST-MD5
client against zkpy's server, the quorum keys of zoo.cfg, the SASL handshake switches over a
local socket (zkpy.quorum.secure), the certificate host check."""

import asyncio
import types

import pytest

from zkpy import config as c
from zkpy.errors import ConfigError
from zkpy.quorum import messages as m
from zkpy.quorum import secure
from zkpy.security import digest_md5

BASE = ("tickTime=2000\ndataDir=/tmp/zkpy-qsec\nclientPort=2181\ninitLimit=5\nsyncLimit=2\n"
        "server.1=127.0.0.1:2888:3888\nserver.2=127.0.0.1:2889:3889\n")
JAAS = """QuorumServer { org.apache.zookeeper.server.auth.DigestLoginModule required
  user_test="secret"; };
QuorumLearner { org.apache.zookeeper.server.auth.DigestLoginModule required
  username="test" password="secret"; };
"""


def test_auth_packet_roundtrip_and_bad_input():
    pkt = m.encode_auth(m.AUTH_IN_PROGRESS, b"tok")
    assert pkt[:4] == m.AUTH_MAGIC
    assert m.decode_auth_head(pkt[4:9]) == (m.AUTH_IN_PROGRESS, 3)
    # the magic is no frame length either port would take
    assert int.from_bytes(m.AUTH_MAGIC, "big") > m.MAX_FRAME
    with pytest.raises(m.ProtocolError):
        m.decode_auth_head(bytes([9, 0, 0, 0, 0]))
    with pytest.raises(m.ProtocolError):
        m.decode_auth_head(bytes([0]) + (m.MAX_AUTH_TOKEN + 1).to_bytes(4, "big"))
    with pytest.raises(ValueError):
        m.encode_auth(7)


@pytest.mark.parametrize("password, ok", [("secret", True), ("wrong", False)])
def test_digest_md5_client_against_server(password, ok):
    server = digest_md5.DigestMD5Server({"test": "secret"}.get, b"N" * 40,
                                        realm="zk-quorum-sasl-md5", protocol="zookeeper-quorum",
                                        server_name="zk-quorum-sasl-md5")
    client = digest_md5.DigestMD5Client("test", password, b"C" * 40, "zookeeper-quorum",
                                        "zk-quorum-sasl-md5")
    challenge = server.evaluate(b"")
    response = client.respond(challenge)
    if not ok:
        with pytest.raises(digest_md5.SaslError):
            server.evaluate(response)
        return
    final = server.evaluate(response)
    client.verify(final)
    assert server.username == "test"
    with pytest.raises(digest_md5.SaslError):
        client.verify(b"rspauth=00")


def _cfg(extra, jaas=None):
    return c.parse_config(BASE + extra, "/tmp/zoo.cfg", myid=1, jaas_text=jaas,
                          jaas_path="/tmp/jaas.conf" if jaas else None)


def test_quorum_tls_keys_parsed():
    cfg = _cfg("sslQuorum=true\nportUnification=true\nsslQuorumReloadCertFiles=true\n"
               "ssl.quorum.keyStore.location=/x/k.p12\nssl.quorum.keyStore.password=pw\n"
               "ssl.quorum.trustStore.location=/x/t.jks\nssl.quorum.trustStore.type=jks\n"
               "ssl.quorum.clientAuth=want\nssl.quorum.hostnameVerification=false\n"
               "ssl.quorum.enabledProtocols=TLSv1.2,TLSv1.3\n"
               "ssl.quorum.ciphersuites=TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256\n")
    assert cfg.ssl_quorum and cfg.quorum_port_unification and cfg.ssl_quorum_reload_cert_files
    assert cfg.ssl_quorum_key_store_location == "/x/k.p12"
    assert cfg.ssl_quorum_trust_store_type == "JKS"
    assert cfg.ssl_quorum_client_auth == "want"
    assert cfg.ssl_quorum_hostname_verification is False
    assert cfg.ssl_quorum_enabled_protocols == ("TLSv1.2", "TLSv1.3")
    # the client-port keys are apart
    assert cfg.ssl_key_store_location is None and cfg.ssl_client_auth == "need"


@pytest.mark.parametrize("line, key", [
    ("ssl.quorum.clientAuth=maybe", "ssl.quorum.clientAuth"),
    ("ssl.quorum.keyStore.type=BCFKS", "ssl.quorum.keyStore.type"),
    ("ssl.quorum.protocol=SSLv3", "ssl.quorum.protocol"),
    ("ssl.quorum.crl=maybe", "ssl.quorum.crl"),
    ("ssl.quorum.unknownThing=1", "ssl.quorum.unknownThing"),
    ("sslQuorum=maybe", "sslQuorum"),
    ("quorum.auth.enableSasl=perhaps", "quorum.auth.enableSasl"),
    ("quorum.auth.misspelt=true", "quorum.auth.misspelt"),
    ("quorum.auth.learnerRequireSasl=true", "quorum.auth.learnerRequireSasl"),
    ("quorum.auth.enableSasl=true\nquorum.auth.learnerRequireSasl=false\n"
     "quorum.auth.serverRequireSasl=true", "quorum.auth.serverRequireSasl"),
])
def test_bad_quorum_keys_name_key_and_line(line, key):
    with pytest.raises(ConfigError) as e:
        _cfg(line + "\n", JAAS)
    assert e.value.key == key, str(e.value)
    assert e.value.line is not None and e.value.line >= 7, str(e.value)


def test_quorum_sasl_sections():
    cfg = _cfg("quorum.auth.enableSasl=true\nquorum.auth.learnerRequireSasl=true\n"
               "quorum.auth.serverRequireSasl=true\n", JAAS)
    assert cfg.quorum_sasl_users == {"test": "secret"}
    assert cfg.quorum_sasl_login == ("test", "secret")
    with pytest.raises(ConfigError, match="enableSasl=true needs a JAAS file"):
        _cfg("quorum.auth.enableSasl=true\n")
    with pytest.raises(ConfigError, match="no section 'Elsewhere'") as e:
        _cfg("quorum.auth.enableSasl=true\nquorum.auth.learner.saslLoginContext=Elsewhere\n",
             JAAS)
    assert e.value.key == "quorum.auth.learner.saslLoginContext"
    krb = JAAS.replace("QuorumServer { org.apache.zookeeper.server.auth.DigestLoginModule",
                       "QuorumServer { com.sun.security.auth.module.Krb5LoginModule")
    with pytest.raises(ConfigError, match="Kerberos"):
        _cfg("quorum.auth.enableSasl=true\n", krb)
    # without enableSasl the sections are not needed, and not read
    assert _cfg("", JAAS).quorum_sasl_users is None


def _sec(enable=True, learner=False, server=False, password="secret"):
    return secure.QuorumSecurity(types.SimpleNamespace(
        ssl_quorum=False, quorum_port_unification=False, quorum_auth_enable_sasl=enable,
        quorum_auth_learner_require_sasl=learner, quorum_auth_server_require_sasl=server,
        quorum_sasl_users={"test": "secret"}, quorum_sasl_login=("test", password)))


def _exchange(srv, cli):
    """Connect cli to srv over loopback; what the accepting handler read (None: refused)."""
    async def run():
        got = asyncio.get_running_loop().create_future()

        async def handler(r, w):
            got.set_result(await r.readexactly(5))
            w.close()
        lst = await srv.listen("127.0.0.1", 0, handler, "election")
        try:
            port = lst.sock.getsockname()[1]
            try:
                r, w = await cli.connect("127.0.0.1", port, 2, "election")
            except secure.Refused:
                await asyncio.sleep(0.1)
                return "learner-refused" if not got.done() else got.result()
            w.write(b"hello")
            await w.drain()
            try:
                return await asyncio.wait_for(asyncio.shield(got), 1.0)
            except asyncio.TimeoutError:
                return None
        finally:
            lst.close()
    return asyncio.run(run())


@pytest.mark.parametrize("srv, cli, expected", [
    (dict(), dict(), b"hello"),
    (dict(learner=True, server=True), dict(learner=True, server=True), b"hello"),
    # serverRequireSasl: a peer that does not authenticate is refused
    (dict(learner=True, server=True), dict(enable=False), None),
    # ... or authenticates wrongly (its own learnerRequireSasl stops it first)
    (dict(learner=True, server=True), dict(learner=True, password="bad"), "learner-refused"),
    (dict(learner=True, server=True), dict(password="bad"), None),
    # enableSasl without the require switches: let in (the rolling upgrade's first step)
    (dict(), dict(enable=False), b"hello"),
    (dict(), dict(password="bad"), b"hello"),
    # learnerRequireSasl: the learner will not go on with a server that does no SASL
    (dict(enable=False), dict(learner=True), "learner-refused"),
    (dict(enable=False), dict(), b"hello"),
])
def test_sasl_handshake_switches(srv, cli, expected):
    assert _exchange(_sec(**srv), _sec(**cli)) == expected


def test_cert_host_check():
    import datetime
    import ipaddress
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from zkpy.server import tls

    def cert(sans=(), cn="x"):
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, cn)])
        now = datetime.datetime.now(datetime.timezone.utc)
        b = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
             .public_key(key.public_key()).serial_number(1).not_valid_before(now)
             .not_valid_after(now + datetime.timedelta(days=1)))
        if sans:
            b = b.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
        return b.sign(key, hashes.SHA256())
    c1 = cert([x509.DNSName("zk1.example.com"),
               x509.IPAddress(ipaddress.ip_address("10.0.0.1"))])
    assert tls.cert_matches_host(c1, "10.0.0.1")
    assert not tls.cert_matches_host(c1, "10.0.0.2")
    assert tls.cert_matches_host(c1, "ZK1.example.com")
    assert not tls.cert_matches_host(c1, "zk2.example.com")
    c2 = cert([x509.DNSName("*.example.com")])
    assert tls.cert_matches_host(c2, "zk3.example.com")
    assert not tls.cert_matches_host(c2, "a.b.example.com")
    c3 = cert(cn="zk4.example.com")   # no SAN: the CN
    assert tls.cert_matches_host(c3, "zk4.example.com")
    assert not tls.cert_matches_host(c3, "10.0.0.1")
