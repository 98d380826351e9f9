"""Jute binary codec: records <-> bytes, plus the fixed headers, multi and connect helpers.

Owns the byte layout of every record in zkpy.proto.records. Pure: no I/O, no clocks. Anyone may
import it (server, workers, storage for txn records, tests).

Grammar (org.apache.jute.BinaryOutputArchive / BinaryInputArchive, all big-endian)::

    int      := int32
    long     := int64
    boolean  := byte            ; written 0/1, any non-zero byte reads as true (DataInput)
    ustring  := int32 len, len bytes     ; len == -1 means null
    buffer   := int32 len, len bytes     ; len == -1 means null
    vector<T>:= int32 count, count * T   ; count == -1 means null
    record   := its fields in declaration order, no header, no padding

    request frame body := RequestHeader{int xid; int type} [request record]
    reply frame body   := ReplyHeader{int xid; long zxid; int err} [response record if err == 0]
    connect request    := ConnectRequest [boolean readOnly]   ; no header; readOnly optional
    connect response   := ConnectResponse [boolean readOnly]  ; omitted for old clients
    multi request      := { MultiHeader{type, done=false, err=-1} op-record }*
                          MultiHeader{-1, true, -1}
    multi response     := { MultiHeader{type, done=false, err} [result-record] }*
                          MultiHeader{-1, true, -1}

Strings: Java's BinaryOutputArchive encodes each UTF-16 *char* on its own, so a character
outside the BMP goes out as two 3-byte surrogate sequences (CESU-8), not as 4-byte UTF-8. We
copy that byte for byte (golden test "CreateRequest"). On input we accept both forms: standard
UTF-8 (kazoo, the C client) and CESU-8 pairs (the Java client) decode to the same str, and bytes
that are not UTF-8 at all become U+FFFD as in Java's ``new String(b, UTF_8)``. Note that a
CESU-8 reply trips a strict UTF-8 decoder (kazoo) exactly as it does against Apache ZooKeeper.

Errors: anything short, negative (other than the -1 null) or impossible (a vector count larger
than the remaining bytes could hold) raises zkpy.errors.ClientProtocolError naming the record
and offset. Encoding a record whose fields have the wrong Python type is a programming error
and raises whatever struct/AttributeError says.

Speed: encoders and decoders are generated as Python source per record class at import time.
Runs of fixed-size fields, including nested fixed records such as Stat, become one
struct.unpack_from / pack call, and fixed nested records are built inline.
"""

import re
import struct

from zkpy.errors import ClientProtocolError
from zkpy.proto import consts as _c
from zkpy.proto import records as _r
from zkpy import compiled

__all__ = [
    "encode", "encode_into", "decode", "DECODERS", "ENCODERS",
    "decode_request_header", "encode_request_header", "encode_reply_header",
    "decode_reply_header", "encode_reply_frame",
    "decode_connect_request", "encode_connect_request",
    "decode_connect_response", "encode_connect_response",
    "decode_multi", "encode_multi_request", "encode_multi_response", "decode_multi_response",
    "encode_notification",
]

_StructError = struct.error
_unpack_int = struct.Struct(">i").unpack_from
_pack_int = struct.Struct(">i").pack
_NULL = b"\xff\xff\xff\xff"

_FIXED = {"int": "i", "long": "q", "boolean": "?"}
_MIN_SIZE = {"int": 4, "long": 8, "boolean": 1, "ustring": 4, "buffer": 4}


# --- strings, the Java way ----------------------------------------------------------------

_ASTRAL = re.compile("[\U00010000-\U0010ffff]")


def _split_astral(m):
    cp = ord(m.group()) - 0x10000
    return chr(0xD800 + (cp >> 10)) + chr(0xDC00 + (cp & 0x3FF))


def _java_encode(s):
    """UTF-8 per UTF-16 char, as BinaryOutputArchive.stringToByteBuffer does (see docstring)."""
    return _ASTRAL.sub(_split_astral, s).encode("utf-8", "surrogatepass")


def _java_decode(b):
    """Slow path of string decoding, taken only when strict UTF-8 failed."""
    try:
        s = str(b, "utf-8", "surrogatepass")
    except UnicodeDecodeError:
        return str(b, "utf-8", "replace")
    # Re-pair CESU-8 surrogates into real code points; lone halves pass through unchanged.
    return s.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")


# --- error helpers (kept out of the generated code so the happy path stays small) -----------

