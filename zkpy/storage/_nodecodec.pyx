# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""The compiled twin of nodecodec.py: the same grammar, typed C loops.

Every znode read and write goes through these two functions; nodecodec.py is the reference and
tests/unit/test_nodecodec.py runs both on the same inputs.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from libc.string cimport memcmp, memcpy

from zkpy._slots cimport slot_init, slot_offsets
from zkpy.tree.node import Node

# A decoded Node is built without its Python __init__ (about half of a decode): allocated by its
# type, each field stored by offset (zkpy/_slots.pxd). Node's __slots__ are in the order of its
# constructor arguments, which _new_node follows.
cdef Py_ssize_t _off[12]
if not slot_offsets(Node, _off, 12):
    raise ImportError("zkpy.tree.node.Node does not have the 12 __slots__ fields of a znode")


cdef inline void _put(object node, int i, object value):
    slot_init(node, _off[i], value)

cdef enum:
    HEAD_SIZE = 68


cdef inline long long _rd64(const unsigned char* p) nogil:
    return <long long>((<unsigned long long>p[0] << 56) | (<unsigned long long>p[1] << 48) |
                       (<unsigned long long>p[2] << 40) | (<unsigned long long>p[3] << 32) |
                       (<unsigned long long>p[4] << 24) | (<unsigned long long>p[5] << 16) |
                       (<unsigned long long>p[6] << 8) | <unsigned long long>p[7])


cdef inline int _rd32(const unsigned char* p) nogil:
    return <int>((<unsigned int>p[0] << 24) | (<unsigned int>p[1] << 16) |
                 (<unsigned int>p[2] << 8) | <unsigned int>p[3])


cdef inline void _wr64(unsigned char* p, long long v) nogil:
    cdef unsigned long long u = <unsigned long long>v
    p[0] = (u >> 56) & 0xFF
    p[1] = (u >> 48) & 0xFF
    p[2] = (u >> 40) & 0xFF
    p[3] = (u >> 32) & 0xFF
    p[4] = (u >> 24) & 0xFF
    p[5] = (u >> 16) & 0xFF
    p[6] = (u >> 8) & 0xFF
    p[7] = u & 0xFF


cdef inline void _wr32(unsigned char* p, int v) nogil:
    cdef unsigned int u = <unsigned int>v
    p[0] = (u >> 24) & 0xFF
    p[1] = (u >> 16) & 0xFF
    p[2] = (u >> 8) & 0xFF
    p[3] = u & 0xFF


def pack_node(node):
    obj = node.data
    if obj is not None and type(obj) is not bytes:
        obj = bytes(obj)
    cdef bytes data = obj
    cdef Py_ssize_t data_len = -1 if data is None else len(data)
    cdef bytes acl_bytes = _packed_acl(node.acl)
    cdef Py_ssize_t size = HEAD_SIZE + (data_len if data_len > 0 else 0) + len(acl_bytes)
    cdef bytes out = PyBytes_FromStringAndSize(NULL, size)
    cdef unsigned char* p = <unsigned char*>PyBytes_AS_STRING(out)
    _wr64(p, node.czxid)
    _wr64(p + 8, node.mzxid)
    _wr64(p + 16, node.ctime)
    _wr64(p + 24, node.mtime)
    _wr32(p + 32, node.version)
    _wr32(p + 36, node.cversion)
    _wr32(p + 40, node.aversion)
    _wr64(p + 44, node.ephemeral_owner)
    _wr32(p + 52, node.num_children)
    _wr64(p + 56, node.pzxid)
    _wr32(p + 64, <int>data_len)
    cdef Py_ssize_t off = HEAD_SIZE
    if data_len > 0:
        memcpy(p + off, PyBytes_AS_STRING(data), data_len)
        off += data_len
    memcpy(p + off, PyBytes_AS_STRING(acl_bytes), len(acl_bytes))
    return out


# Nearly every znode carries one of a few ACLs: their encoded form (the record's tail: count and
# entries) is kept for up to ACL_CACHE distinct ACL tuples (then the cache starts over). Keyed
# by the tuple's value, so an equal ACL built anew hits too. (Decoding has no such cache: the
# tail's slice and lookup cost what decoding one world:anyone entry does.)
cdef enum:
    ACL_CACHE = 256

cdef dict _acl_packed = {}     # acl tuple -> encoded tail


