"""TLS for client connections, as ZooKeeper 3.8's NettyServerCnxnFactory sets it up.

Owns: reading key and trust stores (JKS and JCEKS through pyjks, PKCS12 and PEM through
`cryptography`) with ZooKeeper's rules for their type (X509Util / KeyStoreFileType), the
server-side ssl.SSLContext built from the ssl.* keys (Java protocol and cipher suite names mapped
to OpenSSL's), the x509 identity of a client certificate (X509AuthenticationProvider: the subject
as Java's X500Principal.getName() prints it, RFC 2253), and reloading the stores when their files
change on disk (client.certReload). No sockets here: the core and the workers wrap connections
with the context this module builds (zkpy.workers.supervisor, zkpy.workers.worker,
zkpy.server.standalone).

Every problem with the configuration is a TlsError naming the zoo.cfg key it comes from; the
caller turns it into a ConfigError with the key's line (check_config).
"""

import logging
import os
import re
import ssl
import tempfile

log = logging.getLogger("zkpy.server.tls")

X509_PROVIDER_CLASS = "org.apache.zookeeper.server.auth.X509AuthenticationProvider"

# X509Util: TLSv1.2 unless ssl.protocol says otherwise; the enabled protocols default to it.
DEFAULT_PROTOCOL = "TLSv1.2"
# X509Util.DEFAULT_CIPHERS_JAVA9 (Java 9 and later: GCM first, then CBC).
DEFAULT_CIPHERSUITES = (
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256", "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA", "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384", "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA", "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
)
# Netty's SslHandler gives a handshake 10 s.
HANDSHAKE_TIMEOUT_S = 10.0
CLIENT_AUTH_VALUES = ("none", "want", "need")

_PROTOCOLS = {
    "TLSv1": ssl.TLSVersion.TLSv1, "TLSv1.1": ssl.TLSVersion.TLSv1_1,
    "TLSv1.2": ssl.TLSVersion.TLSv1_2, "TLSv1.3": ssl.TLSVersion.TLSv1_3,
}
# ssl.protocol names an SSLContext algorithm: a version, or "TLS" (any).
PROTOCOL_NAMES = tuple(_PROTOCOLS) + ("TLS",)
_TLS13_SUITES = {"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384",
                 "TLS_CHACHA20_POLY1305_SHA256", "TLS_AES_128_CCM_SHA256",
                 "TLS_AES_128_CCM_8_SHA256"}
# Java (IANA) cipher suite names of TLS 1.2 and earlier -> OpenSSL's.
_SUITES = {}


def _suites():
    kx = {"ECDHE_ECDSA": "ECDHE-ECDSA-", "ECDHE_RSA": "ECDHE-RSA-", "DHE_RSA": "DHE-RSA-",
          "RSA": ""}
    for jkx, okx in kx.items():
        for jc, oc in (("AES_128_GCM_SHA256", "AES128-GCM-SHA256"),
                       ("AES_256_GCM_SHA384", "AES256-GCM-SHA384"),
                       ("AES_128_CBC_SHA", "AES128-SHA"), ("AES_256_CBC_SHA", "AES256-SHA"),
                       ("AES_128_CBC_SHA256", "AES128-SHA256")):
            _SUITES["TLS_%s_WITH_%s" % (jkx, jc)] = okx + oc
        if jkx != "RSA":
            _SUITES["TLS_%s_WITH_CHACHA20_POLY1305_SHA256" % jkx] = okx + "CHACHA20-POLY1305"
    for jkx in ("ECDHE_ECDSA", "ECDHE_RSA"):
        _SUITES["TLS_%s_WITH_AES_256_CBC_SHA384" % jkx] = kx[jkx] + "AES256-SHA384"
    _SUITES["TLS_DHE_RSA_WITH_AES_256_CBC_SHA256"] = "DHE-RSA-AES256-SHA256"
    _SUITES["TLS_RSA_WITH_AES_256_CBC_SHA256"] = "AES256-SHA256"
    # Java also knows the old SSL_ spelling of the RSA suites.
    for name in list(_SUITES):
        if name.startswith("TLS_RSA_"):
            _SUITES["SSL_" + name[4:]] = _SUITES[name]


