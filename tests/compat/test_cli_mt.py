"""Apache's C client shell (cli_mt, zookeeper-bin) against each selected server.

Owns the cli_mt checks. cli_mt runs one command per process in batch mode:
`cli_mt HOST:PORT "cmd:<command>"` and prints everything on stderr, e.g.
    [/path]: rc = 0 / name = /path        (create, create2 adds a Stat dump)
    /path: rc = 0 / value_len = 3 / new   (get; then "Stat:" and the dump)
    /path: rc = -101                      (ls, delete, get on a missing node)
Its create always stores the 3 bytes "new"; flags are `+e`, `+s`, `+es`. `exists` and `myid`
never end in batch mode (synchronous in the threaded client), so they are not used here.
"""

import os
import re
import signal
import subprocess

import pytest
from kazoo.client import KazooClient

from .servers import CLI_MT, cli_mt_unavailable

pytestmark = pytest.mark.timeout(60)

SESSION_LINE = re.compile(r"Got a new session id: 0x([0-9a-f]+)")


@pytest.fixture(autouse=True)
def _need_cli_mt():
    reason = cli_mt_unavailable()
    if reason:
        pytest.skip(reason)


def cli_mt(server, command, timeout=15):
    """One batch command; returns (exit code, output lines)."""
    proc = subprocess.Popen(
        [str(CLI_MT), server.hosts, f"cmd:{command}"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"cli_mt {command!r} did not finish in {timeout}s:\n{out}")
    return proc.returncode, out.splitlines()


def session_of(lines):
    for line in lines:
        m = SESSION_LINE.search(line)
        if m:
            return int(m.group(1), 16)
    pytest.fail("cli_mt never connected:\n" + "\n".join(lines))


def stat_dump(lines):
    """The dumpStat() block: czxid, mzxid, version, aversion, ephemeralOwner (hex, no 0x)."""
    text = "\n".join(lines)
    fields = {}
    for key in ("czxid", "mzxid"):
        fields[key] = int(re.search(rf"\t{key}=([0-9a-f]+)", text).group(1), 16)
    m = re.search(r"\tversion=([0-9a-f]+)\taversion=([0-9a-f]+)", text)
    fields["version"], fields["aversion"] = int(m.group(1), 16), int(m.group(2), 16)
    fields["ephemeralOwner"] = int(re.search(r"\tephemeralOwner = ([0-9a-f]+)", text).group(1), 16)
    assert re.search(r"\tctime = \w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4}", text), text
    return fields


@pytest.fixture
def kz(shared_zk_server):
    client = KazooClient(hosts=shared_zk_server.hosts, timeout=10)
    client.start(timeout=15)
    yield client
    client.stop()
    client.close()


def test_ls_root(zk_server):
    rc, lines = cli_mt(zk_server, "ls /")
    assert rc == 0, lines
    session_of(lines)
    i = lines.index("/: rc = 0")
    assert lines[i + 1] == "\tzookeeper"
    assert not lines[i + 2].startswith("\t")


def test_create_get_set_delete(shared_zk_server, kz):
    srv = shared_zk_server
    rc, lines = cli_mt(srv, "create /cmt")
    assert "[/cmt]: rc = 0" in lines and "\tname = /cmt" in lines, lines
    assert kz.get("/cmt")[0] == b"new"

    rc, lines = cli_mt(srv, "create /cmt")
    assert "[/cmt]: rc = -110" in lines, lines  # ZNODEEXISTS

    rc, lines = cli_mt(srv, "get /cmt")
    i = lines.index("/cmt: rc = 0")
    assert lines[i + 1:i + 3] == [" value_len = 3", "new"], lines
    stat = kz.exists("/cmt")
    assert stat_dump(lines) == {"czxid": stat.czxid, "mzxid": stat.mzxid, "version": 0,
                                "aversion": 0, "ephemeralOwner": 0}

    rc, lines = cli_mt(srv, "set /cmt hello world")
    assert "/cmt: rc = 0 Stat:" in lines, lines
    dump = stat_dump(lines)
    assert dump["version"] == 1 and dump["mzxid"] > dump["czxid"] == stat.czxid
    assert kz.get("/cmt")[0] == b"hello world"

    rc, lines = cli_mt(srv, "create /cmt/child")
    assert "[/cmt/child]: rc = 0" in lines, lines
    rc, lines = cli_mt(srv, "delete /cmt")
    assert "/cmt: rc = -111" in lines, lines  # ZNOTEMPTY
    rc, lines = cli_mt(srv, "ls2 /cmt")
    i = lines.index("/cmt: rc = 0")
    assert lines[i + 1] == "\tchild", lines
    assert stat_dump(lines)["czxid"] == stat.czxid
    rc, lines = cli_mt(srv, "delete /cmt/child")
    assert "/cmt/child: rc = 0" in lines, lines
    rc, lines = cli_mt(srv, "delete /cmt")
    assert "/cmt: rc = 0" in lines, lines
    assert kz.exists("/cmt") is None

    for cmd, expect in (("get /cmt", "/cmt: rc = -101"), ("delete /cmt", "/cmt: rc = -101"),
                        ("ls /cmt", "/cmt: rc = -101"), ("set /cmt x", "/cmt: rc = -101 Stat:"),
                        ("create /cmt/x/y", "[/cmt/x/y]: rc = -101")):
        rc, lines = cli_mt(srv, cmd)
        assert expect in lines, (cmd, lines)


def test_ephemeral(shared_zk_server, kz):
    kz.create("/cmt-e")
    rc, lines = cli_mt(shared_zk_server, "create2 +e /cmt-e/eph")
    assert "[/cmt-e/eph]: rc = 0" in lines, lines
    # create2 dumps the new node's Stat: its owner is cli_mt's own session.
    assert stat_dump(lines)["ephemeralOwner"] == session_of(lines)
    # cli_mt closed its session on exit, so the node is gone.
    assert kz.get_children("/cmt-e") == []
    rc, lines = cli_mt(shared_zk_server, "create /cmt-e/eph/under")
    assert "[/cmt-e/eph/under]: rc = -101" in lines, lines


def test_sequential(shared_zk_server, kz):
    kz.create("/cmt-s")
    names = []
    for flags in ("+s", "+s", "+es"):
        rc, lines = cli_mt(shared_zk_server, f"create {flags} /cmt-s/n-")
        assert "[/cmt-s/n-]: rc = 0" in lines, lines
        (name,) = [line.split(" = ", 1)[1] for line in lines if line.startswith("\tname = ")]
        names.append(name)
    assert names == ["/cmt-s/n-0000000000", "/cmt-s/n-0000000001", "/cmt-s/n-0000000002"]
    # the +es node went with its session
    assert sorted(kz.get_children("/cmt-s")) == ["n-0000000000", "n-0000000001"]


def test_sync(shared_zk_server):
    rc, lines = cli_mt(shared_zk_server, "sync /")
    assert "[/]: rc = 0" in lines and "\tname = /" in lines, lines
