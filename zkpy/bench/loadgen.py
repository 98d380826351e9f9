"""zkpy-bench: a ZooKeeper wire-protocol load generator, and a null server to measure it.

Owns `zkpy-bench run` and `zkpy-bench serve-null`; zkpy.bench.command is the `zkpy-bench` command
(``python -m zkpy.bench.loadgen`` still runs it)::

    zkpy-bench run --hosts 127.0.0.1:2181 --workload getdata --processes 2 --sessions 32 \\
                   --depth 16 --duration 10 --value-size 100 --znodes 1000 [--json out.json]
    zkpy-bench run --null-server ...        # against a null server started for the run
    zkpy-bench run --hosts 127.0.0.1:2281 --tls-ca ca.pem --tls-cert c.crt --tls-key c.key ...
    zkpy-bench serve-null --port 2181 [--processes N]
    zkpy-bench compare [--quick] ...        # zkpy vs Apache ZooKeeper (zkpy.bench.compare)
    zkpy-bench scaling [--quick] ...        # sessions, tree size, memory, restart (.scaling)
    zkpy-bench sessions [--quick] ...       # 100k concurrent sessions (.sessions, .fleet)
    zkpy-bench watches [--quick] ...        # 1M watches on 100k znodes (.watches)
    zkpy-bench compare --topology ensemble3 # the same against 3-node pseudo-clusters
    zkpy-bench failover ...                 # kill -9 of a 3-node ensemble's leader (.failover)

Nothing in the server imports this module. It imports zkpy.proto (codec, records, consts) and
zkpy.errors only (no other zkpy.bench module: they import it), and does I/O freely (sockets,
processes, files).

How it stays out of the way of the server it measures:
  - it speaks jute directly (zkpy.proto.codec builds every request body once per znode, ahead
    of the run); a reply is read as its 16-byte ReplyHeader only, its body is skipped;
  - each process drives many sessions from one epoll loop on non-blocking sockets, keeping
    ``--depth`` requests outstanding per session: the replies of one recv() are answered by one
    send() of as many new requests;
  - ``--sessions`` (the total) are spread over ``--processes`` forked processes.
``--null-server`` / ``serve-null`` answer every request at once with an OK reply, so a run
against them shows the generator's own ceiling on this machine.

TLS (``--tls-ca/--tls-cert/--tls-key``, `run_bench(tls=TlsFiles(...))`: a secureClientPort):
every session -- setup, load, cleanup -- is a `TlsSocket`, TLS through memory BIOs
(ssl.SSLObject) over the plain non-blocking socket: one recv() of ciphertext per wakeup,
decrypted whole, and ciphertext sent with the socket's own partial-write semantics. The server
certificate is verified against the CA (and its name against the host), the client presents its
certificate (ZooKeeper's ssl.clientAuth defaults to need). Without TLS the sessions are plain
sockets and the load loop is the same code, untouched.

Workloads (znodes live under ``--root``, default /bench):
  getdata, exists, setdata   on /bench/n<i>, i cycling over --znodes (setData version -1)
  getchildren                getChildren of /bench itself (--znodes children: a big reply)
  mixed                      90% getData, 10% setData on /bench/n<i> (every 10th request)
  mixed-random               90% getData, 10% setData, the writes at seeded random places in
                             each session's stream (so they sometimes come in runs)
  mixed-50                   50% getData, 50% setData, seeded random as mixed-random
  latency                    getData with depth 1: one request in flight per session
  create                     persistent creates of /bench/c/s<session>-<k> (--value-size bytes)
  delete                     creates as above for --duration (not measured), then deletes them
                             (measured); the run ends early if a session runs out of nodes
Setup wipes ``--root`` and creates the znodes; cleanup deletes them again (--keep skips it).

Measurement: the processes start together; replies that arrive in the window that begins after
``--warmup`` and ends ``--duration`` seconds later are counted, and their latency (send to
receipt of the reply, in the same process) is kept. Sending stops at the end of the window and
the outstanding replies are drained (checked for errors, not counted). ops/s is the sum over
processes of ops / window. Percentiles are nearest-rank over all kept latencies.

Any error reply, lost connection or protocol violation (a reply xid out of order) is counted;
the run then prints a loud ERROR line and exits 1.
"""

import collections
import json
import math
import multiprocessing
import os
import selectors
import signal
import socket
import ssl
import struct
import sys
import time
from array import array

from zkpy import errors as _e
from zkpy.proto import codec as _codec
from zkpy.proto import consts as _c
from zkpy.proto import records as _r

__all__ = [
    "WORKLOADS", "Workload", "build_request", "percentiles", "summarize", "run_bench",
    "NullServer", "serve_null", "main", "TlsFiles", "TlsSocket", "client_context",
    "connect_session", "SyncClient",
]

WORKLOADS = ("create", "getdata", "setdata", "delete", "exists", "getchildren", "mixed",
             "mixed-random", "mixed-50", "latency")
# The share of writes (per 1000) of the random mixes; which request is one is a hash of
# (session, request number, MIX_SEED): the same stream on every run and every server.
_RANDOM_MIX_WRITES = {"mixed-random": 100, "mixed-50": 500}
MIX_SEED = 20261207

OPEN_ACL_UNSAFE = [_r.ACL(_c.PERM_ALL, _r.Id("world", "anyone"))]
SESSION_TIMEOUT_MS = 30000
CONNECT_TIMEOUT = 10.0
DRAIN_TIMEOUT = 30.0         # outstanding replies must arrive within this after a phase ends
ERROR_SAMPLES = 5

_REQ_HDR = struct.Struct(">iii")        # frame length, xid, op
_REPLY = struct.Struct(">iiqi")         # frame length, xid, zxid, err
_LEN = struct.Struct(">i")
_enc = _codec.encode


def build_request(xid, op, body=b""):
    """One request frame: int32 length + RequestHeader{xid, op} + the encoded record `body`."""
    return _REQ_HDR.pack(8 + len(body), xid, op) + body


def error_name(code):
    return "%s (%d)" % (_e.CODE_NAMES.get(code, "?"), code)


# --- workloads ----------------------------------------------------------------------------