_suites()

STORE_TYPES = ("JKS", "PEM", "PKCS12", "BCFKS")   # KeyStoreFileType
_EXTENSIONS = {".jks": "JKS", ".pem": "PEM", ".p12": "PKCS12", ".bcfks": "BCFKS"}


_PEM_KEY = re.compile(rb"-----BEGIN ([A-Z ]*)PRIVATE KEY-----.*?-----END \1PRIVATE KEY-----",
                      re.S)


class TlsError(Exception):
    """A TLS setting that cannot work; `key` is the zoo.cfg key to blame."""

    def __init__(self, key, message):
        self.key = key
        self.message = message
        super().__init__("%s: %s" % (key, message))


# ---------------------------------------------------------------------------------------------
# stores

def store_type(type_value, location, type_key):
    """KeyStoreFileType.fromPropertyValueOrFileName: the .type value, else the file extension."""
    if type_value:
        t = type_value.upper()
        if t not in STORE_TYPES:
            raise TlsError(type_key, "unknown store type %r (JKS, PEM or PKCS12)" % type_value)
    else:
        i = location.rfind(".")
        t = _EXTENSIONS.get(location[i:]) if i >= 0 else None
        if t is None:
            raise TlsError(type_key, "not set, and the type of %s cannot be told from its "
                           "name (.jks, .pem or .p12); set %s to JKS, PEM or PKCS12"
                           % (location, type_key))
    if t == "BCFKS":
        raise TlsError(type_key, "BCFKS (Bouncy Castle FIPS) stores are not supported by zkpy; "
                       "convert the store to PKCS12 or PEM")
    return t


def read_password(password, path, path_key):
    """X509Util.getPasswordFromConfigPropertyOrFile: the file wins; one trailing newline is
    dropped (SecretUtils.readSecret)."""
    if not path:
        return password or ""
    try:
        with open(path, "rb") as f:
            text = f.read().decode("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise TlsError(path_key, "cannot read the password file %s: %s"
                       % (path, getattr(e, "strerror", None) or e))
    return text[:-1] if text.endswith("\n") else text


def _read(location, key):
    try:
        with open(location, "rb") as f:
            return f.read()
    except OSError as e:
        raise TlsError(key, "cannot read %s: %s" % (location, e.strerror or e))


def _is_jks(data):
    return data[:4] in (b"\xfe\xed\xfe\xed", b"\xce\xce\xce\xce")   # JKS, JCEKS


def _load_jks(data, password, key):
    try:
        import jks
    except ImportError:
        raise TlsError(key, "reading a JKS store needs the pyjks package (pip install pyjks)")
    try:
        return jks.KeyStore.loads(data, password, try_decrypt_keys=True)
    except jks.util.KeystoreSignatureException:
        raise TlsError(key.replace(".location", ".password"),
                       "wrong password for the store (its integrity check failed)")
    except Exception as e:
        raise TlsError(key, "not a readable JKS store: %s" % (e,))


def _load_pkcs12(data, password, key):
    from cryptography.hazmat.primitives.serialization import pkcs12
    last = None
    # An empty password: Java reads such a store with the empty password; openssl writes
    # "no password" in two ways, so try both.
    for pw in ([password.encode("utf-8")] if password else [b"", None]):
        try:
            return pkcs12.load_pkcs12(data, pw)
        except (ValueError, TypeError) as e:
            last = e
    text = str(last)
    if "password" in text.lower():
        raise TlsError(key.replace(".location", ".password"),
                       "wrong password for the PKCS12 store (or a damaged file): %s" % text)
    raise TlsError(key, "not a readable PKCS12 store: %s" % text)


def _certs_from_pem(data, key):
    from cryptography import x509
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError:
        if b"-----BEGIN" in data and b"CERTIFICATE" not in data:
            return []
        raise TlsError(key, "the PEM file holds no readable certificate")


def _der_cert(der):
    from cryptography import x509
    return x509.load_der_x509_certificate(der)


