"""The servers that `zkpy-bench compare` measures, and their topologies.

Owns what the benchmark adds to zkpy.testing.harness (which starts, waits for and stops the
processes: zkpy as ``python -m zkpy.cli.server start-foreground`` with the same interpreter and
zkpy package as the benchmark itself, Apache ZooKeeper 3.8 as Debian's jars run with
QuorumPeerMain): the comparison's zoo.cfg, the JVM options of a fair run, zkpy-bench's own null
server, installing Apache ZooKeeper, TLS material, each server behind one interface
(`BenchServer`), grouped into a `Cluster` per topology. Only zkpy.bench imports this module;
it lives in the package (not in tests/) so that the console script works from an installed
zkpy. It does I/O freely (processes, sockets, files, apt-get).

Equivalent configs: every real server gets the same zoo.cfg keys (`common_config`): the same
tickTime, forceSync=yes (Apache reads unknown zoo.cfg keys as ``zookeeper.<key>`` system
properties, so the key means the same to both), no AdminServer, no connection limit, and a
dataDir under one base directory, so both write to the same disk. zkpy's ``workers`` is left
at its default (one per CPU).

Topologies: `make_cluster(kind, topology, base_dir)`: "standalone" (one server), "tls" (one
server whose clients all come over TLS: `tls_config`, stores from `tls_material`) and
"ensemble3", a 3-node pseudo-cluster on 127.0.0.1: members with myid 1-3, each its own
directory, dataDir/myid, free client, quorum and election ports, and the same server.N lines
(`ensemble_config`). zkpy members run with ``workers=1`` (three servers share the cores),
Apache members with -Xmx512m. `Cluster.start()` starts every member, then waits until `srvr`
says one is ``Mode: leader`` and the others have a Mode (followers); `Cluster.leader()` and
`EnsembleMember.kill()` serve the failover measurement (zkpy.bench.failover).

TLS ("tls"): `tls_material(base_dir)` makes, once per base directory (so once per comparison run,
shared by both sides), a CA, a server certificate for localhost / 127.0.0.1 and a client
certificate (zkpy.testing.tlsstores, `cryptography`), written as PEM stores: the key store
server.pem (key and chain), the trust store ca.pem, and client.crt / client.key for the load
generator. Both kinds get the same keys (`tls_config`): secureClientPort on 127.0.0.1,
NettyServerCnxnFactory (ZooKeeper needs it for TLS; zkpy accepts it), the two stores, ZooKeeper's
defaults for the rest (ssl.clientAuth=need, TLSv1.2). The plaintext clientPort stays open for the
harness's `srvr` checks only (zkpy answers four-letter words inside TLS only with workers=0);
the server counts as started once a TLS session is also accepted, and every session of the
benchmark uses the secure port (`Cluster.tls`: the client's files).
"""

import os
import shutil
import subprocess
import time
from pathlib import Path

from zkpy.testing import harness
from zkpy.testing.harness import (  # noqa: F401 (part of this module's interface)
    APACHE_JARS, apache_missing, four_letter, free_port, free_ports, srvr_mode)

__all__ = [
    "TOPOLOGIES", "SERVER_KINDS", "ServerError", "BenchServer", "ZkpyServer", "ApacheServer",
    "NullServer", "Cluster", "make_cluster", "common_config", "apache_missing",
    "ensure_apache", "four_letter", "free_port", "ensemble_config", "srvr_mode",
    "EnsembleMember", "ENSEMBLE_SIZE", "TlsMaterial", "tls_material", "tls_config",
]

TOPOLOGIES = ("standalone", "ensemble3", "tls")
ENSEMBLE_SIZE = 3
SERVER_KINDS = ("zkpy", "apache", "null")

# The JVM's default JIT and GC (the compat tests' -XX:TieredStopAtLevel=1 and SerialGC would
# handicap it here), a heap well above what the runs need.
APACHE_JVM_OPTS = ("-Xmx1g", "-Dzookeeper.jmx.log4j.disable=true")
# Three JVMs on one machine: half the heap each (a run needs far less).
APACHE_ENSEMBLE_JVM_OPTS = ("-Xmx512m", "-Dzookeeper.jmx.log4j.disable=true")
APT_PACKAGE = "zookeeper"

START_TIMEOUT = 60.0
STOP_TIMEOUT = harness.STOP_TIMEOUT

