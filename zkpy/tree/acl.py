"""ACLs: the schemes, the permission check, and the fix-up of ACLs given at create / setACL. Pure.

Mirrors ZooKeeper's ZooKeeperServer.checkACL, PrepRequestProcessor.fixupACL and the built-in
providers (world, auth, digest, ip, sasl when configured; super through a superDigest or a SASL
superUser). An identity is a (scheme, id)
pair; a connection holds ("ip", its address) from the start and gains ("digest",
"user:base64(sha1(user:password))") with `addauth digest user:password`, plus ("super", "") when
that digest equals the configured DigestAuthenticationProvider.superDigest. A TLS client with a
certificate holds ("x509", its subject) (X509AuthenticationProvider; the subject as Java's
X500Principal.getName() prints it), plus ("super", subject) when that subject is the configured
X509AuthenticationProvider.superUser. Any ("super", ...) identity passes every check.

The x509 scheme exists only while its provider is registered (set_x509: TLS on a client port,
or authProvider.N=...X509AuthenticationProvider): otherwise an x509 ACL is INVALIDACL, as in
ZooKeeper's PrepRequestProcessor.fixupACL.
"""

import base64
import hashlib
import ipaddress

from zkpy import errors
from zkpy.errors import ZkError
from zkpy.proto import consts

SUPER = ("super", "")
_x509 = [False]   # whether the x509 provider is registered (set_x509)


def set_x509(enabled):
    """Register (or not) the x509 scheme, as ZooKeeper's ProviderRegistry does at startup."""
    _x509[0] = bool(enabled)


class _SaslScheme(object):
    """The `sasl` scheme's provider (SASLAuthenticationProvider), when authProvider.N lists it.
    One per process, set from the config at start (configure()), as ZooKeeper's
    ProviderRegistry is."""
    enabled = False
    let_any = None   # zookeeper.letAnySaslUserDoX


_SASL = _SaslScheme()


def configure(config):
    """Register the providers the config lists (the sasl scheme), once per server process."""
    _SASL.enabled = bool(getattr(config, "sasl_provider", False))
    _SASL.let_any = getattr(config, "let_any_sasl_user_do_x", None)


def sasl_enabled():
    return _SASL.enabled


def _sasl_valid(ident):
    # SASLAuthenticationProvider.isValid: new KerberosName(ident) does not throw
    if ident is None or not _SASL.enabled:
        return False
    if "@" not in ident:
        return True
    head, _, realm = ident.rpartition("@")
    return "@" not in head and "/" not in realm and head.count("/") <= 1


def digest(user_password):
    """"user:password" -> "user:base64(sha1(user:password))" (DigestAuthenticationProvider)."""
    user = user_password.split(":", 1)[0]
    sha = hashlib.sha1(user_password.encode("utf-8")).digest()
    return "%s:%s" % (user, base64.b64encode(sha).decode("ascii"))


def authenticate(scheme, auth, super_digest=None):
    """The identities `addauth scheme auth` adds, or None when the scheme refuses it."""
    if scheme == "digest":
        text = auth.decode("utf-8", "replace")
        if ":" not in text:
            return None
        d = digest(text)
        ids = [("digest", d)]
        if super_digest and d == super_digest:
            ids.insert(0, SUPER)
        return ids
    if scheme == "ip":
        return []  # the address is known already; nothing to add
    if scheme == "world":
        return []
    return None


def _ip_matches(client, spec):
    try:
        net = ipaddress.ip_network(spec, strict=False)
        return ipaddress.ip_address(client) in net
    except ValueError:
        return False


def _valid(scheme, ident):
    if scheme == "world":
        return ident == "anyone"
    if scheme == "digest":
        return len(ident.split(":")) == 2
    if scheme == "ip":
        try:
            ipaddress.ip_network(ident, strict=False)
            return True
        except ValueError:
            return False
    if scheme == "sasl":
        return _sasl_valid(ident)
    if scheme == "x509":
        return _x509[0] and valid_x500_name(ident)
    return False


# X500Principal(String) keywords (RFC 1779 / 2253 and Java's own), case-insensitive.
_X500_KEYWORDS = frozenset([
    "CN", "C", "L", "S", "ST", "O", "OU", "T", "IP", "STREET", "DC", "DNQUALIFIER", "DNQ",
    "SURNAME", "GIVENNAME", "INITIALS", "GENERATION", "EMAIL", "EMAILADDRESS", "UID",
    "SERIALNUMBER",
])


