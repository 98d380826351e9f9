"""Transactions: the logged, deterministic form of every state change. Pure.

A txn is produced by prep (validation against the current view) and applied by final, on replay
exactly as at first commit. Its byte form is the payload of a transaction-log record.

Grammar (all integers big-endian):
    txn       := type:i16 session_id:i64 cxid:i32 time_ms:i64 body
    str       := len:i32 utf8-bytes[len]
    buf       := len:i32 bytes[len]       (len -1: null)
    acl       := count:i32 (perms:i32 scheme:str id:str)*
    body(CREATE=1)         := path:str data:buf acl ephemeral_owner:i64
    body(DELETE=2)         := path:str
    body(SET_DATA=5)       := path:str data:buf version:i32
    body(CREATE_SESSION=-10) := timeout_ms:i32
    body(CLOSE_SESSION=-11)  := count:i32 path:str*     (the session's ephemerals, deleted in order)
    body(ERROR=-1)         := err:i32
    body(CHECK=13)         := path:str version:i32
    body(SET_ACL=7)        := path:str acl version:i32       (version: the new aversion)
    body(MULTI=14)         := count:i32 (len:i32 txn[len])*   (sub-txns, applied in order under
                                                               the multi's one zxid; a failed multi
                                                               holds only ERROR sub-txns)
Any change to this grammar bumps txnlog's format version.
"""

import struct

from zkpy.errors import StorageCorruptError
from zkpy import compiled

CREATE = 1
DELETE = 2
SET_DATA = 5
CREATE_SESSION = -10
CLOSE_SESSION = -11
ERROR = -1
CHECK = 13
MULTI = 14
SET_ACL = 7

_HDR = struct.Struct(">hqiq")
_I32 = struct.Struct(">i")
_I64 = struct.Struct(">q")


class Txn(object):
    __slots__ = ("type", "session_id", "cxid", "time_ms", "path", "data", "acl",
                 "ephemeral_owner", "version", "timeout_ms", "paths", "err", "subs")

    def __init__(self, type, session_id, cxid, time_ms, path=None, data=None, acl=None,
                 ephemeral_owner=0, version=0, timeout_ms=0, paths=None, err=0, subs=None):
        self.type = type
        self.session_id = session_id
        self.cxid = cxid
        self.time_ms = time_ms
        self.path = path
        self.data = data
        self.acl = acl
        self.ephemeral_owner = ephemeral_owner
        self.version = version
        self.timeout_ms = timeout_ms
        self.paths = paths
        self.err = err
        self.subs = subs

    def __eq__(self, other):
        return isinstance(other, Txn) and all(
            getattr(self, f) == getattr(other, f) for f in self.__slots__)

    def __repr__(self):
        return "Txn(%s)" % ", ".join("%s=%r" % (f, getattr(self, f)) for f in self.__slots__
                                     if getattr(self, f) is not None)


def _str(out, s):
    b = s.encode("utf-8")
    out += _I32.pack(len(b))
    out += b


def _buf(out, b):
    if b is None:  # a null buffer (zkCli's "create /x" sends no data)
        out += _I32.pack(-1)
        return
    out += _I32.pack(len(b))
    out += b


def _acl(out, acl):
    out += _I32.pack(len(acl))
    for perms, scheme, ident in acl:
        out += _I32.pack(perms)
        _str(out, scheme)
        _str(out, ident)


