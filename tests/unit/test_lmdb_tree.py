"""The LMDB-backed tree (zkpy.storage.lmdb_tree): views, key-range lookups, a reader process.

Only LMDB files in pytest temp dirs; no sockets.
"""

import multiprocessing

import pytest

from zkpy.storage.lmdb_tree import LmdbTree, ReadView
from zkpy.tree import datatree, txns
from zkpy.tree.node import Node, OPEN_ACL_UNSAFE

MAP_SIZE = 1 << 28  # 256 MB of address space is plenty here


def node(data=b"", owner=0, zxid=1):
    return Node(zxid, zxid, 5, 5, 0, 0, 0, owner, 0, zxid, data, OPEN_ACL_UNSAFE)


@pytest.fixture
def tree(tmp_path):
    t = LmdbTree(str(tmp_path / "db"), map_size=MAP_SIZE)
    yield t
    t.close()


def apply_all(tree, ops, first_zxid=1):
    """Prep+apply each (kind, args) through datatree in one LMDB write txn; returns last zxid."""
    wv = tree.write()
    zxid = first_zxid - 1
    for prep, args in ops:
        zxid += 1
        datatree.apply(wv, zxid, prep(wv, *args))
    wv.set_last_zxid(zxid)
    wv.commit()
    return zxid


def create(path, data=b"", flags=0, sid=1):
    return (lambda v, p, d, f, s: datatree.prep_create(v, s, 1, 0, p, d, OPEN_ACL_UNSAFE, f),
            (path, data, flags, sid))


def test_fresh_tree_has_zookeeper_nodes(tree):
    rv = tree.read_view()
    assert rv.last_zxid() == 0
    assert rv.node_count() == 4
    assert rv.get_children("/") == ["zookeeper"]
    assert rv.get_children("/zookeeper") == ["config", "quota"]
    assert rv.get("/") == dict(datatree.initial_nodes())["/"]
    assert rv.get("/nope") is None
    rv.txn.abort()


def test_initialization_happens_once(tmp_path):
    path = str(tmp_path / "db")
    t = LmdbTree(path, map_size=MAP_SIZE)
    apply_all(t, [create("/x")])
    t.close()
    t = LmdbTree(path, map_size=MAP_SIZE)
    rv = t.read_view()
    assert rv.last_zxid() == 1 and rv.get("/x") is not None and rv.node_count() == 5
    rv.txn.abort()
    t.close()


class _CountingCursor(object):
    def __init__(self, cur, counter):
        self._cur = cur
        self._counter = counter

    def set_range(self, key):
        self._counter["set_range"] += 1
        return self._cur.set_range(key)

    def iternext(self, keys=True, values=True):
        for item in self._cur.iternext(keys=keys, values=values):
            self._counter["keys"] += 1
            yield item

    def __getattr__(self, name):
        raise AssertionError("unexpected cursor call %s" % name)


class _CountingTxn(object):
    """Wraps an lmdb.Transaction (a C type, not patchable) to count cursor steps."""

    def __init__(self, txn):
        self._txn = txn
        self.counter = {"set_range": 0, "keys": 0}

    def cursor(self, db=None):
        return _CountingCursor(self._txn.cursor(db=db), self.counter)

    def __getattr__(self, name):
        return getattr(self._txn, name)


def _counting_view(tree, ops):
    """Apply `ops`, then a ReadView whose cursor steps are counted: (txn, counter, view)."""
    apply_all(tree, ops)
    rtxn = tree.read_txn()
    counting = _CountingTxn(rtxn)
    return rtxn, counting, ReadView(tree, counting)


def test_children_are_a_key_range(tree):
    ops = [create("/a"), create("/b"), create("/ab"), create("/a0")]
    ops += [create("/a/c%04d" % i) for i in range(1000)]
    ops += [create("/b/d%d" % i) for i in range(10)]
    ops += [create("/ab/x"), create("/a0/y"), create("/a/c0001/deeper")]
    rtxn, counting, rv = _counting_view(tree, ops)
    kids = rv.get_children("/a")
    assert kids == ["c%04d" % i for i in range(1000)]
    # One seek, one more past the one child with children (c0001's subtree), and the keys: the
    # children, the first key of that subtree and the one key that ends the range.
    assert counting.counter["set_range"] == 2
    assert counting.counter["keys"] <= len(kids) + 2
    counting.counter.update(keys=0, set_range=0)
    assert rv.get_children("/b") == ["d%d" % i for i in range(10)]
    assert counting.counter["keys"] <= 11
    counting.counter.update(keys=0)
    assert rv.get_children("/a/c0001") == ["deeper"]
    assert counting.counter["keys"] <= 2
    assert rv.get_children("/ab") == ["x"]
    assert rv.get_children("/a/c0002") == []
    assert rv.get_children("/nope") == []
    assert rv.get("/a").num_children == 1000
    assert rv.get("/a").cversion == 1000
    assert sorted(rv.get_children("/")) == ["a", "a0", "ab", "b", "zookeeper"]
    rtxn.abort()


