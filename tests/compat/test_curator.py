"""Apache Curator (Debian's libcurator-recipes-java, Curator 5.4) against each selected server.

Owns the Curator check: tests/compat/curator/CuratorCheck.java is compiled once per module
(javac -d into a tmp dir) and run against a fresh server of each kind. It exercises what JVM
services use ZooKeeper for: InterProcessMutex across sessions, LeaderLatch failover,
CuratorCache and PathChildrenCache events, and the CONTAINER parents Curator creates for all
of them. It prints "OK <name>" or "FAIL <name> <reason>" per check; every line must be OK.

Needs java + javac and the jars below (apt-get install libcurator-recipes-java, which pulls in
libcurator-framework-java, libcurator-client-java, libguava-java, libslf4j-java and
libzookeeper-java); skipped with the reason when they are missing.
"""

import shutil
import subprocess
from pathlib import Path

import pytest

from .servers import JAVA_DIR

pytestmark = pytest.mark.timeout(120)

SOURCE = Path(__file__).resolve().parent / "curator" / "CuratorCheck.java"
APT_HINT = "apt-get install libcurator-recipes-java"
# Named one by one: /usr/share/java holds several slf4j bindings (see servers.APACHE_JARS).
# The ZooKeeper client's default NIO socket needs no netty; jackson is only for Curator's
# schema JSON, which the checks don't touch.
CURATOR_JARS = [
    "curator-recipes.jar",
    "curator-framework.jar",
    "curator-client.jar",
    "guava.jar",  # Debian's guava bundles failureaccess
    "zookeeper.jar",
    "zookeeper-jute.jar",
    "slf4j-api.jar",
    "slf4j-simple.jar",
]
CHECKS = ["containers", "mutex", "leader_latch", "curator_cache", "path_children_cache"]
# CuratorCheck's own watchdog ends it after 60 s; this only catches a JVM that won't die.
RUN_TIMEOUT = 90
JVM_FLAGS = [
    # Small, quick JVM: 2 cores shared with the servers under test.
    "-Xmx128m",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
]


def curator_unavailable():
    for tool in ("java", "javac"):
        if shutil.which(tool) is None:
            return f"Curator check needs {tool}, not found (apt-get install default-jdk-headless)"
    missing = [j for j in CURATOR_JARS if not (JAVA_DIR / j).exists()]
    if missing:
        return f"Curator not installed (missing {', '.join(missing)} in {JAVA_DIR}): {APT_HINT}"
    return None


@pytest.fixture(scope="module")
def curator_classpath(tmp_path_factory):
    reason = curator_unavailable()
    if reason:
        pytest.skip(reason)
    jars = ":".join(str(JAVA_DIR / j) for j in CURATOR_JARS)
    out = tmp_path_factory.mktemp("curator-classes")
    proc = subprocess.run(
        ["javac", "-nowarn", "-encoding", "UTF-8", "-d", str(out), "-cp", jars, str(SOURCE)],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, f"javac failed:\n{proc.stdout}\n{proc.stderr}"
    return f"{out}:{jars}"


def run_check(classpath, hosts):
    try:
        proc = subprocess.run(
            ["java", *JVM_FLAGS, "-cp", classpath, "CuratorCheck", hosts],
            capture_output=True, text=True, timeout=RUN_TIMEOUT,
        )
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"CuratorCheck still running after {RUN_TIMEOUT}s:\n{e.stdout}\n{e.stderr}")
    return proc


def test_curator_recipes(zk_kind, zk_server, curator_classpath):
    proc = run_check(curator_classpath, zk_server.hosts)
    lines = proc.stdout.splitlines()
    report = f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr (tail):\n{proc.stderr[-6000:]}"

    if zk_kind == "zkpy" and any(
        line.startswith("FAIL containers UNIMPLEMENTED") for line in lines
    ):
        # Curator creates every recipe's parents as CONTAINER nodes; until zkpy serves them
        # nothing else can work. Only this cause is excused: any other failure fails.
        pytest.xfail("containers not served yet (createContainer answered UNIMPLEMENTED)")

    results = {}
    for line in lines:
        status, _, rest = line.partition(" ")
        name = rest.split(" ", 1)[0]
        assert status in ("OK", "FAIL"), f"unexpected output line {line!r}\n{report}"
        results[name] = line
    assert list(results) == CHECKS, f"checks run {list(results)} != {CHECKS}\n{report}"
    failed = [line for line in results.values() if not line.startswith("OK ")]
    assert not failed, "\n".join(failed) + "\n" + report
    assert proc.returncode == 0, report
