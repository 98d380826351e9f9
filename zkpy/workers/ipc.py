"""Messages between the core process and its worker processes, and the socket that carries them.

The encoders and `decode` are pure (bytes in, messages out); `Channel` is the one I/O part: a
non-blocking UNIX stream socket on the event loop that reads whole frames and writes queued
ones (send: at the end of the loop pass; send_now: at once, with a timeout).

Each message is one frame on the worker's UNIX stream socket:
    frame   := len:u32 type:u8 body[len-1]            (big-endian)
Strings are len:u32 + utf-8; blobs len:u32 + bytes.

worker -> core
    HELLO     (1)  worker_id:u32 pid:u32
    CONNECT   (2)  conn_id:u32 read_only:i8 (-1 = the client did not send the flag) request:blob
                   (decoded as (conn_id, request, read_only))
    REQUEST   (3)  conn_id:u32 entry_id:u32 session_id:i64 xid:i32 op:i32 body:blob
                   (writes, closeSession and sync; the worker has decoded the body once already)
    CLOSED    (4)  conn_id:u32 session_id:i64
    TOUCH     (5)  count:u32 session_id:i64*          (sessions heard from since the last TOUCH)
    STATS     (6)  req_id:u32 json:blob
    AUTH      (7)  conn_id:u32 count:u32 (scheme:str id:str)*   (the connection's identities,
                   sent at connect and after each addauth; ACL checks of its writes use them)
    PAUSED    (8)                                    (the answer to PAUSE: every request the
                   worker read from its clients is in the socket ahead of it)
    FOUR_LETTER (9) req_id:u32 cmd:str peer:str      (a whitelisted four-letter word sent inside
                   TLS: the core has every worker's figures; answered by FOUR_LETTER_TEXT)
core -> worker
    CONNECTED (20) conn_id:u32 ok:u8 session_id:i64 timeout_ms:i32 passwd:blob read_only:i8
                   (ok=1: established; 0: answer the expired/invalid ConnectResponse and
                   close; 2: close without an answer, e.g. the client has seen a newer zxid)
    BATCH     (21) zxid:i64 n_events:u32 (zxid:i64 type:i32 path:str acl)* n_replies:u32
                   (conn_id:u32 entry_id:u32 close_after:u8 frame:blob)*
                   Written to every worker's socket before the core commits the batch to LMDB;
                   the worker fires the events at once and holds the replies.
    COMMITTED (25) zxid:i64                          (the batch is in LMDB: send its replies)
    acl       := count:i32 (perms:i32 scheme:str id:str)*   (count -1: anyone may read)
    CLOSE     (22) conn_id:u32                       (session moved or expired)
    STATS_REQ (23) req_id:u32
    PAUSE     (26)                               (a clean stop begins: read no more requests
                   from the clients, take no more handoffs, answer PAUSED; replies still go out)
    SHUTDOWN  (24)                               (close the connections, exit)
    FOUR_LETTER_TEXT (27) req_id:u32 text:blob   (the answer to FOUR_LETTER, utf-8; empty when
                   the word failed: the connection is closed without one, as on the plaintext port)
The handoff of a client socket travels on a second socket pair as SCM_RIGHTS with the message
    HANDOFF        conn_id:u32 peer:str first_bytes:blob tls:u8
                   (tls=1: the client starts a TLS handshake, nothing of it was read: the
                   worker wraps the socket in TLS; first_bytes is then empty)
"""

import select
from zkpy import compiled
import struct
import time

HELLO, CONNECT, REQUEST, CLOSED, TOUCH, STATS, AUTH, PAUSED = 1, 2, 3, 4, 5, 6, 7, 8
FOUR_LETTER = 9
CONNECTED, BATCH, CLOSE, STATS_REQ, SHUTDOWN, COMMITTED, PAUSE = 20, 21, 22, 23, 24, 25, 26
FOUR_LETTER_TEXT = 27

_U32 = struct.Struct(">I")
_HEAD = struct.Struct(">IB")
_REQ = struct.Struct(">IIqii")
_CONN = struct.Struct(">IBqi")
_EVT = struct.Struct(">qi")
_REPLY = struct.Struct(">IIB")
_CLOSED = struct.Struct(">Iq")
_Q = struct.Struct(">q")
_I32 = struct.Struct(">i")


