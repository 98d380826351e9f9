"""A worker process: client connections, their watches, and reads from read-only LMDB.

Started by the core's supervisor as
    python -m zkpy.workers.worker CFG --worker-id N --ctrl-fd A --handoff-fd B
with two inherited UNIX sockets: a stream for the messages of zkpy.workers.ipc, and a datagram
socket on which the core hands over accepted client sockets (SCM_RIGHTS). The worker exits when
the core goes away (EOF on the control socket) or says SHUTDOWN; it ignores SIGINT and SIGTERM.
A clean stop is PAUSE (read no more requests; answer PAUSED), the core's drain, then SHUTDOWN.
Shared nothing with other workers: only LMDB, read-only, opened by this process.
"""

import argparse
import asyncio
import json
import logging
import os
import signal
import socket
import sys

from zkpy.config import DEFAULT_LMDB_MAP_SIZE, load_config
from zkpy.server import tlsaccept
from zkpy.workers import ipc
from zkpy.server.connection import Connection, close_connections
from zkpy.server.frontend import Frontend
from zkpy.server.gcpolicy import tune_gc
from zkpy.storage.lmdb_tree import LmdbTree
from zkpy.tree import acl as acls

log = logging.getLogger("zkpy.worker")

RESET_CONNECTIONS = 1 << 31
RESET_SERVER = 1 << 30
# On the way out: how long the replies already given to the connections may take to leave.
CLOSE_TIMEOUT_S = 1.0
# The core's answer to a four-letter word (it waits at most 2 s for the workers' figures).
FOUR_LETTER_TIMEOUT_S = 10.0


class IpcLink(object):
    """The frontend's link to the core over the control channel (batched per loop pass)."""

    def __init__(self):
        self.channel = None
        self._touched = set()
        self._four_letter_id = 0
        self._four_letter_waiters = {}    # req_id -> future of the core's FOUR_LETTER_TEXT

    def _send(self, data):
        self.channel.send(data)

    def connect(self, conn_id, frame, read_only):
        self._send(ipc.connect(conn_id, read_only, frame))

    def request(self, conn_id, entry_id, session_id, xid, op, body):
        self.channel.send(ipc.request(conn_id, entry_id, session_id, xid, op, body))

    def auth(self, conn_id, ids):
        self._send(ipc.auth(conn_id, ids))

    def touch(self, session_id):
        self._touched.add(session_id)

    def flush_touches(self):
        if self._touched:
            self._send(ipc.touch(list(self._touched)))
            self._touched = set()

    def closed(self, conn_id, session_id):
        self._send(ipc.closed(conn_id, session_id))

    async def four_letter(self, cmd, peer):
        """A whitelisted four-letter word read inside TLS: the core answers it, with every
        worker's figures, as it answers one on the plaintext port (Frontend.four_letter)."""
        self._four_letter_id = (self._four_letter_id + 1) & 0xFFFFFFFF
        req_id = self._four_letter_id
        fut = asyncio.get_running_loop().create_future()
        self._four_letter_waiters[req_id] = fut
        try:
            self._send(ipc.four_letter(req_id, cmd, peer))
            return await asyncio.wait_for(fut, FOUR_LETTER_TIMEOUT_S)
        finally:
            self._four_letter_waiters.pop(req_id, None)

    def four_letter_text(self, req_id, text):
        fut = self._four_letter_waiters.get(req_id)
        if fut is not None and not fut.done():
            fut.set_result(text)


def _dispatcher(fe, done, pause):
    """Messages from the core."""
    watches = fe.watches

    def on_frame(frame):
        if frame[0] == ipc.BATCH and not watches.data and not watches.child:
            # No watch here to fire: the batch's events are not even built (Frontend.batch
            # would skip them).
            zxid, replies = ipc.decode_batch_replies(frame)
            fe.batch(zxid, (), replies)
            return
        mtype, args = ipc.decode(frame)
        if mtype == ipc.BATCH:
            fe.batch(*args)
        elif mtype == ipc.COMMITTED:
            fe.committed(*args)
        elif mtype == ipc.CONNECTED:
            fe.connected(*args)
        elif mtype == ipc.CLOSE:
            fe.close_conn(*args)
        elif mtype == ipc.STATS_REQ:
            req_id = args[0]
            if req_id & RESET_CONNECTIONS:
                fe.reset_connection_stats()
            if req_id & RESET_SERVER:
                fe.reset_stats()
            fe.link._send(ipc.stats(req_id, json.dumps(fe.snapshot()).encode()))
        elif mtype == ipc.FOUR_LETTER_TEXT:
            fe.link.four_letter_text(*args)
        elif mtype == ipc.PAUSE:
            pause()
        elif mtype == ipc.SHUTDOWN:
            if not done.done():
                done.set_result("shutdown")

    def on_eof():
        if not done.done():
            done.set_result("core gone")
    return on_frame, on_eof


