"""Accepted sockets that speak TLS: telling them from plaintext on a unified port, wrapping them.

Used by the core's accept loop (zkpy.workers.supervisor: it peeks, then hands the socket over
with a "tls" flag), by the workers (zkpy.workers.worker: they do the handshake) and by the
in-process frontend of workers=0 (zkpy.server.standalone). The SSLContext comes from
zkpy.server.tls.ServerTls. A handshake that fails or never completes closes its connection
with one log line naming the reason; nothing else is affected. With ssl.crl / ssl.ocsp the
client's certificate is checked for revocation right after the handshake, before the connection
is served (zkpy.server.revocation); a revoked certificate, or one whose status cannot be
determined, closes the connection the same way.
"""

import asyncio
import logging
import socket
import ssl

log = logging.getLogger("zkpy.server.tls")

TLS_HANDSHAKE_RECORD = 0x16   # the first byte of a TLS ClientHello (NettyServerCnxnFactory)


async def wait_readable(sock, timeout):
    loop = asyncio.get_running_loop()
    fut = loop.create_future()
    fd = sock.fileno()
    loop.add_reader(fd, lambda: fut.done() or fut.set_result(None))
    try:
        await asyncio.wait_for(fut, timeout)
    finally:
        loop.remove_reader(fd)


async def starts_tls(sock, timeout):
    """Whether a new connection's first byte is a TLS handshake record, read with MSG_PEEK so
    that nothing is consumed (client.portUnification: DualModeSslHandler)."""
    while True:
        await wait_readable(sock, timeout)
        try:
            first = sock.recv(1, socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            continue
        if not first:
            raise ConnectionError("closed before sending anything")
        return first[0] == TLS_HANDSHAKE_RECORD


def describe(exc, timeout):
    """One line on why a handshake failed."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return "client certificate refused: %s" % (exc.verify_message or exc.reason)
    if isinstance(exc, ssl.SSLError):
        reason = exc.reason or str(exc)
        if reason in ("WRONG_VERSION_NUMBER", "HTTP_REQUEST", "HTTPS_PROXY_REQUEST",
                      "UNSUPPORTED_PROTOCOL", "UNKNOWN_PROTOCOL", "RECORD_LAYER_FAILURE",
                      "PACKET_LENGTH_TOO_LONG"):
            return "not a TLS handshake (%s): a plaintext client on a TLS port?" % reason
        if reason == "PEER_DID_NOT_RETURN_A_CERTIFICATE":
            return "the client sent no certificate (ssl.clientAuth=need)"
        if reason == "NO_SHARED_CIPHER":
            return "no cipher suite in common (ssl.ciphersuites)"
        if reason in ("UNSUPPORTED_PROTOCOL", "TLSV1_ALERT_PROTOCOL_VERSION"):
            return "no protocol version in common (ssl.enabledProtocols)"
        return "%s" % reason
    if isinstance(exc, (ConnectionAbortedError, asyncio.TimeoutError)) and \
            "longer than" in str(exc) or isinstance(exc, asyncio.TimeoutError):
        return "the handshake did not complete within %.0f s" % timeout
    if isinstance(exc, (ConnectionResetError, BrokenPipeError)) or \
            (isinstance(exc, ConnectionError) and not str(exc)):
        return "the client closed the connection during the handshake"
    return "%s: %s" % (type(exc).__name__, exc)


class _Held(asyncio.Protocol):
    """A TLS connection whose client certificate is being checked: nothing is read from it
    (what already arrived is kept) until it is handed to its Connection or closed."""

    def __init__(self):
        self.transport = None
        self.data = []
        self.eof = False
        self.lost = False

    def connection_made(self, transport):
        self.transport = transport
        transport.pause_reading()

    def data_received(self, data):
        self.data.append(data)

    def eof_received(self):
        self.eof = True
        return False

    def connection_lost(self, exc):
        self.lost = True


async def start_tls(conn, sock, server_tls, on_failed=None):
    """Run the server side of a TLS handshake on an accepted socket, check the client's
    certificate for revocation (ssl.crl / ssl.ocsp), then start `conn` (an asyncio protocol,
    zkpy.server.connection.Connection) on it. A failure closes the socket, logs one line and
    calls on_failed()."""
    loop = asyncio.get_running_loop()
    timeout = server_tls.handshake_timeout
    context = server_tls.context
    held = _Held() if server_tls.revocation is not None else None
    try:
        transport, _ = await loop.connect_accepted_socket(
            lambda: conn if held is None else held, sock, ssl=context, ssl_handshake_timeout=timeout)
    except asyncio.CancelledError:
        sock.close()
        raise
    except Exception as e:
        log.warning("TLS handshake with %s failed, connection closed: %s", conn.peer,
                    describe(e, timeout))
        sock.close()
        if on_failed is not None:
            on_failed()
        return
    if held is None:
        return
    try:
        why = await server_tls.check_revocation(transport.get_extra_info("ssl_object"), context)
        if why is not None:
            log.warning("TLS connection %s closed: %s", conn.peer, why)
    except asyncio.CancelledError:
        transport.abort()
        raise
    except Exception:  # noqa: BLE001 - a bug here closes this connection, nothing else
        log.exception("TLS connection %s closed: its certificate could not be checked",
                      conn.peer)
        why = "error"
    if why is not None or held.lost:
        transport.abort()
        if on_failed is not None:
            on_failed()
        return
    transport.set_protocol(conn)
    conn.connection_made(transport)
    data = b"".join(held.data)
    if data and not conn.closed:
        conn.data_received(data)
    if held.eof:
        transport.close()
    elif not conn.closed:
        transport.resume_reading()


async def reload_loop(server_tls, interval=1.0):
    """client.certReload: look at the store files every `interval` seconds; a change builds a
    new context for the connections that come next (ZooKeeper's FileChangeWatcher)."""
    while True:
        await asyncio.sleep(interval)
        server_tls.maybe_reload()
