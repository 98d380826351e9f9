"""Ensemble faults beyond test_ensemble.py: 5 voters + an observer losing and regaining a quorum,
read-only mode, rolling kill -9 under load, a follower synced by SNAP, an old leader's
uncommitted proposal cut off by TRUNC, and an ensemble across network namespaces.

Parametrized over the selected targets (ZKPY_TEST_TARGETS / --zk-targets) as `ens_kind`, like
test_ensemble.py; Apache ZooKeeper 3.8 passes every case for real. Each test that needs its own
shape (5 + 1, read-only, netns) builds its ensemble; the rolling-crash, SNAP and TRUNC tests
share one 3-member ensemble with proxies (`ens`, healed and restarted before each test).
"""

import os
import re
import shutil
import subprocess
import time
import uuid

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import KazooException, NoNodeError, NotReadOnlyCallError
from kazoo.handlers.threading import KazooTimeoutError
from kazoo.protocol.states import KeeperState

from compat import servers as zkservers
from compat.ensemble import (ENSEMBLE_TICK_MS, SESSION_TIMEOUT, Ensemble, KazooClients,
                             listening_ports, restore, srvr_mode)
from compat.test_ensemble import Writer, wait_new_leader
from conftest import selected_targets
from compat.servers import free_port
from zkpy.testing import ensemble as zkensemble
from zkpy.testing import harness

TICK_S = ENSEMBLE_TICK_MS / 1000.0
SYNC_LIMIT = 5

pytestmark = pytest.mark.timeout(150)


# test name -> the zkpy bug that makes its zkpy case fail (xfail strict: a fix shows up as XPASS)
ZKPY_XFAIL = {}


def pytest_generate_tests(metafunc):
    if "ens_kind" in metafunc.fixturenames:
        kinds = selected_targets(metafunc.config)
        bug = ZKPY_XFAIL.get(metafunc.function.__name__)

        def marks(kind):
            if kind == "zkpy" and bug:
                return [pytest.mark.xfail(strict=True, reason=bug)]
            return []

        metafunc.parametrize("ens_kind", [pytest.param(k, id=k, marks=marks(k)) for k in kinds],
                             indirect=True, scope="module")


def _record(kind, what, seconds):
    print("%s: %s %.2f s" % (kind, what, seconds))


# --- fixtures --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ens_kind(request):
    reason = zkservers.UNAVAILABLE[request.param]()
    if reason:
        pytest.skip(reason)
    return request.param


@pytest.fixture
def make_ensemble(tmp_path, request):
    """make_ensemble(kind, **Ensemble kwargs) -> a started ensemble, stopped after the test."""
    made = []

    def factory(kind, **kw):
        e = Ensemble(kind, tmp_path / ("ens%d" % len(made)), **kw)
        made.append(e)
        request.node._zk_servers = list(e.members)
        return e.start()

    yield factory
    for e in made:
        e.stop()


@pytest.fixture(scope="module")
def module_ensemble(ens_kind, tmp_path_factory):
    # zkpy's logs roll at 256 KiB (ZooKeeper's txnLogSizeLimitInKb), and its leaders keep
    # ZooKeeper's default 500 txns in memory for DIFF syncs (commitLogCount; zkpy's own default
    # is 100000), so the SNAP test below pushes a lagging follower out of that history quickly.
    extra = {"txnLogSizeLimitInKb": "256", "commitLogCount": "500"} \
        if ens_kind == "zkpy" else None
    ensemble = Ensemble(ens_kind, tmp_path_factory.mktemp("%s-faults" % ens_kind), servers=3,
                        extra_cfg=extra)
    ensemble.start()
    yield ensemble
    ensemble.stop()


@pytest.fixture
def ens(module_ensemble, request):
    yield restore(module_ensemble, request)


@pytest.fixture
def clients():
    """clients(hosts, **kw) -> a started KazooClient, stopped and closed after the test."""
    made = KazooClients(SESSION_TIMEOUT)
    yield made
    made.close()


# --- helpers ---------------------------------------------------------------------------------

def _base():
    return "/f-" + uuid.uuid4().hex[:8]


