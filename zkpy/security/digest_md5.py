"""The server side of SASL DIGEST-MD5 (RFC 2831), as the JDK's DigestMD5Server runs it for
ZooKeeper. Pure: bytes in, bytes out; the caller passes the nonce and the password lookup.

ZooKeeper creates its server with protocol "zookeeper", server name "zk-sasl-md5" and no
properties (SecurityUtils.createSaslServer), so:
  - the challenge is  realm="zk-sasl-md5",nonce="<40 base64 chars>",charset=utf-8,
    algorithm=md5-sess  (no qop directive: "auth" only, no integrity or privacy layer);
  - the response must name that realm, that nonce, nonce-count 1, qop auth (or none),
    digest-uri zookeeper/zk-sasl-md5 (any case), and the right response value;
  - the answer is rspauth=<hex>, and the exchange is complete;
  - any other token after that, or a second response, fails ("illegal state"): one response
    per nonce, so a replayed response never authenticates twice.
A response over 4096 bytes fails before it is read (MAX_RESPONSE_LENGTH).

Names and passwords hash as the JDK hashes them: ISO-8859-1 bytes when every character fits,
else UTF-8 (stringToByte_8859_1); the response's text is read as UTF-8 (the server's charset).
"""

import hashlib
import hmac

MAX_RESPONSE_LENGTH = 4096
NONCE_COUNT = 1
PROTOCOL = "zookeeper"
SERVER_NAME = "zk-sasl-md5"
_RESPONSE_KEYS = ("username", "realm", "nonce", "cnonce", "nonce-count", "qop", "digest-uri",
                  "response", "maxbuf", "charset", "cipher", "authzid", "auth-param")
_LWS = b" \t\r\n"


class SaslError(Exception):
    """The exchange failed (the JDK's SaslException): the login is refused."""


def parse_directives(buf):
    """DigestMD5Base.parseDirectives: {key (lower case): value bytes} of a digest message.

    Known keys only (unknown ones are dropped, as the JDK drops them); a key seen twice fails.
    """
    values = {}

    def extract(key, value):
        try:
            key = key.decode("utf-8").lower()
        except UnicodeDecodeError:
            return
        if key in _RESPONSE_KEYS:
            if key in values:
                raise SaslError("peer sent more than one %s directive" % key)
            values[key] = bytes(value)

    key = bytearray()
    value = bytearray()
    getting_key = True
    quoted = False
    expect_separator = False
    n = len(buf)
    i = _skip_lws(buf, 0)
    while i < n:
        b = buf[i]
        if getting_key:
            if b == 0x2C:  # ','
                if key:
                    raise SaslError("directive key contains a ','")
                i = _skip_lws(buf, i + 1)
            elif b == 0x3D:  # '='
                if not key:
                    raise SaslError("empty directive key")
                getting_key = False
                i = _skip_lws(buf, i + 1)
                if i < n:
                    if buf[i] == 0x22:
                        quoted = True
                        i += 1
                else:
                    raise SaslError("valueless directive found: %s" % key.decode("latin-1"))
            elif b in _LWS:
                i = _skip_lws(buf, i + 1)
                if i >= n or buf[i] != 0x3D:
                    raise SaslError("'=' expected after key: %s" % key.decode("latin-1"))
            else:
                key.append(b)
                i += 1
        elif quoted:
            if b == 0x5C:  # backslash: quoted-pair
                i += 1
                if i < n:
                    value.append(buf[i])
                    i += 1
                else:
                    raise SaslError("unmatched quote")
            elif b == 0x22:
                i += 1
                quoted = False
                expect_separator = True
            else:
                value.append(b)
                i += 1
        elif b in _LWS or b == 0x2C:
            extract(key, value)
            key = bytearray()
            value = bytearray()
            getting_key = True
            quoted = expect_separator = False
            i = _skip_lws(buf, i + 1)
        elif expect_separator:
            raise SaslError("expecting comma or linear whitespace after quoted string")
        else:
            value.append(b)
            i += 1
    if quoted:
        raise SaslError("unmatched quote")
    if key:
        extract(key, value)
    return values


