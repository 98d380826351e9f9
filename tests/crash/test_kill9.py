"""SIGKILL a zkpy server under load: every acknowledged write survives, sessions survive too.

A write is *acknowledged* when its kazoo call returned successfully. Those must all be present
after the restart with (at least) the acknowledged value: each path belongs to one worker, which
issues one request at a time, so the only other value a path may hold is that of the single write
the worker had in flight when the server died (which may or may not have been made durable).

Odd rounds also delete the LMDB directory before the restart, so the tree is rebuilt from the
transaction log alone: the log, not LMDB, is what an acknowledgement promises.

Seeds are printed (`pytest -s` shows them, a failure message repeats them); rerun one round with
ZKPY_CRASH_SEED=<seed>.
"""

import os
import random
import shutil
import threading
import time

import pytest

from compat.servers import make_server, zkpy_unavailable
from crash.kazoo_clients import client, close

pytestmark = [pytest.mark.timeout(60)]

WORKERS = 4
ROUNDS = 3
OP_TIMEOUT = 2.0  # s: a request queued while kazoo reconnects would otherwise wait forever


@pytest.fixture
def server(tmp_path, request):
    reason = zkpy_unavailable()
    if reason:
        pytest.skip(reason)
    srv = make_server("zkpy", tmp_path / "zkpy", {"tickTime": "500"})
    request.node._zk_servers = [srv]  # conftest attaches the log tail to a failure report
    yield srv
    srv.stop()


def value(path, seq):
    return ("%s#%d" % (path, seq)).encode()


class Worker(threading.Thread):
    """Creates its own nodes and overwrites them, one request at a time, until stopped."""

    def __init__(self, zk, prefix, wid, seed, stop):
        super().__init__(name="load-%d" % wid, daemon=True)
        self.zk = zk
        self.prefix = prefix
        self.wid = wid
        self.rng = random.Random(seed * 1000 + wid)
        self.stop = stop
        self.acked = {}        # path -> last acknowledged seq (== the node's version)
        self.inflight = None   # (path, seq) of the request whose outcome is unknown
        self.error = None
        self.wrong = None      # a reply that contradicts the worker's own history
        self.ops = 0

    def run(self):
        k = 0
        while not self.stop.is_set():
            if not self.acked or self.rng.random() < 0.35:
                path, seq = "%s/w%d-%d" % (self.prefix, self.wid, k), 0
                k += 1
                self.inflight = (path, seq)
                call = self.zk.create_async(path, value(path, seq))
            else:
                path = self.rng.choice(sorted(self.acked))
                seq = self.acked[path] + 1
                self.inflight = (path, seq)
                # Conditional set: the version check proves no other write touched the node.
                call = self.zk.set_async(path, value(path, seq), version=seq - 1)
            try:
                result = call.get(timeout=OP_TIMEOUT)
            except Exception as e:  # ConnectionLoss, timeout, closed: outcome unknown
                self.error = e
                return
            if seq > 0 and result.version != seq:
                self.wrong = "%s: set to seq %d answered version %d" % (path, seq, result.version)
                return
            self.acked[path] = seq
            self.inflight = None
            self.ops += 1


def check_round(zk, prefix, workers, seed):
    """Every acked write is there with its value; nothing else is."""
    expected_children = set()
    problems = []
    for w in workers:
        maybe = w.inflight
        for path, seq in w.acked.items():
            expected_children.add(path.rsplit("/", 1)[1])
            got = zk.exists(path)
            if got is None:
                problems.append("%s: acknowledged (seq %d) but missing" % (path, seq))
                continue
            data, stat = zk.get(path)
            ok = {(value(path, seq), seq)}
            if maybe is not None and maybe[0] == path:
                ok.add((value(path, maybe[1]), maybe[1]))  # the in-flight set may have landed
            if (data, stat.version) not in ok:
                problems.append("%s: has %r version %d, acknowledged %r version %d"
                                % (path, data, stat.version, value(path, seq), seq))
        if maybe is not None and maybe[1] == 0:
            path = maybe[0]
            name = path.rsplit("/", 1)[1]
            if zk.exists(path) is not None:  # the in-flight create may have landed
                expected_children.add(name)
                data, stat = zk.get(path)
                if data != value(path, 0) or stat.version != 0:
                    problems.append("%s: in-flight create landed with %r v%d"
                                    % (path, data, stat.version))
    extra = set(zk.get_children(prefix)) - expected_children
    if extra:
        problems.append("%s: unexpected children %s" % (prefix, sorted(extra)))
    assert not problems, "seed %d:\n%s" % (seed, "\n".join(problems[:20]))


