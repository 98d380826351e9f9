"""Apache's Java CLI (zkCli.sh) against each selected server.

Owns the zkCli.sh checks: one-shot commands (`zkCli.sh -server HOST:PORT cmd args`) and
scripted sessions fed on stdin, asserting on what zkCli prints (results on stdout, messages
such as "Created /x" or "Node does not exist: /x" on stderr; both are read merged, in order).
Each invocation starts a JVM (~0.5-1 s), so most checks share a few stdin scripts.
"""

import os
import re
import signal
import subprocess

import pytest
from kazoo.client import KazooClient

from .servers import ZKCLI, zkcli_unavailable

pytestmark = pytest.mark.timeout(120)

STAT_KEYS = ["cZxid", "ctime", "mZxid", "mtime", "pZxid", "cversion", "dataVersion",
             "aclVersion", "ephemeralOwner", "dataLength", "numChildren"]
JAVA_DATE = re.compile(r"\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \S+ \d{4}")
CONNECTED = "WatchedEvent state:SyncConnected type:None path:null"


@pytest.fixture(autouse=True)
def _need_zkcli():
    reason = zkcli_unavailable()
    if reason:
        pytest.skip(reason)


@pytest.fixture(scope="module")
def cli_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("zkcli")


def zkcli(server, *args, stdin=None, cwd, timeout=60):
    """Run zkCli.sh; returns (exit code, output lines without SLF4J noise)."""
    env = dict(os.environ)
    # Debian's zkEnv.sh forces ZOO_LOG_DIR=/var/log/zookeeper; the later -D wins, and with
    # no slf4j binding on zkCli's classpath nothing is logged to a file anyway.
    env["ZOO_LOG_DIR"] = str(cwd)
    env["CLIENT_JVMFLAGS"] = (f"-Dzookeeper.log.dir={cwd} -Xmx128m -XX:+UseSerialGC "
                              "-XX:TieredStopAtLevel=1")
    # zkCli.sh runs java as a child of bash: a process group lets a timeout reap both.
    proc = subprocess.Popen(
        [str(ZKCLI), "-server", server.hosts, *args],
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=cwd,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(stdin, timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"zkCli.sh {args} timed out after {timeout}s:\n{out}")
    lines = [line for line in out.splitlines() if not line.startswith("SLF4J:")]
    return proc.returncode, lines


def after_connect(lines):
    """What zkCli printed for its commands: the lines after its SyncConnected event, plus any
    command output that came before it. zkCli's event thread prints the event while its main
    thread may already print a one-shot command's result ("[zookeeper]" before the event, on a
    loaded machine), so what precedes the event is kept but for the banner, the connection's
    WATCHER:: line and blank lines."""
    assert CONNECTED in lines, "zkCli never connected:\n" + "\n".join(lines)
    at = lines.index(CONNECTED)
    start = next((i + 1 for i, line in enumerate(lines[:at]) if line.startswith("Connecting to ")),
                 0)
    early = [line for line in lines[start:at] if line and line != "WATCHER::"
             and not line.startswith(("Welcome to ZooKeeper!", "JLine support is"))]
    return early + lines[at + 1:]


def assert_in_order(lines, expected):
    """Each expected item (exact line, or compiled regex) appears, in this order."""
    pos = 0
    for item in expected:
        for i in range(pos, len(lines)):
            line = lines[i]
            if (item.fullmatch(line) if isinstance(item, re.Pattern) else line == item):
                pos = i + 1
                break
        else:
            pytest.fail(f"expected {item!r} after line {pos} in:\n" + "\n".join(
                f"{n:3} {line}" for n, line in enumerate(lines)))
    return pos


def stat_blocks(lines):
    """Every 11-line Stat block zkCli printed, as dicts."""
    blocks = []
    for i, line in enumerate(lines):
        if line.startswith("cZxid = ") and i + len(STAT_KEYS) <= len(lines):
            block = dict(l.split(" = ", 1) for l in lines[i:i + len(STAT_KEYS)])
            assert list(block) == STAT_KEYS, lines[i:i + len(STAT_KEYS)]
            blocks.append(block)
    return blocks


def check_stat_block(block, stat):
    """zkCli's Stat text for a node against kazoo's ZnodeStat of the same state."""
    assert block["cZxid"] == hex(stat.czxid)
    assert block["mZxid"] == hex(stat.mzxid)
    assert block["pZxid"] == hex(stat.pzxid)
    assert JAVA_DATE.fullmatch(block["ctime"]), block["ctime"]
    assert JAVA_DATE.fullmatch(block["mtime"]), block["mtime"]
    assert block["cversion"] == str(stat.cversion)
    assert block["dataVersion"] == str(stat.version)
    assert block["aclVersion"] == str(stat.aversion)
    assert block["ephemeralOwner"] == hex(stat.ephemeralOwner)
    assert block["dataLength"] == str(stat.dataLength)
    assert block["numChildren"] == str(stat.numChildren)


@pytest.fixture
def kz(shared_zk_server):
    client = KazooClient(hosts=shared_zk_server.hosts, timeout=10)
    client.start(timeout=15)
    yield client
    client.stop()
    client.close()


def test_ls_root_one_shot(zk_server, cli_dir):
    rc, lines = zkcli(zk_server, "ls", "/", cwd=cli_dir)
    assert rc == 0, lines
    assert after_connect(lines) == ["[zookeeper]"]


def test_one_shot_create_and_missing_node(shared_zk_server, cli_dir, kz):
    rc, lines = zkcli(shared_zk_server, "create", "/cli-one", "hello", cwd=cli_dir)
    assert rc == 0, lines
    assert "Created /cli-one" in after_connect(lines)
    assert kz.get("/cli-one")[0] == b"hello"

    rc, lines = zkcli(shared_zk_server, "get", "/cli-missing", cwd=cli_dir)
    assert rc == 1, lines  # zkCli exits 1 when the command failed
    assert after_connect(lines)[-1] == "Node does not exist: /cli-missing"


def test_scripted_crud_session(shared_zk_server, cli_dir, kz):
    script = "\n".join([
        "create /cli-s hello",
        "get /cli-s",
        "set /cli-s world",
        "get -s /cli-s",
        "stat /cli-s",
        "create /cli-s again",
        "create /cli-s/c1 child",
        "ls /cli-s",
        "ls -s /cli-s",
        "delete /cli-s",
        "set /cli-s x -v 9",
        "delete -v 9 /cli-s/c1",
        "delete /cli-s/c1",
        "delete /cli-s/c1",
        "get /cli-s/c1",
        "stat /cli-nope",
        "ls /cli-nope",
        "sync /cli-s",
        "delete /zookeeper",
        "getAllChildrenNumber /cli-s",
        "quit",
    ]) + "\n"
    rc, lines = zkcli(shared_zk_server, stdin=script, cwd=cli_dir)
    lines = after_connect(lines)
    assert_in_order(lines, [
        "Created /cli-s",
        "hello",
        "world",
        "cZxid = " + hex(kz.exists("/cli-s").czxid),
        "Node already exists: /cli-s",
        "Created /cli-s/c1",
        "[c1]",
        "[c1]",
        "numChildren = 1",
        "Node not empty: /cli-s",
        "version No is not valid : /cli-s",
        "version No is not valid : /cli-s/c1",
        "Node does not exist: /cli-s/c1",
        "Node does not exist: /cli-s/c1",
        "Node does not exist: /cli-nope",
        "Node does not exist: /cli-nope",
        "Sync is OK",
        "Arguments are not valid : /zookeeper",
        "0",
    ])
    # get -s, stat and ls -s print Stat blocks; the first two describe /cli-s before c1 existed.
    blocks = stat_blocks(lines)
    assert len(blocks) == 3, lines
    assert blocks[0] == blocks[1]
    first = blocks[0]
    assert first["dataVersion"] == "1" and first["dataLength"] == "5"
    assert first["numChildren"] == "0" and first["cversion"] == "0"
    assert first["ephemeralOwner"] == "0x0" and first["aclVersion"] == "0"
    assert int(first["mZxid"], 16) > int(first["cZxid"], 16) == int(first["pZxid"], 16)
    data, stat = kz.get("/cli-s")
    assert data == b"world"
    # Since then c1 was created and deleted: cversion reports 2, numChildren 0.
    assert stat.cversion == 2 and stat.numChildren == 0
    check_stat_block({**blocks[2], "pZxid": hex(stat.pzxid), "cversion": str(stat.cversion),
                      "numChildren": "0"}, stat)


def test_scripted_ephemeral_and_sequential(shared_zk_server, cli_dir, kz):
    kz.create("/cli-eph")
    script = "\n".join([
        "create -e /cli-eph/e1 eph",
        "create -s /cli-eph/q- a",
        "create -s /cli-eph/q- b",
        "create -s -e /cli-eph/qe- c",
        "create /cli-eph/e1/child",
        "ls /cli-eph",
        "stat /cli-eph/e1",
        "getEphemerals /cli-eph",
        "quit",
    ]) + "\n"
    rc, lines = zkcli(shared_zk_server, stdin=script, cwd=cli_dir)
    lines = after_connect(lines)
    assert_in_order(lines, [
        "Created /cli-eph/e1",
        "Created /cli-eph/q-0000000001",
        "Created /cli-eph/q-0000000002",
        "Created /cli-eph/qe-0000000003",
        "Ephemerals cannot have children: /cli-eph/e1/child",
        "[e1, q-0000000001, q-0000000002, qe-0000000003]",
        re.compile(r"ephemeralOwner = 0x[0-9a-f]+"),
        re.compile(r"\[(/cli-eph/e1, /cli-eph/qe-0000000003|/cli-eph/qe-0000000003, /cli-eph/e1)\]"),
    ])
    (block,) = stat_blocks(lines)
    assert block["ephemeralOwner"] != "0x0"
    # quit closed the session: its ephemerals are gone, the sequential nodes stay.
    assert sorted(kz.get_children("/cli-eph")) == ["q-0000000001", "q-0000000002"]


def test_scripted_tree_commands(shared_zk_server, cli_dir, kz):
    script = "\n".join([
        "create /cli-tree",
        "create /cli-tree/a",
        "create /cli-tree/a/b",
        "create /cli-tree/c",
        "ls -R /cli-tree",
        "getAllChildrenNumber /cli-tree",
        "deleteall /cli-tree",
        "ls /cli-tree",
        "set /zookeeper zkdata",
        "get /zookeeper",
        "getAcl /cli-nope",
        "create /cli-acl",
        "getAcl /cli-acl",
        "quit",
    ]) + "\n"
    rc, lines = zkcli(shared_zk_server, stdin=script, cwd=cli_dir)
    lines = after_connect(lines)
    assert_in_order(lines, [
        "Created /cli-tree/c",
        "/cli-tree",
        re.compile(r"/cli-tree/(a|c)"),
        "3",
        "Node does not exist: /cli-tree",
        "zkdata",
        "Node does not exist: /cli-nope",
        "Created /cli-acl",
        "'world,'anyone",
        ": cdrwa",
    ])
    i = lines.index("/cli-tree")
    assert sorted(lines[i:i + 4]) == ["/cli-tree", "/cli-tree/a", "/cli-tree/a/b", "/cli-tree/c"]
    assert kz.exists("/cli-tree") is None


def _normalised(lines):
    """Lines with session ids and ephemeral owners made comparable across servers."""
    return [re.sub(r"0x[0-9a-f]{6,}", "0xSID", line) for line in lines
            if not line.startswith(("WATCHER::", "WatchedEvent")) and line]


def test_scripted_acl_auth_whoami_ephemerals_same_as_apache(zk_targets, server_factory, cli_dir):
    """setAcl/getAcl/addauth/whoami/getEphemerals/getAllChildrenNumber through zkCli.sh: the
    same script against both servers prints the same thing."""
    owner_script = "\n".join([
        "create /cli-auth data",
        "addauth digest bob:pw",
        "setAcl /cli-auth auth::cdrwa",
        "getAcl /cli-auth",
        "whoami",
        "create -e /cli-auth/e1 x",
        "create -e /cli-auth/e2 y",
        "getEphemerals /cli-auth",
        "getAllChildrenNumber /cli-auth",
        "setAcl -v 0 /cli-auth auth::cdrwa",
        "getAcl -s /cli-auth",
        "quit",
    ]) + "\n"
    other_script = "\n".join([
        "get /cli-auth",
        "getAcl /cli-auth",
        "setAcl /cli-auth world:anyone:cdrwa",
        "addauth digest bob:pw",
        "get /cli-auth",
        "whoami",
        "quit",
    ]) + "\n"
    outputs = {}
    for kind in zk_targets:
        srv = server_factory(kind)
        _, owner = zkcli(srv, stdin=owner_script, cwd=cli_dir)
        _, other = zkcli(srv, stdin=other_script, cwd=cli_dir)
        outputs[kind] = (_normalised(after_connect(owner)), _normalised(after_connect(other)))
    for owner, other in outputs.values():
        assert_in_order(owner, [
            "Created /cli-auth",
            # DigestAuthenticationProvider.generateDigest("bob:pw"), printed by the 3.8.0 jar
            "'digest,'bob:ikIaKsbtGweaHnb/jKn7OHqbunM=",
            ": cdrwa",
            re.compile(r"Auth scheme: User"),
            "digest: bob",
            "Created /cli-auth/e1",
            "Created /cli-auth/e2",
            re.compile(r"\[/cli-auth/e[12], /cli-auth/e[12]\]"),
            "2",
        ])
        assert_in_order(other, [
            "Insufficient permission : /cli-auth",
            "Insufficient permission : /cli-auth",
            "Insufficient permission : /cli-auth",
            "data",
            "digest: bob",
        ])
    if len(outputs) == 2:
        import difflib
        for part, (z, a) in enumerate(zip(outputs["zkpy"], outputs["apache"])):
            z = [line for line in z if not line.startswith(("ctime", "mtime"))]
            a = [line for line in a if not line.startswith(("ctime", "mtime"))]
            assert z == a, "\n".join(difflib.unified_diff(a, z, "apache", "zkpy", lineterm=""))