def full_tree(hosts, timeout=15.0):
    """{path: (data, czxid, mzxid, pzxid, version, cversion, numChildren, ephemeralOwner)} of the
    whole tree but /zookeeper, through a client connected to `hosts` only, after a sync; read
    level by level with async calls (thousands of nodes)."""
    c = KazooClient(hosts=hosts, timeout=SESSION_TIMEOUT)
    c.start(timeout=timeout)
    try:
        c.sync("/")
        out = {}
        level = ["/"]
        while level:
            gets = [(p, c.get_async(p), c.get_children_async(p)) for p in level]
            level = []
            for path, g, k in gets:
                try:
                    data, st = g.get(timeout=30)
                    kids = k.get(timeout=30)
                except NoNodeError:
                    continue
                out[path] = (data, st.czxid, st.mzxid, st.pzxid, st.version, st.cversion,
                             st.numChildren, st.ephemeralOwner)
                assert st.numChildren == len(kids), path
                level.extend(path.rstrip("/") + "/" + kid for kid in kids
                             if path.rstrip("/") + "/" + kid != "/zookeeper")
        return out
    finally:
        c.stop()
        c.close()


def assert_identical_trees(members, timeout=30.0):
    """Every member holds the identical tree (retried: a rejoined member may still catch up)."""
    deadline = time.monotonic() + timeout
    while True:
        trees = {m.sid: full_tree(m.hosts) for m in members}
        first = trees[members[0].sid]
        diff = {sid: sorted(set(t.items()) ^ set(first.items()))[:4]
                for sid, t in trees.items() if t != first}
        if not diff:
            return first
        if time.monotonic() > deadline:
            pytest.fail("member trees differ from member %d's (%d nodes): %s"
                        % (members[0].sid, len(first), diff))
        time.sleep(0.5)


def not_serving(member):
    text = member.srvr(timeout=2.0) or ""
    return srvr_mode(text) is None and (not text or zkservers.NOT_SERVING in text)


def wait_until(cond, timeout, what, interval=0.1):
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            pytest.fail("not %s after %.0f s" % (what, timeout))
        time.sleep(interval)


def cannot_connect(hosts, **kw):
    c = KazooClient(hosts=hosts, timeout=SESSION_TIMEOUT, **kw)
    try:
        c.start(timeout=3)
    except KazooTimeoutError:
        return True
    finally:
        c.stop()
        c.close()
    return False


# A member's log line once the election is over and it starts to sync with the leader, and the
# line once it is synced.
FOLLOWING_STARTS = {"zkpy": re.compile(r"I am FOLLOWING"),
                    "apache": re.compile(r"FOLLOWING - LEADER ELECTION TOOK")}
SYNC_DONE = {"zkpy": re.compile(r"FOLLOWING leader \d+ in epoch"),
             "apache": re.compile(r"Learner received UPTODATE message")}


class LogTail:
    """A member's log output from byte `mark` on, read incrementally (polled every few ms)."""

    def __init__(self, member, mark):
        self.f = open(member.log_path, "rb")
        self.f.seek(mark)
        self.text = ""

    def read(self):
        self.text += self.f.read().decode(errors="replace")
        return self.text


def start_no_wait(m):
    """Start a member's process without waiting for its client port (servers.py's start does)."""
    m.spawn("(no wait) ")


def bulk(c, base, n, prefix="n"):
    """n creates under base, pipelined 500 at a time; returns the paths."""
    paths = ["%s/%s%05d" % (base, prefix, i) for i in range(n)]
    for i in range(0, n, 500):
        for a in [c.create_async(p, b"v%d" % j) for j, p in enumerate(paths[i:i + 500], i)]:
            a.get(timeout=30)
    return paths


# --- 1. five voters and an observer ----------------------------------------------------------

