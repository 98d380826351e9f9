"""The server process: the core, its frontends, signals; in an ensemble also its QuorumPeer.

With workers=N (default: the number of cores) the core spawns N worker processes and hands them
the client connections (zkpy.workers.supervisor); with workers=0 one frontend serves clients inside
the core process. On SIGTERM/SIGINT: stop accepting connections and reading requests, wait until
every request taken is durable (standalone: applied and answered too), close the connections,
stop the workers, flush the log, checkpoint LMDB, exit 0.
"""

import asyncio
import logging
import os
import signal

import lmdb

from zkpy import compiled
from zkpy import ZK_VERSION_STRING
from zkpy.admin import fourletter
from zkpy.errors import StorageCorruptError, StorageFullError
from zkpy.server.connection import Connection, close_connections
from zkpy.server.core import Core
from zkpy.server.pipeline.common import free_space
from zkpy.server import tlsaccept
from zkpy.server.frontend import Frontend
from zkpy.server.gcpolicy import tune_gc

log = logging.getLogger("zkpy.server")

# On the way out: how long the replies already given to the connections may take to leave.
CLOSE_TIMEOUT_S = 1.0
# client.portUnification: how long a new connection may stay silent before it is dropped.
FIRST_BYTE_TIMEOUT_S = 30


class LocalLink(object):
    """A frontend's link to a core in the same process: plain calls."""

    def __init__(self, core):
        self.core = core
        self.fe = None

    def connect(self, conn_id, frame, read_only):
        self.core.connect(self.fe, conn_id, frame, read_only)

    def request(self, conn_id, entry_id, session_id, xid, op, body):
        self.core.request(self.fe, conn_id, entry_id, session_id, xid, op, body)

    def auth(self, conn_id, ids):
        self.core.set_auth(self.fe, conn_id, ids)

    def touch(self, session_id):
        self.core.touch(session_id)

    def closed(self, conn_id, session_id):
        self.core.conn_closed(self.fe, conn_id, session_id)


class InProcess(object):
    """workers=0: one frontend in the core process, listening itself."""

    def __init__(self, core, config):
        self.core = core
        self.config = config
        link = LocalLink(core)
        self.fe = Frontend(config, core.tree, link)
        link.fe = self.fe
        self.fe.four_letter = self._four_letter
        core.origins.append(self.fe)
        self.server = None
        self.listeners = []     # the TLS and unified ports, accepted here (_accept)
        self.per_ip = {}
        self.tls = None
        self._reloader = None

    async def _four_letter(self, cmd, peer):
        reset = fourletter.RESETS.get(cmd)
        if reset == "connections":
            self.fe.reset_connection_stats()
        elif reset == "server":
            self.fe.reset_stats()
        return fourletter.run(cmd, fourletter.Report(self.core, [self.fe.snapshot()], peer))

    async def report(self, peer, reset=None):
        return fourletter.Report(self.core, [self.fe.snapshot()], peer)

    async def start(self):
        from zkpy.server import tls
        from zkpy.workers.supervisor import bind_listener, listen_specs
        cfg = self.config
        per_ip = self.per_ip
        loop = asyncio.get_running_loop()
        if tls.tls_enabled(cfg):
            self.tls = tls.ServerTls(cfg)
            if cfg.client_cert_reload:
                self._reloader = loop.create_task(tlsaccept.reload_loop(self.tls))
        backlog = cfg.client_port_listen_backlog if cfg.client_port_listen_backlog > 0 else 511
        for host, port, kind in listen_specs(cfg):
            if kind == "plain":
                self.server = await loop.create_server(
                    lambda: Connection(self.fe, per_ip), host, port, reuse_address=True,
                    backlog=backlog)
                continue
            sock = bind_listener(host, port, cfg)
            self.listeners.append(sock)
            loop.add_reader(sock.fileno(), self._accept, sock, kind)

    def _accept(self, listener, kind):
        from zkpy.workers.supervisor import accept_ready
        loop = asyncio.get_running_loop()
        for sock, addr in accept_ready(listener):
            loop.create_task(self._serve(sock, "%s:%d" % addr[:2], kind))

    async def _serve(self, sock, peer, kind):
        """A connection on the TLS port, or on the unified port (TLS or plaintext)."""
        is_tls = kind == "tls"
        if not is_tls:
            try:
                is_tls = await tlsaccept.starts_tls(sock, FIRST_BYTE_TIMEOUT_S)
            except (ConnectionError, OSError, asyncio.TimeoutError) as e:
                log.debug("connection %s closed before it started: %s", peer, e)
                sock.close()
                return
        if is_tls:
            conn = Connection(self.fe, self.per_ip, peer=peer, tls=self.tls)
            await tlsaccept.start_tls(conn, sock, self.tls)
        else:
            conn = Connection(self.fe, self.per_ip, peer=peer)
            await asyncio.get_running_loop().connect_accepted_socket(lambda: conn, sock)

    def _close_listeners(self):
        if self.server is not None:
            self.server.close()
        loop = asyncio.get_running_loop()
        for sock in self.listeners:
            loop.remove_reader(sock.fileno())
            sock.close()
        self.listeners = []
        if self._reloader is not None:
            self._reloader.cancel()
            self._reloader = None

    async def pause(self):
        """A clean stop begins: no new connections, no more requests read (see Supervisor)."""
        self._close_listeners()
        self.fe.pause()

    async def stop(self):
        self._close_listeners()
        self.fe.pause()
        await close_connections(self.fe, CLOSE_TIMEOUT_S)