def test_acknowledged_writes_survive_kill9(server):
    if os.environ.get("ZKPY_CRASH_SEED"):
        seeds = [int(os.environ["ZKPY_CRASH_SEED"])]
    else:
        seeds = [random.SystemRandom().randrange(1 << 30) for _ in range(ROUNDS)]
    server.start()
    history = []  # (prefix, workers, seed) of every round so far: earlier rounds are rechecked
    for rnd, seed in enumerate(seeds):
        rng = random.Random(seed)
        prefix = "/round%d" % rnd
        setup = client(server.hosts)
        setup.create(prefix)
        close(setup)
        stop = threading.Event()
        clients = [client(server.hosts) for _ in range(WORKERS)]
        workers = [Worker(c, prefix, i, seed, stop) for i, c in enumerate(clients)]
        for w in workers:
            w.start()
        delay = rng.uniform(0.2, 1.5)
        print("kill9 round %d: seed %d, SIGKILL after %.2fs" % (rnd, seed, delay))
        time.sleep(delay)
        server.kill()
        stop.set()
        for c in clients:  # nothing queued in a stopped client can reach the restarted server
            close(c)
        for w in workers:
            w.join(OP_TIMEOUT + 5)
            assert not w.is_alive(), "worker %d hangs (seed %d)" % (w.wid, seed)
            assert w.wrong is None, "seed %d: %s" % (seed, w.wrong)
        acked = sum(len(w.acked) for w in workers)
        ops = sum(w.ops for w in workers)
        print("  %d acknowledged ops on %d nodes before the kill" % (ops, acked))
        assert ops > 0, "no write was acknowledged before the kill (seed %d)" % seed
        history.append((prefix, workers, seed))
        if rnd % 2 == 1:
            # LMDB is not fsynced (only the log is): drop it, as a power cut might, and make the
            # server rebuild everything from the log. Every acked write must be in the log.
            print("  removing zkpy-db: rebuild from the log")
            shutil.rmtree(server.data_dir / "zkpy-db")
        server.start()
        zk = client(server.hosts)
        try:
            for prefix_, workers_, seed_ in history:
                check_round(zk, prefix_, workers_, seed_)
        finally:
            close(zk)
    # A clean stop after all that, then one more start: nothing lost, log and LMDB agree.
    server.stop()
    server.start()
    zk = client(server.hosts)
    try:
        for prefix_, workers_, seed_ in history:
            check_round(zk, prefix_, workers_, seed_)
    finally:
        close(zk)


def test_sessions_and_ephemerals_survive_kill9(server):
    server.start()
    a = client(server.hosts, timeout=8.0)     # reconnects after the restart
    b = client(server.hosts, timeout=2.0)     # never comes back: must expire after the restart
    c = client(server.hosts, timeout=8.0)     # closed cleanly before the crash
    a.create("/eph-a", b"a", ephemeral=True)
    seq_a = a.create("/eph-a-", b"a2", ephemeral=True, sequence=True)
    a.create("/persistent", b"p")
    b.create("/eph-b", b"b", ephemeral=True)
    c.create("/eph-c", b"c", ephemeral=True)
    close(c)
    sid_a, passwd_a = a.client_id
    sid_b = b.client_id[0]
    assert a.exists("/eph-c") is None

    server.kill()
    close(a)  # server is down: kazoo cannot send closeSession, the session stays open
    close(b)
    t_kill = time.monotonic()
    server.start()
    a2 = client(server.hosts, timeout=8.0, client_id=(sid_a, passwd_a))
    reconnect_s = time.monotonic() - t_kill
    try:
        assert a2.client_id[0] == sid_a, "session 0x%x not resumed (got 0x%x) after %.1fs" % (
            sid_a, a2.client_id[0], reconnect_s)
        for path in ("/eph-a", seq_a):
            stat = a2.exists(path)
            assert stat is not None, path
            assert stat.ephemeralOwner == sid_a
        assert a2.get("/persistent")[0] == b"p"
        assert a2.exists("/eph-c") is None
        # The resumed session can write, and its new ephemerals belong to it.
        a2.create("/eph-a-after", ephemeral=True)
        assert a2.exists("/eph-a-after").ephemeralOwner == sid_a
        # b's session was restored too (its ephemeral is there) and expires on its own:
        # 2000 ms timeout, counted from the restart, rounded up to the 500 ms tick.
        stat = a2.exists("/eph-b")
        if stat is not None:
            assert stat.ephemeralOwner == sid_b
        deadline = time.monotonic() + 8.0
        while a2.exists("/eph-b") is not None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert a2.exists("/eph-b") is None, "session 0x%x did not expire after restart" % sid_b
        assert a2.exists("/eph-a") is not None   # a2 kept its session alive meanwhile
    finally:
        close(a2)  # closeSession: a's ephemerals go
    zk = client(server.hosts)
    try:
        for path in ("/eph-a", seq_a, "/eph-a-after", "/eph-b", "/eph-c"):
            assert zk.exists(path) is None, path
        assert zk.exists("/persistent") is not None
        assert sorted(zk.get_children("/")) == ["persistent", "zookeeper"]
    finally:
        close(zk)
