"""Znode semantics (zkpy.tree.datatree) over the in-memory view, the prep overlay and txn bytes.

No sockets, no files. Error codes and Stat arithmetic follow PrepRequestProcessor and DataTree of
Apache ZooKeeper; the model test checks that validating against a PendingOverlay while earlier txns
wait for their group commit gives exactly the txns (and error codes) of validating one request at
a time against the fully applied tree.
"""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from zkpy import errors
from zkpy.errors import StorageCorruptError, ZkError
from zkpy.proto import consts
from zkpy.tree import datatree, quota, txns
from zkpy.tree.node import OPEN_ACL_UNSAFE, READ_ACL_UNSAFE
from zkpy.tree.overlay import MemoryView, PendingOverlay, replay

P, E, PS, ES = (consts.CREATE_PERSISTENT, consts.CREATE_EPHEMERAL,
                consts.CREATE_PERSISTENT_SEQUENTIAL, consts.CREATE_EPHEMERAL_SEQUENTIAL)
SID = 0x1000000000001


class Tree(object):
    """A MemoryView plus a zxid counter: prep and apply one request at a time, as a test helper."""

    def __init__(self):
        self.view = MemoryView(datatree.initial_nodes())
        self.zxid = 0
        self.now = 1000

    def _run(self, txn):
        self.zxid += 1
        self.now += 7
        return datatree.apply(self.view, self.zxid, txn)

    def create(self, path, data=b"", flags=P, sid=SID, acl=OPEN_ACL_UNSAFE):
        txn = datatree.prep_create(self.view, sid, 1, self.now + 7, path, data, list(acl), flags)
        self._run(txn)
        return txn.path

    def delete(self, path, version=-1, sid=SID):
        self._run(datatree.prep_delete(self.view, sid, 1, self.now + 7, path, version))

    def set(self, path, data, version=-1, sid=SID):
        return self._run(datatree.prep_set_data(self.view, sid, 1, self.now + 7, path, data,
                                                version))[1]

    def close(self, sid):
        return self._run(datatree.prep_close_session(self.view, sid, 1, self.now + 7))[0]

    def get(self, path):
        return self.view.get(path)

    def stat(self, path):
        # (czxid, mzxid, ctime, mtime, version, cversion, aversion, ephemeralOwner, dataLength,
        #  numChildren, pzxid)
        return self.view.get(path).wire_stat()


def code_of(fn, *args):
    with pytest.raises(ZkError) as ei:
        fn(*args)
    return ei.value.code


@pytest.fixture
def t():
    return Tree()


# ----------------------------------------------------------------------------- initial tree


def test_initial_tree_stats_match_apache():
    t = Tree()
    # Apache ZooKeeper 3.8.0, fresh server: `stat /` shows cversion = -1, numChildren = 1.
    assert t.stat("/")[5] == -1 and t.stat("/")[9] == 1
    assert t.stat("/zookeeper")[5] == -2 and t.stat("/zookeeper")[9] == 2
    assert t.get("/zookeeper/config").aversion == -1
    assert t.get("/zookeeper/config").acl == READ_ACL_UNSAFE
    assert t.view.get_children("/") == ["zookeeper"]
    assert t.view.get_children("/zookeeper") == ["config", "quota"]


# ----------------------------------------------------------------------------- error codes


def test_create_errors(t):
    t.create("/a")
    v = t.view
    assert code_of(datatree.prep_create, v, SID, 1, 0, "/a", b"", OPEN_ACL_UNSAFE, P) == \
        errors.NODEEXISTS
    assert code_of(datatree.prep_create, v, SID, 1, 0, "/x/y", b"", OPEN_ACL_UNSAFE, P) == \
        errors.NONODE
    assert code_of(datatree.prep_create, v, SID, 1, 0, "/a/", b"", OPEN_ACL_UNSAFE, P) == \
        errors.BADARGUMENTS
    assert code_of(datatree.prep_create, v, SID, 1, 0, "a", b"", OPEN_ACL_UNSAFE, P) == \
        errors.BADARGUMENTS
    assert code_of(datatree.prep_create, v, SID, 1, 0, "/b", b"", [], P) == errors.INVALIDACL
    assert code_of(datatree.prep_create, v, SID, 1, 0, "/b", b"", OPEN_ACL_UNSAFE, 99) == \
        errors.BADARGUMENTS
    assert code_of(datatree.prep_create, v, SID, 1, 0, "/", b"", OPEN_ACL_UNSAFE, P) == \
        errors.NODEEXISTS
    # TTL modes need extendedTypesEnabled (UNIMPLEMENTED otherwise, as ZooKeeper answers).
    for mode in (consts.CREATE_PERSISTENT_WITH_TTL, consts.CREATE_PERSISTENT_SEQUENTIAL_WITH_TTL):
        assert code_of(lambda *a: datatree.prep_create(*a, ttl=1000), v, SID, 1, 0, "/b", b"",
                       OPEN_ACL_UNSAFE, mode) == errors.UNIMPLEMENTED
    assert code_of(datatree.prep_create, v, SID, 1, 0, "/b", b"", OPEN_ACL_UNSAFE, 7) == \
        errors.BADARGUMENTS


