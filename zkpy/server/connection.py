"""One client connection: framing, the handshake, reads, watches and reply order.

Owns its socket's state: the frame decoder, the session it carries, and the queue that keeps
replies in request order. Reads are answered from the committed LMDB state without touching the
write pipeline; a read that arrives while a write of the same session is outstanding waits in the
queue and runs when the write has been answered, so it sees that write (per-session FIFO).
Protocol violations close only this connection, with one log line naming the reason.
"""

import asyncio
import collections
import logging
import time

from zkpy import errors
from zkpy.errors import ClientProtocolError
from zkpy.admin import fourletter
from zkpy.proto import codec, consts
from zkpy.proto import records as r
from zkpy.proto.framing import FrameDecoder, is_four_letter_word

log = logging.getLogger("zkpy.server.connection")

_D = codec.DECODERS
_encode_reply = codec.encode_reply_frame
_decode_header = codec.decode_request_header

_WRITE_OPS = frozenset([consts.OP_CREATE, consts.OP_CREATE2, consts.OP_DELETE,
                        consts.OP_SET_DATA, consts.OP_MULTI])
_READ_REQUESTS = {
    consts.OP_GET_DATA: r.GetDataRequest,
    consts.OP_EXISTS: r.ExistsRequest,
    consts.OP_GET_CHILDREN: r.GetChildrenRequest,
    consts.OP_GET_CHILDREN2: r.GetChildren2Request,
    consts.OP_SYNC: r.SyncRequest,
    consts.OP_GET_ACL: r.GetACLRequest,
    consts.OP_GET_ALL_CHILDREN_NUMBER: r.GetAllChildrenNumberRequest,
    consts.OP_GET_EPHEMERALS: r.GetEphemeralsRequest,
}
_WRITE_REQUESTS = {
    consts.OP_CREATE: r.CreateRequest,
    consts.OP_CREATE2: r.CreateRequest,
    consts.OP_DELETE: r.DeleteRequest,
    consts.OP_SET_DATA: r.SetDataRequest,
}


# Request names as cons prints them (Request.op2String, first four letters, upper case).
_OP_ABBREV = {
    consts.OP_CREATE: "CREA", consts.OP_CREATE2: "CREA", consts.OP_DELETE: "DELE",
    consts.OP_EXISTS: "EXIS", consts.OP_GET_DATA: "GETD", consts.OP_SET_DATA: "SETD",
    consts.OP_GET_ACL: "GETA", consts.OP_SET_ACL: "SETA", consts.OP_GET_CHILDREN: "GETC",
    consts.OP_GET_CHILDREN2: "GETC", consts.OP_SYNC: "SYNC", consts.OP_PING: "PING",
    consts.OP_CLOSE_SESSION: "CLOS", consts.OP_SET_WATCHES: "SETW", consts.OP_SET_WATCHES2: "SETW",
    consts.OP_MULTI: "MULT", consts.OP_AUTH: "AUTH", consts.OP_GET_EPHEMERALS: "GETE",
    consts.OP_GET_ALL_CHILDREN_NUMBER: "GETA",
}


class _Entry(object):
    """A reply slot: filled by a write's completion or computed by a deferred read."""
    __slots__ = ("op", "data", "thunk", "close_after", "t0", "multi_ops")

    def __init__(self, op, thunk=None):
        self.op = op
        self.multi_ops = None
        self.data = None
        self.thunk = thunk
        self.close_after = False
        self.t0 = time.monotonic()


