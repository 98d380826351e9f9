"""LmdbTree SNAP pieces: snapshot_chunks / install_snapshot / log_reset_pending / clear_log_reset.

Only LMDB files in pytest temp dirs."""

import time

import pytest

from zkpy.errors import StorageCorruptError
from zkpy.storage.crc import crc32c
from zkpy.storage.lmdb_tree import LmdbTree
from zkpy.tree import datatree, txns
from zkpy.tree.node import OPEN_ACL_UNSAFE

MAP_SIZE = 1 << 28
DBS = ("db_nodes", "db_ephemerals", "db_sessions", "db_meta")


def make_tree(path):
    return LmdbTree(str(path), map_size=MAP_SIZE)


def dump(tree, with_reset_key=False):
    out = {}
    with tree.env.begin() as txn:
        for attr in DBS:
            items = list(txn.cursor(db=getattr(tree, attr)))
            if attr == "db_meta" and not with_reset_key:
                items = [kv for kv in items if kv[0] != b"log_reset_pending"]
            out[attr] = items
    return out


def build(tree, n=50, first_zxid=1):
    """Persistent nodes with data, sequentials, two sessions with ephemerals, one closed."""
    wv = tree.write()
    z = first_zxid - 1

    def do(txn):
        nonlocal z
        z += 1
        datatree.apply(wv, z, txn)

    s1, s2, s3 = 0x100, 0x200, -0x7FFFFFFFFFFFFFFF
    for sid, t in ((s1, 4000), (s2, 6000), (s3, 8000)):
        do(txns.Txn(txns.CREATE_SESSION, sid, 0, 0, timeout_ms=t))
    do(datatree.prep_create(wv, s1, 1, 0, "/app", b"root-data", OPEN_ACL_UNSAFE, 0))
    for i in range(n):
        do(datatree.prep_create(wv, s1, 1, 0, "/app/n%03d" % i, b"d" * (i % 17), OPEN_ACL_UNSAFE,
                                2 if i % 5 == 0 else 0))
    do(datatree.prep_create(wv, s1, 1, 0, "/app/e1", b"", OPEN_ACL_UNSAFE, 1))
    do(datatree.prep_create(wv, s2, 1, 0, "/app/e2", b"x", OPEN_ACL_UNSAFE, 3))
    do(datatree.prep_create(wv, s3, 1, 0, "/e3", b"", OPEN_ACL_UNSAFE, 1))
    do(datatree.prep_set_data(wv, s1, 1, 0, "/app", b"changed", -1))
    do(datatree.prep_create(wv, s2, 1, 0, "/gone", b"", OPEN_ACL_UNSAFE, 1))
    do(datatree.prep_close_session(wv, s2, 0, 0))
    wv.set_last_zxid(z)
    wv.commit()
    return z


@pytest.fixture
def trees(tmp_path):
    a, b = make_tree(tmp_path / "a"), make_tree(tmp_path / "b")
    yield a, b
    a.close()
    b.close()


def test_snapshot_round_trip(trees):
    src, dst = trees
    zxid = build(src)
    build(dst, n=7, first_zxid=1000)  # different old contents, all replaced
    want = dump(src)
    assert want["db_sessions"] and want["db_ephemerals"] and len(want["db_nodes"]) > 50
    chunks = list(src.snapshot_chunks(chunk_bytes=256))
    assert len(chunks) > 5
    assert dst.install_snapshot(iter(chunks)) == zxid
    assert dump(dst) == want
    assert dst.log_reset_pending() == zxid
    rv = dst.read_view()
    assert rv.last_zxid() == zxid and rv.get("/app").data == b"changed"
    kids = rv.get_children("/app")
    assert "e1" in kids and "n001" in kids and "n0000000000000" in kids and len(kids) == 51
    assert rv.sessions() == src.read_view().sessions()
    rv.txn.abort()
    dst.clear_log_reset()
    assert dst.log_reset_pending() is None
    assert dump(dst, with_reset_key=True) == want


def test_stream_format_and_rechunking(trees):
    src, dst = trees
    zxid = build(src, n=5)
    stream = b"".join(src.snapshot_chunks())
    assert stream[:12] == b"ZKPYSNAP\x00\x00\x00\x01"
    count = sum(len(v) for v in dump(src).values())
    assert stream[-13] == 0xFF and int.from_bytes(stream[-12:-4], "big") == count
    assert int.from_bytes(stream[-4:], "big") == crc32c(stream[:-4])
    # re-chunked one byte at a time, and as bytearray / memoryview
    assert dst.install_snapshot(stream[i:i + 1] for i in range(len(stream))) == zxid
    assert dump(dst) == dump(src)
    assert dst.install_snapshot([bytearray(stream[:100]), memoryview(stream)[100:]]) == zxid


def test_snapshot_is_consistent_with_one_read_txn(trees):
    src, dst = trees
    zxid = build(src)
    txn = src.read_txn()
    before = dump(src)
    gen = src.snapshot_chunks(txn=txn, chunk_bytes=64)
    first = next(gen)
    wv = src.write()  # a write after the snapshot began is not in it
    datatree.apply(wv, zxid + 1, datatree.prep_create(wv, 0x100, 1, 0, "/later", b"",
                                                      OPEN_ACL_UNSAFE, 0))
    wv.set_last_zxid(zxid + 1)
    wv.commit()
    assert dst.install_snapshot([first] + list(gen)) == zxid
    txn.abort()
    assert dump(dst) == before
    # without txn, the read txn is taken at the call, not at the first next()
    gen = src.snapshot_chunks()
    wv = src.write()
    datatree.apply(wv, zxid + 2, datatree.prep_delete(wv, 0x100, 1, 0, "/later", -1))
    wv.set_last_zxid(zxid + 2)
    wv.commit()
    assert dst.install_snapshot(gen) == zxid + 1 and dst.read_view().get("/later") is not None