def test_container_and_ttl_owners_and_reaping():
    v = MemoryView(datatree.initial_nodes())
    c = datatree.prep_create(v, SID, 1, 0, "/c", b"", OPEN_ACL_UNSAFE, consts.CREATE_CONTAINER)
    assert c.ephemeral_owner == datatree.CONTAINER_OWNER
    t = datatree.prep_create(v, SID, 1, 0, "/t", b"", OPEN_ACL_UNSAFE,
                             consts.CREATE_PERSISTENT_WITH_TTL, ttl=500, extended_types=True)
    assert datatree.owner_kind(t.ephemeral_owner) == "ttl"
    assert datatree.ttl_of(t.ephemeral_owner) == 500
    datatree.apply(v, 2, c)
    datatree.apply(v, 3, t)
    nodes = [(p, v.get(p)) for p in ("/c", "/t")]
    assert v.get("/c").wire_stat()[7] == 0  # markers are not shown to clients
    assert datatree.reap_candidates(nodes, now_ms=100) == []          # unused container, young TTL
    assert datatree.reap_candidates(nodes, now_ms=600) == ["/t"]
    assert datatree.reap_candidates(nodes, now_ms=100, max_never_used_ms=50) == ["/c"]
    kid = datatree.prep_create(v, SID, 1, 0, "/c/k", b"", OPEN_ACL_UNSAFE, 0)  # not ephemeral
    datatree.apply(v, 4, kid)
    datatree.apply(v, 5, datatree.prep_delete(v, SID, 1, 0, "/c/k", -1))
    assert datatree.reap_candidates([("/c", v.get("/c"))], now_ms=0) == ["/c"]


def test_no_children_for_ephemerals(t):
    t.create("/e", flags=E)
    for flags in (P, E, PS, ES):
        assert code_of(datatree.prep_create, t.view, SID, 1, 0, "/e/c", b"", OPEN_ACL_UNSAFE,
                       flags) == errors.NOCHILDRENFOREPHEMERALS
    # NODEEXISTS wins over NOCHILDRENFOREPHEMERALS only when the node exists; NONODE for a deeper
    # path under the ephemeral.
    assert code_of(datatree.prep_create, t.view, SID, 1, 0, "/e/c/d", b"", OPEN_ACL_UNSAFE, P) == \
        errors.NONODE


def test_set_data_and_delete_versions(t):
    t.create("/a", b"0")
    assert code_of(datatree.prep_set_data, t.view, SID, 1, 0, "/a", b"x", 1) == errors.BADVERSION
    assert code_of(datatree.prep_set_data, t.view, SID, 1, 0, "/nope", b"x", -1) == errors.NONODE
    node = t.set("/a", b"1", 0)
    assert node.version == 1 and node.data == b"1"
    t.set("/a", b"2", -1)
    assert t.get("/a").version == 2
    assert code_of(datatree.prep_delete, t.view, SID, 1, 0, "/a", 1) == errors.BADVERSION
    assert code_of(datatree.prep_delete, t.view, SID, 1, 0, "/nope", -1) == errors.NONODE
    t.delete("/a", 2)
    assert t.get("/a") is None


def test_version_wraps_at_int32(t):
    t.create("/a")
    n = t.get("/a").copy()
    n.version = 2 ** 31 - 1
    t.view.put("/a", n)
    assert t.set("/a", b"x", 2 ** 31 - 1).version == -(2 ** 31)
    assert t.set("/a", b"y", -(2 ** 31)).version == -(2 ** 31) + 1


def test_delete_not_empty(t):
    t.create("/a")
    t.create("/a/b")
    assert code_of(datatree.prep_delete, t.view, SID, 1, 0, "/a", -1) == errors.NOTEMPTY
    # The version check comes first (PrepRequestProcessor checks version, then children).
    assert code_of(datatree.prep_delete, t.view, SID, 1, 0, "/a", 5) == errors.BADVERSION
    t.delete("/a/b")
    t.delete("/a")


@pytest.mark.parametrize("path", ["/", "/zookeeper", "/zookeeper/quota", "/zookeeper/config"])
def test_delete_special_paths_is_bad_arguments(t, path):
    assert code_of(datatree.prep_delete, t.view, SID, 1, 0, path, -1) == errors.BADARGUMENTS


@pytest.mark.parametrize("path", ["", "x", "/a/", "/a//b", "/a/./b"])
def test_invalid_paths_are_bad_arguments(t, path):
    assert code_of(datatree.prep_set_data, t.view, SID, 1, 0, path, b"", -1) == \
        errors.BADARGUMENTS


@pytest.mark.parametrize("path, code", [
    ("", errors.BADARGUMENTS), ("x", errors.BADARGUMENTS), ("/a\0b", errors.BADARGUMENTS),
    ("/a/", errors.NONODE), ("/a//b", errors.NONODE), ("/a/./b", errors.NONODE)])
def test_delete_checks_only_slash_and_nul_before_lookup(t, path, code):
    # PrepRequestProcessor's delete: last "/" and NUL are checked, then parent and node are
    # looked up; a malformed path is simply not found (checked against Apache ZooKeeper 3.8).
    assert code_of(datatree.prep_delete, t.view, SID, 1, 0, path, -1) == code


# ---------------------------------------------------------------------- sequential / cversion


def test_sequential_numbering_uses_stored_cversion(t):
    t.create("/s")
    assert t.create("/s/n-", flags=PS) == "/s/n-0000000000"
    assert t.create("/s/n-", flags=ES) == "/s/n-0000000001"
    t.create("/s/plain")                                   # counts too
    t.delete("/s/n-0000000000")                            # deletions do not
    assert t.create("/s/", flags=PS) == "/s/0000000003"
    parent = t.get("/s")
    assert parent.cversion == 4 and parent.num_children == 3
    # Client-visible cversion = 2 * stored - numChildren = creations + deletions.
    assert t.stat("/s")[5] == 2 * 4 - 3 == 4 + 1


