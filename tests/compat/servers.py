"""Start and stop real server processes for the compatibility tests.

Owns the process harness used by tests/compat and tests/conftest.py: `ZkpyServer` (our server,
run as `python -m zkpy.cli.server start-foreground zoo.cfg`) and `ApacheZkServer` (Debian's
Apache ZooKeeper 3.8 jars run with QuorumPeerMain), both with the same interface, plus the
availability checks the fixtures turn into pytest skips and a four-letter-word helper.
Only test code imports this module; it does I/O (processes, sockets, files) freely.

Both servers get the same zoo.cfg (keys below plus `extra_cfg`) and listen on 127.0.0.1 only.
"""

import atexit
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

# The Debian jars, named one by one (a wildcard classpath would pull in every slf4j binding in
# /usr/share/java and slf4j would pick one at random), and the small socket helpers are the
# benchmark's: one list for both.
from zkpy.bench.servers import APACHE_JARS, JAVA_DIR, free_port  # noqa: F401 (re-exported)
from zkpy.bench.servers import four_letter as _four_letter

REPO_ROOT = Path(__file__).resolve().parents[2]
ZKCLI = Path("/usr/share/zookeeper/bin/zkCli.sh")
CLI_MT = Path("/usr/lib/zookeeper/bin/cli_mt")
APT_HINT = "apt-get install zookeeper zookeeper-bin"

START_TIMEOUT = 30.0
NOT_SERVING = "This ZooKeeper instance is not currently serving requests"
STOP_TIMEOUT = 10.0


def four_letter(port, cmd, host="127.0.0.1", timeout=5.0):
    """Send a four-letter word on the client port and return the whole text answer."""
    return _four_letter(port, cmd, host=host, timeout=timeout)


# ---------------------------------------------------------------------------------------------
# Availability checks: each returns None when usable, else the reason to skip.


def apache_unavailable():
    if shutil.which("java") is None:
        return f"Apache ZooKeeper needs java, not found: {APT_HINT}"
    missing = [j for j in APACHE_JARS if not (JAVA_DIR / j).exists()]
    if missing:
        return f"Apache ZooKeeper not installed (missing {', '.join(missing)}): {APT_HINT}"
    return None


def zkcli_unavailable():
    if shutil.which("java") is None or not ZKCLI.exists():
        return f"zkCli.sh not installed ({ZKCLI}): {APT_HINT}"
    return None


def cli_mt_unavailable():
    if not os.access(CLI_MT, os.X_OK):
        return f"cli_mt not installed ({CLI_MT}): apt-get install zookeeper-bin"
    return None


def zkpy_unavailable():
    try:
        import importlib.util

        if importlib.util.find_spec("zkpy.cli.server") is None:
            return "zkpy server not built yet (module zkpy.cli.server missing)"
    except ImportError as e:  # zkpy or zkpy.cli itself fails to import
        return f"zkpy server not importable: {e}"
    return None


# ---------------------------------------------------------------------------------------------


class ServerStartError(RuntimeError):
    pass


# Servers still running when the interpreter exits (a test run cut short) are killed here.
_LIVE = set()


@atexit.register
def _kill_leftovers():
    for server in list(_LIVE):
        try:
            server.kill()
        except Exception:
            pass