class Workload:
    """What a session sends: ``request(sid, k)`` -> (op, body) of its k-th request.

    sid is the session's index over the whole run (0 .. sessions-1), so sessions start at
    different znodes and their create paths never collide. Bodies are encoded with
    zkpy.proto.codec; those of the /bench/n<i> reads are built once, here.
    """

    def __init__(self, name, root="/bench", znodes=1000, value_size=100):
        if name not in WORKLOADS:
            raise ValueError("unknown workload %r (one of %s)" % (name, ", ".join(WORKLOADS)))
        if znodes < 1:
            raise ValueError("znodes must be >= 1")
        self.name = name
        self.root = root.rstrip("/") or "/"
        self.znodes = znodes
        self.value = b"x" * value_size
        self.create_dir = self.join(self.root, "c")
        # Sessions start `stride` znodes apart, so they do not all read the same node.
        self.stride = 7919
        self._reads = None
        self._writes = None
        kind = {"getdata": "get", "latency": "get", "exists": "exists", "setdata": "set",
                "mixed": "mixed", "getchildren": "children", "create": "create",
                "delete": "delete", "mixed-random": "random_mix",
                "mixed-50": "random_mix"}[name]
        self._write_share = _RANDOM_MIX_WRITES.get(name)
        if kind in ("get", "mixed", "random_mix"):
            self._reads = [_enc(_r.GetDataRequest(p, False)) for p in self.paths()]
        if kind == "exists":
            self._reads = [_enc(_r.ExistsRequest(p, False)) for p in self.paths()]
        if kind in ("set", "mixed", "random_mix"):
            self._writes = [_enc(_r.SetDataRequest(p, self.value, -1)) for p in self.paths()]
        if kind == "children":
            self._children = _enc(_r.GetChildrenRequest(self.root, False))
        self.request = getattr(self, "_req_" + kind)

    @staticmethod
    def join(parent, child):
        return (parent if parent != "/" else "") + "/" + child

    def paths(self):
        """The znodes setup creates (besides the root and the create directory)."""
        return [self.join(self.root, "n%d" % i) for i in range(self.znodes)]

    def needs_znodes(self):
        return self.name not in ("create", "delete")

    def create_path(self, sid, k):
        return "%s/s%d-%d" % (self.create_dir, sid, k)

    def create_request(self, sid, k):
        return _c.OP_CREATE, _enc(_r.CreateRequest(self.create_path(sid, k), self.value,
                                                   OPEN_ACL_UNSAFE, _c.CREATE_PERSISTENT))

    def delete_request(self, sid, k):
        return _c.OP_DELETE, _enc(_r.DeleteRequest(self.create_path(sid, k), -1))

    def _req_get(self, sid, k):
        return _c.OP_GET_DATA, self._reads[(sid * self.stride + k) % self.znodes]

    def _req_exists(self, sid, k):
        return _c.OP_EXISTS, self._reads[(sid * self.stride + k) % self.znodes]

    def _req_set(self, sid, k):
        return _c.OP_SET_DATA, self._writes[(sid * self.stride + k) % self.znodes]

    def _req_mixed(self, sid, k):
        i = (sid * self.stride + k) % self.znodes
        if k % 10 == 9:
            return _c.OP_SET_DATA, self._writes[i]
        return _c.OP_GET_DATA, self._reads[i]

    def _req_random_mix(self, sid, k):
        i = (sid * self.stride + k) % self.znodes
        h = ((sid * 0x9E3779B1 + k * 0x85EBCA77 + MIX_SEED) * 0xC2B2AE3D) & 0xffffffff
        if (h >> 8) % 1000 < self._write_share:
            return _c.OP_SET_DATA, self._writes[i]
        return _c.OP_GET_DATA, self._reads[i]

    def _req_children(self, sid, k):
        return _c.OP_GET_CHILDREN, self._children

    # create: the measured phase; delete: the unmeasured pre-phase (see _worker).
    _req_create = create_request
    _req_delete = create_request


# --- statistics ---------------------------------------------------------------------------

def percentiles(values, qs=(0.5, 0.99, 0.999)):
    """Nearest-rank percentiles: {q: value}; the q-th is the ceil(q*n)-th smallest value.

    Empty input gives None for every q. `values` need not be sorted (a sorted copy is made).
    """
    if not values:
        return {q: None for q in qs}
    s = sorted(values)
    n = len(s)
    out = {}
    for q in qs:
        if not 0 < q <= 1:
            raise ValueError("percentile %r outside (0, 1]" % (q,))
        # The small epsilon keeps 0.99*100 = 99.00000000000001 from rounding up to rank 100.
        rank = max(1, math.ceil(q * n - 1e-9))
        out[q] = s[rank - 1]
    return out


NO_OPS = ("no operation completed in the measured window (a delete run: its nodes ran out "
          "during the warm-up; give it a longer --duration or a shorter --warmup)")


def _common_window(windows):
    """[latest start, earliest end] of per-process (start, end) windows; None if unknown."""
    if not windows or any(w is None for w in windows):
        return None
    return [max(w[0] for w in windows), min(w[1] for w in windows)]


def summarize(parts, wall_s=None):
    """Combine per-process results into one report dict (latencies in ms)."""
    ops = sum(p["ops"] for p in parts)
    rate = sum(p["ops"] / p["window_s"] for p in parts if p["window_s"] > 0)
    lat = array("q")
    for p in parts:
        lat.extend(p["lat_ns"])
    pct = percentiles(lat)
    ms = lambda ns: None if ns is None else round(ns / 1e6, 3)  # noqa: E731
    errors = sum(p["errors"] for p in parts)
    samples = [m for p in parts for m in p["error_samples"]][:ERROR_SAMPLES]
    if ops == 0:
        # Nothing to report is a failed run, not a rate of 0 to average (e.g. a delete run
        # whose nodes were all deleted during the warm-up).
        errors += 1
        samples = (samples + [NO_OPS])[:ERROR_SAMPLES]
    return {
        "ops": ops,
        "ops_per_sec": round(rate, 1),
        "p50_ms": ms(pct[0.5]),
        "p99_ms": ms(pct[0.99]),
        "p999_ms": ms(pct[0.999]),
        "max_ms": ms(max(lat)) if lat else None,
        "window_s": round(max((p["window_s"] for p in parts), default=0.0), 3),
        # the part of the measured window every process was in, on the machine's monotonic clock
        # (time.perf_counter_ns / time.monotonic_ns on Linux): zkpy-bench cpu reads /proc by it
        "window_monotonic_ns": _common_window([p.get("window_ns") for p in parts]),
        "errors": errors,
        "error_samples": samples,
        "wall_s": None if wall_s is None else round(wall_s, 2),
    }