def test_sequential_number_after_int32_overflow(t):
    t.create("/s")
    p = t.get("/s").copy()
    p.cversion = 2 ** 31 - 1
    t.view.put("/s", p)
    assert t.create("/s/q", flags=PS) == "/s/q2147483647"
    # String.format("%010d", Integer.MIN_VALUE) in ZooKeeper's PrepRequestProcessor.
    assert t.create("/s/q", flags=PS) == "/s/q-2147483648"
    assert t.create("/s/q", flags=PS) == "/s/q-2147483647"
    assert t.get("/s").cversion == -(2 ** 31) + 2


def test_sequential_name_collision_is_nodeexists(t):
    t.create("/s")
    t.create("/s/x0000000001")
    # Stored cversion is 1 (one creation): the next sequential name is taken.
    assert code_of(datatree.prep_create, t.view, SID, 1, 0, "/s/x", b"", OPEN_ACL_UNSAFE, PS) == \
        errors.NODEEXISTS


def test_visible_cversion_of_root_after_changes(t):
    assert t.stat("/")[5] == -1
    # Stored cversion of "/" starts at 0 with one child: 2*0-1 = -1. After one create: stored 1,
    # 2 children -> 0. After deleting it again: stored 1, 1 child -> 1.
    t.create("/a")
    assert t.stat("/")[5] == 0
    t.delete("/a")
    assert t.stat("/")[5] == 1


# ----------------------------------------------------------------------------- zxids and times


def test_stat_fields_on_create_set_delete(t):
    t.create("/p")                                   # zxid 1
    p_before = t.get("/p")
    assert (p_before.czxid, p_before.mzxid, p_before.pzxid) == (1, 1, 1)
    assert p_before.ctime == p_before.mtime == t.now
    t.create("/p/c", b"abc")                         # zxid 2
    c = t.get("/p/c")
    assert (c.czxid, c.mzxid, c.pzxid, c.version, c.cversion, c.aversion) == (2, 2, 2, 0, 0, 0)
    assert c.ctime == c.mtime == t.now
    p = t.get("/p")
    assert p.pzxid == 2 and p.mzxid == 1 and p.mtime == p_before.mtime   # create: parent pzxid only
    assert p.num_children == 1 and p.cversion == 1
    t.set("/p/c", b"defg")                           # zxid 3
    c = t.get("/p/c")
    assert (c.czxid, c.mzxid, c.pzxid, c.version) == (2, 3, 2, 1)
    assert c.mtime == t.now and c.ctime < c.mtime
    assert t.stat("/p/c")[8] == 4                    # dataLength
    assert t.get("/p").pzxid == 2                    # set_data leaves the parent alone
    t.delete("/p/c")                                 # zxid 4
    p = t.get("/p")
    assert p.pzxid == 4 and p.mzxid == 1 and p.num_children == 0 and p.cversion == 1
    assert t.stat("/p")[5] == 2


def test_ephemeral_owner_and_close_session(t):
    other = SID + 1
    t.create("/d")
    t.create("/d/e1", flags=E)
    seq = t.create("/d/e-", flags=ES)
    t.create("/f", flags=E, sid=other)
    assert t.get("/d/e1").ephemeral_owner == SID
    assert t.stat("/d/e1")[7] == SID
    assert sorted(t.view.ephemerals(SID)) == sorted(["/d/e1", seq])
    txn = datatree.prep_close_session(t.view, SID, 0, 5)
    assert txn.type == txns.CLOSE_SESSION and txn.paths == sorted(["/d/e1", seq])
    events = t.close(SID)
    zx = t.zxid
    assert t.get("/d/e1") is None and t.get(seq) is None
    assert t.get("/d").pzxid == zx and t.get("/d").num_children == 0
    assert t.view.ephemerals(SID) == []
    assert (zx, consts.EVENT_NODE_DELETED, "/d/e1", None) in events
    assert (zx, consts.EVENT_NODE_CHILDREN_CHANGED, "/d", None) in events
    assert t.get("/f").ephemeral_owner == other      # another session's ephemerals stay
    t.delete("/f")
    assert t.view.ephemerals(other) == []


def test_create_session_txn_records_the_session(t):
    t._run(txns.Txn(txns.CREATE_SESSION, 77, 0, 5, timeout_ms=4000))
    assert t.view.sessions == {77: 4000}
    t.close(77)
    assert t.view.sessions == {}


def test_apply_returns_events(t):
    txn = datatree.prep_create(t.view, SID, 1, 0, "/w", b"", OPEN_ACL_UNSAFE, P)
    events, node = datatree.apply(t.view, 1, txn)
    assert events == [(1, consts.EVENT_NODE_CREATED, "/w", None),
                      (1, consts.EVENT_NODE_CHILDREN_CHANGED, "/", None)]
    assert node == t.get("/w")
    txn = datatree.prep_set_data(t.view, SID, 1, 0, "/w", b"x", -1)
    assert datatree.apply(t.view, 2, txn)[0] == [(2, consts.EVENT_NODE_DATA_CHANGED, "/w", None)]
    txn = datatree.prep_delete(t.view, SID, 1, 0, "/w", -1)
    assert datatree.apply(t.view, 3, txn) == (
        [(3, consts.EVENT_NODE_DELETED, "/w", None),
         (3, consts.EVENT_NODE_CHILDREN_CHANGED, "/", None)], None)
    assert datatree.apply(t.view, 4, txns.Txn(txns.ERROR, SID, 1, 0, err=-101)) == ([], None)


