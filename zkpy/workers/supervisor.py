"""The core process's side of the worker processes: spawn, accept, hand over, restart.

Connections are accepted here, not in the workers: the core reads the first bytes of each new
connection, answers a four-letter word itself (with every worker's figures; a word sent inside
TLS reaches a worker, which asks the core for the same answer: FOUR_LETTER), and otherwise hands
the socket with those bytes to a worker, round robin (SCM_RIGHTS over a datagram socket pair). So
maxClientCnxns is counted across all workers, and the 4lw see the whole server. After the
handoff the client talks to its worker only; the worker reaches the core over its control socket
(zkpy.workers.ipc). A worker that dies is restarted; its clients reconnect and keep their sessions.
"""

import asyncio
import itertools
import json
import logging
import os
import socket
import subprocess
import sys

from zkpy.admin import fourletter
from zkpy.proto.framing import is_four_letter_word
from zkpy.server import tlsaccept
from zkpy.workers import ipc
from zkpy.workers.worker import RESET_CONNECTIONS, RESET_SERVER

log = logging.getLogger("zkpy.supervisor")

_FIRST_BYTES_TIMEOUT_S = 30


def listen_specs(config):
    """(host, port, kind) of each client listener: clientPort ("plain", or "unified" with
    client.portUnification: TLS and plaintext told apart by the first byte) and
    secureClientPort ("tls")."""
    specs = []
    if config.client_port:
        specs.append((config.client_port_address or "0.0.0.0", config.client_port,
                      "unified" if config.client_port_unification else "plain"))
    if config.secure_client_port:
        specs.append((config.secure_client_port_address or "0.0.0.0",
                      config.secure_client_port, "tls"))
    return specs


def accept_ready(listener):
    """The connections waiting on a non-blocking listening socket, as (socket, address), each
    set non-blocking; stops when none is left (a failed accept is logged and ends the round)."""
    while True:
        try:
            sock, addr = listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            log.warning("accept failed: %s", e)
            return
        sock.setblocking(False)
        yield sock, addr


def bind_listener(host, port, config):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        backlog = config.client_port_listen_backlog
        sock.listen(backlog if backlog > 0 else 511)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


class WorkerHandle(object):
    """One worker process, as an origin of the core (see zkpy.server.core)."""

    def __init__(self, sup, worker_id):
        self.sup = sup
        self.worker_id = worker_id
        self.proc = None
        self.channel = None
        self.handoff = None
        self.alive = False
        self.paused = None     # a clean stop: the future PAUSED resolves (Supervisor.pause)

    # -- origin interface (called by the core)

    def connected(self, conn_id, ok, session_id, timeout_ms, passwd, read_only):
        self.channel.send(ipc.connected(conn_id, ok, session_id, timeout_ms, passwd, read_only))

    def batch(self, zxid, events, replies, committed=False):
        # In the worker's socket before the core goes on (FinalStage._apply); with `committed`
        # in the same write when the core says so.
        data = ipc.batch(zxid, events, list(replies))
        if committed:
            data += ipc.committed(zxid)
        self.channel.send_now(data)

    def committed(self, zxid):
        # Now, not at the end of the loop pass: the core calls this once every worker has the
        # batch in its socket, and a reply held for it waits for nothing else.
        self.channel.send_now(ipc.committed(zxid))

    def close_conn(self, conn_id):
        self.channel.send(ipc.close(conn_id))

    def _send(self, data):
        self.channel.send(data)

    # -- messages from the worker

    def on_frame(self, frame):
        core = self.sup.core
        mtype, args = ipc.decode(frame)
        try:
            if mtype == ipc.REQUEST:
                core.request(self, *args)
            elif mtype == ipc.TOUCH:
                for sid in args[0]:
                    core.touch(sid)
            elif mtype == ipc.CONNECT:
                core.connect(self, *args)
            elif mtype == ipc.AUTH:
                core.set_auth(self, *args)
            elif mtype == ipc.CLOSED:
                conn_id, sid = args
                core.conn_closed(self, conn_id, sid)
                self.sup.conn_gone(conn_id)
            elif mtype == ipc.STATS:
                self.sup.stats_arrived(self, *args)
            elif mtype == ipc.FOUR_LETTER:
                asyncio.get_running_loop().create_task(self.sup._four_letter_for(self, *args))
            elif mtype == ipc.PAUSED:
                self._pause_done()
            elif mtype == ipc.HELLO:
                log.info("worker %d is up (pid %d)", args[0], args[1])
        except Exception:
            log.exception("worker %d: request failed", self.worker_id)

    def on_eof(self):
        self.sup.worker_lost(self)

    def _pause_done(self):
        if self.paused is not None and not self.paused.done():
            self.paused.set_result(None)


