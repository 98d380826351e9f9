"""Basic znode operations with kazoo 2.11 against both servers: create/create2, node types and
sequential names, delete/set versions, children, sync, every Stat field, big and binary data,
unicode paths, the /zookeeper system nodes, path validation (sent raw, past kazoo's own checks),
and (zkpy only) multi answered UNIMPLEMENTED.
"""

import itertools
import time

import pytest
from kazoo.exceptions import (BadArgumentsError, BadVersionError, ConnectionLoss,
                              MarshallingError, NoChildrenForEphemeralsError, NodeExistsError,
                              NoNodeError, NotEmptyError, ZookeeperError)
from kazoo.protocol.serialization import Create, Delete, GetData
from kazoo.security import OPEN_ACL_UNSAFE


@pytest.fixture(scope="module")
def zk(shared_zk_server):
    from kazoo.client import KazooClient

    client = KazooClient(hosts=shared_zk_server.hosts, timeout=10.0)
    client.start(timeout=15)
    yield client
    client.stop()
    client.close()


@pytest.fixture
def base(zk, request):
    """A fresh persistent parent path for one test."""
    name = "".join(c if c.isalnum() or c in "_-" else "_" for c in request.node.name)
    path = "/b%d-%s" % (next(_COUNTER), name)
    zk.create(path)
    return path


_COUNTER = itertools.count()


def raw_call(client, request, timeout=5.0):
    """Send a request record as is: kazoo's path checks and root prefixing are skipped."""
    result = client.handler.async_result()
    client._call(request, result)
    return result.get(timeout=timeout)


def now_ms():
    return int(time.time() * 1000)


# -- create ----------------------------------------------------------------------------------


def test_create_and_create2(zk, base):
    assert zk.create(base + "/plain", b"v") == base + "/plain"
    path, stat = zk.create(base + "/two", b"data", include_data=True)
    assert path == base + "/two"
    assert stat == zk.exists(path)
    assert stat.czxid == stat.mzxid == stat.pzxid > 0
    assert (stat.version, stat.cversion, stat.aversion) == (0, 0, 0)
    assert (stat.ephemeralOwner, stat.dataLength, stat.numChildren) == (0, 4, 0)
    assert stat.ctime == stat.mtime
    with pytest.raises(NodeExistsError):
        zk.create(base + "/two")
    with pytest.raises(NoNodeError):
        zk.create(base + "/missing/child")


def test_ephemeral_owner_is_session_id(zk, base):
    sid = zk.client_id[0]
    _, stat = zk.create(base + "/eph", ephemeral=True, include_data=True)
    assert stat.ephemeralOwner == sid != 0
    assert zk.exists(base + "/eph").ephemeralOwner == sid
    _, stat = zk.create(base + "/pers", include_data=True)
    assert stat.ephemeralOwner == 0


def test_no_children_for_ephemerals(zk, base):
    zk.create(base + "/eph", ephemeral=True)
    with pytest.raises(NoChildrenForEphemeralsError):
        zk.create(base + "/eph/child")
    with pytest.raises(NoChildrenForEphemeralsError):
        zk.create(base + "/eph/seq-", sequence=True)


@pytest.mark.parametrize("ephemeral", [False, True], ids=["persistent", "ephemeral"])
def test_sequential_names(zk, base, ephemeral):
    """The %010d suffix counts the parent's child creations. A delete bumps the parent's
    cversion as stat shows it but not the suffix counter (observed on Apache 3.8.0:
    PrepRequestProcessor takes the suffix from its parent change record, which a delete
    duplicates without touching cversion)."""
    p = base + "/seq"
    zk.create(p)
    first = zk.create(p + "/n-", b"a", sequence=True, ephemeral=ephemeral)
    assert first == p + "/n-0000000000"
    zk.create(p + "/plain")  # a plain create takes a number too
    assert zk.create(p + "/n-", sequence=True, ephemeral=ephemeral) == p + "/n-0000000002"
    assert zk.exists(p).cversion == 3
    zk.delete(p + "/plain")
    zk.delete(first)
    assert zk.exists(p).cversion == 5
    assert zk.create(p + "/n-", sequence=True, ephemeral=ephemeral) == p + "/n-0000000003"
    # The suffix may follow any name, including an empty one.
    empty = zk.create(p + "/", sequence=True, ephemeral=ephemeral)
    assert empty == p + "/0000000004"
    _, stat = zk.create(p + "/x", sequence=True, ephemeral=ephemeral, include_data=True)
    assert stat.ephemeralOwner == (zk.client_id[0] if ephemeral else 0)
    zk.delete(empty)
    zk.create(p + "/y")
    assert zk.create(p + "/x", sequence=True, ephemeral=ephemeral) == p + "/x0000000007"
    assert sorted(zk.get_children(p)) == ["n-0000000002", "n-0000000003", "x0000000005",
                                          "x0000000007", "y"]
    assert zk.exists(p).cversion == 11