def _bad_len(rec, what, n, off):
    return ClientProtocolError("%s: invalid %s length %d at offset %d" % (rec, what, n, off))


def _short(rec, what, n, off, end):
    return ClientProtocolError("%s: %s length %d at offset %d exceeds the %d bytes left"
                               % (rec, what, n, off, end - off))


def _bad_count(rec, what, n, off, end):
    return ClientProtocolError("%s: vector %s count %d at offset %d cannot fit in the %d bytes left"
                               % (rec, what, n, off, end - off))


def _truncated(rec, data, off):
    return ClientProtocolError("%s: truncated record starting at offset %d (%d bytes available)"
                               % (rec, off, len(data) - off))


# --- code generation ----------------------------------------------------------------------

def _is_fixed(jtype):
    if jtype in _FIXED:
        return True
    cls = _r.RECORDS.get(jtype)
    return cls is not None and all(_is_fixed(t) for _, t in cls.FIELDS)


def _fixed_fmt(jtype):
    if jtype in _FIXED:
        return _FIXED[jtype]
    return "".join(_fixed_fmt(t) for _, t in _r.RECORDS[jtype].FIELDS)


def _min_size(jtype):
    if jtype in _MIN_SIZE:
        return _MIN_SIZE[jtype]
    if jtype.startswith("vector<"):
        return 4
    return sum(_min_size(t) for _, t in _r.RECORDS[jtype].FIELDS)


class _Gen:
    """Accumulates generated source lines plus the globals they need."""

    def __init__(self, ns):
        self.ns = ns
        self.lines = []
        self.counter = 0

    def tmp(self):
        self.counter += 1
        return "t%d" % self.counter

    def emit(self, depth, line):
        self.lines.append("    " * depth + line)

    def const(self, prefix, value):
        name = "_%s_%d" % (prefix, len(self.ns))
        self.ns[name] = value
        return name

    def struct(self, fmt, method):
        key = "_S_%s_%s" % (method, fmt.replace("?", "b"))
        if key not in self.ns:
            self.ns[key] = getattr(struct.Struct(">" + fmt), method)
        return key


def _class_ref(gen, jtype):
    name = "C_" + jtype
    gen.ns[name] = _r.RECORDS[jtype]
    return name


# Decoding ---------------------------------------------------------------------------------

def _dec_fixed_expr(gen, jtype, leaves):
    """Expression building a fixed field from leaf temporaries (consumed from `leaves`)."""
    if jtype in _FIXED:
        return leaves.pop(0)
    args = [_dec_fixed_expr(gen, t, leaves) for _, t in _r.RECORDS[jtype].FIELDS]
    return "%s(%s)" % (_class_ref(gen, jtype), ", ".join(args))


def _dec_run(gen, depth, run, rec):
    """Decode consecutive fixed fields with one unpack; returns their value expressions."""
    fmt = "".join(_fixed_fmt(t) for t in run)
    leaves = [gen.tmp() for _ in fmt]
    fn = gen.struct(fmt, "unpack_from")
    gen.emit(depth, "%s%s = %s(data, off)" % (", ".join(leaves), "," if len(leaves) == 1 else "",
                                              fn))
    gen.emit(depth, "off += %d" % struct.calcsize(">" + fmt))
    return [_dec_fixed_expr(gen, t, leaves) for t in run]