def load_key_store(location, password, type_value, prefix="ssl.keyStore"):
    """The key store's first private key and its certificate chain: (key, [certs])."""
    key = prefix + ".location"
    t = store_type(type_value, location, prefix + ".type")
    data = _read(location, key)
    from cryptography.hazmat.primitives import serialization
    if t == "PEM":
        m = _PEM_KEY.search(data)
        if m is None:
            raise TlsError(key, "the PEM key store %s holds no private key" % location)
        try:
            pkey = serialization.load_pem_private_key(m.group(0),
                                                      password.encode("utf-8") or None)
        except TypeError as e:
            raise TlsError(prefix + ".password", "%s (%s)" % (e, location))
        except ValueError as e:
            raise TlsError(prefix + ".password", "cannot decrypt or read the private key in "
                           "%s: %s" % (location, e))
        chain = _certs_from_pem(data, key)
        if not chain:
            raise TlsError(key, "the PEM key store %s holds no certificate" % location)
        return pkey, chain
    if _is_jks(data):   # a "PKCS12" file may be JKS too: Java reads both either way
        ks = _load_jks(data, password, key)
        for alias in sorted(ks.private_keys):
            entry = ks.private_keys[alias]
            if not entry.is_decrypted():
                raise TlsError(prefix + ".password", "the key %r in %s is not protected by the "
                               "store password (ZooKeeper needs them equal)" % (alias, location))
            pkey = serialization.load_der_private_key(entry.pkey_pkcs8, None)
            return pkey, [_der_cert(der) for _, der in entry.cert_chain]
        raise TlsError(key, "the key store %s holds no private key entry" % location)
    p12 = _load_pkcs12(data, password, key)
    if p12.key is None or p12.cert is None:
        raise TlsError(key, "the key store %s holds no private key entry" % location)
    return p12.key, [p12.cert.certificate] + [c.certificate for c in p12.additional_certs]


def load_trust_store(location, password, type_value, prefix="ssl.trustStore"):
    """The trusted certificates of a trust store, as `cryptography` certificates.

    JKS: its trusted-certificate entries (what Java's PKIXParameters takes as anchors); PKCS12:
    every certificate in it; PEM: every certificate in the file."""
    key = prefix + ".location"
    t = store_type(type_value, location, prefix + ".type")
    data = _read(location, key)
    if t == "PEM":
        certs = _certs_from_pem(data, key)
    elif _is_jks(data):
        ks = _load_jks(data, password, key)
        certs = [_der_cert(ks.certs[a].cert) for a in sorted(ks.certs)]
    else:
        p12 = _load_pkcs12(data, password, key)
        certs = ([p12.cert.certificate] if p12.cert is not None else []) + \
            [c.certificate for c in p12.additional_certs]
    if not certs:
        raise TlsError(key, "the trust store %s holds no trusted certificate" % location)
    return certs


# ---------------------------------------------------------------------------------------------
# the context

def openssl_ciphers(names, key="ssl.ciphersuites"):
    """Java cipher suite names -> (OpenSSL names of the TLS <= 1.2 suites, TLS 1.3 names)."""
    old, new = [], []
    for name in names:
        name = name.strip()
        if not name or name == "TLS_EMPTY_RENEGOTIATION_INFO_SCSV":
            continue
        if name in _TLS13_SUITES:
            new.append(name)
        elif name in _SUITES:
            old.append(_SUITES[name])
        else:
            raise TlsError(key, "unknown or unsupported cipher suite %r (Java names, such as "
                           "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256)" % name)
    return old, new


_STORE_ATTRS = ("key_store_location", "key_store_password", "key_store_password_path",
                "key_store_type", "trust_store_location", "trust_store_password",
                "trust_store_password_path", "trust_store_type", "client_auth", "protocol",
                "enabled_protocols", "ciphersuites", "hostname_verification",
                "allow_reverse_dns_lookup", "crl", "ocsp")