def _skip_lws(buf, i):
    while i < len(buf) and buf[i] in _LWS:
        i += 1
    return i


def _quote(value):
    """writeQuotedStringValue: escape '"', '\\', DEL and control characters but CR, LF, HT."""
    out = bytearray()
    for b in value:
        if b in (0x22, 0x5C, 0x7F) or (b <= 31 and b not in (9, 10, 13)):
            out.append(0x5C)
        out.append(b)
    return bytes(out)


def _text_bytes(text):
    """stringToByte_8859_1 (with UTF-8 on): Latin-1 when every character fits, else UTF-8."""
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return text.encode("utf-8")


def _hex(data):
    return hashlib.md5(data).hexdigest().encode("ascii")


def response_value(method, digest_uri, qop, username, realm, password, nonce, cnonce,
                   nonce_count=NONCE_COUNT, authzid=None):
    """RFC 2831 2.1.2.1 response-value (DigestMD5Base.generateResponseValue): method is
    "AUTHENTICATE" for the client's response, "" for the server's rspauth. Texts are str,
    nonce / cnonce / authzid bytes."""
    a2 = method.encode("utf-8") + b":" + digest_uri.encode("utf-8")
    if qop in ("auth-int", "auth-conf"):
        a2 += b":00000000000000000000000000000000"
    secret = hashlib.md5(_text_bytes(username) + b":" + _text_bytes(realm) + b":"
                         + _text_bytes(password)).digest()
    a1 = secret + b":" + nonce + b":" + cnonce
    if authzid is not None:
        a1 += b":" + authzid
    kd = b":".join([_hex(a1), nonce, b"%08x" % nonce_count, cnonce, qop.encode("utf-8"),
                    _hex(a2)])
    return _hex(kd)


class DigestMD5Server(object):
    """One login: evaluate() each client token in turn (the JDK's evaluateResponse).

    password_of(username) -> the password (str), or None for a user who does not exist.
    nonce: the 40-character nonce the challenge carries (random bytes, base64: the caller's).
    """

    def __init__(self, password_of, nonce, realm=SERVER_NAME, protocol=PROTOCOL,
                 server_name=SERVER_NAME):
        self.password_of = password_of
        self.nonce = nonce
        self.realm = realm
        self.digest_uri = "%s/%s" % (protocol, server_name)
        self.step = 1
        self.complete = False
        self.username = None       # authentication id, once complete
        self.authzid = None        # the authorization id the client asked for (None: none)

    def evaluate(self, token):
        token = bytes(token)
        if len(token) > MAX_RESPONSE_LENGTH:
            raise SaslError("invalid digest response length: got %d, expected < %d"
                            % (len(token), MAX_RESPONSE_LENGTH))
        if self.step == 1:
            self.step = 3   # an initial response is ignored, as the JDK does
            return self.challenge()
        if self.step == 3:
            self.step = 0   # one response per nonce, whatever happens
            answer = self._validate(parse_directives(token))
            self.complete = True
            return answer
        raise SaslError("server at illegal state")

    def challenge(self):
        return (b'realm="' + _quote(self.realm.encode("utf-8")) + b'",nonce="'
                + _quote(self.nonce) + b'",charset=utf-8,algorithm=md5-sess')

    def _validate(self, d):
        def text(key):
            return d[key].decode("utf-8", "replace")
        if "charset" in d and text("charset") != "utf-8":
            raise SaslError("incompatible charset value: %s" % text("charset"))
        if "maxbuf" in d:
            try:
                int(text("maxbuf"))
            except ValueError:
                raise SaslError("bad maxbuf value")
        if "username" not in d:
            raise SaslError("missing username")
        username = text("username")
        realm = text("realm") if "realm" in d else ""
        if realm != self.realm:
            raise SaslError("nonexistent realm: %s" % realm)
        if "nonce" not in d:
            raise SaslError("missing nonce")
        if not hmac.compare_digest(d["nonce"], self.nonce):
            raise SaslError("mismatched nonce")
        if "cnonce" not in d:
            raise SaslError("missing cnonce")
        cnonce = d["cnonce"]
        if "nonce-count" in d:
            try:
                nc = int(text("nonce-count"), 16)
            except ValueError:
                raise SaslError("bad nonce count")
            if nc != NONCE_COUNT:
                raise SaslError("nonce count does not match: %s" % text("nonce-count"))
        qop = text("qop") if "qop" in d else "auth"
        if qop in ("auth-int", "auth-conf"):
            raise SaslError("server does not support qop: %s" % qop)
        if qop != "auth":
            raise SaslError("invalid qop: %s" % qop)
        uri = text("digest-uri") if "digest-uri" in d else None
        if uri is None or uri.lower() != self.digest_uri.lower():
            raise SaslError("mismatched URI: %s; expecting: %s" % (uri, self.digest_uri))
        digest_uri = uri
        if "response" not in d:
            raise SaslError("missing response")
        authzid = d.get("authzid")
        password = self.password_of(username)
        if password is None:
            raise SaslError("cannot acquire password for %s in realm : %s" % (username, realm))
        expected = response_value("AUTHENTICATE", digest_uri, qop, username, realm, password,
                                  self.nonce, cnonce, NONCE_COUNT, authzid)
        if not hmac.compare_digest(d["response"], expected):
            raise SaslError("mismatched response")
        self.username = username
        self.authzid = authzid.decode("utf-8", "replace") if authzid is not None else None
        return b"rspauth=" + response_value("", digest_uri, qop, username, realm, password,
                                            self.nonce, cnonce, NONCE_COUNT, authzid)


