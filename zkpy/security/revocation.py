"""Certificate revocation (ssl.crl, ssl.ocsp): which certificates to check, what a CRL or an
OCSP response says about one, and the verdict. Pure: the caller fetches the bytes
(zkpy.server.revocation) and passes the time as now_ms.

ZooKeeper 3.8 (X509Util.createTrustManager): ssl.crl=true or ssl.ocsp=true turns revocation
checking on in the PKIX trust manager and sets com.sun.security.enableCRLDP=true (CRLs come from
the CRL Distribution Points extension of the certificate checked); ssl.ocsp=true also sets
ocsp.enable=true (an OCSP responder from the Authority Information Access extension). What the
JDK then does (sun.security.provider.certpath.RevocationChecker, its "legacy" mode, no soft fail):
  - the certificates checked are the peer's path minus its trust anchor: from the leaf up to,
    not including, the first certificate of the trust store (PKIXValidator: a leaf that is
    itself in the trust store is not checked at all);
  - CRLs only (ssl.crl without ssl.ocsp): a CRL from a distribution point, signed by the issuer
    of the certificate and current (thisUpdate <= now + 15 min, nextUpdate >= now - 15 min; a
    CRL without nextUpdate is not used), must be found; the certificate's serial in it means
    revoked; no usable CRL means "could not determine revocation status", which fails too;
  - with OCSP (ssl.ocsp): the responder of the AIA extension first; an OCSP answer "good" or
    "revoked" decides; any other outcome (no responder URL, unreachable, "unknown", a bad
    signature) falls back to the CRLs as above, and if those do not decide either, the
    certificate fails with OCSP's reason.
Every failure refuses the connection (hard fail).

Simplified here: only full-name URIs (http, https, file) of distribution points are used (no
LDAP, no cRLIssuer / indirect CRLs, no delta CRLs, no reason partitions); the OCSP request has no
nonce (the JDK's default) and asks with a SHA-1 CertID (as the JDK does).
"""

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID

# RevocationChecker / OCSP: the clock skew allowed on CRL and OCSP validity times.
CLOCK_SKEW_MS = 15 * 60 * 1000
URL_SCHEMES = ("http", "https", "file")
PATH_LENGTH_MAX = 10   # certificates walked from the leaf towards an anchor

GOOD = "good"
REVOKED = "revoked"
UNKNOWN = "unknown"   # the status could not be determined (why says why)


class Status(object):
    """What one source says about one certificate: GOOD, REVOKED or UNKNOWN, and why."""

    __slots__ = ("state", "why")

    def __init__(self, state, why=""):
        assert state in (GOOD, REVOKED, UNKNOWN), state
        self.state = state
        self.why = why

    def __eq__(self, other):
        return isinstance(other, Status) and (self.state, self.why) == (other.state, other.why)

    def __repr__(self):
        return "Status(%s, %r)" % (self.state, self.why)


class Mode(object):
    """The sources to ask, from the ssl[.quorum].crl / .ocsp keys (either turns checking on)."""

    __slots__ = ("crl", "ocsp")

    def __init__(self, crl, ocsp_enabled):
        self.crl = bool(crl)
        self.ocsp = bool(ocsp_enabled)

    @property
    def enabled(self):
        return self.crl or self.ocsp

    @property
    def order(self):
        """The sources in the order asked: ("ocsp", "crl") or ("crl",)."""
        return ("ocsp", "crl") if self.ocsp else ("crl",)


def _ms(dt):
    return int(dt.timestamp() * 1000) if dt is not None else None


# ---------------------------------------------------------------------------------------------
# the path

def _verifies(cert, issuer):
    """Whether `issuer` signed `cert`."""
    try:
        cert.verify_directly_issued_by(issuer)
        return True
    except (ValueError, TypeError, InvalidSignature):
        return False


def _same(a, b):
    return a.subject == b.subject and a.public_key() == b.public_key()