class Settings(object):
    """The TLS keys of one X509Util prefix: "ssl." (client connections, ClientX509Util) or
    "ssl.quorum." (between servers, QuorumX509Util), read from a Config."""

    def __init__(self, config, quorum=False):
        self.quorum = quorum
        self.prefix = "ssl.quorum." if quorum else "ssl."
        attr = "ssl_quorum_" if quorum else "ssl_"
        for name in _STORE_ATTRS:
            setattr(self, name, getattr(config, attr + name))

    def key(self, suffix):
        """The zoo.cfg key of a setting: key("keyStore.location") -> ssl.quorum.keyStore...."""
        return self.prefix + suffix


def revocation_checker(config, quorum=False):
    """The revocation checks ssl[.quorum].crl / .ocsp ask for (zkpy.server.revocation), or
    None when neither is on."""
    from zkpy.security.revocation import Mode
    s = _settings(config, quorum)
    mode = Mode(s.crl, s.ocsp)
    if not mode.enabled:
        return None
    from zkpy.server.revocation import Checker
    return Checker(mode)


def _settings(config, quorum=False):
    return config if isinstance(config, Settings) else Settings(config, quorum)


def enabled_protocols(config):
    s = _settings(config)
    names = s.enabled_protocols or (s.protocol,)
    key = s.key("enabledProtocols" if s.enabled_protocols else "protocol")
    versions = []
    for name in names:
        name = name.strip()
        if name not in _PROTOCOLS:
            raise TlsError(key, "%r is not a protocol version zkpy can enable (%s)"
                           % (name, ", ".join(_PROTOCOLS)))
        versions.append(_PROTOCOLS[name])
    return sorted(set(versions))


def _memfile(data):
    """A path to `data` that never reaches a disk: a memfd (Linux), else a private temp file."""
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("zkpy-tls", 0)
        os.write(fd, data)
        return fd, "/proc/self/fd/%d" % fd
    fd, path = tempfile.mkstemp(prefix="zkpy-tls-")
    os.write(fd, data)
    return fd, path


