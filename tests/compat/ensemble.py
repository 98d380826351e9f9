"""Ensembles of real server processes for the ensemble tests (issue 6); a TCP proxy to cut links.

`Ensemble(kind, tmpdir, servers=3, observers=0, extra_cfg=None, proxies=False)`: N members of kind
"zkpy" or "apache", each its own process, directory, zoo.cfg (server.N lines) and myid, every
port (client, quorum, election) picked free on 127.0.0.1. Members are tests/compat/servers.py's
ZkpyServer / ApacheZkServer (same command lines, env, log handling) made members by
zkpy.testing.harness's EnsembleMember (myid, a start that does not wait for a quorum) with the
ensemble's keys added to their config; the ensemble's `start()` waits for it (harness.wait_formed).

With `proxies=True`, member i reaches member j (quorum and election port) through a `Proxy` of
its own: member i's zoo.cfg names proxy ports in the server.j lines (its own line keeps its real
ports), so every member has its own view of the others' ports. Apache ZooKeeper accepts that: it
compares configs only on reconfig (tried: the ensemble forms, no member rewrites its zoo.cfg or
writes a dynamic config; "Dynamic reconfig is disabled, we don't store the last seen config").
`cut(i, j)`, `isolate(i)` and `heal()` then make partitions. Apache's election layer keeps one connection per pair, dialed
by the higher id (seen through that member's proxy); the quorum link (learner -> leader) is always
dialed by the learner through its proxy, and it decides who serves.

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
import socket
import threading
import time

from compat import servers as zkservers
from zkpy.testing import harness
from zkpy.testing.harness import free_ports, srvr_mode  # noqa: F401 (srvr_mode: re-exported)

ENSEMBLE_TICK_MS = 500
START_TIMEOUT = 60.0


# ---------------------------------------------------------------------------------------------
# TCP proxy


class Proxy:
    """Forward 127.0.0.1:listen_port to 127.0.0.1:target_port, a thread per direction.

    The proxy listens only while something listens on target_port (a shared watcher reads
    /proc/net/tcp{,6} every 20 ms), so a dialer sees "connection refused" where it would without
    the proxy: a proxy that accepted and then found nothing behind it would turn a refused connect
    into a connection that breaks after it was made, and Apache's learner treats those
    differently (it retries a refused connect to a new leader, but goes back to the election on a
    broken one, which cost a whole initLimit in a test).

    `cut()` closes every forwarded connection and refuses new ones (accepted and closed at once,
    so the dialer sees the link drop as it would on a crash of the far side); `heal()` forwards
    again. `close()` stops the proxy for good. `stall()` keeps the connections open but holds
    whatever arrives (a link that went silent); `unstall()` delivers it, `cut()` drops it.
    """

    def __init__(self, listen_port, target_port, name=None):
        self.listen_port = listen_port
        self.target_port = target_port
        self.name = name or "proxy %d->%d" % (listen_port, target_port)
        self._cut = False
        self._closed = False
        self._lock = threading.Lock()
        self._conns = set()           # (client socket, upstream socket)
        self._listener = None
        self.accepted = 0
        self._flowing = threading.Event()     # cleared while stalled
        self._flowing.set()
        # Hold the port from the start (free_port() picked it), even before the target listens.
        self._open_listener()
        _WATCHER.add(self)

    @property
    def is_cut(self):
        return self._cut

    def connections(self):
        with self._lock:
            return len(self._conns)

    def cut(self):
        with self._lock:
            self._cut = True
            conns = list(self._conns)
            self._conns.clear()
        for pair in conns:
            _close_pair(pair)
        self._flowing.set()      # a held chunk goes to a closed socket: dropped

    def heal(self):
        self._cut = False
        self._flowing.set()

    def stall(self):
        self._flowing.clear()

    def unstall(self):
        self._flowing.set()

    def close(self):
        _WATCHER.discard(self)
        with self._lock:
            self._closed = True
        self.cut()
        self._close_listener()

    # -- listening mirrors the target ---------------------------------------------------------
    def _target_listening(self, listening):
        with self._lock:
            if self._closed:
                return
            if listening and self._listener is None:
                try:
                    self._open_listener()
                except OSError:         # the port is busy for a moment: next round
                    self._listener = None
            elif not listening and self._listener is not None:
                self._close_listener()

    def _open_listener(self):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.listen_port))
        sock.listen(64)
        self._listener = sock
        threading.Thread(target=self._accept_loop, args=(sock,), name=self.name,
                         daemon=True).start()

    def _close_listener(self):
        sock, self._listener = self._listener, None
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def _accept_loop(self, listener):
        while not self._closed:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            if self._cut or self._closed:
                _close_pair((client,))
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=2.0)
                upstream.settimeout(None)
            except OSError:
                _close_pair((client,))
                continue
            for s in (client, upstream):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            pair = (client, upstream)
            with self._lock:
                if self._cut:
                    _close_pair(pair)
                    continue
                self._conns.add(pair)
                self.accepted += 1
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst, pair), daemon=True,
                                 name=self.name + " pump").start()

    def _pump(self, src, dst, pair):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                self._flowing.wait()
                if self._cut:
                    break
                dst.sendall(data)
        except OSError:
            pass
        with self._lock:
            self._conns.discard(pair)
        _close_pair(pair)

    def __repr__(self):
        return "<Proxy %d->%d%s>" % (self.listen_port, self.target_port,
                                     " cut" if self._cut else "")


def listening_ports():
    """Local TCP ports in LISTEN state (any address), from /proc/net/tcp and tcp6."""
    ports = set()
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(name) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    if len(fields) > 3 and fields[3] == "0A":
                        ports.add(int(fields[1].rsplit(":", 1)[1], 16))
        except (OSError, StopIteration, ValueError):
            continue
    return ports


class _ListenWatcher:
    """One thread for every Proxy: opens or closes each proxy's listener as its target does."""

    INTERVAL = 0.02

    def __init__(self):
        self._proxies = set()
        self._lock = threading.Lock()
        self._thread = None

    def add(self, proxy):
        with self._lock:
            self._proxies.add(proxy)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="proxy listen watcher",
                                                daemon=True)
                self._thread.start()

    def discard(self, proxy):
        with self._lock:
            self._proxies.discard(proxy)

    def _run(self):
        while True:
            with self._lock:
                proxies = list(self._proxies)
            if proxies:
                up = listening_ports()
                for p in proxies:
                    p._target_listening(p.target_port in up)
            time.sleep(self.INTERVAL)


_WATCHER = _ListenWatcher()


def _close_pair(socks):
    for s in socks:
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            s.close()
        except OSError:
            pass


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