def _frame(mtype, body):
    return _HEAD.pack(len(body) + 1, mtype) + body


def _blob(b):
    return _U32.pack(len(b)) + b


class Reader(object):
    __slots__ = ("b", "o")

    def __init__(self, b, o=0):
        self.b = b
        self.o = o

    def take(self, st):
        v = st.unpack_from(self.b, self.o)
        self.o += st.size
        return v

    def u32(self):
        return self.take(_U32)[0]

    def blob(self):
        n = self.u32()
        v = bytes(self.b[self.o:self.o + n])
        self.o += n
        return v

    def str(self):
        return self.blob().decode("utf-8")


# ---------------------------------------------------------------- worker -> core

def hello(worker_id, pid):
    return _frame(HELLO, _U32.pack(worker_id) + _U32.pack(pid))


def connect(conn_id, read_only, request):
    ro = -1 if read_only is None else int(bool(read_only))
    return _frame(CONNECT, _U32.pack(conn_id) + struct.pack(">b", ro) + _blob(request))


def request(conn_id, entry_id, session_id, xid, op, body):
    return _frame(REQUEST, _REQ.pack(conn_id, entry_id, session_id, xid, op) + _blob(body))


def closed(conn_id, session_id):
    return _frame(CLOSED, _CLOSED.pack(conn_id, session_id))


def touch(session_ids):
    return _frame(TOUCH, _U32.pack(len(session_ids)) + b"".join(_Q.pack(s) for s in session_ids))


def auth(conn_id, ids):
    parts = [_U32.pack(conn_id), _U32.pack(len(ids))]
    for scheme, ident in ids:
        parts.append(_blob(scheme.encode("utf-8")))
        parts.append(_blob(ident.encode("utf-8")))
    return _frame(AUTH, b"".join(parts))


def stats(req_id, payload):
    return _frame(STATS, _U32.pack(req_id) + _blob(payload))


def paused():
    return _frame(PAUSED, b"")


def four_letter(req_id, cmd, peer):
    return _frame(FOUR_LETTER, _U32.pack(req_id) + _blob(cmd.encode("utf-8"))
                  + _blob(peer.encode("utf-8")))


# ---------------------------------------------------------------- core -> worker

def connected(conn_id, ok, session_id, timeout_ms, passwd, read_only):
    ro = -1 if read_only is None else int(bool(read_only))
    return _frame(CONNECTED, _CONN.pack(conn_id, int(ok), session_id, timeout_ms)
                  + _blob(passwd) + struct.pack(">b", ro))


def batch(zxid, events, replies):
    """events: [(zxid, type, path, acl or None)]; replies: [(conn_id, entry_id, close_after,
    frame)]."""
    parts = [_Q.pack(zxid), _U32.pack(len(events))]
    for ezxid, etype, path, acl in events:
        parts.append(_EVT.pack(ezxid, etype))
        parts.append(_blob(path.encode("utf-8")))
        if acl is None:
            parts.append(_I32.pack(-1))
        else:
            parts.append(_I32.pack(len(acl)))
            for perms, scheme, ident in acl:
                parts.append(_I32.pack(perms))
                parts.append(_blob(scheme.encode("utf-8")))
                parts.append(_blob(ident.encode("utf-8")))
    parts.append(_U32.pack(len(replies)))
    for conn_id, entry_id, close_after, data in replies:
        parts.append(_REPLY.pack(conn_id, entry_id, 1 if close_after else 0))
        parts.append(_blob(data))
    return _frame(BATCH, b"".join(parts))


def close(conn_id):
    return _frame(CLOSE, _U32.pack(conn_id))


def committed(zxid):
    return _frame(COMMITTED, _Q.pack(zxid))


def stats_req(req_id):
    return _frame(STATS_REQ, _U32.pack(req_id))


def shutdown():
    return _frame(SHUTDOWN, b"")


def pause():
    return _frame(PAUSE, b"")


def four_letter_text(req_id, text):
    return _frame(FOUR_LETTER_TEXT, _U32.pack(req_id) + _blob(text.encode("utf-8")))


def handoff(conn_id, peer, first_bytes, tls=False):
    return (_U32.pack(conn_id) + _blob(peer.encode("utf-8")) + _blob(first_bytes)
            + (b"\x01" if tls else b"\x00"))