def build_context(config, quorum=False, server_side=True):
    """The SSLContext of one side (raises TlsError): server_side for accepted connections
    (client connections, or a server's quorum/election ports), else the connecting side of a
    connection between servers (quorum=True: it presents its certificate and checks the
    other's against the quorum trust store; the host check is verify_peer_host's)."""
    from cryptography.hazmat.primitives import serialization
    s = _settings(config, quorum)
    what = "TLS between servers" if s.quorum else "TLS on the client port"

    if not s.key_store_location:
        raise TlsError(s.key("keyStore.location"), "%s needs a key store with the server's key "
                       "and certificate" % what)
    pw = read_password(s.key_store_password, s.key_store_password_path,
                       s.key("keyStore.passwordPath"))
    pkey, chain = load_key_store(s.key_store_location, pw, s.key_store_type,
                                 s.key("keyStore"))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server_side else ssl.PROTOCOL_TLS_CLIENT)
    if not server_side:
        ctx.check_hostname = False   # verify_peer_host does ZKTrustManager's check
    pem = pkey.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    pem += b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain)
    fd, path = _memfile(pem)
    try:
        ctx.load_cert_chain(path)
    except ssl.SSLError as e:
        raise TlsError(s.key("keyStore.location"), "the key store's key and certificate do not "
                       "go together: %s" % e)
    finally:
        os.close(fd)
        if not path.startswith("/proc/"):
            os.unlink(path)

    versions = enabled_protocols(s)
    ctx.minimum_version = versions[0]
    ctx.maximum_version = versions[-1]
    for v, flag in ((ssl.TLSVersion.TLSv1_1, ssl.OP_NO_TLSv1_1),
                    (ssl.TLSVersion.TLSv1_2, ssl.OP_NO_TLSv1_2)):
        if versions[0] < v < versions[-1] and v not in versions:
            ctx.options |= flag
    old, new = openssl_ciphers(s.ciphersuites or DEFAULT_CIPHERSUITES, s.key("ciphersuites"))
    key = s.key("ciphersuites")
    has13 = ssl.TLSVersion.TLSv1_3 in versions
    if s.ciphersuites and not new and has13:
        # Java negotiates TLSv1.3 only with a TLSv1.3 suite; none is listed.
        if versions == [ssl.TLSVersion.TLSv1_3]:
            raise TlsError(key, "lists no TLSv1.3 cipher suite, and TLSv1.3 is the only "
                           "protocol enabled: no handshake could succeed")
        ctx.maximum_version = max(v for v in versions if v < ssl.TLSVersion.TLSv1_3)
    elif not s.ciphersuites and has13:
        # ZooKeeper's default list has no TLSv1.3 suite either.
        if versions == [ssl.TLSVersion.TLSv1_3]:
            raise TlsError(s.key("protocol"), "TLSv1.3 with ZooKeeper's default cipher suites (all "
                           "TLSv1.2) cannot complete a handshake; set ssl.ciphersuites")
        ctx.maximum_version = max(v for v in versions if v < ssl.TLSVersion.TLSv1_3)
    if old:
        try:
            ctx.set_ciphers(":".join(old))
        except ssl.SSLError:
            raise TlsError(key, "none of the cipher suites is available in this OpenSSL")
    elif versions[0] < ssl.TLSVersion.TLSv1_3:
        if not has13:
            raise TlsError(key, "lists no cipher suite for the enabled protocols")
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3

    ctx.verify_mode = {"none": ssl.CERT_NONE, "want": ssl.CERT_OPTIONAL,
                       "need": ssl.CERT_REQUIRED}[s.client_auth] if server_side \
        else ssl.CERT_REQUIRED
    # Java's PKIX trust manager takes any certificate of the trust store as an anchor, not
    # only self-signed ones.
    ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    if s.trust_store_location:
        pw = read_password(s.trust_store_password, s.trust_store_password_path,
                           s.key("trustStore.passwordPath"))
        certs = load_trust_store(s.trust_store_location, pw, s.trust_store_type,
                                 s.key("trustStore"))
        ctx.load_verify_locations(cadata="".join(
            c.public_bytes(serialization.Encoding.PEM).decode("ascii") for c in certs))
    elif not server_side:
        ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
    elif s.client_auth != "none":
        # Java then uses the JVM's default trust store (cacerts): the system's CAs here.
        ctx.load_default_certs(ssl.Purpose.CLIENT_AUTH)
    # Client-initiated renegotiation is refused (X509Util sets
    # jdk.tls.rejectClientInitiatedRenegotiation); OpenSSL 3 has it off for servers anyway.
    if hasattr(ssl, "OP_NO_RENEGOTIATION"):
        ctx.options |= ssl.OP_NO_RENEGOTIATION
    return ctx


def check_config(config):
    """Everything about TLS in `config` that can fail, done once at startup: raises TlsError."""
    if config.ssl_auth_provider != "x509":
        raise TlsError("ssl.authProvider", "%r: zkpy has the x509 provider only "
                       "(X509AuthenticationProvider); remove the key or set it to x509"
                       % config.ssl_auth_provider)
    if tls_enabled(config):
        build_context(config)
        if not config.ssl_trust_store_location and config.ssl_client_auth != "none":
            log.warning("ssl.trustStore.location not specified: client certificates are checked "
                        "against the system's CA certificates")


def check(config):
    """check_config for a server about to start: a TlsError becomes a ConfigError naming the
    key and its line in zoo.cfg."""
    from zkpy.errors import ConfigError
    if not (tls_enabled(config) or config.ssl_auth_provider != "x509"
            or quorum_tls_enabled(config)):
        return
    try:
        check_config(config)
        if quorum_tls_enabled(config):
            QuorumTls(config)
    except TlsError as e:
        raise ConfigError(str(e), key=e.key, line=config.key_lines.get(e.key),
                          path=config.path) from None


def quorum_tls_enabled(config):
    """TLS between servers: sslQuorum (connect and accept with TLS) or portUnification
    (accept TLS beside plaintext)."""
    return bool(config.ssl_quorum or config.quorum_port_unification)


def tls_enabled(config):
    return bool(config.secure_client_port) or config.client_port_unification