def test_five_voters_one_observer_quorum_loss_and_return(ens_kind, make_ensemble, clients):
    e = make_ensemble(ens_kind, servers=5, observers=1)
    observer = e.member(6)
    assert "Mode: observer" in (observer.srvr() or "")
    modes = sorted(e.modes().values())
    assert modes == ["follower"] * 4 + ["leader", "observer"], modes
    leader = e.leader()
    followers = e.followers()
    base = _base()
    via_obs = clients(observer.hosts)
    via_obs.create(base, b"from-observer")
    for i, f in enumerate(followers):
        clients(f.hosts).create("%s/f%d" % (base, i), b"%d" % f.sid)
    via_obs.set(base, b"set-via-observer")
    for m in e.members:
        r = clients(m.hosts)
        r.sync(base)
        assert r.get(base)[0] == b"set-via-observer", m
        assert sorted(r.get_children(base)) == ["f%d" % i for i in range(4)], m

    # Two followers down: 3 of 5 voters remain, a quorum.
    for f in followers[:2]:
        f.kill()
    alive = [m for m in e.members if m.running()]
    c = clients(e.hosts(alive))
    c.create(base + "/after-two", b"ok")
    via_obs.create(base + "/after-two-obs", b"ok")
    assert leader.mode() == "leader"

    # A third voter down: 2 voters + the observer run, 3 of 6 processes, no quorum of voters.
    t0 = time.monotonic()
    followers[2].kill()
    wait_until(lambda: all(not_serving(m) for m in e.members if m.running()), 20,
               "every survivor refusing to serve")
    _record(ens_kind, "third voter killed -> no member serving after", time.monotonic() - t0)
    with pytest.raises((KazooException, KazooTimeoutError)):
        c.create_async(base + "/no-quorum", b"x").get(timeout=3)
    c.stop()            # drop its queued request before a quorum comes back
    assert cannot_connect(e.hosts([leader, observer, followers[3]]))
    # The observer's vote never makes the third: still nobody serves a while later.
    time.sleep(3)
    assert all(not_serving(m) for m in (leader, observer, followers[3]))
    assert [m.sid for m in e.members if m.running()] == sorted(
        [leader.sid, observer.sid, followers[3].sid])

    t0 = time.monotonic()
    followers[0].start()
    e.wait_healthy(40, members=[m for m in e.members if m.running()])
    _record(ens_kind, "one voter restarted -> quorum again after", time.monotonic() - t0)
    w = clients(e.hosts([m for m in e.members if m.running()]))
    w.create(base + "/back", b"ok")
    via_obs2 = clients(observer.hosts)
    via_obs2.create(base + "/back-obs", b"ok")
    via_obs2.sync(base)
    kids = set(via_obs2.get_children(base))
    assert {"after-two", "after-two-obs", "back", "back-obs"} <= kids
    assert "no-quorum" not in kids


# --- 2. read-only mode -----------------------------------------------------------------------

def test_read_only_mode_survivor(ens_kind, make_ensemble, clients):
    # localSessionsEnabled: Apache 3.8's read-only server answers a new client's createSession
    # with NOTREADONLY unless sessions can be local (tried: a 16-byte error reply, which kazoo
    # cannot parse, "invalid server response"); zkpy grants it either way.
    e = make_ensemble(ens_kind, servers=3,
                      extra_cfg={"readonlymode.enabled": "true", "localSessionsEnabled": "true"})
    base = _base()
    c = clients(e.hosts())
    c.create(base, b"before")
    c.create(base + "/kid", b"k")
    survivor = e.followers()[0]
    others = [m for m in e.members if m is not survivor]
    c.stop()
    t0 = time.monotonic()
    for m in others:
        m.kill()
    wait_until(lambda: survivor.four_letter("isro", timeout=2) == "ro", 30,
               "isro 'ro' on the survivor")
    _record(ens_kind, "two killed -> survivor read-only after", time.monotonic() - t0)

    ro = clients(e.hosts([survivor] + others), read_only=True, randomize_hosts=False,
                 start_timeout=20)
    assert ro.client_state == KeeperState.CONNECTED_RO
    assert ro.get(base)[0] == b"before"
    assert ro.get_children(base) == ["kid"]
    with pytest.raises(NotReadOnlyCallError):
        ro.create(base + "/ro-write", b"no")
    with pytest.raises(NotReadOnlyCallError):
        ro.set(base, b"no")
    assert cannot_connect(survivor.hosts)

    t0 = time.monotonic()
    for m in others:
        m.start()
    e.wait_healthy(40)
    wait_until(lambda: survivor.four_letter("isro", timeout=2) == "rw", 30,
               "isro 'rw' on the survivor")
    wait_until(lambda: ro.client_state == KeeperState.CONNECTED, 60,
               "the read-only client connected read-write", interval=0.2)
    _record(ens_kind, "two restarted -> read-only client connected rw after",
            time.monotonic() - t0)
    ro.retry(ro.create, base + "/rw-write", b"yes")
    ro.sync(base)
    assert sorted(ro.get_children(base)) == ["kid", "rw-write"]


