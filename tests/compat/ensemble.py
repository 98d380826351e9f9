"""Ensembles of real server processes for the ensemble tests (issue 6), partitioned through proxies.

`Ensemble(kind, tmpdir, servers=3, observers=0, extra_cfg=None, proxies=False)`: N members of kind
"zkpy" or "apache", each its own process, directory, zoo.cfg (server.N lines) and myid, every
port (client, quorum, election) picked free on 127.0.0.1. Members are tests/compat/servers.py's
ZkpyServer / ApacheZkServer (same command lines, env, log handling) made members by
zkpy.testing.harness's EnsembleMember (myid, a start that does not wait for a quorum) with the
ensemble's keys added to their config; the ensemble's `start()` waits for it (harness.wait_formed).

With `proxies=True`, member i reaches member j (quorum and election port) through a
zkpy.testing.proxy.Proxy of its own: member i's zoo.cfg names proxy ports in the server.j lines
(its own line keeps its real ports), so every member has its own view of the others' ports.
Apache ZooKeeper accepts that: it compares configs only on reconfig (tried: the ensemble forms,
no member rewrites its zoo.cfg or writes a dynamic config; "Dynamic reconfig is disabled, we
don't store the last seen config"). `cut(i, j)`, `isolate(i)` and `heal()` then make
partitions. Apache's election layer keeps one connection per pair, dialed by the higher id (seen
through that member's proxy); the quorum link (learner -> leader) is always dialed by the
learner through its proxy, and it decides who serves.

    ens = Ensemble("apache", tmp_path, servers=3, extra_cfg={"tickTime": 500})
    ens.start()              # every member has a Mode other than standalone, one is leader
    ens.leader(), ens.followers(), ens.member(1)  # members are numbered from 1 (their myid)
    m.kill() / m.stop() / m.start() / m.pause() / m.resume() / m.mode() / m.client_port
    ens.hosts()              # "127.0.0.1:p1,127.0.0.1:p2,..."
    ens.add_member()         # a later member (zoo.cfg: every member + itself), not started
    m.keep_config = True     # restarts keep the zoo.cfg the server rewrote (reconfig)
    ens.stop()
"""

import os

from compat import servers as zkservers
from zkpy.testing import harness
from zkpy.testing.harness import free_ports, srvr_mode  # noqa: F401 (srvr_mode: re-exported)
from zkpy.testing.proxy import Proxy, listening_ports  # noqa: F401 (listening_ports: re-exported)

ENSEMBLE_TICK_MS = 500
START_TIMEOUT = 60.0


# ---------------------------------------------------------------------------------------------
# members


class _MemberMixin(harness.EnsembleMember):
    """What an ensemble member adds to servers.py's server classes: the ensemble's keys."""

    def _init_member(self, ensemble, sid, role, peer_port, election_port):
        self.ensemble = ensemble
        self.init_member(sid, peer_port, election_port, role)

    def config(self):
        cfg = super().config()
        ens = self.ensemble
        # The ensemble's timing keys first (tickTime from extra_cfg still wins, below).
        cfg["tickTime"] = str(ENSEMBLE_TICK_MS)
        cfg["initLimit"] = "10"
        cfg["syncLimit"] = "5"
        if self.role == "observer":
            cfg["peerType"] = "observer"
        for other in ens.members:
            cfg["server.%d" % other.sid] = ens.server_line(self, other)
        return harness.merge_cfg(cfg, self.extra_cfg)   # a test's own keys win over the ensemble's

    def __repr__(self):
        return "<%s member %d %s %s>" % (self.kind, self.sid, self.hosts, self.role)


class ZkpyMember(_MemberMixin, zkservers.ZkpyServer):
    pass


class ApacheMember(_MemberMixin, zkservers.ApacheZkServer):
    pass


MEMBER_CLASSES = {"zkpy": ZkpyMember, "apache": ApacheMember}


# ---------------------------------------------------------------------------------------------
# the ensemble


EnsembleError = harness.EnsembleError


