"""Byte form of a znode in LMDB: the pure-Python twin of the Cython module _nodecodec.

This file is also compiled by Cython (zkpy/storage/_nodecodec.pyx includes it), so keep it plain
Python. `zkpy.storage.codec_impl` picks the compiled one unless ZKPY_PURE=1 or it failed to build.

Grammar (big-endian):
    node  := czxid:i64 mzxid:i64 ctime:i64 mtime:i64 version:i32 cversion:i32 aversion:i32
             ephemeral_owner:i64 num_children:i32 pzxid:i64 data_len:i32 (-1 = null data)
             data[data_len] acl_count:i32 (perms:i32 scheme_len:i32 scheme id_len:i32 id)*
"""

import struct

from zkpy.tree.node import Node

_HEAD = struct.Struct(">qqqqiiiqiqi")
_I32 = struct.Struct(">i")
HEAD_SIZE = _HEAD.size  # 68


def pack_node(node):
    data = node.data
    out = bytearray(_HEAD.pack(node.czxid, node.mzxid, node.ctime, node.mtime, node.version,
                               node.cversion, node.aversion, node.ephemeral_owner,
                               node.num_children, node.pzxid, -1 if data is None else len(data)))
    if data:
        out += data
    out += _I32.pack(len(node.acl))
    for perms, scheme, ident in node.acl:
        s = scheme.encode("utf-8")
        i = ident.encode("utf-8")
        out += _I32.pack(perms)
        out += _I32.pack(len(s))
        out += s
        out += _I32.pack(len(i))
        out += i
    return bytes(out)


def unpack_node(buf):
    (czxid, mzxid, ctime, mtime, version, cversion, aversion, owner, num_children, pzxid,
     data_len) = _HEAD.unpack_from(buf, 0)
    off = HEAD_SIZE
    if data_len < 0:
        data = None
    else:
        data = bytes(buf[off:off + data_len])
        off += data_len
    count = _I32.unpack_from(buf, off)[0]
    off += 4
    acl = []
    for _ in range(count):
        perms = _I32.unpack_from(buf, off)[0]
        n = _I32.unpack_from(buf, off + 4)[0]
        off += 8
        scheme = bytes(buf[off:off + n]).decode("utf-8")
        off += n
        n = _I32.unpack_from(buf, off)[0]
        off += 4
        ident = bytes(buf[off:off + n]).decode("utf-8")
        off += n
        acl.append((perms, scheme, ident))
    if off != len(buf):
        raise ValueError("node record of %d bytes does not match its fields (%d)"
                         % (len(buf), off))
    return Node(czxid, mzxid, ctime, mtime, version, cversion, aversion, owner, num_children,
                pzxid, data, tuple(acl))
