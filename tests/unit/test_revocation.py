"""Revocation checks (ssl.crl, ssl.ocsp): the pure rules of zkpy.security.revocation, and the
fetching and caching of zkpy.server.revocation with file:// CRLs (no server).

Java's behaviour they follow (RevocationChecker's legacy mode, as ZooKeeper 3.8's X509Util
turns it on) is in the module docstring; the side-by-side tests with ZooKeeper are in
tests/compat/test_tls_revocation.py.
"""

import asyncio
import datetime
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID

from zkpy.security import revocation as rv
from zkpy.server.revocation import CRL_RECHECK_MS, Checker
from zkpy.testing import tlsstores as ts



def _now_ms():
    # per call: a module-level "now" is stale by the time a long run reaches these tests
    return int(time.time() * 1000)


@pytest.fixture(scope="module")
def pki():
    ca = ts.make_ca()
    inter = ts.make_cert(ca, "intermediate", ca_cert=True)
    return dict(
        ca=ca, inter=inter,
        good=ts.make_cert(ca, "good", crl_urls=["http://crl.example/ca.crl"],
                          ocsp_urls=["http://ocsp.example/"]),
        bad=ts.make_cert(ca, "bad"),
        leaf=ts.make_cert(inter, "leaf"),
        impostor=ts.make_ca(),   # same subject as `ca`, another key
    )


# ---------------------------------------------------------------------------------------------
# the path

def test_path_stops_at_the_first_trusted_certificate(pki):
    ca, inter, leaf = pki["ca"].cert, pki["inter"].cert, pki["leaf"].cert
    good = pki["good"].cert
    assert rv.path_to_check([good], [ca]) == [(good, ca)]
    assert rv.path_to_check([good, ca], [ca]) == [(good, ca)]
    # a trusted leaf is not checked at all (PKIXValidator)
    assert rv.path_to_check([good], [ca, good]) == []
    # an intermediate sent by the peer is checked too, not the anchor
    assert rv.path_to_check([leaf, inter], [ca]) == [(leaf, inter), (inter, ca)]
    # a trusted intermediate is the anchor
    assert rv.path_to_check([leaf], [inter, ca]) == [(leaf, inter)]


def test_path_with_an_unknown_issuer_fails(pki):
    with pytest.raises(ValueError, match="issuer"):
        rv.path_to_check([pki["leaf"].cert], [pki["ca"].cert])
    # the same name with another key is not the issuer
    with pytest.raises(ValueError, match="issuer"):
        rv.path_to_check([pki["good"].cert], [pki["impostor"].cert])


def test_urls(pki):
    good = pki["good"].cert
    assert rv.crl_urls(good) == ["http://crl.example/ca.crl"]
    assert rv.ocsp_urls(good) == ["http://ocsp.example/"]
    assert rv.crl_urls(pki["bad"].cert) == [] and rv.ocsp_urls(pki["bad"].cert) == []
    c = ts.make_cert(pki["ca"], "u", crl_urls=["ldap://x/cn=crl", "file:///tmp/a.crl"])
    assert rv.crl_urls(c.cert) == ["file:///tmp/a.crl"]   # no LDAP


# ---------------------------------------------------------------------------------------------
# CRLs

def test_crl_good_and_revoked(pki):
    ca, good, bad = pki["ca"], pki["good"].cert, pki["bad"].cert
    crl = ts.make_crl(ca, [bad])
    assert rv.crl_status(good, ca.cert, crl, _now_ms()) == rv.Status(rv.GOOD)
    st = rv.crl_status(bad, ca.cert, crl, _now_ms())
    assert st.state == rv.REVOKED and "keyCompromise" in st.why and "CRL" in st.why
    # PEM or DER, as served
    der = crl.public_bytes(serialization.Encoding.DER)
    pem = crl.public_bytes(serialization.Encoding.PEM)
    assert rv.parse_crl(der) == rv.parse_crl(pem) == crl
    # removeFromCRL takes a certificate off a (delta) list: not revoked
    off = ts.make_crl(ca, [bad], reason=x509.ReasonFlags.remove_from_crl)
    assert rv.crl_status(bad, ca.cert, off, _now_ms()).state == rv.GOOD


