"""A slow log fsync is reported as ZooKeeper reports it: a WARNING past fsync.warningthresholdms
and mntr's zk_fsync_threshold_exceed_count (its AdminServer `monitor` mirrors mntr).

Here fsync.warningthresholdms=0 makes every fsync "slow" on any disk; an end-to-end test with a
disk that is really slow (a FUSE layer delaying fsync) is a separate matter. The unit tests
(tests/unit/test_txnlog.py) slow fdatasync down with a monkeypatch and check the exact text.
"""

import re

import pytest

from compat.servers import ZkpyServer, zkpy_unavailable

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

    with ZkpyServer(tmp_path / "fast") as fast:
        assert _count(fast) == 0
    srv = ZkpyServer(tmp_path / "slow", {"fsync.warningthresholdms": "0"})
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
