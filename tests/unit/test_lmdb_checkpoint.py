"""LMDB checkpoints (zkpy.storage.lmdb_checkpoint, LmdbTree): a power cut at any point after a
checkpoint leaves a data.mdb that opens at exactly the checkpoint's state.

The power cut is simulated on the file itself: the file's bytes are captured when the checkpoint
is synced (that much is on disk) and after every later commit (what the kernel might have written
back since); the "disk" after the cut holds, for every page, one of its versions chosen at random
(the pre-checkpoint one included) -- the kernel's writeback keeps no order. py-lmdb's own offline
verifier (lmdb.verify) then checks every structural invariant of the opened state.
"""

import os
import random
import shutil

import lmdb
import lmdb.verify
import pytest

from zkpy.errors import StorageCorruptError
from zkpy.storage import lmdb_checkpoint
from zkpy.storage.lmdb_tree import LmdbTree
from zkpy.tree import datatree
from zkpy.tree.node import OPEN_ACL_UNSAFE

MAP_SIZE = 1 << 28
PAGE = 4096


def apply(tree, zxid, txn):
    wv = tree.write()
    datatree.apply(wv, zxid, txn)
    wv.set_last_zxid(zxid)
    wv.commit()


class Writer(object):
    """Creates, updates and deletes znodes, one LMDB commit each, next zxid each time."""

    def __init__(self, tree, rng):
        self.tree = tree
        self.rng = rng
        self.zxid = tree.read_view().last_zxid()
        self.live = {}

    def step(self):
        self.zxid += 1
        r = self.rng.random()
        view = self.tree.read_view()
        data = os.urandom(self.rng.randrange(0, 3000))
        if not self.live or r < 0.5:
            path = "/n%06d" % self.zxid
            txn = datatree.prep_create(view, 1, 1, 0, path, data, OPEN_ACL_UNSAFE, 0)
            self.live[path] = data
        elif r < 0.85:
            path = self.rng.choice(sorted(self.live))
            txn = datatree.prep_set_data(view, 1, 1, 0, path, data, -1)
            self.live[path] = data
        else:
            path = self.rng.choice(sorted(self.live))
            txn = datatree.prep_delete(view, 1, 1, 0, path, -1)
            del self.live[path]
        view.txn.abort()
        apply(self.tree, self.zxid, txn)


def snapshot_state(tree):
    view = tree.read_view()
    out = {}
    stack = ["/"]
    while stack:
        p = stack.pop()
        node = view.get(p)
        out[p] = (node.data, node.version, node.mzxid)
        for c in view.get_children(p):
            stack.append(("/" if p == "/" else p + "/") + c)
    return view.last_zxid(), out


def file_bytes(path):
    with open(os.path.join(path, "data.mdb"), "rb") as f:
        return f.read()


def cut(versions, rng):
    """A disk image after a power cut: each page at one of its versions (versions[0] is what
    was synced; later ones may or may not have reached the disk)."""
    size = max(len(v) for v in versions)
    out = bytearray(size)
    for off in range(0, size, PAGE):
        seen = []
        for v in versions:
            page = v[off:off + PAGE]
            if page and page not in seen:
                seen.append(page)
        page = rng.choice(seen) if seen else b""
        out[off:off + len(page)] = page
    # the file's length itself: any of the lengths it had
    return bytes(out[:rng.choice([len(v) for v in versions])])


@pytest.mark.parametrize("seed", range(8))
def test_power_cut_after_a_checkpoint_comes_back_to_it(tmp_path, seed):
    rng = random.Random(seed)
    path = str(tmp_path / "db")
    tree = LmdbTree(path, map_size=MAP_SIZE)
    w = Writer(tree, rng)
    for _ in range(rng.randrange(50, 300)):
        w.step()
    tree.checkpoint()
    expected = snapshot_state(tree)
    versions = [file_bytes(path)]   # synced: on disk
    for _ in range(rng.randrange(20, 300)):
        w.step()
        versions.append(file_bytes(path))
        if rng.random() < 0.02:   # a checkpoint that never got stored (power cut during it)
            pending = tree.begin_checkpoint()
            tree.env.sync(True)
            tree.abandon_checkpoint(pending)
    image = cut(versions, rng)
    tree.env.close()   # the process dies: no clean close, no checkpoint
    with open(os.path.join(path, "data.mdb"), "wb") as f:
        f.write(image)
    os.unlink(os.path.join(path, "lock.mdb"))
    tree = LmdbTree(path, map_size=MAP_SIZE)
    try:
        assert tree.restored
        assert snapshot_state(tree) == expected
        # and it takes writes again: the restored free list is sound
        w2 = Writer(tree, rng)
        for _ in range(100):
            w2.step()
        tree.checkpoint()
    finally:
        tree.close()
    assert lmdb.verify.verify(path) == []