@pytest.mark.parametrize("case, words", [
    ("stale", "not current"),
    ("future", "not current"),
    ("other_key", "signature"),
    ("other_issuer", "issued by"),
])
def test_crl_that_cannot_be_used(pki, case, words):
    ca, bad = pki["ca"], pki["bad"].cert
    crl = {
        # X509CRLSelector: nextUpdate at least now - 15 min, thisUpdate at most now + 15 min
        "stale": lambda: ts.make_crl(ca, [bad], this_update_s=-7200, next_update_s=-16 * 60),
        "future": lambda: ts.make_crl(ca, [bad], this_update_s=16 * 60),
        "other_key": lambda: ts.make_crl(pki["impostor"], [bad]),
        "other_issuer": lambda: ts.make_crl(ts.make_ca("elsewhere"), [bad]),
    }[case]()
    st = rv.crl_status(bad, ca.cert, crl, _now_ms())
    assert st.state == rv.UNKNOWN and words in st.why, st


def test_crl_without_next_update_is_never_current():
    # X509CRLSelector.match: "nextUpdate null" (`cryptography` cannot even build one)
    class Crl:
        last_update_utc = datetime.datetime.now(datetime.timezone.utc)
        next_update_utc = None
    assert not rv.crl_fresh(Crl, _now_ms())


def test_crl_within_the_clock_skew_is_current(pki):
    ca, bad = pki["ca"], pki["bad"].cert
    late = ts.make_crl(ca, [bad], this_update_s=-7200, next_update_s=-14 * 60)
    assert rv.crl_status(bad, ca.cert, late, _now_ms()).state == rv.REVOKED


# ---------------------------------------------------------------------------------------------
# OCSP

