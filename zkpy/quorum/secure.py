"""Security of the connections between servers: TLS and SASL on the quorum and election ports.

Owns the listening sockets of both ports and every connection a server opens to another:
  * TLS (sslQuorum=true, ssl.quorum.*: zkpy.server.tls.QuorumTls): both sides present their
    certificate and check the other's against the quorum trust store, then its host
    (ssl.quorum.hostnameVerification). portUnification=true: an accepted connection whose
    first byte is a TLS handshake record (0x16) gets TLS, any other stays plaintext (the
    rolling upgrade: every member with portUnification, then sslQuorum one by one, then
    portUnification off).
  * SASL (quorum.auth.*): the connecting server authenticates to the accepting one with
    DIGEST-MD5 before any frame (the AUTH packets of zkpy.quorum.messages), as ZooKeeper's
    QuorumAuthLearner / QuorumAuthServer do on both kinds of connections.
A peer refused here never reaches the election or the learner protocol: one log line says why
(the same reason from the same address is repeated at most once a minute).
"""

import asyncio
import logging
import os
import socket
import ssl
import time

from zkpy.quorum import messages as m
from zkpy.security import digest_md5, sasl
from zkpy.server import tls, tlsaccept

log = logging.getLogger("zkpy.quorum")

QUORUM_PROTOCOL = "zookeeper-quorum"        # QuorumAuth.QUORUM_SERVER_PROTOCOL_NAME
QUORUM_SERVER_NAME = "zk-quorum-sasl-md5"   # QuorumAuth.QUORUM_SERVER_SASL_DIGEST
AUTH_TIMEOUT_S = 5.0
RELOAD_INTERVAL_S = 1.0
_LOG_EVERY_S = 60.0


class Refused(Exception):
    """The other server cannot be let in (or this one will not go on): the reason."""


class Listener(object):
    def __init__(self, sock, task):
        self.sock = sock
        self.task = task

    def close(self):
        self.task.cancel()
        try:
            self.sock.close()
        except OSError:
            pass


