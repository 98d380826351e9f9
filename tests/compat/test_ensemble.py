"""Ensembles (issue 6): three members of one kind, kazoo clients, crashes, pauses and partitions.

Parametrized over the selected targets (ZKPY_TEST_TARGETS / --zk-targets) like the other compat
tests, as `ens_kind`. Apache ZooKeeper 3.8 must pass every test for real; the zkpy cases are
expected failures until the zkpy ensemble exists (the one helper below).

One ensemble per kind for the whole module (tickTime 500 ms, initLimit 10, syncLimit 5, a proxy
on every member-to-member link): each test may kill, pause or cut members but leaves them all
running; the `ens` fixture restarts, resumes and heals whatever a failed test left behind, and
waits for a leader and followers, before every test.
"""

import os
import re
import subprocess
import sys
import threading
import time
import uuid

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import (ConnectionClosedError, ConnectionLoss, KazooException,
                              NoNodeError, SessionExpiredError)
from kazoo.handlers.threading import KazooTimeoutError
from kazoo.protocol.states import KazooState

from compat import servers as zkservers
from compat.ensemble import (ENSEMBLE_TICK_MS, SESSION_TIMEOUT, Ensemble, KazooClients,
                             restore, srvr_mode)
from conftest import selected_targets


TICK_S = ENSEMBLE_TICK_MS / 1000.0
SYNC_LIMIT = 5
# Measured times (re-election after kill -9, ...) go to stdout (pytest -s) and, when the env
# var names a file, are appended to it.
TIMINGS_FILE = os.environ.get("ZKPY_ENSEMBLE_TIMINGS")

pytestmark = pytest.mark.timeout(120)


def pytest_generate_tests(metafunc):
    if "ens_kind" in metafunc.fixturenames:
        kinds = selected_targets(metafunc.config)
        metafunc.parametrize("ens_kind", [pytest.param(k, id=k) for k in kinds],
                             indirect=True, scope="module")


def _record(kind, what, seconds):
    line = "%s: %s %.2f s" % (kind, what, seconds)
    print(line)
    if not TIMINGS_FILE:
        return
    try:
        with open(TIMINGS_FILE, "a") as f:
            f.write("%s %s\n" % (time.strftime("%Y-%m-%d %H:%M:%S"), line))
    except OSError:
        pass


# --- fixtures --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ens_kind(request):
    reason = zkservers.UNAVAILABLE[request.param]()
    if reason:
        pytest.skip(reason)
    return request.param


@pytest.fixture(scope="module")
def module_ensemble(ens_kind, tmp_path_factory):
    ensemble = Ensemble(ens_kind, tmp_path_factory.mktemp("%s-ensemble" % ens_kind), servers=3,
                        proxies=True)
    ensemble.start()
    yield ensemble
    ensemble.stop()


@pytest.fixture
def ens(module_ensemble, request):
    """The module's ensemble, every member running and healthy."""
    yield restore(module_ensemble, request)


@pytest.fixture
def clients():
    """clients(hosts, **kw) -> a started KazooClient, stopped and closed after the test."""
    made = KazooClients(SESSION_TIMEOUT)
    yield made
    made.close()


# --- helpers ---------------------------------------------------------------------------------

def _cli_env():
    """Environment for `python -m zkpy.cli.*` from the checkout (zkpy need not be installed)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(zkservers.REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    return env


def _base():
    return "/t-" + uuid.uuid4().hex[:8]


def member_tree(member, root="/", timeout=15.0):
    """{path: (data, version, czxid, mzxid, pzxid, ephemeralOwner)} of everything but /zookeeper
    (its /zookeeper/config differs per member when each has its own proxy ports), read through
    a client connected to this member alone after a sync."""
    c = KazooClient(hosts=member.hosts, timeout=SESSION_TIMEOUT)
    c.start(timeout=timeout)
    try:
        c.sync(root)
        out = {}
        stack = [root]
        while stack:
            path = stack.pop()
            if path == "/zookeeper":
                continue
            try:
                data, st = c.get(path)
                kids = c.get_children(path)
            except NoNodeError:
                continue
            out[path] = (data, st.version, st.czxid, st.mzxid, st.pzxid, st.ephemeralOwner)
            stack.extend((path.rstrip("/") + "/" + k) for k in kids)
        return out
    finally:
        c.stop()
        c.close()


def assert_converged(ensemble, root="/", timeout=20.0):
    """Every member's tree is the same (retried until `timeout`: a rejoined member catches up)."""
    deadline = time.monotonic() + timeout
    while True:
        trees = {m.sid: member_tree(m, root) for m in ensemble.members}
        first = trees[ensemble.members[0].sid]
        diff = {sid: sorted(set(t.items()) ^ set(first.items()))[:5]
                for sid, t in trees.items() if t != first}
        if not diff:
            return first
        if time.monotonic() > deadline:
            pytest.fail("member trees differ from member %d's: %s" % (ensemble.members[0].sid,
                                                                      diff))
        time.sleep(0.5)


