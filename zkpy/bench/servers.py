"""The servers that `zkpy-bench compare` measures, and their topologies.

Owns what the benchmark adds to zkpy.testing, whose harness starts, waits for and stops the
processes (zkpy as ``python -m zkpy.cli.server start-foreground`` with the same interpreter and
zkpy package as the benchmark itself, Apache ZooKeeper 3.8 as Debian's jars run with
QuorumPeerMain) and whose Ensemble runs the pseudo-cluster: the comparison's zoo.cfg, the JVM
options of a fair run, zkpy-bench's own null server, installing Apache ZooKeeper, TLS material,
how a report names a server (`describe`), and the servers of one side grouped into a `Cluster`
per topology. Only zkpy.bench imports this module; it lives in the package (not in tests/) so
that the console script works from an installed zkpy. It does I/O freely (processes, sockets,
files, apt-get).

Equivalent configs: every real server gets the same zoo.cfg keys: the harness's (dataDir under
one base directory, so both write to the same disk; clientPort on 127.0.0.1; no AdminServer)
and `bench_cfg`'s: the same tickTime, no connection limit, forceSync=yes (Apache reads unknown
zoo.cfg keys as ``zookeeper.<key>`` system properties, so the key means the same to both).
zkpy's ``workers`` is left at its default (one per CPU).

Topologies: `make_cluster(kind, topology, base_dir)`: "standalone" (one server), "tls" (one
server whose clients all come over TLS: `tls_config`, stores from `tls_material`) and
"ensemble3", a 3-node pseudo-cluster on 127.0.0.1 (zkpy.testing.ensemble.Ensemble: members with
myid 1-3, each its own directory, dataDir/myid, free client, quorum and election ports, and the
same server.N lines). zkpy members run with ``workers=1`` (three servers share the cores),
Apache members with -Xmx512m. `Cluster.start()` starts every member, then waits until `srvr`
says one is ``Mode: leader`` and the others have a Mode (followers); `Cluster.leader()` and a
member's kill() serve the failover measurement (zkpy.bench.failover).

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

from zkpy.testing import ensemble, harness
from zkpy.testing.harness import (  # noqa: F401 (part of this module's interface)
    APACHE_JARS, apache_missing, four_letter, free_port, srvr_mode)

__all__ = [
    "TOPOLOGIES", "SERVER_KINDS", "ServerError", "NullServer", "Cluster", "make_cluster",
    "bench_cfg", "describe", "apache_missing", "ensure_apache", "four_letter", "free_port",
    "srvr_mode", "ENSEMBLE_SIZE", "TlsMaterial", "tls_material", "tls_config",
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
# zkpy's own key for its members: one worker process each (3 servers share the machine).
ZKPY_MEMBER_CFG = {"workers": "1"}

START_TIMEOUT = 60.0
STOP_TIMEOUT = harness.STOP_TIMEOUT

ServerError = harness.ServerError


def bench_cfg(tick_ms=2000):
    """The zoo.cfg keys every real server of a comparison gets beside the harness's."""
    return {"tickTime": str(tick_ms), "initLimit": "10", "syncLimit": "5",
            "maxClientCnxns": "0", "forceSync": "yes"}


def _server_kw(kind, tick_ms, jvm_opts=APACHE_JVM_OPTS):
    """What a real server of `kind` takes from the benchmark: zoo.cfg defaults, JVM options."""
    kw = {"defaults": bench_cfg(tick_ms)}
    if kind == "apache":
        kw["jvm_opts"] = jvm_opts
    return kw


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
    """zoo.cfg keys, beside the harness's and `bench_cfg`, of a server whose clients come over
    TLS on 127.0.0.1:`secure_port` (the same for both kinds)."""
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

class NullServer:
    """zkpy-bench's null server (answers every request at once): the load generator's
    ceiling, and a stand-in for real servers in tests of the comparison itself. It runs in a
    process of zkpy.bench.loadgen's, not under the harness."""

    kind = "null"
    host = harness.LOCALHOST
    version = "zkpy-bench null server"

    def __init__(self, fail_op=None):
        self.fail_op = fail_op
        self.proc = None
        self.port = None

    @property
    def addr(self):
        return (self.host, self.port)

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


class TlsServer:
    """What the tls topology adds to a harness server: the TLS keys (`tls_config`), the secure
    port as the clients' address, and a start that waits for a TLS session too."""

    negotiated = None     # "TLSv1.2 ECDHE-ECDSA-AES256-GCM-SHA384": the probe session's

    def init_tls(self, material, secure_port=None):
        self.material = material
        self.secure_port = secure_port or free_port()
        self.tls = material.client

    @property
    def addr(self):
        return (self.host, self.secure_port)

    def config(self):
        cfg = super().config()
        cfg.update(tls_config(self.material, self.secure_port))
        return harness.merge_cfg(cfg, self.extra_cfg)

    def ready(self, timeout):
        t0 = time.monotonic()
        super().ready(timeout)
        from zkpy.bench import loadgen
        deadline = t0 + timeout
        last = ""
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                probe = loadgen.SyncClient(self.addr, tls=self.tls)
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


class ZkpyTlsServer(TlsServer, harness.ZkpyServer):
    pass


class ApacheTlsServer(TlsServer, harness.ApacheServer):
    pass


_TLS_CLASSES = {"zkpy": ZkpyTlsServer, "apache": ApacheTlsServer}


