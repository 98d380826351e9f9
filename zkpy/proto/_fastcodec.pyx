# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""Compiled twins of the byte codecs on the core's write path. Each function here has a pure
twin and gives byte-for-byte the same answer (tests/unit/test_fastcodec.py runs both):

    txn_encode(txn)                             zkpy.tree.txns.encode
    txn_decode(payload)                         zkpy.tree.txns.decode
    decode_create_request / _set_data_ / _delete_(data, off)
                                                zkpy.proto.codec.DECODERS[...]
    encode_reply_frame(xid, zxid, err, record)  zkpy.proto.codec.encode_reply_frame
    node_reply_frame(xid, zxid, path, node)     zkpy.server.core.node_reply_frame
    create_ / set_data_ / delete_request_fields(data)
                                                zkpy.server.core's *_request_fields
    write_request_ok(op, data, off)             (those decoders succeed: the worker's check)
    split_frames(data, need, max_len)           zkpy.proto.framing.FrameDecoder.feed's loop
    ipc_decode(frame), ipc_batch(zxid, events, replies), ipc_request(...)
                                                zkpy.workers.ipc.decode / batch / request
    log_records(records, last_zxid)             zkpy.storage.txnlog.encode_records
    copy_node(node)                             zkpy.tree.node.Node.copy

Each does the common case in C and hands anything else (an error to report, a non-ASCII string
the Java encoding must split, a rare record or txn type) to its pure twin, which the pure module
registers with `register()` when it installs the compiled one. So the error paths, messages and
rare cases are the pure code's, and this file stays small.

Not loaded when ZKPY_PURE=1 (the pure modules then keep their own functions), as every zkpy
accelerator.
"""

import os

if os.environ.get("ZKPY_PURE") == "1":
    raise ImportError("ZKPY_PURE=1: compiled codecs disabled")

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.object cimport PyObject
from cpython.unicode cimport PyUnicode_DecodeUTF8
from libc.string cimport memcpy

cdef extern from "crc32c.h":   # csrc/crc32c.c, compiled into this module (setup.py)
    unsigned int zkpy_crc32c(unsigned int crc, const unsigned char* buf, size_t len) nogil

from zkpy._slots cimport slot_get, slot_init, slot_offsets

cdef extern from "Python.h":
    const char* PyUnicode_AsUTF8AndSize(object s, Py_ssize_t* size) except NULL
    bint PyUnicode_IS_ASCII(object s)
    long long PyLong_AsLongLongAndOverflow(object v, int* overflow) except? -1

_pure = {}


def register(name, fn):
    """The pure twin `name` falls back to for anything but the common case."""
    _pure[name] = fn


# ---------------------------------------------------------------- big-endian helpers

cdef inline void _w64(unsigned char* p, long long v) noexcept nogil:
    cdef unsigned long long u = <unsigned long long>v
    p[0] = (u >> 56) & 0xFF
    p[1] = (u >> 48) & 0xFF
    p[2] = (u >> 40) & 0xFF
    p[3] = (u >> 32) & 0xFF
    p[4] = (u >> 24) & 0xFF
    p[5] = (u >> 16) & 0xFF
    p[6] = (u >> 8) & 0xFF
    p[7] = u & 0xFF


cdef inline void _w32(unsigned char* p, long long v) noexcept nogil:
    cdef unsigned int u = <unsigned int>v
    p[0] = (u >> 24) & 0xFF
    p[1] = (u >> 16) & 0xFF
    p[2] = (u >> 8) & 0xFF
    p[3] = u & 0xFF


cdef inline long long _r64(const unsigned char* p) noexcept nogil:
    return <long long>((<unsigned long long>p[0] << 56) | (<unsigned long long>p[1] << 48) |
                       (<unsigned long long>p[2] << 40) | (<unsigned long long>p[3] << 32) |
                       (<unsigned long long>p[4] << 24) | (<unsigned long long>p[5] << 16) |
                       (<unsigned long long>p[6] << 8) | <unsigned long long>p[7])


cdef inline int _r32(const unsigned char* p) noexcept nogil:
    return <int>((<unsigned int>p[0] << 24) | (<unsigned int>p[1] << 16) |
                 (<unsigned int>p[2] << 8) | <unsigned int>p[3])


cdef inline unsigned int _ru32(const unsigned char* p) noexcept nogil:
    return ((<unsigned int>p[0] << 24) | (<unsigned int>p[1] << 16) |
            (<unsigned int>p[2] << 8) | <unsigned int>p[3])


cdef inline int _i32_ok(object v) except -1:
    """v fits the struct format "i" (else the pure twin raises struct.error as before)."""
    cdef int overflow = 0
    if type(v) is not int:
        return 0
    cdef long long x = PyLong_AsLongLongAndOverflow(v, &overflow)
    return overflow == 0 and -2147483648 <= x <= 2147483647


cdef inline int _i64_ok(object v) except -1:
    cdef int overflow = 0
    if type(v) is not int:
        return 0
    PyLong_AsLongLongAndOverflow(v, &overflow)
    return overflow == 0


# A growable output buffer: a bytes object written in place, resized at the end.
cdef class _Out:
    cdef bytearray buf
    cdef Py_ssize_t n

    def __cinit__(self):
        self.buf = bytearray(256)
        self.n = 0

    cdef unsigned char* room(self, Py_ssize_t k) except NULL:
        cdef Py_ssize_t need = self.n + k
        cdef Py_ssize_t cap = len(self.buf)
        if need > cap:
            while cap < need:
                cap *= 2
            self.buf.extend(bytes(cap - len(self.buf)))
        cdef unsigned char* p = <unsigned char*>(<char*>self.buf) + self.n
        self.n = need
        return p

    cdef void i32(self, long long v) except *:
        _w32(self.room(4), v)

    cdef void i64(self, long long v) except *:
        _w64(self.room(8), v)

    cdef void raw(self, const char* s, Py_ssize_t k) except *:
        if k > 0:
            memcpy(self.room(k), s, k)

    cdef void utf8(self, object s) except *:
        cdef Py_ssize_t k
        cdef const char* c = PyUnicode_AsUTF8AndSize(s, &k)
        self.i32(k)
        self.raw(c, k)

    cdef void blob(self, bytes b) except *:
        self.i32(PyBytes_GET_SIZE(b))
        self.raw(PyBytes_AS_STRING(b), PyBytes_GET_SIZE(b))

    cdef bytes result(self):
        return PyBytes_FromStringAndSize(<char*>self.buf, self.n)


# ---------------------------------------------------------------- txns.encode

cdef enum:
    T_CREATE = 1
    T_DELETE = 2
    T_SET_DATA = 5
    T_SET_ACL = 7
    T_ERROR = -1
    T_CHECK = 13
    T_CREATE_SESSION = -10


cdef int _txn_ok(txn):
    """The fields this encoder writes have the types the pure one accepts silently."""
    t = txn.type
    if not (_i64_ok(txn.session_id) and _i32_ok(txn.cxid) and _i64_ok(txn.time_ms)):
        return 0
    if t == T_CREATE or t == T_SET_DATA or t == T_DELETE or t == T_CHECK or t == T_SET_ACL:
        if type(txn.path) is not str:
            return 0
    if t == T_CREATE or t == T_SET_DATA:
        d = txn.data
        if d is not None and type(d) is not bytes:
            return 0
    if t == T_CREATE or t == T_SET_ACL:
        acl = txn.acl
        if type(acl) is not tuple and type(acl) is not list:
            return 0
        for e in acl:
            if type(e) is not tuple or len(e) != 3 or not _i32_ok(e[0]) \
                    or type(e[1]) is not str or type(e[2]) is not str:
                return 0
    if t == T_CREATE:
        return _i64_ok(txn.ephemeral_owner)
    if t == T_SET_DATA or t == T_CHECK or t == T_SET_ACL:
        return _i32_ok(txn.version)
    if t == T_ERROR:
        return _i32_ok(txn.err)
    if t == T_CREATE_SESSION:
        return _i32_ok(txn.timeout_ms)
    return t == T_DELETE


cdef object _common_txn(txn, long t):
    """A CREATE, SET_DATA or DELETE txn sized first and written into one bytes object (the
    core's write path); None when any field is odd: the general encoder below decides."""
    sid = txn.session_id
    cxid = txn.cxid
    tm = txn.time_ms
    path = txn.path
    if not (_i64_ok(sid) and _i32_ok(cxid) and _i64_ok(tm)) or type(path) is not str:
        return None
    cdef Py_ssize_t plen, dlen = -1, k, size
    cdef const char* pc = PyUnicode_AsUTF8AndSize(path, &plen)
    size = 22 + 4 + plen
    data = None
    acl = None
    owner = 0
    version = 0
    if t != T_DELETE:
        data = txn.data
        if data is not None:
            if type(data) is not bytes:
                return None
            dlen = PyBytes_GET_SIZE(data)
        size += 4 + (dlen if dlen > 0 else 0)
        if t == T_SET_DATA:
            version = txn.version
            if not _i32_ok(version):
                return None
            size += 4
        else:
            acl = txn.acl
            owner = txn.ephemeral_owner
            if (type(acl) is not tuple and type(acl) is not list) or not _i64_ok(owner):
                return None
            size += 4 + 8
            for e in acl:
                if type(e) is not tuple or len(e) != 3 or not _i32_ok(e[0]) \
                        or type(e[1]) is not str or type(e[2]) is not str:
                    return None
                PyUnicode_AsUTF8AndSize(e[1], &k)
                size += 12 + k
                PyUnicode_AsUTF8AndSize(e[2], &k)
                size += k
    cdef bytes out = PyBytes_FromStringAndSize(NULL, size)
    cdef unsigned char* p = <unsigned char*>PyBytes_AS_STRING(out)
    cdef unsigned int tt = <unsigned int>t
    p[0] = (tt >> 8) & 0xFF
    p[1] = tt & 0xFF
    _w64(p + 2, sid)
    _w32(p + 10, cxid)
    _w64(p + 14, tm)
    cdef Py_ssize_t o = 22
    _w32(p + o, plen)
    memcpy(p + o + 4, pc, plen)
    o += 4 + plen
    if t == T_DELETE:
        return out
    _w32(p + o, dlen)
    o += 4
    if dlen > 0:
        memcpy(p + o, PyBytes_AS_STRING(data), dlen)
        o += dlen
    if t == T_SET_DATA:
        _w32(p + o, version)
        return out
    _w32(p + o, len(acl))
    o += 4
    cdef const char* c
    for e in acl:
        _w32(p + o, e[0])
        c = PyUnicode_AsUTF8AndSize(e[1], &k)
        _w32(p + o + 4, k)
        memcpy(p + o + 8, c, k)
        o += 8 + k
        c = PyUnicode_AsUTF8AndSize(e[2], &k)
        _w32(p + o, k)
        memcpy(p + o + 4, c, k)
        o += 4 + k
    _w64(p + o, owner)
    return out


def txn_encode(txn):
    t = txn.type
    if type(t) is int and (t == T_SET_DATA or t == T_CREATE or t == T_DELETE):
        out = _common_txn(txn, t)
        if out is not None:
            return out
    if not (type(t) is int and t in (T_CREATE, T_DELETE, T_SET_DATA, T_SET_ACL, T_ERROR,
                                     T_CHECK, T_CREATE_SESSION)) or not _txn_ok(txn):
        return _pure["txn_encode"](txn)  # MULTI, CLOSE_SESSION, anything odd
    cdef _Out o = _Out()
    cdef unsigned char* p = o.room(22)
    cdef unsigned int tt = <unsigned int><int>t
    p[0] = (tt >> 8) & 0xFF
    p[1] = tt & 0xFF
    _w64(p + 2, txn.session_id)
    _w32(p + 10, txn.cxid)
    _w64(p + 14, txn.time_ms)
    if t == T_CREATE or t == T_SET_DATA:
        o.utf8(txn.path)
        d = txn.data
        if d is None:
            o.i32(-1)
        else:
            o.blob(d)
        if t == T_CREATE:
            _acl(o, txn.acl)
            o.i64(txn.ephemeral_owner)
        else:
            o.i32(txn.version)
    elif t == T_DELETE:
        o.utf8(txn.path)
    elif t == T_SET_ACL:
        o.utf8(txn.path)
        _acl(o, txn.acl)
        o.i32(txn.version)
    elif t == T_ERROR:
        o.i32(txn.err)
    elif t == T_CHECK:
        o.utf8(txn.path)
        o.i32(txn.version)
    else:
        o.i32(txn.timeout_ms)
    return o.result()


# ---------------------------------------------------------------- txns.decode

cdef object _Txn = None


def register_txn(txn_cls):
    """zkpy.tree.txns.Txn, the class txn_decode builds."""
    global _Txn
    _Txn = txn_cls


cdef inline Py_ssize_t _field(const unsigned char* p, Py_ssize_t o, Py_ssize_t n) noexcept:
    """The length of the buf field at o (-1: null), or -2 when it does not fit in n bytes."""
    cdef int k
    if o + 4 > n:
        return -2
    k = _r32(p + o)
    if k == -1:
        return -1
    if k < 0 or o + 4 + k > n:
        return -2
    return k


def txn_decode(payload):
    """zkpy.tree.txns.decode for the txns of a follower's stream and the log replay: setData,
    create and delete here; every other type, and anything malformed (so its error), by the
    pure twin."""
    txn = None
    if type(payload) is bytes and _Txn is not None:
        try:
            txn = _common_txn_decode(payload)
        except UnicodeDecodeError:
            pass
    return txn if txn is not None else _pure["txn_decode"](payload)


cdef object _common_txn_decode(bytes payload):
    """The txn, or None: not setData / create / delete, or not well formed."""
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(payload)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(payload)
    cdef Py_ssize_t o = 22
    cdef Py_ssize_t k
    cdef int t, count, i
    if n < 22:
        return None
    t = <short>((<unsigned int>p[0] << 8) | <unsigned int>p[1])
    if t != T_SET_DATA and t != T_CREATE and t != T_DELETE:
        return None
    k = _field(p, o, n)
    if k < 0:
        return None   # a null or malformed path
    path = PyUnicode_DecodeUTF8(<char*>p + o + 4, k, NULL)
    o += 4 + k
    if t == T_DELETE:
        if o != n:
            return None
        return _Txn(t, _r64(p + 2), _r32(p + 10), _r64(p + 14), path)
    k = _field(p, o, n)
    if k == -2:
        return None
    data = None if k == -1 else PyBytes_FromStringAndSize(<char*>p + o + 4, k)
    o += 4 + (k if k > 0 else 0)
    if t == T_SET_DATA:
        if o + 4 != n:
            return None
        return _Txn(t, _r64(p + 2), _r32(p + 10), _r64(p + 14), path, data, None, 0,
                    _r32(p + o))
    if o + 4 > n:
        return None
    count = _r32(p + o)
    o += 4
    if count < 0 or count > (n - o) // 12:
        return None
    acl = []
    for i in range(count):
        if o + 4 > n:
            return None
        perms = _r32(p + o)
        o += 4
        k = _field(p, o, n)
        if k < 0:
            return None
        scheme = PyUnicode_DecodeUTF8(<char*>p + o + 4, k, NULL)
        o += 4 + k
        k = _field(p, o, n)
        if k < 0:
            return None
        ident = PyUnicode_DecodeUTF8(<char*>p + o + 4, k, NULL)
        o += 4 + k
        acl.append((perms, scheme, ident))
    if o + 8 != n:
        return None
    return _Txn(t, _r64(p + 2), _r32(p + 10), _r64(p + 14), path, data, tuple(acl),
                _r64(p + o))


cdef void _acl(_Out o, acl) except *:
    o.i32(len(acl))
    for perms, scheme, ident in acl:
        o.i32(perms)
        o.utf8(scheme)
        o.utf8(ident)


# ---------------------------------------------------------------- request decoders

cdef object _C_create = None
cdef object _C_set_data = None
cdef object _C_delete = None
cdef object _C_acl = None
cdef object _C_id = None
cdef object _C_create_resp = None
cdef object _C_create2_resp = None
cdef object _C_set_data_resp = None
cdef object _C_stat = None


def register_records(create, set_data, delete, acl, ident, create_resp, create2_resp,
                     set_data_resp):
    global _C_create, _C_set_data, _C_delete, _C_acl, _C_id
    global _C_create_resp, _C_create2_resp, _C_set_data_resp
    _C_create, _C_set_data, _C_delete, _C_acl, _C_id = create, set_data, delete, acl, ident
    _C_create_resp, _C_create2_resp, _C_set_data_resp = create_resp, create2_resp, set_data_resp


cdef inline object _ustr(const unsigned char* p, Py_ssize_t* off, Py_ssize_t end):
    """A ustring at *off, valid strict UTF-8, or raise _Fallback (null, short, not UTF-8)."""
    if end - off[0] < 4:
        raise _Fallback()
    cdef int n = _r32(p + off[0])
    if n < 0 or n > end - off[0] - 4:
        raise _Fallback()
    try:
        s = PyUnicode_DecodeUTF8(<const char*>(p + off[0] + 4), n, NULL)
    except UnicodeDecodeError:
        raise _Fallback()
    off[0] += 4 + n
    return s


cdef inline object _buf(const unsigned char* p, Py_ssize_t* off, Py_ssize_t end):
    if end - off[0] < 4:
        raise _Fallback()
    cdef int n = _r32(p + off[0])
    if n == -1:
        off[0] += 4
        return None
    if n < 0 or n > end - off[0] - 4:
        raise _Fallback()
    b = PyBytes_FromStringAndSize(<const char*>(p + off[0] + 4), n)
    off[0] += 4 + n
    return b


cdef inline int _int(const unsigned char* p, Py_ssize_t* off, Py_ssize_t end) except? -1:
    if end - off[0] < 4:
        raise _Fallback()
    cdef int v = _r32(p + off[0])
    off[0] += 4
    return v


class _Fallback(Exception):
    pass


cdef tuple _create_parts(const unsigned char* p, Py_ssize_t* o, Py_ssize_t end):
    """CreateRequest's fields from p[o:end]: (path, data, [(perms, scheme, id)], flags);
    raises _Fallback for anything the pure decoder should judge."""
    cdef int count, i, perms
    path = _ustr(p, o, end)
    value = _buf(p, o, end)
    count = _int(p, o, end)
    if count < 0 or <Py_ssize_t>count * 12 > end - o[0]:
        raise _Fallback()
    acl = []
    for i in range(count):
        perms = _int(p, o, end)
        scheme = _ustr(p, o, end)
        ident = _ustr(p, o, end)
        acl.append((perms, scheme, ident))
    flags = _int(p, o, end)
    return path, value, acl, flags


def decode_create_request(data, off=0):
    cdef Py_ssize_t o = off
    if type(data) is not bytes or o < 0 or o > len(data):
        return _pure["CreateRequest"](data, off)
    try:
        path, value, acl, flags = _create_parts(
            <const unsigned char*>PyBytes_AS_STRING(data), &o, PyBytes_GET_SIZE(data))
    except _Fallback:
        return _pure["CreateRequest"](data, off)
    return _C_create(path, value, [_C_acl(perms, _C_id(scheme, ident))
                                   for perms, scheme, ident in acl], flags), o


def create_request_fields(data):
    """A whole CreateRequest body as (path, data, [(perms, scheme, id)], flags), without the
    records: the core's prep takes these fields. None for anything the record decoder should
    judge (odd strings, lengths, trailing bytes): the pure twin always answers None."""
    if type(data) is not bytes:
        return None
    cdef Py_ssize_t o = 0
    cdef Py_ssize_t end = PyBytes_GET_SIZE(data)
    try:
        fields = _create_parts(<const unsigned char*>PyBytes_AS_STRING(data), &o, end)
    except _Fallback:
        return None
    return fields if o == end else None


cdef tuple _set_data_parts(const unsigned char* p, Py_ssize_t* o, Py_ssize_t end):
    """(path, data, version) of a SetDataRequest at p[o:]; raises _Fallback."""
    path = _ustr(p, o, end)
    value = _buf(p, o, end)
    return (path, value, _int(p, o, end))


cdef tuple _delete_parts(const unsigned char* p, Py_ssize_t* o, Py_ssize_t end):
    """(path, version) of a DeleteRequest at p[o:]; raises _Fallback."""
    path = _ustr(p, o, end)
    return (path, _int(p, o, end))


def set_data_request_fields(data):
    """A whole SetDataRequest body as (path, data, version), without the record; None for
    anything the record decoder should judge (the pure twin decodes the record)."""
    return _whole(data, 0)


def delete_request_fields(data):
    """A whole DeleteRequest body as (path, version), as set_data_request_fields."""
    return _whole(data, 1)


cdef object _whole(data, int kind):
    if type(data) is not bytes:
        return None
    cdef Py_ssize_t o = 0
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(data)
    cdef Py_ssize_t end = PyBytes_GET_SIZE(data)
    try:
        fields = _set_data_parts(p, &o, end) if kind == 0 else _delete_parts(p, &o, end)
    except _Fallback:
        return None
    return fields if o == end else None


def decode_set_data_request(data, off=0):
    cdef Py_ssize_t o = off
    if type(data) is not bytes or o < 0 or o > len(data):
        return _pure["SetDataRequest"](data, off)
    try:
        fields = _set_data_parts(<const unsigned char*>PyBytes_AS_STRING(data), &o,
                                 PyBytes_GET_SIZE(data))
    except _Fallback:
        return _pure["SetDataRequest"](data, off)
    return _C_set_data(*fields), o


def decode_delete_request(data, off=0):
    cdef Py_ssize_t o = off
    if type(data) is not bytes or o < 0 or o > len(data):
        return _pure["DeleteRequest"](data, off)
    try:
        fields = _delete_parts(<const unsigned char*>PyBytes_AS_STRING(data), &o,
                               PyBytes_GET_SIZE(data))
    except _Fallback:
        return _pure["DeleteRequest"](data, off)
    return _C_delete(*fields), o


cdef inline bint _utf8_ok(const unsigned char* c, Py_ssize_t n) except -1:
    """c[:n] is strict UTF-8 (ASCII checked here, anything else by the UTF-8 decoder: rare)."""
    cdef Py_ssize_t i
    for i in range(n):
        if c[i] & 0x80:
            try:
                PyUnicode_DecodeUTF8(<const char*>c, n, NULL)
            except UnicodeDecodeError:
                return 0
            return 1
    return 1


cdef inline bint _skip_ustr(const unsigned char* p, Py_ssize_t* off, Py_ssize_t end) except -1:
    """Step over a ustring that _ustr decodes (not null, in bounds, strict UTF-8); 0 if not."""
    if end - off[0] < 4:
        return 0
    cdef int n = _r32(p + off[0])
    if n < 0 or n > end - off[0] - 4:
        return 0
    if not _utf8_ok(p + off[0] + 4, n):
        return 0
    off[0] += 4 + n
    return 1


cdef inline bint _skip_buf(const unsigned char* p, Py_ssize_t* off, Py_ssize_t end) noexcept:
    if end - off[0] < 4:
        return 0
    cdef int n = _r32(p + off[0])
    if n == -1:
        off[0] += 4
        return 1
    if n < 0 or n > end - off[0] - 4:
        return 0
    off[0] += 4 + n
    return 1


def write_request_ok(op, data, off):
    """True when the CreateRequest (op create, create2, createContainer), SetDataRequest or
    DeleteRequest at data[off:] is one that decode_create_request / _set_data_ / _delete_
    decode themselves (so their pure twins decode it without an error), checked without
    building the record: the worker's check of a write before it forwards the bytes. False:
    anything else (another op, an odd or bad request): ask the decoder, which raises on garbage."""
    if type(data) is not bytes or type(op) is not int or type(off) is not int:
        return False
    if off < 0 or off > PyBytes_GET_SIZE(data):
        return False
    cdef Py_ssize_t o = off
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(data)
    cdef Py_ssize_t end = PyBytes_GET_SIZE(data)
    cdef int count, i
    if op == 1 or op == 15 or op == 19:
        if not _skip_ustr(p, &o, end) or not _skip_buf(p, &o, end) or end - o < 4:
            return False
        count = _r32(p + o)
        o += 4
        if count < 0 or <Py_ssize_t>count * 12 > end - o:
            return False
        for i in range(count):
            if end - o < 4:
                return False
            o += 4
            if not _skip_ustr(p, &o, end) or not _skip_ustr(p, &o, end):
                return False
        return end - o >= 4
    if op == 5:
        return _skip_ustr(p, &o, end) and _skip_buf(p, &o, end) and end - o >= 4
    if op == 2:
        return _skip_ustr(p, &o, end) and end - o >= 4
    return False


# ---------------------------------------------------------------- client framing

def split_frames(data, Py_ssize_t need, Py_ssize_t max_len):
    """FrameDecoder.feed's loop over a bytes chunk when nothing is held back: (frames, off,
    need) - the frame bodies whole in `data`, where the rest of it starts, and the body length
    that rest is the start of (-1: a length is next). `need` is what the decoder still needs
    (-1 or a length already read). None for a length out of range: the pure loop reports it."""
    if type(data) is not bytes:
        return None
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(data)
    cdef Py_ssize_t end = PyBytes_GET_SIZE(data)
    cdef Py_ssize_t off = 0
    out = []
    while True:
        if need < 0:
            if end - off < 4:
                break
            need = _r32(p + off)
            if need < 0 or need > max_len:
                return None
            off += 4
        if end - off < need:
            break
        out.append(PyBytes_FromStringAndSize(<const char*>(p + off), need))
        off += need
        need = -1
    return out, off, need


# ---------------------------------------------------------------- reply frames

cdef int _stat_ok(st):
    return (_i64_ok(st.czxid) and _i64_ok(st.mzxid) and _i64_ok(st.ctime) and
            _i64_ok(st.mtime) and _i32_ok(st.version) and _i32_ok(st.cversion) and
            _i32_ok(st.aversion) and _i64_ok(st.ephemeralOwner) and _i32_ok(st.dataLength) and
            _i32_ok(st.numChildren) and _i64_ok(st.pzxid))


cdef void _stat(unsigned char* p, st) except *:
    _w64(p, st.czxid)
    _w64(p + 8, st.mzxid)
    _w64(p + 16, st.ctime)
    _w64(p + 24, st.mtime)
    _w32(p + 32, st.version)
    _w32(p + 36, st.cversion)
    _w32(p + 40, st.aversion)
    _w64(p + 44, st.ephemeralOwner)
    _w32(p + 52, st.dataLength)
    _w32(p + 56, st.numChildren)
    _w64(p + 60, st.pzxid)


def encode_reply_frame(xid, zxid, err, record=None):
    """int32 length + ReplyHeader{xid, zxid, err} + record: header-only, SetDataResponse,
    CreateResponse and Create2Response (ASCII path) here, the rest by the pure twin."""
    if not (_i32_ok(xid) and _i64_ok(zxid) and _i32_ok(err)):
        return _pure["encode_reply_frame"](xid, zxid, err, record)
    cdef Py_ssize_t plen = 0, size = 20
    cdef const char* pc = NULL
    cdef object kind = type(record)
    path = None
    stat = None
    if record is None:
        pass
    elif kind is _C_set_data_resp:
        stat = record.stat
        size += 68
    elif kind is _C_create_resp or kind is _C_create2_resp:
        path = record.path
        if type(path) is not str or not PyUnicode_IS_ASCII(path):
            return _pure["encode_reply_frame"](xid, zxid, err, record)
        pc = PyUnicode_AsUTF8AndSize(path, &plen)
        size += 4 + plen
        if kind is _C_create2_resp:
            stat = record.stat
            size += 68
    else:
        return _pure["encode_reply_frame"](xid, zxid, err, record)
    if stat is not None and (type(stat) is not _C_stat or not _stat_ok(stat)):
        return _pure["encode_reply_frame"](xid, zxid, err, record)
    cdef bytes out = PyBytes_FromStringAndSize(NULL, size)
    cdef unsigned char* p = <unsigned char*>PyBytes_AS_STRING(out)
    _w32(p, size - 4)
    _w32(p + 4, xid)
    _w64(p + 8, zxid)
    _w32(p + 16, err)
    cdef Py_ssize_t o = 20
    if path is not None:
        _w32(p + o, plen)
        memcpy(p + o + 4, pc, plen)
        o += 4 + plen
    if stat is not None:
        _stat(p + o, stat)
    return out


def node_reply_frame(xid, zxid, path, node):
    """int32 length + ReplyHeader{xid, zxid, 0} + [path] + the Stat clients see of `node` (a
    zkpy.tree.node.Node, mapped as Node.wire_stat does): a SetDataResponse when path is None,
    else a Create2Response (ASCII path); anything else by the pure twin."""
    if not (_i32_ok(xid) and _i64_ok(zxid)):
        return _pure["node_reply_frame"](xid, zxid, path, node)
    czxid = node.czxid
    mzxid = node.mzxid
    ctime = node.ctime
    mtime = node.mtime
    version = node.version
    cversion = node.cversion
    aversion = node.aversion
    owner = node.ephemeral_owner
    num_children = node.num_children
    pzxid = node.pzxid
    data = node.data
    if not (_i64_ok(czxid) and _i64_ok(mzxid) and _i64_ok(ctime) and _i64_ok(mtime) and
            _i32_ok(version) and _i32_ok(cversion) and _i32_ok(aversion) and _i64_ok(owner)
            and _i32_ok(num_children) and _i64_ok(pzxid)
            and (data is None or type(data) is bytes)):
        return _pure["node_reply_frame"](xid, zxid, path, node)
    cdef Py_ssize_t plen = 0, size = 20 + 68
    cdef const char* pc = NULL
    if path is not None:
        if type(path) is not str or not PyUnicode_IS_ASCII(path):
            return _pure["node_reply_frame"](xid, zxid, path, node)
        pc = PyUnicode_AsUTF8AndSize(path, &plen)
        size += 4 + plen
    cdef Py_ssize_t dlen = 0 if data is None else PyBytes_GET_SIZE(data)
    if dlen > 2147483647:
        return _pure["node_reply_frame"](xid, zxid, path, node)
    cdef long long nc = num_children
    cdef long long visible = 2 * <long long>cversion - nc   # Node.wire_stat, wrapped to int32
    cdef long long own = owner
    cdef bytes out = PyBytes_FromStringAndSize(NULL, size)
    cdef unsigned char* p = <unsigned char*>PyBytes_AS_STRING(out)
    _w32(p, size - 4)
    _w32(p + 4, xid)
    _w64(p + 8, zxid)
    _w32(p + 16, 0)
    cdef Py_ssize_t o = 20
    if path is not None:
        _w32(p + o, plen)
        memcpy(p + o + 4, pc, plen)
        o += 4 + plen
    _w64(p + o, czxid)
    _w64(p + o + 8, mzxid)
    _w64(p + o + 16, ctime)
    _w64(p + o + 24, mtime)
    _w32(p + o + 32, version)
    _w32(p + o + 36, visible)   # the low 32 bits: _int32
    _w32(p + o + 40, aversion)
    _w64(p + o + 44, own if own > 0 else 0)
    _w32(p + o + 52, dlen)
    _w32(p + o + 56, nc)
    _w64(p + o + 60, pzxid)
    return out


def register_stat(stat_cls):
    global _C_stat
    _C_stat = stat_cls


# ---------------------------------------------------------------- ipc

cdef enum:
    IPC_REQUEST = 3
    IPC_BATCH = 21
    IPC_COMMITTED = 25


cdef inline object _ipc_str(const unsigned char* p, Py_ssize_t* off, Py_ssize_t n):
    """An IPC str (len:u32 + strict UTF-8) at *off, or raise _Fallback."""
    if n - off[0] < 4:
        raise _Fallback()
    cdef Py_ssize_t k = _ru32(p + off[0])
    if k > n - off[0] - 4:
        raise _Fallback()
    try:
        s = PyUnicode_DecodeUTF8(<const char*>(p + off[0] + 4), k, NULL)
    except UnicodeDecodeError:
        raise _Fallback()
    off[0] += 4 + k
    return s


cdef inline void _ipc_skip_str(const unsigned char* p, Py_ssize_t* off, Py_ssize_t n) except *:
    """Step over an IPC str that _ipc_str would decode, without making it; else _Fallback."""
    if n - off[0] < 4:
        raise _Fallback()
    cdef Py_ssize_t k = _ru32(p + off[0])
    if k > n - off[0] - 4:
        raise _Fallback()
    if not _utf8_ok(p + off[0] + 4, k):
        raise _Fallback()
    off[0] += 4 + k


cdef tuple _ipc_batch_fields(const unsigned char* p, Py_ssize_t n, bint want_events=True):
    """(zxid, events, replies) of a BATCH frame body, as ipc.decode gives them (want_events
    false: the events are checked the same way, but left out: events is None)."""
    cdef Py_ssize_t o = 1
    cdef unsigned int count, i, j
    cdef int nacl
    cdef Py_ssize_t k
    if n - o < 12:
        raise _Fallback()
    zxid = _r64(p + o)
    count = _ru32(p + o + 8)
    o += 12
    if <Py_ssize_t>count > (n - o) // 16:   # each event takes 16 bytes at least
        raise _Fallback()
    events = [] if want_events else None
    for i in range(count):
        if n - o < 12:
            raise _Fallback()
        if not want_events:
            o += 12
            _ipc_skip_str(p, &o, n)
            if n - o < 4:
                raise _Fallback()
            nacl = _r32(p + o)
            o += 4
            if nacl > 0:
                if <Py_ssize_t>nacl > (n - o) // 12:
                    raise _Fallback()
                for j in range(<unsigned int>nacl):
                    if n - o < 4:
                        raise _Fallback()
                    o += 4
                    _ipc_skip_str(p, &o, n)
                    _ipc_skip_str(p, &o, n)
            continue
        ezxid = _r64(p + o)
        etype = _r32(p + o + 8)
        o += 12
        path = _ipc_str(p, &o, n)
        if n - o < 4:
            raise _Fallback()
        nacl = _r32(p + o)
        o += 4
        if nacl < 0:
            acl = None
        else:
            if <Py_ssize_t>nacl > (n - o) // 12:
                raise _Fallback()
            entries = []
            for j in range(<unsigned int>nacl):
                if n - o < 4:
                    raise _Fallback()
                perms = _r32(p + o)
                o += 4
                scheme = _ipc_str(p, &o, n)
                ident = _ipc_str(p, &o, n)
                entries.append((perms, scheme, ident))
            acl = tuple(entries)
        events.append((ezxid, etype, path, acl))
    if n - o < 4:
        raise _Fallback()
    count = _ru32(p + o)
    o += 4
    if <Py_ssize_t>count > (n - o) // 13:   # each reply takes 13 bytes at least
        raise _Fallback()
    replies = []
    for i in range(count):
        if n - o < 13:
            raise _Fallback()
        k = _ru32(p + o + 9)
        if k > n - o - 13:
            raise _Fallback()
        replies.append((_ru32(p + o), _ru32(p + o + 4), p[o + 8] != 0,
                        PyBytes_FromStringAndSize(<const char*>(p + o + 13), k)))
        o += 13 + k
    return (zxid, events, replies)


def ipc_batch_replies(frame):
    """ipc.decode_batch_replies: a BATCH frame's (zxid, replies), its events checked but not
    built (a frontend without any watch has no use for them)."""
    if type(frame) is not bytes or PyBytes_GET_SIZE(frame) < 1 or \
            (<const unsigned char*>PyBytes_AS_STRING(frame))[0] != IPC_BATCH:
        return _pure["ipc_batch_replies"](frame)
    try:
        zxid, _, replies = _ipc_batch_fields(<const unsigned char*>PyBytes_AS_STRING(frame),
                                             PyBytes_GET_SIZE(frame), False)
    except _Fallback:
        return _pure["ipc_batch_replies"](frame)
    return zxid, replies


def ipc_request(conn_id, entry_id, session_id, xid, op, body):
    """ipc.request: the REQUEST frame of one write (one allocation instead of four)."""
    if not (type(body) is bytes and type(conn_id) is int and type(entry_id) is int and
            0 <= conn_id <= 0xFFFFFFFF and 0 <= entry_id <= 0xFFFFFFFF and
            _i64_ok(session_id) and _i32_ok(xid) and _i32_ok(op)):
        return _pure["ipc_request"](conn_id, entry_id, session_id, xid, op, body)
    cdef Py_ssize_t blen = PyBytes_GET_SIZE(body)
    if blen > 0xFFFFFFFF - 29:
        return _pure["ipc_request"](conn_id, entry_id, session_id, xid, op, body)
    cdef bytes out = PyBytes_FromStringAndSize(NULL, 33 + blen)
    cdef unsigned char* q = <unsigned char*>PyBytes_AS_STRING(out)
    _w32(q, 29 + blen)
    q[4] = IPC_REQUEST
    _w32(q + 5, conn_id)
    _w32(q + 9, entry_id)
    _w64(q + 13, session_id)
    _w32(q + 21, xid)
    _w32(q + 25, op)
    _w32(q + 29, blen)
    if blen:
        memcpy(q + 33, PyBytes_AS_STRING(body), blen)
    return out


def ipc_decode(frame):
    """ipc.decode for REQUEST, BATCH and COMMITTED frames (the ones of every write); every other
    type, and any frame these do not decode cleanly, by the pure twin."""
    if type(frame) is not bytes or PyBytes_GET_SIZE(frame) < 1:
        return _pure["ipc_decode"](frame)
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(frame)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(frame)
    if p[0] == IPC_BATCH:
        try:
            return IPC_BATCH, _ipc_batch_fields(p, n)
        except _Fallback:
            return _pure["ipc_decode"](frame)
    if p[0] == IPC_COMMITTED and n == 9:
        return IPC_COMMITTED, (_r64(p + 1),)
    if n < 29 or p[0] != IPC_REQUEST:
        return _pure["ipc_decode"](frame)
    cdef unsigned int blen = _ru32(p + 25)
    if blen > n - 29:
        return _pure["ipc_decode"](frame)
    body = PyBytes_FromStringAndSize(<const char*>(p + 29), blen)
    return IPC_REQUEST, (_ru32(p + 1), _ru32(p + 5), _r64(p + 9), _r32(p + 17), _r32(p + 21),
                         body)


def ipc_batch(zxid, events, replies):
    """ipc.batch: the BATCH frame of one applied batch."""
    cdef _Out o = _Out()
    cdef unsigned char* p
    try:
        o.room(5)  # length and type, filled in below
        o.i64(zxid)
        o.i32(len(events))
        for ezxid, etype, path, acl in events:
            p = o.room(12)
            _w64(p, ezxid)
            _w32(p + 8, etype)
            o.utf8(path)
            if acl is None:
                o.i32(-1)
            else:
                _acl(o, acl)
        o.i32(len(replies))
        for conn_id, entry_id, close_after, data in replies:
            if not (0 <= conn_id <= 0xFFFFFFFF and 0 <= entry_id <= 0xFFFFFFFF):
                raise OverflowError()
            p = o.room(9)
            _w32(p, conn_id)
            _w32(p + 4, entry_id)
            p[8] = 1 if close_after else 0
            o.blob(data)
    except (TypeError, OverflowError, ValueError):
        return _pure["ipc_batch"](zxid, events, replies)  # raises what the pure one raises
    p = <unsigned char*>(<char*>o.buf)
    _w32(p, o.n - 4)
    p[4] = IPC_BATCH
    return o.result()


# ---------------------------------------------------------------- transaction log records

cdef enum:
    LOG_RECORD_HEADER = 16


def log_records(records, last_zxid):
    """The bytes of [(zxid, payload)] as transaction-log records (txnlog's grammar: length,
    crc32c(zxid || payload), zxid, payload), zxids strictly increasing above last_zxid. Anything
    else (not bytes, out of range, out of order) by the pure twin, which raises."""
    if type(records) is not list or not _i64_ok(last_zxid):
        return _pure["log_records"](records, last_zxid)
    cdef Py_ssize_t n = len(records), i, size = 0, plen
    cdef long long prev = last_zxid, z
    for i in range(n):
        rec = records[i]
        if type(rec) is not tuple or len(rec) != 2:
            return _pure["log_records"](records, last_zxid)
        zxid, payload = rec
        if not _i64_ok(zxid) or type(payload) is not bytes:
            return _pure["log_records"](records, last_zxid)
        z = zxid
        plen = PyBytes_GET_SIZE(payload)
        if z <= prev or z < 0 or plen > 0xFFFFFFFF:
            return _pure["log_records"](records, last_zxid)
        prev = z
        size += LOG_RECORD_HEADER + plen
    cdef bytes out = PyBytes_FromStringAndSize(NULL, size)
    cdef unsigned char* p = <unsigned char*>PyBytes_AS_STRING(out)
    cdef unsigned int crc
    for i in range(n):
        zxid, payload = records[i]
        plen = PyBytes_GET_SIZE(payload)
        _w32(p, plen)
        _w64(p + 8, zxid)
        memcpy(p + 16, PyBytes_AS_STRING(payload), plen)
        crc = zkpy_crc32c(0, p + 8, 8 + plen)   # over zxid || payload, as they lie here
        _w32(p + 4, crc)
        p += LOG_RECORD_HEADER + plen
    return out


zkpy_crc32c(0, NULL, 0)   # probe the CPU (SSE4.2) once, at import, on the importing thread


# ---------------------------------------------------------------- znodes

# copy_node: a new object of the node's class with the same 12 __slots__ fields, copied by
# offset (zkpy/_slots.pxd; learnt from the first class seen; any other class, or a field never
# set, goes to the pure Node.copy).
cdef object _node_cls = None
cdef Py_ssize_t _node_off[12]


def copy_node(node):
    global _node_cls
    cls = type(node)
    if cls is not _node_cls:
        if not slot_offsets(cls, _node_off, 12):
            _node_cls = None
            return _pure["copy_node"](node)
        _node_cls = cls
    new = cls.__new__(cls)
    cdef PyObject* v
    cdef int i
    for i in range(12):
        v = slot_get(node, _node_off[i])
        if v is NULL:     # never set: the pure copy raises its AttributeError
            return _pure["copy_node"](node)
        slot_init(new, _node_off[i], <object>v)
    return new
