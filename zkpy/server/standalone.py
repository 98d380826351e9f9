"""The standalone server process: event loop, listening socket, signals.

A thin shell: builds a Core from a Config, listens on clientPort, and on SIGTERM/SIGINT stops
accepting, waits for every queued txn to become durable, checkpoints LMDB and exits 0.
"""

import asyncio
import logging
import signal

from zkpy import ZK_VERSION_STRING
from zkpy.server.connection import Connection
from zkpy.server.core import Core

log = logging.getLogger("zkpy.server")


async def serve(config, ready=None):
    core = Core(config)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, core.open)
    core.start()
    stop = asyncio.Event()
    core.on_fatal = lambda exc: stop.set()
    per_ip = {}
    host = config.client_port_address or "0.0.0.0"
    backlog = config.client_port_listen_backlog if config.client_port_listen_backlog > 0 else 511
    server = await loop.create_server(lambda: Connection(core, per_ip), host, config.client_port,
                                      reuse_address=True, backlog=backlog)
    admin = None
    if config.admin_enable_server:
        from zkpy.admin import http
        admin = await http.start(core)
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info("zkpy %s serving clients on %s:%d (dataDir=%s, dataLogDir=%s)", ZK_VERSION_STRING,
             host, config.client_port, config.data_dir, config.data_log_dir)
    if ready is not None:
        ready()
    await stop.wait()
    log.info("shutting down")
    server.close()
    if admin is not None:
        admin.close()
    for conn in list(core.connections):
        conn.close()
    await core.stop()
    log.info("stopped; last zxid 0x%x", core.last_zxid)
    return 1 if core.fatal is not None else 0


def run(config):
    return asyncio.run(serve(config))
