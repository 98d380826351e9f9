"""Messages between the servers of an ensemble (Zab's learner protocol). Pure: bytes in, records out.

zkpy servers speak this only to each other (it does not interoperate with Java ZooKeeper peers).
Each message is one frame on the TCP connection from a learner to the leader's quorum port:
    frame := len:u32 type:u8 body[len-1]          (big-endian)
    blob  := len:u32 bytes[len]

learner -> leader
    FOLLOWERINFO (1)  sid:i64 accepted_epoch:i64 last_zxid:i64 applied_zxid:i64 observer:u8
                      (last_zxid: the last txn in the learner's log; applied_zxid: the last one
                      in its LMDB, which holds committed txns only)
    ACKEPOCH     (2)  current_epoch:i64 last_zxid:i64
    ACK          (3)  zxid:i64        every txn up to zxid is durable in the learner's log
                                      (cumulative); the first ACK after NEWLEADER acks it
    PING         (4)  count:u32 session_id:i64*   sessions heard from since the last PING
    REQUEST      (5)  req_id:i64 session_id:i64 xid:i32 op:i32 body:blob count:u32
                      (scheme:str id:str)*        a client's write / closeSession / createSession
                                                  (op -10, body = timeout_ms:i32) for the leader
                                                  to prep; the identities are the connection's
    SYNC         (6)  req_id:i64
    LOGSTATE     (7)  stalled:i64     1: my log cannot be written (a full disk; I retry and ack
                                      nothing meanwhile), 0: it can again
leader -> learner
    LEADERINFO   (20) epoch:i64
    DIFF         (21) zxid:i64        the learner's log is a prefix of the leader's up to zxid;
                                      the missing txns follow as PROPOSALs
    TRUNC        (22) zxid:i64        drop every txn after zxid, then as DIFF
    SNAP         (23) zxid:i64 count:u32 voter:i64*   a copy of the leader's LMDB at zxid
                                      follows (SNAPDATA*, then SNAPEND), then PROPOSALs after
                                      zxid; the voters are those of that state's membership
    SNAPDATA     (24) chunk:blob
    SNAPEND      (25)
    PROPOSAL     (26) zxid:i64 origin:i64 req_id:i64 payload:blob   (origin: the server whose
                                      client asked, 0 if none; the txn bytes of zkpy.tree.txns)
    NEWLEADER    (27) zxid:i64        (epoch << 32): persist what you have, ack
    UPTODATE     (28) zxid:i64        synced: everything up to zxid is committed; serve clients
    COMMIT       (29) zxid:i64        every txn up to zxid is committed (cumulative)
    LPING        (30)                 the leader is alive
    SYNCDONE     (31) req_id:i64 zxid:i64   answer a SYNC once the learner has applied zxid
    REFUSED      (32) req_id:i64      the REQUEST was not taken (no quorum of the voters can
                                      write its log, or my database cannot be written): the
                                      learner answers its client SystemError

Connection security (zkpy.quorum.secure), before any frame above, on the quorum port and on
the election port alike (ZooKeeper's QuorumAuthPacket): a server that connects with
quorum.auth.enableSasl opens with
    AUTH := magic:u32 (0x5A4B5141, "ZKQA": more than any frame length) status:u8 token:blob
    status: 0 IN_PROGRESS, 1 SUCCESS, 2 ERROR, 3 NOT_ENABLED (the accepting server does not do
    quorum SASL)
learner: AUTH(0, "")  server: AUTH(0, challenge)  learner: AUTH(0, response)
server: AUTH(1, rspauth) or AUTH(2, "")      (DIGEST-MD5, protocol zookeeper-quorum, server
                                              name zk-quorum-sasl-md5, as SaslQuorumAuthServer)
A connection whose first four bytes are not the magic did not authenticate.
"""

import struct

FOLLOWERINFO, ACKEPOCH, ACK, PING, REQUEST, SYNC, LOGSTATE = 1, 2, 3, 4, 5, 6, 7
LEADERINFO, DIFF, TRUNC, SNAP, SNAPDATA, SNAPEND = 20, 21, 22, 23, 24, 25
PROPOSAL, NEWLEADER, UPTODATE, COMMIT, LPING, SYNCDONE, REFUSED = 26, 27, 28, 29, 30, 31, 32