ServerError = harness.ServerError


def common_config(data_dir, port, tick_ms=2000):
    """The zoo.cfg keys every real server of a comparison gets (an ordered dict)."""
    return {
        "tickTime": str(tick_ms),
        "initLimit": "10",
        "syncLimit": "5",
        "dataDir": str(data_dir),
        "clientPort": str(port),
        "clientPortAddress": "127.0.0.1",
        "maxClientCnxns": "0",
        "forceSync": "yes",
        "admin.enableServer": "false",
        "4lw.commands.whitelist": "*",
    }


def ensemble_config(data_dir, port, members, tick_ms=2000, init_limit=10, sync_limit=5):
    """zoo.cfg keys of one ensemble member: `common_config` plus initLimit/syncLimit and one
    ``server.N=127.0.0.1:quorumPort:electionPort`` line per member of `members`, a list of
    (myid, quorum port, election port). The same for every member but dataDir/clientPort, and
    the same for both kinds."""
    cfg = common_config(data_dir, port, tick_ms)
    cfg["initLimit"] = str(init_limit)
    cfg["syncLimit"] = str(sync_limit)
    for sid, quorum_port, election_port in sorted(members):
        cfg["server.%d" % sid] = harness.server_line(quorum_port, election_port)
    return cfg


class TlsMaterial:
    """The PEM files of a TLS comparison: `keystore` and `truststore` (zoo.cfg's ssl.keyStore /
    ssl.trustStore of both servers) and `client` (a zkpy.bench.loadgen.TlsFiles)."""

    def __init__(self, directory):
        self.dir = Path(directory)
        self.keystore = str(self.dir / "server.pem")
        self.truststore = str(self.dir / "ca.pem")
        self.ca = self.truststore
        self.client_cert = str(self.dir / "client.crt")
        self.client_key = str(self.dir / "client.key")

    @property
    def client(self):
        from zkpy.bench.loadgen import TlsFiles
        return TlsFiles(self.ca, self.client_cert, self.client_key)

    def files(self):
        return [self.keystore, self.truststore, self.client_cert, self.client_key]

    def exists(self):
        return all(os.path.exists(f) for f in self.files())


def tls_material(base_dir):
    """The CA, server and client certificates of a TLS comparison in `base_dir`/tls, made on the
    first call (EC P-256 keys, valid 30 days) and reused by later ones."""
    m = TlsMaterial(Path(base_dir) / "tls")
    if m.exists():
        return m
    try:
        from zkpy.testing import tlsstores as ts
    except ImportError as e:        # cryptography is one of zkpy's requirements
        raise ServerError("cannot make TLS certificates: %s" % e) from None
    m.dir.mkdir(parents=True, exist_ok=True)
    ca = ts.make_ca("zkpy-bench CA")
    ts.write_pem_files(m.dir, "server", ts.make_cert(ca, "localhost", server=True))
    ts.write_pem_files(m.dir, "client", ts.make_cert(ca, "zkpy-bench client"))
    ts.write_pem_trust(m.truststore, ca)
    return m


def tls_config(material, secure_port):
    """zoo.cfg keys, beside `common_config`, of a server whose clients come over TLS on
    127.0.0.1:`secure_port` (the same for both kinds)."""
    return {
        "secureClientPort": str(secure_port),
        "secureClientPortAddress": "127.0.0.1",
        "serverCnxnFactory": "org.apache.zookeeper.server.NettyServerCnxnFactory",
        "ssl.keyStore.location": material.keystore,
        "ssl.trustStore.location": material.truststore,
    }


# --- Apache ZooKeeper installation --------------------------------------------------------