def test_makepath(zk, base):
    path = zk.create(base + "/a/b/c/d", b"leaf", makepath=True)
    assert path == base + "/a/b/c/d"
    assert zk.get(path)[0] == b"leaf"
    assert zk.get(base + "/a/b")[0] == b""
    assert zk.get_children(base + "/a/b/c") == ["d"]


# -- delete / set / get ----------------------------------------------------------------------


def test_delete_with_version(zk, base):
    p = base + "/dv"
    zk.create(p, b"0")
    zk.set(p, b"1")
    with pytest.raises(BadVersionError):
        zk.delete(p, version=0)
    assert zk.exists(p) is not None
    zk.delete(p, version=1)
    assert zk.exists(p) is None
    with pytest.raises(NoNodeError):
        zk.delete(p)


def test_delete_non_empty(zk, base):
    zk.create(base + "/full/kid", makepath=True)
    with pytest.raises(NotEmptyError):
        zk.delete(base + "/full")
    zk.delete(base + "/full/kid")
    zk.delete(base + "/full")


def test_exists_get_set_with_version(zk, base):
    p = base + "/gs"
    assert zk.exists(p) is None
    with pytest.raises(NoNodeError):
        zk.get(p)
    with pytest.raises(NoNodeError):
        zk.set(p, b"x")
    zk.create(p, b"one")
    data, stat = zk.get(p)
    assert (data, stat.version) == (b"one", 0)
    stat = zk.set(p, b"two", version=0)
    assert stat.version == 1
    with pytest.raises(BadVersionError):
        zk.set(p, b"three", version=0)
    stat = zk.set(p, b"three", version=-1)
    assert stat.version == 2
    assert zk.get(p)[0] == b"three"
    zk.set(p, b"")
    data, stat = zk.get(p)
    assert (data, stat.dataLength, stat.version) == (b"", 0, 3)


def test_get_children_and_children2_stat(zk, base):
    for name in ("c", "a", "b"):
        zk.create(base + "/" + name)
    assert sorted(zk.get_children(base)) == ["a", "b", "c"]
    children, stat = zk.get_children(base, include_data=True)
    assert sorted(children) == ["a", "b", "c"]
    assert stat == zk.exists(base)
    assert (stat.numChildren, stat.cversion) == (3, 3)
    with pytest.raises(NoNodeError):
        zk.get_children(base + "/nope")


def test_sync(zk, base):
    assert zk.sync(base) == base
    assert zk.sync("/") == "/"


def test_every_stat_field(zk, base):
    p = base + "/st"
    t0 = now_ms()
    _, st = zk.create(p, b"abc", include_data=True)
    assert st.czxid == st.mzxid == st.pzxid
    assert abs(st.ctime - t0) < 60_000 and st.ctime == st.mtime
    assert (st.version, st.cversion, st.aversion, st.ephemeralOwner,
            st.dataLength, st.numChildren) == (0, 0, 0, 0, 3, 0)

    time.sleep(0.01)
    st2 = zk.set(p, b"defg")
    assert st2.czxid == st.czxid and st2.mzxid > st.czxid
    assert st2.ctime == st.ctime and st2.mtime >= st.mtime
    assert (st2.version, st2.dataLength, st2.pzxid, st2.cversion) == (1, 4, st.pzxid, 0)

    _, kid = zk.create(p + "/k", include_data=True)
    st3 = zk.exists(p)
    assert (st3.cversion, st3.numChildren, st3.pzxid) == (1, 1, kid.czxid)
    assert (st3.mzxid, st3.version, st3.mtime) == (st2.mzxid, 1, st2.mtime)

    zk.set(p + "/k", b"child data")  # a child's data is not the parent's business
    assert zk.exists(p) == st3

    zk.delete(p + "/k")
    st4 = zk.exists(p)
    assert (st4.cversion, st4.numChildren) == (2, 0)
    assert st4.pzxid > kid.czxid
    assert (st4.mzxid, st4.version) == (st2.mzxid, 1)

    # Every stat a reply carries agrees: get, exists, getChildren2.
    assert zk.get(p)[1] == st4 == zk.get_children(p, include_data=True)[1]