def encode(txn):
    out = bytearray(_HDR.pack(txn.type, txn.session_id, txn.cxid, txn.time_ms))
    t = txn.type
    if t == CREATE:
        _str(out, txn.path)
        _buf(out, txn.data)
        _acl(out, txn.acl)
        out += _I64.pack(txn.ephemeral_owner)
    elif t == SET_ACL:
        _str(out, txn.path)
        _acl(out, txn.acl)
        out += _I32.pack(txn.version)
    elif t == DELETE:
        _str(out, txn.path)
    elif t == SET_DATA:
        _str(out, txn.path)
        _buf(out, txn.data)
        out += _I32.pack(txn.version)
    elif t == CREATE_SESSION:
        out += _I32.pack(txn.timeout_ms)
    elif t == CLOSE_SESSION:
        out += _I32.pack(len(txn.paths))
        for p in txn.paths:
            _str(out, p)
    elif t == ERROR:
        out += _I32.pack(txn.err)
    elif t == CHECK:
        _str(out, txn.path)
        out += _I32.pack(txn.version)
    elif t == MULTI:
        out += _I32.pack(len(txn.subs))
        for sub in txn.subs:
            _buf(out, encode(sub))
    else:
        raise ValueError("unknown txn type %r" % t)
    return bytes(out)


class _Reader(object):
    __slots__ = ("b", "o")

    def __init__(self, b, o):
        self.b = b
        self.o = o

    def i32(self):
        v = _I32.unpack_from(self.b, self.o)[0]
        self.o += 4
        return v

    def i64(self):
        v = _I64.unpack_from(self.b, self.o)[0]
        self.o += 8
        return v

    def buf(self):
        n = self.i32()
        if n == -1:
            return None
        if n < 0 or self.o + n > len(self.b):
            raise StorageCorruptError("txn field length %d out of range" % n)
        v = bytes(self.b[self.o:self.o + n])
        self.o += n
        return v

    def str(self):
        b = self.buf()
        if b is None:
            raise StorageCorruptError("null string in a txn")
        return b.decode("utf-8")


def decode(payload):
    try:
        t, sid, cxid, time_ms = _HDR.unpack_from(payload, 0)
        r = _Reader(payload, _HDR.size)
        txn = Txn(t, sid, cxid, time_ms)
        if t == CREATE:
            txn.path = r.str()
            txn.data = r.buf()
            txn.acl = tuple((r.i32(), r.str(), r.str()) for _ in range(r.i32()))
            txn.ephemeral_owner = r.i64()
        elif t == SET_ACL:
            txn.path = r.str()
            txn.acl = tuple((r.i32(), r.str(), r.str()) for _ in range(r.i32()))
            txn.version = r.i32()
        elif t == DELETE:
            txn.path = r.str()
        elif t == SET_DATA:
            txn.path = r.str()
            txn.data = r.buf()
            txn.version = r.i32()
        elif t == CREATE_SESSION:
            txn.timeout_ms = r.i32()
        elif t == CLOSE_SESSION:
            txn.paths = [r.str() for _ in range(r.i32())]
        elif t == ERROR:
            txn.err = r.i32()
        elif t == CHECK:
            txn.path = r.str()
            txn.version = r.i32()
        elif t == MULTI:
            txn.subs = []
            for _ in range(r.i32()):
                b = r.buf()
                if b is None:
                    raise StorageCorruptError("null sub-txn in a multi")
                txn.subs.append(decode(b))
        else:
            raise StorageCorruptError("unknown txn type %d" % t)
    except (struct.error, UnicodeDecodeError) as e:
        raise StorageCorruptError("malformed txn payload: %s" % e)
    if r.o != len(payload):
        raise StorageCorruptError("txn payload has %d trailing bytes" % (len(payload) - r.o))
    return txn


# The compiled twin (zkpy.proto._fastcodec, not loaded under ZKPY_PURE=1) encodes the common
# txn types and hands the rest (MULTI, CLOSE_SESSION, odd values) to the encoder above; it
# decodes setData, create and delete (what a follower logs per proposal, and the log replay)
# and hands the rest, and anything malformed, to the decoder above.
encode_pure = encode
decode_pure = decode
_fastcodec = compiled.load("_fastcodec")
if _fastcodec is not None:
    _fastcodec.register("txn_encode", encode_pure)
    encode = _fastcodec.txn_encode
    _fastcodec.register("txn_decode", decode_pure)
    _fastcodec.register_txn(Txn)
    decode = _fastcodec.txn_decode
