"""A connection's SASL login and the rules of the `sasl` identity. Pure (the caller passes the
random bytes of the nonce).

ZooKeeper 3.8 (ZooKeeperServer.processSasl, SaslServerCallbackHandler, SASLAuthenticationProvider,
KerberosName), for DIGEST-MD5 with users from the JAAS `Server` section:
  - every `user_NAME="password"` option of the section is a user; for the user `super`,
    zookeeper.SASLAuthenticationProvider.superPassword replaces the password when set;
  - the authorized id is the authenticated user name (the authzid a client asks for is not
    used: ZooKeeper authorizes every user and then sets the id from the authentication id),
    canonicalized as a Kerberos name: `primary/host@REALM` loses `/host` with
    kerberos.removeHostFromPrincipal=true and `@REALM` with kerberos.removeRealmFromPrincipal=true
    (JAAS user names have neither, so these only ever change Kerberos names);
  - the connection gains the identity ("sasl", id), and ("super", "") when id is one of the
    superUser / superUser.N values;
  - a `sasl:ID` ACL entry is valid when the SASL provider is configured and ID is a valid
    Kerberos name (at most one '@', and then of the form primary[/host]@realm); it matches the
    identity ID, the identity `super`, and with zookeeper.letAnySaslUserDoX=X an entry `sasl:X`
    matches every SASL identity.
"""

import base64
import re

from zkpy.security.digest_md5 import DigestMD5Server, SaslError  # noqa: F401 (re-exported)

SASL_PROVIDER = "org.apache.zookeeper.server.auth.SASLAuthenticationProvider"
DIGEST_LOGIN_MODULE = "org.apache.zookeeper.server.auth.DigestLoginModule"
KRB5_LOGIN_MODULE = "com.sun.security.auth.module.Krb5LoginModule"
USER_PREFIX = "user_"
NONCE_RANDOM_BYTES = 30   # DigestMD5Base.RAW_NONCE_SIZE: 40 base64 characters

_KERBEROS_NAME = re.compile(r"([^/@]*)(/([^/@]*))?@([^/@]*)\Z")


def valid_sasl_id(ident):
    """SASLAuthenticationProvider.isValid: `new KerberosName(ident)` does not throw."""
    if ident is None:
        return False
    return "@" not in ident or _KERBEROS_NAME.match(ident) is not None


def authorized_id(name, remove_host=False, remove_realm=False):
    """The id a DIGEST-MD5 user `name` gets (SaslServerCallbackHandler.handleAuthorizeCallback)."""
    m = _KERBEROS_NAME.match(name)
    if m is None:
        return name
    primary, _, host, realm = m.groups()
    out = primary
    if host is not None and not remove_host:
        out += "/" + host
    if not remove_realm:
        out += "@" + realm
    return out


def users_from_section(section, super_password=None):
    """{user: password} from a JAAS Server section's `user_` options (every entry's)."""
    users = {}
    for entry in section.entries:
        for key, value in entry.options.items():
            if key.startswith(USER_PREFIX):
                users[key[len(USER_PREFIX):]] = value
    if super_password is not None and "super" in users:
        users["super"] = super_password
    return users


def nonce_from(random_bytes):
    """The challenge nonce: random bytes in base64, as DigestMD5Base.generateNonce makes it."""
    return base64.b64encode(bytes(random_bytes))


class SaslLogin(object):
    """One connection's DIGEST-MD5 login against the users of the JAAS Server section."""

    def __init__(self, users, random_bytes, super_users=(), remove_host=False,
                 remove_realm=False):
        self.server = DigestMD5Server(users.get, nonce_from(random_bytes))
        self.super_users = frozenset(super_users)
        self.remove_host = remove_host
        self.remove_realm = remove_realm
        self.ids = []   # what the connection gains once the login completes

    @property
    def complete(self):
        return self.server.complete

    def evaluate(self, token):
        """The token to answer; raises SaslError when the login fails."""
        answer = self.server.evaluate(token)
        if self.server.complete:
            ident = authorized_id(self.server.username, self.remove_host, self.remove_realm)
            self.ids = [("sasl", ident)]
            if ident and ident in self.super_users:
                self.ids.append(("super", ""))
        return answer
