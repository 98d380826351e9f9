"""Every jute record of ZooKeeper, as plain Python classes built from one table.

Owns: the record table (names, field order, jute types), the generated record classes, and the
op-code -> record maps a server dispatches on. It is data only: the byte layout lives in
zkpy.proto.codec, which compiles an encoder/decoder per class from ``FIELDS``. No I/O.
Imports only zkpy.proto.consts; anything in zkpy may import it.

Source of truth: apache/zookeeper zookeeper-jute/src/main/resources/zookeeper.jute, checked
field by field against the classes in the Debian zookeeper-jute 3.8.0 jar (which also carries
data.ClientInfo and proto.WhoAmIResponse, added in 3.7). Field names are the jute names exactly,
so a reader of the Java server finds the same words here (``Stat.ephemeralOwner``, not
``ephemeral_owner``).

Every jute module is included (data, proto, server.quorum, server.persistence, txn). No record
name appears in two modules, so no class needed renaming; the ``JUTE_MODULE`` attribute says
where each came from.

Jute types in the table: ``int`` (int32), ``long`` (int64), ``boolean``, ``ustring`` (UTF-8,
may be None = null), ``buffer`` (bytes, may be None = null), ``vector<T>`` (list, may be None =
null) and a record name (nested record, never null on the wire).
"""

from zkpy.proto import consts as _c