async def run(config, worker_id, ctrl_fd, handoff_fd):
    loop = asyncio.get_running_loop()
    # A reader's map only has to cover what the core's writer may fill (lmdbMapSize); never
    # smaller than the default, so that it covers a file grown under an earlier, larger setting.
    tree = LmdbTree(os.path.join(config.data_dir, "zkpy-db"),
                    map_size=max(config.lmdb_map_size, DEFAULT_LMDB_MAP_SIZE), readonly=True)
    link = IpcLink()
    fe = Frontend(config, tree, link, worker_id)
    fe.four_letter = link.four_letter
    done = loop.create_future()
    handoff = socket.socket(fileno=handoff_fd)
    handoff.setblocking(False)

    def pause():
        # A clean stop begins: no more handoffs, no more requests read from the clients. The
        # PAUSED answer leaves after every request read so far (same socket, in order).
        loop.remove_reader(handoff.fileno())
        fe.pause()
        link._send(ipc.paused())

    server_tls = _server_tls(config)
    on_frame, on_eof = _dispatcher(fe, done, pause)
    link.channel = ipc.Channel(loop, socket.socket(fileno=ctrl_fd), on_frame, on_eof,
                               stop_at_short_read=True)
    fe.pump = link.channel.pump
    link._send(ipc.hello(worker_id, os.getpid()))

    def on_handoff():
        while True:
            try:
                msg, fds, _, _ = socket.recv_fds(handoff, 65536, 1)
            except (BlockingIOError, InterruptedError):
                return
            if not msg and not fds:
                return
            if not fds:
                continue
            conn_id, peer, first, tls = ipc.decode_handoff(msg)
            sock = socket.socket(fileno=fds[0])
            sock.setblocking(False)
            if tls:
                if server_tls is None:
                    log.warning("TLS connection %s closed: this worker has no TLS context", peer)
                    sock.close()
                    link.closed(conn_id, 0)
                    continue
                # first=b"": a four-letter word inside TLS is recognised, and the core answers it
                # (IpcLink.four_letter).
                conn = Connection(fe, None, first=b"", conn_id=conn_id, peer=peer,
                                  tls=server_tls)
                loop.create_task(tlsaccept.start_tls(
                    conn, sock, server_tls, lambda c=conn_id: link.closed(c, 0)))
                continue
            conn = Connection(fe, None, first=None, initial=first, conn_id=conn_id, peer=peer)
            loop.create_task(loop.connect_accepted_socket(lambda c=conn: c, sock))

    loop.add_reader(handoff.fileno(), on_handoff)

    async def touches():
        # The core expires sessions; tell it which ones were heard from, often enough that a
        # deadline it sets (from when the TOUCH arrives) is late by at most this: a 20th of a
        # tick, 100 ms at tickTime 2000 (a message of 8 bytes a session, a few a second).
        interval = max(0.02, config.tick_time_ms / 20000.0)
        while True:
            await asyncio.sleep(interval)
            link.flush_touches()

    toucher = loop.create_task(touches())
    reloader = None
    if server_tls is not None and config.client_cert_reload:
        reloader = loop.create_task(tlsaccept.reload_loop(server_tls))
    tune_gc()
    log.info("worker %d (pid %d) serving", worker_id, os.getpid())
    reason = await done
    log.info("worker %d stopping: %s", worker_id, reason)
    toucher.cancel()
    if reloader is not None:
        reloader.cancel()
    loop.remove_reader(handoff.fileno())
    fe.pause()
    await close_connections(fe, CLOSE_TIMEOUT_S)
    tree.close()
    return 0


def _server_tls(config):
    """This process's TLS context for client connections, or None (no TLS configured, or the
    stores cannot be read now: the core checked them at startup, so that is logged)."""
    from zkpy.server import tls
    if not tls.tls_enabled(config):
        return None
    try:
        return tls.ServerTls(config)
    except Exception as e:
        log.error("cannot build the TLS context; TLS connections will be closed: %s", e)
        return None


def main(argv=None):
    p = argparse.ArgumentParser(prog="zkpy.workers.worker")
    p.add_argument("config")
    p.add_argument("--worker-id", type=int, required=True)
    p.add_argument("--ctrl-fd", type=int, required=True)
    p.add_argument("--handoff-fd", type=int, required=True)
    args = p.parse_args(argv)
    # A Ctrl-C, or a service manager's stop (systemd signals the whole control group), reaches
    # the workers too; the core decides when they stop: after it has answered what they
    # forwarded (SHUTDOWN), or when it is gone (EOF on the control socket).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    config = load_config(args.config, environ=os.environ)
    acls.configure(config)
    from zkpy.logsetup import setup_logging
    setup_logging(args.config)
    try:
        return asyncio.run(run(config, args.worker_id, args.ctrl_fd, args.handoff_fd))
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