def describe(server):
    """How a report names one server: its command line (Debian's jar list shortened), where
    its clients connect, its dataDir; an ensemble member's myid first."""
    if isinstance(server, NullServer):
        return "zkpy-bench null server on 127.0.0.1:%s" % (server.port or "<any free port>")
    cmd = server.command()
    if "-cp" in cmd:
        cmd[cmd.index("-cp") + 1] = "<%d Debian jars>" % len(APACHE_JARS)
    if isinstance(server, TlsServer):
        return ("%s on %s:%d (TLS%s; clientPort %d for srvr only), dataDir %s, stores %s"
                % (" ".join(cmd), server.host, server.secure_port,
                   " " + server.negotiated if server.negotiated else "", server.port,
                   server.data_dir, server.material.dir))
    text = "%s on %s:%d, dataDir %s" % (" ".join(cmd), server.host, server.port, server.data_dir)
    if isinstance(server, ensemble.EnsembleMember):
        return "member %d: %s" % (server.sid, text)
    return text


class Cluster:
    """The servers of one side of the comparison; the load is spread over all of them.
    `ensemble`: the zkpy.testing.ensemble.Ensemble they form (ensemble3), else None; `tls`: the
    client's TLS files (loadgen.TlsFiles) when sessions must use TLS, else None; `version`:
    what the servers say they are, once started."""

    def __init__(self, label, topology, members, ensemble=None, tls=None):
        self.label = label
        self.topology = topology
        self.members = list(members)
        self.ensemble = ensemble
        self.tls = tls
        self.version = None

    @property
    def kind(self):
        return self.members[0].kind

    @property
    def addrs(self):
        return [m.addr for m in self.members]

    @property
    def is_ensemble(self):
        return self.ensemble is not None

    def start(self, timeout=START_TIMEOUT):
        """Start every server; an ensemble also waits for its leader (Ensemble.start). Stops
        them all when that fails."""
        if self.ensemble is not None:
            self.ensemble.start(timeout)
        else:
            try:
                for m in self.members:
                    m.start(timeout)
            except BaseException:
                self.stop()
                raise
        self.version = self._version()
        return self

    def _version(self):
        if self.kind == "null":
            return NullServer.version
        if self.kind == "zkpy":
            import zkpy
            if getattr(zkpy, "__version__", None):
                return zkpy.__version__
        for line in (self.members[0].srvr() or "").splitlines():
            if line.lower().startswith("zookeeper version:"):
                return line.split(":", 1)[1].strip()
        return None

    def modes(self, members=None):
        return self.ensemble.modes(members)

    def leader(self):
        """The member whose srvr says Mode: leader, or None."""
        return self.ensemble.leader()

    def stop(self):
        if self.ensemble is not None:
            self.ensemble.stop()
            return
        for m in self.members:
            m.stop()

    def alive(self):
        return all(m.running() for m in self.members)

    def describe(self):
        return "; ".join(describe(m) for m in self.members)

    def log_tails(self):
        return harness.log_tails([m for m in self.members if m.kind != "null"], 40)


def _standalone(kind, base_dir, label, tick_ms, jvm_opts=APACHE_JVM_OPTS, **kw):
    if kind == "null":
        return Cluster(label, "standalone", [NullServer(**kw)])
    server = harness.SERVER_CLASSES[kind](Path(base_dir) / label,
                                          **_server_kw(kind, tick_ms, jvm_opts), **kw)
    return Cluster(label, "standalone", [server])


def _ensemble3(kind, base_dir, label, tick_ms, init_limit=10, sync_limit=5, ports=None,
               extra_cfg=None):
    if kind not in ensemble.MEMBER_CLASSES:
        raise ValueError("topology ensemble3 needs a real server kind (zkpy or apache), "
                         "not %r" % kind)
    extra = dict(ZKPY_MEMBER_CFG) if kind == "zkpy" else {}
    extra.update(extra_cfg or {})
    ens = ensemble.Ensemble(kind, Path(base_dir) / label, servers=ENSEMBLE_SIZE, extra_cfg=extra,
                            tick_ms=tick_ms, init_limit=init_limit, sync_limit=sync_limit,
                            ports=ports, **_server_kw(kind, tick_ms, APACHE_ENSEMBLE_JVM_OPTS))
    return Cluster(label, "ensemble3", ens.members, ensemble=ens)


def _tls(kind, base_dir, label, tick_ms, secure_port=None, **kw):
    if kind not in _TLS_CLASSES:
        raise ValueError("topology tls needs a real server kind (zkpy or apache), not %r"
                         % kind)
    material = tls_material(base_dir)
    server = _TLS_CLASSES[kind](Path(base_dir) / label, **_server_kw(kind, tick_ms), **kw)
    server.init_tls(material, secure_port)
    return Cluster(label, "tls", [server], tls=material.client)


# topology -> builder(kind, base_dir, label, tick_ms, **kw) -> Cluster
_BUILDERS = {"standalone": _standalone, "ensemble3": _ensemble3, "tls": _tls}


def make_cluster(kind, topology="standalone", base_dir="/tmp", label=None, tick_ms=2000,
                 **kw):
    """A not yet started Cluster of `kind` servers ("zkpy", "apache", "null"). A standalone
    Apache server takes `jvm_opts` (default APACHE_JVM_OPTS: -Xmx1g), e.g. a bigger heap."""
    if kind not in SERVER_KINDS:
        raise ValueError("unknown server kind %r (one of %s)" % (kind, ", ".join(SERVER_KINDS)))
    if topology not in _BUILDERS:
        raise ValueError("unknown topology %r (one of %s)" % (topology, ", ".join(_BUILDERS)))
    return _BUILDERS[topology](kind, base_dir, label or kind, tick_ms, **kw)