# (jute module, record name, "type name; type name; ...") -- the one table.
# Order inside a record is wire order; never reorder.
_TABLE = (
    # module org.apache.zookeeper.data
    ("data", "Id", "ustring scheme; ustring id"),
    ("data", "ACL", "int perms; Id id"),
    ("data", "Stat",
     "long czxid; long mzxid; long ctime; long mtime; int version; int cversion; int aversion; "
     "long ephemeralOwner; int dataLength; int numChildren; long pzxid"),
    ("data", "StatPersisted",
     "long czxid; long mzxid; long ctime; long mtime; int version; int cversion; int aversion; "
     "long ephemeralOwner; long pzxid"),
    ("data", "ClientInfo", "ustring authScheme; ustring user"),
    # module org.apache.zookeeper.proto
    ("proto", "ConnectRequest",
     "int protocolVersion; long lastZxidSeen; int timeOut; long sessionId; buffer passwd"),
    ("proto", "ConnectResponse", "int protocolVersion; int timeOut; long sessionId; buffer passwd"),
    ("proto", "SetWatches",
     "long relativeZxid; vector<ustring> dataWatches; vector<ustring> existWatches; "
     "vector<ustring> childWatches"),
    ("proto", "SetWatches2",
     "long relativeZxid; vector<ustring> dataWatches; vector<ustring> existWatches; "
     "vector<ustring> childWatches; vector<ustring> persistentWatches; "
     "vector<ustring> persistentRecursiveWatches"),
    ("proto", "RequestHeader", "int xid; int type"),
    ("proto", "MultiHeader", "int type; boolean done; int err"),
    ("proto", "AuthPacket", "int type; ustring scheme; buffer auth"),
    ("proto", "ReplyHeader", "int xid; long zxid; int err"),
    ("proto", "GetDataRequest", "ustring path; boolean watch"),
    ("proto", "SetDataRequest", "ustring path; buffer data; int version"),
    ("proto", "ReconfigRequest",
     "ustring joiningServers; ustring leavingServers; ustring newMembers; long curConfigId"),
    ("proto", "SetDataResponse", "Stat stat"),
    ("proto", "GetSASLRequest", "buffer token"),
    ("proto", "SetSASLRequest", "buffer token"),
    ("proto", "SetSASLResponse", "buffer token"),
    ("proto", "CreateRequest", "ustring path; buffer data; vector<ACL> acl; int flags"),
    ("proto", "CreateTTLRequest", "ustring path; buffer data; vector<ACL> acl; int flags; long ttl"),
    ("proto", "DeleteRequest", "ustring path; int version"),
    ("proto", "GetChildrenRequest", "ustring path; boolean watch"),
    ("proto", "GetAllChildrenNumberRequest", "ustring path"),
    ("proto", "GetChildren2Request", "ustring path; boolean watch"),
    ("proto", "CheckVersionRequest", "ustring path; int version"),
    ("proto", "GetMaxChildrenRequest", "ustring path"),
    ("proto", "GetMaxChildrenResponse", "int max"),
    ("proto", "SetMaxChildrenRequest", "ustring path; int max"),
    ("proto", "SyncRequest", "ustring path"),
    ("proto", "SyncResponse", "ustring path"),
    ("proto", "GetACLRequest", "ustring path"),
    ("proto", "SetACLRequest", "ustring path; vector<ACL> acl; int version"),
    ("proto", "SetACLResponse", "Stat stat"),
    ("proto", "AddWatchRequest", "ustring path; int mode"),
    ("proto", "WatcherEvent", "int type; int state; ustring path"),
    ("proto", "ErrorResponse", "int err"),
    ("proto", "CreateResponse", "ustring path"),
    ("proto", "Create2Response", "ustring path; Stat stat"),
    ("proto", "ExistsRequest", "ustring path; boolean watch"),
    ("proto", "ExistsResponse", "Stat stat"),
    ("proto", "GetDataResponse", "buffer data; Stat stat"),
    ("proto", "GetChildrenResponse", "vector<ustring> children"),
    ("proto", "GetAllChildrenNumberResponse", "int totalNumber"),
    ("proto", "GetChildren2Response", "vector<ustring> children; Stat stat"),
    ("proto", "GetACLResponse", "vector<ACL> acl; Stat stat"),
    ("proto", "CheckWatchesRequest", "ustring path; int type"),
    ("proto", "RemoveWatchesRequest", "ustring path; int type"),
    ("proto", "GetEphemeralsRequest", "ustring prefixPath"),
    ("proto", "GetEphemeralsResponse", "vector<ustring> ephemerals"),
    ("proto", "WhoAmIResponse", "vector<ClientInfo> clientInfo"),
    # module org.apache.zookeeper.server.quorum
    ("server.quorum", "LearnerInfo", "long serverid; int protocolVersion; long configVersion"),
    ("server.quorum", "QuorumPacket", "int type; long zxid; buffer data; vector<Id> authinfo"),
    ("server.quorum", "QuorumAuthPacket", "long magic; int status; buffer token"),
    # module org.apache.zookeeper.server.persistence
    ("server.persistence", "FileHeader", "int magic; int version; long dbid"),
    # module org.apache.zookeeper.txn
    ("txn", "TxnDigest", "int version; long treeDigest"),
    ("txn", "TxnHeader", "long clientId; int cxid; long zxid; long time; int type"),
    ("txn", "CreateTxnV0", "ustring path; buffer data; vector<ACL> acl; boolean ephemeral"),
    ("txn", "CreateTxn",
     "ustring path; buffer data; vector<ACL> acl; boolean ephemeral; int parentCVersion"),
    ("txn", "CreateTTLTxn",
     "ustring path; buffer data; vector<ACL> acl; int parentCVersion; long ttl"),
    ("txn", "CreateContainerTxn", "ustring path; buffer data; vector<ACL> acl; int parentCVersion"),
    ("txn", "DeleteTxn", "ustring path"),
    ("txn", "SetDataTxn", "ustring path; buffer data; int version"),
    ("txn", "CheckVersionTxn", "ustring path; int version"),
    ("txn", "SetACLTxn", "ustring path; vector<ACL> acl; int version"),
    ("txn", "SetMaxChildrenTxn", "ustring path; int max"),
    ("txn", "CreateSessionTxn", "int timeOut"),
    ("txn", "CloseSessionTxn", "vector<ustring> paths2Delete"),
    ("txn", "ErrorTxn", "int err"),
    ("txn", "Txn", "int type; buffer data"),
    ("txn", "MultiTxn", "vector<Txn> txns"),
)

PRIMITIVES = ("int", "long", "boolean", "ustring", "buffer")

# Sentinel for "argument not given" so that None can still mean a jute null.
_DEFAULT = object()


class Record:
    """Base of all generated records: equality, repr and a tuple view, driven by FIELDS."""

    __slots__ = ()
    FIELDS = ()          # ((name, jute type), ...) in wire order
    JUTE_MODULE = ""     # e.g. "proto"

    def __eq__(self, other):
        if type(other) is not type(self):
            return NotImplemented
        for name, _ in self.FIELDS:
            if getattr(self, name) != getattr(other, name):
                return False
        return True

    # Records are mutable (a server fills in a Stat), so they must not be hashable.
    __hash__ = None

    def __repr__(self):
        return "%s(%s)" % (type(self).__name__, ", ".join(
            "%s=%r" % (name, getattr(self, name)) for name, _ in self.FIELDS))

    def astuple(self):
        """Field values in wire order (nested records stay records)."""
        return tuple(getattr(self, name) for name, _ in self.FIELDS)


