"""Start, watch and stop ZooKeeper servers as processes: zkpy's and Apache ZooKeeper 3.8's.

Owns what every caller that runs real servers needs, once: free ports on 127.0.0.1, four-letter
words and srvr's Mode, Debian's Apache ZooKeeper (jars, java, "is it installed", its command
line), zkpy's command line and environment, zoo.cfg / server.N / myid writing, and
`ServerProcess`: one server in its own directory and process group, started (retried when
another process took its port first), waited for until it serves, stopped (SIGTERM, then
SIGKILL), killed, paused, with its log. `ZkpyServer` and `ApacheServer` are the two kinds of
server (`SERVER_CLASSES`), with the same zoo.cfg: the keys below, then the caller's `defaults`
(the tests' and the benchmark's choices), then its `extra_cfg`. Both take ZooKeeper's JVM flags
as an operator passes them (SERVER_JVMFLAGS, conf/java.env, conf/zookeeper-env.sh).
Ensembles of them are zkpy.testing.ensemble's.

Used by tests/compat (pytest fixtures and skips on top), zkpy.bench (the comparison's topologies,
TLS), zkpy.testing.ensemble and zkpy-cluster (daemon verbs, cluster.json). It must never import
those, nor anything of zkpy but the package path: it runs servers, it is not one. It does I/O
freely (processes, sockets, files).

    s = ZkpyServer(tmp, extra_cfg={...}, port=None)     # or ApacheServer
    s.start(); s.four_letter("mntr"); s.mode(); s.stop(); s.kill(); s.log_tail()
"""

import atexit
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

LOCALHOST = "127.0.0.1"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
# srvr's answer (both servers) while no requests are served (no quorum, database loading).
NOT_SERVING = "not currently serving"

# The directory holding the zkpy package: servers run the same code as their caller, even when
# zkpy is not pip-installed (a checkout).
ZKPY_PARENT = str(Path(__file__).resolve().parents[2])

JAVA_DIR = Path("/usr/share/java")
# Named one by one: a wildcard classpath would pull in every slf4j binding in /usr/share/java
# and slf4j would pick one at random.
APACHE_JARS = (
    "zookeeper.jar", "zookeeper-jute.jar", "slf4j-api.jar", "slf4j-simple.jar",
    "netty-handler.jar", "netty-common.jar", "netty-buffer.jar", "netty-transport.jar",
    "netty-transport-native-epoll.jar", "netty-transport-native-unix-common.jar",
    "netty-codec.jar", "netty-resolver.jar", "metrics-core.jar", "snappy-java.jar",
)
APACHE_MAIN = "org.apache.zookeeper.server.quorum.QuorumPeerMain"
# A small, quick JVM (tests, zkpy-cluster): the machine has 2 cores shared with other servers.
# 64 MB of txn-log preallocation per server is pointless there; 1 MB will do.
APACHE_SMALL_JVM_OPTS = ("-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
                         "-Dzookeeper.jmx.log4j.disable=true", "-Dzookeeper.preAllocSize=1024",
                         "-Dorg.slf4j.simpleLogger.showDateTime=true")


class ServerError(RuntimeError):
    """A server could not be installed, started or found serving."""


# --- ports -------------------------------------------------------------------------------

_HANDED_OUT = set()   # ports free_port() gave this process: never given twice
_LOW_PORT = 10000     # free_port() picks from here up to the kernel's ephemeral range
_RANDOM = random.Random()   # its own: tests reseed the global one (hypothesis)