def decode_handoff(data):
    """-> (conn_id, peer, first_bytes, tls)"""
    r = Reader(data)
    return r.u32(), r.str(), r.blob(), data[r.o] == 1


# ---------------------------------------------------------------- decoding

def decode(frame):
    """One frame body (type byte + fields, no length prefix) -> (type, fields tuple)."""
    mtype = frame[0]
    r = Reader(frame, 1)
    if mtype == REQUEST:
        conn_id, entry_id, sid, xid, op = r.take(_REQ)
        return mtype, (conn_id, entry_id, sid, xid, op, r.blob())
    if mtype == BATCH:
        zxid = r.take(_Q)[0]
        events = []
        for _ in range(r.u32()):
            ezxid, etype = r.take(_EVT)
            path = r.str()
            n = r.take(_I32)[0]
            acl = None if n < 0 else tuple((r.take(_I32)[0], r.str(), r.str())
                                           for _ in range(n))
            events.append((ezxid, etype, path, acl))
        replies = []
        for _ in range(r.u32()):
            conn_id, entry_id, close_after = r.take(_REPLY)
            replies.append((conn_id, entry_id, bool(close_after), r.blob()))
        return mtype, (zxid, events, replies)
    if mtype == CONNECT:
        conn_id = r.u32()
        ro = struct.unpack_from(">b", frame, r.o)[0]
        r.o += 1
        return mtype, (conn_id, r.blob(), None if ro < 0 else bool(ro))
    if mtype == CONNECTED:
        conn_id, ok, sid, timeout = r.take(_CONN)
        passwd = r.blob()
        ro = struct.unpack_from(">b", frame, r.o)[0]
        return mtype, (conn_id, ok, sid, timeout, passwd, None if ro < 0 else bool(ro))
    if mtype == CLOSED:
        return mtype, r.take(_CLOSED)
    if mtype == TOUCH:
        return mtype, ([r.take(_Q)[0] for _ in range(r.u32())],)
    if mtype in (CLOSE, STATS_REQ):
        return mtype, (r.u32(),)
    if mtype == STATS:
        req_id = r.u32()
        return mtype, (req_id, r.blob())
    if mtype == FOUR_LETTER:
        req_id = r.u32()
        cmd = r.str()
        return mtype, (req_id, cmd, r.str())
    if mtype == FOUR_LETTER_TEXT:
        req_id = r.u32()
        return mtype, (req_id, r.str())
    if mtype == HELLO:
        return mtype, (r.u32(), r.u32())
    if mtype == AUTH:
        conn_id = r.u32()
        return mtype, (conn_id, [(r.str(), r.str()) for _ in range(r.u32())])
    if mtype in (SHUTDOWN, PAUSE, PAUSED):
        return mtype, ()
    if mtype == COMMITTED:
        return mtype, (r.take(_Q)[0],)
    raise ValueError("unknown IPC message type %d" % mtype)


_RECV_SIZE = 262144


def decode_batch_replies(frame):
    """A BATCH frame body -> (zxid, replies), as decode() gives them, without the events (for a
    frontend that has no watch to fire); ValueError for another type of frame."""
    mtype, args = decode_pure(frame)
    if mtype != BATCH:
        raise ValueError("not a BATCH frame: type %d" % mtype)
    return args[0], args[2]


