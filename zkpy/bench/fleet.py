"""Many raw ZooKeeper sessions per process on one epoll loop: the client side of
`zkpy-bench sessions` and `zkpy-bench watches`, and what those two commands share.

Owns `Fleet` (one process's sessions: a connect storm with a bounded number of handshakes in
flight, pings at sessionTimeout/3, paced setData, pipelined request queues, notifications),
`FleetProcs` (forked processes each running a Fleet, driven by commands over a pipe), the
source-address plan (`source_address`), and the command-line plumbing both commands share
(`server_cpu`, `server_memory`, `server_log_errors`, `bar_chart`, `write_results`, `header`,
`command_main`).

Why not loadgen's sessions or kazoo: a kazoo client is a thread and a few objects per session
and the load loop keeps every session busy; here a session is one socket and a small slotted
object, so one process holds 25k+ sessions that mostly sleep. Every frame is jute from
zkpy.proto (ConnectRequest / ConnectResponse, RequestHeader, Create / SetData / GetData /
Exists requests, ping = xid -2 op 11, WatcherEvent).

Loopback source ports run out at ~28k connections per (source ip, destination ip, destination
port), so session `sid` binds to 127.0.0.(2 + sid // SOURCE_SESSIONS_MAX) (with
IP_BIND_ADDRESS_NO_PORT, the port is picked at connect time by the whole 4-tuple).

Commands a Fleet process takes (tuples over its pipe; the reply is one tuple):
    ("connect", go_ns)                     open the process's sessions from go_ns on
                                           -> ("connected", report) once every one is up or
                                           failed
    ("mark",)                              -> ("mark", stats since the last mark)
    ("writes", rate, every, root, size)    sessions with sid % every == 0 setData root/n<sid //
                                           every> `rate` times a second (0: stop) -> ("ok",)
    ("ephemerals", sids, root)             those sessions create root/e<sid>, ephemeral
                                           -> ("created", errors) when all are answered
    ("silence", sids)                      those sessions send nothing more after their next
                                           ping (sockets stay open) -> ("silenced", {sid: (last
                                           send ns, timeout ms)}) once all are silent
    ("closed",)                            -> ("closed", {sid: ns the server closed a silenced
                                           session's connection})
    ("watch", go_ns, make, args, window)   each session sends the (op, body) requests that
                                           make(sid, *args) yields (a module-level function:
                                           it is pickled by name), pipelined, `window` in
                                           flight -> ("watched", done_ns, errors) when answered
    ("listen", expected)                   -> ("events", [(ns, path)]) after `expected` watch
                                           events (or at ("report",))
    ("stop",)                              close everything -> ("stopped",)

Clocks: time.perf_counter_ns (CLOCK_MONOTONIC), the same in every process of the machine, so a
parent compares its own send times with the processes' receive times. Nothing in the server
imports this module; it imports zkpy.proto, zkpy.errors and zkpy.bench.loadgen / scaling / cpu.
"""

import collections
import errno
import heapq
import json
import multiprocessing
import os
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from array import array
from pathlib import Path

from zkpy.bench import loadgen, scaling
from zkpy.proto import codec as _codec
from zkpy.proto import consts as _c
from zkpy.proto import records as _r

__all__ = [
    "SOURCE_SESSIONS_MAX", "source_address", "Fleet", "FleetProcs",
    "server_cpu", "server_memory", "jvm_heap_used_kb", "heap_delta_bytes", "cpu_percent",
    "server_log_errors", "bar_chart", "write_results", "header",
    "error_lines", "command_main",
]

SOURCE_SESSIONS_MAX = 20000     # sessions per loopback source address (ports: ~28k per tuple)
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)
HANDSHAKE_TIMEOUT_S = 30.0
PHI = 0.6180339887498949        # spreads the sessions' first ping / write over an interval
ERRORS_KEPT = 8                 # distinct error texts kept per process

_LEN = struct.Struct(">i")
_HDR = struct.Struct(">iqi")    # ReplyHeader: xid, zxid, err
_PING = loadgen.build_request(_c.XID_PING, _c.OP_PING)
_enc = _codec.encode

CONNECTING, HANDSHAKE, UP, DEAD = range(4)
K_PING, K_WRITE, K_REQ = range(3)


def source_address(sid, per_address=SOURCE_SESSIONS_MAX):
    """The loopback address session `sid` connects from: 127.0.0.2, .3, ..."""
    k = 2 + sid // per_address
    if k > 254:
        raise ValueError("session %d: out of loopback source addresses (%d per address)"
                         % (sid, per_address))
    return "127.0.0.%d" % k