# --- 3. rolling crash under load -------------------------------------------------------------

def test_rolling_kill9_under_load_then_all(ens, clients):
    base = _base()
    c = clients(ens.hosts())
    c.create(base)
    c.create(base + "-bulk")
    writer = Writer(c, base, pause=0.002)
    writer.start()
    try:
        writer.wait_acks(100)
        victim = ens.followers()[0]
        victim.kill()
        writer.wait_acks(200)
        bulk(c, base + "-bulk", 3000)  # a backlog that takes the victim a while to sync
        # Restart it and kill -9 it again as soon as it has found the leader, while it syncs.
        mark = os.path.getsize(victim.log_path)
        start_no_wait(victim)
        tail = LogTail(victim, mark)
        wait_until(lambda: FOLLOWING_STARTS[ens.kind].search(tail.read()), 30,
                   "member %d finding the leader" % victim.sid, interval=0.002)
        victim.kill()
        synced = SYNC_DONE[ens.kind].search(tail.read())
        tail.f.close()
        print("%s: victim %d killed -9 right after it found the leader (synced before the "
              "kill, by its log: %s)" % (ens.kind, victim.sid, bool(synced)))
        writer.wait_acks(200)
        victim.start()
        assert victim.wait_mode("follower", timeout=30) == "follower"
        writer.wait_acks(200)
        t0 = time.monotonic()
        for m in ens.members:
            m.kill()
        for m in ens.members:
            m.start()
        ens.wait_healthy(60)
        _record(ens.kind, "all killed -9 under load, restarted, healthy after",
                time.monotonic() - t0)
        writer.wait_acks(200, timeout=60)
    finally:
        writer.stop()
    assert not writer.unexpected, writer.unexpected
    print("%s: %d writes acknowledged, %d failed" % (ens.kind, len(writer.acked), writer.failed))
    tree = assert_identical_trees(ens.members)
    missing = [p for p, _ in writer.acked if p not in tree]
    assert not missing, "acknowledged writes lost: %s" % missing[:10]
    wrong = [p for p, v in writer.acked if tree[p][0] != v]
    assert not wrong, wrong[:10]
    assert tree[base][6] == len([p for p in tree if p.startswith(base + "/")])


# --- 4. SNAP and TRUNC -----------------------------------------------------------------------

def test_lagging_follower_synced_by_snap(ens, clients):
    base = _base()
    leader = ens.leader()
    lagger, other = [m for m in ens.members if m is not leader]
    c = clients(ens.hosts([leader, other]))
    c.create(base, b"0")
    lagger.stop()
    t0 = time.monotonic()
    paths = bulk(c, base, 3000)
    for p in paths[:300]:
        c.delete_async(p)
    for p in paths[300:600]:
        c.set_async(p, b"changed")
    c.set(base, b"1")
    _record(ens.kind, "writes behind the stopped follower done after", time.monotonic() - t0)
    c.stop()
    leader.stop()                 # its history now comes from its log files
    leader.start()
    new_leader = ens.wait_healthy(40, members=[leader, other])
    mark = len(new_leader.log_text())
    t0 = time.monotonic()
    lagger.start()
    assert lagger.wait_mode("follower", timeout=40) == "follower"
    _record(ens.kind, "lagging follower synced after", time.monotonic() - t0)
    text = new_leader.log_text()[mark:]
    if ens.kind == "zkpy":
        assert "syncing learner %d by SNAP" % lagger.sid in text, text[-3000:]
    else:                         # what Apache chose (its committedLog / txnlog rules), shown
        print("apache: leader %d: %s" % (new_leader.sid, re.findall(
            r"Sending (?:snapshot|DIFF|TRUNC|SNAP)[^\n]*", text)[-1:]))
    tree = assert_identical_trees([new_leader, lagger, other])
    assert tree[base][0] == b"1"
    assert paths[0] not in tree and tree[paths[400]][0] == b"changed"


