"""A full disk under a real zkpy server: writes fail with SystemError, reads go on, nothing
acknowledged is lost, and once there is space again writes succeed without a restart.

The disk is a small real tmpfs mounted for the test (root only: the tests skip with the reason
otherwise) and filled with a filler file, so the errors are the kernel's own ENOSPC (LMDB reports
its short page write as EIO). Variants:

  shared   dataDir and dataLogDir on the same full tmpfs: whichever fails first -- a log append
           (its requests fail at once) or the LMDB commit of logged txns (they wait) -- new writes
           get SystemZookeeperError, reads work, and writes work again after the filler is gone.
  datadir  only dataDir full (dataLogDir elsewhere): the logged txns wait, new writes are refused,
           the waiting ones are answered once LMDB can commit again.
  map      a tiny `lmdbMapSize` (no tmpfs): the map fills, the waiting txn is answered only after
           a restart; a restart whose log replay does not fit the map stops with one message
           naming the key; with a larger map every acknowledged write is there.

Each ends with a restart: every acknowledged write is present with its data, no failed one is.
A write is acknowledged when its kazoo call returned; failed when it raised
SystemZookeeperError; "waiting" when it was not answered within a few seconds (a txn durable in
the log, waiting for LMDB): it must be applied in the end.
"""

import errno
import os
import subprocess
import time

import pytest

from compat.servers import ServerStartError, make_server, zkpy_unavailable
from crash import kazoo_clients
from crash.kazoo_clients import close

pytestmark = [pytest.mark.timeout(120)]

TMPFS_SIZE = "8m"
DATA = b"d" * 8192   # >= a page: once a write failed for want of space, the next ones fail too
ANSWER_S = 3.0       # a write not answered by then waits for LMDB
MIB = 1 << 20


@pytest.fixture
def tmpfs(tmp_path):
    """A fresh tmpfs of TMPFS_SIZE; unmounted after the test."""
    mnt = tmp_path / "tmpfs"
    mnt.mkdir()
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=" + TMPFS_SIZE, "tmpfs", str(mnt)],
                       check=True, capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as e:
        err = getattr(e, "stderr", b"") or b""
        pytest.skip("cannot mount a tmpfs for a real full disk (needs root): %s %s"
                    % (e, err.decode(errors="replace").strip()))
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True, timeout=30)


@pytest.fixture
def servers(request):
    reason = zkpy_unavailable()
    if reason:
        pytest.skip(reason)
    started = []
    request.node._zk_servers = started   # conftest attaches the log tails to a failure report

    def make(root, cfg, data_dir=None):
        srv = make_server("zkpy", root, dict(cfg, tickTime="500"))
        if data_dir is not None:
            srv.data_dir = data_dir   # (the harness checks a server by its dataDir)
        started.append(srv)
        return srv
    yield make
    for srv in started:
        srv.stop()


def client(srv):
    return kazoo_clients.client(srv.hosts)


def fill(path):
    """Write `path` until the file system is full (ENOSPC), down to the last byte."""
    with open(path, "wb", buffering=0) as f:
        for chunk in (MIB, 65536, 4096, 1):
            block = b"\1" * chunk
            while True:
                try:
                    if f.write(block) < chunk:
                        continue   # short: the next write fails
                except OSError as e:
                    if e.errno != errno.ENOSPC:
                        raise
                    break


