"""Security between the servers of a zkpy ensemble: quorum TLS (sslQuorum, ssl.quorum.*,
portUnification for the rolling upgrade) and quorum SASL (quorum.auth.*, the JAAS QuorumServer /
QuorumLearner sections). Real processes (tests/compat/ensemble.py); stores from tlsstores.py.

A member with an untrusted certificate or a wrong password is kept out: it never reaches
Mode: follower, the others log why, and the ensemble keeps serving.
"""

import socket
import ssl
import time

import pytest

from . import tlsstores as ts
from .ensemble import Ensemble, KazooClients

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("qtls")
    ca = ts.make_ca("zkpy quorum CA")
    other = ts.make_ca("an untrusted CA")
    out = {"dir": d, "ca": ca, "trust": ts.write_pem_trust(d / "trust.pem", ca), "ident": {}}
    for sid in (1, 2, 3, 4):
        out["ident"][sid] = ts.make_cert(ca, "server%d" % sid, server=True)
        out[sid] = ts.write_p12(d / ("server%d.p12" % sid), out["ident"][sid])
    stranger = ts.make_cert(other, "stranger", server=True)
    out["stranger"] = ts.write_p12(d / "stranger.p12", stranger)
    out["stranger_pem"] = ts.write_pem_files(d, "stranger", stranger)[2]
    # trusted, but named for another host than the members' address (127.0.0.1)
    out["elsewhere"] = ts.write_p12(d / "elsewhere.p12", ts.make_cert(ca, "elsewhere.example"))
    return out


def _tls_cfg(pki, sid, keystore=None, **extra):
    cfg = {
        "sslQuorum": "true",
        "ssl.quorum.keyStore.location": keystore or pki[sid],
        "ssl.quorum.keyStore.password": ts.PASSWORD,
        "ssl.quorum.keyStore.type": "PKCS12",
        "ssl.quorum.trustStore.location": pki["trust"],
        "ssl.quorum.trustStore.type": "PEM",
    }
    cfg.update(extra)
    return cfg


@pytest.fixture
def kazoo():
    k = KazooClients()
    yield k
    k.close()


def _replicates(ens, kazoo, path, value):
    leader = ens.leader(timeout=20)
    w = kazoo(leader.hosts)
    w.create(path, value, makepath=True)
    for m in ens.members:
        if m.mode() in ("leader", "follower"):
            r = kazoo(m.hosts)
            r.sync(path)
            assert r.get(path)[0] == value, m