NAMES = {v: k for k, v in dict(
    FOLLOWERINFO=FOLLOWERINFO, ACKEPOCH=ACKEPOCH, ACK=ACK, PING=PING, REQUEST=REQUEST,
    SYNC=SYNC, LOGSTATE=LOGSTATE, REFUSED=REFUSED, LEADERINFO=LEADERINFO, DIFF=DIFF, TRUNC=TRUNC, SNAP=SNAP, SNAPDATA=SNAPDATA,
    SNAPEND=SNAPEND, PROPOSAL=PROPOSAL, NEWLEADER=NEWLEADER, UPTODATE=UPTODATE, COMMIT=COMMIT,
    LPING=LPING, SYNCDONE=SYNCDONE).items()}

MAX_FRAME = 64 << 20

_HEAD = struct.Struct(">IB")
_U32 = struct.Struct(">I")
_Q = struct.Struct(">q")
_QQ = struct.Struct(">qq")
_INFO = struct.Struct(">qqqqB")
_REQ = struct.Struct(">qqii")
_PROP = struct.Struct(">qqq")
_PROP_FRAME = struct.Struct(">IBqqqI")   # a PROPOSAL's frame up to its payload
_ONE_FRAME = struct.Struct(">IBq")

# Messages whose whole body is one i64.
_ONE_I64 = (ACK, LEADERINFO, DIFF, TRUNC, NEWLEADER, UPTODATE, COMMIT, SYNC, LOGSTATE,
            REFUSED)


class ProtocolError(Exception):
    """A peer sent bytes that are not a message of this protocol: drop the connection."""


def _frame(mtype, body=b""):
    return _HEAD.pack(len(body) + 1, mtype) + body


def _blob(b):
    return _U32.pack(len(b)) + b


def one(mtype, zxid):
    """ACK, LEADERINFO, DIFF, TRUNC, NEWLEADER, UPTODATE, COMMIT, SYNC, LOGSTATE,
    REFUSED."""
    assert mtype in _ONE_I64
    return _ONE_FRAME.pack(9, mtype, zxid)


def follower_info(sid, accepted_epoch, last_zxid, applied_zxid, observer=False):
    return _frame(FOLLOWERINFO, _INFO.pack(sid, accepted_epoch, last_zxid, applied_zxid,
                                           1 if observer else 0))


def ack_epoch(current_epoch, last_zxid):
    return _frame(ACKEPOCH, _QQ.pack(current_epoch, last_zxid))


def ping(session_ids=()):
    return _frame(PING, _U32.pack(len(session_ids)) + b"".join(_Q.pack(s) for s in session_ids))


def lping():
    return _frame(LPING)


def request(req_id, session_id, xid, op, body, ids=()):
    parts = [_REQ.pack(req_id, session_id, xid, op), _blob(body), _U32.pack(len(ids))]
    for scheme, ident in ids:
        parts.append(_blob(scheme.encode("utf-8")))
        parts.append(_blob(ident.encode("utf-8")))
    return _frame(REQUEST, b"".join(parts))


def proposal(zxid, origin, req_id, payload):
    n = len(payload)
    return _PROP_FRAME.pack(n + 29, PROPOSAL, zxid, origin, req_id, n) + payload


def snap(zxid, voters):
    voters = sorted(voters)
    return _frame(SNAP, _Q.pack(zxid) + _U32.pack(len(voters))
                  + b"".join(_Q.pack(v) for v in voters))


def snap_data(chunk):
    return _frame(SNAPDATA, _blob(chunk))


def snap_end():
    return _frame(SNAPEND)


def sync_done(req_id, zxid):
    return _frame(SYNCDONE, _QQ.pack(req_id, zxid))


class _Reader(object):
    __slots__ = ("b", "o")

    def __init__(self, b, o):
        self.b = b
        self.o = o

    def take(self, st):
        if self.o + st.size > len(self.b):
            raise ProtocolError("message too short")
        v = st.unpack_from(self.b, self.o)
        self.o += st.size
        return v

    def blob(self):
        n = self.take(_U32)[0]
        if self.o + n > len(self.b):
            raise ProtocolError("blob of %d bytes runs past the message" % n)
        v = bytes(self.b[self.o:self.o + n])
        self.o += n
        return v

    def str(self):
        try:
            return self.blob().decode("utf-8")
        except UnicodeDecodeError as e:
            raise ProtocolError("bad string: %s" % e)