# --- sessions -----------------------------------------------------------------------------

class BenchError(Exception):
    """A failure that ends the run (connect refused, handshake rejected, lost setup session)."""


def parse_hosts(text):
    out = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        host, sep, port = part.rpartition(":")
        if not sep:
            host, port = part, "2181"
        out.append((host.strip("[]") or "127.0.0.1", int(port)))
    if not out:
        raise ValueError("no hosts in %r" % text)
    return out


def _recv_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise BenchError("connection closed by the server during the handshake")
        buf += chunk
    return bytes(buf)


TlsFiles = collections.namedtuple("TlsFiles", "ca cert key")
TlsFiles.__doc__ = """PEM files of a TLS client: the CA certificate(s) to trust, the client's
certificate chain and its (unencrypted) key."""

_CONTEXTS = {}    # TlsFiles -> ssl.SSLContext, per process


def client_context(tls):
    """The ssl.SSLContext of a TLS client with `tls` (a TlsFiles), made once per process:
    the server's certificate must chain to tls.ca and name the host; the client presents
    tls.cert / tls.key."""
    tls = TlsFiles(*tls)
    ctx = _CONTEXTS.get(tls)
    if ctx is None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)     # CERT_REQUIRED, check_hostname
        ctx.load_verify_locations(tls.ca)
        ctx.load_cert_chain(tls.cert, tls.key)
        _CONTEXTS[tls] = ctx
    return ctx


class TlsSocket:
    """A TLS connection as the load loop and SyncClient use a socket.

    The TLS state is an ssl.SSLObject between two memory BIOs over the plain socket `sock`, so
    the loop keeps its non-blocking socket semantics:
      - recv(n): decrypted bytes (at most n); when none are decrypted yet, one recv() of up to
        RAW bytes of ciphertext from the socket (BlockingIOError when the socket has none,
        b"" at EOF or close_notify). With the socket empty, one call returns everything
        decryptable: RAW (128 KiB) plus a pending partial record stays under the load loop's
        256 KiB, so nothing is left decrypted that epoll would not announce.
      - send(data): encrypts data (records into the outgoing BIO) and sends what the socket
        takes. When ciphertext is left over, it reports all of data but its last byte as sent:
        the caller keeps that byte and asks to write again (EVENT_WRITE), and the next send()
        skips it (it is encrypted already). The caller must pass what it kept first, as the
        load loop's write buffer does.
      - sendall (all of data, after what is left over), setblocking, settimeout, fileno,
        close: as a socket.
    """

    RAW = 1 << 17

    def __init__(self, sock, ctx, server_hostname):
        self.sock = sock
        self.fileno = sock.fileno
        self._in = ssl.MemoryBIO()
        self._out = ssl.MemoryBIO()
        self._obj = ctx.wrap_bio(self._in, self._out, server_side=False,
                                 server_hostname=server_hostname)
        self._plain = bytearray()   # decrypted, not yet returned
        self._wpend = bytearray()   # encrypted, not yet sent
        self._held = 0              # bytes at the start of the next send() encrypted already

    def handshake(self):
        """The TLS handshake on the (blocking) socket."""
        while True:
            try:
                self._obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                out = self._out.read()
                if out:
                    self.sock.sendall(out)
                data = self.sock.recv(self.RAW)
                if not data:
                    raise ConnectionResetError("connection closed during the TLS handshake")
                self._in.write(data)
        out = self._out.read()
        if out:
            self.sock.sendall(out)
        return self

    def version(self):
        return self._obj.version(), self._obj.cipher()

    def _decrypt(self):
        read = self._obj.read
        plain = self._plain
        while True:
            try:
                data = read(self.RAW)
            except ssl.SSLWantReadError:
                return
            except ssl.SSLZeroReturnError:      # close_notify
                return
            if not data:
                return
            plain += data

    def recv(self, n):
        plain = self._plain
        while not plain:
            raw = self.sock.recv(self.RAW)      # BlockingIOError: nothing to read
            if not raw:
                return b""
            self._in.write(raw)
            self._decrypt()
            if self._out.pending:               # e.g. a TLS 1.3 key update to answer
                self._wpend += self._out.read()
                self._push()
        if len(plain) <= n:
            data = bytes(plain)
            plain.clear()
        else:
            data = bytes(plain[:n])
            del plain[:n]
        return data

    def _push(self):
        wpend = self._wpend
        try:
            sent = self.sock.send(wpend)
        except BlockingIOError:
            return
        del wpend[:sent]

    def send(self, data):
        if self._wpend:
            self._push()
            if self._wpend:
                raise BlockingIOError("TLS: ciphertext left to send")
        held = self._held
        if len(data) > held:
            self._obj.write(data if not held else bytes(data[held:]))
            self._wpend += self._out.read()
        self._held = 0
        self._push()
        if self._wpend and data:
            self._held = 1
            return len(data) - 1
        return len(data)

    def sendall(self, data):
        # Blocking use (handshake, setup, close): all of data; a byte kept by a send() before
        # belongs to a buffer the caller has given up (_close_sessions).
        self._held = 0
        if data:
            self._obj.write(data)
            self._wpend += self._out.read()
        if self._wpend:
            self.sock.sendall(self._wpend)
            self._wpend.clear()

    def setblocking(self, flag):
        self.sock.setblocking(flag)

    def settimeout(self, t):
        self.sock.settimeout(t)

    def close(self):
        self.sock.close()