def _kept_out(member, seconds=4.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert member.running()
        assert member.mode() not in ("follower", "leader", "observer"), member.log_tail()
        time.sleep(0.2)


def _logs(ens, members):
    return "".join(m.log_path.read_text(errors="replace") for m in members)


def test_quorum_tls_forms_replicates_survives_leader_kill(tmp_path, pki, kazoo):
    ens = Ensemble("zkpy", tmp_path, member_cfg={s: _tls_cfg(pki, s) for s in (1, 2, 3)})
    with ens:
        _replicates(ens, kazoo, "/tls/a", b"one")
        old = ens.leader()
        old.kill()
        rest = [m for m in ens.members if m is not old]
        ens.wait_healthy(timeout=20, members=rest)
        _replicates(ens, kazoo, "/tls/b", b"two")
        old.start()
        ens.wait_healthy(timeout=20)
        r = kazoo(old.hosts)
        r.sync("/tls/b")
        assert r.get("/tls/b")[0] == b"two"
        # a 4th server whose certificate no member trusts: cannot vote or learn
        bad = ens.add_member(extra_cfg=_tls_cfg(pki, 4, keystore=pki["stranger"]))
        bad.start()
        _kept_out(bad)
        _replicates(ens, kazoo, "/tls/c", b"three")
        text = _logs(ens, ens.members[:3])
        assert "refused the election connection from 127.0.0.1" in text, text[-3000:]
        assert "TLS:" in text


def _probe(port, pem=None):
    """A TLS connection to a member's election port presenting the certificate in `pem` (key and
    chain), or none: "refused" when the member ends it in the handshake, else "accepted" (it
    then waits for the first bytes of the protocol)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2  # a refused certificate fails the handshake
    if pem is not None:
        ctx.load_cert_chain(pem)
    try:
        with socket.create_connection(("127.0.0.1", port), 5) as raw:
            with ctx.wrap_socket(raw) as s:
                s.settimeout(0.5)
                try:
                    return "accepted" if s.recv(1) else "refused"
                except socket.timeout:
                    return "accepted"
    except (ssl.SSLError, ConnectionError):
        return "refused"


def test_quorum_tls_jks_stores_and_client_auth(tmp_path, pki, kazoo):
    """keytool-made JKS key and trust stores; ssl.quorum.clientAuth need / want / none, one per
    member. As ZooKeeper 3.8's QuorumX509Util (SSLContextAndOptions.configureSslParameters):
    the accepting side asks for the other's certificate (need: it must come and be trusted;
    want: one that comes is checked, none is fine; none: not asked for), and the connecting
    side always presents its own, so the three interoperate."""
    reason = ts.keytool_unavailable()
    if reason:
        pytest.skip(reason)
    d = pki["dir"]
    trust = ts.keytool_truststore(d / "trust.jks", pki["ca"])
    auth = {1: "need", 2: "want", 3: "none"}
    cfg = {}
    for sid in (1, 2, 3):
        ks = ts.keytool_keystore(d / ("server%d.jks" % sid), pki["ident"][sid])
        cfg[sid] = _tls_cfg(pki, sid, keystore=ks, **{
            "ssl.quorum.keyStore.type": "JKS", "ssl.quorum.trustStore.location": trust,
            "ssl.quorum.trustStore.type": "JKS", "ssl.quorum.trustStore.password": ts.PASSWORD,
            "ssl.quorum.clientAuth": auth[sid]})
    ens = Ensemble("zkpy", tmp_path, member_cfg=cfg)
    with ens:
        _replicates(ens, kazoo, "/jks", b"one")
        seen = {auth[m.sid]: (_probe(m.election_port), _probe(m.election_port, pki["stranger_pem"]))
                for m in ens.members}
        assert seen == {"need": ("refused", "refused"), "want": ("accepted", "refused"),
                        "none": ("accepted", "accepted")}
        need = ens.members[0].log_text()
        assert "sent no certificate" in need and "certificate refused" in need, need[-3000:]
        _replicates(ens, kazoo, "/jks2", b"two")


def test_quorum_tls_hostname_verification(tmp_path, pki, kazoo):
    """ssl.quorum.hostnameVerification (the default): a member whose certificate (trusted) names
    another host than its address is kept out, both sides refusing with a line that says why,
    not a line per attempt (ZKTrustManager.performHostVerification: the address, then its
    reverse lookup); with a certificate naming its address it joins."""
    cfg = {s: _tls_cfg(pki, s) for s in (1, 2)}
    cfg[3] = _tls_cfg(pki, 3, keystore=pki["elsewhere"])
    ens = Ensemble("zkpy", tmp_path, member_cfg=cfg)
    try:
        for m in ens.members:
            m.start()
        ens.wait_healthy(timeout=20, members=ens.members[:2])
        third = ens.members[2]
        _kept_out(third, 3.0)
        for m in ens.members:
            lines = [ln for ln in m.log_text().splitlines()
                     if "ssl.quorum.hostnameVerification" in ln]
            assert lines and all("CN=elsewhere.example" in ln for ln in lines), m.log_tail()
            assert len(lines) <= 4, lines      # one per peer address and side, not per attempt
        # the refusal comes after the handshake (Python's ssl has no verify callback), so the
        # member kept out is told at start
        assert "this server's certificate CN=elsewhere.example does not match its address " \
               "127.0.0.1 or the name localhost (CN:elsewhere.example): the other servers " \
               "will refuse" in third.log_text(), third.log_tail()
        third.stop()
        third.extra_cfg.update(_tls_cfg(pki, 3))
        third.start()
        ens.wait_healthy(timeout=20)
        _replicates(ens, kazoo, "/hv", b"joined")
    finally:
        ens.stop()


def test_quorum_tls_plaintext_peer_refused(tmp_path, pki):
    """A member without sslQuorum cannot talk to TLS-only members."""
    cfg = {s: _tls_cfg(pki, s) for s in (1, 2)}
    ens = Ensemble("zkpy", tmp_path, member_cfg=cfg)
    try:
        for m in ens.members[:2]:
            m.start()
        ens.wait_healthy(timeout=30, members=ens.members[:2])
        plain = ens.members[2]
        plain.start()
        _kept_out(plain, 3.0)
        text = _logs(ens, ens.members[:2])
        assert "not a TLS handshake" in text
        # one line per reason and peer address, not one per attempt
        assert text.count("refused the election connection from 127.0.0.1") <= 4, text
    finally:
        ens.stop()


def test_rolling_upgrade_to_quorum_tls(tmp_path, pki, kazoo):
    """ZooKeeper's documented path: portUnification everywhere, then sslQuorum one member at a
    time, then portUnification off one at a time; the quorum is never lost."""
    cfg = {s: dict(_tls_cfg(pki, s), sslQuorum="false", portUnification="true")
           for s in (1, 2, 3)}
    ens = Ensemble("zkpy", tmp_path, member_cfg=cfg)
    with ens:
        n = 0
        for step in ({"sslQuorum": "true"}, {"portUnification": "false"}):
            for m in ens.members:
                m.stop()
                m.extra_cfg.update(step)
                m.start()
                ens.wait_healthy(timeout=20)
                n += 1
                _replicates(ens, kazoo, "/up/%d" % n, b"%d" % n)
        # every member now speaks TLS only
        for m in ens.members:
            assert m.extra_cfg["sslQuorum"] == "true"
            assert m.extra_cfg["portUnification"] == "false"


QUORUM_JAAS = """QuorumServer {
       org.apache.zookeeper.server.auth.DigestLoginModule required
       user_test="%s";
};
QuorumLearner {
       org.apache.zookeeper.server.auth.DigestLoginModule required
       username="test"
       password="%s";
};
"""

SASL_CFG = {"quorum.auth.enableSasl": "true", "quorum.auth.learnerRequireSasl": "true",
            "quorum.auth.serverRequireSasl": "true"}


def test_quorum_sasl_forms_and_wrong_password_kept_out(tmp_path, kazoo):
    good = tmp_path / "jaas.conf"
    good.write_text(QUORUM_JAAS % ("secret", "secret"))
    bad = tmp_path / "bad-jaas.conf"
    bad.write_text(QUORUM_JAAS % ("secret", "wrong"))
    flags = "-Djava.security.auth.login.config=%s" % good
    ens = Ensemble("zkpy", tmp_path / "ens", extra_cfg=SASL_CFG, server_jvmflags=flags)
    with ens:
        _replicates(ens, kazoo, "/sasl/a", b"one")
        victim = [m for m in ens.members if m is not ens.leader()][0]
        victim.stop()
        victim.server_jvmflags = None
        victim.java_env = 'SERVER_JVMFLAGS="-Djava.security.auth.login.config=%s"\n' % bad
        victim.start()
        _kept_out(victim)
        rest = [m for m in ens.members if m is not victim]
        ens.wait_healthy(timeout=10, members=rest)
        _replicates(ens, kazoo, "/sasl/b", b"two")
        assert "SASL authentication failed" in _logs(ens, rest)
        assert "SASL authentication failed" in victim.log_path.read_text(errors="replace")


def test_quorum_tls_revoked_member_kept_out(tmp_path, pki):
    """ssl.quorum.crl=true: a member whose certificate the CA's CRL lists (from the
    certificates' distribution point, a file:// URL here) is kept out; the others form."""
    d = tmp_path / "crl"
    d.mkdir()
    ca = ts.make_ca("zkpy revocation CA")
    url = (d / "ca.crl").as_uri()
    stores = {sid: ts.write_p12(d / ("s%d.p12" % sid),
                                ts.make_cert(ca, "server%d" % sid, server=True, crl_urls=[url]))
              for sid in (1, 2, 3)}
    revoked = ts.make_cert(ca, "server3", server=True, crl_urls=[url])
    stores[3] = ts.write_p12(d / "s3.p12", revoked)
    ts.write_crl(d / "ca.crl", ts.make_crl(ca, [revoked.cert]))
    trust = ts.write_pem_trust(d / "trust.pem", ca)
    cfg = {s: _tls_cfg(pki, s, keystore=stores[s], **{"ssl.quorum.trustStore.location": trust,
                                                       "ssl.quorum.crl": "true"})
           for s in (1, 2, 3)}
    ens = Ensemble("zkpy", tmp_path, member_cfg=cfg)
    try:
        for m in ens.members[:2]:
            m.start()
        ens.wait_healthy(timeout=30, members=ens.members[:2])
        bad = ens.members[2]
        bad.start()
        _kept_out(bad, 3.0)
        text = _logs(ens, ens.members[:2])
        assert "certificate 'CN=server3' is revoked: reason keyCompromise" in text, text[-3000:]
        assert "Traceback" not in _logs(ens, ens.members)
    finally:
        ens.stop()