def ensure_apache(log=print, install=True):
    """Install Debian's Apache ZooKeeper (apt-get install -y zookeeper) if it is missing.

    Only as root and only with apt-get; otherwise a ServerError that says what to run.
    """
    why = apache_missing()
    if why is None:
        return
    hint = ("install it with `sudo apt-get install -y %s` (Debian/Ubuntu; it brings java), "
            "or compare without it: --servers zkpy,null" % APT_PACKAGE)
    if not install:
        raise ServerError("Apache ZooKeeper 3.8 not installed (%s): %s" % (why, hint))
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise ServerError("Apache ZooKeeper 3.8 not installed (%s) and this is not root with "
                          "apt-get: %s" % (why, hint))
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    log("Apache ZooKeeper not installed (%s): apt-get install -y %s" % (why, APT_PACKAGE))
    cmd = ["apt-get", "install", "-y", "-q", APT_PACKAGE]
    if subprocess.run(cmd, env=env).returncode != 0:
        # A fresh machine may have no package lists yet.
        log("apt-get install failed; apt-get update and retry")
        subprocess.run(["apt-get", "update", "-q"], env=env)
        if subprocess.run(cmd, env=env).returncode != 0:
            raise ServerError("apt-get install -y %s failed: %s" % (APT_PACKAGE, hint))
    why = apache_missing()
    if why is not None:
        raise ServerError("after apt-get install %s, Apache ZooKeeper is still unusable (%s)"
                          % (APT_PACKAGE, why))


# --- servers ------------------------------------------------------------------------------

class BenchServer(harness.ServerProcess):
    """One server process with its own directory, zoo.cfg, log and port (harness.ServerProcess)
    with the comparison's zoo.cfg (`common_config`); `start()` waits until ``srvr`` says it
    serves requests and keeps the version it names."""

    name = "?"        # for tables: subclasses name the product
    tls = None        # a loadgen.TlsFiles when clients must use TLS (TlsServer)

    def __init__(self, root, port=None, tick_ms=2000, extra_cfg=None):
        super().__init__(root, port=port, extra_cfg=extra_cfg)
        self.tick_ms = tick_ms
        self.version = None

    @property
    def addrs(self):
        return [("127.0.0.1", self.port)]

    def config(self):
        return harness.merge_cfg(common_config(self.data_dir, self.port, self.tick_ms),
                                 self.extra_cfg)

    def start(self, timeout=START_TIMEOUT):
        return super().start(timeout)

    def ready(self, timeout):
        super().ready(timeout)
        for line in self.last_srvr.splitlines():
            if line.lower().startswith("zookeeper version:"):
                self.version = line.split(":", 1)[1].strip()

    def describe(self):
        return "%s on 127.0.0.1:%d, dataDir %s" % (" ".join(self.command_summary()),
                                                    self.port, self.data_dir)

    def command_summary(self):
        return self.command()


class ZkpyServer(BenchServer):
    kind = "zkpy"
    name = "zkpy"

    def command(self):
        return harness.zkpy_command(self.cfg_path)

    def env(self):
        env = harness.zkpy_env()
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def start(self, timeout=START_TIMEOUT):
        super().start(timeout)
        import zkpy
        self.version = getattr(zkpy, "__version__", None) or self.version
        return self


class ApacheServer(BenchServer):
    kind = "apache"
    name = "ZooKeeper"
    jvm_opts = APACHE_JVM_OPTS

    def command(self):
        return harness.apache_command(self.cfg_path, self.jvm_opts)

    def command_summary(self):
        cmd = self.command()
        cmd[cmd.index("-cp") + 1] = "<%d Debian jars>" % len(APACHE_JARS)
        return cmd


class NullServer(BenchServer):
    """zkpy-bench's null server (answers every request at once): the load generator's
    ceiling, and a stand-in for real servers in tests of the comparison itself."""

    kind = "null"
    name = "null"

    def __init__(self, root=None, port=None, tick_ms=2000, extra_cfg=None, fail_op=None):
        super().__init__(root or "/nonexistent", port=1, tick_ms=tick_ms)
        self.port = None
        self.fail_op = fail_op
        self.version = "zkpy-bench null server"

    def start(self, timeout=START_TIMEOUT):
        from zkpy.bench import loadgen
        try:
            self.proc, self.port = loadgen.start_null_server(1, fail_op=self.fail_op)
        except loadgen.BenchError as e:
            raise ServerError(str(e)) from None
        return self

    def running(self):
        return self.proc is not None and self.proc.is_alive()

    def stop(self, timeout=STOP_TIMEOUT):
        if self.proc is not None:
            self.proc.terminate()
            self.proc.join(timeout)
            if self.proc.is_alive():
                self.proc.kill()
                self.proc.join()
            self.proc = None

    def describe(self):
        return "zkpy-bench null server on 127.0.0.1:%s" % (self.port or "<any free port>")

    def command(self):
        return ["zkpy-bench", "serve-null"]