def test_old_leader_uncommitted_proposal_truncated(ens_kind, make_ensemble, clients):
    # Its own ensemble: the module's has no proxies.
    ens = make_ensemble(ens_kind, servers=3, proxies=True)
    base = _base()
    old = ens.leader()
    followers = [m for m in ens.members if m is not old]
    c0 = clients(ens.hosts())
    c0.create(base, b"")
    lone = clients(old.hosts)            # a client on the leader only
    lone.create(base + "/committed", b"ok")
    old_mark = len(old.log_text())
    # The followers' quorum links to the leader go silent: the leader's proposal (and the
    # followers' acks) are held in the proxies, never delivered.
    quorum_links = [ens.proxies[(f.sid, old.sid)][0] for f in followers]
    for p in quorum_links:
        p.stall()
    try:
        pending = lone.create_async(base + "/uncommitted", b"lost")
        time.sleep(1.0)                  # logged by the leader, no ack: not committed
        assert not pending.ready(), "a write committed without a quorum"
        old.kill()
        for p in quorum_links:
            p.cut()                      # drops what they held; the followers see the link go
    finally:
        for p in quorum_links:
            p.unstall()
    new = wait_new_leader(ens, old)
    with pytest.raises((KazooException, KazooTimeoutError)):
        pending.get(timeout=10)
    lone.stop()
    ens.heal()
    c1 = clients(ens.hosts(followers))
    c1.create(base + "/new-epoch", b"ok")
    old.start()
    assert old.wait_mode("follower", timeout=40) == "follower"
    tree = assert_identical_trees(ens.members)
    assert base + "/committed" in tree and base + "/new-epoch" in tree
    assert base + "/uncommitted" not in tree
    if ens.kind == "zkpy":
        text = old.log_text()[old_mark:]
        assert "TRUNC: dropping my txns after" in text, text[-3000:]
        assert "syncing learner %d by TRUNC" % old.sid in new.log_text()


def test_restarted_member_keeps_its_server_lines(ens_kind, make_ensemble, clients):
    """Members with their own views of the others' ports (the proxies): a follower killed and
    restarted keeps its zoo.cfg's server lines and rejoins (Apache: "Dynamic reconfig is
    disabled, we don't store the last seen config"). zkpy's working tree before a1bc6c3 adopted
    the first leader's view from /zookeeper/config at startup and never rejoined."""
    ens = make_ensemble(ens_kind, servers=3, proxies=True)
    c = clients(ens.hosts())
    c.create(_base(), b"x")
    victim = ens.followers()[0]
    victim.kill()
    victim.start()
    assert victim.wait_mode("follower", timeout=12) == "follower"
    if ens_kind == "zkpy":       # its own election port (Apache logs nothing to compare)
        assert victim.election_port in listening_ports()


# --- 5. across network namespaces ------------------------------------------------------------

def _ip(*args):
    return subprocess.run(["ip"] + list(args), capture_output=True, text=True, timeout=10)


class _Netns:
    """A bridge in the root namespace and one namespace per member on a veth pair to it."""

    def __init__(self, n):
        tag = uuid.uuid4().hex[:4]
        self.subnet = 1 + int(tag[:2], 16) % 250
        self.bridge = "zkpyb" + tag
        self.names = ["zkpyns%s%d" % (tag, i + 1) for i in range(n)]
        self.veths = ["zkpyv%s%d" % (tag, i + 1) for i in range(n)]
        self.addrs = ["10.77.%d.%d" % (self.subnet, i + 1) for i in range(n)]
        self.made_ns = []
        self.made_links = []

    def run(self, *args):
        res = _ip(*args)
        if res.returncode != 0:
            raise OSError("ip %s: %s" % (" ".join(args), (res.stderr or res.stdout).strip()))
        return res

    def setup(self):
        self.run("link", "add", self.bridge, "type", "bridge")
        self.made_links.append(self.bridge)
        self.run("addr", "add", "10.77.%d.254/24" % self.subnet, "dev", self.bridge)
        self.run("link", "set", self.bridge, "up")
        for ns, veth, addr in zip(self.names, self.veths, self.addrs):
            self.run("netns", "add", ns)
            self.made_ns.append(ns)
            self.run("link", "add", veth, "type", "veth", "peer", "name", veth + "p")
            self.made_links.append(veth)
            self.run("link", "set", veth + "p", "netns", ns)
            self.run("link", "set", veth, "master", self.bridge)
            self.run("link", "set", veth, "up")
            self.run("netns", "exec", ns, "ip", "addr", "add", addr + "/24", "dev", veth + "p")
            self.run("netns", "exec", ns, "ip", "link", "set", veth + "p", "up")
            self.run("netns", "exec", ns, "ip", "link", "set", "lo", "up")

    def cleanup(self):
        for link in reversed(self.made_links):
            _ip("link", "del", link)
        for ns in self.made_ns:
            _ip("netns", "del", ns)