def x509_enabled(config):
    """Whether the x509 scheme exists (ACLs x509:..., client certificate identities): TLS on a
    client port registers X509AuthenticationProvider (QuorumPeerConfig.configureSSLAuth), as
    does an authProvider.N naming it."""
    return tls_enabled(config) or config.x509_provider


def _stamp(path):
    if not path:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


class ServerTls(object):
    """The current SSLContext of a process that serves TLS connections, and its reload."""

    def __init__(self, config):
        self.config = config
        self._files = [config.ssl_key_store_location, config.ssl_trust_store_location,
                       config.ssl_key_store_password_path, config.ssl_trust_store_password_path]
        self._stamps = self.stamps()
        self.context = build_context(config)
        self.handshake_timeout = HANDSHAKE_TIMEOUT_S
        # ssl.crl / ssl.ocsp: checked after each handshake (tlsaccept.start_tls)
        self.revocation = revocation_checker(config) if config.ssl_client_auth != "none" \
            else None

    def stamps(self):
        return [_stamp(p) for p in self._files]

    def maybe_reload(self):
        """client.certReload: a store file changed -> a new context for new connections (the
        open ones keep theirs). A store that cannot be read keeps the old context."""
        stamps = self.stamps()
        if stamps == self._stamps:
            return False
        self._stamps = stamps
        try:
            self.context = build_context(self.config)
        except TlsError as e:
            log.error("reloading the TLS key/trust stores failed; keeping the previous ones: %s",
                      e)
            return False
        except Exception as e:   # a store half written, say
            log.error("reloading the TLS key/trust stores failed; keeping the previous ones: "
                      "%s", e)
            return False
        log.info("reloaded the TLS key/trust stores (%s)",
                 ", ".join(p for p in self._files if p))
        return True

    async def check_revocation(self, ssl_object, context):
        """None, or why the peer's certificate is refused (revoked, or its status unknown).
        A client that sent no certificate (clientAuth=want) is not checked, as Java's trust
        manager is not called then."""
        if self.revocation is None:
            return None
        from zkpy.server import revocation
        chain = revocation.peer_chain(ssl_object)
        if not chain:
            return None
        return await self.revocation.check(chain, revocation.anchors_of(context))

    def peer_identities(self, ssl_object, peer):
        """The identities a completed handshake gives its connection (NettyServerCnxnFactory
        .CertificateVerifier with X509AuthenticationProvider), or None: close it (logged)."""
        cfg = self.config
        if cfg.ssl_client_auth == "none":
            return []    # no certificate asked for: none looked at
        der = ssl_object.getpeercert(binary_form=True)
        if der is None:
            return []    # want, and the client sent none: served without an x509 identity
        subject = subject_name(der)
        ids = []
        if cfg.x509_super_user is not None and subject == cfg.x509_super_user:
            ids.append(("super", subject))
            log.info("Authenticated Id '%s' as super user", subject)
        ids.append(("x509", subject))
        log.info("Authenticated Id '%s' for Scheme 'x509' (%s)", subject, peer)
        return ids


