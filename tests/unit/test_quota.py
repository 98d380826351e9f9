"""Quotas (zkpy.tree.quota and its use in zkpy.tree.datatree) over a MemoryView. No I/O.

The stats text and arithmetic follow StatsTrack, DataTree.updateQuotaStat/updateQuotaForPath and
ZooKeeperServer.checkQuota of Apache ZooKeeper 3.8; tests/compat/test_quota.py checks the same
against the real server through zkCli.
"""

import pytest

from zkpy import errors
from zkpy.errors import ZkError
from zkpy.proto import consts
from zkpy.tree import datatree, quota, txns
from zkpy.tree.node import OPEN_ACL_UNSAFE
from zkpy.tree.overlay import MemoryView

SID = 0x1000000000001


class Tree(object):
    def __init__(self, enforce=False):
        self.view = MemoryView(datatree.initial_nodes())
        self.zxid = 0
        self.enforce = enforce
        self.warnings = []

    def run(self, txn):
        self.zxid += 1
        datatree.apply(self.view, self.zxid, txn)
        return txn

    def create(self, path, data=b"", flags=consts.CREATE_PERSISTENT, sid=SID):
        return self.run(datatree.prep_create(self.view, sid, 1, 1000, path, data,
                                             list(OPEN_ACL_UNSAFE), flags,
                                             enforce_quota=self.enforce,
                                             quota_warn=self.warnings.append))

    def set(self, path, data):
        return self.run(datatree.prep_set_data(self.view, SID, 1, 1000, path, data, -1,
                                               enforce_quota=self.enforce,
                                               quota_warn=self.warnings.append))

    def delete(self, path):
        return self.run(datatree.prep_delete(self.view, SID, 1, 1000, path, -1))

    def setquota(self, path, limits):
        # What zkCli's SetQuotaCommand does: the quota path, limits, then stats count=0,bytes=0.
        p = quota.QUOTA_ROOT
        for part in path.strip("/").split("/"):
            p += "/" + part
            if self.view.get(p) is None:
                self.create(p)
        self.create(p + "/" + quota.LIMIT_NODE, limits.encode())
        self.create(p + "/" + quota.STAT_NODE, b"count=0,bytes=0")

    def stats(self, path):
        return self.view.get(quota.stat_path(path)).data.decode()


def test_parse_and_format_like_statstrack():
    assert quota.parse(b"count=3,bytes=-1") == {"count": 3, "bytes": -1}
    s = quota.parse(b"count=-1,bytes=-1=;byteHardLimit=10;countHardLimit=-1")
    assert s == {"count": -1, "bytes": -1, "byteHardLimit": 10, "countHardLimit": -1}
    assert quota.format_stats(s) == b"count=-1,bytes=-1=;byteHardLimit=10;countHardLimit=-1"
    assert quota.format_stats({"count": 2, "bytes": 5}) == b"count=2,bytes=5"
    assert quota.format_stats({}) == b"count=-1,bytes=-1"
    assert quota.parse(b"") == {} and quota.parse(None) == {}
    assert quota.parse(b"count=,bytes=4") == {"count": -1, "bytes": 4}
    assert quota.parse(b"junk,count=x,bytes=2") == {"bytes": 2}  # never raises
    assert quota.get({}, "count") == -1


def test_paths():
    assert quota.limit_path("/a/b") == "/zookeeper/quota/a/b/zookeeper_limits"
    assert quota.stat_path("/a") == "/zookeeper/quota/a/zookeeper_stats"
    assert quota.trim_quota_path("/zookeeper/quota/a/b") == "/a/b"


def test_max_prefix_is_deepest_quota_ancestor():
    t = Tree()
    t.create("/a")
    t.create("/a/b")
    assert quota.max_prefix_with_quota(t.view, "/a/b") is None
    t.setquota("/a", "count=5,bytes=-1")
    assert quota.max_prefix_with_quota(t.view, "/a/b/c") == "/a"
    assert quota.max_prefix_with_quota(t.view, "/a") == "/a"
    assert quota.max_prefix_with_quota(t.view, "/ab") is None
    assert quota.max_prefix_with_quota(t.view, "/") is None