def _response(cert, issuer, signer, status=ocsp.OCSPCertStatus.GOOD, certs=None,
              next_update_s=3600, this_update_s=-60, responder=None):
    now = datetime.datetime.now(datetime.timezone.utc)
    rev_time = now - datetime.timedelta(hours=1) if status == ocsp.OCSPCertStatus.REVOKED \
        else None
    rev_reason = x509.ReasonFlags.key_compromise if rev_time else None
    b = ocsp.OCSPResponseBuilder().add_response(
        cert=cert, issuer=issuer, algorithm=hashes.SHA1(), cert_status=status,
        this_update=now + datetime.timedelta(seconds=this_update_s),
        next_update=(now + datetime.timedelta(seconds=next_update_s)
                     if next_update_s is not None else None),
        revocation_time=rev_time, revocation_reason=rev_reason)
    b = b.responder_id(ocsp.OCSPResponderEncoding.NAME, responder or signer.cert)
    if certs:
        b = b.certificates(certs)
    return b.sign(signer.key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def test_ocsp_request_names_the_certificate(pki):
    req = ocsp.load_der_ocsp_request(rv.ocsp_request(pki["good"].cert, pki["ca"].cert))
    assert req.serial_number == pki["good"].cert.serial_number
    assert isinstance(req.hash_algorithm, hashes.SHA1)


def test_ocsp_answers(pki):
    ca, good, bad = pki["ca"], pki["good"].cert, pki["bad"].cert
    assert rv.ocsp_status(good, ca.cert, _response(good, ca.cert, ca), _now_ms()) == \
        rv.Status(rv.GOOD)
    st = rv.ocsp_status(bad, ca.cert, _response(bad, ca.cert, ca, ocsp.OCSPCertStatus.REVOKED),
                        _now_ms())
    assert st.state == rv.REVOKED and "keyCompromise" in st.why and "OCSP" in st.why
    st = rv.ocsp_status(bad, ca.cert, _response(bad, ca.cert, ca, ocsp.OCSPCertStatus.UNKNOWN),
                        _now_ms())
    assert st.state == rv.UNKNOWN and "does not know" in st.why
    # an answer about another certificate
    st = rv.ocsp_status(good, ca.cert, _response(bad, ca.cert, ca), _now_ms())
    assert st.state == rv.UNKNOWN and "no answer" in st.why
    # out of date
    st = rv.ocsp_status(good, ca.cert, _response(good, ca.cert, ca, this_update_s=-7200,
                                                 next_update_s=-3600), _now_ms())
    assert st.state == rv.UNKNOWN and "out of date" in st.why
    # not a successful response
    failed = ocsp.OCSPResponseBuilder.build_unsuccessful(
        ocsp.OCSPResponseStatus.UNAUTHORIZED).public_bytes(serialization.Encoding.DER)
    st = rv.ocsp_status(good, ca.cert, failed, _now_ms())
    assert st.state == rv.UNKNOWN and "UNAUTHORIZED" in st.why
    assert rv.ocsp_status(good, ca.cert, b"junk", _now_ms()).state == rv.UNKNOWN


def test_ocsp_signer(pki):
    ca, good = pki["ca"], pki["good"].cert
    # signed by another key under the CA's name: refused
    forged = _response(good, ca.cert, pki["impostor"])   # the CA's name, another key
    st = rv.ocsp_status(good, ca.cert, forged, _now_ms())
    assert st.state == rv.UNKNOWN and "signature" in st.why
    # a delegated responder: issued by the CA with id-kp-OCSPSigning, sent in the response
    key = ts._key("ec")
    now = datetime.datetime.now(datetime.timezone.utc)

    def responder(eku):
        b = (x509.CertificateBuilder().subject_name(ts.name("ocsp responder"))
             .issuer_name(ca.cert.subject).public_key(key.public_key())
             .serial_number(x509.random_serial_number())
             .not_valid_before(now - datetime.timedelta(days=1))
             .not_valid_after(now + datetime.timedelta(days=1)))
        if eku:
            b = b.add_extension(x509.ExtendedKeyUsage([eku]), critical=False)
        return ts.Identity(key, [b.sign(ca.key, hashes.SHA256())])

    delegated = responder(ExtendedKeyUsageOID.OCSP_SIGNING)
    ok = _response(good, ca.cert, delegated, certs=[delegated.cert])
    assert rv.ocsp_status(good, ca.cert, ok, _now_ms()).state == rv.GOOD
    plain = responder(ExtendedKeyUsageOID.CLIENT_AUTH)
    st = rv.ocsp_status(good, ca.cert, _response(good, ca.cert, plain, certs=[plain.cert]),
                        _now_ms())
    assert st.state == rv.UNKNOWN and "authorized" in st.why


# ---------------------------------------------------------------------------------------------
# the verdict

G, R = rv.Status(rv.GOOD), rv.Status(rv.REVOKED, "r")
U1, U2 = rv.Status(rv.UNKNOWN, "ocsp down"), rv.Status(rv.UNKNOWN, "no crl")


@pytest.mark.parametrize("crl, ocsp_on, statuses, want", [
    # ssl.crl alone: the CRL decides; no CRL is a failure (hard fail)
    (True, False, {"crl": G}, G),
    (True, False, {"crl": R}, R),
    (True, False, {"crl": U2}, U2),
    # ssl.ocsp: OCSP first, CRLs when OCSP does not decide, OCSP's reason when neither does
    (False, True, {"ocsp": G}, G),
    (True, True, {"ocsp": R}, R),
    (True, True, {"ocsp": U1, "crl": G}, G),
    (True, True, {"ocsp": U1, "crl": R}, R),
    (True, True, {"ocsp": U1, "crl": U2}, U1),
])
def test_combine(crl, ocsp_on, statuses, want):
    mode = rv.Mode(crl, ocsp_on)
    assert mode.enabled
    assert rv.combine(mode, statuses) == want


def test_mode():
    assert not rv.Mode(False, False).enabled
    assert rv.Mode(True, False).order == ("crl",)
    assert rv.Mode(False, True).order == ("ocsp", "crl")   # ZooKeeper 3.8 sets enableCRLDP too


# ---------------------------------------------------------------------------------------------
# zkpy.server.revocation: fetching (file://) and the CRL cache

def test_checker_with_file_crls(pki, tmp_path):
    ca = pki["ca"]
    path = tmp_path / "ca.crl"
    url = path.as_uri()
    good = ts.make_cert(ca, "good", crl_urls=[url]).cert
    bad = ts.make_cert(ca, "bad", crl_urls=[url]).cert
    ts.write_crl(path, ts.make_crl(ca, [bad]))
    clock = [_now_ms()]
    checker = Checker(rv.Mode(True, False), timeout=2.0, now_ms=lambda: clock[0])

    async def check(cert):
        return await checker.check([cert], [ca.cert])

    assert asyncio.run(check(good)) is None
    why = asyncio.run(check(bad))
    assert why.startswith("certificate 'CN=bad' is revoked: reason keyCompromise"), why
    # cached: a new CRL on disk is seen after CRL_RECHECK_MS (or the old one's nextUpdate)
    ts.write_crl(path, ts.make_crl(ca, [bad, good]), pem=True)
    assert asyncio.run(check(good)) is None
    clock[0] += CRL_RECHECK_MS + 1
    assert "'CN=good' is revoked" in asyncio.run(check(good))
    # no CRL to be had: hard fail, naming the certificate and the URL
    path.unlink()
    clock[0] += CRL_RECHECK_MS + 1
    why = asyncio.run(check(good))
    assert why.startswith("revocation status of 'CN=good' could not be determined: CRL %s"
                          % url), why
    nodp = ts.make_cert(ca, "nodp").cert
    assert "no CRL distribution point" in asyncio.run(check(nodp))


def test_checker_ocsp_falls_back_to_crls(pki, tmp_path):
    ca = pki["ca"]
    path = tmp_path / "ca.crl"
    # the OCSP responder is unreachable (a closed port): the CRL decides
    dead = "http://127.0.0.1:9/"
    good = ts.make_cert(ca, "good", crl_urls=[path.as_uri()], ocsp_urls=[dead]).cert
    bad = ts.make_cert(ca, "bad", crl_urls=[path.as_uri()], ocsp_urls=[dead]).cert
    only_ocsp = ts.make_cert(ca, "only-ocsp", ocsp_urls=[dead]).cert
    ts.write_crl(path, ts.make_crl(ca, [bad]))
    checker = Checker(rv.Mode(False, True), timeout=2.0)

    async def check(cert):
        return await checker.check([cert], [ca.cert])

    assert asyncio.run(check(good)) is None
    assert "'CN=bad' is revoked" in asyncio.run(check(bad))
    why = asyncio.run(check(only_ocsp))
    assert why.startswith("revocation status of 'CN=only-ocsp' could not be determined: "
                          "OCSP %s" % dead), why


def test_peer_chain(pki):
    from zkpy.server.revocation import peer_chain
    leaf, inter = pki["leaf"].cert, pki["inter"].cert
    der = [c.public_bytes(serialization.Encoding.DER) for c in (leaf, inter)]

    class Before313:   # Python < 3.13: the leaf only
        def getpeercert(self, binary_form=False):
            return der[0]

    class From313(Before313):   # SSLObject.get_verified_chain: DER bytes, leaf first
        def get_verified_chain(self):
            return der

    class NoCert:
        def getpeercert(self, binary_form=False):
            return None

    assert peer_chain(Before313()) == [leaf]
    assert peer_chain(From313()) == [leaf, inter]
    assert peer_chain(NoCert()) == []


def test_checker_shares_one_fetch(pki, tmp_path):
    ca = pki["ca"]
    path = tmp_path / "ca.crl"
    ts.write_crl(path, ts.make_crl(ca, []))
    certs = [ts.make_cert(ca, "c%d" % i, crl_urls=[path.as_uri()]).cert for i in range(5)]
    checker = Checker(rv.Mode(True, False), timeout=2.0)
    fetched = []
    real = checker._fetch

    async def counting(url, *a, **kw):
        fetched.append(url)
        await asyncio.sleep(0.05)
        return await real(url, *a, **kw)

    checker._fetch = counting

    async def main():
        return await asyncio.gather(*(checker.check([c], [ca.cert]) for c in certs))

    assert asyncio.run(main()) == [None] * 5
    assert fetched == [path.as_uri()]


def test_server_tls_checks_only_with_a_key(tmp_path, pki):
    from zkpy.config import parse_config
    from zkpy.server import tls
    crt, key, pem = ts.write_pem_files(tmp_path, "server", ts.make_cert(pki["ca"], "localhost",
                                                                       server=True))
    trust = ts.write_pem_trust(tmp_path / "ca.pem", pki["ca"])
    base = ("dataDir=%s\nsecureClientPort=2281\nssl.keyStore.location=%s\n"
            "ssl.trustStore.location=%s\n" % (tmp_path, pem, trust))
    assert tls.ServerTls(parse_config(base)).revocation is None
    t = tls.ServerTls(parse_config(base + "ssl.ocsp=true\n"))
    assert t.revocation.mode.order == ("ocsp", "crl")
    # clientAuth=none: no client certificate, nothing to check (Java's trust manager unused)
    assert tls.ServerTls(parse_config(base + "ssl.crl=true\nssl.clientAuth=none\n")
                         ).revocation is None
    cfg = parse_config(base + "ssl.quorum.crl=true\n")
    assert cfg.ssl_quorum_crl and not cfg.ssl_crl and not cfg.ssl_quorum_ocsp