def decode(frame):
    """One frame body (type byte + fields) -> (type, fields tuple). Raises ProtocolError."""
    if not frame:
        raise ProtocolError("empty message")
    mtype = frame[0]
    r = _Reader(frame, 1)
    if mtype in _ONE_I64:
        out = r.take(_Q)
    elif mtype == PROPOSAL:
        zxid, origin, req_id = r.take(_PROP)
        out = (zxid, origin, req_id, r.blob())
    elif mtype == FOLLOWERINFO:
        sid, accepted, last, applied, observer = r.take(_INFO)
        out = (sid, accepted, last, applied, bool(observer))
    elif mtype in (ACKEPOCH, SYNCDONE):
        out = r.take(_QQ)
    elif mtype == SNAP:
        zxid = r.take(_Q)[0]
        n = r.take(_U32)[0]
        if n > (len(frame) - r.o) // 8:
            raise ProtocolError("SNAP voter count %d past the message" % n)
        out = (zxid, tuple(r.take(_Q)[0] for _ in range(n)))
    elif mtype == PING:
        n = r.take(_U32)[0]
        if n > (len(frame) - r.o) // 8:
            raise ProtocolError("PING count %d past the message" % n)
        out = ([r.take(_Q)[0] for _ in range(n)],)
    elif mtype == REQUEST:
        req_id, sid, xid, op = r.take(_REQ)
        body = r.blob()
        n = r.take(_U32)[0]
        if n > len(frame):
            raise ProtocolError("REQUEST identity count %d past the message" % n)
        ids = tuple((r.str(), r.str()) for _ in range(n))
        out = (req_id, (sid, xid, op, body, ids))   # (req_id, the machine's Request payload)
    elif mtype == SNAPDATA:
        out = (r.blob(),)
    elif mtype in (SNAPEND, LPING):
        out = ()
    else:
        raise ProtocolError("unknown message type %d" % mtype)
    if r.o != len(frame):
        raise ProtocolError("%s has %d trailing bytes" % (NAMES.get(mtype), len(frame) - r.o))
    return mtype, out


class Decoder(object):
    """Splits a byte stream into frame bodies."""

    def __init__(self, max_frame=MAX_FRAME):
        self.buf = bytearray()
        self.max_frame = max_frame

    def feed(self, data):
        self.buf += data
        out = []
        buf = self.buf
        o = 0
        while len(buf) - o >= 4:
            n = _U32.unpack_from(buf, o)[0]
            if n == 0 or n > self.max_frame:
                raise ProtocolError("frame length %d out of range" % n)
            if len(buf) - o - 4 < n:
                break
            out.append(bytes(buf[o + 4:o + 4 + n]))
            o += 4 + n
        if o:
            del buf[:o]
        return out


# ---------------------------------------------------------------------------------------------
# the authentication packets (zkpy.quorum.secure)

AUTH_MAGIC = b"ZKQA"
AUTH_IN_PROGRESS, AUTH_SUCCESS, AUTH_ERROR, AUTH_NOT_ENABLED = 0, 1, 2, 3
AUTH_STATUS_NAMES = {AUTH_IN_PROGRESS: "IN_PROGRESS", AUTH_SUCCESS: "SUCCESS",
                     AUTH_ERROR: "ERROR", AUTH_NOT_ENABLED: "NOT_ENABLED"}
MAX_AUTH_TOKEN = 64 << 10
_AUTH_REST = struct.Struct(">BI")


def encode_auth(status, token=b""):
    if status not in AUTH_STATUS_NAMES:
        raise ValueError("auth status %r" % (status,))
    if len(token) > MAX_AUTH_TOKEN:
        raise ValueError("auth token of %d bytes" % len(token))
    return AUTH_MAGIC + _AUTH_REST.pack(status, len(token)) + bytes(token)


def decode_auth_head(rest):
    """The 5 bytes after the magic -> (status, token length); ProtocolError if bad."""
    status, n = _AUTH_REST.unpack(rest)
    if status not in AUTH_STATUS_NAMES:
        raise ProtocolError("auth packet with status %d" % status)
    if n > MAX_AUTH_TOKEN:
        raise ProtocolError("auth token of %d bytes" % n)
    return status, n


AUTH_REST_BYTES = _AUTH_REST.size