def test_without_the_restore_the_same_cuts_damage_lmdb(tmp_path):
    """The simulation above can fail: opening such images as they are (what zkpy did before
    checkpoints) gives a damaged or wrong database for some seeds."""
    bad = 0
    for seed in range(12):
        rng = random.Random(seed)
        path = str(tmp_path / ("db%d" % seed))
        tree = LmdbTree(path, map_size=MAP_SIZE)
        w = Writer(tree, rng)
        for _ in range(200):
            w.step()
        tree.checkpoint()
        expected = snapshot_state(tree)
        versions = [file_bytes(path)]
        for _ in range(200):
            w.step()
            versions.append(file_bytes(path))
        image = cut(versions, rng)
        tree.env.close()
        with open(os.path.join(path, "data.mdb"), "wb") as f:
            f.write(image)
        problems = lmdb.verify.verify(path) if len(image) >= 2 * PAGE else ["short"]
        if problems:
            bad += 1
            continue
        env = lmdb.open(path, max_dbs=8, map_size=MAP_SIZE)
        try:
            with env.begin() as txn:
                db = env.open_db(b"nodes", txn=txn, create=False)
                n = txn.stat(db)["entries"]
        except lmdb.Error:
            bad += 1
            continue
        finally:
            env.close()
        if n != len(expected[1]):
            bad += 1
    assert bad > 0


def test_clean_close_restores_nothing(tmp_path):
    path = str(tmp_path / "db")
    tree = LmdbTree(path, map_size=MAP_SIZE)
    assert tree.created
    w = Writer(tree, random.Random(1))
    for _ in range(50):
        w.step()
    state = snapshot_state(tree)
    tree.close()
    tree = LmdbTree(path, map_size=MAP_SIZE)
    assert not tree.restored and not tree.created
    assert snapshot_state(tree) == state
    tree.close()


def test_close_without_checkpoint_comes_back_to_the_last_one(tmp_path):
    path = str(tmp_path / "db")
    tree = LmdbTree(path, map_size=MAP_SIZE)
    w = Writer(tree, random.Random(2))
    for _ in range(30):
        w.step()
    assert tree.checkpoint() == w.zxid
    state = snapshot_state(tree)
    for _ in range(30):
        w.step()
    tree.close(checkpoint=False)
    tree = LmdbTree(path, map_size=MAP_SIZE)
    assert tree.restored and tree.checkpoint_zxid == state[0]
    assert snapshot_state(tree) == state
    tree.close()


def test_torn_newest_slot_falls_back_to_the_other(tmp_path):
    path = str(tmp_path / "db")
    tree = LmdbTree(path, map_size=MAP_SIZE)
    w = Writer(tree, random.Random(3))
    for _ in range(20):
        w.step()
    tree.checkpoint()
    first = snapshot_state(tree)
    seq = tree.checkpoint_seq
    for _ in range(20):
        w.step()
    tree.checkpoint()   # seq + 1: the other slot
    tree.close(checkpoint=False)
    newest = os.path.join(path, lmdb_checkpoint.SLOT_FILES[(seq + 1) % 2])
    with open(newest, "r+b") as f:   # a torn write of the newest slot
        f.seek(100)
        f.write(b"\xff" * 50)
    tree = LmdbTree(path, map_size=MAP_SIZE)
    try:
        assert tree.checkpoint_seq == seq
        assert snapshot_state(tree) == first
    finally:
        tree.close()