def _oserror_text(e):
    name = errno.errorcode.get(e.errno or 0, "")
    return ("%s %s" % (name, e.strerror or e)).strip()


def _count(counter, text):
    if text in counter or len(counter) < ERRORS_KEPT:
        counter[text] = counter.get(text, 0) + 1
    else:
        counter["(other)"] = counter.get("(other)", 0) + 1


class _Sess:
    __slots__ = ("sid", "i", "sock", "fd", "state", "rbuf", "wbuf", "fifo", "xid", "t0_ns",
                 "timeout_ms", "interval_ns", "last_send_ns", "silent", "quiet", "todo",
                 "inflight", "write_body", "write_out")

    def __init__(self, sid, i):
        self.sid = sid
        self.i = i
        self.sock = None
        self.fd = -1
        self.state = CONNECTING
        self.rbuf = bytearray()
        self.wbuf = None
        self.fifo = collections.deque()    # (xid, kind, send ns) of each request in flight
        self.xid = 1
        self.t0_ns = 0
        self.timeout_ms = 0
        self.interval_ns = 0
        self.last_send_ns = 0
        self.silent = False                # sends nothing more
        self.quiet = False                 # goes silent after its next ping
        self.todo = None                   # iterator of (op, body) still to send
        self.inflight = 0                  # K_REQ requests in fifo
        self.write_body = None
        self.write_out = False


class _Stats:
    """What happened since the last mark."""

    def __init__(self, now):
        self.t_ns = now
        self.pings = 0
        self.ping_lat = array("q")
        self.writes_sent = 0
        self.writes_skipped = 0
        self.write_lat = array("q")
        self.write_errors = {}
        self.lost = {}

    def report(self, now, up):
        return {"t0_ns": self.t_ns, "t1_ns": now, "pings": self.pings,
                "ping_lat_ns": self.ping_lat.tobytes(), "writes_sent": self.writes_sent,
                "writes_skipped": self.writes_skipped, "write_lat_ns": self.write_lat.tobytes(),
                "write_errors": self.write_errors, "lost": self.lost, "up": up}


