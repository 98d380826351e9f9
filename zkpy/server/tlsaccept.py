"""Accepted sockets that speak TLS: telling them from plaintext on a unified port, wrapping them.

Used by the core's accept loop (zkpy.server.supervisor: it peeks, then hands the socket over
with a "tls" flag), by the workers (zkpy.server.worker: they do the handshake) and by the
in-process frontend of workers=0 (zkpy.server.standalone). The SSLContext comes from
zkpy.server.tls.ServerTls. A handshake that fails or never completes closes its connection
with one log line naming the reason; nothing else is affected.
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


async def start_tls(conn, sock, server_tls, on_failed=None):
    """Run the server side of a TLS handshake on an accepted socket, then start `conn` (an
    asyncio protocol, zkpy.server.connection.Connection) on it. A failure closes the socket,
    logs one line and calls on_failed()."""
    loop = asyncio.get_running_loop()
    timeout = server_tls.handshake_timeout
    try:
        await loop.connect_accepted_socket(lambda: conn, sock, ssl=server_tls.context,
                                           ssl_handshake_timeout=timeout)
    except asyncio.CancelledError:
        sock.close()
        raise
    except Exception as e:
        log.warning("TLS handshake with %s failed, connection closed: %s", conn.peer,
                    describe(e, timeout))
        sock.close()
        if on_failed is not None:
            on_failed()


async def reload_loop(server_tls, interval=1.0):
    """client.certReload: look at the store files every `interval` seconds; a change builds a
    new context for the connections that come next (ZooKeeper's FileChangeWatcher)."""
    while True:
        await asyncio.sleep(interval)
        server_tls.maybe_reload()