async def _open_core(core, config, replay):
    """core.open in a thread; LMDB out of room (map or disk) is a StorageFullError that says
    which key or disk."""
    try:
        await asyncio.get_running_loop().run_in_executor(None, core.open, replay)
    except lmdb.MapFullError:
        raise StorageFullError(
            "the database %s is full replaying the transaction log: its LMDB map "
            "(lmdbMapSize=%d bytes) is too small; raise lmdbMapSize in %s"
            % (os.path.join(config.data_dir, "zkpy-db"), config.lmdb_map_size, config.path)) \
            from None
    except lmdb.Error as e:
        raise StorageFullError("cannot open or write the database %s: %s (%s)"
                               % (os.path.join(config.data_dir, "zkpy-db"), e,
                                  free_space(config.data_dir))) from None


def _ports(config):
    """The client listeners, for the log: "127.0.0.1:2181", "... and TLS on 0.0.0.0:2281"."""
    parts = []
    if config.client_port:
        parts.append("%s:%d%s" % (config.client_port_address or "0.0.0.0", config.client_port,
                                  " (plaintext and TLS)" if config.client_port_unification
                                  else ""))
    if config.secure_client_port:
        parts.append("TLS on %s:%d" % (config.secure_client_port_address or "0.0.0.0",
                                       config.secure_client_port))
    return " and ".join(parts)


async def serve(config, ready=None):
    core = Core(config)
    loop = asyncio.get_running_loop()
    distributed = config.is_distributed()
    try:
        await _open_core(core, config, replay=not distributed)
    except StorageCorruptError as e:
        if not distributed:
            raise
        # An ensemble member's data is a copy of the leader's: set the damaged copy aside and
        # join with none (last zxid 0, so it never wins an election over a member with data);
        # the leader syncs it (SNAP). Its epoch files stay: they are promises made to leaders.
        moved = await loop.run_in_executor(None, core.set_aside_local_data)
        log.error("local data damaged: %s -- moved to %s; resyncing from the leader",
                  e, ", ".join(moved))
        await _open_core(core, config, replay=False)
    tune_gc()
    peer = None
    if distributed:
        from zkpy.quorum.peer import QuorumPeer
        peer = QuorumPeer(core, config)   # before core.start: the core sets up for an ensemble
    core.start()
    stop = asyncio.Event()
    core.on_fatal = lambda exc: stop.set()
    if config.workers:
        from zkpy.workers.supervisor import Supervisor
        front = Supervisor(core, config)
    else:
        front = InProcess(core, config)
    try:
        await front.start()
        if peer is not None:
            await peer.start()
    except OSError as e:
        log.error("cannot listen (%s%s): %s", _ports(config),
                  "; quorum/election ports of server.%d" % config.myid if peer else "", e)
        if peer is not None:
            await peer.stop()
        await front.stop()
        await core.stop()
        return 1
    admin = None
    if config.admin_enable_server:
        from zkpy.admin import http
        admin = await http.start(core, front.report)
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info("zkpy %s %s clients on %s with %d worker processes (dataDir=%s, "
             "dataLogDir=%s)", ZK_VERSION_STRING,
             "accepting (for the ensemble)" if distributed else "serving", _ports(config),
             config.workers, config.data_dir, config.data_log_dir)
    log.info("compiled twins: %s", compiled.summary())
    if core.audit is not None:
        core.audit.server_start()
    if ready is not None:
        ready()
    await stop.wait()
    log.info("shutting down")
    if core.audit is not None:
        core.audit.server_stop()
    # A clean stop, in this order: take no more requests (the workers stop reading their
    # clients and say so), let every request taken become durable -- standalone also applied
    # and answered --, then close the connections and stop the workers, and last the core
    # (flush, checkpoint LMDB). Workers that exit while the core still has batches for them
    # would lose those answers.
    await front.pause()
    await core.drain()
    if peer is not None:
        await peer.stop()
    await front.stop()
    if admin is not None:
        admin.close()
    await core.stop()
    log.info("stopped; last zxid 0x%x", core.last_zxid)
    return 1 if core.fatal is not None else 0


def run(config):
    return asyncio.run(serve(config))