_CLASSES = {"zkpy": ZkpyServer, "apache": ApacheServer, "null": NullServer}


class EnsembleMember(harness.EnsembleMember):
    """What an ensemble member adds to a BenchServer: the server.N lines of the whole ensemble
    (`ensemble_config`) besides harness.EnsembleMember's myid and client-port-only start;
    Cluster.start() waits for the ensemble."""

    def _init_member(self, sid, peer_port, election_port, init_limit=10, sync_limit=5):
        self.init_member(sid, peer_port, election_port)
        self.init_limit = init_limit
        self.sync_limit = sync_limit
        self.ensemble = []          # [(myid, quorum port, election port)], set by the builder

    def config(self):
        return harness.merge_cfg(ensemble_config(self.data_dir, self.port, self.ensemble,
                                                 self.tick_ms, self.init_limit, self.sync_limit),
                                 self.extra_cfg)

    def kill(self):
        """kill -9 of the member's process group (zkpy: the core and its workers); waits
        for the process. Returns the monotonic time just before the signal."""
        if self.proc is None:
            return None
        t = time.monotonic()
        super().kill()
        return t

    def describe(self):
        return "member %d: %s" % (self.sid, BenchServer.describe(self))


class ZkpyMember(EnsembleMember, ZkpyServer):
    pass


class ApacheMember(EnsembleMember, ApacheServer):
    jvm_opts = APACHE_ENSEMBLE_JVM_OPTS


_MEMBER_CLASSES = {"zkpy": ZkpyMember, "apache": ApacheMember}
# zkpy's own key for its members: one worker process each (3 servers share the machine).
ZKPY_MEMBER_CFG = {"workers": "1"}


class TlsServer:
    """What the tls topology adds to a BenchServer: the TLS keys (`tls_config`), the secure
    port as the clients' address, and a start that waits for a TLS session too."""

    negotiated = None     # "TLSv1.2 ECDHE-ECDSA-AES256-GCM-SHA384": the probe session's

    def _init_tls(self, material, secure_port=None):
        self.material = material
        self.secure_port = secure_port or free_port()
        self.tls = material.client

    @property
    def addrs(self):
        return [("127.0.0.1", self.secure_port)]

    def config(self):
        cfg = common_config(self.data_dir, self.port, self.tick_ms)
        cfg.update(tls_config(self.material, self.secure_port))
        return harness.merge_cfg(cfg, self.extra_cfg)

    def ready(self, timeout):
        t0 = time.monotonic()
        BenchServer.ready(self, timeout)
        from zkpy.bench import loadgen
        deadline = t0 + timeout
        last = ""
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                probe = loadgen.SyncClient(self.addrs[0], tls=self.tls)
                (proto, (cipher, _, _)) = probe.sock.version()
                self.negotiated = "%s %s" % (proto, cipher)
                probe.close()
            except (loadgen.BenchError, OSError) as e:
                last = str(e)
                time.sleep(0.2)
                continue
            return
        code = self.proc.poll()
        self.stop()
        raise ServerError("%s serves on clientPort %d but no TLS session on secureClientPort "
                          "%d after %.0f s (%s; exit code %s); log %s:\n%s"
                          % (self.kind, self.port, self.secure_port, timeout, last, code,
                             self.log_path, self.log_tail()))

    def describe(self):
        return ("%s on 127.0.0.1:%d (TLS%s; clientPort %d for srvr only), dataDir %s, stores %s"
                % (" ".join(self.command_summary()), self.secure_port,
                   " " + self.negotiated if self.negotiated else "", self.port, self.data_dir,
                   self.material.dir))


class ZkpyTlsServer(TlsServer, ZkpyServer):
    pass


class ApacheTlsServer(TlsServer, ApacheServer):
    pass


_TLS_CLASSES = {"zkpy": ZkpyTlsServer, "apache": ApacheTlsServer}