class Supervisor(object):
    def __init__(self, core, config):
        self.core = core
        self.config = config
        self.workers = []
        self.listeners = []      # (socket, kind): "plain", "unified" (TLS or not) or "tls"
        self._rr = itertools.count()
        self._conn_ids = itertools.count(1)
        self.conn_ip = {}        # conn_id -> (ip, worker)
        self.per_ip = {}         # ip -> open connections
        self._stats_waiters = {}
        self._req_ids = itertools.count(1)
        self._monitor = None
        self.stopping = False

    # ------------------------------------------------------------------ workers

    async def start(self):
        for i in range(self.config.workers):
            handle = WorkerHandle(self, i + 1)
            self.workers.append(handle)
            await self._spawn(handle)
        self._listen()
        self._monitor = asyncio.get_running_loop().create_task(self._watch())

    async def _spawn(self, handle):
        loop = asyncio.get_running_loop()
        core_ctrl, worker_ctrl = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        core_hand, worker_hand = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        cmd = [sys.executable, "-m", "zkpy.workers.worker", os.path.abspath(self.config.path),
               "--worker-id", str(handle.worker_id),
               "--ctrl-fd", str(worker_ctrl.fileno()), "--handoff-fd", str(worker_hand.fileno())]
        handle.proc = subprocess.Popen(cmd, pass_fds=(worker_ctrl.fileno(), worker_hand.fileno()))
        worker_ctrl.close()
        worker_hand.close()
        handle.channel = ipc.Channel(loop, core_ctrl, handle.on_frame, handle.on_eof)
        handle.handoff = core_hand
        handle.alive = True
        self.core.origins.append(handle)
        log.info("started worker %d (pid %d)", handle.worker_id, handle.proc.pid)

    def worker_lost(self, handle):
        if not handle.alive:
            return
        handle.alive = False
        handle._pause_done()   # nothing more will come from it
        if handle in self.core.origins:
            self.core.origins.remove(handle)
        self.core.origin_lost(handle)
        for conn_id, (ip, w) in list(self.conn_ip.items()):
            if w is handle:
                self.conn_gone(conn_id)
        if handle.handoff is not None:
            handle.handoff.close()
            handle.handoff = None
        if handle.channel is not None:
            handle.channel.close()
        if handle.proc is not None and handle.proc.poll() is None and not self.stopping:
            # Cut off while still running (hung, or its socket stopped draining): kill it so
            # that the watcher starts a fresh one.
            log.warning("worker %d (pid %d) stopped answering; killing it", handle.worker_id,
                        handle.proc.pid)
            handle.proc.kill()
        if not self.stopping:
            log.warning("worker %d (pid %d) died; its clients will reconnect", handle.worker_id,
                        handle.proc.pid if handle.proc else -1)

    async def _watch(self):
        """Restart dead workers."""
        while not self.stopping:
            await asyncio.sleep(0.2)
            for handle in self.workers:
                if handle.proc is not None and handle.proc.poll() is not None:
                    self.worker_lost(handle)
                    if self.stopping:
                        return
                    log.warning("restarting worker %d (exit code %s)", handle.worker_id,
                                handle.proc.returncode)
                    handle.proc = None
                    try:
                        await self._spawn(handle)
                    except Exception:
                        log.exception("restarting worker %d", handle.worker_id)

    async def pause(self, timeout_s=5.0):
        """The first step of a clean stop: accept no more connections, and have every worker
        stop reading requests from its clients (PAUSE). Returns once each has answered PAUSED
        -- every request it read is then in the core's hands -- or is gone, or after timeout_s
        (a hung worker). The workers keep delivering replies until stop()."""
        self.stopping = True
        if self._monitor is not None:
            self._monitor.cancel()
        self._close_listener()
        loop = asyncio.get_running_loop()
        waiting = []
        for handle in self.workers:
            if handle.alive:
                handle.paused = loop.create_future()
                handle.channel.send_now(ipc.pause())
                if handle.alive:   # send_now finds a worker gone through worker_lost
                    waiting.append(handle)
        if waiting:
            await asyncio.wait([h.paused for h in waiting], timeout=timeout_s)
        late = [h for h in waiting if not h.paused.done()]
        if late:
            log.warning("worker(s) %s did not pause within %.0f s; stopping anyway",
                        ", ".join(str(h.worker_id) for h in late), timeout_s)

    def _close_listener(self):
        loop = asyncio.get_running_loop()
        for sock, _ in self.listeners:
            loop.remove_reader(sock.fileno())
            sock.close()
        self.listeners = []

    async def stop(self):
        """After pause() and the core's drain: the workers close their connections (the replies
        they were given go out first) and exit."""
        self.stopping = True
        if self._monitor is not None:
            self._monitor.cancel()
        self._close_listener()
        for handle in self.workers:
            if handle.alive:
                handle.channel.send_now(ipc.shutdown())
        for handle in self.workers:
            if handle.proc is not None:
                for _ in range(100):
                    if handle.proc.poll() is not None:
                        break
                    await asyncio.sleep(0.05)
                if handle.proc.poll() is None:
                    handle.proc.kill()
                    handle.proc.wait()

    # ------------------------------------------------------------------ accepting

    def _listen(self):
        for host, port, kind in listen_specs(self.config):
            sock = bind_listener(host, port, self.config)
            self.listeners.append((sock, kind))
            asyncio.get_running_loop().add_reader(sock.fileno(), self._accept, sock, kind)

    def _accept(self, listener, kind):
        loop = asyncio.get_running_loop()
        for sock, addr in accept_ready(listener):
            ip = addr[0]
            limit = self.config.max_client_cnxns
            if limit and self.per_ip.get(ip, 0) >= limit:
                log.warning("too many connections from %s - max is %d; closing %s:%d",
                            ip, limit, ip, addr[1])
                sock.close()
                continue
            self.per_ip[ip] = self.per_ip.get(ip, 0) + 1
            conn_id = next(self._conn_ids)
            self.conn_ip[conn_id] = (ip, None)
            loop.create_task(self._first_bytes(sock, conn_id, "%s:%d" % (ip, addr[1]), kind))

    async def _first_bytes(self, sock, conn_id, peer, kind="plain"):
        loop = asyncio.get_running_loop()
        first = b""
        try:
            if kind == "tls" or (kind == "unified" and await tlsaccept.starts_tls(
                    sock, _FIRST_BYTES_TIMEOUT_S)):
                # The worker does the handshake: nothing is read here.
                self._hand_over(sock, conn_id, peer, b"", tls=True)
                return
            while len(first) < 4:
                data = await asyncio.wait_for(loop.sock_recv(sock, 65536),
                                              _FIRST_BYTES_TIMEOUT_S)
                if not data:
                    raise ConnectionError("closed before sending anything")
                first += data
            cmd = is_four_letter_word(first[:4])
            if cmd is not None:
                await self._four_letter(sock, cmd, peer)
                raise ConnectionError("four letter word answered")
            if first[0] == tlsaccept.TLS_HANDSHAKE_RECORD:
                # (a plaintext client's first byte is the high byte of a frame length: 0)
                log.warning("connection %s closed: a TLS handshake on the plaintext client port "
                            "%d (%s)", peer, self.config.client_port,
                            "TLS clients use secureClientPort %d" % self.config.secure_client_port
                            if self.config.secure_client_port else
                            "no secureClientPort, client.portUnification=false")
                sock.close()
                self.conn_gone(conn_id)
                return
            self._hand_over(sock, conn_id, peer, first)
        except (ConnectionError, OSError, asyncio.TimeoutError) as e:
            if not isinstance(e, ConnectionError) or "four letter" not in str(e):
                log.debug("connection %s not handed over: %s", peer, e)
            sock.close()
            self.conn_gone(conn_id)

    def _hand_over(self, sock, conn_id, peer, first, tls=False):
        if self.stopping:
            raise ConnectionError("the server is stopping")
        live = [w for w in self.workers if w.alive and w.handoff is not None]
        if not live:
            raise ConnectionError("no worker process is running")
        worker = live[next(self._rr) % len(live)]
        socket.send_fds(worker.handoff, [ipc.handoff(conn_id, peer, first, tls)],
                        [sock.fileno()])
        self.conn_ip[conn_id] = (self.conn_ip[conn_id][0], worker)
        sock.close()  # the worker holds its own descriptor now

    def conn_gone(self, conn_id):
        entry = self.conn_ip.pop(conn_id, None)
        if entry is None:
            return
        ip = entry[0]
        n = self.per_ip.get(ip, 1) - 1
        if n <= 0:
            self.per_ip.pop(ip, None)
        else:
            self.per_ip[ip] = n

    # ------------------------------------------------------------------ four letter words

    async def _four_letter(self, sock, cmd, peer):
        if cmd not in self.config.four_letter_words:
            text = "%s is not executed because it is not in the whitelist.\n" % cmd
        else:
            text = await self.four_letter_text(cmd, peer)
        if text:
            await asyncio.get_running_loop().sock_sendall(sock, text.encode("utf-8"))

    async def four_letter_text(self, cmd, peer):
        """The answer to a whitelisted word, with every worker's figures ("" if it failed)."""
        try:
            rep = await self.report(peer, fourletter.RESETS.get(cmd))
            return fourletter.run(cmd, rep)
        except Exception:
            log.exception("four letter word %s failed", cmd)
            return ""

    async def _four_letter_for(self, worker, req_id, cmd, peer):
        # A word a worker read inside TLS (see zkpy.workers.worker): answered as on the
        # plaintext port, and the text goes back for the worker to write and close.
        text = await self.four_letter_text(cmd, peer)
        if worker.alive:
            worker._send(ipc.four_letter_text(req_id, text))

    async def report(self, peer, reset=None):
        """Gather every worker's snapshot (resetting counters first for crst/srst)."""
        flags = {"connections": RESET_CONNECTIONS, "server": RESET_SERVER}.get(reset, 0)
        req_id = (next(self._req_ids) & 0x3FFFFFFF) | flags
        loop = asyncio.get_running_loop()
        waiters = {}
        for w in self.workers:
            if w.alive:
                fut = loop.create_future()
                waiters[w] = fut
                w._send(ipc.stats_req(req_id))
        self._stats_waiters[req_id] = waiters
        try:
            if waiters:
                await asyncio.wait(list(waiters.values()), timeout=2.0)
        finally:
            self._stats_waiters.pop(req_id, None)
        snaps = [f.result() for f in waiters.values() if f.done()]
        return fourletter.Report(self.core, snaps, peer)

    def stats_arrived(self, worker, req_id, payload):
        fut = self._stats_waiters.get(req_id, {}).get(worker)
        if fut is not None and not fut.done():
            fut.set_result(json.loads(payload))