def test_children_skip_their_subtrees(tree):
    """A node's children are listed without walking their descendants: one seek past each
    child that has children, whatever the size of its subtree."""
    ops = [create("/p"), create("/p/big")]
    ops += [create("/p/big/n%03d" % i) for i in range(300)]
    ops += [create("/p/big/n000/m%d" % i) for i in range(5)]
    # Names with bytes below and just above "/" (0x2F) sort around a subtree's keys.
    for name in ("big-1", "big.2", "big 3", "big!", "big0", "big\u00e9", "bi", "c"):
        ops.append(create("/p/" + name))
    ops += [create("/p/big0/z"), create("/p/c/d"), create("/p/c/d/e")]
    rtxn, counting, rv = _counting_view(tree, ops)
    kids = rv.get_children("/p")
    want = sorted(["big", "big-1", "big.2", "big 3", "big!", "big0", "big\u00e9", "bi", "c"],
                  key=lambda n: n.encode("utf-8"))
    assert kids == want
    # seeks: the start, past big/, big0/ and c/; keys: the 9 children, the first key of each of
    # the 3 subtrees, and the key that ends the range (none: /p is the last range).
    assert counting.counter["set_range"] == 4
    assert counting.counter["keys"] <= len(kids) + 3 + 1
    counting.counter.update(keys=0, set_range=0)
    assert rv.get_children("/p/big") == ["n%03d" % i for i in range(300)]
    assert counting.counter["set_range"] == 2
    assert rv.get_children("/p/c") == ["d"]
    assert rv.get_children("/p/c/d") == ["e"]
    assert rv.get_children("/p/big\u00e9") == []
    assert sorted(rv.get_children("/")) == ["p", "zookeeper"]
    rtxn.abort()


def test_write_view_lists_its_own_changes(tree):
    wv = tree.write()
    for i, prep in enumerate([create("/w"), create("/w/a"), create("/w/b"), create("/w/b/c")]):
        datatree.apply(wv, i + 1, prep[0](wv, *prep[1]))
    assert wv.get_children("/w") == ["a", "b"]
    datatree.apply(wv, 5, datatree.prep_delete(wv, 1, 1, 0, "/w/a", -1))
    assert wv.get_children("/w") == ["b"]
    assert wv.get_children("/w/b") == ["c"]
    wv.set_last_zxid(5)
    wv.commit()
    rv = tree.read_view()
    assert rv.get_children("/w") == ["b"]
    rv.txn.abort()


def test_older_layouts_child_index_is_dropped(tmp_path):
    """zkpy data directories from before the keys-only child index had a "children"
    database; the writer drops it on open and lists children from the nodes."""
    import lmdb
    path = str(tmp_path / "db")
    t = LmdbTree(path, map_size=MAP_SIZE)
    apply_all(t, [create("/x"), create("/x/y")])
    with t.env.begin(write=True) as txn:
        old = t.env.open_db(b"children", txn=txn)
        txn.put(b"/x\x00y", b"", db=old)
    t.close()
    t = LmdbTree(path, map_size=MAP_SIZE)
    with t.env.begin() as txn:
        assert txn.get(b"children") is None
    with pytest.raises(lmdb.NotFoundError):
        t.env.open_db(b"children", create=False)
    rv = t.read_view()
    assert rv.get_children("/x") == ["y"]
    rv.txn.abort()
    t.close()


def test_children_of_last_key_in_db(tree):
    # The range ends at the end of the database rather than at another key.
    apply_all(tree, [create("/zz"), create("/zz/a"), create("/zz/b")])
    rv = tree.read_view()
    assert rv.get_children("/zz") == ["a", "b"]
    assert rv.get_children("/zzz") == []
    rv.txn.abort()