def _refused(dst, chunks, match=None):
    old = dump(dst, with_reset_key=True)
    with pytest.raises(StorageCorruptError, match=match):
        dst.install_snapshot(chunks)
    assert dump(dst, with_reset_key=True) == old
    assert dst.log_reset_pending() is None


def test_truncated_stream_refused(trees):
    src, dst = trees
    build(src)
    build(dst, n=3, first_zxid=500)
    stream = b"".join(src.snapshot_chunks())
    for cut in (0, 5, 12, 13, 40, len(stream) // 2, len(stream) - 13, len(stream) - 1):
        _refused(dst, [stream[:cut]], "truncated")
    _refused(dst, [stream, b"\x00"], "after its end marker")


def test_flipped_byte_refused(trees):
    src, dst = trees
    build(src)
    build(dst, n=3, first_zxid=500)
    stream = b"".join(src.snapshot_chunks())
    for off in list(range(0, len(stream), max(1, len(stream) // 97))) + [len(stream) - 1]:
        damaged = bytearray(stream)
        damaged[off] ^= 0x01
        _refused(dst, [bytes(damaged)])


def test_no_last_zxid_refused(trees):
    src, dst = trees
    head = b"ZKPYSNAP\x00\x00\x00\x01"
    body = head + bytes([1]) + (1).to_bytes(4, "big") + (0).to_bytes(4, "big") + b"/"
    end = body + b"\xff" + (1).to_bytes(8, "big")
    _refused(dst, [end + crc32c(end).to_bytes(4, "big")], "no last_zxid")


def test_iterable_error_propagates_and_aborts(trees):
    src, dst = trees
    build(src)
    old = dump(dst)

    def chunks():
        gen = src.snapshot_chunks(chunk_bytes=100)
        yield next(gen)
        yield next(gen)
        raise ConnectionResetError("leader went away")

    with pytest.raises(ConnectionResetError):
        dst.install_snapshot(chunks())
    assert dump(dst) == old and dst.log_reset_pending() is None


def test_log_reset_pending_survives_reopen(tmp_path):
    a = make_tree(tmp_path / "a")
    zxid = build(a)
    b = make_tree(tmp_path / "b")
    b.install_snapshot(a.snapshot_chunks())
    b.close()
    b = make_tree(tmp_path / "b")  # _initialize must not touch an installed tree
    assert b.log_reset_pending() == zxid and b.read_view().last_zxid() == zxid
    assert dump(b) == dump(a)
    b.clear_log_reset()
    b.close()
    b = make_tree(tmp_path / "b")
    assert b.log_reset_pending() is None
    a.close()
    b.close()


def test_100k_nodes(tmp_path, capsys):
    a = LmdbTree(str(tmp_path / "a"), map_size=1 << 30)
    b = LmdbTree(str(tmp_path / "b"), map_size=1 << 30)
    wv = a.write()
    z = 0
    for p in range(10):
        z += 1
        datatree.apply(wv, z, datatree.prep_create(wv, 0, 1, 0, "/p%d" % p, b"", OPEN_ACL_UNSAFE,
                                                   0))
    for i in range(100_000):
        z += 1
        datatree.apply(wv, z, datatree.prep_create(wv, 0, 1, 0, "/p%d/n%06d" % (i % 10, i),
                                                   b"v%d" % i, OPEN_ACL_UNSAFE, 0))
    wv.set_last_zxid(z)
    wv.commit()
    t0 = time.perf_counter()
    chunks = list(a.snapshot_chunks())
    t1 = time.perf_counter()
    assert b.install_snapshot(chunks) == z
    t2 = time.perf_counter()
    total = sum(len(c) for c in chunks)
    with capsys.disabled():
        print("\n100k nodes: snapshot %.2fs, install %.2fs, %d bytes in %d chunks"
              % (t1 - t0, t2 - t1, total, len(chunks)))
    assert b.read_view().node_count() == 100_014
    assert dump(b) == dump(a)
    assert t2 - t0 < 20
    a.close()
    b.close()


def test_views_after_install_do_not_carry_decoded_nodes_of_before(trees):
    """The node caches (a read view passes its decoded znodes to the next write txn and the
    next read view) must not survive an install: the core renews its view right after it."""
    src, dst = trees
    build(src, n=3)
    build(dst, n=3, first_zxid=1000)
    wv = src.write()
    datatree.apply(wv, 50, datatree.prep_set_data(wv, 0x100, 1, 0, "/app", b"leader's", -1))
    wv.set_last_zxid(50)
    wv.commit()
    chunks = list(src.snapshot_chunks())
    # dst: decode /app in a read view, then a write txn borrowing its cache commits: the next
    # read view would start with the nodes that txn wrote (the carry) ...
    view = dst.read_view()
    assert view.get("/app").data == b"changed"
    wv = dst.write()
    datatree.apply(wv, 2000, datatree.prep_set_data(wv, 0x100, 1, 0, "/app", b"mine", -1))
    wv.set_last_zxid(2000)
    wv.commit()
    view.txn.abort()
    # ... but a snapshot comes in first.
    dst.install_snapshot(chunks)
    dst.clear_log_reset()
    view = dst.read_view()
    assert view.get("/app").data == b"leader's"
    wv = dst.write()
    assert wv.get("/app").data == b"leader's"
    wv.abort()
    view.txn.abort()