def test_large_data_near_one_megabyte(zk, base):
    big = bytes(range(256)) * 3906 + b"x" * 64  # 1,000,000 bytes
    assert len(big) == 1_000_000
    zk.create(base + "/big", big)
    data, stat = zk.get(base + "/big")
    assert data == big and stat.dataLength == 1_000_000
    big2 = big[::-1]
    assert zk.set(base + "/big", big2).dataLength == 1_000_000
    assert zk.get(base + "/big")[0] == big2


def test_binary_data(zk, base):
    blob = bytes(range(256)) + b"\0\0\xff\xfe" + "ü".encode("latin-1")
    zk.create(base + "/bin", blob)
    assert zk.get(base + "/bin")[0] == blob


def test_unicode_paths(zk, base):
    names = ["ünïcødé", "日本語", "emoji-free ☃ ß", "тест"]
    for i, name in enumerate(names):
        assert zk.create(base + "/" + name, str(i).encode()) == base + "/" + name
    assert sorted(zk.get_children(base)) == sorted(names)
    assert zk.get(base + "/日本語")[0] == b"1"
    seq = zk.create(base + "/☃-", sequence=True)
    assert seq == base + "/☃-0000000004"


# -- the system nodes ------------------------------------------------------------------------

ZERO_STAT = dict(czxid=0, mzxid=0, ctime=0, mtime=0, version=0, cversion=0, aversion=0,
                 ephemeralOwner=0, dataLength=0, numChildren=0, pzxid=0)


def _stat_dict(stat):
    return {k: getattr(stat, k) for k in ZERO_STAT}


def test_system_nodes_of_a_fresh_server(zk_server, make_client):
    client = make_client(zk_server)
    data, stat = client.get("/")
    assert data == b"" and _stat_dict(stat) == dict(ZERO_STAT, cversion=-1, numChildren=1)
    assert client.get_children("/") == ["zookeeper"]
    data, stat = client.get("/zookeeper")
    assert data == b"" and _stat_dict(stat) == dict(ZERO_STAT, cversion=-2, numChildren=2)
    assert sorted(client.get_children("/zookeeper")) == ["config", "quota"]
    data, stat = client.get("/zookeeper/quota")
    assert data == b"" and _stat_dict(stat) == ZERO_STAT
    data, stat = client.get("/zookeeper/config")
    assert data == b"" and _stat_dict(stat) == dict(ZERO_STAT, aversion=-1)
    acl, _ = client.get_acls("/zookeeper/config")
    assert [(a.perms, a.id.scheme, a.id.id) for a in acl] == [(1, "world", "anyone")]
    acl, _ = client.get_acls("/zookeeper")
    assert [(a.perms, a.id.scheme, a.id.id) for a in acl] == [(31, "world", "anyone")]
    # The first child of / turns its cversion from -1 to 0.
    client.create("/first")
    stat = client.exists("/")
    assert (stat.cversion, stat.numChildren, stat.pzxid) == (0, 2, client.exists("/first").czxid)


@pytest.mark.parametrize("path", ["/", "/zookeeper", "/zookeeper/quota", "/zookeeper/config"])
def test_deleting_system_nodes_is_bad_arguments(zk, path):
    with pytest.raises(BadArgumentsError):
        zk.delete(path)
    assert zk.exists(path) is not None


def test_child_of_zookeeper_node_can_be_created(zk):
    zk.create("/zookeeper/quota/mine", b"q")
    assert zk.get("/zookeeper/quota/mine")[0] == b"q"
    zk.delete("/zookeeper/quota/mine")


# -- path validation, sent raw ---------------------------------------------------------------
# Each case: (op, path relative to `base` unless absolute, error class). Paths whose parent
# exists, so Apache's checks (PrepRequestProcessor: validatePathForCreate, getRecordForPath,
# validatePath) agree on BADARGUMENTS whatever their order.

INVALID_CREATE = ["relative", "{b}/", "//x", "{b}/.", "{b}/..", "{b}/x\0y", "{b}/x\x01y",
                  "{b}/x\x7fy", "{b}/x\u0085y", "{b}/x\uf000y", "{b}/x\ufff5y"]


@pytest.mark.parametrize("raw_path", INVALID_CREATE)
def test_create_invalid_path_is_bad_arguments(zk, base, raw_path):
    path = raw_path.format(b=base)
    with pytest.raises(BadArgumentsError):
        raw_call(zk, Create(path, b"", OPEN_ACL_UNSAFE, 0))
    assert zk.connected
    assert zk.get_children(base) == []