def test_ephemerals_per_session(tree):
    s1, s2 = 0x100, -0x7FFFFFFFFFFFFFFF   # a negative id sorts after positive ones as unsigned
    ops = [create("/e1", flags=1, sid=s1), create("/e2", flags=1, sid=s2),
           create("/p"), create("/p/e3", flags=3, sid=s1), create("/q", sid=s1)]
    apply_all(tree, ops)
    rv = tree.read_view()
    assert sorted(rv.ephemerals(s1)) == ["/e1", "/p/e30000000000"]
    assert rv.ephemerals(s2) == ["/e2"]
    assert rv.ephemerals(0x101) == []
    assert sorted(rv.all_ephemerals()) == sorted([(s1, "/e1"), (s1, "/p/e30000000000"),
                                                  (s2, "/e2")])
    assert rv.get("/q").ephemeral_owner == 0
    rv.txn.abort()
    wv = tree.write()
    datatree.apply(wv, 6, txns.Txn(txns.CREATE_SESSION, s1, 0, 0, timeout_ms=4000))
    datatree.apply(wv, 7, txns.Txn(txns.CREATE_SESSION, s2, 0, 0, timeout_ms=6000))
    datatree.apply(wv, 8, datatree.prep_close_session(wv, s1, 0, 0))
    wv.set_last_zxid(8)
    wv.commit()
    rv = tree.read_view()
    assert rv.ephemerals(s1) == []
    assert rv.get("/e1") is None and rv.get("/p/e30000000000") is None
    assert rv.get("/p").num_children == 0 and rv.get("/p").pzxid == 8
    assert rv.ephemerals(s2) == ["/e2"]
    assert rv.sessions() == {s2: 6000}
    rv.txn.abort()


def test_last_zxid_and_abort(tree):
    assert apply_all(tree, [create("/a"), create("/b")]) == 2
    assert tree.read_view().last_zxid() == 2
    wv = tree.write()
    datatree.apply(wv, 3, datatree.prep_create(wv, 1, 1, 0, "/c", b"", OPEN_ACL_UNSAFE, 0))
    wv.set_last_zxid(3)
    assert wv.get("/c") is not None          # the write txn sees its own writes
    assert wv.get_children("/") == ["a", "b", "c", "zookeeper"]
    wv.abort()
    rv = tree.read_view()
    assert rv.last_zxid() == 2 and rv.get("/c") is None
    rv.txn.abort()
    assert tree.checkpoint() == 2


def test_read_txn_is_a_snapshot(tree):
    apply_all(tree, [create("/a", b"1")])
    old = tree.read_view()
    apply_all(tree, [(lambda v: datatree.prep_set_data(v, 1, 1, 0, "/a", b"2", -1), ())],
              first_zxid=2)
    assert old.get("/a").data == b"1" and old.last_zxid() == 1
    new = tree.read_view()
    assert new.get("/a").data == b"2" and new.last_zxid() == 2
    old.txn.abort()
    new.txn.abort()


def test_write_view_round_trips_node_fields(tree):
    n = Node(-5, 2 ** 62, 123456789012, 123456789013, -7, 2 ** 31 - 1, -1, -(2 ** 63),
             3, 99, b"\x00\xffdata", ((1, "digest", "u:x"), (31, "world", "anyone")))
    wv = tree.write()
    wv.put("/n", n)
    wv.commit()
    rv = tree.read_view()
    assert rv.get("/n") == n
    rv.txn.abort()


# ----------------------------------------------------------------------------- another process


def _reader(path, conn):
    """Child process: a read-only LmdbTree answering (cmd, arg) requests over a pipe."""
    t = LmdbTree(path, map_size=MAP_SIZE, readonly=True)
    try:
        while True:
            cmd, arg = conn.recv()
            if cmd == "quit":
                break
            rv = t.read_view()
            try:
                if cmd == "get":
                    n = rv.get(arg)
                    conn.send(None if n is None else (n.data, n.version, n.czxid))
                elif cmd == "children":
                    conn.send(rv.get_children(arg))
                elif cmd == "last_zxid":
                    conn.send(rv.last_zxid())
                elif cmd == "ephemerals":
                    conn.send(rv.ephemerals(arg))
            finally:
                rv.txn.abort()
    finally:
        t.close()
        conn.close()


def test_readonly_tree_in_another_process(tree):
    apply_all(tree, [create("/a", b"hello"), create("/a/x"), create("/e", flags=1, sid=0x55)])
    # spawn, not fork: a forked child must not inherit the parent's open LMDB environment.
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_reader, args=(tree.path, child), daemon=True)
    proc.start()
    try:
        def ask(cmd, arg=None):
            parent.send((cmd, arg))
            assert parent.poll(30), "reader process did not answer"
            return parent.recv()

        assert ask("get", "/a") == (b"hello", 0, 1)
        assert ask("children", "/a") == ["x"]
        assert ask("last_zxid") == 3
        assert ask("ephemerals", 0x55) == ["/e"]
        # Committed after the reader opened the environment: its next read txn sees it.
        apply_all(tree, [(lambda v: datatree.prep_set_data(v, 1, 1, 0, "/a", b"bye", 0), ()),
                         create("/a/y")], first_zxid=4)
        assert ask("get", "/a") == (b"bye", 1, 1)
        assert ask("children", "/a") == ["x", "y"]
        assert ask("last_zxid") == 5
        # An uncommitted write is invisible to the other process.
        wv = tree.write()
        wv.put("/uncommitted", node())
        assert ask("get", "/uncommitted") is None
        wv.abort()
        parent.send(("quit", None))
        proc.join(30)
        assert proc.exitcode == 0
    finally:
        if proc.is_alive():
            proc.kill()
            proc.join(5)