def _parse_fields(spec):
    fields = []
    for part in spec.split(";"):
        jtype, name = part.split()
        fields.append((name, jtype))
    return tuple(fields)


def _default_expr(jtype):
    """Source text of a field's default value, evaluated at each construction."""
    if jtype in ("int", "long"):
        return "0"
    if jtype == "boolean":
        return "False"
    if jtype == "ustring":
        return "''"
    if jtype == "buffer":
        return "b''"
    if jtype.startswith("vector<"):
        return "[]"
    return "_classes[%r]()" % jtype


def _make_class(module, name, fields, classes):
    # __init__ is generated source: a fixed positional signature is the fastest constructor
    # CPython offers, and decoders call it once per record on the hot path.
    params, body = [], []
    for fname, jtype in fields:
        default = _default_expr(jtype)
        if default in ("0", "False", "''", "b''"):
            params.append("%s=%s" % (fname, default))
            body.append("    self.%s = %s" % (fname, fname))
        else:
            params.append("%s=_DEFAULT" % fname)
            body.append("    self.%s = %s if %s is _DEFAULT else %s" % (fname, default, fname, fname))
    src = "def __init__(self, %s):\n%s\n" % (", ".join(params), "\n".join(body) or "    pass")
    ns = {"_DEFAULT": _DEFAULT, "_classes": classes}
    exec(src, ns)  # noqa: S102 -- source built from the constant table above
    init = ns["__init__"]
    init.__qualname__ = "%s.__init__" % name
    names = tuple(f for f, _ in fields)
    cls = type(name, (Record,), {
        "__slots__": names,
        "__init__": init,
        "__match_args__": names,
        "__module__": __name__,
        "__doc__": "jute org.apache.zookeeper.%s.%s {%s}" % (
            module, name, "; ".join("%s %s" % (t, f) for f, t in fields)),
        "FIELDS": fields,
        "JUTE_MODULE": module,
    })
    return cls


def _build():
    classes = {}
    for module, name, spec in _TABLE:
        if name in classes:  # the table must stay clash-free; see the module docstring
            raise AssertionError("duplicate jute record name %s" % name)
        fields = _parse_fields(spec)
        for fname, jtype in fields:
            inner = jtype[7:-1] if jtype.startswith("vector<") else jtype
            if inner not in PRIMITIVES and inner not in classes:
                raise AssertionError("%s.%s: unknown type %s" % (name, fname, jtype))
        classes[name] = _make_class(module, name, fields, classes)
    return classes


RECORDS = _build()
"""{record name: class} for every record in the table."""

globals().update(RECORDS)