class DigestMD5Client(object):
    """The client side of one DIGEST-MD5 login (what the JDK's DigestMD5Client answers), for
    zkpy's own connections between servers (zkpy.quorum.secure). Pure: the caller passes the
    cnonce. respond(challenge) -> the response; verify(final) checks the server's rspauth."""

    def __init__(self, username, password, cnonce, protocol=PROTOCOL, server_name=SERVER_NAME):
        self.username = username
        self.password = password
        self.cnonce = bytes(cnonce)
        self.digest_uri = "%s/%s" % (protocol, server_name)
        self.server_name = server_name
        self._expected = None

    def respond(self, challenge):
        d = parse_directives(bytes(challenge))
        if "nonce" not in d:
            raise SaslError("the challenge has no nonce")
        qops = [q.strip() for q in d.get("qop", b"auth").decode("utf-8", "replace").split(",")]
        if "auth" not in qops:
            raise SaslError("the server offers no qop=auth (%s)" % ",".join(qops))
        realm = d["realm"].decode("utf-8") if "realm" in d else self.server_name
        nonce = d["nonce"]
        value = response_value("AUTHENTICATE", self.digest_uri, "auth", self.username, realm,
                               self.password, nonce, self.cnonce)
        self._expected = b"rspauth=" + response_value("", self.digest_uri, "auth", self.username,
                                                      realm, self.password, nonce, self.cnonce)
        return b",".join([
            b"charset=utf-8", b'username="' + _quote(self.username.encode("utf-8")) + b'"',
            b'realm="' + _quote(realm.encode("utf-8")) + b'"',
            b'nonce="' + _quote(nonce) + b'"', b"nc=%08x" % NONCE_COUNT,
            b'cnonce="' + _quote(self.cnonce) + b'"',
            b'digest-uri="' + _quote(self.digest_uri.encode("utf-8")) + b'"',
            b"maxbuf=65536", b"response=" + value, b"qop=auth"])

    def verify(self, final):
        """The server's last token must prove it knows the password too (mutual auth)."""
        if self._expected is None or not hmac.compare_digest(bytes(final), self._expected):
            raise SaslError("the server's rspauth does not match: it does not know the password")
