"""Ensembles of real server processes on 127.0.0.1: zkpy's or Apache ZooKeeper's, N members of one
kind, formed, inspected, crashed and partitioned.

Owns `Ensemble`, the one ensemble class of the tests, the benchmarks (zkpy-bench's ensemble3
topology and failover) and zkpy-cluster (which writes its members' zoo.cfg with it), and its
members: `EnsembleMember` (what a member adds to a zkpy.testing.harness server: myid, quorum
and election ports, role, the ensemble's zoo.cfg keys, a start that waits only for the client
port) on `ZkpyMember` and `ApacheMember`; `wait_formed` and `find_leader`.

    ens = Ensemble("apache", root, servers=3, tick_ms=500, extra_cfg={...})
    ens.start()              # every member has a Mode other than standalone, one is leader
    ens.leader(), ens.followers(), ens.member(1)  # members are numbered from 1 (their myid)
    m.kill() / m.stop() / m.start() / m.pause() / m.resume() / m.mode() / m.client_port
    ens.hosts()              # "127.0.0.1:p1,127.0.0.1:p2,..."
    ens.add_member()         # a later member (zoo.cfg: every member + itself), not started
    m.keep_config = True     # restarts keep the zoo.cfg the server rewrote (reconfig)
    ens.stop()

Member i lives in root/zk<i> (zoo.cfg, data/myid, server.log). Its zoo.cfg is the harness's
(the server's keys, `defaults`), then the ensemble's keys (tickTime, initLimit, syncLimit,
peerType, one server.N line per member), then the member's `extra_cfg`, which wins. Every port
(client, quorum, election) is picked free unless `ports` names them.

With `proxies=True`, member i reaches member j (quorum and election port) through a
zkpy.testing.proxy.Proxy of its own: member i's zoo.cfg names proxy ports in the server.j lines
(its own line keeps its real ports), so every member has its own view of the others' ports.
Apache ZooKeeper accepts that: it compares configs only on reconfig (tried: the ensemble forms,
no member rewrites its zoo.cfg or writes a dynamic config; "Dynamic reconfig is disabled, we
don't store the last seen config"). `cut(i, j)`, `isolate(i)` and `heal()` then make
partitions. Apache's election layer keeps one connection per pair, dialed by the higher id (seen
through that member's proxy); the quorum link (learner -> leader) is always dialed by the
learner through its proxy, and it decides who serves.

Imports zkpy.testing.harness and zkpy.testing.proxy only: never pytest, kazoo or zkpy.bench.
It does I/O freely (processes, sockets, files).
"""

import os
import time

from zkpy.testing import harness
from zkpy.testing.harness import free_ports, log_tails
from zkpy.testing.proxy import Proxy

START_TIMEOUT = 60.0


class EnsembleError(harness.ServerError):
    """An ensemble did not form: a member exited, ran standalone, or no leader in time."""


class EnsembleMember:
    """What a member adds to a harness server (mixed in before it): its myid, quorum and
    election ports, its role, its ensemble's zoo.cfg keys, dataDir/myid, and a start that
    returns once the client port answers (a member alone cannot serve). With keep_config, a
    start keeps the zoo.cfg the server has (after a reconfig it rewrote it to point at its
    zoo.cfg.dynamic.<version>)."""

    keep_config = False
    ensemble = None

    def init_member(self, sid, peer_port, election_port, role="participant", ensemble=None):
        self.sid = sid
        self.peer_port = peer_port
        self.election_port = election_port
        self.role = role                 # "participant" or "observer"
        self.ensemble = ensemble
        return self

    @property
    def what(self):
        return "%s member %d" % (self.kind, self.sid)

    @property
    def client_port(self):
        return self.port

    def config(self):
        cfg = super().config()
        if self.ensemble is not None:
            cfg.update(self.ensemble.ensemble_cfg(self))
        return harness.merge_cfg(cfg, self.extra_cfg)   # the member's own keys win

    def write_config(self):
        if not (self.keep_config and self.cfg_path.exists()):
            super().write_config()
        harness.write_myid(self.data_dir, self.sid)

    def ready(self, timeout):
        self._wait(timeout, self._answering, "not answering", interval=0.05)

    def __repr__(self):
        return "<%s member %d %s %s>" % (self.kind, self.sid, self.hosts, self.role)


class ZkpyMember(EnsembleMember, harness.ZkpyServer):
    pass


class ApacheMember(EnsembleMember, harness.ApacheServer):
    pass


MEMBER_CLASSES = {"zkpy": ZkpyMember, "apache": ApacheMember}