def _dec_var(gen, depth, jtype, target, rec, what):
    """Emit code decoding one variable-size value of `jtype` into variable `target`."""
    if jtype in _FIXED or _is_fixed(jtype):
        (expr,) = _dec_run(gen, depth, [jtype], rec)
        gen.emit(depth, "%s = %s" % (target, expr))
        return
    if jtype in ("ustring", "buffer"):
        n = gen.tmp()
        gen.emit(depth, "%s, = _unpack_int(data, off)" % n)
        gen.emit(depth, "off += 4")
        gen.emit(depth, "if %s < 0:" % n)
        gen.emit(depth + 1, "if %s != -1:" % n)
        gen.emit(depth + 2, "raise _bad_len(%r, %r, %s, off - 4)" % (rec, what, n))
        gen.emit(depth + 1, "%s = None" % target)
        gen.emit(depth, "else:")
        gen.emit(depth + 1, "if %s > end - off:" % n)
        gen.emit(depth + 2, "raise _short(%r, %r, %s, off, end)" % (rec, what, n))
        if jtype == "buffer":
            gen.emit(depth + 1, "%s = bytes(data[off:off + %s])" % (target, n))
        else:
            gen.emit(depth + 1, "%s = data[off:off + %s]" % (target, n))
            gen.emit(depth + 1, "try:")
            gen.emit(depth + 2, "%s = str(%s, 'utf-8')" % (target, target))
            gen.emit(depth + 1, "except UnicodeDecodeError:")
            gen.emit(depth + 2, "%s = _java_decode(%s)" % (target, target))
        gen.emit(depth + 1, "off += %s" % n)
        return
    if jtype.startswith("vector<"):
        elem = jtype[7:-1]
        n = gen.tmp()
        gen.emit(depth, "%s, = _unpack_int(data, off)" % n)
        gen.emit(depth, "off += 4")
        gen.emit(depth, "if %s < 0:" % n)
        gen.emit(depth + 1, "if %s != -1:" % n)
        gen.emit(depth + 2, "raise _bad_len(%r, %r, %s, off - 4)" % (rec, what, n))
        gen.emit(depth + 1, "%s = None" % target)
        gen.emit(depth, "else:")
        # Every element takes at least _min_size bytes, so a larger count is a lie; checking it
        # up front stops a 2**31 count from allocating or spinning before the data runs out.
        gen.emit(depth + 1, "if %s * %d > end - off:" % (n, _min_size(elem)))
        gen.emit(depth + 2, "raise _bad_count(%r, %r, %s, off - 4, end)" % (rec, what, n))
        if elem in ("int", "long"):
            fmt = _FIXED[elem]
            gen.emit(depth + 1, "%s = list(_struct_unpack_from('>%%d%s' %% %s, data, off))"
                     % (target, fmt, n))
            gen.emit(depth + 1, "off += %d * %s" % (struct.calcsize(fmt), n))
            return
        lst, e = gen.tmp(), gen.tmp()
        gen.emit(depth + 1, "%s = []" % lst)
        gen.emit(depth + 1, "for _ in range(%s):" % n)
        _dec_var(gen, depth + 2, elem, e, rec, what + "[]")
        gen.emit(depth + 2, "%s.append(%s)" % (lst, e))
        gen.emit(depth + 1, "%s = %s" % (target, lst))
        return
    # variable-size nested record: call its own generated decoder
    gen.ns["D_" + jtype] = "D_" + jtype  # placeholder, patched once all decoders exist
    gen.emit(depth, "%s, off = D_%s(data, off)" % (target, jtype))


def _gen_decoder(cls, ns):
    rec = cls.__name__
    gen = _Gen(ns)
    gen.emit(0, "def decode_%s(data, off=0):" % rec)
    gen.emit(1, "start = off")
    gen.emit(1, "end = len(data)")
    gen.emit(1, "try:")
    exprs, run = [], []
    for fname, jtype in cls.FIELDS:
        if _is_fixed(jtype):
            run.append(jtype)
            continue
        if run:
            exprs += _dec_run(gen, 2, run, rec)
            run = []
        target = gen.tmp()
        _dec_var(gen, 2, jtype, target, rec, fname)
        exprs.append(target)
    if run:
        exprs += _dec_run(gen, 2, run, rec)
    gen.emit(1, "except _StructError:")
    gen.emit(2, "raise _truncated(%r, data, start) from None" % rec)
    gen.emit(1, "return %s(%s), off" % (_class_ref(gen, rec), ", ".join(exprs)))
    return "\n".join(gen.lines) + "\n"


# Encoding ---------------------------------------------------------------------------------

def _enc_fixed_leaves(gen, depth, jtype, expr, out):
    """Collect leaf expressions of a fixed value; nested records get bound to a temporary."""
    if jtype in _FIXED:
        out.append(expr)
        return
    t = gen.tmp()
    gen.emit(depth, "%s = %s" % (t, expr))
    for fname, ftype in _r.RECORDS[jtype].FIELDS:
        _enc_fixed_leaves(gen, depth, ftype, "%s.%s" % (t, fname), out)


def _enc_run(gen, depth, run):
    fmt = "".join(_fixed_fmt(t) for t, _ in run)
    leaves = []
    for jtype, expr in run:
        _enc_fixed_leaves(gen, depth, jtype, expr, leaves)
    gen.emit(depth, "buf += %s(%s)" % (gen.struct(fmt, "pack"), ", ".join(leaves)))