class Fleet:
    """One process's sessions to `addr`, each asking for `timeout_ms`; at most `window`
    handshakes in flight."""

    def __init__(self, addr, timeout_ms, window=256, handshake_s=HANDSHAKE_TIMEOUT_S,
                 per_address=SOURCE_SESSIONS_MAX):
        self.addr = tuple(addr)
        self.timeout_ms = timeout_ms
        self.window = window
        self.handshake_ns = int(handshake_s * 1e9)
        self.per_address = per_address
        self.ep = select.epoll()
        self.fds = {}
        self.sess = []
        self.pipe_fd = None
        self.pings = []                 # heap of (due ns, index)
        self.writes = []                # heap of (due ns, index)
        self.write_interval_ns = 0
        self.pending = collections.deque()
        self.handshaking = collections.deque()
        self.in_handshake = 0
        self.timeouts_in_row = 0        # handshakes timed out since the last one that succeeded
        self.conn = None
        self.stats = _Stats(time.perf_counter_ns())
        self.outstanding = 0            # K_REQ requests sent and not answered
        self.todo_sessions = 0          # sessions with requests not yet sent
        self.req_errors = {}
        self.events = []
        self.silent_closed = {}
        self.quieting = 0               # sessions still to go silent
        self.done_ns = None
        self.req_window = 1

    # -- the loop ---------------------------------------------------------------------------
    def watch_pipe(self, fd):
        self.pipe_fd = fd
        self.ep.register(fd, select.EPOLLIN)

    def loop(self, done=None):
        """Serve the sessions until `done()` is true ("done") or the pipe is readable ("cmd")."""
        ep = self.ep
        while True:
            now = time.perf_counter_ns()
            if self.pending:
                self._open_more(now)
            if self.handshaking:
                self._expire_handshakes(now)
            self._timers(now)
            if done is not None and done():
                return "done"
            t = 0.05
            for h in (self.pings, self.writes):
                if h:
                    t = min(t, max(0.0, (h[0][0] - now) / 1e9))
            events = ep.poll(t, 4096)
            now = time.perf_counter_ns()
            cmd = False
            for fd, ev in events:
                if fd == self.pipe_fd:
                    cmd = True
                    continue
                s = self.fds.get(fd)
                if s is None:
                    continue
                if s.state == UP:
                    if ev & select.EPOLLOUT:
                        self._flush(s, now)
                    if ev & (select.EPOLLIN | select.EPOLLHUP | select.EPOLLERR):
                        self._read(s, now)
                elif s.state == CONNECTING:
                    self._connected(s, now)
                elif s.state == HANDSHAKE:
                    self._handshake_read(s, now)
            if cmd:
                return "cmd"

    def _timers(self, now):
        h = self.pings
        while h and h[0][0] <= now:
            due, i = heapq.heappop(h)
            s = self.sess[i]
            if s.state != UP or s.silent:
                continue
            if self._send(s, _PING, now):
                s.fifo.append((_c.XID_PING, K_PING, now))
                self.stats.pings += 1
                if s.quiet:
                    s.silent = True
                    self.quieting -= 1
                else:
                    heapq.heappush(h, (max(due + s.interval_ns, now), i))
        w = self.writes
        while w and w[0][0] <= now:
            due, i = heapq.heappop(w)
            s = self.sess[i]
            if s.state != UP or s.silent:
                continue
            if s.write_out:                 # the last one is not answered yet: skip this one
                self.stats.writes_skipped += 1
            elif self._request(s, _c.OP_SET_DATA, s.write_body, K_WRITE, now):
                s.write_out = True
                self.stats.writes_sent += 1
            heapq.heappush(w, (max(due + self.write_interval_ns, now), i))

    # -- connecting -------------------------------------------------------------------------
    def start_connect(self, sids, go_ns):
        self.pending.extend(sids)
        self.conn = {"ok": 0, "failed": 0, "errors": {}, "go_ns": go_ns, "first_ns": None,
                     "last_ns": None, "lat_ns": array("q")}
        while time.perf_counter_ns() < go_ns:
            time.sleep(max(0.0, min(0.05, (go_ns - time.perf_counter_ns()) / 1e9)))

    def connect_done(self):
        return not self.pending and self.in_handshake == 0

    def _open_more(self, now):
        if self.timeouts_in_row >= self.window:
            # The server stopped answering (e.g. out of file descriptors, its listen queue
            # full): the rest would each wait out the handshake timeout, a window at a time.
            why = ("not tried: the %d handshakes before got no ConnectResponse"
                   % self.timeouts_in_row)
            while self.pending:
                self.conn["failed"] += 1
                _count(self.conn["errors"], why)
                self.pending.popleft()
            return
        while self.pending and self.in_handshake < self.window:
            s = _Sess(self.pending.popleft(), len(self.sess))
            self.sess.append(s)
            s.t0_ns = now
            self.in_handshake += 1
            try:
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            except OSError as e:
                self._fail(s, "socket(): %s" % _oserror_text(e))
                continue
            s.sock = sock
            try:
                sock.setblocking(False)
                try:
                    sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
                except OSError:
                    pass
                sock.bind((source_address(s.sid, self.per_address), 0))
                err = sock.connect_ex(self.addr)
            except OSError as e:
                self._fail(s, "connect: %s" % _oserror_text(e))
                continue
            if err not in (0, errno.EINPROGRESS):
                self._fail(s, "connect: %s" % _oserror_text(OSError(err, os.strerror(err))))
                continue
            s.fd = sock.fileno()
            self.fds[s.fd] = s
            self.ep.register(s.fd, select.EPOLLOUT)
            self.handshaking.append(s)

    def _expire_handshakes(self, now):
        q = self.handshaking
        while q:
            s = q[0]
            if s.state not in (CONNECTING, HANDSHAKE):
                q.popleft()
            elif now - s.t0_ns > self.handshake_ns:
                q.popleft()
                self._fail(s, "no ConnectResponse within %.0f s" % (self.handshake_ns / 1e9))
                self.timeouts_in_row += 1
            else:
                break

    def _connected(self, s, now):
        err = s.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            self._fail(s, "connect: %s" % _oserror_text(OSError(err, os.strerror(err))))
            return
        body = _codec.encode_connect_request(
            _r.ConnectRequest(0, 0, self.timeout_ms, 0, b"\0" * 16))
        try:
            s.sock.send(_LEN.pack(len(body)) + body)     # 48 bytes into an empty buffer
        except OSError as e:
            self._fail(s, "send ConnectRequest: %s" % _oserror_text(e))
            return
        s.state = HANDSHAKE
        self.ep.modify(s.fd, select.EPOLLIN)

    def _handshake_read(self, s, now):
        try:
            data = s.sock.recv(4096)
        except BlockingIOError:
            return
        except OSError as e:
            self._fail(s, "handshake: %s" % _oserror_text(e))
            return
        if not data:
            self._fail(s, "connection closed by the server during the handshake")
            return
        s.rbuf += data
        if len(s.rbuf) < 4:
            return
        (n,) = _LEN.unpack_from(s.rbuf)
        if len(s.rbuf) < 4 + n:
            return
        try:
            resp, _ = _codec.decode_connect_response(bytes(s.rbuf[4:4 + n]))
        except Exception as e:          # noqa: BLE001 - a bad reply is a failed session
            self._fail(s, "bad ConnectResponse: %s" % e)
            return
        del s.rbuf[:4 + n]
        if resp.timeOut <= 0 or resp.sessionId == 0:
            self._fail(s, "session refused (ConnectResponse timeOut %d)" % resp.timeOut)
            return
        s.state = UP
        self.in_handshake -= 1
        self.timeouts_in_row = 0
        s.timeout_ms = resp.timeOut
        s.interval_ns = resp.timeOut * 1_000_000 // 3
        s.last_send_ns = now
        c = self.conn
        c["ok"] += 1
        c["lat_ns"].append(now - s.t0_ns)
        c["first_ns"] = c["first_ns"] or now
        c["last_ns"] = now
        # A real client pings when idle for timeout/3; spread the first pings over it.
        heapq.heappush(self.pings, (now + int(s.interval_ns * ((s.sid * PHI) % 1.0)), s.i))

    def _fail(self, s, why):
        if s.state in (CONNECTING, HANDSHAKE):
            self.in_handshake -= 1
        self._close(s)
        self.conn["failed"] += 1
        _count(self.conn["errors"], why)

    def connect_report(self):
        c = dict(self.conn)
        c["lat_ns"] = c["lat_ns"].tobytes()
        return c

    # -- established sessions ---------------------------------------------------------------
    def _close(self, s):
        s.state = DEAD
        if s.fd >= 0:
            self.fds.pop(s.fd, None)
            try:
                self.ep.unregister(s.fd)
            except (OSError, ValueError):
                pass
            s.fd = -1
        if s.sock is not None:
            s.sock.close()
            s.sock = None

    def _lost(self, s, now, why):
        if s.state == DEAD:
            return
        self.outstanding -= s.inflight
        s.inflight = 0
        if s.todo is not None:
            s.todo = None
            self.todo_sessions -= 1
        if s.quiet and not s.silent:
            self.quieting -= 1
        s.fifo.clear()
        self._close(s)
        if s.silent:
            self.silent_closed[s.sid] = now
        else:
            _count(self.stats.lost, why)

    def _send(self, s, data, now):
        if s.wbuf is not None:
            s.wbuf += data
        else:
            try:
                k = s.sock.send(data)
            except BlockingIOError:
                k = 0
            except OSError as e:
                self._lost(s, now, "send: %s" % _oserror_text(e))
                return False
            if k < len(data):
                s.wbuf = bytearray(data[k:])
                self.ep.modify(s.fd, select.EPOLLIN | select.EPOLLOUT)
        s.last_send_ns = now
        return True

    def _flush(self, s, now):
        if s.wbuf is None:
            return
        try:
            k = s.sock.send(s.wbuf)
        except BlockingIOError:
            return
        except OSError as e:
            self._lost(s, now, "send: %s" % _oserror_text(e))
            return
        del s.wbuf[:k]
        if not s.wbuf:
            s.wbuf = None
            self.ep.modify(s.fd, select.EPOLLIN)

    def _request(self, s, op, body, kind, now):
        xid = s.xid
        s.xid += 1
        if not self._send(s, loadgen.build_request(xid, op, body), now):
            return False
        s.fifo.append((xid, kind, now))
        if kind == K_REQ:
            s.inflight += 1
            self.outstanding += 1
        return True

    def _read(self, s, now):
        try:
            data = s.sock.recv(1 << 16)
        except BlockingIOError:
            return
        except OSError as e:
            self._lost(s, now, "recv: %s" % _oserror_text(e))
            return
        if not data:
            self._lost(s, now, "connection closed by the server")
            return
        buf = s.rbuf
        buf += data
        off, n = 0, len(buf)
        while n - off >= 4:
            (ln,) = _LEN.unpack_from(buf, off)
            if n - off - 4 < ln:
                break
            xid, _zxid, err = _HDR.unpack_from(buf, off + 4)
            if xid == _c.XID_NOTIFICATION:
                ev, _ = _codec.decode(_r.WatcherEvent, bytes(buf[off + 4:off + 4 + ln]), 16)
                self.events.append((now, ev.path))
            elif not s.fifo or s.fifo[0][0] != xid:
                self._lost(s, now, "reply xid %d, expected %s"
                           % (xid, s.fifo[0][0] if s.fifo else "none"))
                return
            else:
                self._reply(s, s.fifo.popleft(), err, now)
                if s.state == DEAD:
                    return
            off += 4 + ln
        if off:
            del buf[:off]

    def _reply(self, s, entry, err, now):
        _xid, kind, t0 = entry
        if kind == K_PING:
            self.stats.ping_lat.append(now - t0)
        elif kind == K_WRITE:
            s.write_out = False
            if err:
                _count(self.stats.write_errors, "setData: %s" % loadgen.error_name(err))
            else:
                self.stats.write_lat.append(now - t0)
        else:
            s.inflight -= 1
            self.outstanding -= 1
            if err:
                _count(self.req_errors, loadgen.error_name(err))
            self._refill(s, now)

    def _refill(self, s, now, window=None):
        if s.todo is None:
            return
        window = window or self.req_window
        while s.inflight < window:     # pings and writes in flight do not count
            nxt = next(s.todo, None)
            if nxt is None:
                s.todo = None
                self.todo_sessions -= 1
                return
            if not self._request(s, nxt[0], nxt[1], K_REQ, now):
                return

    def requests_done(self):
        return self.outstanding <= 0 and self.todo_sessions <= 0

    def _queue(self, by_sid, window):
        """Send each session's [(op, body)] pipelined, `window` requests in flight each."""
        self.req_window = window
        self.req_errors = {}
        now = time.perf_counter_ns()
        for s in self.sess:
            reqs = by_sid.get(s.sid)
            if reqs and s.state == UP:
                s.todo = iter(reqs)
                self.todo_sessions += 1
                self._refill(s, now)

    def up(self):
        return sum(1 for s in self.sess if s.state == UP)

    # -- commands ---------------------------------------------------------------------------
    def command(self, cmd, sids):
        """Run one command; returns a reply tuple, or (None, done, reply) to wait for done()."""
        op = cmd[0]
        now = time.perf_counter_ns()
        if op == "connect":
            self.start_connect(sids, cmd[1])
            return None, self.connect_done, lambda: ("connected", self.connect_report())
        if op == "mark":
            rep = self.stats.report(now, self.up())
            self.stats = _Stats(now)
            return ("mark", rep)
        if op == "writes":
            rate, every, root, size = cmd[1:]
            self.writes = []
            if rate > 0:
                self.write_interval_ns = int(1e9 / rate)
                value = b"x" * size
                for s in self.sess:
                    if s.sid % every == 0 and s.state == UP:
                        s.write_body = _enc(_r.SetDataRequest(
                            "%s/n%d" % (root, s.sid // every), value, -1))
                        due = now + int(self.write_interval_ns * ((s.sid * PHI) % 1.0))
                        self.writes.append((due, s.i))
                heapq.heapify(self.writes)
            return ("ok",)
        if op == "ephemerals":
            wanted, root = cmd[1], cmd[2]
            acl = loadgen.OPEN_ACL_UNSAFE
            self._queue({sid: [(_c.OP_CREATE, _enc(_r.CreateRequest(
                "%s/e%d" % (root, sid), b"", acl, _c.CREATE_EPHEMERAL)))]
                for sid in wanted}, 1)
            return None, self.requests_done, lambda: ("created", dict(self.req_errors))
        if op == "silence":
            # Each goes silent after its next ping: the last packets the server hears are
            # spread over a ping interval, as they would be, not all on one tick.
            wanted = [s for s in self.sess if s.sid in cmd[1] and s.state == UP]
            for s in wanted:
                s.quiet = True
            self.quieting = len(wanted)
            return None, lambda: self.quieting <= 0, lambda: ("silenced", {
                s.sid: (s.last_send_ns, s.timeout_ms) for s in wanted if s.silent})
        if op == "closed":
            return ("closed", dict(self.silent_closed))
        if op == "watch":
            go_ns, make, args, window = cmd[1:]
            requests = {sid: make(sid, *args) for sid in sids}
            while time.perf_counter_ns() < go_ns:
                time.sleep(0.001)
            self._queue(requests, window)

            def done():
                if self.requests_done():
                    self.done_ns = self.done_ns or time.perf_counter_ns()
                    return True
                return False
            self.done_ns = None
            return None, done, lambda: ("watched", self.done_ns, dict(self.req_errors))
        if op == "listen":
            self.events = []
            want = cmd[1]
            return None, lambda: len(self.events) >= want, lambda: ("events", self.events)
        raise ValueError("unknown fleet command %r" % (op,))

    def close_all(self):
        for s in self.sess:
            if s.state != DEAD:
                self._close(s)


def _child(conn, addr, timeout_ms, sids, window, per_address):
    try:
        scaling._raise_nofile(len(sids) + 256)
        fleet = Fleet(addr, timeout_ms, window, per_address=per_address)
        fleet.watch_pipe(conn.fileno())
        conn.send(("ready", os.getpid()))
        waiting = None
        while True:
            r = fleet.loop(waiting[0] if waiting else None)
            if waiting is not None and r == "done":
                conn.send(waiting[1]())
                waiting = None
                continue
            if not conn.poll():
                continue
            cmd = conn.recv()
            if cmd[0] == "stop":
                fleet.close_all()
                conn.send(("stopped",))
                return
            if cmd[0] == "report":
                if waiting is not None:
                    conn.send(waiting[1]())
                    waiting = None
                continue
            res = fleet.command(cmd, sids)
            if res[0] is None:
                waiting = res[1:]
            else:
                conn.send(res)
    except Exception as e:                  # the parent reports it and fails the run
        try:
            conn.send(("error", "%s: %s" % (type(e).__name__, e)))
        except OSError:
            pass


class FleetProcs:
    """`processes` forked Fleet processes sharing `sessions` sessions (sid i in process
    i % processes), connected to `addr`."""

    def __init__(self, addr, sessions, processes, timeout_ms, window=256,
                 per_address=SOURCE_SESSIONS_MAX):
        ctx = multiprocessing.get_context("fork")
        self.split = loadgen._split(sessions, processes)
        self.procs, self.conns = [], []
        for sids in self.split:
            parent, child = ctx.Pipe()
            p = ctx.Process(target=_child, daemon=True,
                            args=(child, addr, timeout_ms, sids, window, per_address))
            p.start()
            child.close()
            self.procs.append(p)
            self.conns.append(parent)
        self.recv_all(30.0)

    def send_all(self, cmd):
        for c in self.conns:
            c.send(cmd)

    def recv_all(self, timeout, nudge=None):
        """One reply from each process (a BenchError if one fails or takes over `timeout`;
        with `nudge`, a process that has not answered by then is sent it and has 10 s more)."""
        conns = self.conns
        out = [None] * len(conns)
        deadline = time.monotonic() + timeout
        for k, c in enumerate(conns):
            if not c.poll(max(0.0, deadline - time.monotonic())):
                if nudge is not None:
                    c.send(nudge)
                if nudge is None or not c.poll(10.0):
                    raise loadgen.BenchError("a fleet process did not answer within %.0f s"
                                             % timeout)
            try:
                msg = c.recv()
            except EOFError:
                raise loadgen.BenchError("a fleet process died") from None
            if msg[0] == "error":
                raise loadgen.BenchError("fleet process: %s" % msg[1])
            out[k] = msg
        return out

    def send_each(self, cmds):
        """cmds[k] to process k."""
        for c, cmd in zip(self.conns, cmds):
            c.send(cmd)

    def call(self, cmd, timeout):
        self.send_all(cmd)
        return self.recv_all(timeout)

    def stop(self):
        for c in self.conns:
            try:
                c.send(("stop",))
            except OSError:
                pass
        for p in self.procs:
            p.join(10)
            if p.is_alive():
                p.kill()
                p.join()


# --- what both commands share ----------------------------------------------------------------

def server_cpu(pgid):
    """{"core": s, "workers": s}: CPU seconds so far of process group `pgid` (a zkpy server's
    core and its workers; Apache's JVM is all "core")."""
    from zkpy.bench import cpu
    return cpu._roles(cpu.group_cpu(pgid), pgid, ("core", "workers"))


_HEAP_USED = re.compile(r"heap\s+total\s+(\d+)K,\s+used\s+(\d+)K")


def jvm_heap_used_kb(text):
    """The heap's used kB from `jcmd <pid> GC.heap_info` (" garbage-first heap   total
    1048576K, used 44032K [..."), or None."""
    m = _HEAP_USED.search(text or "")
    return int(m.group(2)) if m else None


def _jcmd(pid, what):
    try:
        out = subprocess.run(["jcmd", str(pid), what], capture_output=True, text=True,
                             timeout=120)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout if out.returncode == 0 else None


def server_memory(server):
    """scaling.measure_memory of `server`'s process group (a harness server). A JVM gets a
    full GC first (jcmd GC.run, when the JDK's jcmd is there), so the garbage a run leaves in
    its heap is not counted as memory the sessions or watches hold ("gc": whether it ran), and
    its heap's live data after it is "heap_used_kb" (GC.heap_info; None for zkpy)."""
    gc, heap = False, None
    if server.kind == "apache" and shutil.which("jcmd"):
        gc = _jcmd(server.proc.pid, "GC.run") is not None
        heap = jvm_heap_used_kb(_jcmd(server.proc.pid, "GC.heap_info"))
        time.sleep(0.5)
    m = scaling.measure_memory(server.proc.pid)
    m.update(gc=gc, heap_used_kb=heap)
    return m


def heap_delta_bytes(before, after, count):
    """Bytes of JVM heap live data per item between two server_memory(), or None."""
    a, b = before.get("heap_used_kb"), after.get("heap_used_kb")
    if a is None or b is None or count <= 0:
        return None
    return round((b - a) * 1024.0 / count, 1)


def cpu_percent(before, after, seconds):
    """{"total", "core", "workers"}: % of one core over `seconds` between two server_cpu()."""
    out = {}
    for k in ("core", "workers"):
        out[k] = round(100.0 * (after.get(k, 0.0) - before.get(k, 0.0)) / seconds, 1) \
            if seconds > 0 else None
    out["total"] = None if out["core"] is None else round(out["core"] + out["workers"], 1)
    return out


# Error-level lines and the failures that end a connection storm; not the WARN lines every
# client that closes its socket leaves in ZooKeeper's log (EndOfStreamException).
_ERROR_LINE = re.compile(r"\bERROR\b|CRITICAL|FATAL|Traceback|Too many open files|"
                         r"OutOfMemoryError|Cannot allocate memory")
# ZooKeeper logs this at ERROR when a four-letter-word client (the harness's srvr) closes first.
_NOT_ERRORS = ("Error closing a command socket",)


def record_error(rep, exc, log):
    """A run that failed: its report says why (one line), and so does the progress log."""
    rep["error"] = "%s: %s" % (type(exc).__name__, str(exc).splitlines()[0][:300])
    log("  ERROR: %s" % rep["error"])


def finish_run(rep, server, fleet, cluster):
    """The end of one server's run, failed or not: whether it died, the client fleet stopped,
    the server log's error lines in the report, the server stopped."""
    rep["died"] = server.proc is not None and not server.running()
    if fleet is not None:
        fleet.stop()
    rep["server_errors"] = server_log_errors(server.log_text())
    cluster.stop()


def server_log_errors(text, limit=5):
    """The last `limit` distinct lines of a server log that look like errors (timestamps and
    numbers folded, so a repeated error counts once), each cut to 200 characters."""
    seen, out = set(), []
    for line in reversed(text.splitlines()):
        if not _ERROR_LINE.search(line) or any(x in line for x in _NOT_ERRORS):
            continue
        key = re.sub(r"\d+", "#", line)
        if key in seen:
            continue
        seen.add(key)
        out.append(line.strip()[:200])
        if len(out) >= limit:
            break
    return out[::-1]


def bar_chart(path, panels, title):
    """A PNG of bar panels: [(panel title, x labels, {series label: [value or None]})].
    Returns False (nothing written) when matplotlib is not importable."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, axes = plt.subplots(len(panels), 1, figsize=(9, 2.6 * len(panels) + 0.6),
                             squeeze=False)
    colors = ("#2b7bba", "#e08a1e", "#5a9e4b", "#9b59b6")
    for ax, (name, xs, series) in zip(axes[:, 0], panels):
        w = 0.8 / max(1, len(series))
        for k, (lab, vals) in enumerate(series.items()):
            pos = [i - 0.4 + w * (k + 0.5) for i in range(len(xs))]
            ax.bar(pos, [v or 0 for v in vals], w, label=lab, color=colors[k % len(colors)])
            for x, v in zip(pos, vals):
                if v is None:
                    ax.annotate("n/a", (x, 0), ha="center", va="bottom", fontsize=7)
        ax.set_title(name, fontsize=9)
        ax.set_xticks(range(len(xs)))
        ax.set_xticklabels(xs)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def write_results(out, name, doc, md, panels, chart_title, log):
    """`out`/<name>.json (doc), <name>.md (md + the chart's link) and <name>.png (bar_chart of
    `panels`, skipped with a line on stderr when matplotlib is missing). Returns the md."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if bar_chart(out / (name + ".png"), panels, chart_title):
        md += "\n![%s](%s.png)\n" % (chart_title, name)
        log("wrote %s" % (out / (name + ".png")))
    else:
        log("no chart: matplotlib is not importable (pip install matplotlib)")
    with open(out / (name + ".json"), "w") as f:
        json.dump(doc, f, indent=1, sort_keys=True, default=str)
        f.write("\n")
    (out / (name + ".md")).write_text(md)
    log("wrote %s, %s" % (out / (name + ".md"), out / (name + ".json")))
    return md


def stderr(msg):
    print(msg, file=sys.stderr, flush=True)


def fmt_duration(s):
    from zkpy.bench import compare
    return compare.fmt_duration(s)


def header(title, reports, machine, command, started, wall):
    """The first lines of a report: title, command, machine, commit, each server's command."""
    from zkpy.bench import compare
    md = ["# " + title, "",
          "Command: `%s` (started %s, took %s)." % (command, started, fmt_duration(wall)), "",
          "Machine: %s. Load average %s before, %s after. Open files limit %s (%s wanted)."
          % (compare.describe_machine(machine), machine["load_before"], machine["load_after"],
             machine.get("nofile"), machine.get("nofile_wanted")), ""]
    if machine.get("zkpy_commit"):
        md += ["zkpy code: commit %s." % machine["zkpy_commit"], ""]
    seen = {}
    for r in reports:
        if r.get("server"):
            seen.setdefault(r["label"], (r["server"], r.get("version")))
    md += ["- %s: %s (version %s)" % (lab, srv, ver) for lab, (srv, ver) in seen.items()]
    return md + [""]


def error_lines(reports):
    """An "Errors" section: each run's error and the error lines of its server's log."""
    errs = [r for r in reports if r.get("error") or r.get("server_errors")]
    if not errs:
        return []
    md = ["## Errors", ""]
    for r in errs:
        md.append("- %s%s: %s%s" % (
            r["label"], " at %d sessions" % r["sessions"] if "timeout_ms" in r else "",
            r.get("error") or "", " server log: " + " / ".join(r["server_errors"])
            if r.get("server_errors") else ""))
    return md + [""]


def command_main(args, argv, name, settings_fn, body, nofile, render, panels):
    """What `zkpy-bench sessions` and `watches` do around their runs: settings (begin_run),
    RLIMIT_NOFILE raised to `nofile(s)`, a temporary base directory for the servers, the
    machine, then body(s, base, log) -> (reports, extra JSON keys), then the files
    (write_results: render(s, reports, machine, command, started, wall), panels(s, reports)).
    Returns the exit code: 1 if a run had an error."""
    from zkpy.bench import compare
    command, s = compare.begin_run(args, argv, settings_fn)
    if command is None:
        return s
    # The servers and the client processes inherit it: every session is a socket in each.
    want = nofile(s)
    limit = scaling._raise_nofile(want)
    if limit < want:
        stderr("WARNING: open files limit %d, %d wanted: the hard limit, which only a process "
               "with CAP_SYS_RESOURCE can raise (ulimit -Hn; a container's --ulimit nofile=); "
               "each server process can hold about %d connections" % (limit, want, limit))
    Path(s["data_dir"]).mkdir(parents=True, exist_ok=True)
    base = tempfile.mkdtemp(prefix="zkpy-%s-" % name, dir=s["data_dir"])
    machine = compare.machine_description(base)
    machine.update(load_before=compare.loadavg(), nofile=limit, nofile_wanted=want)
    started = time.strftime("%Y-%m-%d %H:%M:%S %z")
    t0 = time.monotonic()
    # SIGTERM (timeout, kill) as ^C: the finally clauses stop the servers and fleets.
    old_term = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        reports, extra = body(s, base, stderr)
    except KeyboardInterrupt:
        stderr("interrupted; servers stopped")
        return 130
    finally:
        signal.signal(signal.SIGTERM, old_term)
        if s["keep_data"]:
            stderr("server directories kept in %s" % base)
        else:
            shutil.rmtree(base, ignore_errors=True)
    wall = time.monotonic() - t0
    machine["load_after"] = compare.loadavg()
    md = render(s, reports, machine, command, started, wall)
    settings_json = {k: (str(v) if isinstance(v, Path) else v) for k, v in s.items()}
    doc = {"command": command, "started": started, "wall_s": round(wall, 1),
           "settings": settings_json, "machine": machine, "reports": reports}
    doc.update(extra)
    md = write_results(s["out"], name, doc, md, panels(s, reports),
                       "%s: %s, %s" % (name, " vs ".join(s["labels"]), started[:10]), stderr)
    print(md, flush=True)
    stderr("took %s" % fmt_duration(wall))
    return 1 if any(r.get("error") for r in reports) else 0