class Ensemble:
    """N members of one kind (see the module doc). extra_cfg: zoo.cfg keys of every member;
    member_cfg: {sid: {key: value}} added to (or, None values, removed from) that member's;
    server_jvmflags / java_env: SERVER_JVMFLAGS and conf/java.env of every member (a str) or
    per member ({sid: str}); ports: 3 per member (client, quorum, election), in myid order;
    server_kw: what else every member's server class takes (defaults, jvm_opts, ...)."""

    def __init__(self, kind, root, servers=3, observers=0, extra_cfg=None, member_cfg=None,
                 tick_ms=2000, init_limit=10, sync_limit=5, ports=None, proxies=False,
                 server_jvmflags=None, java_env=None, **server_kw):
        if kind not in MEMBER_CLASSES:
            raise ValueError("unknown kind %r (zkpy or apache)" % kind)
        self.kind = kind
        self.root = os.fspath(root)
        self.extra_cfg = dict(extra_cfg or {})
        self.tick_ms = tick_ms
        self.init_limit = init_limit
        self.sync_limit = sync_limit
        self.server_kw = server_kw
        total = servers + observers
        ports = list(ports or free_ports(3 * total))
        if len(ports) != 3 * total:
            raise ValueError("%d ports for %d members: 3 each" % (len(ports), total))
        self.members = []
        for i in range(total):
            role = "observer" if i >= servers else "participant"
            self._add(role, ports[3 * i:3 * i + 3], (member_cfg or {}).get(i + 1),
                      server_jvmflags, java_env)
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

    def _add(self, role, ports, cfg, server_jvmflags, java_env):
        sid = len(self.members) + 1
        client, peer, election = ports
        if isinstance(server_jvmflags, dict):
            server_jvmflags = server_jvmflags.get(sid)
        if isinstance(java_env, dict):
            java_env = java_env.get(sid)
        m = MEMBER_CLASSES[self.kind](os.path.join(self.root, "zk%d" % sid), self.extra_cfg,
                                      port=client, server_jvmflags=server_jvmflags,
                                      java_env=java_env, **self.server_kw)
        m.init_member(sid, peer, election, role, self)
        m.extra_cfg.update(cfg or {})
        self.members.append(m)
        return m

    def add_member(self, role="participant", extra_cfg=None, server_jvmflags=None,
                   java_env=None):
        """A new member with the next myid (not started): its zoo.cfg lists every member and
        itself; the others' zoo.cfg files are left as they are (set their keep_config first if
        they are restarted later). Not with proxies."""
        if self.proxies:
            raise RuntimeError("add_member() does not set up proxies")
        return self._add(role, free_ports(3), extra_cfg, server_jvmflags, java_env)

    # -- configuration ----------------------------------------------------------------------
    def ensemble_cfg(self, member):
        """The zoo.cfg keys the ensemble gives `member` (its own extra_cfg still wins)."""
        cfg = {"tickTime": str(self.tick_ms), "initLimit": str(self.init_limit),
               "syncLimit": str(self.sync_limit)}
        if member.role == "observer":
            cfg["peerType"] = "observer"
        for other in self.members:
            cfg["server.%d" % other.sid] = self.server_line(member, other)
        return cfg

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
        """Start every member, wait until each has a quorum Mode and one is leader; stops them
        all when that fails."""
        try:
            for m in self.members:
                if not m.running():
                    m.start(timeout)
            self.wait_healthy(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def wait_healthy(self, timeout=START_TIMEOUT, members=None):
        """Wait until every one of `members` (default all) reports leader/follower/observer,
        exactly one leader; returns the leader (wait_formed)."""
        return wait_formed(members or self.members, timeout, self.members)

    def stop(self):
        for m in self.members:
            try:
                m.stop()
            except Exception:  # noqa: BLE001 - still kill it, and stop the others
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
        return find_leader(self.members, timeout)

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
    def modes(self, members=None):
        return {m.sid: m.mode() for m in (members or self.members)}

    def log_tails(self, lines=25):
        return log_tails(self.members, lines)

    def __repr__(self):
        return "<Ensemble %s %s>" % (self.kind, self.hosts())


def wait_formed(members, timeout=START_TIMEOUT, ensemble=None):
    """Wait until every one of `members` has a Mode and exactly one is leader; returns it.

    EnsembleError when a member is down (and not paused), runs standalone in an ensemble of
    more than one (`ensemble`: every member, default `members`; their log tails on timeout), or
    after `timeout` s."""
    ensemble = list(ensemble or members)
    kind = members[0].kind
    deadline = time.monotonic() + timeout
    while True:
        modes = {m.sid: m.mode() for m in members}
        standalone = [m for m in members if modes[m.sid] == "standalone"]
        if standalone and len(ensemble) > 1:
            raise EnsembleError("%s runs standalone: its server.N lines were ignored\n"
                                "--- log tail (%s) ---\n%s" % (standalone[0].what,
                                                               standalone[0].log_path,
                                                               standalone[0].log_tail()))
        leaders = [m for m in members if modes[m.sid] == "leader"]
        if all(modes.values()) and len(leaders) == 1:
            return leaders[0]
        dead = [m for m in members if not m.running() and not m.paused]
        if dead:
            raise EnsembleError("%s is not running\n--- log tail (%s) ---\n%s"
                                % (dead[0].what, dead[0].log_path, dead[0].log_tail()))
        if time.monotonic() >= deadline:
            raise EnsembleError("%s ensemble not formed after %.0fs: modes %s\n%s"
                                % (kind, timeout, modes, log_tails(ensemble)))
        time.sleep(0.05)


def find_leader(members, timeout=0.0):
    """The member whose srvr says Mode: leader (waits up to `timeout` for one), or None."""
    deadline = time.monotonic() + timeout
    while True:
        for m in members:
            if m.mode() == "leader":
                return m
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.05)
