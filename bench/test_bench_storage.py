"""Micro-benchmarks of znode storage: the node byte codec (pure and compiled), and LMDB through
zkpy.storage.lmdb_tree (batch apply + commit, point reads in a 100k-node tree, children ranges).

LmdbTree itself uses whichever node codec zkpy.storage.codec_impl picked (shown in the pytest
header); the pack/unpack benchmarks measure both implementations side by side.
"""

import itertools
import os
import random
import time

import pytest

from zkpy.storage.lmdb_tree import LmdbTree
from zkpy.tree import datatree, txns
from zkpy.tree.node import OPEN_ACL_UNSAFE, Node

DATA_100 = bytes(range(100))
N_PARENTS = 100
N_CHILDREN = 1000  # per parent: 100 x 1000 = 100k znodes


def _node(data=DATA_100):
    return Node(0x100000012, 0x100000034, 1700000000000, 1700000001000, 3, 7, 0, 0, 0,
                0x100000020, data, OPEN_ACL_UNSAFE)


# --- node codec -----------------------------------------------------------------------------

@pytest.mark.benchmark(group="nodecodec")
def test_pack_node(benchmark, nodecodec):
    node = _node()
    out = benchmark(nodecodec.pack_node, node)
    assert len(out) == 68 + 100 + 4 + 4 + 4 + 5 + 4 + 6


@pytest.mark.benchmark(group="nodecodec")
def test_unpack_node(benchmark, nodecodec):
    node = _node()
    buf = nodecodec.pack_node(node)
    out = benchmark(nodecodec.unpack_node, buf)
    assert out == node


# --- LMDB -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def big_tree(bench_dir):
    """An LMDB tree with 100 parents x 1000 children (100 B data each), built once per module."""
    path = os.path.join(bench_dir, "big")
    tree = LmdbTree(path, map_size=1 << 32)
    t0 = time.perf_counter()
    wv = tree.write()
    zxid = 0
    for p in range(N_PARENTS):
        parent = "/p%03d" % p
        wv.put(parent, Node(1, 1, 0, 0, 0, N_CHILDREN, 0, 0, N_CHILDREN, 1, b"", OPEN_ACL_UNSAFE))
        wv.add_child("/", parent[1:])
        for c in range(N_CHILDREN):
            zxid += 1
            wv.put("%s/c%04d" % (parent, c), _node())
            wv.add_child(parent, "c%04d" % c)
    wv.set_last_zxid(zxid)
    wv.commit()
    build_s = time.perf_counter() - t0
    with tree.read_txn() as txn:
        assert tree.read_view(txn).node_count() >= N_PARENTS * (N_CHILDREN + 1)
    yield tree, build_s
    tree.close()


@pytest.mark.benchmark(group="lmdb")
def test_apply_100_creates_commit(benchmark, bench_dir):
    """One applied batch as Core does it: write txn, datatree.apply x 100 creates (100 B), the
    last zxid, commit. Each round creates 100 fresh children of /bench (prepared in setup)."""
    tree = LmdbTree(os.path.join(bench_dir, "apply"), map_size=1 << 32)
    wv = tree.write()
    wv.put("/bench", Node(1, 1, 0, 0, 0, 0, 0, 0, 0, 1, b"", OPEN_ACL_UNSAFE))
    wv.add_child("/", "bench")
    wv.commit()
    zxids = itertools.count(2)
    names = itertools.count()

    def setup():
        batch = [(next(zxids), txns.Txn(txns.CREATE, 0x1000, i, 1700000000000,
                                         path="/bench/n%08d" % next(names), data=DATA_100,
                                         acl=OPEN_ACL_UNSAFE))
                 for i in range(100)]
        return (batch,), {}

    def run(batch):
        view = tree.write()
        apply = datatree.apply
        for zxid, txn in batch:
            apply(view, zxid, txn)
        view.set_last_zxid(batch[-1][0])
        view.commit()

    try:
        benchmark.pedantic(run, setup=setup, rounds=100, warmup_rounds=2)
        view = tree.read_view()
        assert view.get("/bench").num_children == 102 * 100
        assert len(view.get_children("/bench")) == 102 * 100
        view.txn.abort()
        benchmark.extra_info["per_create_us"] = benchmark.stats.stats.median * 1e6 / 100
    finally:
        tree.close()


@pytest.mark.benchmark(group="lmdb")
def test_get_random_path_100k(benchmark, big_tree):
    """ReadView.get (LMDB lookup + unpack_node) of a random existing path in a 100k-node tree,
    inside one open read transaction."""
    tree, build_s = big_tree
    benchmark.extra_info["tree_build_s"] = round(build_s, 2)
    rnd = random.Random(42)
    paths = ["/p%03d/c%04d" % (rnd.randrange(N_PARENTS), rnd.randrange(N_CHILDREN))
             for _ in range(4096)]
    it = itertools.cycle(paths)
    with tree.read_txn() as txn:
        view = tree.read_view(txn)
        get = view.get
        node = benchmark(lambda: get(next(it)))
    assert node is not None and node.data == DATA_100


@pytest.mark.benchmark(group="lmdb")
def test_get_random_path_100k_fresh_txn(benchmark, big_tree):
    """The same lookup with its own read transaction (begin + get + abort) per call."""
    tree, _ = big_tree
    rnd = random.Random(43)
    paths = ["/p%03d/c%04d" % (rnd.randrange(N_PARENTS), rnd.randrange(N_CHILDREN))
             for _ in range(4096)]
    it = itertools.cycle(paths)

    def run():
        txn = tree.read_txn()
        try:
            return tree.read_view(txn).get(next(it))
        finally:
            txn.abort()

    node = benchmark(run)
    assert node is not None


@pytest.mark.benchmark(group="lmdb")
def test_get_children_1000(benchmark, big_tree):
    """ReadView.get_children of a node with 1000 children (one cursor range scan)."""
    tree, _ = big_tree
    with tree.read_txn() as txn:
        view = tree.read_view(txn)
        out = benchmark(view.get_children, "/p050")
    assert len(out) == N_CHILDREN and out[0] == "c0000"