def test_stats_initialised_from_subtree_and_kept_current():
    t = Tree()
    t.create("/q", b"abc")
    t.create("/q/x", b"12")
    t.setquota("/q", "count=3,bytes=-1")
    assert t.stats("/q") == "count=2,bytes=5"
    t.create("/q/y", b"1234")
    t.create("/q/y/z")
    assert t.stats("/q") == "count=4,bytes=9"
    t.set("/q/x", b"")
    assert t.stats("/q") == "count=4,bytes=7"
    t.delete("/q/y/z")
    assert t.stats("/q") == "count=3,bytes=7"
    t.create("/other", b"zzz")
    assert t.stats("/q") == "count=3,bytes=7"
    assert t.warnings == []  # soft limits are checked (and logged) only with enforceQuota


def test_close_session_and_multi_update_stats():
    t = Tree()
    t.create("/q")
    t.setquota("/q", "count=-1,bytes=10")
    t.create("/q/e1", b"xx", flags=consts.CREATE_EPHEMERAL, sid=7)
    t.create("/q/e2", b"yyy", flags=consts.CREATE_EPHEMERAL, sid=7)
    assert t.stats("/q") == "count=3,bytes=5"
    t.run(datatree.prep_close_session(t.view, 7, 0, 1000))
    assert t.stats("/q") == "count=1,bytes=0"
    multi = datatree.prep_multi(t.view, SID, 1, 1000, [
        (consts.OP_CREATE, datatree.prep_create, ("/q/m", b"abcd", list(OPEN_ACL_UNSAFE), 0)),
        (consts.OP_SET_DATA, datatree.prep_set_data, ("/q/m", b"a", -1)),
    ])
    t.run(multi)
    assert t.stats("/q") == "count=2,bytes=1"


def test_replay_from_txn_bytes_gives_same_stats():
    t = Tree()
    t.create("/q", b"a")
    t.setquota("/q", "count=2,bytes=-1")
    t.create("/q/a", b"bb")
    t.set("/q/a", b"bbbb")
    logged = [txns.encode(t.run(datatree.prep_create(t.view, SID, 1, 1, "/q/c", b"c",
                                                     list(OPEN_ACL_UNSAFE), 0)))]
    # replay everything from scratch: rebuild the same sequence on a fresh view
    r = Tree()
    r.create("/q", b"a")
    r.setquota("/q", "count=2,bytes=-1")
    r.create("/q/a", b"bb")
    r.set("/q/a", b"bbbb")
    for payload in logged:
        r.run(txns.decode(payload))
    assert r.stats("/q") == t.stats("/q") == "count=3,bytes=6"
    assert r.view.nodes == t.view.nodes


def test_soft_limit_warns_but_allows():
    t = Tree(enforce=True)
    t.create("/q")
    t.setquota("/q", "count=2,bytes=3")
    t.create("/q/a", b"12")
    assert t.warnings == []
    t.create("/q/b", b"34")
    assert t.warnings == ["Quota exceeded: /q [current count=3, softCountLimit=2]",
                          "Quota exceeded: /q [current bytes=4, softByteLimit=3]"]
    assert t.stats("/q") == "count=3,bytes=4"