def test_events_carry_the_acl_a_watcher_needs_read_on(t):
    """CVE-2024-23944 (3.8.4+): an event goes only to watchers that may READ the node (the
    parent, for NodeChildrenChanged), its ACL as it is at the change; None: world-readable."""
    secret = ((consts.PERM_ALL, "digest", "bob:hash"),)
    mixed = ((consts.PERM_ADMIN, "digest", "bob:hash"), (consts.PERM_READ, "world", "anyone"))
    t.create("/s", acl=secret)
    t.create("/m", acl=mixed)
    txn = datatree.prep_create(t.view, SID, 1, 0, "/s/k", b"", OPEN_ACL_UNSAFE, P)
    assert datatree.apply(t.view, 10, txn)[0] == [
        (10, consts.EVENT_NODE_CREATED, "/s/k", None),
        (10, consts.EVENT_NODE_CHILDREN_CHANGED, "/s", secret)]
    txn = datatree.prep_create(t.view, SID, 1, 0, "/s/k2", b"", secret, P)
    assert datatree.apply(t.view, 11, txn)[0][0] == (11, consts.EVENT_NODE_CREATED, "/s/k2", secret)
    txn = datatree.prep_set_data(t.view, SID, 1, 0, "/m", b"x", -1)
    assert datatree.apply(t.view, 12, txn)[0] == [(12, consts.EVENT_NODE_DATA_CHANGED, "/m", None)]
    txn = datatree.prep_delete(t.view, SID, 1, 0, "/s/k2", -1)
    assert datatree.apply(t.view, 13, txn)[0] == [
        (13, consts.EVENT_NODE_DELETED, "/s/k2", secret),
        (13, consts.EVENT_NODE_CHILDREN_CHANGED, "/s", secret)]


# ----------------------------------------------------------------------------- txn encoding

ACLS = st.lists(st.tuples(st.integers(-2 ** 31, 2 ** 31 - 1), st.text(max_size=8),
                          st.text(max_size=8)), max_size=3).map(tuple)
I64 = st.integers(-2 ** 63, 2 ** 63 - 1)
I32 = st.integers(-2 ** 31, 2 ** 31 - 1)
PATHS = st.text(min_size=1, max_size=20).map(lambda s: "/" + s)


def _hdr(type_):
    return st.fixed_dictionaries({"type": st.just(type_), "session_id": I64, "cxid": I32,
                                  "time_ms": I64})


TXNS = st.one_of(
    st.builds(lambda h, p, d, a, o: txns.Txn(path=p, data=d, acl=a, ephemeral_owner=o, **h),
              _hdr(txns.CREATE), PATHS, st.binary(max_size=40), ACLS, I64),
    st.builds(lambda h, p: txns.Txn(path=p, **h), _hdr(txns.DELETE), PATHS),
    st.builds(lambda h, p, d, v: txns.Txn(path=p, data=d, version=v, **h),
              _hdr(txns.SET_DATA), PATHS, st.binary(max_size=40), I32),
    st.builds(lambda h, to: txns.Txn(timeout_ms=to, **h), _hdr(txns.CREATE_SESSION), I32),
    st.builds(lambda h, ps: txns.Txn(paths=ps, **h), _hdr(txns.CLOSE_SESSION),
              st.lists(PATHS, max_size=5)),
    st.builds(lambda h, e: txns.Txn(err=e, **h), _hdr(txns.ERROR), I32),
)


@given(TXNS)
@settings(max_examples=300, deadline=None)
def test_txn_round_trip_property(txn):
    b = txns.encode(txn)
    assert txns.decode(b) == txn
    assert txns.encode(txns.decode(b)) == b


@pytest.mark.parametrize("txn", [
    txns.Txn(txns.CREATE, SID, 3, 1234, path="/a/b", data=b"\x00\xff", acl=OPEN_ACL_UNSAFE,
             ephemeral_owner=SID),
    txns.Txn(txns.CREATE, -1, -1, -1, path="/\u00e9", data=b"", acl=((1, "digest", "u:p"),
                                                                         (31, "world", "anyone"))),
    txns.Txn(txns.DELETE, SID, 4, 1235, path="/a/b"),
    txns.Txn(txns.SET_DATA, SID, 5, 1236, path="/a", data=b"x" * 1000, version=-(2 ** 31)),
    txns.Txn(txns.CREATE_SESSION, SID, 0, 1237, timeout_ms=30000),
    txns.Txn(txns.CLOSE_SESSION, SID, 0, 1238, paths=[]),
    txns.Txn(txns.CLOSE_SESSION, SID, 6, 1239, paths=["/a", "/b/c"]),
    txns.Txn(txns.ERROR, SID, 7, 1240, err=errors.NODEEXISTS),
], ids=lambda t: "type%d" % t.type)
def test_txn_round_trip_every_type(txn):
    b = txns.encode(txn)
    assert txns.decode(b) == txn


def test_txn_encoding_is_the_documented_grammar():
    b = txns.encode(txns.Txn(txns.DELETE, 1, 2, 3, path="/a"))
    assert b == (b"\x00\x02" + (1).to_bytes(8, "big") + (2).to_bytes(4, "big")
                 + (3).to_bytes(8, "big") + b"\x00\x00\x00\x02/a")
    b = txns.encode(txns.Txn(txns.ERROR, 1, 2, 3, err=-101))
    assert b[:2] == b"\xff\xff" and b[-4:] == (-101).to_bytes(4, "big", signed=True)


@pytest.mark.parametrize("bad", [
    b"",
    b"\x00\x02" + b"\x00" * 20,                                     # truncated DELETE path
    txns.encode(txns.Txn(txns.DELETE, 1, 2, 3, path="/a")) + b"!",  # trailing byte
    txns.encode(txns.Txn(txns.DELETE, 1, 2, 3, path="/a"))[:-1],    # short string
    b"\x00\x63" + b"\x00" * 20,                                     # unknown type 99
    b"\x00\x02" + b"\x00" * 20 + b"\xff\xff\xff\xff",               # negative length
    b"\x00\x02" + b"\x00" * 20 + b"\x00\x00\x00\x01\xff",           # invalid utf-8
])
def test_txn_decode_rejects_garbage(bad):
    with pytest.raises(StorageCorruptError):
        txns.decode(bad)