def path_to_check(chain, anchors):
    """The (certificate, issuer) pairs to check, leaf first, or raise ValueError (why).

    chain: the peer's certificates, leaf first (the verified chain, or only the leaf); anchors:
    the trust store's certificates. Walks from the leaf; stops at the first certificate that is
    an anchor (same subject and key: PKIXValidator's test); each issuer is the next certificate
    of the chain, else the anchor or chain certificate that signed it."""
    pairs = []
    cert = chain[0]
    pool = list(chain[1:]) + list(anchors)
    for _ in range(PATH_LENGTH_MAX):
        if any(_same(cert, a) for a in anchors):
            return pairs
        issuer = next((c for c in pool if c.subject == cert.issuer and not _same(c, cert)
                       and _verifies(cert, c)), None)
        if issuer is None:
            raise ValueError("the issuer of %s is not known (it is neither in the trust "
                             "store nor found in the peer's chain)" % cert.subject.rfc4514_string())
        pairs.append((cert, issuer))
        cert = issuer
    raise ValueError("no trust anchor within %d certificates" % PATH_LENGTH_MAX)


# ---------------------------------------------------------------------------------------------
# where to ask

def _uris(names):
    return [n.value for n in names or () if isinstance(n, x509.UniformResourceIdentifier)]


def _usable(url):
    return url.split(":", 1)[0].lower() in URL_SCHEMES


def crl_urls(cert):
    """The URLs of the certificate's CRL Distribution Points (full names only), in order."""
    try:
        dps = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    except x509.ExtensionNotFound:
        return []
    urls = []
    for dp in dps:
        if dp.crl_issuer:
            continue   # an indirect CRL: not supported
        urls += [u for u in _uris(dp.full_name) if _usable(u)]
    return urls


def ocsp_urls(cert):
    """The OCSP responder URLs of the certificate's Authority Information Access extension."""
    try:
        aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    except x509.ExtensionNotFound:
        return []
    return [d.access_location.value for d in aia
            if d.access_method == AuthorityInformationAccessOID.OCSP
            and isinstance(d.access_location, x509.UniformResourceIdentifier)
            and d.access_location.value.lower().startswith(("http:", "https:"))]


# ---------------------------------------------------------------------------------------------
# CRLs

def parse_crl(data):
    """A CRL from DER or PEM bytes (what a distribution point serves); ValueError if neither."""
    if data.lstrip().startswith(b"-----BEGIN"):
        return x509.load_pem_x509_crl(data)
    return x509.load_der_x509_crl(data)


def crl_fresh(crl, now_ms):
    """X509CRLSelector with the checker's skew: thisUpdate <= now + skew and nextUpdate >=
    now - skew. A CRL without nextUpdate is never current."""
    next_ms = _ms(crl.next_update_utc)
    if next_ms is None:
        return False
    return _ms(crl.last_update_utc) <= now_ms + CLOCK_SKEW_MS and next_ms >= now_ms - CLOCK_SKEW_MS


def crl_status(cert, issuer, crl, now_ms):
    """What a CRL says about `cert` (issued by `issuer`)."""
    if crl.issuer != issuer.subject:
        return Status(UNKNOWN, "the CRL is issued by %s, not by the certificate's issuer"
                      % crl.issuer.rfc4514_string())
    try:
        ku = issuer.extensions.get_extension_for_class(x509.KeyUsage).value
        if not ku.crl_sign:
            return Status(UNKNOWN, "the issuer's key usage does not allow signing CRLs")
    except x509.ExtensionNotFound:
        pass
    if not crl.is_signature_valid(issuer.public_key()):
        return Status(UNKNOWN, "the CRL's signature is not the issuer's")
    if not crl_fresh(crl, now_ms):
        return Status(UNKNOWN, "the CRL is not current (thisUpdate %s, nextUpdate %s)"
                      % (crl.last_update_utc, crl.next_update_utc))
    entry = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
    if entry is None:
        return Status(GOOD)
    reason = None
    try:
        reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
    except x509.ExtensionNotFound:
        pass
    if reason == x509.ReasonFlags.remove_from_crl:
        return Status(GOOD)
    return Status(REVOKED, "reason %s, revoked %s (CRL)"
                  % (reason.value if reason else "unspecified",
                     entry.revocation_date_utc.strftime("%Y-%m-%d %H:%M:%S UTC")))


def crl_next_ms(crl):
    """Until when a fetched CRL may be used from a cache: its nextUpdate (ms), or None."""
    return _ms(crl.next_update_utc)


# ---------------------------------------------------------------------------------------------
# OCSP