class _Server:
    """One server process in its own directory; subclasses say which command runs it."""

    kind = "?"

    def __init__(self, tmpdir, extra_cfg=None, port=None, server_jvmflags=None, java_env=None,
                 zookeeper_env=None):
        self.root = Path(tmpdir)
        # ZooKeeper's JVM flags as an operator passes them: SERVER_JVMFLAGS in the environment,
        # conf/zookeeper-env.sh and conf/java.env beside zoo.cfg (sourced by zkEnv.sh, in that
        # order). zkpy-server reads them itself; the Apache server gets the words zkServer.sh
        # would put on its java command line.
        self.server_jvmflags = server_jvmflags
        self.java_env = java_env
        self.zookeeper_env = zookeeper_env
        self.root.mkdir(parents=True, exist_ok=True)
        self.data_dir = self.root / "data"
        self.cfg_path = self.root / "zoo.cfg"
        self.log_path = self.root / "server.log"
        self.extra_cfg = dict(extra_cfg or {})
        self._auto_port = port is None
        self.port = port or free_port()
        self.proc = None
        self._log_file = None
        self._started_once = False

    # -- configuration ------------------------------------------------------------------------
    def config(self):
        cfg = {
            "tickTime": "2000",
            "dataDir": str(self.data_dir),
            "clientPort": str(self.port),
            "clientPortAddress": "127.0.0.1",
            "maxClientCnxns": "60",
            "4lw.commands.whitelist": "*",
            "admin.enableServer": "false",
        }
        for k, v in self.extra_cfg.items():
            if v is None:  # None removes a default key (e.g. to test the 4lw default whitelist)
                cfg.pop(k, None)
            else:
                cfg[k] = str(v)
        return cfg

    def write_config(self):
        self.data_dir.mkdir(parents=True, exist_ok=True)
        text = "".join(f"{k}={v}\n" for k, v in self.config().items())
        self.cfg_path.write_text(text)
        for name, text in (("java.env", self.java_env), ("zookeeper-env.sh", self.zookeeper_env)):
            env_file = self.root / name
            if text is not None:
                env_file.write_text(text)
            elif env_file.exists():
                env_file.unlink()

    def jvm_flag_words(self):
        """The words zkServer.sh passes to java: "$SERVER_JVMFLAGS $JVMFLAGS" after sourcing
        zookeeper-env.sh and java.env (bash does the sourcing here, as zkEnv.sh would)."""
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

    # -- process ------------------------------------------------------------------------------
    @property
    def hosts(self):
        return f"127.0.0.1:{self.port}"

    def command(self):
        raise NotImplementedError

    def env(self):
        return dict(os.environ)

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout=START_TIMEOUT):
        """Write zoo.cfg, start the process, wait until it serves. Returns self."""
        if self.running():
            raise ServerStartError(f"{self.kind} server already running")
        for attempt in range(3):
            try:
                self._start_once(timeout)
                break
            except ServerStartError as e:
                # free_port() can race with another process; a first start may move on.
                lost_port = "already in use" in str(e).lower()
                if not (lost_port and self._auto_port and not self._started_once) or attempt == 2:
                    raise
                self.port = free_port()
        self._started_once = True
        return self

    def _start_once(self, timeout):
        self.write_config()
        self._log_file = open(self.log_path, "ab")
        self._log_file.write(f"==== start {' '.join(self.command())}\n".encode())
        self._log_file.flush()
        # Own session (process group) so stop/kill reach anything the server forks.
        self.proc = subprocess.Popen(
            self.command(),
            cwd=self.root,
            env=self.env(),
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        _LIVE.add(self)
        self._wait_ready(timeout)

    def _wait_ready(self, timeout):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                code = self._reap()
                raise ServerStartError(
                    f"{self.kind} server exited with {code} during start\n"
                    f"--- log tail ({self.log_path}) ---\n{self.log_tail()}"
                )
            try:
                answer = four_letter(self.port, "ruok", timeout=2.0)
                # A whitelist without ruok still proves the port is served.
                if answer == "imok" or answer.startswith("ruok is not executed"):
                    # Apache answers imok as soon as the port is bound, before the database
                    # is loaded; srvr (always whitelisted) says when requests are served.
                    answer = four_letter(self.port, "srvr", timeout=2.0)
                    if NOT_SERVING not in answer:
                        self._check_port_is_ours()
                        return
                last = repr(answer)
            except OSError as e:
                last = repr(e)
            time.sleep(0.1)
        self.kill()
        raise ServerStartError(
            f"{self.kind} server not answering ruok on {self.hosts} after {timeout:.0f}s "
            f"(last: {last})\n--- log tail ({self.log_path}) ---\n{self.log_tail()}"
        )

    def _check_port_is_ours(self):
        """Another server could hold the port free_port() picked: conf names its dataDir."""
        conf = four_letter(self.port, "conf", timeout=2.0)
        for line in conf.splitlines():
            if line.startswith("dataDir=") and not line[8:].startswith(str(self.data_dir)):
                self.kill()
                raise ServerStartError(
                    f"port {self.port} already in use by another server ({line})")

    def _signal(self, sig):
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass

    def stop(self, timeout=STOP_TIMEOUT):
        """SIGTERM, wait up to `timeout`, then SIGKILL. Returns the exit code."""
        if self.proc is None:
            return None
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

    # -- inspection ---------------------------------------------------------------------------
    def log_text(self):
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines=40):
        return "\n".join(self.log_text().splitlines()[-lines:])

    def four_letter(self, cmd, timeout=5.0):
        return four_letter(self.port, cmd, timeout=timeout)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def __repr__(self):
        return f"<{type(self).__name__} {self.hosts} {self.root}>"