def test_txn_encode_unknown_type():
    with pytest.raises(ValueError):
        txns.encode(txns.Txn(42, 0, 0, 0))


# ----------------------------------------------------------------------------- model test

NAMES = ["a", "b", "c"]
MODEL_PATHS = ["/a", "/b", "/a/b", "/a/c", "/b/a", "/a/b/c", "/zookeeper", "/zookeeper/quota",
               "/", "/a/", "bad"]
SESSIONS = [0x11, 0x22, 0x33]
# A quota on /a (its stats node's totals come from child lists the overlay does not have).
QUOTA_PATHS = ["/zookeeper/quota/a", "/zookeeper/quota/a/zookeeper_limits",
               "/zookeeper/quota/a/zookeeper_stats"]


def _snapshot(view):
    nodes = {p: n.copy() for p, n in view.nodes.items()}
    children = {p: frozenset(c) for p, c in view.children.items() if c}
    eph = {o: frozenset(ps) for o, ps in view.ephemeral.items() if ps}
    return nodes, children, eph, dict(view.sessions)


class GroupCommitModel(RuleBasedStateMachine):
    """Model (a): prep+apply each request at once. Model (b): prep against a PendingOverlay,
    apply to the committed tree only when a batch is flushed, then overlay.applied(last zxid) --
    the server's prep / group commit / final pipeline. Both must agree on every txn and result.
    Model (b) applies each batch twice: with datatree.apply (`committed`) and by replaying the
    changes the overlay recorded at prep (`replayed`, what Core._apply does); the two trees must
    be the same after every batch, and the nodes returned at prep those apply returns."""

    @initialize()
    def setup(self):
        self.direct = MemoryView(datatree.initial_nodes())
        self.committed = MemoryView(datatree.initial_nodes())
        self.replayed = MemoryView(datatree.initial_nodes())
        self.overlay = PendingOverlay(lambda: self.committed)
        self.pending = []
        self.zxid = 0
        self.log = []

    def _submit(self, prep):
        """prep(view) -> txn; returns the error code (0 for success) seen by both models."""
        self.zxid += 1
        zxid = self.zxid
        now = 10000 + zxid
        results = []
        for view in (self.direct, self.overlay):
            try:
                txn = prep(view, now)
                code = 0
            except ZkError as e:
                txn = txns.Txn(txns.ERROR, 1, zxid, now, err=e.code)
                code = e.code
            results.append((code, txn))
        (code_a, txn_a), (code_b, txn_b) = results
        assert code_a == code_b, (self.log, code_a, code_b)
        assert txn_a == txn_b, (txn_a, txn_b)
        self.log.append((zxid, txn_a))
        datatree.apply(self.direct, zxid, txn_a)
        # What Core._assign does: the overlay takes the txn's effects, tagged with its zxid.
        self.overlay.begin(zxid)
        _, node = datatree.apply(self.overlay, zxid, txn_b)
        self.pending.append((zxid, txn_b, self.overlay.end(), node))
        return code_a

    @rule(path=st.sampled_from(MODEL_PATHS + QUOTA_PATHS), data=st.binary(max_size=3),
          flags=st.sampled_from([P, E, PS, ES]), sid=st.sampled_from(SESSIONS))
    def create(self, path, data, flags, sid):
        self._submit(lambda v, now: datatree.prep_create(v, sid, 1, now, path, data,
                                                         list(OPEN_ACL_UNSAFE), flags))

    @rule(path=st.sampled_from(MODEL_PATHS + ["/a/b0000000000", "/a/0000000001",
                                              "/a0000000002", "/b/c0000000000"]),
          version=st.sampled_from([-1, 0, 1]))
    def delete(self, path, version):
        self._submit(lambda v, now: datatree.prep_delete(v, 1, 1, now, path, version))

    @rule(path=st.sampled_from(MODEL_PATHS + ["/a/b0000000000"]), data=st.binary(max_size=3),
          version=st.sampled_from([-1, 0, 1, 2]))
    def set_data(self, path, data, version):
        self._submit(lambda v, now: datatree.prep_set_data(v, 1, 1, now, path, data, version))

    @rule(sid=st.sampled_from(SESSIONS))
    def close_session(self, sid):
        self._submit(lambda v, now: datatree.prep_close_session(v, sid, 0, now))

    @rule(sid=st.sampled_from(SESSIONS), timeout=st.sampled_from([4000, 6000]))
    def create_session(self, sid, timeout):
        self._submit(lambda v, now: txns.Txn(txns.CREATE_SESSION, sid, 0, now,
                                             timeout_ms=timeout))

    @precondition(lambda self: self.pending)
    @rule(n=st.integers(1, 5))
    def commit_batch(self, n):
        """The group committer made the oldest n pending txns durable: final applies them."""
        batch, self.pending = self.pending[:n], self.pending[n:]
        self._apply(batch)

    def _apply(self, batch):
        for zxid, txn, ops, prepped_node in batch:
            _, node = datatree.apply(self.committed, zxid, txn)
            if ops is None:   # the overlay said it could not (quota stats): apply afresh
                datatree.apply(self.replayed, zxid, txn)
                continue
            assert node == prepped_node, (txn, node, prepped_node)
            replay(self.replayed, ops)
        assert _snapshot(self.replayed) == _snapshot(self.committed)
        self.overlay.applied(batch[-1][0])

    @invariant()
    def overlay_reads_like_the_direct_tree(self):
        if not hasattr(self, "direct"):
            return
        for path in set(self.direct.nodes) | set(self.committed.nodes) | set(MODEL_PATHS):
            if path.endswith("/zookeeper_stats") and path in self.overlay._nodes:
                continue   # its totals come with the apply (child lists), as ZooKeeper's
            assert self.overlay.get(path) == self.direct.get(path), path
        for sid in SESSIONS:
            assert sorted(self.overlay.ephemerals(sid)) == sorted(self.direct.ephemerals(sid))

    def teardown(self):
        if not hasattr(self, "direct"):
            return
        if self.pending:
            self._apply(self.pending)
        assert _snapshot(self.committed) == _snapshot(self.direct)
        assert len(self.overlay) == 0