class QuorumTls(object):
    """TLS between servers (QuorumX509Util): the accepting and the connecting SSLContext from
    the ssl.quorum.* keys, the peer host check, and sslQuorumReloadCertFiles."""

    def __init__(self, config):
        self.config = config
        self.settings = Settings(config, quorum=True)
        s = self.settings
        if not s.trust_store_location:
            raise TlsError(s.key("trustStore.location"), "TLS between servers needs a trust "
                           "store holding what signed the other servers' certificates")
        self._files = [s.key_store_location, s.trust_store_location, s.key_store_password_path,
                       s.trust_store_password_path]
        self._stamps = [_stamp(p) for p in self._files]
        self.server_context = build_context(s, server_side=True)
        self.client_context = build_context(s, server_side=False)
        self.revocation = revocation_checker(s)   # ssl.quorum.crl / ssl.quorum.ocsp

    def own_certificate(self):
        """This server's certificate (the key store's first chain), as the others see it."""
        s = self.settings
        pw = read_password(s.key_store_password, s.key_store_password_path,
                           s.key("keyStore.passwordPath"))
        return load_key_store(s.key_store_location, pw, s.key_store_type,
                              s.key("keyStore"))[1][0]

    async def check_own_name(self, host):
        """Why the other servers' host check (check_peer, accepting side) will refuse this
        server's certificate when it connects from `host` (its server.N address), or None.
        The refusal comes after the handshake, so this server would only see closed
        connections: the reason is worth a line of its own here."""
        if not self.settings.hostname_verification:
            return None
        import asyncio
        import socket
        cert = self.own_certificate()
        if cert_matches_host(cert, host):
            return None
        loop = asyncio.get_running_loop()
        try:
            address = (await loop.getaddrinfo(host, 0, type=socket.SOCK_STREAM))[0][4][0]
        except OSError:
            return None
        if cert_matches_host(cert, address):
            return None
        name = None
        if self.settings.allow_reverse_dns_lookup:
            try:
                name, _ = await loop.getnameinfo((address, 0), socket.NI_NAMEREQD)
            except OSError:
                name = None
            if name is not None and cert_matches_host(cert, name):
                return None
        return ("this server's certificate %s does not match its address %s%s (%s): the other "
                "servers will refuse its connections (ssl.quorum.hostnameVerification)"
                % (subject_name(cert), address, " or the name %s" % name if name else "",
                   ", ".join(cert_names(cert)) or "no names"))

    def maybe_reload(self):
        """sslQuorumReloadCertFiles: a store file changed -> new contexts for new connections
        (open ones keep theirs); a store that cannot be read keeps the old ones."""
        stamps = [_stamp(p) for p in self._files]
        if stamps == self._stamps:
            return False
        self._stamps = stamps
        try:
            server = build_context(self.settings, server_side=True)
            client = build_context(self.settings, server_side=False)
        except Exception as e:  # noqa: BLE001 - a store half written, a bad password
            log.error("reloading the quorum TLS key/trust stores failed; keeping the previous "
                      "ones: %s", e)
            return False
        self.server_context, self.client_context = server, client
        log.info("reloaded the quorum TLS key/trust stores (%s)",
                 ", ".join(p for p in self._files if p))
        return True

    async def check_peer(self, ssl_object, address, host_name=None):
        """ZKTrustManager's host check of the other server's certificate (when
        ssl.quorum.hostnameVerification, the default): its address first, then the host name
        of its server.N line (connecting side) or, with ssl.quorum.allowReverseDnsLookup (the
        quorum default), the name its address resolves back to. Returns None, or why the
        peer is refused. A server that sent no certificate (clientAuth want/none) is not
        checked, as Java does not call the trust manager then. With ssl.quorum.crl or
        ssl.quorum.ocsp, the certificate's revocation status is checked first (the PKIX
        trust manager's part, before ZKTrustManager's host check)."""
        der = ssl_object.getpeercert(binary_form=True)
        if der is None:
            return None
        if self.revocation is not None:
            from zkpy.server import revocation
            why = await self.revocation.check(revocation.peer_chain(ssl_object),
                                              revocation.anchors_of(self.server_context))
            if why is not None:
                return why + " (ssl.quorum.crl / ssl.quorum.ocsp)"
        if not self.settings.hostname_verification:
            return None
        cert = _der_cert(der)
        if cert_matches_host(cert, address):
            return None
        if host_name is None and self.settings.allow_reverse_dns_lookup:
            import asyncio
            import socket
            try:
                host_name, _ = await asyncio.get_running_loop().getnameinfo(
                    (address, 0), socket.NI_NAMEREQD)
            except OSError:
                host_name = None
        if host_name is not None and cert_matches_host(cert, host_name):
            return None
        return ("certificate of %s does not match its address %s%s (%s; "
                "ssl.quorum.hostnameVerification)"
                % (subject_name(cert), address, " or the name %s" % host_name
                   if host_name else "", ", ".join(cert_names(cert)) or "no names"))


