"""Security between the servers of a zkpy ensemble: quorum TLS (sslQuorum, ssl.quorum.*,
portUnification for the rolling upgrade) and quorum SASL (quorum.auth.*, the JAAS QuorumServer /
QuorumLearner sections). Real processes (tests/compat/ensemble.py); stores from tlsstores.py.

A member with an untrusted certificate or a wrong password is kept out: it never reaches
Mode: follower, the others log why, and the ensemble keeps serving.
"""

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
    out = {"dir": d, "trust": ts.write_pem_trust(d / "trust.pem", ca)}
    for sid in (1, 2, 3, 4):
        out[sid] = ts.write_p12(d / ("server%d.p12" % sid),
                                ts.make_cert(ca, "server%d" % sid, server=True))
    out["stranger"] = ts.write_p12(d / "stranger.p12",
                                   ts.make_cert(other, "stranger", server=True))
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