class Ledger:
    """What the server answered each write."""

    def __init__(self):
        self.acked = {}     # path -> data
        self.failed = set()
        self.waiting = {}   # path -> (data, kazoo async result)

    def write(self, zk, path, data=DATA, timeout=ANSWER_S):
        """create `path`: 'acked', 'failed' (SystemZookeeperError) or 'waiting'."""
        from kazoo.exceptions import SystemZookeeperError
        from kazoo.handlers.threading import KazooTimeoutError
        res = zk.create_async(path, data)
        try:
            res.get(timeout=timeout)
        except SystemZookeeperError:
            self.failed.add(path)
            return "failed"
        except KazooTimeoutError:
            self.waiting[path] = (data, res)
            return "waiting"
        self.acked[path] = data
        return "acked"

    def settle(self, timeout=15.0):
        """The waiting writes are answered (LMDB takes them again): all succeed."""
        for path, (data, res) in list(self.waiting.items()):
            res.get(timeout=timeout)
            self.acked[path] = data
            del self.waiting[path]

    def write_until_answered(self, zk, prefix, deadline_s=15.0):
        """Writes after the space came back: the first ones may still fail (the log is tried
        again by each write; the LMDB apply is retried every 0.5 s); one succeeds in time."""
        deadline = time.monotonic() + deadline_s
        i = 0
        while True:
            i += 1
            got = self.write(zk, "%s-%d" % (prefix, i))
            if got == "acked":
                return
            assert got == "failed", got
            assert time.monotonic() < deadline, "writes still fail after the space came back"
            time.sleep(0.2)

    def check(self, zk):
        for path, data in self.acked.items():
            got = zk.get(path)[0]
            assert got == data, "%s: %r..." % (path, got[:20])
        for path in self.failed:
            assert zk.exists(path) is None, "%s failed, but it is there" % path


def fill_until_refused(ledger, writer, other, prefix, max_writes=400):
    """Write with `writer` until a write fails or waits; then a write of `other` (another
    session) must fail with SystemError at once. Returns what stopped the writer."""
    for i in range(max_writes):
        got = ledger.write(writer, "%s-%d" % (prefix, i))
        if got != "acked":
            break
    else:
        pytest.fail("%d writes of %d bytes fitted on the full disk" % (max_writes, len(DATA)))
    assert ledger.write(other, prefix + "-other", timeout=ANSWER_S) == "failed"
    return got


def check_reads(ledger, zk, parent, complete=True):
    """Reads work; every acknowledged write under `parent` is there with its data -- or, not
    `complete` (a member whose own log is stalled, so it has not applied what the others
    committed since), every one it shows has its data and no failed write is shown."""
    children = set(zk.get_children(parent))
    for path, data in ledger.acked.items():
        if path.startswith(parent + "/"):
            name = path.rsplit("/", 1)[1]
            if complete:
                assert name in children, path
            if name in children:
                assert zk.get(path)[0] == data
    for path in ledger.failed:
        assert path.rsplit("/", 1)[1] not in children, path
    assert zk.exists(parent) is not None


def log_errors(srv):
    text = srv.log_text()
    assert "Traceback" not in text, srv.log_tail(80)
    assert "Severe unrecoverable" not in text
    return [line for line in text.splitlines() if " - ERROR [" in line]


# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["shared", "datadir"])
def test_full_disk_fails_writes_keeps_reads_and_recovers(tmp_path, tmpfs, servers, variant):
    data_dir = tmpfs / "data"
    log_dir = (tmpfs if variant == "shared" else tmp_path) / "log"
    srv = servers(tmp_path / "srv", {"dataLogDir": str(log_dir)}, data_dir=data_dir)
    srv.start()
    ledger = Ledger()
    writer, reader = client(srv), client(srv)
    try:
        writer.ensure_path("/df")
        for i in range(10):
            assert ledger.write(writer, "/df/before-%d" % i) == "acked"
        filler = tmpfs / "filler"
        fill(filler)

        stopped_by = fill_until_refused(ledger, writer, reader, "/df/full")
        if variant == "datadir":
            assert stopped_by == "waiting"   # logged, so never failed: it waits for LMDB
        assert srv.running()
        # Reads go on, for the session whose write waits too (its reads would queue behind it:
        # ZooKeeper answers a session's requests in order, so only other sessions read now).
        check_reads(ledger, reader, "/df")
        assert reader.exists("/df/before-0") is not None
        assert ledger.write(reader, "/df/still-full") == "failed"
        errors = log_errors(srv)
        assert 1 <= len(errors) <= 2, errors   # one per outage, not one per request
        where = str(data_dir) if stopped_by == "waiting" else str(log_dir)
        assert any(where in line for line in errors), errors

        os.unlink(filler)
        ledger.write_until_answered(reader, "/df/after")
        ledger.settle()
        for i in range(10):
            assert ledger.write(writer, "/df/later-%d" % i) == "acked"
        check_reads(ledger, reader, "/df")
        assert len(log_errors(srv)) == len(errors)
        assert "takes writes again" in srv.log_text()
    finally:
        close(writer)
        close(reader)

    assert srv.stop() == 0
    srv.start()
    zk = client(srv)
    try:
        ledger.check(zk)
    finally:
        close(zk)
    assert ledger.failed and ledger.acked