class Cluster:
    """The servers of one side of the comparison; the load is spread over all of them."""

    def __init__(self, label, topology, members):
        self.label = label
        self.topology = topology
        self.members = list(members)

    @property
    def kind(self):
        return self.members[0].kind

    @property
    def addrs(self):
        return [a for m in self.members for a in m.addrs]

    @property
    def version(self):
        return self.members[0].version

    @property
    def tls(self):
        """The client's TLS files (loadgen.TlsFiles) when sessions must use TLS, else None."""
        return self.members[0].tls

    @property
    def is_ensemble(self):
        return len(self.members) > 1 and all(isinstance(m, EnsembleMember)
                                             for m in self.members)

    def start(self, timeout=START_TIMEOUT):
        try:
            for m in self.members:
                m.start()
            if self.is_ensemble:
                self.wait_formed(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def modes(self, members=None):
        return {m.sid: m.mode() for m in (members or self.members)}

    def wait_formed(self, timeout=START_TIMEOUT, members=None):
        """Wait until exactly one of `members` (default all) says Mode: leader and the others
        have a Mode too (harness.wait_formed); returns the leader. ServerError on a member
        that exits or runs standalone, or after `timeout` s."""
        leader = harness.wait_formed(list(members or self.members), timeout, self.members)
        for line in (leader.srvr() or "").splitlines():
            if line.lower().startswith("zookeeper version:"):
                for m in self.members:
                    m.version = line.split(":", 1)[1].strip()
        if self.kind == "zkpy":
            import zkpy
            for m in self.members:
                m.version = getattr(zkpy, "__version__", None) or m.version
        return leader

    def leader(self):
        """The member whose srvr says Mode: leader, or None."""
        return harness.find_leader([m for m in self.members if isinstance(m, EnsembleMember)])

    def stop(self):
        for m in self.members:
            m.stop()

    def alive(self):
        return all(m.running() for m in self.members)

    def describe(self):
        return "; ".join(m.describe() for m in self.members)

    def log_tails(self):
        return "\n".join("--- %s (%s) ---\n%s" % (m.kind, m.log_path, m.log_tail())
                         for m in self.members if m.kind != "null")


def _standalone(kind, base_dir, label, tick_ms, **kw):
    return [_CLASSES[kind](Path(base_dir) / label, tick_ms=tick_ms, **kw)]


def _ensemble3(kind, base_dir, label, tick_ms, init_limit=10, sync_limit=5, ports=None,
               **kw):
    if kind not in _MEMBER_CLASSES:
        raise ValueError("topology ensemble3 needs a real server kind (zkpy or apache), "
                         "not %r" % kind)
    ports = list(ports or free_ports(3 * ENSEMBLE_SIZE))
    extra = dict(ZKPY_MEMBER_CFG) if kind == "zkpy" else {}
    extra.update(kw.pop("extra_cfg", None) or {})
    members = []
    for i in range(ENSEMBLE_SIZE):
        sid = i + 1
        client, peer, election = ports[3 * i:3 * i + 3]
        m = _MEMBER_CLASSES[kind](Path(base_dir) / label / ("zk%d" % sid), port=client,
                                  tick_ms=tick_ms, extra_cfg=extra, **kw)
        m._init_member(sid, peer, election, init_limit, sync_limit)
        members.append(m)
    lines = [(m.sid, m.peer_port, m.election_port) for m in members]
    for m in members:
        m.ensemble = lines
    return members


def _tls(kind, base_dir, label, tick_ms, secure_port=None, **kw):
    if kind not in _TLS_CLASSES:
        raise ValueError("topology tls needs a real server kind (zkpy or apache), not %r"
                         % kind)
    material = tls_material(base_dir)
    server = _TLS_CLASSES[kind](Path(base_dir) / label, tick_ms=tick_ms, **kw)
    server._init_tls(material, secure_port)
    return [server]


# topology -> builder(kind, base_dir, label, tick_ms, **kw) -> [BenchServer]
_BUILDERS = {"standalone": _standalone, "ensemble3": _ensemble3, "tls": _tls}


def make_cluster(kind, topology="standalone", base_dir="/tmp", label=None, tick_ms=2000,
                 **kw):
    """A not yet started Cluster of `kind` servers ("zkpy", "apache", "null")."""
    if kind not in _CLASSES:
        raise ValueError("unknown server kind %r (one of %s)" % (kind, ", ".join(_CLASSES)))
    if topology not in _BUILDERS:
        raise ValueError("unknown topology %r (one of %s)" % (topology, ", ".join(_BUILDERS)))
    label = label or kind
    return Cluster(label, topology, _BUILDERS[topology](kind, base_dir, label, tick_ms, **kw))