def ocsp_request(cert, issuer):
    """The DER OCSP request for `cert` (SHA-1 CertID, no nonce: the JDK's defaults)."""
    return (ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA1())
            .build().public_bytes(Encoding.DER))


def _signed_by(key, signature, data, hash_alg):
    try:
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, data, padding.PKCS1v15(), hash_alg)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, data, ec.ECDSA(hash_alg))
        elif isinstance(key, (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)):
            key.verify(signature, data)
        else:
            return False
        return True
    except (InvalidSignature, ValueError, TypeError):
        return False


def _responder_matches(resp, cert):
    if resp.responder_name is not None:
        return resp.responder_name == cert.subject
    return resp.responder_key_hash == x509.SubjectKeyIdentifier.from_public_key(
        cert.public_key()).digest


def _responder(resp, issuer, now_ms):
    """The certificate whose key signed the response: the issuer itself, or a responder
    certificate in the response that the issuer signed for OCSP signing; or None."""
    if _responder_matches(resp, issuer):
        return issuer
    for c in resp.certificates:
        if not _responder_matches(resp, c) or c.issuer != issuer.subject or \
                not _verifies(c, issuer):
            continue
        try:
            eku = c.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        except x509.ExtensionNotFound:
            continue
        if ExtendedKeyUsageOID.OCSP_SIGNING not in eku:
            continue
        if not _ms(c.not_valid_before_utc) <= now_ms <= _ms(c.not_valid_after_utc):
            continue
        return c
    return None


def ocsp_status(cert, issuer, data, now_ms):
    """What an OCSP response (DER bytes) says about `cert` (issued by `issuer`)."""
    try:
        resp = ocsp.load_der_ocsp_response(data)
    except ValueError as e:
        return Status(UNKNOWN, "not an OCSP response: %s" % e)
    if resp.response_status != ocsp.OCSPResponseStatus.SUCCESSFUL:
        return Status(UNKNOWN, "the OCSP responder answered %s" % resp.response_status.name)
    signer = _responder(resp, issuer, now_ms)
    if signer is None:
        return Status(UNKNOWN, "the OCSP response is signed neither by the issuer nor by a "
                      "responder it authorized")
    if not _signed_by(signer.public_key(), resp.signature, resp.tbs_response_bytes,
                      resp.signature_hash_algorithm):
        return Status(UNKNOWN, "the OCSP response's signature does not verify")
    want = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA1()).build()
    for single in resp.responses:
        if (single.serial_number, single.issuer_name_hash, single.issuer_key_hash) != (
                want.serial_number, want.issuer_name_hash, want.issuer_key_hash):
            continue
        if _ms(single.this_update_utc) > now_ms + CLOCK_SKEW_MS:
            return Status(UNKNOWN, "the OCSP response is not yet valid")
        nxt = _ms(single.next_update_utc)
        if nxt is not None and nxt < now_ms - CLOCK_SKEW_MS:
            return Status(UNKNOWN, "the OCSP response is out of date")
        if single.certificate_status == ocsp.OCSPCertStatus.GOOD:
            return Status(GOOD)
        if single.certificate_status == ocsp.OCSPCertStatus.REVOKED:
            reason = single.revocation_reason
            return Status(REVOKED, "reason %s, revoked %s (OCSP)"
                          % (reason.value if reason else "unspecified",
                             single.revocation_time_utc.strftime("%Y-%m-%d %H:%M:%S UTC")))
        return Status(UNKNOWN, "the OCSP responder does not know the certificate")
    return Status(UNKNOWN, "the OCSP response has no answer for the certificate")


# ---------------------------------------------------------------------------------------------
# the verdict

def combine(mode, statuses):
    """One certificate's verdict from what each source said, asked in mode.order.

    statuses: {"ocsp": Status, "crl": Status}; a source asked later may be missing when an
    earlier one decided. Returns a Status: REVOKED or UNKNOWN refuse the connection."""
    first = None
    for source in mode.order:
        st = statuses.get(source)
        if st is None:
            break
        if st.state in (GOOD, REVOKED):
            return st
        if first is None:
            first = st
    return first or Status(UNKNOWN, "no source of revocation status")


def decides(status):
    """Whether a source's answer ends the asking (GOOD or REVOKED)."""
    return status.state in (GOOD, REVOKED)