def _enc_var(gen, depth, jtype, expr):
    if _is_fixed(jtype):
        _enc_run(gen, depth, [(jtype, expr)])
        return
    if expr.isidentifier():
        v = expr
    else:
        v = gen.tmp()
        gen.emit(depth, "%s = %s" % (v, expr))
    if jtype in ("ustring", "buffer"):
        gen.emit(depth, "if %s is None:" % v)
        gen.emit(depth + 1, "buf += _NULL")
        gen.emit(depth, "else:")
        if jtype == "ustring":
            gen.emit(depth + 1, "%s = %s.encode() if %s.isascii() else _java_encode(%s)"
                     % (v, v, v, v))
        gen.emit(depth + 1, "buf += _pack_int(len(%s))" % v)
        gen.emit(depth + 1, "buf += %s" % v)
        return
    if jtype.startswith("vector<"):
        elem = jtype[7:-1]
        gen.emit(depth, "if %s is None:" % v)
        gen.emit(depth + 1, "buf += _NULL")
        gen.emit(depth, "else:")
        gen.emit(depth + 1, "buf += _pack_int(len(%s))" % v)
        if elem in ("int", "long"):
            gen.emit(depth + 1, "buf += _struct_pack('>%%d%s' %% len(%s), *%s)"
                     % (_FIXED[elem], v, v))
            return
        e = gen.tmp()
        gen.emit(depth + 1, "for %s in %s:" % (e, v))
        _enc_var(gen, depth + 2, elem, e)
        return
    gen.ns["E_" + jtype] = None  # patched once all encoders exist
    gen.emit(depth, "E_%s(buf, %s)" % (jtype, v))


def _gen_encoder(cls, ns):
    rec = cls.__name__
    gen = _Gen(ns)
    gen.emit(0, "def encode_%s(buf, r):" % rec)
    run = []
    for fname, jtype in cls.FIELDS:
        if _is_fixed(jtype):
            run.append((jtype, "r." + fname))
            continue
        if run:
            _enc_run(gen, 1, run)
            run = []
        _enc_var(gen, 1, jtype, "r." + fname)
    if run:
        _enc_run(gen, 1, run)
    return "\n".join(gen.lines) + "\n"


def _compile_all():
    ns = {
        "_StructError": _StructError, "_unpack_int": _unpack_int, "_pack_int": _pack_int,
        "_struct_unpack_from": struct.unpack_from, "_struct_pack": struct.pack,
        "_NULL": _NULL, "_java_encode": _java_encode, "_java_decode": _java_decode,
        "_bad_len": _bad_len, "_short": _short, "_bad_count": _bad_count,
        "_truncated": _truncated,
    }
    sources = {}
    for name, cls in _r.RECORDS.items():
        src = _gen_decoder(cls, ns) + "\n" + _gen_encoder(cls, ns)
        sources[name] = src
        exec(compile(src, "<zkpy.proto.codec:%s>" % name, "exec"), ns)  # noqa: S102
    decoders, encoders = {}, {}
    for name, cls in _r.RECORDS.items():
        decoders[cls] = ns["D_" + name] = ns["decode_" + name]
        encoders[cls] = ns["E_" + name] = ns["encode_" + name]
    return decoders, encoders, sources


DECODERS, ENCODERS, _SOURCES = _compile_all()
"""DECODERS[cls](data, off=0) -> (record, new_off); ENCODERS[cls](bytearray, record).
Both are the generated functions themselves: cache them on hot paths."""


# --- generic entry points -----------------------------------------------------------------

def encode(record):
    """Serialize one record to bytes."""
    buf = bytearray()
    ENCODERS[type(record)](buf, record)
    return bytes(buf)


def encode_into(buf, record):
    """Append one record's bytes to a bytearray (avoids a copy when building frames)."""
    ENCODERS[type(record)](buf, record)


def decode(cls, data, offset=0):
    """Decode one `cls` record from bytes/bytearray/memoryview at `offset`.

    Returns (record, new_offset). Raises ClientProtocolError for any malformed input.
    """
    if offset < 0 or offset > len(data):
        raise ClientProtocolError("%s: offset %d outside a %d-byte buffer"
                                  % (cls.__name__, offset, len(data)))
    return DECODERS[cls](data, offset)


def source_of(cls):
    """The generated decoder/encoder source for `cls` (for debugging and review)."""
    return _SOURCES[cls.__name__]


# --- fixed headers ------------------------------------------------------------------------

_unpack_ii = struct.Struct(">ii").unpack_from
_pack_ii = struct.Struct(">ii").pack
_REPLY = struct.Struct(">iqi")
_unpack_reply = _REPLY.unpack_from
_pack_reply = _REPLY.pack
_pack_into_int = struct.Struct(">i").pack_into