def test_every_slot_damaged_is_reported(tmp_path):
    path = str(tmp_path / "db")
    LmdbTree(path, map_size=MAP_SIZE).close()
    for name in lmdb_checkpoint.SLOT_FILES:
        with open(os.path.join(path, name), "wb") as f:
            f.write(b"garbage" * 10)
    with pytest.raises(StorageCorruptError, match="no valid checkpoint in .*checkpoint"):
        LmdbTree(path, map_size=MAP_SIZE)


def test_missing_named_database_is_damage_not_recreated(tmp_path):
    path = str(tmp_path / "db")
    tree = LmdbTree(path, map_size=MAP_SIZE)
    with tree.env.begin(write=True) as txn:
        txn.drop(tree.db_sessions, delete=True)
    tree.close()
    with pytest.raises(StorageCorruptError, match="has no 'sessions' database"):
        LmdbTree(path, map_size=MAP_SIZE)
    # nothing was created in its place
    env = lmdb.open(path, max_dbs=8, map_size=MAP_SIZE, readonly=True)
    try:
        with env.begin() as txn:
            assert b"sessions" not in set(k for k, _ in txn.cursor())
    finally:
        env.close()


def test_missing_data_file_is_damage(tmp_path):
    path = str(tmp_path / "db")
    LmdbTree(path, map_size=MAP_SIZE).close()
    os.unlink(os.path.join(path, "data.mdb"))
    with pytest.raises(StorageCorruptError, match="data.mdb is missing"):
        LmdbTree(path, map_size=MAP_SIZE)
    assert not os.path.exists(os.path.join(path, "data.mdb"))


def test_garbage_data_file_is_damage(tmp_path):
    path = str(tmp_path / "db")
    LmdbTree(path, map_size=MAP_SIZE).close()
    with open(os.path.join(path, "data.mdb"), "r+b") as f:
        f.write(os.urandom(3 * PAGE))
    with pytest.raises(StorageCorruptError):
        LmdbTree(path, map_size=MAP_SIZE)


def test_interrupted_creation_is_started_over(tmp_path):
    path = str(tmp_path / "db")
    os.makedirs(path + ".new")
    with open(os.path.join(path + ".new", "data.mdb"), "wb") as f:
        f.write(b"half")
    tree = LmdbTree(path, map_size=MAP_SIZE)
    try:
        assert tree.created and not os.path.exists(path + ".new")
        assert tree.read_view().get("/zookeeper") is not None
    finally:
        tree.close()


def test_database_from_before_checkpoints_is_trusted_and_checkpointed(tmp_path):
    path = str(tmp_path / "db")
    tree = LmdbTree(path, map_size=MAP_SIZE)
    w = Writer(tree, random.Random(4))
    for _ in range(10):
        w.step()
    state = snapshot_state(tree)
    tree.close()
    for name in lmdb_checkpoint.SLOT_FILES:
        os.unlink(os.path.join(path, name))
    tree = LmdbTree(path, map_size=MAP_SIZE)
    try:
        assert snapshot_state(tree) == state
        assert lmdb_checkpoint.load(path).zxid == state[0]
    finally:
        tree.close()


def test_failed_store_keeps_its_pin_and_reuses_its_slot(tmp_path, monkeypatch):
    path = str(tmp_path / "db")
    tree = LmdbTree(path, map_size=MAP_SIZE)
    w = Writer(tree, random.Random(5))
    for _ in range(10):
        w.step()
    tree.checkpoint()
    seq = tree.checkpoint_seq
    w.step()

    def full(*a):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(lmdb_checkpoint, "store", full)
    pending = tree.begin_checkpoint()
    with pytest.raises(OSError):
        tree.finish_checkpoint(pending)
    tree.abandon_checkpoint(pending)
    assert pending.pin in tree._stale_pins and tree.checkpoint_seq == seq
    monkeypatch.undo()
    w.step()
    assert tree.checkpoint() == w.zxid
    assert tree.checkpoint_seq == seq + 1 and tree._stale_pins == []
    tree.close()


def test_a_second_process_holding_the_env_blocks_the_restore(tmp_path):
    import subprocess
    import sys
    path = str(tmp_path / "db")
    LmdbTree(path, map_size=MAP_SIZE).close()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import lmdb,sys,time; e=lmdb.open(sys.argv[1], max_dbs=8, "
         "readonly=True); print('open', flush=True); time.sleep(30)", path],
        stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline().strip() == b"open"
        with pytest.raises(StorageCorruptError, match="another process"):
            lmdb_checkpoint.wait_exclusive(path, timeout_s=0.3)
    finally:
        holder.kill()
        holder.wait()
    lmdb_checkpoint.wait_exclusive(path, timeout_s=5)


