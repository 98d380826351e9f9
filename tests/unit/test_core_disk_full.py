"""Core on a full disk, in one process: a real TxnLog and LMDB in tmp_path, a fake frontend.

  * a log append that fails (ENOSPC from os.write): its requests and those queued behind it are
    answered SYSTEMERROR, next_zxid and the prep overlay go back (a create that failed is not
    "there" for the next request), a sync waiting for them is answered, a new session that
    could not be logged closes its connection; the next write goes to the log again;
  * an LMDB commit that fails: the logged txn waits unanswered, new writes are refused before
    they are logged, reads see the old state; when LMDB commits again the waiting one is
    answered and writes are accepted;
  * both at once: a txn waits for LMDB while the next batch fails in the log; the overlay keeps
    the waiting txn's effect and drops the failed one's.
"""

import asyncio
import errno
import os
import struct

import lmdb
import pytest

from zkpy import errors
from zkpy.config import parse_config
from zkpy.proto import codec, consts
from zkpy.proto import records as r
from zkpy.server import core as core_mod
from zkpy.server.pipeline import common as final_mod   # APPLY_RETRY_S lives there
from zkpy.server.core import Core
from zkpy.storage.lmdb_tree import LmdbTree
from zkpy.tree import txns

OPEN_ACL = [r.ACL(31, r.Id("world", "anyone"))]
SID = 0x1234


class Origin:
    """A frontend as the core sees it: records what it is told."""

    def __init__(self):
        self.replies = {}      # entry_id -> (err, zxid in the header, close_after)
        self.connected_calls = []
        self.batches = []

    def batch(self, zxid, events, replies, committed=False):
        self.batches.append(zxid)
        for conn_id, entry_id, close_after, data in replies:
            _, xid, hzxid, err = struct.unpack(">iiqi", data[:20])
            self.replies[entry_id] = (err, hzxid, close_after)

    def committed(self, zxid):
        pass

    def connected(self, conn_id, ok, session_id, timeout_ms, passwd, read_only):
        self.connected_calls.append((conn_id, ok, session_id))

    def close_conn(self, conn_id):
        pass


def create_body(path, data=b"x"):
    return codec.encode(r.CreateRequest(path, data, OPEN_ACL, 0))


class Harness:
    def __init__(self, tmp_path, extra=""):
        cfg = parse_config("dataDir=%s\nclientPort=2181\nworkers=0\n%s"
                           % (tmp_path / "data", extra), path=str(tmp_path / "zoo.cfg"))
        self.core = Core(cfg)
        self.core.open()
        self.origin = Origin()
        self.core.origins.append(self.origin)
        self.entry = 0

    async def start(self):
        self.core.start()
        txn = txns.Txn(txns.CREATE_SESSION, SID, 0, core_mod.now_ms(), timeout_ms=30000)
        self.core.submit(txn, (self.origin, 1, None))
        await self.settle()

    async def settle(self):
        await self.core.committer.flush()
        await asyncio.sleep(0.01)

    def create(self, path, data=b"x"):
        self.entry += 1
        self.core.request(self.origin, 1, self.entry, SID, self.entry, consts.OP_CREATE,
                          create_body(path, data))
        return self.entry

    def sync(self, path="/"):
        self.entry += 1
        self.core.request(self.origin, 1, self.entry, SID, self.entry, consts.OP_SYNC,
                          codec.encode(r.SyncRequest(path)))
        return self.entry

    def answer(self, entry):
        got = self.origin.replies.get(entry)
        return None if got is None else got[0]

    async def stop(self):
        await self.core.stop()


def full_log(monkeypatch, after_calls=0):
    """os.pwrite (only the txn log uses it here) fails with ENOSPC after `after_calls` calls."""
    real = os.pwrite
    calls = [0]

    def write(fd, data, offset):
        calls[0] += 1
        if calls[0] > after_calls:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", write)


def full_lmdb(monkeypatch, exc=None):
    """Every LMDB write txn of the core fails at commit (as a full dataDir makes it)."""
    real = LmdbTree.write

    def write(tree):
        wv = real(tree)

        def commit():
            raise exc or lmdb.Error("mdb_txn_commit: No space left on device")
        wv.commit = commit
        return wv

    monkeypatch.setattr(LmdbTree, "write", write)


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 20))