# Names for static analysis and `from zkpy.proto.records import Stat`.
Id = RECORDS["Id"]
ACL = RECORDS["ACL"]
Stat = RECORDS["Stat"]
StatPersisted = RECORDS["StatPersisted"]
ClientInfo = RECORDS["ClientInfo"]
ConnectRequest = RECORDS["ConnectRequest"]
ConnectResponse = RECORDS["ConnectResponse"]
SetWatches = RECORDS["SetWatches"]
SetWatches2 = RECORDS["SetWatches2"]
RequestHeader = RECORDS["RequestHeader"]
MultiHeader = RECORDS["MultiHeader"]
AuthPacket = RECORDS["AuthPacket"]
ReplyHeader = RECORDS["ReplyHeader"]
GetDataRequest = RECORDS["GetDataRequest"]
SetDataRequest = RECORDS["SetDataRequest"]
ReconfigRequest = RECORDS["ReconfigRequest"]
SetDataResponse = RECORDS["SetDataResponse"]
GetSASLRequest = RECORDS["GetSASLRequest"]
SetSASLRequest = RECORDS["SetSASLRequest"]
SetSASLResponse = RECORDS["SetSASLResponse"]
CreateRequest = RECORDS["CreateRequest"]
CreateTTLRequest = RECORDS["CreateTTLRequest"]
DeleteRequest = RECORDS["DeleteRequest"]
GetChildrenRequest = RECORDS["GetChildrenRequest"]
GetAllChildrenNumberRequest = RECORDS["GetAllChildrenNumberRequest"]
GetChildren2Request = RECORDS["GetChildren2Request"]
CheckVersionRequest = RECORDS["CheckVersionRequest"]
GetMaxChildrenRequest = RECORDS["GetMaxChildrenRequest"]
GetMaxChildrenResponse = RECORDS["GetMaxChildrenResponse"]
SetMaxChildrenRequest = RECORDS["SetMaxChildrenRequest"]
SyncRequest = RECORDS["SyncRequest"]
SyncResponse = RECORDS["SyncResponse"]
GetACLRequest = RECORDS["GetACLRequest"]
SetACLRequest = RECORDS["SetACLRequest"]
SetACLResponse = RECORDS["SetACLResponse"]
AddWatchRequest = RECORDS["AddWatchRequest"]
WatcherEvent = RECORDS["WatcherEvent"]
ErrorResponse = RECORDS["ErrorResponse"]
CreateResponse = RECORDS["CreateResponse"]
Create2Response = RECORDS["Create2Response"]
ExistsRequest = RECORDS["ExistsRequest"]
ExistsResponse = RECORDS["ExistsResponse"]
GetDataResponse = RECORDS["GetDataResponse"]
GetChildrenResponse = RECORDS["GetChildrenResponse"]
GetAllChildrenNumberResponse = RECORDS["GetAllChildrenNumberResponse"]
GetChildren2Response = RECORDS["GetChildren2Response"]
GetACLResponse = RECORDS["GetACLResponse"]
CheckWatchesRequest = RECORDS["CheckWatchesRequest"]
RemoveWatchesRequest = RECORDS["RemoveWatchesRequest"]
GetEphemeralsRequest = RECORDS["GetEphemeralsRequest"]
GetEphemeralsResponse = RECORDS["GetEphemeralsResponse"]
WhoAmIResponse = RECORDS["WhoAmIResponse"]
LearnerInfo = RECORDS["LearnerInfo"]
QuorumPacket = RECORDS["QuorumPacket"]
QuorumAuthPacket = RECORDS["QuorumAuthPacket"]
FileHeader = RECORDS["FileHeader"]
TxnDigest = RECORDS["TxnDigest"]
TxnHeader = RECORDS["TxnHeader"]
CreateTxnV0 = RECORDS["CreateTxnV0"]
CreateTxn = RECORDS["CreateTxn"]
CreateTTLTxn = RECORDS["CreateTTLTxn"]
CreateContainerTxn = RECORDS["CreateContainerTxn"]
DeleteTxn = RECORDS["DeleteTxn"]
SetDataTxn = RECORDS["SetDataTxn"]
CheckVersionTxn = RECORDS["CheckVersionTxn"]
SetACLTxn = RECORDS["SetACLTxn"]
SetMaxChildrenTxn = RECORDS["SetMaxChildrenTxn"]
CreateSessionTxn = RECORDS["CreateSessionTxn"]
CloseSessionTxn = RECORDS["CloseSessionTxn"]
ErrorTxn = RECORDS["ErrorTxn"]
Txn = RECORDS["Txn"]
MultiTxn = RECORDS["MultiTxn"]


# Op code -> record that follows the RequestHeader (reference.md 1.4). None = header only.
# multi/multiRead (14/22) use MultiHeader framing (codec.decode_multi), and createSession (-10)
# is the ConnectRequest that opens a connection without a header: neither has a single record.
REQUEST_RECORDS = {
    _c.OP_CREATE: CreateRequest,
    _c.OP_DELETE: DeleteRequest,
    _c.OP_EXISTS: ExistsRequest,
    _c.OP_GET_DATA: GetDataRequest,
    _c.OP_SET_DATA: SetDataRequest,
    _c.OP_GET_ACL: GetACLRequest,
    _c.OP_SET_ACL: SetACLRequest,
    _c.OP_GET_CHILDREN: GetChildrenRequest,
    _c.OP_SYNC: SyncRequest,
    _c.OP_PING: None,
    _c.OP_GET_CHILDREN2: GetChildren2Request,
    _c.OP_CHECK: CheckVersionRequest,
    _c.OP_CREATE2: CreateRequest,
    _c.OP_RECONFIG: ReconfigRequest,
    _c.OP_CHECK_WATCHES: CheckWatchesRequest,
    _c.OP_REMOVE_WATCHES: RemoveWatchesRequest,
    _c.OP_CREATE_CONTAINER: CreateRequest,
    _c.OP_DELETE_CONTAINER: DeleteRequest,
    _c.OP_CREATE_TTL: CreateTTLRequest,
    _c.OP_AUTH: AuthPacket,
    _c.OP_SET_WATCHES: SetWatches,
    _c.OP_SASL: GetSASLRequest,
    _c.OP_GET_EPHEMERALS: GetEphemeralsRequest,
    _c.OP_GET_ALL_CHILDREN_NUMBER: GetAllChildrenNumberRequest,
    _c.OP_SET_WATCHES2: SetWatches2,
    _c.OP_ADD_WATCH: AddWatchRequest,
    _c.OP_WHO_AM_I: None,
    _c.OP_CLOSE_SESSION: None,
    _c.OP_CREATE_SESSION: ConnectRequest,
}

