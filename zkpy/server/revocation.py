"""Revocation checks of a peer's certificate after its TLS handshake (ssl.crl, ssl.ocsp and
their ssl.quorum.* twins): the fetching half. What to check and what the answers mean is
zkpy.security.revocation (pure); this module fetches CRLs and OCSP responses and caches CRLs.

Python's ssl module cannot fetch revocation status during a handshake, so the check runs right
after it, before the connection is served (zkpy.server.tlsaccept.start_tls for client
connections, zkpy.server.tls.QuorumTls.check_peer between servers). Fetches run in the default
thread executor with urllib (http, https and file URLs) so the event loop never blocks; a CRL
is kept per URL until its nextUpdate, and at most CRL_RECHECK_MS (the JDK's URICertStore looks
again every 30 s). Concurrent checks needing one URL share one fetch. OCSP answers are not
cached (the JDK does not cache them either).
"""

import asyncio
import logging
import time
import urllib.error
import urllib.request
import warnings
import weakref

from cryptography import x509

from zkpy.security import revocation as rv

log = logging.getLogger("zkpy.server.tls")

FETCH_TIMEOUT_S = 15.0          # com.sun.security.crl.timeout / ocsp.timeout: 15 s
CRL_BYTES_MAX = 16 << 20
OCSP_BYTES_MAX = 1 << 20
CRL_RECHECK_MS = 30 * 1000      # URICertStore's CHECK_INTERVAL
CRL_CACHE_MAX = 256             # URLs


def _now_ms():
    return int(time.time() * 1000)


def _read_url(url, data, content_type, limit, timeout):
    """GET (data None) or POST `url`; the body, at most `limit` bytes. Raises OSError/ValueError."""
    req = urllib.request.Request(url, data=data)
    if data is not None:
        req.add_header("Content-Type", content_type)
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        status = getattr(resp, "status", None)
        if status is not None and url.lower().startswith("http") and status != 200:
            raise OSError("HTTP status %s" % status)
        body = resp.read(limit + 1)
    if len(body) > limit:
        raise ValueError("more than %d bytes" % limit)
    return body