def decode_request_header(buf, off=0):
    """RequestHeader{int xid; int type} -> (xid, type, new_off)."""
    try:
        xid, op = _unpack_ii(buf, off)
    except _StructError:
        raise _truncated("RequestHeader", buf, off) from None
    return xid, op, off + 8


def encode_request_header(xid, op):
    return _pack_ii(xid, op)


def encode_reply_header(xid, zxid, err):
    """ReplyHeader{int xid; long zxid; int err} as 16 bytes."""
    return _pack_reply(xid, zxid, err)


def decode_reply_header(buf, off=0):
    """ReplyHeader -> (xid, zxid, err, new_off)."""
    try:
        xid, zxid, err = _unpack_reply(buf, off)
    except _StructError:
        raise _truncated("ReplyHeader", buf, off) from None
    return xid, zxid, err, off + 16


def encode_reply_frame(xid, zxid, err, record=None):
    """A whole reply frame: int32 length + ReplyHeader + record (if given), in one buffer."""
    buf = bytearray(b"\0\0\0\0")
    buf += _pack_reply(xid, zxid, err)
    if record is not None:
        ENCODERS[type(record)](buf, record)
    _pack_into_int(buf, 0, len(buf) - 4)
    return bytes(buf)


_WATCHER_PREFIX = struct.Struct(">iqiiii")


def encode_notification(zxid, event_type, state, path):
    """Frame body (no length prefix) of a watch event: ReplyHeader{-1, zxid, 0} + WatcherEvent.

    zxid is the zxid that fired the watch (3.9 behaviour, ZOOKEEPER-4655); 3.8 servers sent -1.
    """
    p = path.encode() if path.isascii() else _java_encode(path)
    return _WATCHER_PREFIX.pack(_c.XID_NOTIFICATION, zxid, 0, event_type, state, len(p)) + p


# --- connect handshake --------------------------------------------------------------------

def _read_only_tail(data, off):
    # The readOnly byte was added in 3.4; older clients end the record without it, and the Java
    # server then treats the client as "old" (ZooKeeperServer.processConnectRequest).
    if off < len(data):
        return data[off] != 0, off + 1
    return None, off


def decode_connect_request(data, offset=0):
    """ConnectRequest [+ readOnly] -> (ConnectRequest, read_only).

    read_only is True/False when the client sent the byte, None for an old client that did
    not (treat None as False, and omit readOnly in the answer: see encode_connect_response).
    Bytes after the readOnly byte are ignored, as Java does.
    """
    req, off = decode(_r.ConnectRequest, data, offset)
    read_only, _ = _read_only_tail(data, off)
    return req, read_only


def encode_connect_request(req, read_only=False):
    """ConnectRequest [+ readOnly]; read_only=None omits the byte (pre-3.4 client)."""
    buf = bytearray()
    ENCODERS[_r.ConnectRequest](buf, req)
    if read_only is not None:
        buf.append(1 if read_only else 0)
    return bytes(buf)


def encode_connect_response(resp, read_only=False):
    """ConnectResponse [+ readOnly]; pass read_only=None to an old client (no byte)."""
    buf = bytearray()
    ENCODERS[_r.ConnectResponse](buf, resp)
    if read_only is not None:
        buf.append(1 if read_only else 0)
    return bytes(buf)


def decode_connect_response(data, offset=0):
    """ConnectResponse [+ readOnly] -> (ConnectResponse, read_only or None)."""
    resp, off = decode(_r.ConnectResponse, data, offset)
    read_only, _ = _read_only_tail(data, off)
    return resp, read_only


# --- multi / multiRead --------------------------------------------------------------------

_MULTI_HEADER = struct.Struct(">i?i")
_unpack_mh = _MULTI_HEADER.unpack_from
_pack_mh = _MULTI_HEADER.pack
_MULTI_END = _pack_mh(-1, True, -1)
_MULTI_REQ_DEC = {op: DECODERS[cls] for op, cls in _r.MULTI_REQUEST_RECORDS.items()}
_MULTI_RSP_DEC = {op: (DECODERS[cls] if cls else None)
                  for op, cls in _r.MULTI_RESPONSE_RECORDS.items()}
# createTTL/createContainer results go out as create2: see records.MULTI_RESPONSE_RECORDS.
_MULTI_RESULT_TYPE = {_c.OP_CREATE_TTL: _c.OP_CREATE2, _c.OP_CREATE_CONTAINER: _c.OP_CREATE2}