def test_decoded_node_caches_follow_commits(tree):
    """Views keep decoded nodes; the write txn borrows the newest read view's, and the next read
    view starts from that plus what the txn wrote. Every answer matches an uncached reader."""
    import random
    rng = random.Random(7)
    paths = ["/n%d" % i for i in range(12)]
    model = {"/": None}

    class Uncached(object):  # a view built directly: it starts with an empty cache
        def read_view(self):
            return ReadView(tree, tree.env.begin())

    other = Uncached()
    if True:
        zxid = 0
        rtxn = tree.read_txn()
        rv = tree.read_view(rtxn)
        for round_ in range(40):
            for p in rng.sample(paths, 5):
                rv.get(p)  # fill the read view's cache
            wv = tree.write()
            for p in rng.sample(paths, 4):
                zxid += 1
                if rng.random() < 0.3 and wv.get(p) is not None:
                    wv.delete(p)
                    model[p] = None
                else:
                    wv.put(p, node(b"%d" % zxid, zxid=zxid))
                    model[p] = zxid
                wv.get(rng.choice(paths))
            if round_ % 7 == 3:
                wv.flush()
                wv.get(rng.choice(paths))
            wv.set_last_zxid(zxid)
            if round_ % 11 == 5:
                wv.abort()
                # an aborted batch changes nothing: undo the model from the committed tree
                check = other.read_view()
                for p in paths:
                    n = check.get(p)
                    model[p] = None if n is None else n.czxid
                check.txn.abort()
            else:
                wv.commit()
            if round_ % 5 == 2:
                # a commit between this read txn and the next must not let stale nodes in
                extra = tree.write()
                zxid += 1
                p = rng.choice(paths)
                extra.put(p, node(b"x", zxid=zxid))
                model[p] = zxid
                extra.set_last_zxid(zxid)
                extra.commit()
            old_txn, old_rv = rtxn, rv
            rtxn = tree.read_txn()
            rv = tree.read_view(rtxn)
            # The older view goes on reading its own state (workers=0: the in-process frontend
            # can, while the core has moved on): what it decodes now must not leak into the new
            # view as this state's.
            for p in rng.sample(paths, 6):
                old_rv.get(p)
            old_txn.abort()
            fresh = other.read_view()
            for p in paths:
                got, want = rv.get(p), fresh.get(p)
                assert got == want, (round_, p)
                assert (got.czxid if got is not None else None) == model.get(p)
            fresh.txn.abort()
        rtxn.abort()


def test_overlay_without_child_lists_replays_onto_lmdb_as_apply_does(tmp_path):
    """The core's overlay (child_lists=False) records no child-list changes; replayed onto an
    LMDB write txn they give the same tree as datatree.apply of the same txns."""
    from zkpy.tree.overlay import ADD_CHILD, REMOVE_CHILD, PendingOverlay, replay
    replayed = LmdbTree(str(tmp_path / "replayed"), map_size=MAP_SIZE)
    applied = LmdbTree(str(tmp_path / "applied"), map_size=MAP_SIZE)
    views = {"rv": replayed.read_view()}
    overlay = PendingOverlay(lambda: views["rv"], child_lists=False)
    preps = [create("/p"), create("/p/a"), create("/p/b"), create("/p/a/x", flags=1, sid=9)]
    preps += [(lambda v, p: datatree.prep_delete(v, 1, 1, 0, p, -1), ("/p/b",)),
              (lambda v, p: datatree.prep_delete(v, 1, 1, 0, p, -1), ("/p/a/x",)),
              create("/p/c")]
    for zxid, (prep, args) in enumerate(preps, 1):
        txn = prep(overlay, *args)
        overlay.begin(zxid)
        datatree.apply(overlay, zxid, txn)
        ops = overlay.end()
        assert ops and not [op for op in ops if op[0] in (ADD_CHILD, REMOVE_CHILD)]
        for tree, how in ((replayed, lambda wv: replay(wv, ops)),
                          (applied, lambda wv: datatree.apply(wv, zxid, txn))):
            wv = tree.write()
            how(wv)
            wv.set_last_zxid(zxid)
            wv.commit()
        views["rv"].txn.abort()
        views["rv"] = replayed.read_view()
        overlay.applied(zxid)
    a = applied.read_view()
    r = views["rv"]
    for path in ("/", "/p", "/p/a", "/p/b", "/p/c"):
        assert r.get_children(path) == a.get_children(path)
        assert r.get(path) == a.get(path)
    assert r.get_children("/p") == ["a", "c"] and r.ephemerals(9) == [] == a.ephemerals(9)
    for v, tree in ((a, applied), (r, replayed)):
        v.txn.abort()
        tree.close()