# Op code -> record that follows a ReplyHeader with err == 0. None = header only.
RESPONSE_RECORDS = {
    _c.OP_NOTIFICATION: WatcherEvent,
    _c.OP_CREATE: CreateResponse,
    _c.OP_DELETE: None,
    _c.OP_EXISTS: ExistsResponse,
    _c.OP_GET_DATA: GetDataResponse,
    _c.OP_SET_DATA: SetDataResponse,
    _c.OP_GET_ACL: GetACLResponse,
    _c.OP_SET_ACL: SetACLResponse,
    _c.OP_GET_CHILDREN: GetChildrenResponse,
    _c.OP_SYNC: SyncResponse,
    _c.OP_PING: None,
    _c.OP_GET_CHILDREN2: GetChildren2Response,
    # Standalone check (no public Java API) answers like setData; inside multi it has no body.
    _c.OP_CHECK: SetDataResponse,
    _c.OP_CREATE2: Create2Response,
    _c.OP_RECONFIG: GetDataResponse,
    _c.OP_CHECK_WATCHES: None,
    _c.OP_REMOVE_WATCHES: None,
    _c.OP_CREATE_CONTAINER: Create2Response,
    _c.OP_CREATE_TTL: Create2Response,
    _c.OP_AUTH: None,
    _c.OP_SET_WATCHES: None,
    _c.OP_SASL: SetSASLResponse,
    _c.OP_GET_EPHEMERALS: GetEphemeralsResponse,
    _c.OP_GET_ALL_CHILDREN_NUMBER: GetAllChildrenNumberResponse,
    _c.OP_SET_WATCHES2: None,
    _c.OP_ADD_WATCH: ErrorResponse,
    _c.OP_WHO_AM_I: WhoAmIResponse,
    _c.OP_CLOSE_SESSION: None,
    _c.OP_CREATE_SESSION: ConnectResponse,
    _c.OP_ERROR: ErrorResponse,
}

# Sub-ops allowed inside a multi request and their records (MultiOperationRecord.deserialize,
# checked in the 3.8.0 jar: deleteContainer is NOT accepted there, any other type is an error).
MULTI_REQUEST_RECORDS = {
    _c.OP_CREATE: CreateRequest,
    _c.OP_CREATE2: CreateRequest,
    _c.OP_CREATE_CONTAINER: CreateRequest,
    _c.OP_CREATE_TTL: CreateTTLRequest,
    _c.OP_DELETE: DeleteRequest,
    _c.OP_SET_DATA: SetDataRequest,
    _c.OP_CHECK: CheckVersionRequest,
    _c.OP_GET_CHILDREN: GetChildrenRequest,
    _c.OP_GET_DATA: GetDataRequest,
}

# Result body per result type inside a multi response (MultiResponse.serialize). None = no body.
# createTTL/createContainer results travel as type create2 (15): Java's
# OpResult.CreateResult(path, stat) hard-codes create2, and MultiResponse rejects 19/21.
MULTI_RESPONSE_RECORDS = {
    _c.OP_CREATE: CreateResponse,
    _c.OP_CREATE2: Create2Response,
    _c.OP_DELETE: None,
    _c.OP_CHECK: None,
    _c.OP_SET_DATA: SetDataResponse,
    _c.OP_GET_CHILDREN: GetChildrenResponse,
    _c.OP_GET_DATA: GetDataResponse,
    _c.OP_ERROR: ErrorResponse,
}