def _split_unescaped(text, seps):
    parts, cur, i, quoted = [], [], 0, False
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            cur.append(text[i:i + 2])
            i += 2
            continue
        if c == '"':
            quoted = not quoted
        elif c in seps and not quoted:
            parts.append("".join(cur))
            cur = []
            i += 1
            continue
        cur.append(c)
        i += 1
    parts.append("".join(cur))
    return parts


def valid_x500_name(name):
    """Whether Java's new X500Principal(name) would take `name` (X509AuthenticationProvider
    .isValid): RDNs of type=value, types a keyword or an OID."""
    if not name.strip():
        return True   # the empty name
    for rdn in _split_unescaped(name, ",;"):
        for ava in _split_unescaped(rdn, "+"):
            if "=" not in ava:
                return False
            kind = ava.split("=", 1)[0].strip()
            if kind.upper().startswith("OID."):
                kind = kind[4:]
            if kind.upper() in _X500_KEYWORDS:
                continue
            parts = kind.split(".")
            if len(parts) < 2 or not all(p.isdigit() for p in parts):
                return False
    return True


def allowed(acl, perm, ids, skip=False):
    """True when identities `ids` may do `perm` on a node with `acl` (ZooKeeperServer.checkACL)."""
    if skip or not acl:
        return True
    for s, _ in ids:
        if s == "super":
            return True
    for perms, scheme, ident in acl:
        if not perms & perm:
            continue
        if scheme == "world" and ident == "anyone":
            return True
        for s, i in ids:
            if s != scheme:
                continue
            if scheme == "ip":
                if _ip_matches(i, ident):
                    return True
            elif scheme == "sasl":
                # SASLAuthenticationProvider.matches; no provider, no match
                if _SASL.enabled and (i == ident or i == "super" or (
                        _SASL.let_any is not None and ident == _SASL.let_any)):
                    return True
            elif i == ident:
                return True
    return False


def check(acl, perm, ids, skip=False, path=""):
    if not allowed(acl, perm, ids, skip):
        raise ZkError(errors.NOAUTH, path)


def fixup(acl, ids):
    """Validate an ACL from a client and expand the "auth" scheme (PrepRequestProcessor.fixupACL).

    Returns a tuple of (perms, scheme, id); raises ZkError(INVALIDACL).
    """
    if not acl:
        raise ZkError(errors.INVALIDACL, "empty ACL")
    if len(acl) == 1:  # the common case, one world:anyone entry: what the loop below returns
        perms, scheme, ident = acl[0]
        if scheme == "world" and ident == "anyone":
            return ((perms, scheme, ident),)
    out = []
    for perms, scheme, ident in acl:
        # The id of an "auth" entry is ignored, and kazoo sends "" as a null string.
        if scheme is None or (ident is None and scheme != "auth"):
            raise ZkError(errors.INVALIDACL, "null id")
        if scheme == "world" and ident == "anyone":
            entry = [(perms, scheme, ident)]
        elif scheme == "auth":
            # Every identity of this connection whose provider authenticates (not ip).
            # (sasl only while its provider is registered: ZooKeeper skips an id without one)
            entry = [(perms, s, i) for s, i in ids
                     if s not in ("ip", "super") and (s != "sasl" or _SASL.enabled)]
            if not entry:
                raise ZkError(errors.INVALIDACL, "auth scheme without authenticated ids")
        elif _valid(scheme, ident):
            entry = [(perms, scheme, ident)]
        else:
            raise ZkError(errors.INVALIDACL, "invalid ACL %s:%s" % (scheme, ident))
        for e in entry:
            if e not in out:
                out.append(e)
    return tuple(out)


def masked(acl):
    """getACL without ADMIN: digest hashes are hidden (3.8.4+ / 3.9.2)."""
    return tuple((p, s, (i.split(":", 1)[0] + ":x") if s == "digest" else i) for p, s, i in acl)


READ = consts.PERM_READ
WRITE = consts.PERM_WRITE
CREATE = consts.PERM_CREATE
DELETE = consts.PERM_DELETE
ADMIN = consts.PERM_ADMIN