def test_slot_codec_rejects_damage():
    cp = lmdb_checkpoint.Checkpoint(3, 7, 0x100000005, 4096, b"")
    with pytest.raises(ValueError):   # no meta pages in it
        lmdb_checkpoint.decode(lmdb_checkpoint.encode(cp))
    assert lmdb_checkpoint.decode(b"") is None
    with pytest.raises(ValueError, match="truncated"):
        lmdb_checkpoint.decode(b"ZKPYCKPT")


def test_slot_codec_round_trip(tmp_path):
    path = str(tmp_path / "db")
    LmdbTree(path, map_size=MAP_SIZE).close()
    cp = lmdb_checkpoint.load(path)
    data = lmdb_checkpoint.encode(cp)
    assert lmdb_checkpoint.decode(data) == cp
    for i in (0, 9, 30, len(data) // 2, len(data) - 1):
        damaged = bytearray(data)
        damaged[i] ^= 0x40
        with pytest.raises(ValueError):
            lmdb_checkpoint.decode(bytes(damaged))
    shutil.rmtree(path)


def test_power_cut_during_a_snapshot_install(tmp_path):
    """A SNAP install is one LMDB txn, then a checkpoint: a cut before that checkpoint comes back
    to the old tree (its log untouched: log_reset_pending unset); after it, to the snapshot with
    log_reset_pending set (the start-up finishes the log reset)."""
    src = LmdbTree(str(tmp_path / "leader"), map_size=MAP_SIZE)
    w = Writer(src, random.Random(6))
    for _ in range(60):
        w.step()
    snap_state = snapshot_state(src)
    chunks = list(src.snapshot_chunks(chunk_bytes=4096))
    src.close()

    path = str(tmp_path / "follower")
    dst = LmdbTree(path, map_size=MAP_SIZE)
    w = Writer(dst, random.Random(7))
    for _ in range(20):
        w.step()
    dst.checkpoint()
    old_state = snapshot_state(dst)

    # cut after the install's commit, before its checkpoint
    real = dst._checkpoint_locked

    def power_cut():
        raise KeyboardInterrupt("power cut")
    dst._checkpoint_locked = power_cut
    with pytest.raises(KeyboardInterrupt):
        dst.install_snapshot(chunks)
    dst._checkpoint_locked = real
    dst.close(checkpoint=False)
    dst = LmdbTree(path, map_size=MAP_SIZE)
    assert dst.restored and snapshot_state(dst) == old_state
    assert dst.log_reset_pending() is None

    # cut right after the install (its checkpoint stored, the log not yet reset)
    zxid = dst.install_snapshot(chunks)
    dst.close(checkpoint=False)
    dst = LmdbTree(path, map_size=MAP_SIZE)
    try:
        assert snapshot_state(dst) == snap_state and dst.log_reset_pending() == zxid
    finally:
        dst.close()
    assert lmdb.verify.verify(path) == []


def test_reopen_without_restore_checkpoints_with_the_next_number(tmp_path):
    """restore=False (a running server reopening its handle): the state as it is, checkpointed
    at once under the next sequence number -- an older slot must never win the next restore."""
    path = str(tmp_path / "db")
    tree = LmdbTree(path, map_size=MAP_SIZE)
    w = Writer(tree, random.Random(8))
    for _ in range(3):
        for _ in range(10):
            w.step()
        tree.checkpoint()
    for _ in range(10):
        w.step()
    seq = tree.checkpoint_seq
    tree.close(checkpoint=False)
    tree = LmdbTree(path, map_size=MAP_SIZE, restore=False)
    assert tree.checkpoint_seq == seq + 1 and not tree.restored
    state = snapshot_state(tree)
    w = Writer(tree, random.Random(9))
    for _ in range(10):
        w.step()
    tree.close(checkpoint=False)
    tree = LmdbTree(path, map_size=MAP_SIZE)
    try:
        assert snapshot_state(tree) == state
    finally:
        tree.close()