class QuorumSecurity(object):
    def __init__(self, config):
        self.config = config
        self.tls = tls.QuorumTls(config) if tls.quorum_tls_enabled(config) else None
        self.connect_tls = bool(config.ssl_quorum)
        self.accept_tls_only = bool(config.ssl_quorum) and not config.quorum_port_unification
        self.sasl = bool(config.quorum_auth_enable_sasl)
        self.learner_require = bool(config.quorum_auth_learner_require_sasl)
        self.server_require = bool(config.quorum_auth_server_require_sasl)
        self.users = dict(config.quorum_sasl_users or {})
        self.login = config.quorum_sasl_login
        self.handshake_timeout = min(tls.HANDSHAKE_TIMEOUT_S, 5.0)
        self._logged = {}
        self._tasks = set()
        self._working = {}   # (name, addresses) -> the address that took the last connection

    # -- logging

    def refused(self, what, reason, key=None):
        """One line per refusal (the same reason about the same peer address: once a minute)."""
        key = (key or what, reason)
        now = time.monotonic()
        if now - self._logged.get(key, -1e9) >= _LOG_EVERY_S:
            self._logged[key] = now
            log.warning("%s: %s", what, reason)

    # -- accepting

    async def listen(self, host, port, handler, name):
        """Listen on host:port; handler(reader, writer, peer) gets each connection that passed
        TLS and authentication."""
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                       flags=socket.AI_PASSIVE)
        family, _, _, _, addr = infos[0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(addr)
            sock.listen(64)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        task = loop.create_task(self._accept_loop(sock, handler, name))
        if self.tls is not None and self.config.ssl_quorum_reload_cert_files:
            self._spawn(self._reload_loop())
        return Listener(sock, task)

    def _spawn(self, coro):
        t = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)
        return t

    async def _reload_loop(self):
        if getattr(self, "_reloading", False):
            return
        self._reloading = True
        while True:
            await asyncio.sleep(RELOAD_INTERVAL_S)
            self.tls.maybe_reload()

    async def _accept_loop(self, sock, handler, name):
        loop = asyncio.get_running_loop()
        try:
            while True:
                conn, addr = await loop.sock_accept(sock)
                self._spawn(self._accepted(conn, addr, handler, name))
        finally:
            for t in list(self._tasks):
                t.cancel()

    async def _accepted(self, conn, addr, handler, name):
        peer = "%s:%d" % (addr[0], addr[1])
        what = "%s connection from %s" % (name, peer)
        loop = asyncio.get_running_loop()
        writer = None
        try:
            use_tls = False
            if self.tls is not None:
                if self.accept_tls_only:
                    use_tls = True
                else:   # portUnification: look at the first byte without consuming it
                    timeout = self.config.ssl_quorum_handshake_detection_timeout_ms / 1000.0
                    use_tls = await tlsaccept.starts_tls(conn, timeout)
            reader = asyncio.StreamReader(limit=1 << 20)
            protocol = asyncio.StreamReaderProtocol(reader)
            kw = {}
            if use_tls:
                kw = dict(ssl=self.tls.server_context,
                          ssl_handshake_timeout=self.handshake_timeout)
            transport, _ = await loop.connect_accepted_socket(lambda: protocol, conn, **kw)
            writer = asyncio.StreamWriter(transport, protocol, reader, loop)
            if use_tls:
                why = await self.tls.check_peer(writer.get_extra_info("ssl_object"), addr[0])
                if why is not None:
                    raise Refused(why)
            await asyncio.wait_for(self.server_auth(reader, writer), AUTH_TIMEOUT_S)
        except asyncio.CancelledError:
            conn.close()
            raise
        except Refused as e:
            self.refused("refused the " + what, str(e), (name, addr[0]))
            _close(writer, conn)
            return
        except (ssl.SSLError, ssl.CertificateError) as e:
            self.refused("refused the " + what, "TLS: " + tlsaccept.describe(e, 0).replace(
                "the client", "the other server"), (name, addr[0]))
            _close(writer, conn)
            return
        except (OSError, EOFError, asyncio.IncompleteReadError, asyncio.TimeoutError,
                m.ProtocolError, ValueError) as e:
            self.refused("dropped the " + what, "%s before it was let in"
                         % (str(e) or type(e).__name__), (name, addr[0]))
            _close(writer, conn)
            return
        await handler(reader, writer)

    async def server_auth(self, reader, writer):
        """The accepting side (QuorumAuthServer): an AUTH packet first, or none."""
        head = await reader.readexactly(4)
        if head != m.AUTH_MAGIC:
            if self.sasl and self.server_require:
                raise Refused("it did not authenticate (quorum.auth.serverRequireSasl=true)")
            reader._buffer[0:0] = head    # not ours: the first bytes of the protocol
            return False
        status, token = await _read_auth(reader)
        if not self.sasl:
            writer.write(m.encode_auth(m.AUTH_NOT_ENABLED))
            return False
        server = digest_md5.DigestMD5Server(
            self.users.get, sasl.nonce_from(os.urandom(30)), realm=QUORUM_SERVER_NAME,
            protocol=QUORUM_PROTOCOL, server_name=QUORUM_SERVER_NAME)
        try:
            if status != m.AUTH_IN_PROGRESS:
                raise digest_md5.SaslError("unexpected auth status %s"
                                           % m.AUTH_STATUS_NAMES[status])
            writer.write(m.encode_auth(m.AUTH_IN_PROGRESS, server.evaluate(token)))
            if await reader.readexactly(4) != m.AUTH_MAGIC:
                raise digest_md5.SaslError("expected an auth packet")
            status, token = await _read_auth(reader)
            if status != m.AUTH_IN_PROGRESS:
                raise digest_md5.SaslError("unexpected auth status %s"
                                           % m.AUTH_STATUS_NAMES[status])
            answer = server.evaluate(token)
        except digest_md5.SaslError as e:
            writer.write(m.encode_auth(m.AUTH_ERROR))
            if self.server_require:
                raise Refused("SASL authentication failed: %s" % e)
            log.warning("a server failed to authenticate (%s); let in as "
                        "quorum.auth.serverRequireSasl=false", e)
            return False
        writer.write(m.encode_auth(m.AUTH_SUCCESS, answer))
        log.debug("server authenticated as %r", server.username)
        return True

    # -- connecting

    async def connect(self, host, port, timeout, name):
        """A connection to another server's quorum or election port, with TLS and the SASL
        handshake as configured: (reader, writer). Raises Refused (logged here), OSError or
        asyncio.TimeoutError."""
        what = "%s connection to %s:%d" % (name, host, port)
        kw = {}
        if self.connect_tls:
            kw = dict(ssl=self.tls.client_context, server_hostname=host,
                      ssl_handshake_timeout=self.handshake_timeout)
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port, **kw),
                                                    timeout)
        except (ssl.SSLError, ssl.CertificateError) as e:
            self.refused("refused the " + what, "TLS: %s" % _describe_client(e))
            raise Refused(str(e))
        try:
            if self.connect_tls:
                address = writer.get_extra_info("peername")[0]
                why = await self.tls.check_peer(writer.get_extra_info("ssl_object"), address,
                                                None if _is_ip(host) else host)
                if why is not None:
                    raise Refused(why)
            if self.sasl:
                await asyncio.wait_for(self.learner_auth(reader, writer), AUTH_TIMEOUT_S)
        except Refused as e:
            self.refused("refused the " + what, str(e))
            writer.close()
            raise
        except BaseException:
            writer.close()
            raise
        return reader, writer

    async def connect_any(self, addresses, timeout, name):
        """A connection to one of a server's [(host, port)] (multiAddress.enabled: ZooKeeper
        picks a reachable one): they are tried in order, the one that worked last time first,
        each for at most multiAddress.reachabilityCheckTimeoutMs when there are several and
        multiAddress.reachabilityCheckEnabled; the first that connects wins. Raises what
        connect raises for the last one tried."""
        addresses = list(addresses)
        assert addresses, "a server has at least one address"
        key = None
        if len(addresses) > 1:
            key = (name, tuple(addresses))
            good = self._working.get(key)
            if good in addresses:
                addresses.remove(good)
                addresses.insert(0, good)
            if self.config.multi_address_reachability_check_enabled:
                timeout = min(timeout,
                              self.config.multi_address_reachability_check_timeout_ms / 1000.0)
        error = None
        for host, port in addresses:
            try:
                reader, writer = await self.connect(host, port, timeout, name)
            except (OSError, asyncio.TimeoutError, Refused) as e:
                error = e
                continue
            if key is not None:
                self._working[key] = (host, port)
            return reader, writer
        raise error

    async def learner_auth(self, reader, writer):
        """The connecting side (QuorumAuthLearner)."""
        username, password = self.login
        client = digest_md5.DigestMD5Client(username, password, sasl.nonce_from(os.urandom(30)),
                                            protocol=QUORUM_PROTOCOL,
                                            server_name=QUORUM_SERVER_NAME)
        writer.write(m.encode_auth(m.AUTH_IN_PROGRESS))
        try:
            while True:
                head = await reader.readexactly(4)
                if head != m.AUTH_MAGIC:
                    raise m.ProtocolError("not an auth packet")
                status, token = await _read_auth(reader)
                if status == m.AUTH_IN_PROGRESS:
                    writer.write(m.encode_auth(m.AUTH_IN_PROGRESS, client.respond(token)))
                elif status == m.AUTH_SUCCESS:
                    client.verify(token)
                    return True
                elif status == m.AUTH_NOT_ENABLED:
                    raise digest_md5.SaslError("the other server does not do quorum SASL "
                                               "(quorum.auth.enableSasl is off there)")
                else:
                    raise digest_md5.SaslError("the other server refused our credentials "
                                               "(QuorumLearner username/password)")
        except (digest_md5.SaslError, asyncio.IncompleteReadError, m.ProtocolError) as e:
            if isinstance(e, asyncio.IncompleteReadError):
                e = "the other server closed the connection during SASL authentication"
            if self.learner_require:
                raise Refused("SASL authentication failed: %s "
                              "(quorum.auth.learnerRequireSasl=true)" % e)
            if isinstance(e, str):   # closed: nothing to go on with
                raise Refused(e)
            log.warning("SASL authentication failed: %s; going on unauthenticated "
                        "(quorum.auth.learnerRequireSasl=false)", e)
            return False

    def close(self):
        for t in list(self._tasks):
            t.cancel()


async def _read_auth(reader):
    status, n = m.decode_auth_head(await reader.readexactly(m.AUTH_REST_BYTES))
    token = await reader.readexactly(n) if n else b""
    return status, token


def _describe_client(e):
    if isinstance(e, ssl.SSLCertVerificationError):
        return "server certificate refused: %s" % (e.verify_message or e.reason)
    return tlsaccept.describe(e, 0)


def _is_ip(host):
    import ipaddress
    try:
        ipaddress.ip_address(host.strip("[]"))
        return True
    except ValueError:
        return False


def _close(writer, conn):
    try:
        if writer is not None:
            writer.close()
        else:
            conn.close()
    except Exception:  # noqa: BLE001 - already broken
        pass
