"""The server side of the SASL GSSAPI mechanism (Kerberos V5, RFC 4752), as Java's GssKrb5Server
runs it for ZooKeeper, through MIT Kerberos by the `gssapi` package (python-gssapi).

    server = GssapiServer("zookeeper/host@REALM", keytab="/etc/zk.keytab")
    challenge = server.evaluate(response)   # each SASL token from the client, in turn
    server.complete, server.authentication_id, server.authorization_id

The exchange: the client's tokens establish a GSS security context (the server answers with
the acceptor's tokens; a last one, the AP-REP of mutual authentication, is answered by the
client with an empty token). Then the server sends, wrapped (integrity, no confidentiality),
4 octets: the security layers it offers (1: none -- ZooKeeper negotiates no layer) and its
maximum message size; the client answers, wrapped, with the layer it picked, its size and an
optional authorization id (ignored: the session's id is derived from the principal it
authenticated as, as ZooKeeper does). A client that picks a layer it was not offered fails.
Every failure is a SaslError.

The authorization id ZooKeeper gives the session (SaslServerCallbackHandler): the principal's
short name, then /host unless kerberos.removeHostFromPrincipal, then @REALM unless
kerberos.removeRealmFromPrincipal (authorized_id below).
"""

import struct

NO_SECURITY_LAYER = 1
MAX_BUFFER = 65536


from zkpy.security.sasl import SaslError


def _gssapi():
    try:
        import gssapi  # noqa: F401 - python-gssapi (MIT Kerberos)
    except ImportError as e:
        raise SaslError("SASL GSSAPI needs the gssapi package (pip install gssapi): %s" % e)
    return gssapi


def split_principal(principal):
    """'primary/instance@REALM' -> (primary, instance or None, realm or None)."""
    name, _, realm = principal.partition("@")
    primary, _, instance = name.partition("/")
    return primary, instance or None, realm or None


def authorized_id(principal, remove_host=False, remove_realm=False):
    """ZooKeeper's authorization id for a Kerberos principal (SaslServerCallbackHandler)."""
    primary, host, realm = split_principal(principal)
    out = primary
    if host and not remove_host:
        out += "/" + host
    if realm and not remove_realm:
        out += "@" + realm
    return out


class GssapiServer(object):
    def __init__(self, principal=None, keytab=None, remove_host=False, remove_realm=False):
        """`principal`: the service principal whose key is in `keytab` (None: any key of the
        keytab, as an acceptor with no name); `keytab`: the file (None: KRB5_KTNAME or the
        default keytab)."""
        gssapi = _gssapi()
        self._gssapi = gssapi
        self.remove_host = remove_host
        self.remove_realm = remove_realm
        name = None
        if principal:
            name = gssapi.Name(principal, gssapi.NameType.kerberos_principal)
        store = {"keytab": keytab} if keytab else None
        try:
            if store is not None:
                creds = gssapi.Credentials(name=name, usage="accept", store=store)
            else:
                creds = gssapi.Credentials(name=name, usage="accept")
        except gssapi.exceptions.GSSError as e:
            raise SaslError("no Kerberos key for %s in %s: %s"
                            % (principal or "the service", keytab or "the default keytab", e))
        self._ctx = gssapi.SecurityContext(creds=creds, usage="accept")
        self._stage = 0          # 0: context; 1: send the layers; 2: read the client's choice
        self.complete = False
        self.authentication_id = None
        self.authorization_id = None

    def evaluate(self, response):
        """The client's token -> the challenge to send (None: the null token). SaslError on
        failure."""
        if self.complete:
            raise SaslError("the SASL exchange is over")
        gssapi = self._gssapi
        try:
            if self._stage == 0:
                out = self._ctx.step(bytes(response))
                if not self._ctx.complete:
                    return out or None
                self.authentication_id = str(self._ctx.initiator_name)
                self._stage = 1
                if out:
                    return out   # the AP-REP: the client answers with an empty token
                return self._offer_layers()
            if self._stage == 1:
                if response:
                    raise SaslError("expected an empty token after the security context")
                return self._offer_layers()
            return self._read_choice(bytes(response))
        except gssapi.exceptions.GSSError as e:
            raise SaslError("GSSAPI: %s" % e)

    def _offer_layers(self):
        self._stage = 2
        msg = struct.pack(">I", (NO_SECURITY_LAYER << 24) | MAX_BUFFER)
        return self._ctx.wrap(msg, False).message

    def _read_choice(self, token):
        msg = self._ctx.unwrap(token).message
        if len(msg) < 4:
            raise SaslError("the client's security layer choice is %d bytes" % len(msg))
        layer = msg[0]
        if layer != NO_SECURITY_LAYER:
            raise SaslError("the client picked security layer %d, not offered" % layer)
        # An authorization id the client asks for (msg[4:]) is not taken: ZooKeeper's callback
        # handler authorizes every client, as the id derived from who it authenticated as.
        self.authorization_id = authorized_id(self.authentication_id, self.remove_host,
                                              self.remove_realm)
        self.complete = True
        # None: the null token GssKrb5Server answers last -- the Java client waits for that
        # "final packet" (ZooKeeperSaslClient.respondToServer) before it sends anything else.
        return None


class GssapiLogin(object):
    """One connection's GSSAPI login (what connection.py drives, as zkpy.security.sasl's
    SaslLogin for DIGEST-MD5): the acceptor is made at the first token."""
    mechanism = "GSSAPI"

    def __init__(self, principal, keytab, super_users=(), remove_host=False,
                 remove_realm=False):
        self._args = (principal, keytab, remove_host, remove_realm)
        self.super_users = frozenset(super_users)
        self.server = None
        self.ids = []

    @property
    def complete(self):
        return self.server is not None and self.server.complete

    def evaluate(self, token):
        if self.server is None:
            principal, keytab, remove_host, remove_realm = self._args
            self.server = GssapiServer(principal, keytab, remove_host, remove_realm)
        answer = self.server.evaluate(token)
        if self.server.complete:
            ident = self.server.authorization_id
            self.ids = [("sasl", ident)]
            if ident in self.super_users:
                self.ids.append(("super", ""))
        return answer
