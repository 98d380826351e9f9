"""One client connection: framing, the handshake, reads, watches and reply order.

Owns its socket's state: the frame decoder, the session it carries, and the queue that keeps
replies in request order. Reads are answered by its Frontend from LMDB without a round trip to
the core; writes, closeSession and sync go to the core through the frontend's link. A read that
arrives while an earlier request of the same session is outstanding waits in the queue and runs
when that request has been answered, so it sees that write (per-session FIFO).
Protocol violations close only this connection, with one log line naming the reason.
"""

import asyncio
import collections
import logging
import os
import struct
import time

from zkpy import errors
from zkpy.errors import ClientProtocolError
from zkpy.proto import codec, consts
from zkpy.proto import records as r
from zkpy.proto.framing import FrameDecoder, is_four_letter_word
from zkpy.security.sasl import NONCE_RANDOM_BYTES, SaslError, SaslLogin
from zkpy.tree import acl as acls
from zkpy.tree import watches as wt
from zkpy.server.frontend import Latency
from zkpy import compiled

log = logging.getLogger("zkpy.server.connection")

_D = codec.DECODERS


def _write_request_ok_pure(op, data, off):
    """Whether a write's body is known good without decoding it (the compiled twin checks the
    common ones); False: decode it, and let garbage raise."""
    return False


_write_request_ok = getattr(compiled.load("_fastcodec"), "write_request_ok",
                            _write_request_ok_pure)
_encode_reply = codec.encode_reply_frame
_decode_header = codec.decode_request_header
# Requests a client may send behind its ConnectRequest, before the answer (held until then).
_MAX_EARLY_REQUESTS = 1000
_unpack_header = struct.Struct(">ii").unpack_from
_monotonic = time.monotonic
_NO_SASL_TOKEN = r.SetSASLResponse(None)

_WRITE_OPS = frozenset([consts.OP_CREATE, consts.OP_CREATE2, consts.OP_DELETE,
                        consts.OP_SET_DATA, consts.OP_SET_ACL, consts.OP_MULTI,
                        consts.OP_CREATE_CONTAINER, consts.OP_CREATE_TTL,
                        consts.OP_RECONFIG])
_FORWARDED_OPS = _WRITE_OPS | {consts.OP_SYNC}   # decoded here, then sent to the core
_READ_REQUESTS = {
    consts.OP_GET_DATA: r.GetDataRequest,
    consts.OP_EXISTS: r.ExistsRequest,
    consts.OP_GET_CHILDREN: r.GetChildrenRequest,
    consts.OP_GET_CHILDREN2: r.GetChildren2Request,
    consts.OP_GET_ACL: r.GetACLRequest,
    consts.OP_GET_ALL_CHILDREN_NUMBER: r.GetAllChildrenNumberRequest,
    consts.OP_GET_EPHEMERALS: r.GetEphemeralsRequest,
}
_WRITE_REQUESTS = {
    consts.OP_CREATE: r.CreateRequest,
    consts.OP_CREATE2: r.CreateRequest,
    consts.OP_DELETE: r.DeleteRequest,
    consts.OP_SET_DATA: r.SetDataRequest,
    consts.OP_SET_ACL: r.SetACLRequest,
    consts.OP_CREATE_CONTAINER: r.CreateRequest,
    consts.OP_CREATE_TTL: r.CreateTTLRequest,
    consts.OP_SYNC: r.SyncRequest,
    consts.OP_RECONFIG: r.ReconfigRequest,
}

_WATCH_REQUESTS = {
    consts.OP_ADD_WATCH: r.AddWatchRequest,
    consts.OP_CHECK_WATCHES: r.CheckWatchesRequest,
    consts.OP_REMOVE_WATCHES: r.RemoveWatchesRequest,
}


# Request names as cons prints them (Request.op2String, first four letters, upper case).
_OP_ABBREV = {
    consts.OP_CREATE: "CREA", consts.OP_CREATE2: "CREA", consts.OP_DELETE: "DELE",
    consts.OP_EXISTS: "EXIS", consts.OP_GET_DATA: "GETD", consts.OP_SET_DATA: "SETD",
    consts.OP_GET_ACL: "GETA", consts.OP_SET_ACL: "SETA", consts.OP_GET_CHILDREN: "GETC",
    consts.OP_GET_CHILDREN2: "GETC", consts.OP_SYNC: "SYNC", consts.OP_PING: "PING",
    consts.OP_CLOSE_SESSION: "CLOS", consts.OP_SET_WATCHES: "SETW", consts.OP_SET_WATCHES2: "STW2",
    consts.OP_ADD_WATCH: "ADDW", consts.OP_CHECK_WATCHES: "CHKW", consts.OP_REMOVE_WATCHES: "REMW",
    consts.OP_MULTI: "MULT", consts.OP_AUTH: "AUTH", consts.OP_GET_EPHEMERALS: "GETE",
    consts.OP_GET_ALL_CHILDREN_NUMBER: "GETA", consts.OP_WHO_AM_I: "WHOA",
}


