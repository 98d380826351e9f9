"""The znode record held by the data tree. Pure.

`cversion` here is ZooKeeper's *stored* cversion (StatPersisted): the count of child creations,
which also numbers sequential children. Clients see `2 * cversion - numChildren`
(DataNode.copyStat), i.e. creations plus deletions; `wire_stat` does that mapping.
"""

from zkpy.proto.twins import compiled_twin


def _int32(v):
    v &= 0xFFFFFFFF
    return v - 0x100000000 if v & 0x80000000 else v


class Node(object):
    __slots__ = ("czxid", "mzxid", "ctime", "mtime", "version", "cversion", "aversion",
                 "ephemeral_owner", "num_children", "pzxid", "data", "acl")

    def __init__(self, czxid, mzxid, ctime, mtime, version, cversion, aversion, ephemeral_owner,
                 num_children, pzxid, data, acl):
        self.czxid = czxid
        self.mzxid = mzxid
        self.ctime = ctime
        self.mtime = mtime
        self.version = version
        self.cversion = cversion
        self.aversion = aversion
        self.ephemeral_owner = ephemeral_owner
        self.num_children = num_children
        self.pzxid = pzxid
        self.data = data
        self.acl = acl  # tuple of (perms, scheme, id)

    def copy(self):
        return Node(self.czxid, self.mzxid, self.ctime, self.mtime, self.version, self.cversion,
                    self.aversion, self.ephemeral_owner, self.num_children, self.pzxid, self.data,
                    self.acl)

    def wire_stat(self):
        """The 11 Stat fields as clients see them, in jute order."""
        # Container and TTL markers (negative owners) show as 0 (DataNode.getClientEphemeralOwner).
        return (self.czxid, self.mzxid, self.ctime, self.mtime, self.version,
                _int32(2 * self.cversion - self.num_children), self.aversion,
                self.ephemeral_owner if self.ephemeral_owner > 0 else 0,
                len(self.data) if self.data is not None else 0,
                self.num_children, self.pzxid)

    def __eq__(self, other):
        return isinstance(other, Node) and all(
            getattr(self, f) == getattr(other, f) for f in self.__slots__)

    def __repr__(self):
        return "Node(%s)" % ", ".join("%s=%r" % (f, getattr(self, f)) for f in self.__slots__)


# Node.copy in C (zkpy.proto._fastcodec) when built: a parent is copied on every create and delete.
copy_node = compiled_twin("copy_node", Node.copy)

OPEN_ACL_UNSAFE = ((31, "world", "anyone"),)
READ_ACL_UNSAFE = ((1, "world", "anyone"),)