class ZkpyServer(_Server):
    kind = "zkpy"

    def config(self):
        cfg = super().config()
        # ZKPY_TEST_WORKERS=N runs every zkpy server with N worker processes (0: none, clients
        # served in the core process), so the whole suite can run per worker count
        # (scripts/test_workers_matrix.sh). A test's own extra_cfg `workers` wins.
        workers = os.environ.get("ZKPY_TEST_WORKERS", "").strip()
        if workers and "workers" not in self.extra_cfg:
            cfg["workers"] = workers
        return cfg

    def command(self):
        return [sys.executable, "-m", "zkpy.cli.server", "start-foreground", str(self.cfg_path)]

    def env(self):
        env = dict(os.environ)
        # Runs from the checkout even when zkpy is not pip-installed.
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p
        )
        env["PYTHONUNBUFFERED"] = "1"
        env.pop("SERVER_JVMFLAGS", None)
        env.pop("JVMFLAGS", None)
        env.pop("ZOOCFGDIR", None)
        if self.server_jvmflags is not None:
            env["SERVER_JVMFLAGS"] = self.server_jvmflags
        return env


# zoo.cfg keys that Apache ZooKeeper reads only as JVM system properties (-Dkey=value).
JAVA_ONLY_PROPERTIES = ("readonlymode.enabled",)


class ApacheZkServer(_Server):
    kind = "apache"

    def command(self):
        cp = ":".join(str(JAVA_DIR / j) for j in APACHE_JARS)
        return [
            "java",
            # Small, quick JVM: the machine has 2 cores shared with other test servers.
            "-Xmx256m",
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",
            "-Dzookeeper.jmx.log4j.disable=true",
            # 64 MB of txn-log preallocation per test server is pointless; 1 MB will do.
            "-Dzookeeper.preAllocSize=1024",
            "-Dorg.slf4j.simpleLogger.showDateTime=true",
        ] + [
            # ZooKeeper reads these only as system properties without the "zookeeper." prefix
            # that zoo.cfg keys get (ContainerManager, QuorumPeer's readonlymode.enabled); zkpy
            # reads them from zoo.cfg.
            "-D%s=%s" % (k, v) for k, v in self.extra_cfg.items()
            if (k.startswith("znode.container.") or k in JAVA_ONLY_PROPERTIES) and v is not None
        ] + self.jvm_flag_words() + [
            "-cp",
            cp,
            "org.apache.zookeeper.server.quorum.QuorumPeerMain",
            str(self.cfg_path),
        ]


SERVER_CLASSES = {"zkpy": ZkpyServer, "apache": ApacheZkServer}
UNAVAILABLE = {"zkpy": zkpy_unavailable, "apache": apache_unavailable}


def make_server(kind, tmpdir, extra_cfg=None, **kwargs):
    return SERVER_CLASSES[kind](tmpdir, extra_cfg, **kwargs)