class Connection(asyncio.Protocol):
    def __init__(self, core, per_ip):
        self.core = core
        self.per_ip = per_ip          # ip -> open connection count (maxClientCnxns)
        self.transport = None
        self.peer = "?"
        self.ip = None
        self.session_id = 0
        self.timeout_ms = 0
        self.closed = False
        self.decoder = FrameDecoder(core.config.jute_maxbuffer)
        self.first = b""              # bytes before the first frame (4lw detection)
        self.handshake_done = False
        self.pending = collections.deque()
        self.auth = []                # (scheme, id) pairs
        self.received = 0
        self.sent = 0
        self.established_ms = 0
        self.reset_stats()

    def reset_stats(self):
        """Per-connection figures for cons (crst resets them)."""
        self.last_op = "NA"
        self.last_cxid = -1
        self.last_zxid = -1
        self.last_response_ms = 0
        self.last_latency = 0
        self.latency_min = None
        self.latency_max = 0
        self.latency_sum = 0
        self.latency_count = 0

    # ------------------------------------------------------------------ asyncio protocol

    def connection_made(self, transport):
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.ip = peer[0] if peer else "?"
        self.peer = "%s:%s" % (peer[0], peer[1]) if peer else "?"
        count = self.per_ip.get(self.ip, 0) + 1
        self.per_ip[self.ip] = count
        limit = self.core.config.max_client_cnxns
        self.core.connections.add(self)
        if limit and count > limit:
            log.warning("too many connections from %s - max is %d; closing %s",
                        self.ip, limit, self.peer)
            self.close()

    def connection_lost(self, exc):
        self.closed = True
        self.core.connections.discard(self)
        n = self.per_ip.get(self.ip, 1) - 1
        if n <= 0:
            self.per_ip.pop(self.ip, None)
        else:
            self.per_ip[self.ip] = n
        self.core.watches.remove_watcher(self)
        session = self.core.sessions.get(self.session_id)
        if session is not None and session.owner is self:
            session.owner = None

    def data_received(self, data):
        if self.closed:
            return
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
        try:
            frames = self.decoder.feed(data)
            for frame in frames:
                if self.closed:
                    return
                self.received += 1
                self.core.stats.packets_received += 1
                if not self.handshake_done:
                    self._handshake(frame)
                else:
                    self._request(frame)
        except ClientProtocolError as e:
            log.warning("closing connection %s (session 0x%x): %s", self.peer, self.session_id, e)
            self.close()
        except Exception:
            log.exception("closing connection %s (session 0x%x) after an internal error",
                          self.peer, self.session_id)
            self.close()

    # ------------------------------------------------------------------ output

    def write(self, data):
        if not self.closed:
            self.transport.write(data)
            self.sent += 1
            self.core.stats.packets_sent += 1

    def close(self):
        if not self.closed:
            self.closed = True
            if self.transport is not None:
                self.transport.close()

    def send_event(self, zxid, event_type, path):
        body = codec.encode_notification(zxid, event_type, consts.STATE_SYNC_CONNECTED, path)
        self.write(len(body).to_bytes(4, "big") + body)

    def _reply_now_or_queue(self, op, thunk):
        if not self.pending:
            self.write(thunk())
            return
        self.pending.append(_Entry(op, thunk))

    def complete(self, entry, data, close_after=False):
        entry.data = data
        entry.close_after = close_after
        self.drain()

    def drain(self):
        pending = self.pending
        stats = self.core.stats
        while pending:
            e = pending[0]
            if e.data is None:
                if e.thunk is None:
                    return  # a write still waits for its fsync
                e.data = e.thunk()
            pending.popleft()
            ms = int((time.monotonic() - e.t0) * 1000)
            stats.latency(ms)
            self.last_latency = ms
            self.latency_sum += ms
            self.latency_count += 1
            if self.latency_min is None or ms < self.latency_min:
                self.latency_min = ms
            if ms > self.latency_max:
                self.latency_max = ms
            self.last_response_ms = int(time.time() * 1000)
            self.write(e.data)
            if e.close_after:
                self.close()
                return

    # ------------------------------------------------------------------ handshake

    def _handshake(self, frame):
        core = self.core
        req, read_only = codec.decode_connect_request(frame)
        if req.lastZxidSeen > core.last_zxid:
            log.warning("refusing session request for client %s as it has seen zxid 0x%x; our "
                        "last zxid is 0x%x; client must try another server",
                        self.peer, req.lastZxidSeen, core.last_zxid)
            self.close()
            return
        self.handshake_done = True
        self._read_only_flag = read_only
        if req.sessionId == 0:
            core.create_session(self, req, read_only)
        else:
            core.reopen_session(self, req, read_only)

    def send_connect_response(self, timeout_ms, session_id, passwd, read_only, close_after=False):
        resp = r.ConnectResponse(0, timeout_ms, session_id, passwd)
        body = codec.encode_connect_response(resp, False if read_only is not None else None)
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

    # ------------------------------------------------------------------ requests

    def _request(self, frame):
        core = self.core
        if self.session_id == 0:
            # The handshake's createSession is not durable yet: ZooKeeper's client does not
            # pipeline before the ConnectResponse, so a request now breaks the protocol.
            raise ClientProtocolError("request before the session was established")
        xid, op, off = _decode_header(frame, 0)
        core.sessions.touch(self.session_id, int(time.time() * 1000))
        self.last_op = _OP_ABBREV.get(op, "NA")
        if xid >= 0:
            self.last_cxid = xid
        self.last_zxid = core.last_zxid
        if op in _WRITE_OPS:
            entry = _Entry(op)
            if op == consts.OP_MULTI:
                req = codec.decode_multi(frame, off)
                entry.multi_ops = [o for o, _ in req]
            else:
                req, _ = _D[_WRITE_REQUESTS[op]](frame, off)
            self.pending.append(entry)
            txn = core.prep_request(self.session_id, xid, op, req)
            core.submit(txn, (self, xid, entry))
            return
        reader = _READ_REQUESTS.get(op)
        if reader is not None:
            req, _ = _D[reader](frame, off)
            self._reply_now_or_queue(op, lambda: self._read(xid, op, req))
            return
        if op == consts.OP_MULTI_READ:
            req = codec.decode_multi(frame, off)
            self._reply_now_or_queue(op, lambda: self._multi_read(xid, req))
            return
        if op == consts.OP_PING:
            self._reply_now_or_queue(op, lambda: _encode_reply(xid, core.last_zxid, 0))
            return
        if op == consts.OP_CLOSE_SESSION:
            entry = _Entry(op)
            self.pending.append(entry)
            core.close_session(self.session_id, (self, xid, entry))
            return
        if op == consts.OP_SET_WATCHES or op == consts.OP_SET_WATCHES2:
            cls = r.SetWatches if op == consts.OP_SET_WATCHES else r.SetWatches2
            req, _ = _D[cls](frame, off)
            self._reply_now_or_queue(op, lambda: self._set_watches(xid, req))
            return
        if op == consts.OP_AUTH:
            req, _ = _D[r.AuthPacket](frame, off)
            self._reply_now_or_queue(op, lambda: self._add_auth(xid, req))
            return
        log.info("session 0x%x: op %d is not implemented; answering UNIMPLEMENTED",
                 self.session_id, op)
        self._reply_now_or_queue(
            op, lambda: _encode_reply(xid, core.last_zxid, errors.UNIMPLEMENTED))

    def _read(self, xid, op, req):
        """Answer a read from the committed tree (FinalRequestProcessor's read cases)."""
        core = self.core
        zxid = core.last_zxid
        view = core.view
        if op == consts.OP_SYNC:
            return _encode_reply(xid, zxid, 0, r.SyncResponse(req.path))
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
            if req.watch:
                core.watches.add_data(path, self)
            if node is None:
                return _encode_reply(xid, zxid, errors.NONODE)
            return _encode_reply(xid, zxid, 0, r.ExistsResponse(r.Stat(*node.wire_stat())))
        if node is None:
            return _encode_reply(xid, zxid, errors.NONODE)
        if op == consts.OP_GET_ALL_CHILDREN_NUMBER:
            return _encode_reply(xid, zxid, 0, r.GetAllChildrenNumberResponse(
                view.count_descendants(path)))
        if op == consts.OP_GET_ACL:
            acl = [r.ACL(perms, r.Id(scheme, ident)) for perms, scheme, ident in node.acl]
            return _encode_reply(xid, zxid, 0, r.GetACLResponse(acl, r.Stat(*node.wire_stat())))
        if op == consts.OP_GET_DATA:
            if req.watch:
                core.watches.add_data(path, self)
            return _encode_reply(xid, zxid, 0,
                                 r.GetDataResponse(node.data, r.Stat(*node.wire_stat())))
        if req.watch:
            core.watches.add_child(path, self)
        children = view.get_children(path)
        if op == consts.OP_GET_CHILDREN:
            return _encode_reply(xid, zxid, 0, r.GetChildrenResponse(children))
        return _encode_reply(xid, zxid, 0,
                             r.GetChildren2Response(children, r.Stat(*node.wire_stat())))

    def _multi_read(self, xid, ops):
        """multiRead: getData / getChildren each on its own (not atomic)."""
        core = self.core
        view = core.view
        results = []
        for op, req in ops:
            if op not in (consts.OP_GET_DATA, consts.OP_GET_CHILDREN):
                results.append((consts.OP_ERROR, errors.BADARGUMENTS, None))
                continue
            node = view.get(req.path) if req.path is not None else None
            if node is None:
                results.append((consts.OP_ERROR, errors.NONODE, None))
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
        core = self.core
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
        if getattr(req, "persistentWatches", None) or getattr(
                req, "persistentRecursiveWatches", None):
            log.info("session 0x%x: persistent watches in setWatches2 are not served yet",
                     self.session_id)
        return _encode_reply(xid, zxid, 0)

    def _add_auth(self, xid, req):
        # ACL enforcement arrives with the API issue; until then the identity is recorded.
        auth = bytes(req.auth or b"")
        if req.scheme == "digest" and b":" in auth:
            self.auth.append(("digest", auth.decode("utf-8", "replace")))
            return _encode_reply(xid, 0, 0)
        if req.scheme in ("world", "ip"):
            return _encode_reply(xid, 0, 0)
        log.warning("session 0x%x: authentication failed for scheme %r", self.session_id,
                    req.scheme)
        self.pending.append(_Entry(consts.OP_AUTH))  # block further replies
        self.write(_encode_reply(xid, 0, errors.AUTHFAILED))
        self.close()
        return b""

    # ------------------------------------------------------------------ four letter words

    def _four_letter(self, cmd):
        core = self.core
        if cmd not in core.config.four_letter_words:
            text = "%s is not executed because it is not in the whitelist.\n" % cmd
        else:
            try:
                text = fourletter.run(cmd, core, self)
            except Exception:
                log.exception("four letter word %s failed", cmd)
                text = ""
        if text:
            self.transport.write(text.encode("utf-8"))
        self.closed = True
        self.transport.close()