GroupCommitModel.TestCase.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])
TestGroupCommitModel = GroupCommitModel.TestCase


def test_overlay_replay_is_exact_except_for_a_quota_stats_node(t):
    """Core._assign replays what the overlay recorded, unless the overlay says it could not do
    what the committed tree will: a new zookeeper_stats node gets its subtree's totals from
    child lists, which the overlay does not keep."""
    t.create("/a", b"ab")
    t.create("/a/x", b"xyz")
    t.create("/zookeeper/quota/a")
    t.create("/zookeeper/quota/a/zookeeper_limits", b"count=-1,bytes=-1")
    overlay = PendingOverlay(lambda: t.view)

    def prep_apply(prep, zxid=None):
        txn = prep(overlay)
        overlay.begin(zxid or t.zxid + 1)
        _, node = datatree.apply(overlay, overlay.zxid, txn)
        return txn, overlay.end(), node

    txn, ops, node = prep_apply(lambda v: datatree.prep_create(
        v, SID, 1, 5000, "/zookeeper/quota/a/zookeeper_stats", b"count=0,bytes=0",
        list(OPEN_ACL_UNSAFE), P))
    assert ops is None and not overlay.exact
    # While it is pending, what comes after it is not replayed either: its quota bookkeeping
    # read the stats node as the overlay has it.
    txn2, ops2, _ = prep_apply(lambda v: datatree.prep_create(
        v, SID, 1, 5000, "/a/z", b"12", list(OPEN_ACL_UNSAFE), P), zxid=t.zxid + 2)
    assert overlay.exact and ops2 is None
    t._run(txn)
    t._run(txn2)
    assert t.get("/zookeeper/quota/a/zookeeper_stats").data == b"count=3,bytes=7"
    overlay.applied(t.zxid)
    t.delete("/a/z")
    assert t.get("/zookeeper/quota/a/zookeeper_stats").data == b"count=2,bytes=5"
    overlay.applied(t.zxid)

    # The rest of the tree's ops replay exactly, quota bookkeeping included.
    for prep in (lambda v: datatree.prep_create(v, SID, 1, 5001, "/a/y", b"1234",
                                                list(OPEN_ACL_UNSAFE), E),
                 lambda v: datatree.prep_set_data(v, SID, 1, 5002, "/a/x", b"", -1),
                 lambda v: datatree.prep_delete(v, SID, 1, 5003, "/a/y", -1)):
        replayed = MemoryView()
        replayed.nodes = {p: n for p, n in t.view.nodes.items()}
        replayed.children = {p: set(c) for p, c in t.view.children.items()}
        replayed.ephemeral = {o: set(ps) for o, ps in t.view.ephemeral.items()}
        txn, ops, node = prep_apply(prep)
        assert ops is not None
        replay(replayed, ops)
        assert t._run(txn)[1] == node
        assert _snapshot(replayed) == _snapshot(t.view)
        overlay.applied(t.zxid)
    assert t.get("/zookeeper/quota/a/zookeeper_stats").data == b"count=2,bytes=2"


def test_overlay_keeps_applied_entries_until_forgotten(t):
    """An applied txn's entry stays in the overlay (it says what the base says) until there are
    many; a change made to the base outside the pipeline (Core.set_config_node) is followed by
    forget(path), after which reads see the base -- but an entry of a pending txn stays."""
    t.create("/a", b"1")
    overlay = PendingOverlay(lambda: t.view)
    txn = datatree.prep_set_data(overlay, SID, 1, 5000, "/a", b"2", -1)
    overlay.begin(t.zxid + 1)
    datatree.apply(overlay, overlay.zxid, txn)
    assert overlay.end() is not None
    t._run(txn)
    later = datatree.prep_create(overlay, SID, 1, 5001, "/b", b"", list(OPEN_ACL_UNSAFE), P)
    overlay.begin(t.zxid + 1)          # /b is pending past the applied /a
    datatree.apply(overlay, overlay.zxid, later)
    overlay.applied(t.zxid)
    assert "/a" in overlay._nodes and overlay.get("/a") == t.get("/a")
    changed = t.get("/a").copy()        # the base changes /a on its own
    changed.data = b"local"
    t.view.put("/a", changed)
    assert overlay.get("/a").data == b"2"
    overlay.forget("/a")
    overlay.forget("/b")
    assert overlay.get("/a").data == b"local"
    assert overlay.get("/b") is not None and t.get("/b") is None


# ----------------------------------------------------------------------------- fused writes
# datatree.fused_* (the core's common writes, prep and apply in one) must give exactly what
# prep_* + apply() give -- txn, events, node, recorded changes -- or None with the view
# untouched, whatever the request.