def connect_session(addr, timeout_ms=SESSION_TIMEOUT_MS, tls=None):
    """Blocking connect (+ TLS handshake with `tls`, a TlsFiles) + ConnectRequest /
    ConnectResponse; returns (socket or TlsSocket, session id)."""
    try:
        sock = socket.create_connection(addr, timeout=CONNECT_TIMEOUT)
    except OSError as e:
        raise BenchError("cannot connect to %s:%d: %s" % (addr[0], addr[1], e)) from None
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if tls is not None:
        try:
            sock = TlsSocket(sock, client_context(tls), addr[0]).handshake()
        except (OSError, ValueError) as e:     # ssl.SSLError is an OSError
            sock.close()
            raise BenchError("TLS handshake with %s:%d failed: %s" % (addr[0], addr[1], e)) \
                from None
    body = _codec.encode_connect_request(_r.ConnectRequest(0, 0, timeout_ms, 0, b"\0" * 16))
    try:
        sock.sendall(_LEN.pack(len(body)) + body)
        (n,) = _LEN.unpack(_recv_exact(sock, 4))
        resp, _ = _codec.decode_connect_response(_recv_exact(sock, n))
    except BaseException:
        sock.close()
        raise
    if resp.timeOut <= 0 or resp.sessionId == 0:
        sock.close()
        raise BenchError("server at %s:%d refused the session" % addr)
    return sock, resp.sessionId


def sync_session(sock, path, xid=0):
    """sync(path) on a fresh blocking session socket, as request `xid`; waits for its reply."""
    sock.sendall(build_request(xid, _c.OP_SYNC, _enc(_r.SyncRequest(path))))
    while True:
        (n,) = _LEN.unpack(_recv_exact(sock, 4))
        frame = _recv_exact(sock, n)
        rxid, _zxid, err, _off = _codec.decode_reply_header(frame)
        if rxid < 0:
            continue                    # a ping or notification
        if rxid != xid or err:
            raise BenchError("sync %s: reply xid %d, %s" % (path, rxid, error_name(err)))
        return