class _Entry(object):
    """A reply slot: filled by a write's completion or computed by a deferred read."""
    __slots__ = ("op", "data", "thunk", "close_after", "t0", "entry_id", "unsent", "required")

    def __init__(self, op, thunk=None):
        self.op = op
        self.required = None  # for a read: the zxid its snapshot must hold (set at its turn)
        self.entry_id = 0
        self.unsent = None  # (xid, op, body) of a write held behind an unanswered read
        self.data = None
        self.thunk = thunk
        self.close_after = False
        self.t0 = _monotonic()


class Connection(asyncio.Protocol):
    def __init__(self, fe, per_ip=None, first=b"", initial=None, conn_id=0, peer=None,
                 tls=None):
        self.fe = fe
        self.tls = tls                # zkpy.server.tls.ServerTls of a TLS connection
        self.initial = initial        # bytes the core read before handing the socket over
        self.per_ip = per_ip          # ip -> open connection count (in-process mode only)
        self.transport = None
        self.peer = peer or "?"
        self.ip = peer.rsplit(":", 1)[0] if peer else None
        self.conn_id = conn_id
        self.session_id = 0
        self.timeout_ms = 0
        self.closed = False
        self.decoder = FrameDecoder(fe.config.jute_maxbuffer)
        self.first = first            # bytes before the first frame (4lw detection); None: done
        self.handshake_done = False
        self.pending = collections.deque()
        self.entries = {}             # entry_id -> _Entry awaiting the core's answer
        self.reads_queued = 0         # reads in `pending` not answered yet
        self.held = 0                 # writes in `pending` held behind such a read
        self._early = None            # requests that came before the session was established
        self._next_entry = 1
        self.ids = []                 # identities for ACL checks: ("ip", addr) + addauth
        self.received = 0
        self.sent = 0
        self.established_ms = 0
        self._wbuf = []
        self._loop = None
        self.unpumped = False         # fe.pump() not called yet for the bytes being handled
        self.sasl_logged = False      # the one log line for a SASL attempt is written
        self.sasl_login = None        # this connection's DIGEST-MD5 login (a JAAS Server section)
        # schemes one of which must be authenticated before any request but auth / sasl
        # (sessionRequireClientSASLAuth, enforce.auth.*); () when nothing is enforced
        self.required_schemes = fe.config.required_auth_schemes()
        self.recv_disabled = False    # refused: nothing more is read (ZooKeeper's disableRecv)
        self.reset_stats()

    def reset_stats(self):
        """Per-connection figures for cons (crst resets them)."""
        self.last_op = "NA"
        self.last_cxid = -1
        self.last_zxid = -1
        self.last_response_ms = 0
        self.last_latency = 0
        self.latency = Latency()

    # ------------------------------------------------------------------ asyncio protocol

    def connection_made(self, transport):
        self.transport = transport
        self._loop = asyncio.get_running_loop()
        peer = transport.get_extra_info("peername")
        if self.peer == "?":
            self.ip = peer[0] if peer else "?"
            self.peer = "%s:%s" % (peer[0], peer[1]) if peer else "?"
        self.fe.add(self)
        # Every connection is identified by its address (IPAuthenticationProvider); a TLS
        # client by its certificate too (X509AuthenticationProvider).
        self.ids = [("ip", self.ip)]
        if self.tls is not None:
            ids = self.tls.peer_identities(transport.get_extra_info("ssl_object"), self.peer)
            if ids is None:
                self.close()   # refused (peer_identities logged why)
                return
            self.ids.extend(ids)
        self.fe.link.auth(self.conn_id, self.ids)
        if self.per_ip is not None:
            count = self.per_ip.get(self.ip, 0) + 1
            self.per_ip[self.ip] = count
            limit = self.fe.config.max_client_cnxns
            if limit and count > limit:
                log.warning("too many connections from %s - max is %d; closing %s",
                            self.ip, limit, self.peer)
                self.close()
        if self.fe.paused:
            self.close()   # handed over or accepted as the server began to stop
            return
        if self.initial:
            data, self.initial = self.initial, None
            self.data_received(data)

    def pause_reading(self):
        """The server is stopping: read nothing more from this client (answers still go out)."""
        if self.transport is not None and not self.closed:
            self.transport.pause_reading()

    def connection_lost(self, exc):
        self.closed = True
        if self.per_ip is not None:
            n = self.per_ip.get(self.ip, 1) - 1
            if n <= 0:
                self.per_ip.pop(self.ip, None)
            else:
                self.per_ip[self.ip] = n
        self.fe.remove(self)

    def data_received(self, data):
        if self.closed:
            return
        # Take in what the core has sent before answering reads: anything answered to any client
        # before these bytes arrived is then delivered here (and must be visible to them). Writes
        # do not need it (the core orders them): bytes with only writes in them skip the recv()
        # on the control socket, and the first request that is not one does it (_request).
        self.unpumped = True
        if not self.handshake_done:
            self._pump()
        if not self.handshake_done and self.first is not None:
            # A four-letter word is the first 4 bytes of a new connection (NIOServerCnxn).
            self.first += data
            if len(self.first) < 4:
                return
            cmd = is_four_letter_word(self.first[:4])
            data, self.first = self.first, None
            if cmd is not None:
                self._four_letter(cmd)
                return
            if data[0] == 0x16 and self.tls is None:
                # A TLS ClientHello; a client's first byte is the high byte of a frame length.
                log.warning("connection %s closed: a TLS handshake on the plaintext client port",
                            self.peer)
                self.close()
                return
        self._closing_on_error(self._frames, data)

    def _frames(self, data):
        frames = self.decoder.feed(data)
        stats = self.fe.stats
        for frame in frames:
            if self.closed or self.recv_disabled:
                return
            self.received += 1
            stats.packets_received += 1
            if not self.handshake_done:
                self._handshake(frame)
            else:
                self._request(frame)

    def _closing_on_error(self, fn, arg):
        """fn(arg); a client's bad input or an internal error closes this connection (one log
        line), nothing else."""
        try:
            fn(arg)
        except ClientProtocolError as e:
            log.warning("closing connection %s (session 0x%x): %s", self.peer, self.session_id, e)
            self.close()
        except Exception:
            log.exception("closing connection %s (session 0x%x) after an internal error",
                          self.peer, self.session_id)
            self.close()

    def _replay(self, frames):
        """The requests held until the session was established, in order."""
        self.unpumped = True
        self._closing_on_error(self._replay_frames, frames)

    def _replay_frames(self, frames):
        for frame in frames:
            if self.closed:
                return
            self._request(frame)

    def _pump(self):
        self.unpumped = False
        self.fe.pump()

    # ------------------------------------------------------------------ output

    def write(self, data):
        # Frames are gathered and written once per event-loop pass: a batch of replies to one
        # client costs one send() instead of one each (Frontend.flush_soon: one callback per
        # pass for every connection with output).
        if not self.closed:
            fe = self.fe
            if not self._wbuf:
                to_flush = fe.to_flush
                if not to_flush:
                    self._loop.call_soon(fe.flush_all)
                to_flush.append(self)
            self._wbuf.append(data)
            self.sent += 1
            fe.stats.packets_sent += 1

    def _flush(self):
        if self._wbuf:
            data = b"".join(self._wbuf) if len(self._wbuf) > 1 else self._wbuf[0]
            self._wbuf = []
            if not self.transport.is_closing():
                self.transport.write(data)

    def close(self):
        if not self.closed:
            self.closed = True
            if self.transport is not None:
                self._flush()  # what was answered before the close still goes out
                self.transport.close()

    def send_event(self, zxid, event_type, path):
        body = codec.encode_notification(zxid, event_type, consts.STATE_SYNC_CONNECTED, path)
        self.write(len(body).to_bytes(4, "big") + body)

    def _reply_now_or_queue(self, op, thunk):
        fe = self.fe
        if not self.pending and fe.can_read(fe.delivered_zxid):
            self.write(thunk())
            return
        self.pending.append(_Entry(op, thunk))
        self.reads_queued += 1
        if len(self.pending) == 1:
            self.drain()

    def _forward(self, xid, op, body):
        """Send a write (or closeSession / sync) to the core, unless a read of this session is
        still unanswered ahead of it: ZooKeeper answers a session's requests in order, so that
        read must see the state before this write. The write then leaves from drain()."""
        entry_id = self._expect(op)
        if self.reads_queued:
            self.entries[entry_id].unsent = (xid, op, body)
            self.held += 1
            return
        self.fe.link.request(self.conn_id, entry_id, self.session_id, xid, op, body)

    def _send_released(self):
        """Send the held writes that no longer have an unanswered read ahead of them."""
        for e in self.pending:
            if e.thunk is not None and e.data is None:
                return
            if e.unsent is not None:
                xid, op, body = e.unsent
                e.unsent = None
                self.held -= 1
                self.fe.link.request(self.conn_id, e.entry_id, self.session_id, xid, op, body)

    def _expect(self, op):
        """Queue a slot for the core's answer to this request; returns its entry id."""
        entry = _Entry(op)
        entry.entry_id = self._next_entry
        self._next_entry = (self._next_entry % 0xFFFFFFFF) + 1
        self.entries[entry.entry_id] = entry
        self.pending.append(entry)
        return entry.entry_id

    def complete(self, entry_id, data, close_after=False):
        if self.fill(entry_id, data, close_after):
            self.drain()

    def fill(self, entry_id, data, close_after=False):
        """Put the core's answer in its slot (drain() sends it); False if there is no such slot."""
        entry = self.entries.pop(entry_id, None)
        if entry is None:
            return False
        entry.data = data
        entry.close_after = close_after
        return True

    def drain(self):
        pending = self.pending
        latency = self.fe.stats.latency
        now = None  # the clocks, read once for the replies that leave together
        while pending:
            e = pending[0]
            if e.data is None:
                if e.thunk is None:
                    return  # a write still waits for its fsync
                fe = self.fe
                if e.required is None:
                    e.required = fe.delivered_zxid
                if not fe.can_read(e.required):
                    fe.waiting.add(self)
                    return  # committed() or batch() calls drain() again
                e.data = e.thunk()
                now = None
                self.reads_queued -= 1
                if self.held:
                    self._send_released()
            pending.popleft()
            if now is None:
                now = time.monotonic()
                self.last_response_ms = int(time.time() * 1000)
            ms = int((now - e.t0) * 1000)
            latency.record(ms)
            self.latency.record(ms)
            self.last_latency = ms
            self.write(e.data)
            if e.close_after:
                self.close()
                return

    # ------------------------------------------------------------------ handshake

    def _handshake(self, frame):
        # Decoded here to refuse malformed input at the edge; the core decides on the session.
        req, read_only = codec.decode_connect_request(frame)
        self.handshake_done = True
        self.fe.link.connect(self.conn_id, bytes(frame), read_only)

    def connect_answer(self, ok, session_id, timeout_ms, passwd, read_only):
        if ok == 1:
            self.session_established(session_id, timeout_ms, passwd, read_only)
        elif ok == 0:
            self.send_connect_response(0, 0, b"\0" * 16, read_only, close_after=True)
        else:
            self.close()

    def send_connect_response(self, timeout_ms, session_id, passwd, read_only, close_after=False):
        resp = r.ConnectResponse(0, timeout_ms, session_id, passwd)
        # read_only: None when the client sent no flag (no byte back), else whether this server
        # is read-only (the core decides: a session on a read-only server).
        body = codec.encode_connect_response(resp, read_only)
        self.write(len(body).to_bytes(4, "big") + body)
        if close_after:
            self.close()

    def session_established(self, session_id, timeout_ms, passwd, read_only):
        self.session_id = session_id
        self.timeout_ms = timeout_ms
        self.established_ms = int(time.time() * 1000)
        log.info("established session 0x%x with negotiated timeout %d for client %s",
                 session_id, timeout_ms, self.peer)
        self.send_connect_response(timeout_ms, session_id, passwd, read_only)
        early, self._early = self._early, None
        if early:
            self._replay(early)

    # ------------------------------------------------------------------ requests

    def _request(self, frame):
        fe = self.fe
        if self.session_id == 0:
            # The handshake is not answered yet. The Java client's Netty socket (the one TLS
            # needs) writes its queued requests right behind the ConnectRequest, and ZooKeeper
            # serves them once the session exists: hold them until then.
            early = self._early
            if early is None:
                early = self._early = []
            early.append(bytes(frame))
            if len(early) > _MAX_EARLY_REQUESTS:
                raise ClientProtocolError("more than %d requests before the session was "
                                          "established" % _MAX_EARLY_REQUESTS)
            return
        try:
            xid, op = _unpack_header(frame, 0)
        except struct.error:
            _decode_header(frame, 0)  # raises ClientProtocolError, naming the short header
            raise
        off = 8
        if op == consts.OP_SASL:
            # Answered outside the request pipeline, as ZooKeeper does: it neither touches the
            # session nor shows in cons (a client stuck in SASL lets its session expire).
            self._sasl(xid, frame, off)
            return
        if self.required_schemes and op != consts.OP_AUTH and not self._authenticated():
            self._refuse_unauthenticated(xid, op)
            return
        fe.link.touch(self.session_id)
        self.last_op = _OP_ABBREV.get(op, "NA")
        if xid >= 0:
            self.last_cxid = xid
        if op in _FORWARDED_OPS:
            self.last_zxid = fe.delivered_zxid
            # Decoded once here so that garbage closes this connection at the edge; the core
            # decodes the same bytes again.
            if op == consts.OP_MULTI:
                codec.decode_multi(frame, off)
            elif not _write_request_ok(op, frame, off):
                _D[_WRITE_REQUESTS[op]](frame, off)
            if self.reads_queued:
                self._forward(xid, op, frame[off:])
                return
            # _forward with no read ahead of it: the request leaves now
            entry = _Entry(op)
            entry_id = entry.entry_id = self._next_entry
            self._next_entry = (entry_id % 0xFFFFFFFF) + 1
            self.entries[entry_id] = entry
            self.pending.append(entry)
            fe.link.request(self.conn_id, entry_id, self.session_id, xid, op, frame[off:])
            return
        if self.unpumped:
            self._pump()  # see data_received
            if self.closed:
                return
        self.last_zxid = fe.last_zxid
        reader = _READ_REQUESTS.get(op)
        if reader is not None:
            req, _ = _D[reader](frame, off)
            self._reply_now_or_queue(op, lambda: self._bounded(xid, self._read(xid, op, req)))
            return
        if op == consts.OP_WHO_AM_I:
            self._reply_now_or_queue(op, lambda: self._who_am_i(xid))
            return
        if op == consts.OP_MULTI_READ:
            req = codec.decode_multi(frame, off)
            self._reply_now_or_queue(op, lambda: self._bounded(xid, self._multi_read(xid, req)))
            return
        if op == consts.OP_PING:
            self._reply_now_or_queue(op, lambda: _encode_reply(xid, fe.last_zxid, 0))
            return
        if op == consts.OP_CLOSE_SESSION:
            self._forward(xid, op, b"")
            return
        if op == consts.OP_SET_WATCHES or op == consts.OP_SET_WATCHES2:
            cls = r.SetWatches if op == consts.OP_SET_WATCHES else r.SetWatches2
            req, _ = _D[cls](frame, off)
            self._reply_now_or_queue(op, lambda: self._set_watches(xid, req))
            return
        if op in _WATCH_REQUESTS:
            req, _ = _D[_WATCH_REQUESTS[op]](frame, off)
            self._reply_now_or_queue(op, lambda: self._watch_op(xid, op, req))
            return
        if op == consts.OP_AUTH:
            req, _ = _D[r.AuthPacket](frame, off)
            self._reply_now_or_queue(op, lambda: self._add_auth(xid, req))
            return
        log.info("session 0x%x: op %d is not implemented; answering UNIMPLEMENTED",
                 self.session_id, op)
        self._reply_now_or_queue(
            op, lambda: _encode_reply(xid, fe.last_zxid, errors.UNIMPLEMENTED))

    def _bounded(self, xid, frame):
        """A reply larger than jute.maxbuffer would make a client with the same (default) limit
        drop the connection and retry forever (ZooKeeper's "Packet len is out of range" loop):
        answer MARSHALLINGERROR instead. Raise jute.maxbuffer (zoo.cfg here) to allow it."""
        limit = self.fe.config.jute_maxbuffer
        if len(frame) - 4 <= limit:
            return frame
        log.warning("session 0x%x: reply of %d bytes to xid %d exceeds jute.maxbuffer=%d; "
                    "answering MARSHALLINGERROR", self.session_id, len(frame) - 4, xid, limit)
        return _encode_reply(xid, self.fe.last_zxid, errors.MARSHALLINGERROR)

    def _read(self, xid, op, req):
        """Answer a read from the committed tree (FinalRequestProcessor's read cases)."""
        core = self.fe
        zxid = core.last_zxid
        view = core.view
        if op == consts.OP_GET_EPHEMERALS:
            prefix = req.prefixPath
            if prefix is None:
                return _encode_reply(xid, zxid, errors.MARSHALLINGERROR)
            paths = sorted(p for p in view.ephemerals(self.session_id)
                           if prefix == "/" or p.startswith(prefix))
            return _encode_reply(xid, zxid, 0, r.GetEphemeralsResponse(paths))
        path = req.path
        if op == consts.OP_EXISTS and path is not None and "\0" in path:
            # FinalRequestProcessor refuses a NUL in an exists path before the lookup.
            return _encode_reply(xid, zxid, errors.BADARGUMENTS)
        if path is None:
            return _encode_reply(xid, zxid, errors.MARSHALLINGERROR)
        node = view.get(path)
        if op == consts.OP_EXISTS:
            if node is not None and not self._allowed(node, acls.READ):
                # exists needs READ on an existing node (ZooKeeper 3.8.4+, 3.9.2+)
                return _encode_reply(xid, zxid, errors.NOAUTH)
            if req.watch:
                core.watches.add_data(path, self)
            if node is None:
                return _encode_reply(xid, zxid, errors.NONODE)
            return _encode_reply(xid, zxid, 0, r.ExistsResponse(r.Stat(*node.wire_stat())))
        if node is None:
            return _encode_reply(xid, zxid, errors.NONODE)
        if op == consts.OP_GET_ACL:
            if not self._allowed(node, acls.READ | acls.ADMIN):
                return _encode_reply(xid, zxid, errors.NOAUTH)
            entries = node.acl if self._allowed(node, acls.ADMIN) else acls.masked(node.acl)
            acl = [r.ACL(perms, r.Id(scheme, ident)) for perms, scheme, ident in entries]
            return _encode_reply(xid, zxid, 0, r.GetACLResponse(acl, r.Stat(*node.wire_stat())))
        if not self._allowed(node, acls.READ):
            return _encode_reply(xid, zxid, errors.NOAUTH)
        if op == consts.OP_GET_ALL_CHILDREN_NUMBER:
            return _encode_reply(xid, zxid, 0, r.GetAllChildrenNumberResponse(
                view.count_descendants(path)))
        if op == consts.OP_GET_DATA:
            if req.watch:
                core.watches.add_data(path, self)
            return _encode_reply(xid, zxid, 0,
                                 r.GetDataResponse(node.data, r.Stat(*node.wire_stat())))
        if req.watch:
            core.watches.add_child(path, self)
        body = core.children_body(path, node)
        head = codec.encode_reply_header(xid, zxid, 0)
        if op == consts.OP_GET_CHILDREN:
            n = len(head) + len(body)
            return b"".join((n.to_bytes(4, "big"), head, body))
        stat = codec.encode(r.Stat(*node.wire_stat()))
        n = len(head) + len(body) + len(stat)
        return b"".join((n.to_bytes(4, "big"), head, body, stat))

    def _allowed(self, node, perm):
        return acls.allowed(node.acl, perm, self.ids, self.fe.config.skip_acl)

    def _who_am_i(self, xid):
        info = []
        # Apache ZooKeeper 3.8 lists the addauth identities before the ip one.
        for scheme, ident in sorted(self.ids, key=lambda i: i[0] == "ip"):
            user = ident.split(":", 1)[0] if scheme == "digest" else ident
            if scheme == "sasl" and not acls.sasl_enabled():
                user = ""   # AuthUtil.getUser: no provider for the scheme, no user name
            info.append(r.ClientInfo(scheme, user))
        return _encode_reply(xid, self.fe.last_zxid, 0, r.WhoAmIResponse(info))

    def _multi_read(self, xid, ops):
        """multiRead: getData / getChildren each on its own (not atomic)."""
        core = self.fe
        view = core.view
        results = []
        for op, req in ops:
            if op not in (consts.OP_GET_DATA, consts.OP_GET_CHILDREN):
                results.append((consts.OP_ERROR, errors.BADARGUMENTS, None))
                continue
            node = view.get(req.path) if req.path is not None else None
            if node is None:
                results.append((consts.OP_ERROR, errors.NONODE, None))
            elif not self._allowed(node, acls.READ):
                results.append((consts.OP_ERROR, errors.NOAUTH, None))
            elif op == consts.OP_GET_DATA:
                if req.watch:
                    core.watches.add_data(req.path, self)
                results.append((op, 0, r.GetDataResponse(node.data, r.Stat(*node.wire_stat()))))
            else:
                if req.watch:
                    core.watches.add_child(req.path, self)
                results.append((op, 0, r.GetChildrenResponse(view.get_children(req.path))))
        body = codec.encode_reply_header(xid, core.last_zxid, 0) + \
            codec.encode_multi_response(results)
        return len(body).to_bytes(4, "big") + body

    def _set_watches(self, xid, req):
        """Re-register watches after a reconnect; fire the events missed since relativeZxid
        (DataTree.setWatches)."""
        core = self.fe
        view = core.view
        rel = req.relativeZxid
        zxid = core.last_zxid
        for path in req.dataWatches or ():
            node = view.get(path)
            if node is None:
                self.send_event(zxid, consts.EVENT_NODE_DELETED, path)
            elif node.mzxid > rel:
                self.send_event(zxid, consts.EVENT_NODE_DATA_CHANGED, path)
            else:
                core.watches.add_data(path, self)
        for path in req.existWatches or ():
            if view.get(path) is not None:
                self.send_event(zxid, consts.EVENT_NODE_CREATED, path)
            else:
                core.watches.add_data(path, self)
        for path in req.childWatches or ():
            node = view.get(path)
            if node is None:
                self.send_event(zxid, consts.EVENT_NODE_DELETED, path)
            elif node.pzxid > rel:
                self.send_event(zxid, consts.EVENT_NODE_CHILDREN_CHANGED, path)
            else:
                core.watches.add_child(path, self)
        # Persistent watches come back as they were; what they missed is not replayed
        # (DataTree.setWatches).
        for path in getattr(req, "persistentWatches", None) or ():
            core.watches.add_persistent(path, self)
        for path in getattr(req, "persistentRecursiveWatches", None) or ():
            core.watches.add_persistent(path, self, recursive=True)
        return _encode_reply(xid, zxid, 0)

    def _watch_op(self, xid, op, req):
        """addWatch, checkWatches, removeWatches (FinalRequestProcessor): no ACL check, no
        node needed. removeWatches answers with the header only: the DataWatchRemoved /
        ChildWatchRemoved events are made by the client library itself, never sent."""
        watches = self.fe.watches
        zxid = self.fe.last_zxid
        if req.path is None:
            return _encode_reply(xid, zxid, errors.MARSHALLINGERROR)
        if op == consts.OP_ADD_WATCH:
            if req.mode not in (wt.ADD_WATCH_PERSISTENT, wt.ADD_WATCH_PERSISTENT_RECURSIVE):
                # WatcherMode.fromZooDef throws; FinalRequestProcessor answers MARSHALLINGERROR
                return _encode_reply(xid, zxid, errors.MARSHALLINGERROR)
            watches.add_persistent(req.path, self,
                                   recursive=req.mode == wt.ADD_WATCH_PERSISTENT_RECURSIVE)
            return _encode_reply(xid, zxid, 0, r.ErrorResponse(0))
        if req.type not in wt.WATCHER_TYPES:
            return _encode_reply(xid, zxid, errors.MARSHALLINGERROR)  # WatcherType.fromInt
        if op == consts.OP_CHECK_WATCHES:
            found = watches.contains(req.path, self, req.type)
        else:
            found = watches.remove(req.path, self, req.type)
        return _encode_reply(xid, zxid, 0 if found else errors.NOWATCHER)

    def _add_auth(self, xid, req):
        ids = acls.authenticate(req.scheme, bytes(req.auth or b""), self.fe.config.super_digest)
        if ids is not None:
            for i in ids:
                if i not in self.ids:
                    self.ids.append(i)
            self.fe.link.auth(self.conn_id, self.ids)
            return _encode_reply(xid, 0, 0)
        # ZooKeeper answers AUTHFAILED and closes the connection.
        log.warning("session 0x%x: authentication failed for scheme %r", self.session_id,
                    req.scheme)
        self.pending.append(_Entry(consts.OP_AUTH))  # block further replies
        self.write(_encode_reply(xid, 0, errors.AUTHFAILED))
        self.close()
        return b""

    def _sasl(self, xid, frame, off):
        """A SASL token (opcode 102), answered as ZooKeeperServer.processSasl answers it.

        With a JAAS Server section (config.sasl_users) each token goes to this connection's
        DIGEST-MD5 login (zkpy.security.sasl); once it completes the connection gains
        ("sasl", user) (and ("super", "") for a superUser). A failed login is answered
        AUTHFAILED (SESSIONCLOSEDREQUIRESASLAUTH when SASL is required) and the connection
        closed, or OK with a null token under allowSaslFailedClients.

        Without one ZooKeeper has no SASL server for the connection (with or without
        authProvider.N=...SASLAuthenticationProvider): it answers every token with OK and a null
        token and never completes the login; so does zkpy (kazoo sends its tokens until its
        session expires, then AUTH_FAILED). SASL packets do not touch the session."""
        req, _ = _D[r.GetSASLRequest](frame, off)  # garbage closes the connection
        if req.token is None:
            # ZooKeeper reads the null token's length and fails (NullPointerException): it
            # closes the connection.
            raise ClientProtocolError("SASL request with a null token")
        config = self.fe.config
        if config.sasl_users is None and config.sasl_kerberos is None:
            if not self.sasl_logged:
                self.sasl_logged = True
                log.warning("session 0x%x: client %s asked for SASL authentication; there is no "
                            "SASL server (as ZooKeeper without a JAAS Server section): answering "
                            "an empty token, the login cannot complete", self.session_id,
                            self.peer)
            answer = None
        else:
            if self.sasl_login is None and config.sasl_kerberos is not None:
                from zkpy.server.sasl_gssapi import GssapiLogin
                principal, keytab = config.sasl_kerberos
                self.sasl_login = GssapiLogin(principal, keytab, config.sasl_super_users,
                                              config.kerberos_remove_host,
                                              config.kerberos_remove_realm)
            elif self.sasl_login is None:
                self.sasl_login = SaslLogin(config.sasl_users, os.urandom(NONCE_RANDOM_BYTES),
                                            config.sasl_super_users, config.kerberos_remove_host,
                                            config.kerberos_remove_realm)
            was_complete = self.sasl_login.complete
            try:
                answer = self.sasl_login.evaluate(bytes(req.token))
            except SaslError as e:
                self._sasl_failed(xid, e)
                return
            if self.sasl_login.complete and not was_complete:
                # Applied now, as ZooKeeper does when it reads the token: requests read after
                # this one carry the identity.
                for ident in self.sasl_login.ids:
                    if ident not in self.ids:
                        self.ids.append(ident)
                self.fe.link.auth(self.conn_id, self.ids)
                log.info("session 0x%x: client %s authenticated with SASL %s as %r%s",
                         self.session_id, self.peer,
                         getattr(self.sasl_login, "mechanism", "DIGEST-MD5"),
                         self.sasl_login.ids[0][1],
                         " (super user)" if len(self.sasl_login.ids) > 1 else "")
        if self.unpumped:
            self._pump()
            if self.closed:
                return
        reply = _encode_reply(xid, 0, 0, r.SetSASLResponse(answer) if answer is not None
                              else _NO_SASL_TOKEN)
        self._reply_now_or_queue(consts.OP_SASL, lambda: reply)

    def _sasl_failed(self, xid, error):
        """A failed SASL login: one log line, then ZooKeeper's answer."""
        config = self.fe.config
        required = config.sasl_auth_required()
        if config.allow_sasl_failed_clients and not required:
            log.warning("session 0x%x: client %s failed to SASL authenticate (%s); keeping the "
                        "connection (allowSaslFailedClients)", self.session_id, self.peer, error)
            reply = _encode_reply(xid, 0, 0, _NO_SASL_TOKEN)
            self._reply_now_or_queue(consts.OP_SASL, lambda: reply)
            return
        code = errors.SESSIONCLOSEDREQUIRESASLAUTH if required else errors.AUTHFAILED
        log.warning("session 0x%x: client %s failed to SASL authenticate (%s); answering %s and "
                    "closing the connection", self.session_id, self.peer, error,
                    errors.CODE_NAMES[code])
        self._close_with(xid, consts.OP_SASL, _encode_reply(xid, 0, code, _NO_SASL_TOKEN))

    def _close_with(self, xid, op, reply):
        """Answer `reply` in its turn and close; read nothing more (ZooKeeper: sendResponse,
        sendCloseSession, disableRecv). The session stays until it expires."""
        self.recv_disabled = True
        if self.unpumped:
            self._pump()
            if self.closed:
                return

        def last():
            self.pending.append(_Entry(op))  # blocks anything queued behind it
            self.write(reply)
            self.close()
            return b""
        self._reply_now_or_queue(op, last)

    def _authenticated(self):
        required = self.required_schemes
        for scheme, _ in self.ids:
            if scheme in required:
                return True
        return False

    def _refuse_unauthenticated(self, xid, op):
        """AuthenticationHelper.enforceAuthentication: a request (any but auth and sasl; ping
        included) from a connection not authenticated with a required scheme is answered
        SESSIONCLOSEDREQUIRESASLAUTH and the connection closed."""
        log.warning("session 0x%x: client %s has not authenticated with any of the schemes %s "
                    "(it has %s); answering SESSIONCLOSEDREQUIRESASLAUTH and closing the "
                    "connection", self.session_id, self.peer, list(self.required_schemes),
                    [scheme for scheme, _ in self.ids])
        self._close_with(xid, op, _encode_reply(xid, 0, errors.SESSIONCLOSEDREQUIRESASLAUTH))

    # ------------------------------------------------------------------ four letter words

    def _four_letter(self, cmd):
        # Nothing more is read from this connection: the answer, then the close (NIOServerCnxn).
        self.closed = True
        if cmd not in self.fe.config.four_letter_words:
            self._four_letter_answer(
                "%s is not executed because it is not in the whitelist.\n" % cmd)
            return
        self._loop.create_task(self._four_letter_report(cmd))

    async def _four_letter_report(self, cmd):
        # fe.four_letter: the core's Report (in the core process, or asked for over the IPC
        # from a worker process: every worker's figures, as on the plaintext port).
        try:
            text = await self.fe.four_letter(cmd, self.peer)
        except Exception:
            log.exception("four letter word %s failed", cmd)
            text = ""
        self._four_letter_answer(text)

    def _four_letter_answer(self, text):
        if text and not self.transport.is_closing():
            self.transport.write(text.encode("utf-8"))
        self.transport.close()

    def describe(self):
        """This connection's line of cons/stat, as data."""
        return {
            "peer": self.peer, "session_id": self.session_id, "queued": len(self.pending),
            "received": self.received, "sent": self.sent, "last_op": self.last_op,
            "established_ms": self.established_ms, "timeout_ms": self.timeout_ms,
            "last_cxid": self.last_cxid, "last_zxid": self.last_zxid,
            "last_response_ms": self.last_response_ms, "last_latency": self.last_latency,
            "latency_min": self.latency.min or 0, "latency_max": self.latency.max,
            "latency_avg": (self.latency.sum // self.latency.count) if self.latency.count else 0,
        }


async def close_connections(fe, timeout_s):
    """Close every connection of `fe` once what it was answered has been written: wait (at
    most timeout_s) until each is gone, then cut off the ones whose client does not read."""
    for conn in list(fe.connections):
        conn.close()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while fe.connections and loop.time() < deadline:
        await asyncio.sleep(0.01)
    for conn in list(fe.connections):
        if conn.transport is not None:
            conn.transport.abort()
    await asyncio.sleep(0)   # their connection_lost