_VALID_NAMES = ["/a", "/a/b", "/a/b/c", "/e", "/e/x", "/a/e"]
_BAD_NAMES = ["/zookeeper", "/zookeeper/q", "/zookeeper/quota", "/", "", "a", "/a/", "/a//b",
              "/a\0b", "/.x", None]
_SECRET = ((consts.PERM_ALL, "digest", "bob:hash"),)
_GOOD_ACL = [(31, "world", "anyone")]
_ODD_ACLS = [[(1, "world", "anyone")], list(_SECRET), [(31, "auth", "")], [],
             [(consts.PERM_READ | consts.PERM_CREATE, "world", "anyone")]]
_AUTHS = [((), False), ((("digest", "bob:hash"),), False), ((), True), ((("super", ""),), False)]


def _random_requests(rnd, n):
    """n (request, auth, session) -- mostly ones that succeed, some of every kind prep refuses
    -- and, at a random point or never, a quota ("quota", path)."""
    def pick(good, odd, p_good=0.85):
        return rnd.choice(good) if rnd.random() < p_good else rnd.choice(odd)
    out = []
    for _ in range(n):
        kind = rnd.choice(["create", "create", "set", "delete"])
        path = pick(_VALID_NAMES, _BAD_NAMES)
        if kind == "create":
            req = (kind, path, rnd.choice([b"", b"v", None]), pick([_GOOD_ACL], _ODD_ACLS),
                   pick([P, P, E, PS, ES], [-1, 4, 5, 6, 7]))
        elif kind == "set":
            req = (kind, path, rnd.choice([b"", b"w"]), pick([-1], [0, 1, 2]))
        else:
            req = (kind, path, pick([-1], [0, 1, -2]))
        out.append((req, pick(_AUTHS[:1], _AUTHS[1:], 0.7), rnd.choice([SID, SID, SID + 1])))
    if rnd.random() < 0.5:
        out.insert(rnd.randrange(n + 1), (("quota", rnd.choice(["/a", "/e"])), None, None))
    return out


# The fused writes as the core calls them (datatree.fused_*: the compiled twins of
# zkpy.tree._fastpath where built) and their pure definitions.
_FUSED_TWINS = {
    "installed": (datatree.fused_create, datatree.fused_set_data, datatree.fused_delete),
    "pure": (datatree.fused_create_pure, datatree.fused_set_data_pure, datatree.fused_delete_pure),
}


def _fused_and_plain(req, sid, twins="installed"):
    """(fused function, its args, prep function, its args) of one request."""
    kind, path = req[0], req[1]
    fused_create, fused_set_data, fused_delete = _FUSED_TWINS[twins]
    if kind == "create":
        _, _, data, acl, flags = req
        return (fused_create, (path, data, acl, flags),
                lambda v, *a, auth: datatree.prep_create(v, *a, path, data, acl, flags, auth=auth))
    if kind == "set":
        _, _, data, version = req
        return (fused_set_data, (path, data, version),
                lambda v, *a, auth: datatree.prep_set_data(v, *a, path, data, version, auth=auth))
    _, _, version = req
    return (fused_delete, (path, version),
            lambda v, *a, auth: datatree.prep_delete(v, *a, path, version, auth=auth))


def _state(ov):
    base = ov._base()
    return (dict(ov._nodes), {o: dict(c) for o, c in ov._eph.items()}, dict(base.nodes))


@pytest.mark.parametrize("twins", sorted(_FUSED_TWINS))
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.randoms(use_true_random=False))
def test_fused_writes_are_prep_then_apply(twins, rnd):
    views = [PendingOverlay((lambda m: lambda: m)(MemoryView(datatree.initial_nodes())))
             for _ in range(2)]
    fused_view, plain_view = views
    zxid = 0
    for req, auth, sid in _random_requests(rnd, 40):
        zxid += 1
        if req[0] == "quota":   # a quota in the tree: the fused writes must step aside
            for v in views:
                v.begin(zxid)
                for p in ("/zookeeper/quota" + req[1], "/zookeeper/quota%s/zookeeper_limits"
                          % req[1]):
                    try:
                        datatree.apply(v, zxid, datatree.prep_create(v, SID, 1, 5, p, b"n=9",
                                                                     OPEN_ACL_UNSAFE, P))
                    except ZkError:
                        pass
            continue
        fused, fargs, prep = _fused_and_plain(req, sid, twins)
        plain_view.begin(zxid)
        try:
            txn = prep(plain_view, sid, 3, 77, auth=auth)
        except ZkError:
            txn = None
        plain = None if txn is None else datatree.apply(plain_view, zxid, txn)
        plain_ops = plain_view.end()
        before = _state(fused_view)
        fused_view.begin(zxid)
        got = fused(fused_view, zxid, sid, 3, 77, *fargs, auth)
        if got is None:
            assert _state(fused_view) == before and fused_view.ops == []
            if txn is not None:   # the core's general path then
                datatree.apply(fused_view, zxid, txn)
        else:
            assert txn is not None, (req, auth)
            assert got == (txn,) + tuple(plain), (req, auth)
            assert fused_view.end() == plain_ops
        assert _state(fused_view)[:2] == _state(plain_view)[:2]


