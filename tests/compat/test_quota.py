"""Quotas side by side with Apache ZooKeeper 3.8: zkCli setquota/listquota, then kazoo writes.

Owns the quota checks against real servers: soft limits (`setquota -n`, `-b`) never refuse a
write; hard limits (`-N`, `-B`) refuse with QuotaExceeded (-125) only when zoo.cfg has
`enforceQuota=true` (ZooKeeper turns it into zookeeper.enforceQuota); the zookeeper_stats text
after creates, setData and deletes. Every check asserts the same literal values on each server.
"""

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import QuotaExceededError

from .servers import zkcli_unavailable
from .test_zkcli import after_connect, zkcli

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(autouse=True)
def _need_zkcli():
    reason = zkcli_unavailable()
    if reason:
        pytest.skip(reason)


@pytest.fixture
def client_for():
    made = []

    def make(server):
        c = KazooClient(hosts=server.hosts, timeout=10)
        c.start(timeout=15)
        made.append(c)
        return c
    yield make
    for c in made:
        c.stop()
        c.close()


def stats(kz, path):
    return kz.get("/zookeeper/quota%s/zookeeper_stats" % path)[0].decode()


def limits(kz, path):
    return kz.get("/zookeeper/quota%s/zookeeper_limits" % path)[0].decode()


def quota_lines(lines):
    return [line for line in after_connect(lines) if line.startswith("Output ")]


def test_soft_limits_only_count(zk_kind, server_factory, client_for, tmp_path):
    server = server_factory(zk_kind)
    kz = client_for(server)
    kz.create("/q", b"ab")
    kz.create("/q/pre", b"xyz")
    kz.create("/q2")
    script = "\n".join(["setquota -n 3 /q", "setquota -B 10 /q2", "listquota /q",
                        "listquota /q2", "quit", ""])
    rc, lines = zkcli(server, stdin=script, cwd=tmp_path)
    got = quota_lines(lines)
    assert got == [
        "Output quota for /q count=3,bytes=-1=;byteHardLimit=-1;countHardLimit=-1",
        "Output stat for /q count=2,bytes=5",
        "Output quota for /q2 count=-1,bytes=-1=;byteHardLimit=10;countHardLimit=-1",
        "Output stat for /q2 count=1,bytes=0",
    ], got
    assert limits(kz, "/q") == "count=3,bytes=-1=;byteHardLimit=-1;countHardLimit=-1"
    # Past the soft count limit: the writes succeed (ZooKeeper only logs).
    for name in ("a", "b", "c"):
        kz.create("/q/" + name, b"1234")
    assert stats(kz, "/q") == "count=5,bytes=17"
    kz.create("/q/a/deep", b"")
    kz.set("/q/b", b"")
    kz.delete("/q/c")
    assert stats(kz, "/q") == "count=5,bytes=9"
    # enforceQuota is off: the hard byte limit is not enforced either.
    kz.create("/q2/big", b"x" * 20)
    kz.create("/q2/e", b"e" * 3, ephemeral=True)
    assert stats(kz, "/q2") == "count=3,bytes=23"
    kz.stop()  # closing the session deletes the ephemeral
    kz.start(timeout=15)
    assert stats(kz, "/q2") == "count=2,bytes=20"
    kz.create("/other", b"zz")
    assert stats(kz, "/q") == "count=5,bytes=9"
    # The stats survive a restart (zkpy: LMDB and log replay; ZooKeeper: snapshot + log).
    kz.stop()
    server.restart()
    kz.start(timeout=15)
    assert stats(kz, "/q") == "count=5,bytes=9"
    assert stats(kz, "/q2") == "count=2,bytes=20"


def test_hard_limits_with_enforce_quota(zk_kind, server_factory, client_for, tmp_path):
    server = server_factory(zk_kind, {"enforceQuota": "true"})
    kz = client_for(server)
    for p in ("/q", "/q2", "/q3"):
        kz.create(p)
    script = "\n".join(["setquota -n 3 /q", "setquota -B 10 /q2", "setquota -N 2 /q3",
                        "quit", ""])
    zkcli(server, stdin=script, cwd=tmp_path)
    # soft count limit: logged, the write goes through
    for name in ("a", "b", "c"):
        kz.create("/q/" + name)
    assert stats(kz, "/q") == "count=4,bytes=0"
    # hard byte limit
    kz.create("/q2/a", b"x" * 8)
    with pytest.raises(QuotaExceededError):
        kz.create("/q2/b", b"y" * 3)
    with pytest.raises(QuotaExceededError):
        kz.set("/q2/a", b"x" * 11)
    kz.set("/q2/a", b"x" * 10)
    kz.create("/q2/empty")
    assert stats(kz, "/q2") == "count=3,bytes=10"
    # hard count limit (the quota root counts)
    kz.create("/q3/a")
    with pytest.raises(QuotaExceededError):
        kz.create("/q3/b")
    t = kz.transaction()
    t.create("/q/m")
    t.create("/q3/m")
    results = t.commit()
    assert isinstance(results[1], QuotaExceededError), results
    assert kz.exists("/q/m") is None
    kz.delete("/q3/a")
    kz.create("/q3/b")
    assert stats(kz, "/q3") == "count=2,bytes=0"
    assert stats(kz, "/q") == "count=4,bytes=0"