def test_hard_limits_refuse_with_quotaexceeded():
    t = Tree(enforce=True)
    t.create("/q")
    t.setquota("/q", "count=-1,bytes=-1=;countHardLimit=2")
    t.create("/q/a")
    with pytest.raises(ZkError) as e:
        t.create("/q/b")
    assert e.value.code == errors.QUOTAEXCEEDED == -125
    assert t.warnings == ["Quota exceeded: /q [current count=3, hardCountLimit=2]"]
    t.set("/q/a", b"x" * 100)  # no byte limit
    t2 = Tree(enforce=True)
    t2.create("/q2")
    t2.setquota("/q2", "count=-1,bytes=-1=;byteHardLimit=10")
    t2.create("/q2/a", b"x" * 10)
    with pytest.raises(ZkError) as e:
        t2.set("/q2/a", b"x" * 11)
    assert e.value.code == errors.QUOTAEXCEEDED
    with pytest.raises(ZkError):
        t2.create("/q2/b", b"y")
    t2.create("/q2/c")  # zero bytes: the byte quota is not checked
    t2.set("/q2/a", b"x")
    assert t2.stats("/q2") == "count=3,bytes=1"


def test_hard_limit_not_enforced_when_off():
    t = Tree(enforce=False)
    t.create("/q")
    t.setquota("/q", "count=-1,bytes=-1=;countHardLimit=1")
    t.create("/q/a")
    t.create("/q/b")
    assert t.stats("/q") == "count=3,bytes=0"


def test_hard_limit_in_multi_fails_the_multi():
    t = Tree(enforce=True)
    t.create("/q")
    t.setquota("/q", "count=-1,bytes=-1=;countHardLimit=2")

    def create(view, sid, cxid, now, path, auth=None):
        return datatree.prep_create(view, sid, cxid, now, path, b"", list(OPEN_ACL_UNSAFE), 0,
                                    auth=auth, enforce_quota=True)
    multi = datatree.prep_multi(t.view, SID, 1, 1000, [
        (consts.OP_CREATE, create, ("/q/a",)), (consts.OP_CREATE, create, ("/q/b",))])
    assert [s.err for s in multi.subs] == [0, errors.QUOTAEXCEEDED]


def test_deleting_limits_ends_the_quota():
    t = Tree()
    t.create("/q")
    t.setquota("/q", "count=1,bytes=-1")
    t.delete(quota.limit_path("/q"))
    t.create("/q/a")
    assert t.stats("/q") == "count=1,bytes=0"


def test_no_quota_flag_is_cached_and_reset(tmp_path):
    """The O(1) no-quota case: a view with `quota_free` keeps the answer, and forgets it once
    /zookeeper/quota changes in it (PendingOverlay also when its base moves on)."""
    from zkpy.storage.lmdb_tree import LmdbTree
    from zkpy.tree.overlay import PendingOverlay

    tree = LmdbTree(str(tmp_path / "db"))
    try:
        rv = tree.read_view()
        ov = PendingOverlay(lambda: rv)
        assert quota.max_prefix_with_quota(ov, "/a") is None and ov.quota_free
        assert quota.max_prefix_with_quota(rv, "/a") is None and rv.quota_free
        wv = tree.write()
        zxid = 0
        for view in (ov, wv):
            for path, data in (("/a", b"xy"), ("/zookeeper/quota/a", b""),
                               ("/zookeeper/quota/a/zookeeper_limits", b"count=5,bytes=-1"),
                               ("/zookeeper/quota/a/zookeeper_stats", b"count=0,bytes=0"),
                               ("/a/b", b"123")):
                zxid += 1
                if view is ov:
                    ov.zxid = zxid
                txn = datatree.prep_create(view, SID, 1, 1000, path, data,
                                           list(OPEN_ACL_UNSAFE), 0)
                datatree.apply(view, zxid, txn)
            assert not view.quota_free
            assert quota.max_prefix_with_quota(view, "/a/b") == "/a"
        # The write view computed the stats from the subtree; then /a/b's create counted.
        assert wv.get(quota.stat_path("/a")).data == b"count=2,bytes=5"
        wv.commit()
        ov.applied(zxid)
        assert not ov.quota_free
        rv.txn.abort()
        rv = tree.read_view()
        assert quota.max_prefix_with_quota(ov, "/a/b") == "/a" and not ov.quota_free
        assert not quota.no_quota(rv) and not rv.quota_free
    finally:
        tree.close()