def _ephemeral_range():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            lo, hi = (int(x) for x in f.read().split())
        return lo, hi
    except (OSError, ValueError):
        return None


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago, for a server to listen on.

    Taken below the kernel's ephemeral range when it can: a port the kernel hands out (bind to
    port 0) can be taken as the local port of any outgoing connection -- a client of another
    test, the load generator -- between this call and the server's bind ("Address already in
    use"); ports below the range are only ever taken by a bind. Never the same port twice in
    one process."""
    rng = _ephemeral_range()
    if rng is not None and rng[0] > _LOW_PORT + 1000:
        for _ in range(200):
            port = _RANDOM.randrange(_LOW_PORT, rng[0])
            if port in _HANDED_OUT:
                continue
            with socket.socket() as s:
                try:
                    s.bind((LOCALHOST, port))
                except OSError:
                    continue
            _HANDED_OUT.add(port)
            return port
    while True:
        with socket.socket() as s:
            s.bind((LOCALHOST, 0))
            port = s.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


def free_ports(n):
    """n free ports, in the order picked (distinct: free_port() never repeats one)."""
    return [free_port() for _ in range(n)]


# --- four-letter words -------------------------------------------------------------------

def four_letter(port, cmd, host=LOCALHOST, timeout=5.0):
    """Send a four-letter word on the client port; the whole text answer."""
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(cmd.encode("ascii"))
        chunks = []
        while True:
            try:
                data = s.recv(65536)
            except ConnectionResetError:
                break
            if not data:
                break
            chunks.append(data)
    return b"".join(chunks).decode("utf-8", "replace")


def srvr_mode(text):
    """The value of srvr's ``Mode:`` line ("leader", "follower", "standalone", ...) or None
    (no answer, or "not currently serving requests")."""
    if not text or NOT_SERVING in text:
        return None
    for line in text.splitlines():
        if line.startswith("Mode:"):
            return line.split(":", 1)[1].strip()
    return None


# --- the commands that run a server ------------------------------------------------------

def apache_missing():
    """None when java and the Debian jars are there, else what is missing (a sentence)."""
    missing = [j for j in APACHE_JARS if not (JAVA_DIR / j).exists()]
    if shutil.which("java") is None:
        missing.insert(0, "java")
    return ("missing " + ", ".join(missing)) if missing else None


def apache_command(cfg_path, jvm_opts=APACHE_SMALL_JVM_OPTS):
    """java ... QuorumPeerMain zoo.cfg: Apache ZooKeeper, standalone or a member."""
    cp = ":".join(str(JAVA_DIR / j) for j in APACHE_JARS)
    return ["java"] + list(jvm_opts) + ["-cp", cp, APACHE_MAIN, str(cfg_path)]


def zkpy_command(cfg_path, verb="start-foreground"):
    """zkpy-server VERB zoo.cfg, run by this interpreter."""
    return [sys.executable, "-m", "zkpy.cli.server", verb, str(cfg_path)]


def zkpy_env(env=None, parent=ZKPY_PARENT):
    """A copy of `env` (default os.environ) whose PYTHONPATH starts with `parent`: the
    directory holding the zkpy package to run (default this one)."""
    env = dict(os.environ if env is None else env)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (parent, env.get("PYTHONPATH", "")) if p)
    return env


# --- zoo.cfg -----------------------------------------------------------------------------

def merge_cfg(cfg, extra):
    """cfg updated with `extra` (values as str); a None value removes the key."""
    for k, v in (extra or {}).items():
        if v is None:
            cfg.pop(k, None)
        else:
            cfg[k] = str(v)
    return cfg


def format_cfg(cfg):
    """zoo.cfg text: one key=value line per item of `cfg` (an ordered dict)."""
    return "".join("%s=%s\n" % kv for kv in cfg.items())


def write_cfg(path, cfg):
    Path(path).write_text(format_cfg(cfg))


def server_line(peer_port, election_port, observer=False, host=LOCALHOST):
    """The value of a ``server.N`` key: host:quorumPort:electionPort[:observer]."""
    return "%s:%d:%d%s" % (host, peer_port, election_port, ":observer" if observer else "")


def write_myid(data_dir, sid):
    Path(data_dir).mkdir(parents=True, exist_ok=True)
    (Path(data_dir) / "myid").write_text("%d\n" % sid)


def log_tail(path, lines=40):
    """The last `lines` lines of a log file ("" when there is none)."""
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def log_tails(servers, lines=25):
    """The log tail of each of `servers`, under a line naming it."""
    return "\n".join("--- %s (%s) ---\n%s" % (s.what, s.log_path, s.log_tail(lines))
                     for s in servers)


# --- one server process ------------------------------------------------------------------

# Servers still running when the interpreter exits (a test run cut short) are killed here.
_LIVE = set()


@atexit.register
def _kill_leftovers():
    for server in list(_LIVE):
        try:
            server.kill()
        except Exception:  # noqa: BLE001 - the interpreter is exiting
            pass


class ServerProcess:
    """One server process in its own directory (root: zoo.cfg, data/, server.log).

    Subclasses give `command()`. The process runs in its own session, so stop() and kill()
    reach anything it forks (zkpy's workers) and nothing else.

    zoo.cfg is `config()`: the keys every server here gets, then `defaults`, then `extra_cfg`
    (a None value removes a key). server_jvmflags, java_env and zookeeper_env are ZooKeeper's
    JVM flags as an operator passes them: SERVER_JVMFLAGS in the environment,
    conf/zookeeper-env.sh and conf/java.env beside zoo.cfg (sourced by zkEnv.sh, in that order).
    """

    kind = "?"

    def __init__(self, root, extra_cfg=None, port=None, defaults=None, server_jvmflags=None,
                 java_env=None, zookeeper_env=None):
        self.root = Path(root)
        self.data_dir = self.root / "data"
        self.cfg_path = self.root / "zoo.cfg"
        self.log_path = self.root / "server.log"
        self.defaults = dict(defaults or {})
        self.extra_cfg = dict(extra_cfg or {})
        self.server_jvmflags = server_jvmflags
        self.java_env = java_env
        self.zookeeper_env = zookeeper_env
        self.host = LOCALHOST           # the client port's address (config() writes it)
        self.root.mkdir(parents=True, exist_ok=True)   # a caller may put files there first
        self._auto_port = port is None
        self.port = port or free_port()
        self.proc = None
        self.last_srvr = None       # the srvr answer that ended the wait in start()
        self._log_file = None
        self._started_once = False
        self._paused = False

    @property
    def what(self):
        """How errors name the server."""
        return "%s server" % self.kind

    @property
    def hosts(self):
        return "%s:%d" % (self.host, self.port)

    @property
    def addr(self):
        """(host, client port), as a socket connects to it."""
        return (self.host, self.port)

    def config(self):
        """zoo.cfg as an ordered dict: the keys below, `defaults`, `extra_cfg`."""
        cfg = {
            "tickTime": "2000",
            "dataDir": str(self.data_dir),
            "clientPort": str(self.port),
            "clientPortAddress": self.host,
            "4lw.commands.whitelist": "*",
            "admin.enableServer": "false",
        }
        merge_cfg(cfg, self.defaults)
        return merge_cfg(cfg, self.extra_cfg)

    def command(self):
        raise NotImplementedError

    def env(self):
        return dict(os.environ)

    def write_config(self):
        self.data_dir.mkdir(parents=True, exist_ok=True)
        write_cfg(self.cfg_path, self.config())
        for name, text in (("java.env", self.java_env), ("zookeeper-env.sh", self.zookeeper_env)):
            env_file = self.root / name
            if text is not None:
                env_file.write_text(text)
            elif env_file.exists():
                env_file.unlink()

    def jvm_flag_words(self):
        """The words zkServer.sh passes to java: "$SERVER_JVMFLAGS $JVMFLAGS" after sourcing
        zookeeper-env.sh and java.env (bash does the sourcing here, as zkEnv.sh would)."""
        if self.server_jvmflags is None and self.java_env is None and self.zookeeper_env is None:
            return []
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        if self.server_jvmflags is not None:
            env["SERVER_JVMFLAGS"] = self.server_jvmflags
        script = 'echo "$SERVER_JVMFLAGS $JVMFLAGS"'
        if self.java_env is not None:
            script = '. "%s"; %s' % (self.root / "java.env", script)
        if self.zookeeper_env is not None:
            script = '. "%s"; %s' % (self.root / "zookeeper-env.sh", script)
        out = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True,
                             check=True).stdout
        return out.split()

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    # -- start --------------------------------------------------------------------------------
    def start(self, timeout=START_TIMEOUT):
        """Write zoo.cfg, start the process, wait until it is ready(). Returns self."""
        if self.running():
            raise ServerError("%s already running" % self.what)
        for attempt in range(3):
            try:
                self.spawn()
                self.ready(timeout)
                break
            except ServerError as e:
                # free_port() can race with another process; a first start may move on.
                lost_port = "already in use" in str(e).lower()
                if not (lost_port and self._auto_port and not self._started_once) or attempt == 2:
                    raise
                self.port = free_port()
        self._started_once = True
        return self

    def spawn(self, note=""):
        """Write the config and start the process without waiting for it."""
        self._paused = False
        self.root.mkdir(parents=True, exist_ok=True)
        self.write_config()
        self._log_file = open(self.log_path, "ab")
        self._log_file.write(("==== start %s%s\n" % (note, " ".join(self.command()))).encode())
        self._log_file.flush()
        self.proc = subprocess.Popen(self.command(), cwd=self.root, env=self.env(),
                                     stdin=subprocess.DEVNULL, stdout=self._log_file,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        _LIVE.add(self)
        return self.proc

    def ready(self, timeout):
        """Wait until srvr says requests are served (Apache answers ruok as soon as the port is
        bound, before its database is loaded), and that the port is this server's."""
        self._wait(timeout, self._serving, "not serving")
        self._check_port_is_ours()

    def _serving(self):
        answer = self.four_letter("srvr", timeout=2.0)
        if "Mode:" in answer and NOT_SERVING not in answer:
            self.last_srvr = answer
            return True
        return repr(answer)

    def _answering(self):
        self.last_srvr = self.four_letter("srvr", timeout=2.0)
        return True

    def _wait(self, timeout, check, what, interval=0.1):
        """Poll check() (True, or what to report) until True; ServerError when the process
        exits or after `timeout` s (the process is then killed)."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                code = self._reap()
                raise ServerError("%s exited with %s during start\n--- log tail (%s) ---\n%s"
                                  % (self.what, code, self.log_path, self.log_tail()))
            try:
                last = check()
                if last is True:
                    return
            except OSError as e:
                last = repr(e)
            time.sleep(interval)
        self.kill()
        raise ServerError("%s %s on %s after %.0fs (last: %s)\n--- log tail (%s) ---\n%s"
                          % (self.what, what, self.hosts, timeout, last, self.log_path,
                             self.log_tail()))

    def _check_port_is_ours(self):
        """Another server could hold the port free_port() picked: conf names its dataDir."""
        conf = self.four_letter("conf", timeout=2.0)
        for line in conf.splitlines():
            if line.startswith("dataDir=") and not line[8:].startswith(str(self.data_dir)):
                self.kill()
                raise ServerError("port %d already in use by another server (%s)"
                                  % (self.port, line))

    # -- stop ---------------------------------------------------------------------------------
    def _signal(self, sig):
        try:
            os.killpg(self.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def stop(self, timeout=STOP_TIMEOUT):
        """SIGTERM, wait up to `timeout`, then SIGKILL. Returns the exit code."""
        if self.proc is None:
            return None
        if self._paused:
            self.resume()             # a stopped process would never act on the SIGTERM
        if self.proc.poll() is None:
            self._signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                self.proc.wait(STOP_TIMEOUT)
        return self._reap()

    def kill(self):
        """SIGKILL the server (a crash, as far as its disk state goes). Returns the exit code."""
        self._paused = False
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self._signal(signal.SIGKILL)
            self.proc.wait(STOP_TIMEOUT)
        return self._reap()

    def _reap(self):
        # Anything left in the group (a child the server forked) goes too.
        self._signal(signal.SIGKILL)
        code = self.proc.returncode
        self.proc = None
        _LIVE.discard(self)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        return code

    def restart(self, timeout=START_TIMEOUT):
        """Stop (gracefully) and start again on the same port and data dir."""
        self.stop()
        return self.start(timeout)

    def pause(self):
        """SIGSTOP the process group (a long GC pause, a hung VM)."""
        self._signal(signal.SIGSTOP)
        self._paused = True

    def resume(self):
        self._signal(signal.SIGCONT)
        self._paused = False

    @property
    def paused(self):
        return self._paused and self.running()

    # -- inspection ---------------------------------------------------------------------------
    def log_text(self):
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines=40):
        return log_tail(self.log_path, lines)

    def four_letter(self, cmd, timeout=5.0):
        return four_letter(self.port, cmd, host=self.host, timeout=timeout)

    def srvr(self, timeout=2.0):
        """The srvr answer, or None when nothing answers on the client port."""
        try:
            return self.four_letter("srvr", timeout=timeout)
        except OSError:
            return None

    def mode(self, timeout=2.0):
        """'leader', 'follower', 'observer', 'standalone', or None (down, paused, not serving)."""
        if not self.running() or self._paused:
            return None
        return srvr_mode(self.srvr(timeout))

    def wait_mode(self, modes=("leader", "follower", "observer"), timeout=30.0):
        """Wait until mode() is one of `modes`; returns it, or raises ServerError."""
        if isinstance(modes, str):
            modes = (modes,)
        deadline = time.monotonic() + timeout
        mode = None
        while time.monotonic() < deadline:
            mode = self.mode()
            if mode in modes:
                return mode
            if not self.running():
                raise ServerError("%s is not running\n--- log tail ---\n%s"
                                  % (self.what, self.log_tail()))
            time.sleep(0.05)
        raise ServerError("%s: mode %r after %.0fs, wanted %s\n--- log tail ---\n%s"
                          % (self.what, mode, timeout, "/".join(modes), self.log_tail()))

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def __repr__(self):
        return "<%s %s %s>" % (type(self).__name__, self.hosts, self.root)


# --- the two kinds of server -------------------------------------------------------------

class ZkpyServer(ServerProcess):
    """zkpy-server start-foreground zoo.cfg, run by this interpreter with this zkpy (or the one
    in `zkpy_parent`: another checkout, for an A/B run); it reads SERVER_JVMFLAGS, java.env and
    zookeeper-env.sh itself."""

    kind = "zkpy"

    def __init__(self, root, extra_cfg=None, port=None, zkpy_parent=ZKPY_PARENT, **kw):
        super().__init__(root, extra_cfg, port, **kw)
        self.zkpy_parent = zkpy_parent

    def command(self):
        return zkpy_command(self.cfg_path)

    def env(self):
        env = zkpy_env(parent=self.zkpy_parent)
        env["PYTHONUNBUFFERED"] = "1"
        # Only what this server was given: not the caller's own JVM flags or conf directory.
        for name in ("SERVER_JVMFLAGS", "JVMFLAGS", "ZOOCFGDIR"):
            env.pop(name, None)
        if self.server_jvmflags is not None:
            env["SERVER_JVMFLAGS"] = self.server_jvmflags
        return env


# zoo.cfg keys that Apache ZooKeeper reads only as JVM system properties (-Dkey=value).
JAVA_ONLY_PROPERTIES = ("readonlymode.enabled",)


class ApacheServer(ServerProcess):
    """Debian's Apache ZooKeeper: java `jvm_opts` ... QuorumPeerMain zoo.cfg, with the words
    zkServer.sh would add (jvm_flag_words)."""

    kind = "apache"

    def __init__(self, root, extra_cfg=None, port=None, jvm_opts=APACHE_SMALL_JVM_OPTS, **kw):
        super().__init__(root, extra_cfg, port, **kw)
        self.jvm_opts = tuple(jvm_opts)

    def command(self):
        cfg = merge_cfg(dict(self.defaults), self.extra_cfg)
        return apache_command(self.cfg_path, list(self.jvm_opts) + [
            # ZooKeeper reads these only as system properties without the "zookeeper." prefix
            # that zoo.cfg keys get (ContainerManager, QuorumPeer's readonlymode.enabled); zkpy
            # reads them from zoo.cfg.
            "-D%s=%s" % (k, v) for k, v in cfg.items()
            if k.startswith("znode.container.") or k in JAVA_ONLY_PROPERTIES
        ] + self.jvm_flag_words())


SERVER_CLASSES = {"zkpy": ZkpyServer, "apache": ApacheServer}
