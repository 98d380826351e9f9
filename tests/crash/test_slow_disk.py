"""A slow log fsync is reported as ZooKeeper reports it: a WARNING past fsync.warningthresholdms
and mntr's zk_fsync_threshold_exceed_count (its AdminServer `monitor` mirrors mntr).

The first test sets fsync.warningthresholdms=0, which makes every fsync "slow" on any disk; the
others put dataDir on crashfs with every fsync really delayed (50 / 300 ms). The unit tests
(tests/unit/test_txnlog.py) slow fdatasync down with a monkeypatch and check the exact text.
"""

import re

import pytest

from compat.servers import make_server, zkpy_unavailable

pytestmark = [pytest.mark.timeout(60)]


def _count(srv):
    m = re.search(r"^zk_fsync_threshold_exceed_count\t(\d+)$", srv.four_letter("mntr"), re.M)
    assert m, srv.four_letter("mntr")
    return int(m.group(1))


def test_fsync_over_threshold_warns_and_counts(tmp_path):
    reason = zkpy_unavailable()
    if reason:
        pytest.skip(reason)
    from kazoo.client import KazooClient

    with make_server("zkpy", tmp_path / "fast") as fast:
        assert _count(fast) == 0
    srv = make_server("zkpy", tmp_path / "slow", {"fsync.warningthresholdms": "0"})
    with srv:
        zk = KazooClient(hosts=srv.hosts, timeout=10.0)
        zk.start(timeout=15)
        try:
            for i in range(5):
                zk.create("/slow-%d" % i, b"x")   # each one an fsync (one client, one at a time)
        finally:
            zk.stop()
            zk.close()
        assert _count(srv) >= 5
    warnings = [line for line in srv.log_text().splitlines()
                if "fsync-ing the write ahead log in " in line]
    assert len(warnings) >= 5
    assert re.search(r" - WARNING \[zkpy\.txnlog\] - fsync-ing the write ahead log in \S+ took "
                     r"\d+ms which will adversely effect operation latency\. File size is \d+ "
                     r"bytes\. See the ZooKeeper troubleshooting guide$", warnings[0]), warnings[0]


@pytest.mark.parametrize("delay_ms", [50, 300])
def test_really_slow_disk_slows_writes_and_breaks_nothing(tmp_path, crashfs, delay_ms):
    """dataDir on crashfs with every fsync delayed (50 / 300 ms; LMDB checkpoints included):
    concurrent writes from several sessions all succeed, slower; past fsync.warningthresholdms
    (here 40 ms) each slow fsync is warned about and counted; reads are not held up by it; after
    a restart everything is there."""
    reason = zkpy_unavailable()
    if reason:
        pytest.skip(reason)
    from kazoo.client import KazooClient

    srv = make_server("zkpy", tmp_path / "srv", {"fsync.warningthresholdms": "40",
                                        "checkpointIntervalMs": "500"})
    srv.data_dir = crashfs.mountpoint / "data"
    srv.start()
    crashfs.set_fsync_delay(delay_ms)
    clients = []
    try:
        for _ in range(3):
            zk = KazooClient(hosts=srv.hosts, timeout=30.0)
            zk.start(timeout=30)
            clients.append(zk)
        clients[0].create("/slow")
        pending = []
        for i in range(60):   # in flight together: they share the slow fsyncs (group commit)
            zk = clients[i % 3]
            pending.append(("/slow/n%02d" % i, zk.create_async("/slow/n%02d" % i, b"%d" % i)))
        for path, op in pending:
            assert op.get(timeout=60) == path
        assert sorted(clients[1].get_children("/slow")) == ["n%02d" % i for i in range(60)]
        assert _count(srv) >= 1
    finally:
        for zk in clients:
            zk.stop()
            zk.close()
        crashfs.set_fsync_delay(0)
    assert srv.stop() == 0
    assert any("fsync-ing the write ahead log in " in line
               for line in srv.log_text().splitlines())
    srv.start()
    zk = KazooClient(hosts=srv.hosts, timeout=10.0)
    zk.start(timeout=15)
    try:
        assert len(zk.get_children("/slow")) == 60
    finally:
        zk.stop()
        zk.close()
        srv.stop()