class SyncClient:
    """One blocking session for setup and cleanup: pipelined batches, replies in order."""

    def __init__(self, addr, tls=None):
        self.sock, self.session_id = connect_session(addr, tls=tls)
        self.sock.settimeout(DRAIN_TIMEOUT)
        self.xid = 0
        self.rbuf = bytearray()

    def _read_frame(self):
        while True:
            if len(self.rbuf) >= 4:
                (n,) = _LEN.unpack_from(self.rbuf)
                if len(self.rbuf) >= 4 + n:
                    body = bytes(self.rbuf[4:4 + n])
                    del self.rbuf[:4 + n]
                    return body
            chunk = self.sock.recv(1 << 18)
            if not chunk:
                raise BenchError("setup session closed by the server")
            self.rbuf += chunk

    def read_frame(self):
        """The next frame's body (a reply or a notification); the socket's timeout applies
        (socket.timeout, keeping what was read so far for the next call)."""
        return self._read_frame()

    def call_many(self, requests, window=256):
        """[(op, body)] -> [(err, reply body after the header)], `window` in flight at most."""
        out = []
        i = 0
        n = len(requests)
        while i < n or len(out) < n:
            batch = bytearray()
            while i < n and i - len(out) < window:
                op, body = requests[i]
                batch += build_request(self.xid + i, op, body)
                i += 1
            if batch:
                self.sock.sendall(batch)
            # Read half a window before sending more, so the pipe never runs dry.
            target = min(n, len(out) + max(1, window // 2)) if i < n else n
            while len(out) < target:
                frame = self._read_frame()
                xid, _zxid, err, off = _codec.decode_reply_header(frame)
                if xid != self.xid + len(out):
                    raise BenchError("setup session: reply xid %d, expected %d"
                                     % (xid, self.xid + len(out)))
                out.append((err, frame[off:]))
        self.xid += n
        return out

    def call(self, op, body):
        return self.call_many([(op, body)])[0]

    def close(self):
        try:
            self.sock.sendall(build_request(self.xid, _c.OP_CLOSE_SESSION))
            self._read_frame()
        except (OSError, BenchError):
            pass
        finally:
            self.sock.close()


def _children(client, paths):
    reqs = [(_c.OP_GET_CHILDREN, _enc(_r.GetChildrenRequest(p, False))) for p in paths]
    dec = _codec.DECODERS[_r.GetChildrenResponse]
    out = {}
    for p, (err, body) in zip(paths, client.call_many(reqs)):
        if err == _e.NONODE:
            continue
        if err:
            raise BenchError("getChildren %s: %s" % (p, error_name(err)))
        out[p] = dec(body, 0)[0].children or []
    return out


def wipe(client, root):
    """Delete `root` and everything under it (pipelined, one tree level per round trip)."""
    levels = []
    level = [root]
    while level:
        kids = _children(client, level)
        levels.append([p for p in level if p in kids])
        level = [Workload.join(p, c) for p, cs in kids.items() for c in cs]
    for paths in reversed(levels):
        reqs = [(_c.OP_DELETE, _enc(_r.DeleteRequest(p, -1))) for p in paths]
        for p, (err, _) in zip(paths, client.call_many(reqs)):
            if err and err != _e.NONODE:
                raise BenchError("cleanup: delete %s: %s" % (p, error_name(err)))


def setup(client, wl):
    """Fresh root: wipe leftovers, create root, the create directory and /root/n<i>."""
    wipe(client, wl.root)
    mk = lambda p, v=b"": (_c.OP_CREATE, _enc(  # noqa: E731
        _r.CreateRequest(p, v, OPEN_ACL_UNSAFE, _c.CREATE_PERSISTENT)))
    reqs = [mk(wl.root), mk(wl.create_dir)]
    if wl.needs_znodes():
        reqs += [mk(p, wl.value) for p in wl.paths()]
    for (op, body), (err, _) in zip(reqs, client.call_many(reqs)):
        # The root may be "/" or exist outside our control; anything else must be created.
        if err and not (err == _e.NODEEXISTS and body is reqs[0][1]):
            raise BenchError("setup: create failed: %s" % error_name(err))


# --- the load loop ------------------------------------------------------------------------

class _Session:
    __slots__ = ("sock", "sid", "rbuf", "wbuf", "sent", "xid", "expect", "k", "limit",
                 "dead", "writing")

    def __init__(self, sock, sid):
        self.sock = sock
        self.sid = sid
        self.rbuf = bytearray()
        self.wbuf = bytearray()
        self.sent = collections.deque()
        self.xid = 0          # next xid to send
        self.expect = 0       # next xid to receive
        self.k = 0            # requests sent in the current phase
        self.limit = None     # max requests this phase (None: until the deadline)
        self.dead = False
        self.writing = False


class _Stats:
    __slots__ = ("ops", "errors", "samples", "lat", "first", "last")

    def __init__(self):
        self.ops = 0
        self.errors = 0
        self.samples = []
        self.lat = array("q")
        self.first = None
        self.last = None

    def error(self, message):
        self.errors += 1
        if len(self.samples) < ERROR_SAMPLES:
            self.samples.append(message)


def _flush(sel, s, stats):
    try:
        n = s.sock.send(s.wbuf)
    except BlockingIOError:
        n = 0
    except OSError as e:
        _kill(sel, s, stats, "send failed: %s" % e)
        return
    del s.wbuf[:n]
    want_write = bool(s.wbuf)
    if want_write != s.writing:
        s.writing = want_write
        sel.modify(s.sock, selectors.EVENT_READ | (selectors.EVENT_WRITE if want_write else 0), s)


def _kill(sel, s, stats, why):
    if s.dead:
        return
    s.dead = True
    stats.error("session %d: %s (%d requests lost)" % (s.sid, why, len(s.sent)))
    try:
        sel.unregister(s.sock)
    except (KeyError, ValueError):
        pass
    s.sock.close()
    s.sent.clear()


def run_phase(sel, sessions, request, depth, end_ns, stats=None, measure_from_ns=0,
              label="run"):
    """Keep `depth` requests in flight per session until end_ns (or each session's limit),
    then drain. Replies received in [measure_from_ns, end_ns] are counted in `stats`; errors
    always are (into `stats`, or a throwaway one). Returns the stats used."""
    perf_ns = time.perf_counter_ns
    unpack_reply = _REPLY.unpack_from
    pack_hdr = _REQ_HDR.pack
    if stats is None:
        stats = _Stats()
    lat_append = stats.lat.append
    live = [s for s in sessions if not s.dead]
    for s in live:
        s.k = 0
    sending = True

    def refill(s, now):
        # Top the session up to `depth` in flight, one send for the lot.
        sent = s.sent
        wbuf = s.wbuf
        limit = s.limit
        while len(sent) < depth and (limit is None or s.k < limit):
            op, body = request(s.sid, s.k)
            wbuf += pack_hdr(8 + len(body), s.xid, op)
            wbuf += body
            sent.append(now)
            s.xid += 1
            s.k += 1

    now = perf_ns()
    for s in live:
        refill(s, now)
        _flush(sel, s, stats)
    drain_deadline = None
    while True:
        now = perf_ns()
        if sending and now >= end_ns:
            sending = False
        if not sending and drain_deadline is None:
            drain_deadline = now + int(DRAIN_TIMEOUT * 1e9)
        outstanding = sum(len(s.sent) for s in live if not s.dead)
        if not outstanding:
            break
        if drain_deadline is not None and now > drain_deadline:
            for s in live:
                if s.sent:
                    _kill(sel, s, stats, "%s: no reply within %.0fs" % (label, DRAIN_TIMEOUT))
            break
        timeout = 0.2 if not sending else max(0.0, min(0.2, (end_ns - now) / 1e9))
        events = sel.select(timeout)
        now = perf_ns()
        counting = measure_from_ns <= now <= end_ns
        if now >= end_ns:
            sending = False
        for key, mask in events:
            s = key.data
            if s.dead:
                continue
            if mask & selectors.EVENT_WRITE:
                _flush(sel, s, stats)
            if not mask & selectors.EVENT_READ:
                continue
            try:
                data = s.sock.recv(1 << 18)
            except BlockingIOError:
                continue
            except OSError as e:
                _kill(sel, s, stats, "recv failed: %s" % e)
                continue
            if not data:
                _kill(sel, s, stats, "connection closed by the server")
                continue
            buf = s.rbuf
            buf += data
            end = len(buf)
            off = 0
            sent = s.sent
            got = 0
            while end - off >= 20:
                n, xid, _zxid, err = unpack_reply(buf, off)
                if end - off - 4 < n:
                    break
                off += 4 + n
                if xid < 0:
                    continue          # a notification or ping reply: not ours to count
                if xid != s.expect or not sent:
                    _kill(sel, s, stats, "reply xid %d out of order (expected %d)"
                          % (xid, s.expect))
                    break
                s.expect += 1
                t = sent.popleft()
                got += 1
                if err:
                    stats.error("%s: session %d xid %d: %s" % (label, s.sid, xid,
                                                                error_name(err)))
                if counting:
                    lat_append(now - t)
            if s.dead:
                continue
            if off:
                del buf[:off]
            if got and counting:
                stats.ops += got
                if stats.first is None:
                    stats.first = now
                stats.last = now
            if sending:
                refill(s, now)
            if s.wbuf:
                _flush(sel, s, stats)
    return stats


def _close_sessions(sel, sessions):
    for s in sessions:
        if s.dead:
            continue
        try:
            sel.unregister(s.sock)
        except (KeyError, ValueError):
            pass
        try:
            s.sock.setblocking(True)
            s.sock.settimeout(2.0)
            s.sock.sendall(build_request(s.xid, _c.OP_CLOSE_SESSION))
            s.sock.recv(64)
        except OSError:
            pass
        s.sock.close()


def _worker(conn, cfg, sids):
    """One load process: connect its sessions, run the phases on "go", send back results."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # the parent handles ^C and tells us
    wl = Workload(cfg["workload"], cfg["root"], cfg["znodes"], cfg["value_size"])
    addrs = cfg["addrs"]
    sel = selectors.DefaultSelector()
    sessions = []
    try:
        for sid in sids:
            sock, _ = connect_session(addrs[sid % len(addrs)], tls=cfg["tls"])
            first_xid = 0
            if len(addrs) > 1:
                # An ensemble: this member may not have applied the setup yet (it was done
                # through addrs[0]); a sync brings it up to the leader before the run.
                sync_session(sock, wl.root)
                first_xid = 1
            sock.setblocking(False)
            s = _Session(sock, sid)
            s.xid = s.expect = first_xid
            sel.register(sock, selectors.EVENT_READ, s)
            sessions.append(s)
    except (BenchError, OSError) as e:
        conn.send(("error", "process %d: %s" % (os.getpid(), e)))
        return
    conn.send(("ready",))
    msg = conn.recv()
    if msg[0] != "go":
        _close_sessions(sel, sessions)
        return
    start_ns = msg[1]
    while time.perf_counter_ns() < start_ns:
        time.sleep(min(0.05, max(0.0, (start_ns - time.perf_counter_ns()) / 1e9)))
    depth = cfg["depth"]
    warm_ns = int(cfg["warmup"] * 1e9)
    dur_ns = int(cfg["duration"] * 1e9)
    misc = _Stats()   # errors of the unmeasured phases
    name = wl.name
    if name == "delete":
        # Unmeasured pre-phase: each session creates its own nodes, then deletes them.
        run_phase(sel, sessions, wl.create_request, depth, start_ns + dur_ns, stats=misc,
                  label="delete: create phase")
        for s in sessions:
            s.limit = s.k
        t0 = time.perf_counter_ns()
        stats = run_phase(sel, sessions, wl.delete_request, depth, t0 + warm_ns + dur_ns,
                          measure_from_ns=t0 + warm_ns, label="delete")
        measure_from, measure_end = t0 + warm_ns, t0 + warm_ns + dur_ns
        leftover = [(s, s.k) for s in sessions]        # nodes k.. limit-1 still exist
    else:
        stats = run_phase(sel, sessions, wl.request, depth, start_ns + warm_ns + dur_ns,
                          measure_from_ns=start_ns + warm_ns, label=name)
        measure_from, measure_end = start_ns + warm_ns, start_ns + warm_ns + dur_ns
        leftover = [(s, 0) for s in sessions] if name == "create" else []
        for s in sessions:
            s.limit = s.k if name == "create" else None
    # A session that ran out of work (delete) ends the window early: rate over real time.
    if name == "delete" and stats.last is not None and all(
            s.dead or s.k >= (s.limit or 0) for s in sessions):
        measure_end = min(measure_end, stats.last)
    window_s = max(0.0, (measure_end - measure_from) / 1e9)
    if leftover and not cfg["keep"]:
        # Cleanup of the nodes this process created: delete k .. limit-1 of each session.
        offset = {s.sid: first for s, first in leftover}
        for s, first in leftover:
            s.limit = s.limit - first
        run_phase(sel, sessions, lambda sid, k: wl.delete_request(sid, offset[sid] + k), 64,
                  time.perf_counter_ns() + int(600e9), stats=misc, label="cleanup")
    _close_sessions(sel, sessions)
    conn.send(("result", {
        "ops": stats.ops,
        "window_s": window_s,
        "window_ns": (measure_from, measure_end),   # time.perf_counter_ns: CLOCK_MONOTONIC
        "lat_ns": stats.lat.tobytes(),
        "errors": stats.errors + misc.errors,
        "error_samples": stats.samples + misc.samples,
    }))


def _split(n, parts):
    """n sessions over `parts` processes, as evenly as possible: lists of session ids."""
    parts = max(1, min(parts, n))
    out = [[] for _ in range(parts)]
    for sid in range(n):
        out[sid % parts].append(sid)
    return out


def run_bench(addrs, workload="getdata", processes=2, sessions=32, depth=16, duration=10.0,
              value_size=100, znodes=1000, warmup=1.0, root="/bench", keep=False, log=None,
              tls=None):
    """Setup, a measured run and cleanup against `addrs` [(host, port)]; returns the report.
    `tls` (a TlsFiles): every session over TLS."""
    log = log or (lambda msg: None)
    if workload == "latency":
        depth = 1
    if sessions < 1 or depth < 1 or processes < 1 or duration <= 0:
        raise ValueError("sessions, depth and processes must be >= 1 and duration > 0")
    wl = Workload(workload, root, znodes, value_size)
    cfg = dict(workload=workload, root=root, znodes=znodes, value_size=value_size,
               addrs=list(addrs), depth=depth, duration=duration, warmup=warmup, keep=keep,
               tls=None if tls is None else TlsFiles(*tls))
    t_wall = time.monotonic()
    # The setup session is closed during the run: idle, it could expire on a long one.
    client = SyncClient(addrs[0], tls=cfg["tls"])
    try:
        log("setup: %s under %s (%s znodes)" % (workload, root,
                                                 znodes if wl.needs_znodes() else 0))
        setup(client, wl)
    finally:
        client.close()
    ctx = multiprocessing.get_context("fork")
    procs, conns = [], []
    for sids in _split(sessions, processes):
        parent, child = ctx.Pipe()
        p = ctx.Process(target=_worker, args=(child, cfg, sids), daemon=True)
        p.start()
        child.close()
        procs.append(p)
        conns.append(parent)
    try:
        failures = []
        for c in conns:
            msg = c.recv()
            if msg[0] != "ready":
                failures.append(msg[1])
        if failures:
            raise BenchError("; ".join(failures))
        log("running: %d sessions in %d processes, depth %d, %.1fs (+%.1fs warmup)"
            % (sessions, len(procs), depth, duration, warmup))
        start = time.perf_counter_ns() + 50_000_000
        for c in conns:
            c.send(("go", start))
        parts = []
        for c in conns:
            try:
                msg = c.recv()
            except EOFError:
                raise BenchError("a load process died") from None
            parts.append(msg[1])
    finally:
        for c in conns:
            try:
                c.send(("stop",))
            except OSError:
                pass
        for p in procs:
            p.join(5)
            if p.is_alive():
                p.kill()
                p.join()
    for p in parts:
        p["lat_ns"] = array("q", p["lat_ns"]) if isinstance(p["lat_ns"], bytes) else \
            p["lat_ns"]
    if not keep:
        log("cleanup")
        client = SyncClient(addrs[0], tls=cfg["tls"])
        try:
            wipe(client, root)
        finally:
            client.close()
    report = summarize(parts, wall_s=time.monotonic() - t_wall)
    report.update(workload=workload, hosts=",".join("%s:%d" % a for a in addrs),
                  processes=len(procs), sessions=sessions, depth=depth, duration_s=duration,
                  warmup_s=warmup, value_size=value_size,
                  znodes=znodes if wl.needs_znodes() else 0, tls=tls is not None)
    return report


# --- the null server ----------------------------------------------------------------------

def _null_bodies():
    stat = _r.Stat()
    bodies = {
        _c.OP_GET_DATA: _enc(_r.GetDataResponse(b"", stat)),
        _c.OP_EXISTS: _enc(_r.ExistsResponse(stat)),
        _c.OP_SET_DATA: _enc(_r.SetDataResponse(stat)),
        _c.OP_CREATE: _enc(_r.CreateResponse("/")),
        _c.OP_CREATE2: _enc(_r.Create2Response("/", stat)),
        _c.OP_GET_CHILDREN: _enc(_r.GetChildrenResponse([])),
        _c.OP_GET_CHILDREN2: _enc(_r.GetChildren2Response([], stat)),
        _c.OP_SYNC: _enc(_r.SyncResponse("/")),
    }
    return bodies


class _NullConn:
    __slots__ = ("sock", "rbuf", "wbuf", "greeted", "closing", "writing")

    def __init__(self, sock):
        self.sock = sock
        self.rbuf = bytearray()
        self.wbuf = bytearray()
        self.greeted = False
        self.closing = False
        self.writing = False


class NullServer:
    """Answers every request at once: ConnectResponse, then ReplyHeader{xid, 1, OK} + a minimal
    body for the op (empty data, zero Stat, empty children). ``ruok`` gets ``imok``.

    One epoll loop per process; with processes > 1 the listening socket is shared by forked
    children (the kernel spreads accepts over them).
    """

    def __init__(self, host="127.0.0.1", port=0, fail_op=None, fail_err=_e.NONODE):
        self.lsock = socket.create_server((host, port), backlog=1024)
        self.lsock.setblocking(False)
        self.port = self.lsock.getsockname()[1]
        self.bodies = _null_bodies()
        self.session = 0
        # Answer requests of op `fail_op` with error `fail_err` (tests of the error path).
        self.fail_op = fail_op
        self.fail_err = fail_err

    def _greet(self, c, body):
        req, read_only = _codec.decode_connect_request(body)
        self.session += 1
        resp = _r.ConnectResponse(0, req.timeOut or SESSION_TIMEOUT_MS,
                                  (os.getpid() << 32) | self.session, b"\0" * 16)
        out = _codec.encode_connect_response(resp, False if read_only is not None else None)
        c.wbuf += _LEN.pack(len(out)) + out
        c.greeted = True

    def serve_forever(self, parent_pid=None):
        sel = selectors.DefaultSelector()
        sel.register(self.lsock, selectors.EVENT_READ, None)
        bodies = self.bodies
        pack_reply = _REPLY.pack
        unpack_hdr = struct.Struct(">iii").unpack_from
        empty = b""
        fail_op, fail_err = self.fail_op, self.fail_err
        while True:
            events = sel.select(1.0)
            if parent_pid is not None and os.getppid() != parent_pid:
                return      # our parent died: do not outlive it
            for key, mask in events:
                c = key.data
                if c is None:
                    try:
                        sock, _ = self.lsock.accept()
                    except (BlockingIOError, InterruptedError):
                        continue
                    sock.setblocking(False)
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    sel.register(sock, selectors.EVENT_READ, _NullConn(sock))
                    continue
                if mask & selectors.EVENT_READ:
                    try:
                        data = c.sock.recv(1 << 18)
                    except BlockingIOError:
                        data = None
                    except OSError:
                        data = b""
                    if data == b"":
                        sel.unregister(c.sock)
                        c.sock.close()
                        continue
                    if data:
                        buf = c.rbuf
                        buf += data
                        if not c.greeted and len(buf) >= 4 and bytes(buf[:4]) == b"ruok":
                            c.wbuf += b"imok"
                            c.closing = True
                            buf.clear()
                        end = len(buf)
                        off = 0
                        wbuf = c.wbuf
                        while end - off >= 4 and not c.closing:
                            (n,) = _LEN.unpack_from(buf, off)
                            if n < 0 or n > 0xFFFFF:
                                c.closing = True
                                break
                            if end - off - 4 < n:
                                break
                            if not c.greeted:
                                self._greet(c, bytes(buf[off + 4:off + 4 + n]))
                                off += 4 + n
                                continue
                            _n, xid, op = unpack_hdr(buf, off)
                            off += 4 + n
                            if op == fail_op:
                                wbuf += pack_reply(16, xid, 1, fail_err)
                                continue
                            body = bodies.get(op, empty)
                            wbuf += pack_reply(16 + len(body), xid, 1, 0)
                            wbuf += body
                            if op == _c.OP_CLOSE_SESSION:
                                c.closing = True
                        if off:
                            del buf[:off]
                if c.wbuf:
                    try:
                        n = c.sock.send(c.wbuf)
                    except BlockingIOError:
                        n = 0
                    except OSError:
                        sel.unregister(c.sock)
                        c.sock.close()
                        continue
                    del c.wbuf[:n]
                if c.closing and not c.wbuf:
                    sel.unregister(c.sock)
                    c.sock.close()
                    continue
                want = bool(c.wbuf)
                if want != c.writing:
                    c.writing = want
                    sel.modify(c.sock, selectors.EVENT_READ
                               | (selectors.EVENT_WRITE if want else 0), c)


def serve_null(host="127.0.0.1", port=2181, processes=1, ready=None, fail_op=None):
    """Run a NullServer (forever) in this process plus processes-1 forked children.

    `ready`, if given, is called with the bound port once the socket listens (port 0 = any).
    SIGTERM stops the children too.
    """
    server = NullServer(host, port, fail_op=fail_op)
    if ready is not None:
        ready(server.port)
    children = []
    me = os.getpid()
    for _ in range(max(1, processes) - 1):
        pid = os.fork()
        if pid == 0:
            try:
                server.serve_forever(parent_pid=me)
            finally:
                os._exit(0)
        children.append(pid)

    def stop(signum, frame):
        for pid in children:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        stop(None, None)


def _null_process(conn, processes, fail_op):
    def ready(port):
        conn.send(port)
    serve_null("127.0.0.1", 0, processes, ready, fail_op)


def start_null_server(processes=1, fail_op=None):
    """Start serve_null in a forked process; returns (process, port)."""
    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe()
    p = ctx.Process(target=_null_process, args=(child, processes, fail_op), daemon=False)
    p.start()
    if not parent.poll(10):
        p.kill()
        raise BenchError("null server did not start")
    return p, parent.recv()


# --- command line -------------------------------------------------------------------------

def format_report(r):
    fmt = lambda v: "-" if v is None else "%.3f" % v  # noqa: E731
    return ("%-11s %10.0f ops/s  p50 %s ms  p99 %s ms  p999 %s ms  max %s ms  "
            "(%d ops in %.2fs, %d sessions x depth %d, %d processes, errors %d)"
            % (r["workload"], r["ops_per_sec"], fmt(r["p50_ms"]), fmt(r["p99_ms"]),
               fmt(r["p999_ms"]), fmt(r["max_ms"]), r["ops"], r["window_s"], r["sessions"],
               r["depth"], r["processes"], r["errors"]))


def add_run_parsers(sub):
    """The `run` and `serve-null` subcommands, on zkpy-bench's parser (zkpy.bench.command)."""
    run = sub.add_parser("run", help="drive a server and report ops/s and latency")
    run.add_argument("--hosts", default="127.0.0.1:2181",
                     help="host:port[,host:port...]; sessions are spread over them")
    run.add_argument("--workload", choices=WORKLOADS, default="getdata")
    run.add_argument("--processes", type=int, default=2, help="load processes (default 2)")
    run.add_argument("--sessions", type=int, default=32, help="sessions in total (default 32)")
    run.add_argument("--depth", type=int, default=16,
                     help="requests in flight per session (default 16; latency: 1)")
    run.add_argument("--duration", type=float, default=10.0, help="measured seconds")
    run.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds first")
    run.add_argument("--value-size", type=int, default=100, help="bytes per znode value")
    run.add_argument("--znodes", type=int, default=1000, help="znodes read/written")
    run.add_argument("--root", default="/bench", help="parent znode of the run (wiped)")
    run.add_argument("--keep", action="store_true", help="skip cleanup")
    run.add_argument("--json", metavar="FILE", help="also write the report as JSON")
    run.add_argument("--label", help="name of the server under test, kept in the JSON")
    run.add_argument("--null-server", action="store_true",
                     help="ignore --hosts: run against a null server started for this run")
    run.add_argument("--null-processes", type=int, default=1,
                     help="processes of that null server (default 1)")
    run.add_argument("--tls-ca", metavar="PEM",
                     help="connect with TLS (a secureClientPort), trusting these CA "
                          "certificates; needs --tls-cert and --tls-key")
    run.add_argument("--tls-cert", metavar="PEM", help="the client's certificate (chain)")
    run.add_argument("--tls-key", metavar="PEM", help="the client's key (unencrypted)")
    run.add_argument("-q", "--quiet", action="store_true")
    null = sub.add_parser("serve-null", help="answer every request at once with OK")
    null.add_argument("--host", default="127.0.0.1")
    null.add_argument("--port", type=int, default=2181)
    null.add_argument("--processes", type=int, default=1)
    null.add_argument("--fail-op", type=int, metavar="OP",
                      help="answer requests of this op code with NONODE (tests the error path)")


def run_main(args, argv=None):
    """`zkpy-bench run` and `zkpy-bench serve-null` with their parsed arguments."""
    if args.cmd == "serve-null":
        print("null server on %s:%d (%d processes)" % (args.host, args.port, args.processes),
              file=sys.stderr, flush=True)
        serve_null(args.host, args.port, args.processes, fail_op=args.fail_op)
        return 0
    log = (lambda m: None) if args.quiet else (lambda m: print(m, file=sys.stderr, flush=True))
    null_proc = None
    try:
        tls = None
        if args.tls_ca or args.tls_cert or args.tls_key:
            if not (args.tls_ca and args.tls_cert and args.tls_key):
                raise ValueError("TLS needs --tls-ca, --tls-cert and --tls-key")
            tls = TlsFiles(args.tls_ca, args.tls_cert, args.tls_key)
        if args.null_server:
            if tls is not None:
                raise ValueError("the null server speaks no TLS")
            null_proc, port = start_null_server(args.null_processes)
            addrs = [("127.0.0.1", port)]
            label = args.label or "null-server"
        else:
            addrs = parse_hosts(args.hosts)
            label = args.label
        report = run_bench(addrs, args.workload, args.processes, args.sessions, args.depth,
                           args.duration, args.value_size, args.znodes, args.warmup, args.root,
                           args.keep, log, tls=tls)
    except (BenchError, OSError, ValueError) as e:
        print("ERROR: zkpy-bench %s failed: %s" % (args.workload, e), file=sys.stderr)
        return 2
    finally:
        if null_proc is not None:
            null_proc.terminate()
            null_proc.join(5)
    report["label"] = label
    report["command"] = "zkpy-bench " + " ".join(sys.argv[1:] if argv is None else argv)
    print(format_report(report), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1, sort_keys=True)
            f.write("\n")
    if report["errors"]:
        print("ERROR: %d request(s) failed during the %s run; first ones:\n  %s"
              % (report["errors"], args.workload, "\n  ".join(report["error_samples"])),
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":   # python -m zkpy.bench.loadgen: the whole zkpy-bench command
    from zkpy.bench.command import main
    sys.exit(main())