@pytest.mark.parametrize("raw_path", ["relative", "{b}/x\0y"])
def test_delete_invalid_path_is_bad_arguments(zk, base, raw_path):
    with pytest.raises(BadArgumentsError):
        raw_call(zk, Delete(raw_path.format(b=base), -1))
    assert zk.connected


@pytest.mark.parametrize("raw_path", ["relative", "{b}/", "{b}//x", "{b}/x\0y"])
def test_get_data_of_invalid_path_is_no_node(zk, base, raw_path):
    with pytest.raises(NoNodeError):
        raw_call(zk, GetData(raw_path.format(b=base), None))


# Apache validates less up front and looks the parent (create) or node (delete) up first, so
# these give NONODE (PrepRequestProcessor); zkpy follows the same order.
ORDER_CASES = [
    ("create", "{b}/missing/./x"),
    ("create", "{b}/missing//x"),
    ("delete", "{b}/"),
    ("delete", "//x"),
    ("delete", "{b}/."),
    ("delete", "{b}/x\x01y"),
]


@pytest.mark.parametrize("op, raw_path", ORDER_CASES)
def test_invalid_path_with_missing_parent_is_no_node(zk, base, zk_kind, request, op, raw_path):
    path = raw_path.format(b=base)
    record = Create(path, b"", OPEN_ACL_UNSAFE, 0) if op == "create" else Delete(path, -1)
    with pytest.raises(NoNodeError):
        raw_call(zk, record)


@pytest.mark.parametrize("op", ["create", "getData", "delete"])
def test_null_path_is_answered_not_dropped(zk, zk_kind, request, op):
    """kazoo writes "" as a null ustring (-1). Apache answers MARSHALLINGERROR (its final or prep
    processor hits a NullPointerException) and keeps the connection."""
    record = {"create": Create("", b"", OPEN_ACL_UNSAFE, 0), "getData": GetData("", None),
              "delete": Delete("", -1)}[op]
    try:
        raw_call(zk, record)
    except ConnectionLoss:
        pytest.fail("the server dropped the connection on a null path")
    except ZookeeperError as e:
        assert isinstance(e, MarshallingError)
    else:
        pytest.fail("a null path was accepted")
    assert zk.connected
    assert zk.exists("/zookeeper") is not None


# -- multi -----------------------------------------------------------------------------------


def test_multi_is_all_or_nothing(zk, base):
    """A failing op rolls the whole multi back (ZooKeeper Programmer's Guide, multi)."""
    tx = zk.transaction()
    tx.create(base + "/tx-a", b"a")
    tx.create(base + "/tx-a/b", b"b")
    tx.delete(base + "/tx-missing")
    results = tx.commit()
    assert [type(r).__name__ for r in results] == [
        "RolledBackError", "RolledBackError", "NoNodeError"]
    assert zk.exists(base + "/tx-a") is None
    tx = zk.transaction()
    tx.create(base + "/tx-a", b"a")
    tx.create(base + "/tx-a/b", b"b")
    tx.check(base + "/tx-a", 0)
    tx.set_data(base + "/tx-a", b"a2")
    tx.delete(base + "/tx-a/b")
    results = tx.commit()
    assert results[:3] == [base + "/tx-a", base + "/tx-a/b", True]
    assert results[3].version == 1 and results[4] is True
    data, stat = zk.get(base + "/tx-a")
    assert data == b"a2" and stat.numChildren == 0
    # One zxid for the whole multi.
    assert stat.mzxid == stat.czxid


def test_repeated_get_children_follows_every_change(zk, base):
    """Served from a per-path response cache keyed by pzxid (as ZooKeeper's): every child create
    or delete must show on the next read, on this session and on another one."""
    zk.create(base + "/kids")
    expected = set()
    for i in range(30):
        assert set(zk.get_children(base + "/kids")) == expected
        if i % 3 == 2:
            victim = sorted(expected)[0]
            zk.delete(base + "/kids/" + victim)
            expected.discard(victim)
        else:
            zk.create(base + "/kids/c%02d" % i)
            expected.add("c%02d" % i)
        kids, stat = zk.get_children(base + "/kids", include_data=True)
        assert set(kids) == expected and stat.numChildren == len(expected)
    zk.delete(base + "/kids/" + sorted(expected)[0])
    zk.create(base + "/kids/again")
    assert len(zk.get_children(base + "/kids")) == len(expected)