def test_lmdb_map_full(tmp_path, servers):
    """lmdbMapSize too small: the map fills, the logged txn waits, new writes fail; the server
    stops cleanly; a restart whose replay does not fit the map stops with one message naming
    lmdbMapSize; with a larger map everything is there."""
    # No checkpoint during the test: a checkpoint releases the pages its predecessor pinned, so
    # a map filled partly by those would take the waiting write again (and fill up once more).
    srv = servers(tmp_path / "srv", {"lmdbMapSize": str(4 * MIB),
                                     "checkpointIntervalMs": "3600000"})
    srv.start()
    ledger = Ledger()
    writer, reader = client(srv), client(srv)
    big = b"m" * 60000
    try:
        writer.ensure_path("/map")
        stopped_by = None
        for i in range(200):
            stopped_by = ledger.write(writer, "/map/n-%d" % i, big)
            if stopped_by != "acked":
                break
        assert stopped_by == "waiting"
        assert ledger.write(reader, "/map/refused", big) == "failed"
        check_reads(ledger, reader, "/map")
        errors = log_errors(srv)
        assert len(errors) == 1 and "lmdbMapSize=%d" % (4 * MIB) in errors[0], errors
        assert "map is full" in errors[0]
        # The server stops cleanly with a txn waiting (it is in the log). The clients go after
        # it: the writer's closeSession would queue behind its waiting write until the session
        # timeout, the reader's would be refused (a write).
        assert srv.stop() == 0
    finally:
        close(reader)
        close(writer)

    # The tree rebuilt from the log into a 1 MiB map: more than 4 MiB of it cannot fit.
    db = tmp_path / "srv" / "data" / "zkpy-db"
    for name in os.listdir(db):
        os.unlink(db / name)
    os.rmdir(db)
    srv.extra_cfg["lmdbMapSize"] = str(MIB)
    with pytest.raises(ServerStartError):
        srv.start(timeout=20)
    text = srv.log_text()
    assert "Traceback" not in text, srv.log_tail(60)
    start_errors = [line for line in text.splitlines()[-20:] if "cannot start" in line]
    assert len(start_errors) == 1 and "lmdbMapSize=%d" % MIB in start_errors[0], start_errors

    srv.extra_cfg["lmdbMapSize"] = str(64 * MIB)
    srv.start()
    zk = client(srv)
    try:
        # The waiting write was durable in the log: applied now, with the acknowledged ones.
        for path, (data, _) in ledger.waiting.items():
            assert zk.get(path)[0] == data
        ledger.waiting.clear()
        ledger.check(zk)
        assert ledger.write(zk, "/map/more", big) == "acked"
    finally:
        close(zk)


# ---------------------------------------------------------------------------------------------
# an ensemble