def decode_multi(data, offset=0):
    """Multi/multiRead request body -> [(op_type, request record), ...].

    Follows MultiOperationRecord.deserialize: read MultiHeaders until done=true; a type outside
    MULTI_REQUEST_RECORDS is a protocol error. Whether the op kinds suit multi or multiRead is
    for the server to judge, not the codec.
    """
    ops = []
    off = offset
    end = len(data)
    while True:
        if off + 9 > end:
            raise ClientProtocolError("multi: missing end marker (MultiHeader at offset %d, "
                                      "%d bytes left)" % (off, end - off))
        op, done, _err = _unpack_mh(data, off)
        off += 9
        if done:
            return ops
        dec = _MULTI_REQ_DEC.get(op)
        if dec is None:
            raise ClientProtocolError("multi: invalid op type %d at offset %d" % (op, off - 9))
        rec, off = dec(data, off)
        ops.append((op, rec))


def encode_multi_request(ops):
    """[(op_type, record), ...] -> multi request body (what a client sends; used by tests)."""
    buf = bytearray()
    for op, rec in ops:
        buf += _pack_mh(op, False, -1)
        ENCODERS[type(rec)](buf, rec)
    buf += _MULTI_END
    return bytes(buf)


def encode_multi_response(results):
    """[(op_type, err, record_or_None), ...] -> multi response body (MultiResponse.serialize).

    A result is an error result when op_type == OP_ERROR (-1) or err != 0; it is written as
    MultiHeader{-1, false, err} + ErrorResponse{err} whatever the record. A failed atomic multi
    therefore passes (OP_ERROR, 0, None) for the ops before the failing one, (OP_ERROR or the
    op, code, None) for the failing one and (OP_ERROR, RUNTIMEINCONSISTENCY, None) after it.
    Successful results write MultiHeader{type, false, 0} + the record (None for delete/check).
    """
    buf = bytearray()
    for op, err, rec in results:
        if op == _c.OP_ERROR or err:
            buf += _pack_mh(-1, False, err)
            buf += _pack_int(err)
            continue
        buf += _pack_mh(_MULTI_RESULT_TYPE.get(op, op), False, 0)
        if rec is not None:
            ENCODERS[type(rec)](buf, rec)
    buf += _MULTI_END
    return bytes(buf)


def decode_multi_response(data, offset=0):
    """Multi response body -> [(op_type, err, record_or_None), ...] (clients and tests)."""
    results = []
    off = offset
    end = len(data)
    while True:
        if off + 9 > end:
            raise ClientProtocolError("multi response: missing end marker at offset %d" % off)
        op, done, err = _unpack_mh(data, off)
        off += 9
        if done:
            return results
        if op not in _MULTI_RSP_DEC:
            raise ClientProtocolError("multi response: invalid result type %d at offset %d"
                                      % (op, off - 9))
        dec = _MULTI_RSP_DEC[op]
        rec = None
        if dec is not None:
            rec, off = dec(data, off)
            if op == _c.OP_ERROR:
                err = rec.err
        results.append((op, err, rec))


# --- compiled twins -----------------------------------------------------------------------
# zkpy.proto._fastcodec (Cython; not loaded under ZKPY_PURE=1) takes over the write requests'
# decoders and encode_reply_frame for the common case and hands everything else (errors,
# non-ASCII strings, other records) to the pure functions above, kept as *_pure.

encode_reply_frame_pure = encode_reply_frame
DECODERS_PURE = dict(DECODERS)
_fastcodec = compiled.load("_fastcodec")
if _fastcodec is not None:
    _fastcodec.register_records(_r.CreateRequest, _r.SetDataRequest, _r.DeleteRequest, _r.ACL,
                                _r.Id, _r.CreateResponse, _r.Create2Response,
                                _r.SetDataResponse)
    _fastcodec.register_stat(_r.Stat)
    for _cls, _fast in ((_r.CreateRequest, _fastcodec.decode_create_request),
                        (_r.SetDataRequest, _fastcodec.decode_set_data_request),
                        (_r.DeleteRequest, _fastcodec.decode_delete_request)):
        _fastcodec.register(_cls.__name__, DECODERS[_cls])
        DECODERS[_cls] = _fast
    _fastcodec.register("encode_reply_frame", encode_reply_frame_pure)
    encode_reply_frame = _fastcodec.encode_reply_frame
