"""The compatibility tests' servers: zkpy and Apache ZooKeeper with the tests' zoo.cfg defaults,
and the availability checks the fixtures turn into pytest skips.

The servers are zkpy.testing.harness's ZkpyServer (`python -m zkpy.cli.server start-foreground
zoo.cfg`) and ApacheServer (Debian's Apache ZooKeeper 3.8 jars run with QuorumPeerMain): one
interface (start and wait, stop, kill, log, four-letter words, atexit cleanup), the same zoo.cfg,
127.0.0.1 only. This module adds what only the tests want (`cfg_defaults`: ZKPY_TEST_WORKERS)
and builds them with `make_server`. Only test code imports this module.
"""

import importlib.util
import os
import shutil
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


def cfg_defaults(kind):
    """The tests' zoo.cfg keys beside the harness's. ZKPY_TEST_WORKERS=N runs every zkpy server
    with N worker processes (0: none, clients served in the core process), so the whole suite
    can run per worker count (scripts/test_workers_matrix.sh); a test's own extra_cfg
    `workers` wins."""
    workers = os.environ.get("ZKPY_TEST_WORKERS", "").strip()
    return {"workers": workers} if kind == "zkpy" and workers else {}


UNAVAILABLE = {"zkpy": zkpy_unavailable, "apache": apache_unavailable}


def make_server(kind, tmpdir, extra_cfg=None, **kwargs):
    """A server of `kind` ("zkpy" or "apache") in `tmpdir`, not started; kwargs as
    harness.ServerProcess takes them (port, server_jvmflags, java_env, zookeeper_env)."""
    return harness.SERVER_CLASSES[kind](tmpdir, extra_cfg, defaults=cfg_defaults(kind),
                                        **kwargs)