cdef bytes _encode_acl(acl):
    encoded = []
    cdef Py_ssize_t size = 4
    for perms, scheme, ident in acl:
        s = scheme.encode("utf-8")
        i = ident.encode("utf-8")
        encoded.append((perms, s, i))
        size += 12 + len(s) + len(i)
    cdef bytes out = PyBytes_FromStringAndSize(NULL, size)
    cdef unsigned char* p = <unsigned char*>PyBytes_AS_STRING(out)
    _wr32(p, <int>len(encoded))
    cdef Py_ssize_t off = 4
    cdef bytes sb
    cdef bytes ib
    for perms, sb, ib in encoded:
        _wr32(p + off, perms)
        _wr32(p + off + 4, <int>len(sb))
        off += 8
        memcpy(p + off, PyBytes_AS_STRING(sb), len(sb))
        off += len(sb)
        _wr32(p + off, <int>len(ib))
        off += 4
        memcpy(p + off, PyBytes_AS_STRING(ib), len(ib))
        off += len(ib)
    return out


cdef bytes _packed_acl(acl):
    if type(acl) is not tuple:
        return _encode_acl(acl)
    try:
        hit = _acl_packed.get(acl)
    except TypeError:   # an unhashable entry: not cached
        return _encode_acl(acl)
    if hit is not None:
        return <bytes>hit
    cdef bytes out = _encode_acl(acl)
    if len(_acl_packed) >= ACL_CACHE:
        _acl_packed.clear()
    _acl_packed[acl] = out
    return out


# (encoded form, tuple) of the last ACL decoded: nearly every znode of a tree carries the same
# few ACLs, so a record whose tail (count and entries) is the same bytes gets the same tuple.
# One object, replaced in one assignment: a reader on another thread sees a matching pair.
cdef tuple _last_acl = None


def unpack_node(buf):
    global _last_acl
    cdef bytes b = bytes(buf)
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(b)
    cdef Py_ssize_t n = len(b)
    if n < HEAD_SIZE + 4:
        raise ValueError("node record of %d bytes is too short" % n)
    cdef int data_len = _rd32(p + 64)
    cdef Py_ssize_t off = HEAD_SIZE
    if data_len < 0:
        data = None
    else:
        if off + data_len + 4 > n:
            raise ValueError("node record truncated in its data")
        data = PyBytes_FromStringAndSize(<const char*>(p + off), data_len)
        off += data_len
    cdef Py_ssize_t tail = off
    cdef tuple last = _last_acl
    cdef bytes last_tail
    if last is not None:
        last_tail = <bytes>last[0]
        if (n - tail == len(last_tail)
                and memcmp(p + tail, PyBytes_AS_STRING(last_tail), n - tail) == 0):
            return _new_node(p, data, last[1])
    cdef int count = _rd32(p + off)
    off += 4
    cdef int perms, slen, ilen
    acl = []
    for _ in range(count):
        if off + 8 > n:
            raise ValueError("node record truncated in its ACL")
        perms = _rd32(p + off)
        slen = _rd32(p + off + 4)
        off += 8
        if slen < 0 or off + slen + 4 > n:
            raise ValueError("node record truncated in its ACL")
        scheme = (<const char*>(p + off))[:slen].decode("utf-8")
        off += slen
        ilen = _rd32(p + off)
        off += 4
        if ilen < 0 or off + ilen > n:
            raise ValueError("node record truncated in its ACL")
        ident = (<const char*>(p + off))[:ilen].decode("utf-8")
        off += ilen
        acl.append((perms, scheme, ident))
    if off != n:
        raise ValueError("node record of %d bytes does not match its fields (%d)" % (n, off))
    acl_t = tuple(acl)
    _last_acl = (b[tail:n], acl_t)
    return _new_node(p, data, acl_t)


cdef object _new_node(const unsigned char* p, object data, object acl):
    """The Node of a record's fixed fields at p, with its data and ACL."""
    node = Node.__new__(Node)
    _put(node, 0, _rd64(p))
    _put(node, 1, _rd64(p + 8))
    _put(node, 2, _rd64(p + 16))
    _put(node, 3, _rd64(p + 24))
    _put(node, 4, _rd32(p + 32))
    _put(node, 5, _rd32(p + 36))
    _put(node, 6, _rd32(p + 40))
    _put(node, 7, _rd64(p + 44))
    _put(node, 8, _rd32(p + 52))
    _put(node, 9, _rd64(p + 56))
    _put(node, 10, data)
    _put(node, 11, acl)
    return node