def cert_names(cert):
    """The names ZKHostnameVerifier looks at: the subject alternative DNS names and IP
    addresses, or (none of them) the subject's CN."""
    from cryptography import x509
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = ["DNS:%s" % n for n in san.get_values_for_type(x509.DNSName)]
        names += ["IP:%s" % a for a in san.get_values_for_type(x509.IPAddress)]
        if names:
            return names
    except x509.ExtensionNotFound:
        pass
    return ["CN:%s" % a.value for a in cert.subject.get_attributes_for_oid(
        x509.NameOID.COMMON_NAME)]


def cert_matches_host(cert, host):
    """ZKHostnameVerifier.verify: an IP address against the IP SANs, a name against the DNS
    SANs (a leftmost "*." wildcard matches one label); without SANs, the CN."""
    import ipaddress
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        ip = None
    names = cert_names(cert)
    if names and names[0].startswith("CN:"):
        return any(n[3:].lower() == host.lower() for n in names)
    if ip is not None:
        for n in names:
            if n.startswith("IP:") and ipaddress.ip_address(n[3:]) == ip:
                return True
        return False
    host = host.lower().rstrip(".")
    for n in names:
        if not n.startswith("DNS:"):
            continue
        pattern = n[4:].lower().rstrip(".")
        if pattern == host:
            return True
        if pattern.startswith("*.") and "." in host:
            if host.split(".", 1)[1] == pattern[2:] and pattern.count(".") >= 2:
                return True
    return False


# ---------------------------------------------------------------------------------------------
# the x509 identity

# The attribute keywords Java's X500Principal.getName() (RFC 2253) prints; others are OIDs.
_KEYWORDS = {
    "2.5.4.3": "CN", "2.5.4.6": "C", "2.5.4.7": "L", "2.5.4.8": "ST", "2.5.4.10": "O",
    "2.5.4.11": "OU", "2.5.4.9": "STREET", "0.9.2342.19200300.100.1.25": "DC",
    "0.9.2342.19200300.100.1.1": "UID",
}
# ASN.1 string tags Java prints as text (DerValue.isDerString); others as #hex of their DER.
_TEXT_TAGS = {12: "utf-8", 19: "latin-1", 20: "latin-1", 22: "latin-1", 27: "latin-1",
              30: "utf-16-be"}
_ENCODINGS = dict(_TEXT_TAGS)
_ENCODINGS.update({18: "latin-1", 26: "latin-1", 28: "utf-32-be"})
_ESCAPED = ",=+<>#;\"\\"


def _der_length(n):
    if n < 0x80:
        return bytes([n])
    b = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(b)]) + b


def _ava(oid, value, tag):
    keyword = _KEYWORDS.get(oid)
    if keyword is None or tag not in _TEXT_TAGS:
        content = value if isinstance(value, bytes) else value.encode(_ENCODINGS.get(tag,
                                                                                     "utf-8"))
        der = bytes([tag]) + _der_length(len(content)) + content
        return "%s=#%s" % (keyword or oid, der.hex())
    out = []
    for c in value:
        if c in _ESCAPED:
            out.append("\\" + c)
        elif c == "\0":
            out.append("\\00")
        else:
            out.append(c)
    chars = list("".join(out))
    lead = 0
    while lead < len(chars) and chars[lead] in " \r":
        lead += 1
    trail = len(chars) - 1
    while trail >= 0 and chars[trail] in " \r":
        trail -= 1
    text = "".join(("\\" + c) if (i < lead or i > trail) else c for i, c in enumerate(chars))
    return "%s=%s" % (keyword, text)


def subject_name(cert):
    """A certificate's subject as X500Principal.getName() gives it (RFC 2253: the last RDN
    first, Java's escaping). `cert`: DER bytes or a `cryptography` certificate."""
    if isinstance(cert, (bytes, bytearray)):
        cert = _der_cert(bytes(cert))
    rdns = []
    for rdn in reversed(list(cert.subject.rdns)):
        rdns.append("+".join(_ava(a.oid.dotted_string, a.value, a._type.value) for a in rdn))
    return ",".join(rdns)