def wait_new_leader(ensemble, old, timeout=20.0):
    """Wait until a member other than `old` is leader and the others (but old) follow it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        others = [m for m in ensemble.members if m is not old]
        modes = [m.mode(timeout=1.0) for m in others]
        if modes.count("leader") == 1 and all(md in ("leader", "follower") for md in modes):
            return others[modes.index("leader")]
        time.sleep(0.02)
    pytest.fail("no new leader among %s after %.0f s: %s" % (
        [m.sid for m in ensemble.members if m is not old], timeout, ensemble.modes()))


RETRYABLE = (ConnectionLoss, SessionExpiredError, ConnectionClosedError, KazooTimeoutError)


class Writer(threading.Thread):
    """Creates base/n-000000, n-000001, ... with value b"<i>"; `acked` holds what was answered OK.
    A write that fails (connection loss, timeout) has an unknown outcome and is not retried."""

    def __init__(self, client, base, pause=0.003):
        super().__init__(daemon=True)
        self.client, self.base, self.pause = client, base, pause
        self.acked = []
        self.failed = 0
        self.unexpected = []
        self._halt = threading.Event()

    def run(self):
        i = 0
        while not self._halt.is_set():
            path = "%s/n-%06d" % (self.base, i)
            try:
                self.client.create_async(path, b"%d" % i).get(timeout=5)
                self.acked.append((path, b"%d" % i))
            except RETRYABLE:
                self.failed += 1
                time.sleep(0.05)
            except Exception as e:    # NodeExists etc. would be a real bug
                self.unexpected.append((path, repr(e)))
            i += 1
            time.sleep(self.pause)

    def wait_acks(self, n, timeout=20.0):
        deadline = time.monotonic() + timeout
        target = len(self.acked) + n
        while len(self.acked) < target:
            if time.monotonic() > deadline:
                pytest.fail("writes stalled: %d acked, %d failed, wanted %d more within %.0f s"
                            % (len(self.acked), self.failed, n, timeout))
            time.sleep(0.02)

    def stop(self):
        self._halt.set()
        self.join(10)

    def check_all_there(self, client):
        assert not self.unexpected, self.unexpected
        client.sync(self.base)
        missing = []
        for path, value in self.acked:
            try:
                data, _ = client.get(path)
            except NoNodeError:
                missing.append(path)
                continue
            assert data == value, path
        assert not missing, "acknowledged writes lost: %s" % missing[:10]


# --- tests -----------------------------------------------------------------------------------

# First in the file: it runs its own 4 JVMs before the module's ensemble is started.
def test_zkpy_cluster_cli_end_to_end(ens_kind, tmp_path):
    """zkpy-cluster init/start/status/kill/restart/pause/resume/stop/destroy (3 + 1 observer)."""
    base_port = _free_cluster_base(4)
    d = tmp_path / "cluster"

    def run(*args, check=True, timeout=120):
        res = subprocess.run([sys.executable, "-m", "zkpy.cli.cluster", "--dir", str(d)]
                             + list(args), capture_output=True, text=True, timeout=timeout,
                             env=_cli_env())
        if check:
            assert res.returncode == 0, "%s: %s%s" % (args, res.stdout, res.stderr)
        return res

    def modes(text):
        """{member id: mode, or the status word ("down", ...)} from `status` lines."""
        out = {}
        for line in text.splitlines():
            m = re.match(r"zk(\d+)\s", line)
            if m:
                out[int(m.group(1))] = (srvr_mode(line[line.find("Mode:"):]) if "Mode:" in line
                                        else line.split()[-1])
        return out

    run("init", "--servers", "3", "--observers", "1", "--impl", ens_kind, "--tick-time", "500",
        "--base-client-port", str(base_port))
    cfg = (d / "zk4" / "zoo.cfg").read_text()
    assert "peerType=observer" in cfg and "server.4=127.0.0.1:%d:%d:observer" % (
        base_port - 2181 + 5555, base_port - 2181 + 5556) in cfg
    assert "clientPort=%d" % (base_port + 1) in (d / "zk2" / "zoo.cfg").read_text()
    assert (d / "zk3" / "data" / "myid").read_text().strip() == "3"
    assert run("init", check=False).returncode != 0       # refuses to overwrite
    try:
        run("start")
        st = modes(run("status").stdout)
        assert sorted(st.values()) == ["follower", "follower", "leader", "observer"], st
        leader = [i for i, md in st.items() if md == "leader"][0]
        serving = {"leader", "follower", "observer"}

        def settle(ok):
            """`status` until ok(modes) holds (20 s at most): a member that lost its leader
            (an observer especially) takes a moment to find the new one."""
            deadline = time.monotonic() + 20
            while True:
                res = run("status", check=False)
                st = modes(res.stdout)
                if ok(st) or time.monotonic() > deadline:
                    return res, st
                time.sleep(0.2)

        run("kill", str(leader))
        res, st = settle(lambda st: st[leader] == "down" and list(st.values()).count("leader") == 1
                         and all(md in serving for i, md in st.items() if i != leader))
        assert res.returncode == 1 and st[leader] == "down", res.stdout
        assert list(st.values()).count("leader") == 1, res.stdout
        assert all(md in serving for i, md in st.items() if i != leader), res.stdout
        run("restart", str(leader))
        res, st = settle(lambda st: set(st.values()) <= serving)
        assert res.returncode == 0 and st[leader] == "follower", res.stdout
        run("pause", "4")
        assert "paused" in run("status", check=False).stdout
        run("resume", "4")
        res = run("kill", "9", check=False)
        assert res.returncode != 0 and "no member 9" in res.stderr
        run("stop")
        st = modes(run("status", check=False).stdout)
        assert set(st.values()) == {"down"}, st
    finally:
        run("destroy", check=False)
    assert not d.exists()


def _free_cluster_base(n):
    """A base client port whose admin-guide layout (client, quorum, election ports) is all free."""
    import random
    import socket
    rnd = random.Random()
    for _ in range(200):
        base = rnd.randrange(20000, 40000)
        ports = [base + i for i in range(n)]
        ports += [base - 2181 + 2222 + 1111 * i + k for i in range(n) for k in (0, 1)]
        try:
            socks = []
            for p in ports:
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", p))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free port layout found")



def test_srvr_modes_one_leader_rest_followers(ens):
    modes = sorted(m.mode() for m in ens.members)
    assert modes == ["follower", "follower", "leader"]
    # zkpy-server status reads a member's zoo.cfg and asks it, whatever runs it.
    for m in ens.members:
        res = subprocess.run([sys.executable, "-m", "zkpy.cli.server", "status", str(m.cfg_path)],
                             capture_output=True, text=True, timeout=30, env=_cli_env())
        assert res.returncode == 0, res.stdout + res.stderr
        assert "Mode: %s" % m.mode() in res.stdout
    assert ens.leader() in ens.members and len(ens.followers()) == 2


def test_write_on_one_member_read_on_all_after_sync(ens, clients):
    base = _base()
    leader = ens.leader()
    writer_member = ens.followers()[0]        # through a follower: it forwards to the leader
    w = clients(writer_member.hosts)
    w.create(base, b"root")
    for i in range(10):
        w.create("%s/c%d" % (base, i), b"v%d" % i)
    w.set(base, b"changed")
    for m in ens.members:
        r = clients(m.hosts)
        r.sync(base)
        assert r.get(base)[0] == b"changed", m
        assert sorted(r.get_children(base)) == sorted("c%d" % i for i in range(10)), m
        assert r.get(base + "/c7")[0] == b"v7"
    assert leader.mode() == "leader"


def test_leader_kill9_under_load(ens, clients):
    base = _base()
    c = clients(ens.hosts())
    c.create(base)
    writer = Writer(c, base)
    writer.start()
    try:
        writer.wait_acks(50)
        old = ens.leader()
        t0 = time.monotonic()
        old.kill()
        new = wait_new_leader(ens, old)
        elected = time.monotonic() - t0
        _record(ens.kind, "kill -9 leader %d -> member %d leader after" % (old.sid, new.sid),
                elected)
        assert elected < 10 * SYNC_LIMIT * TICK_S, "re-election took %.1f s" % elected
        t1 = time.monotonic()
        writer.wait_acks(50)
        _record(ens.kind, "writes flowing again (50 acks) after the new leader, within",
                time.monotonic() - t1)
    finally:
        writer.stop()
    assert c.state == KazooState.CONNECTED
    writer.check_all_there(c)
    t0 = time.monotonic()
    old.start()
    assert old.wait_mode("follower", timeout=30) == "follower"
    _record(ens.kind, "old leader restarted and following after", time.monotonic() - t0)
    tree = assert_converged(ens)
    assert all(p in tree for p, _ in writer.acked)
    assert len(writer.acked) >= 100


def test_follower_kill9_writes_continue_and_it_catches_up(ens, clients):
    base = _base()
    c = clients(ens.hosts(ens.followers()[:1] + [ens.leader()]), randomize_hosts=False)
    c.create(base)
    writer = Writer(c, base)
    writer.start()
    try:
        writer.wait_acks(20)
        victim = ens.followers()[-1]
        victim.kill()
        writer.wait_acks(100)       # a majority (2 of 3) keeps committing
        assert ens.leader() is not None
    finally:
        writer.stop()
    writer.check_all_there(c)
    victim.start()
    assert victim.wait_mode("follower", timeout=30) == "follower"
    tree = assert_converged(ens)
    assert all(p in tree for p, _ in writer.acked)


def test_kill9_all_then_restart_all_keeps_data(ens, clients):
    base = _base()
    c = clients(ens.hosts())
    c.create(base, b"top")
    paths = ["%s/p%03d" % (base, i) for i in range(50)]
    for i, p in enumerate(paths):
        c.create(p, b"%d" % i)
    c.set(paths[0], b"updated")
    c.stop()
    for m in ens.members:
        m.kill()
    t0 = time.monotonic()
    for m in ens.members:
        m.start()
    ens.wait_healthy(60)
    _record(ens.kind, "all killed -9, restarted, leader elected after", time.monotonic() - t0)
    for m in ens.members:
        r = clients(m.hosts)
        r.sync(base)
        assert r.get(base)[0] == b"top"
        assert sorted(r.get_children(base)) == sorted(p.rsplit("/", 1)[1] for p in paths)
        assert r.get(paths[0])[0] == b"updated"
        assert r.get(paths[-1])[0] == b"49"
    assert_converged(ens)


def test_sigstop_leader_beyond_synclimit(ens, clients):
    base = _base()
    old = ens.leader()
    others = [m for m in ens.members if m is not old]
    c = clients(ens.hosts(others))
    c.create(base)
    t0 = time.monotonic()
    old.pause()
    try:
        new = wait_new_leader(ens, old)
        elected = time.monotonic() - t0
        _record(ens.kind, "SIGSTOP leader %d -> member %d leader after" % (old.sid, new.sid),
                elected)
        # Followers give up on a silent leader after syncLimit ticks, not before.
        assert elected >= 0.8 * SYNC_LIMIT * TICK_S, elected
        for i in range(20):
            c.create("%s/w%02d" % (base, i), b"%d" % i)
        remaining = SYNC_LIMIT * TICK_S * 1.5 - (time.monotonic() - t0)
        if remaining > 0:
            time.sleep(remaining)
    finally:
        old.resume()
    t1 = time.monotonic()
    assert old.wait_mode("follower", timeout=30) == "follower"
    _record(ens.kind, "SIGCONT old leader, following again after", time.monotonic() - t1)
    assert ens.leader() is new
    tree = assert_converged(ens)
    assert all("%s/w%02d" % (base, i) in tree for i in range(20))


def test_partition_minority_cannot_write_majority_can(ens, clients):
    base = _base()
    c0 = clients(ens.hosts())
    c0.create(base)
    minority = ens.leader()                        # the hard case: the leader is cut off
    majority = [m for m in ens.members if m is not minority]
    lone = clients(minority.hosts)                 # a client that only knows the minority
    lone.create(base + "/before", b"ok")
    t0 = time.monotonic()
    ens.isolate(minority.sid)
    try:
        new = wait_new_leader(ens, minority)
        _record(ens.kind, "leader %d isolated -> member %d leader after" % (minority.sid, new.sid),
                time.monotonic() - t0)
        deadline = time.monotonic() + 10
        while minority.mode() is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        text = minority.srvr() or ""
        assert srvr_mode(text) is None and (not text or zkservers.NOT_SERVING in text), text
        with pytest.raises((KazooException, KazooTimeoutError)):
            lone.create_async(base + "/minority", b"no").get(timeout=3)
        maj = clients(ens.hosts(majority))
        maj.create(base + "/majority", b"yes")
        maj.sync(base)
        assert maj.exists(base + "/minority") is None
        lone.stop()          # drop its queued request before the link comes back
    finally:
        ens.heal()
    assert minority.wait_mode("follower", timeout=30) == "follower"
    tree = assert_converged(ens, timeout=30)
    assert base + "/majority" in tree and base + "/before" in tree
    assert base + "/minority" not in tree


def test_concurrent_sequentials_through_different_members(ens, clients):
    base = _base()
    clients(ens.hosts()).create(base)
    per_client = 30
    results = {}
    errors = []

    def worker(m):
        c = clients(m.hosts)
        got = []
        try:
            for _ in range(per_client):
                got.append(c.create(base + "/s-", b"", sequence=True))
        except Exception as e:
            errors.append(repr(e))
        results[m.sid] = got

    threads = [threading.Thread(target=worker, args=(m,)) for m in ens.members]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    seqs = {sid: [int(p.rsplit("-", 1)[1]) for p in paths] for sid, paths in results.items()}
    for sid, s in seqs.items():
        assert len(s) == per_client
        assert s == sorted(s) and len(set(s)) == len(s), (sid, s)   # one session: increasing
    everything = sorted(n for s in seqs.values() for n in s)
    assert everything == list(range(per_client * len(ens.members)))  # unique, no gaps
    assert_converged(ens, base)


def test_session_and_ephemeral_survive_member_kill9(ens, clients):
    base = _base()
    home = ens.leader()
    others = [m for m in ens.members if m is not home]
    c = clients(ens.hosts([home] + others), randomize_hosts=False)
    c.ensure_path(base)
    c.create(base + "/eph", b"mine", ephemeral=True)
    session_id = c.client_id[0]
    assert "sid=0x%x" % session_id in home.four_letter("cons")    # connected to `home`
    st = None
    lost = threading.Event()   # kazoo saw the connection go (a read may race the kill)
    c.add_listener(lambda state: lost.set() if state != KazooState.CONNECTED else None)
    home.kill()
    t0 = time.monotonic()
    deadline = t0 + SESSION_TIMEOUT
    while time.monotonic() < deadline:
        try:
            st = c.exists_async(base + "/eph").get(timeout=2)
            if lost.is_set() and c.state == KazooState.CONNECTED:
                break
        except (KazooException, KazooTimeoutError):
            pass
        time.sleep(0.05)
    _record(ens.kind, "session failed over after kill -9 of its member, within",
            time.monotonic() - t0)
    assert c.state == KazooState.CONNECTED
    assert c.client_id[0] == session_id
    assert st is not None and st.ephemeralOwner == session_id
    other = clients(others[0].hosts)
    other.sync(base)
    assert other.exists(base + "/eph").ephemeralOwner == session_id
    home.start()
    home.wait_mode("follower", timeout=30)
    c.delete(base + "/eph")