def test_log_full_fails_requests_and_rolls_back(tmp_path, monkeypatch, caplog):
    h = Harness(tmp_path)

    async def main():
        await h.start()
        ok = h.create("/ok")
        await h.settle()
        assert h.answer(ok) == 0
        last = h.core.last_zxid
        full_log(monkeypatch)
        a = h.create("/a")
        b = h.create("/a/b")          # depends on /a (only in the overlay)
        bad = h.create("/nope/x")     # an ERROR txn (NONODE): not logged either
        s = h.sync()                  # waits for the three
        await h.settle()
        for e in (a, b, bad):
            assert h.origin.replies[e][:2] == (errors.SYSTEMERROR, last)
        assert h.origin.replies[s][:2] == (0, last)   # answered, with no zxid it never saw
        assert h.core.next_zxid == last + 1
        assert h.core.overlay.get("/a") is None
        assert h.core.log_error is not None
        # A new session cannot be logged: its connection closes.
        h.core.submit(txns.Txn(txns.CREATE_SESSION, 0x99, 0, core_mod.now_ms(),
                               timeout_ms=30000), (h.origin, 7, None))
        await h.settle()
        assert h.origin.connected_calls[-1] == (7, 2, 0)
        monkeypatch.undo()
        a2 = h.create("/a")
        b2 = h.create("/a/b")
        await h.settle()
        assert (h.answer(a2), h.answer(b2)) == (0, 0)
        assert h.core.view.get("/a/b") is not None
        assert h.core.log_error is None
        await h.stop()

    with caplog.at_level("INFO", logger="zkpy.server"):
        run(main())
    errs = [rec for rec in caplog.records if rec.levelname == "ERROR"]
    assert len(errs) == 1 and "cannot write the transaction log" in errs[0].getMessage()
    assert "No space left on device" in errs[0].getMessage()
    assert any("takes writes again (4 txn(s) failed" in rec.getMessage()
               for rec in caplog.records)
    reopened = Core(h.core.config)
    reopened.open()
    try:
        view = reopened.view
        assert view.get("/ok") is not None and view.get("/a/b") is not None
        assert reopened.last_zxid == h.core.last_zxid
    finally:
        reopened.close_storage()


@pytest.mark.parametrize("kind", ["enospc", "map-full", "panic"])
def test_lmdb_commit_fails_txns_wait_new_writes_refused(tmp_path, monkeypatch, caplog, kind):
    """(panic: LMDB's fatal environment error -- the core reopens the environment to retry.)"""
    h = Harness(tmp_path)
    monkeypatch.setattr(final_mod, "APPLY_RETRY_S", 0.05)
    map_full = kind == "map-full"

    async def main():
        await h.start()
        tree = h.core.tree
        exc = {"enospc": None, "map-full": lmdb.MapFullError("mdb_put: MDB_MAP_FULL"),
               "panic": lmdb.PanicError("mdb_txn_begin: MDB_PANIC")}[kind]
        full_lmdb(monkeypatch, exc)
        waits = h.create("/w")
        await h.settle()
        assert h.answer(waits) is None           # durable, not applied: not answered
        assert h.core.apply_error is not None
        refused = h.create("/r")
        assert h.answer(refused) == errors.SYSTEMERROR
        assert h.core.view.get("/w") is None     # reads see the committed state
        await asyncio.sleep(0.2)                 # retries fail quietly
        assert h.answer(waits) is None
        monkeypatch.undo()
        await asyncio.sleep(0.2)
        assert h.answer(waits) == 0
        assert h.core.apply_error is None and h.core.view.get("/w") is not None
        assert (h.core.tree is not tree) == (kind == "panic")
        again = h.create("/r")
        await h.settle()
        assert h.answer(again) == 0
        await h.stop()

    with caplog.at_level("INFO", logger="zkpy.server"):
        run(main())
    errs = [rec.getMessage() for rec in caplog.records if rec.levelname == "ERROR"]
    assert len(errs) == 1, errs
    assert str(tmp_path / "data") in errs[0]
    assert ("lmdbMapSize" in errs[0]) == map_full
    assert any("takes writes again" in rec.getMessage() for rec in caplog.records)


def test_lmdb_stalled_and_log_full_together(tmp_path, monkeypatch):
    """maxBatchSize=1: /s1 is logged (batch k) and its apply fails; /s2's append (batch k+1,
    already under way) fails. /s1 must stay in the overlay (it is durable), /s2 must not."""
    h = Harness(tmp_path, "maxBatchSize=1\n")
    monkeypatch.setattr(final_mod, "APPLY_RETRY_S", 0.05)

    async def main():
        await h.start()
        full_lmdb(monkeypatch)
        full_log(monkeypatch, after_calls=1)
        s1 = h.create("/s1")
        s2 = h.create("/s2")
        await h.settle()
        assert h.answer(s1) is None and h.answer(s2) == errors.SYSTEMERROR
        assert h.core.overlay.get("/s1") is not None and h.core.overlay.get("/s2") is None
        assert h.core.next_zxid == h.core._pending[-1][0] + 1
        monkeypatch.undo()
        await asyncio.sleep(0.2)
        assert h.answer(s1) == 0
        dup = h.create("/s1")
        s2b = h.create("/s2")
        await h.settle()
        assert (h.answer(dup), h.answer(s2b)) == (errors.NODEEXISTS, 0)
        await h.stop()

    run(main())
