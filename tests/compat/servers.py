"""The compatibility tests' servers: zkpy and Apache ZooKeeper with the tests' zoo.cfg, JVM flags
and environment, and the availability checks the fixtures turn into pytest skips.

`ZkpyServer` (our server, run as `python -m zkpy.cli.server start-foreground zoo.cfg`) and
`ApacheZkServer` (Debian's Apache ZooKeeper 3.8 jars run with QuorumPeerMain) have one interface:
zkpy.testing.harness's ServerProcess (start and wait, stop, kill, log, four-letter words, atexit
cleanup), which this module re-exports for the tests. Only test code imports this module.

Both servers get the same zoo.cfg (keys below plus `extra_cfg`) and listen on 127.0.0.1 only.
"""

import importlib.util
import os
import shutil
import subprocess
from pathlib import Path

from zkpy.testing import harness
from zkpy.testing.harness import (  # noqa: F401 (re-exported for the tests)
    APACHE_JARS, JAVA_DIR, NOT_SERVING, four_letter, free_port)

ServerStartError = harness.ServerError

REPO_ROOT = Path(__file__).resolve().parents[2]
ZKCLI = Path("/usr/share/zookeeper/bin/zkCli.sh")
CLI_MT = Path("/usr/lib/zookeeper/bin/cli_mt")
APT_HINT = "apt-get install zookeeper zookeeper-bin"


# ---------------------------------------------------------------------------------------------
# Availability checks: each returns None when usable, else the reason to skip.


def apache_unavailable():
    why = harness.apache_missing()
    return f"Apache ZooKeeper not installed ({why}): {APT_HINT}" if why else None


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
        if importlib.util.find_spec("zkpy.cli.server") is None:
            return "zkpy server not built yet (module zkpy.cli.server missing)"
    except ImportError as e:  # zkpy or zkpy.cli itself fails to import
        return f"zkpy server not importable: {e}"
    return None


# ---------------------------------------------------------------------------------------------


class _Server(harness.ServerProcess):
    """The tests' zoo.cfg and JVM flags; subclasses say which command runs it."""

    def __init__(self, tmpdir, extra_cfg=None, port=None, server_jvmflags=None, java_env=None,
                 zookeeper_env=None):
        super().__init__(tmpdir, port=port, extra_cfg=extra_cfg)
        # ZooKeeper's JVM flags as an operator passes them: SERVER_JVMFLAGS in the environment,
        # conf/zookeeper-env.sh and conf/java.env beside zoo.cfg (sourced by zkEnv.sh, in that
        # order). zkpy-server reads them itself; the Apache server gets the words zkServer.sh
        # would put on its java command line.
        self.server_jvmflags = server_jvmflags
        self.java_env = java_env
        self.zookeeper_env = zookeeper_env
        self.root.mkdir(parents=True, exist_ok=True)

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
        # None removes a default key (e.g. to test the 4lw default whitelist).
        return harness.merge_cfg(cfg, self.extra_cfg)

    def write_config(self):
        super().write_config()
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
        return harness.zkpy_command(self.cfg_path)

    def env(self):
        env = harness.zkpy_env()
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
        return harness.apache_command(self.cfg_path, list(harness.APACHE_SMALL_JVM_OPTS) + [
            # ZooKeeper reads these only as system properties without the "zookeeper." prefix
            # that zoo.cfg keys get (ContainerManager, QuorumPeer's readonlymode.enabled); zkpy
            # reads them from zoo.cfg.
            "-D%s=%s" % (k, v) for k, v in self.extra_cfg.items()
            if (k.startswith("znode.container.") or k in JAVA_ONLY_PROPERTIES) and v is not None
        ] + self.jvm_flag_words())


SERVER_CLASSES = {"zkpy": ZkpyServer, "apache": ApacheZkServer}
UNAVAILABLE = {"zkpy": zkpy_unavailable, "apache": apache_unavailable}


def make_server(kind, tmpdir, extra_cfg=None, **kwargs):
    return SERVER_CLASSES[kind](tmpdir, extra_cfg, **kwargs)