class Ensemble:
    def __init__(self, kind, tmpdir, servers=3, observers=0, extra_cfg=None, proxies=False,
                 member_cfg=None, server_jvmflags=None, java_env=None):
        """member_cfg: {sid: {key: value}} added to (or, None values, removed from) that
        member's zoo.cfg; server_jvmflags / java_env: SERVER_JVMFLAGS and conf/java.env of
        every member (a str) or per member ({sid: str})."""
        if kind not in MEMBER_CLASSES:
            raise ValueError("unknown kind %r (zkpy or apache)" % kind)
        self.kind = kind
        self.root = os.fspath(tmpdir)
        self.extra_cfg = dict(extra_cfg or {})
        total = servers + observers
        ports = free_ports(3 * total)
        self.members = []
        for i in range(total):
            sid = i + 1
            role = "observer" if sid > servers else "participant"
            cls = MEMBER_CLASSES[kind]
            m = cls(os.path.join(self.root, "zk%d" % sid), self.extra_cfg,
                    port=ports[3 * i])
            m._init_member(self, sid, role, ports[3 * i + 1], ports[3 * i + 2])
            self._member_setup(m, (member_cfg or {}).get(sid), server_jvmflags, java_env)
            self.members.append(m)
        # proxies[(i, j)] = (quorum proxy, election proxy): member i's way to member j.
        self.proxies = {}
        if proxies:
            for a in self.members:
                for b in self.members:
                    if a is b:
                        continue
                    lp, le = free_ports(2)
                    self.proxies[(a.sid, b.sid)] = (
                        Proxy(lp, b.peer_port, "proxy %d->%d quorum" % (a.sid, b.sid)),
                        Proxy(le, b.election_port, "proxy %d->%d election" % (a.sid, b.sid)))

    @staticmethod
    def _member_setup(m, cfg, server_jvmflags, java_env):
        if cfg:
            m.extra_cfg.update(cfg)
        if isinstance(server_jvmflags, dict):
            server_jvmflags = server_jvmflags.get(m.sid)
        if isinstance(java_env, dict):
            java_env = java_env.get(m.sid)
        if server_jvmflags is not None:
            m.server_jvmflags = server_jvmflags
        if java_env is not None:
            m.java_env = java_env

    def add_member(self, role="participant", extra_cfg=None, server_jvmflags=None,
                   java_env=None):
        """A new member with the next myid (not started): its zoo.cfg lists every member and
        itself; the others' zoo.cfg files are left as they are (set their keep_config first if
        they are restarted later). Not with proxies."""
        if self.proxies:
            raise RuntimeError("add_member() does not set up proxies")
        sid = len(self.members) + 1
        port, peer, election = free_ports(3)
        m = MEMBER_CLASSES[self.kind](os.path.join(self.root, "zk%d" % sid), self.extra_cfg,
                                      port=port)
        m._init_member(self, sid, role, peer, election)
        self._member_setup(m, extra_cfg, server_jvmflags, java_env)
        self.members.append(m)
        return m

    # -- configuration ----------------------------------------------------------------------
    def server_line(self, viewer, member):
        """The value of `server.<member>` in viewer's zoo.cfg."""
        if viewer is member or (viewer.sid, member.sid) not in self.proxies:
            peer, election = member.peer_port, member.election_port
        else:
            qp, ep = self.proxies[(viewer.sid, member.sid)]
            peer, election = qp.listen_port, ep.listen_port
        return harness.server_line(peer, election, member.role == "observer")

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self, timeout=START_TIMEOUT):
        """Start every member, wait until each has a quorum Mode and one is leader."""
        try:
            for m in self.members:
                if not m.running():
                    m.start()
            self.wait_healthy(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def wait_healthy(self, timeout=START_TIMEOUT, members=None):
        """Wait until every member reports leader/follower/observer, exactly one leader."""
        return harness.wait_formed(members or self.members, timeout, self.members)

    def stop(self):
        for m in self.members:
            try:
                m.stop()
            except Exception:
                m.kill()
        for pair in self.proxies.values():
            for p in pair:
                p.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- members ------------------------------------------------------------------------------
    def member(self, i):
        """Member with myid i (1-based)."""
        return self.members[i - 1]

    def leader(self, timeout=0.0):
        """The member whose srvr says Mode: leader (waits up to `timeout` for one), or None."""
        return harness.find_leader(self.members, timeout)

    def followers(self):
        return [m for m in self.members if m.mode() == "follower"]

    def participants(self):
        return [m for m in self.members if m.role == "participant"]

    def hosts(self, members=None):
        return ",".join(m.hosts for m in (members or self.members))

    # -- partitions ---------------------------------------------------------------------------
    def _require_proxies(self):
        if not self.proxies:
            raise RuntimeError("this ensemble was built without proxies=True")

    def cut(self, i, j):
        """Cut the links between members i and j, both ways (quorum and election ports)."""
        self._require_proxies()
        for a, b in ((i, j), (j, i)):
            for p in self.proxies[(a, b)]:
                p.cut()

    def isolate(self, i):
        """Cut member i off from every other member."""
        self._require_proxies()
        for m in self.members:
            if m.sid != i:
                self.cut(i, m.sid)

    def heal(self):
        for pair in self.proxies.values():
            for p in pair:
                p.heal()

    # -- inspection ---------------------------------------------------------------------------
    def modes(self):
        return {m.sid: m.mode() for m in self.members}

    def log_tails(self, lines=25):
        return harness.log_tails(self.members, lines)

    def __repr__(self):
        return "<Ensemble %s %s>" % (self.kind, self.hosts())


# --- shared by the ensemble test files ---------------------------------------------------------

SESSION_TIMEOUT = 8.0           # s; Apache caps it at 20 ticks (of ENSEMBLE_TICK_MS) = 10 s


def restore(ens, request, keep_config=False):
    """The state every test starts from: all members running and unpaused, links healed, one
    leader. Tells conftest whose logs to attach when the test fails."""
    request.node._zk_servers = list(ens.members)
    ens.heal()
    for m in ens.members:
        if keep_config:
            m.keep_config = True
        if m.paused:
            m.resume()
        if not m.running():
            m.start()
    ens.wait_healthy(30)
    return ens


class KazooClients(object):
    """clients(hosts, **kw) -> a started KazooClient; close() stops and closes them all."""

    def __init__(self, session_timeout=SESSION_TIMEOUT):
        self.session_timeout = session_timeout
        self.made = []

    def __call__(self, hosts, start_timeout=15.0, **kw):
        from kazoo.client import KazooClient
        kw.setdefault("timeout", self.session_timeout)
        c = KazooClient(hosts=hosts, **kw)
        self.made.append(c)
        c.start(timeout=start_timeout)
        return c

    def close(self):
        for c in self.made:
            try:
                c.stop()
            except Exception:  # noqa: BLE001 - a client of a killed member
                pass
            c.close()