@pytest.mark.parametrize("where", ["all", "leader", "follower"])
def test_ensemble_full_disk(tmp_path, tmpfs, where):
    """A 3-member zkpy pseudo-cluster, its members' data on the full tmpfs: all of them (one
    disk, as on one machine), only the leader's, or only a follower's. A member whose log
    cannot be written keeps the txns it was given and retries them, and refuses its clients'
    new writes with SystemError; a learner tells the leader its log is stalled, and the leader
    refuses every new write while no quorum can write its log -- so with all disks or the
    leader's full, writes fail on every member; with a follower's, the others go on. Reads go
    on everywhere. Once the filler is gone the waiting writes commit and new ones are taken,
    without a restart. After a restart every acknowledged write is on every member, no failed
    one on any."""
    from compat.ensemble import Ensemble
    reason = zkpy_unavailable()
    if reason:
        pytest.skip(reason)
    full = {"all": (1, 2, 3), "leader": (3,), "follower": (1,)}[where]
    victim = 1 if where == "follower" else 3
    others = [sid for sid in (1, 2, 3) if sid != victim]
    ens = Ensemble("zkpy", tmp_path / "ens", servers=3)
    for m in ens.members:
        if m.sid in full:
            m.data_dir = tmpfs / ("zk%d" % m.sid)
    clients = {}
    ledger = Ledger()
    try:
        # 3 and 2 first: a quorum, both empty, so their election's tie goes to the higher id.
        for sid in (3, 2):
            ens.member(sid).start()
        ens.wait_healthy(members=[ens.member(3), ens.member(2)])
        ens.member(1).start()
        leader = ens.wait_healthy()
        assert leader.sid == 3, "member %d leads, not 3" % leader.sid
        for m in ens.members:
            clients[m.sid] = client(m)
        writer = clients[victim]
        # A second session on the victim for reads (a new session is a write: refused while
        # its disk is full; the writer's reads queue behind its waiting write).
        reader = clients["r"] = client(ens.member(victim))
        writer.ensure_path("/df")
        for m in ens.members:
            for i in range(5):
                assert ledger.write(clients[m.sid], "/df/before-%d-%d" % (m.sid, i)) == "acked"
        filler = tmpfs / "filler"
        fill(filler)

        fill_until_refused(ledger, writer, reader, "/df/full")
        assert all(m.running() for m in ens.members)
        # (No sync: it waits for the txns proposed so far, which may wait for the disk. The
        # acknowledged writes were committed seconds ago.)
        # A member whose log is stalled applies nothing more (a follower on the full disk may
        # lack what the others committed just before it stalled); the others have it all.
        stalled = lambda sid: sid in full and (where != "all" or sid != 3)  # noqa: E731
        check_reads(ledger, reader, "/df", complete=not stalled(victim))
        for sid in others:
            check_reads(ledger, clients[sid], "/df", complete=not stalled(sid))
            assert ledger.write(clients[sid], "/df/meanwhile-%d" % sid) == \
                ("acked" if where == "follower" else "failed")
        errors = {}
        for m in ens.members:
            errors[m.sid] = log_errors(m)
            assert len(errors[m.sid]) <= 2, errors[m.sid]   # one per outage, not per request
            assert bool(errors[m.sid]) == (m.sid in full) or where == "all", (m, errors[m.sid])
        assert any(str(tmpfs) in line for line in errors[victim]), errors[victim]

        os.unlink(filler)
        for sid in (1, 2, 3):
            if sid != victim or not ledger.waiting:
                ledger.write_until_answered(clients[sid], "/df/after-%d" % sid)
        ledger.settle()
        for sid in (1, 2, 3):
            for i in range(5):
                assert ledger.write(clients[sid], "/df/later-%d-%d" % (sid, i)) == "acked"
            clients[sid].sync("/df")
            check_reads(ledger, clients[sid], "/df")
        for m in ens.members:
            assert len(log_errors(m)) == len(errors[m.sid]), m
        assert "takes writes again" in ens.member(victim).log_text()
    except BaseException:
        ens.stop()
        raise
    finally:
        for zk in clients.values():
            close(zk)

    for m in ens.members:
        assert m.stop() == 0, m.log_tail(40)
    ens.start()
    try:
        for m in ens.members:
            zk = client(m)
            try:
                zk.sync("/df")
                ledger.check(zk)
            finally:
                close(zk)
    finally:
        ens.stop()
    assert ledger.failed and ledger.acked