class Checker(object):
    """The revocation checks of one X509Util prefix (ssl. or ssl.quorum.): its mode and its CRL
    cache. One per process and prefix; shared by the contexts a store reload builds."""

    def __init__(self, mode, timeout=FETCH_TIMEOUT_S, now_ms=_now_ms):
        assert mode.enabled
        self.mode = mode
        self.timeout = timeout
        self.now_ms = now_ms
        self._crls = {}        # url -> (crl, keep_until_ms)
        self._inflight = {}    # url -> Future of (crl or exception)

    async def _fetch(self, url, data=None, content_type=None, limit=CRL_BYTES_MAX):
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, _read_url, url, data, content_type, limit,
                                          self.timeout)

    async def _crl(self, url):
        """The CRL at `url` (cached), or raise."""
        now = self.now_ms()
        hit = self._crls.get(url)
        if hit is not None and now < hit[1]:
            return hit[0]
        fut = self._inflight.get(url)
        if fut is None:
            fut = asyncio.ensure_future(self._load_crl(url))
            self._inflight[url] = fut
            fut.add_done_callback(lambda f: self._inflight.pop(url, None) and (
                f.cancelled() or f.exception()))   # retrieved even if no one waits now
        return await asyncio.shield(fut)

    async def _load_crl(self, url):
        crl = rv.parse_crl(await self._fetch(url))
        now = self.now_ms()
        until = now + CRL_RECHECK_MS
        next_ms = rv.crl_next_ms(crl)
        if next_ms is not None:
            until = min(until, next_ms)
        if len(self._crls) >= CRL_CACHE_MAX:
            self._crls.pop(next(iter(self._crls)))
        self._crls[url] = (crl, until)
        return crl

    async def crl_status(self, cert, issuer):
        urls = rv.crl_urls(cert)
        if not urls:
            return rv.Status(rv.UNKNOWN, "no CRL distribution point")
        whys = []
        for url in urls:
            try:
                crl = await self._crl(url)
            except Exception as e:  # noqa: BLE001 - unreachable, refused, not a CRL
                whys.append("CRL %s: %s" % (url, _describe(e)))
                continue
            st = rv.crl_status(cert, issuer, crl, self.now_ms())
            if rv.decides(st):
                return st
            whys.append("CRL %s: %s" % (url, st.why))
        return rv.Status(rv.UNKNOWN, "; ".join(whys))

    async def ocsp_status(self, cert, issuer):
        urls = rv.ocsp_urls(cert)
        if not urls:
            return rv.Status(rv.UNKNOWN, "the certificate names no OCSP responder")
        url = urls[0]   # the JDK asks the first responder only
        try:
            body = await self._fetch(url, rv.ocsp_request(cert, issuer),
                                     "application/ocsp-request", OCSP_BYTES_MAX)
        except Exception as e:  # noqa: BLE001
            return rv.Status(rv.UNKNOWN, "OCSP %s: %s" % (url, _describe(e)))
        st = rv.ocsp_status(cert, issuer, body, self.now_ms())
        if not rv.decides(st):
            st = rv.Status(rv.UNKNOWN, "OCSP %s: %s" % (url, st.why))
        return st

    async def cert_status(self, cert, issuer):
        statuses = {}
        for source in self.mode.order:
            st = await (self.ocsp_status if source == "ocsp" else self.crl_status)(cert, issuer)
            statuses[source] = st
            if rv.decides(st):
                break
        return rv.combine(self.mode, statuses)

    async def check(self, chain, anchors):
        """None when every certificate of the peer's path (less its anchor) is known not to
        be revoked; else why not, naming the certificate. chain/anchors: `cryptography`
        certificates (the peer's, leaf first; the trust store's)."""
        try:
            pairs = rv.path_to_check(chain, anchors)
        except ValueError as e:
            return "revocation status of %s unknown: %s" % (_name(chain[0]), e)
        # The JDK checks from the anchor down; the first failure is the one reported.
        for cert, issuer in reversed(pairs):
            st = await self.cert_status(cert, issuer)
            if st.state == rv.REVOKED:
                return "certificate %s is revoked: %s" % (_name(cert), st.why)
            if st.state != rv.GOOD:
                return "revocation status of %s could not be determined: %s" % (
                    _name(cert), st.why)
        return None


def _name(cert):
    from zkpy.server.tls import subject_name
    return "'%s'" % subject_name(cert)


def _describe(e):
    if isinstance(e, urllib.error.HTTPError):
        return "HTTP %s %s" % (e.code, e.reason)
    reason = getattr(e, "reason", None)
    if reason is not None and not isinstance(reason, str):
        reason = str(reason)
    return reason or str(e) or type(e).__name__


def peer_chain(ssl_object):
    """The peer's certificates, leaf first: the verified chain (Python 3.13), else the leaf;
    [] when it sent none."""
    get = getattr(ssl_object, "get_verified_chain", None)
    if get is not None:
        ders = []
        for c in get() or ():
            if not isinstance(c, (bytes, bytearray)):
                import ssl
                c = c.public_bytes(ssl._ssl.ENCODING_DER)
            ders.append(bytes(c))
        if ders:
            return [x509.load_der_x509_certificate(d) for d in ders]
    der = ssl_object.getpeercert(binary_form=True)
    return [x509.load_der_x509_certificate(der)] if der else []


_anchors = weakref.WeakKeyDictionary()   # SSLContext -> its trusted certificates


def anchors_of(context):
    """The trusted certificates of an SSLContext (its trust store, or the system's CAs), read
    once per context (a store reload builds a new one)."""
    certs = _anchors.get(context)
    if certs is None:
        certs = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")   # old system CAs with negative serials
            for der in context.get_ca_certs(binary_form=True):
                try:
                    certs.append(x509.load_der_x509_certificate(der))
                except ValueError:
                    pass   # one `cryptography` cannot read cannot be an anchor here
        _anchors[context] = certs
    return certs