class Channel(object):
    """A non-blocking UNIX stream socket carrying these frames, driven by an event loop.

    `pump()` reads and dispatches whatever has arrived, and may be called at any time (the
    worker calls it before answering reads). `send()` queues bytes, written once per loop pass;
    `send_now()` writes before returning, waiting on a full socket (the core uses it so that a
    batch is in every worker's socket before LMDB commits it).
    """

    def __init__(self, loop, sock, on_frame, on_eof, stop_at_short_read=False):
        self.loop = loop
        self.sock = sock
        # True: a recv() that fills less than asked ends pump() (a UNIX stream socket hands over
        # all it holds up to the size asked, so it was empty): no second recv() just to hear
        # EAGAIN; the reader callback runs again for whatever arrives next. False: recv() until
        # EAGAIN, taking in what arrived while the frames were handled (the core's choice).
        self.stop_at_short_read = stop_at_short_read
        sock.setblocking(False)
        self.on_frame = on_frame
        self.on_eof = on_eof
        self.decoder = Decoder()
        self.closed = False
        self._out = bytearray()
        self._flush_scheduled = False
        self._writer = False
        loop.add_reader(sock.fileno(), self.pump)

    def pump(self):
        if self.closed:
            return
        while True:
            try:
                data = self.sock.recv(_RECV_SIZE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data = b""
            if not data:
                self.close()
                self.on_eof()
                return
            for frame in self.decoder.feed(data):
                self.on_frame(frame)
                if self.closed:
                    return
            if self.stop_at_short_read and len(data) < _RECV_SIZE:
                return

    def send(self, data):
        if self.closed:
            return
        self._out += data
        if not self._flush_scheduled and not self._writer:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)

    def send_now(self, data, timeout_s=5.0):
        """Write `data` (after anything queued) before returning. A peer that is gone (exited)
        or takes nothing for `timeout_s` (stopped, hung) is cut off: the channel closes and
        on_eof() runs; the data is dropped."""
        if self.closed:
            return
        self._out += data
        deadline = time.monotonic() + timeout_s
        while True:
            self._flush()
            # _flush closes the channel (and runs on_eof) when the peer is gone -- a worker
            # that exited while this batch was on its way: nothing more to write, nor to wait on.
            if self.closed or not self._out:
                return
            if time.monotonic() > deadline:
                self.close()
                self.on_eof()
                return
            select.select([], [self.sock], [], 0.1)

    def _flush(self):
        self._flush_scheduled = False
        if self.closed or not self._out:
            return
        try:
            n = self.sock.send(self._out)
            del self._out[:n]
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            self.close()
            self.on_eof()
            return
        if self._out and not self._writer:
            self._writer = True
            self.loop.add_writer(self.sock.fileno(), self._on_writable)

    def _on_writable(self):
        self.loop.remove_writer(self.sock.fileno())
        self._writer = False
        self._flush()

    def close(self):
        if self.closed:
            return
        self.closed = True
        try:
            self.loop.remove_reader(self.sock.fileno())
            if self._writer:
                self.loop.remove_writer(self.sock.fileno())
        except (ValueError, OSError):
            pass
        self.sock.close()


class Decoder(object):
    """Splits a byte stream into frame bodies (the IPC peer is trusted: no size limit)."""

    def __init__(self):
        self.buf = bytearray()

    def feed(self, data):
        buf = self.buf
        if not buf and _split_frames is not None and type(data) is bytes:
            got = _split_frames(data, -1, _MAX_FRAME)   # the frames cut in C (see framing.py)
            if got is not None:
                out, off, need = got
                if need >= 0:
                    off -= 4   # a length read, its body not here yet: keep the length too
                if off < len(data):
                    buf += memoryview(data)[off:]
                return out
        buf += data
        out = []
        off = 0
        n = len(buf)
        while n - off >= 4:
            length = _U32.unpack_from(buf, off)[0]
            if n - off - 4 < length:
                break
            out.append(bytes(buf[off + 4:off + 4 + length]))
            off += 4 + length
        if off:
            del buf[:off]
        return out


_MAX_FRAME = 0x7FFFFFFF   # split_frames reads lengths as i32; a longer one: the loop above

# The compiled twins (zkpy.proto._fastcodec; not loaded under ZKPY_PURE=1): decoding REQUEST,
# BATCH and COMMITTED frames, encoding REQUEST and BATCH frames - the per-write IPC work of the
# core and of the workers; anything else goes to the functions above.
decode_pure = decode
batch_pure = batch
request_pure = request
decode_batch_replies_pure = decode_batch_replies
_fastcodec = compiled.load("_fastcodec")
_split_frames = getattr(_fastcodec, "split_frames", None)
if _fastcodec is not None:
    _fastcodec.register("ipc_decode", decode_pure)
    _fastcodec.register("ipc_batch", batch_pure)
    _fastcodec.register("ipc_request", request_pure)
    _fastcodec.register("ipc_batch_replies", decode_batch_replies_pure)
    decode = _fastcodec.ipc_decode
    batch = _fastcodec.ipc_batch
    request = _fastcodec.ipc_request
    decode_batch_replies = _fastcodec.ipc_batch_replies