def test_fused_writes_take_the_common_requests():
    """The fused paths are taken (not None) for the requests the benchmarks and most clients
    send."""
    ov = PendingOverlay(lambda m=MemoryView(datatree.initial_nodes()): m)
    auth = ((), False)
    got = datatree.fused_create(ov, 1, SID, 1, 5, "/a", b"v", [(31, "world", "anyone")], P, auth)
    assert got is not None and got[0].path == "/a" and got[2].czxid == 1
    got = datatree.fused_create(ov, 2, SID, 1, 5, "/a/s-", b"", [(31, "world", "anyone")], ES, auth)
    assert got is not None and got[0].path == "/a/s-0000000000" and got[0].ephemeral_owner == SID
    got = datatree.fused_set_data(ov, 3, SID, 1, 6, "/a", b"w", 0, auth)
    assert got is not None and got[2].version == 1 and got[2].data == b"w"
    assert datatree.fused_set_data(ov, 4, SID, 1, 6, "/a", b"w", 0, auth) is None   # BADVERSION
    got = datatree.fused_delete(ov, 4, SID, 1, 7, "/a/s-0000000000", -1, auth)
    assert got is not None and got[1][0][1:] == (consts.EVENT_NODE_DELETED, "/a/s-0000000000", None)


@pytest.mark.skipif(datatree._fastpath is None,
                    reason="zkpy.tree._fastpath not built (or ZKPY_PURE=1): no compiled twin")
def test_compiled_fused_writes_do_the_common_case_themselves():
    """The compiled fused_create / fused_set_data / fused_delete give what the pure ones give for
    the common requests without falling back to them (the pure twins are swapped for ones that
    fail)."""
    def refuse(*args):
        raise AssertionError("fell back to the pure twin")

    auth = ((), False)
    world = [(31, "world", "anyone")]
    compiled, pure = [PendingOverlay(lambda m=MemoryView(datatree.initial_nodes()): m)
                      for _ in range(2)]
    for v in (compiled, pure):
        assert quota.no_quota(v) and v.quota_free   # known quota-free: the compiled case
    steps = [("create", "/a", b"v", world, P), ("create", "/a/e-", b"", world, ES),
             ("create", "/a/r", None, [(consts.PERM_READ, "world", "anyone")], PS),
             ("set", "/a", b"w", -1), ("set", "/a", b"x", 1), ("delete", "/a/e-0000000000", -1),
             ("delete", "/a/r0000000001", 0), ("set", "/a", b"", 2)]
    fns = {"create": (datatree.fused_create, datatree.fused_create_pure),
           "set": (datatree.fused_set_data, datatree.fused_set_data_pure),
           "delete": (datatree.fused_delete, datatree.fused_delete_pure)}
    datatree._install_fastpath(refuse, refuse, refuse)
    try:
        for zxid, (kind, path, *rest) in enumerate(steps, 1):
            got = []
            for v, fn in zip((compiled, pure), fns[kind]):
                v.begin(zxid)
                got.append((fn(v, zxid, SID, 4, 9, path, *rest, auth), v.end()))
            assert got[0][0] is not None and got[0] == got[1], (kind, path)
        assert compiled._nodes == pure._nodes and compiled._eph == pure._eph
        assert compiled._base().nodes == pure._base().nodes
    finally:
        datatree._install_fastpath()


def test_core_calls_the_installed_fused_writes():
    """The core's table of fused writes holds what datatree installed: the compiled twins when
    zkpy.tree._fastpath is built (not ZKPY_PURE=1), else the pure functions."""
    import os
    from zkpy.server import core
    table = {op: fn for op, (_, fn) in core._FUSED.items()}
    assert table[consts.OP_DELETE] is datatree.fused_delete
    assert table[consts.OP_SET_DATA] is datatree.fused_set_data
    assert table[consts.OP_CREATE] is table[consts.OP_CREATE2] is datatree.fused_create
    if os.environ.get("ZKPY_PURE") == "1" or datatree._fastpath is None:
        assert datatree.fused_delete is datatree.fused_delete_pure
    else:
        assert datatree.fused_delete is datatree._fastpath.fused_delete
        assert datatree.fused_create is datatree._fastpath.fused_create


def test_fused_writes_check_acls_and_step_aside_for_quotas():
    ov = PendingOverlay(lambda m=MemoryView(datatree.initial_nodes()): m)
    anyone, bob = ((), False), ((("digest", "bob:hash"),), False)
    ov.begin(1)
    assert datatree.fused_create(ov, 1, SID, 1, 5, "/s", b"", list(_SECRET), P, anyone)
    for auth, ok in ((anyone, False), (bob, True)):
        ov.begin(2)
        assert (datatree.fused_create(ov, 2, SID, 1, 5, "/s/k", b"", _GOOD_ACL, P, auth)
                is not None) == ok
    ov.begin(3)
    assert datatree.fused_create(ov, 3, SID, 1, 5, "/s/k2", b"", list(_SECRET), P, bob)
    for auth, ok in ((anyone, False), (bob, True)):
        ov.begin(4)
        assert (datatree.fused_set_data(ov, 4, SID, 1, 5, "/s/k2", b"x", -1, auth)
                is not None) == ok
    for auth, ok in ((anyone, False), (bob, True)):
        ov.begin(5)
        assert (datatree.fused_delete(ov, 5, SID, 1, 5, "/s/k", -1, auth) is not None) == ok
    ov.begin(6)
    assert datatree.fused_delete(ov, 6, SID, 1, 5, "/zookeeper/config", -1, bob) is None
    datatree.apply(ov, 7, datatree.prep_create(ov, SID, 1, 5, "/zookeeper/quota/s", b"",
                                               OPEN_ACL_UNSAFE, P))
    ov.begin(8)
    assert datatree.fused_set_data(ov, 8, SID, 1, 6, "/s/k2", b"x", -1, bob) is None
    assert datatree.fused_create(ov, 8, SID, 1, 6, "/s/k3", b"x", _GOOD_ACL, P, bob) is None
    assert datatree.fused_delete(ov, 8, SID, 1, 6, "/s/k2", -1, bob) is None