class _NsMember(zkensemble.EnsembleMember, harness.ServerProcess):
    """One member in its own namespace: zoo.cfg with its own address, started by ip netns exec."""

    def __init__(self, kind, root, sid, ns, addr, peers, port):
        super().__init__(root, port=port)
        self.kind, self.ns, self.host, self.peers = kind, ns, addr, peers
        self.init_member(sid, None, None)
        self._plain = zkservers.make_server(kind, root / "unused")   # its command and env

    def config(self):
        cfg = {"tickTime": str(ENSEMBLE_TICK_MS), "initLimit": "10", "syncLimit": "5",
               "dataDir": str(self.data_dir), "clientPort": str(self.port),
               "clientPortAddress": self.host, "4lw.commands.whitelist": "*",
               "admin.enableServer": "false"}
        for sid, addr, peer, election in self.peers:
            cfg["server.%d" % sid] = harness.server_line(peer, election, host=addr)
        return cfg

    def command(self):
        return ["ip", "netns", "exec", self.ns] + self._plain.command()[:-1] + [str(self.cfg_path)]

    def env(self):
        return self._plain.env()

    def start(self):
        self.spawn()


@pytest.fixture
def netns():
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("network namespaces need root and iproute2's ip")
    probe = "zkpyprobe" + uuid.uuid4().hex[:4]
    res = _ip("netns", "add", probe)
    if res.returncode != 0:
        pytest.skip("ip netns add %s failed: %s" % (probe, (res.stderr or res.stdout).strip()))
    _ip("netns", "del", probe)
    net = _Netns(3)
    try:
        try:
            net.setup()
        except OSError as e:
            pytest.skip("network namespaces not usable here: %s" % e)
        yield net
    finally:
        net.cleanup()


def test_ensemble_across_network_namespaces(ens_kind, netns, tmp_path):
    ports = [(free_port(), free_port(), free_port()) for _ in netns.addrs]
    peers = [(i + 1, addr, ports[i][1], ports[i][2]) for i, addr in enumerate(netns.addrs)]
    members = [_NsMember(ens_kind, tmp_path / ("zk%d" % (i + 1)), i + 1, netns.names[i], addr,
                         peers, ports[i][0]) for i, addr in enumerate(netns.addrs)]

    def modes():
        return {m.sid: m.mode() for m in members}

    def wait_formed(live, timeout):
        return zkensemble.wait_formed(live, timeout, members)

    clients_made = []
    try:
        for m in members:
            m.start()
        leader = wait_formed(members, 60)
        assert sorted(modes().values()) == ["follower", "follower", "leader"]
        hosts = ",".join(m.hosts for m in members)
        c = KazooClient(hosts=hosts, timeout=SESSION_TIMEOUT)
        clients_made.append(c)
        c.start(timeout=15)
        c.create("/netns", b"across")
        for m in members:
            r = KazooClient(hosts=m.hosts, timeout=SESSION_TIMEOUT)
            clients_made.append(r)
            r.start(timeout=15)
            r.sync("/netns")
            assert r.get("/netns")[0] == b"across"
            # The member's peers are connected on their namespace addresses.
        t0 = time.monotonic()
        leader.kill()
        rest = [m for m in members if m is not leader]
        new = wait_formed(rest, 30)
        _record(ens_kind, "netns: kill -9 leader %d -> member %d leader after"
                % (leader.sid, new.sid), time.monotonic() - t0)
        c.retry(c.set, "/netns", b"after")
        leader.start()
        wait_formed(members, 40)
        r = KazooClient(hosts=leader.hosts, timeout=SESSION_TIMEOUT)
        clients_made.append(r)
        r.start(timeout=15)
        r.sync("/netns")
        assert r.get("/netns")[0] == b"after"
    finally:
        for cl in clients_made:
            try:
                cl.stop()
                cl.close()
            except Exception:
                pass
        for m in members:
            m.kill()
