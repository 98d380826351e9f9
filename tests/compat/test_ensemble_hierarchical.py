"""Hierarchical quorums (`group.N` / `weight.N`), side by side with Apache ZooKeeper 3.8.

Five members in three groups, group.1=1:2:3, group.2=4, group.3=5 (weight 1 each): a quorum is
a majority of the groups, each by a majority of its weight -- not a majority of the servers.
  * members 4 and 5 down: {1, 2, 3} is three servers of five but one group of three: no
    quorum, the ensemble stops taking writes;
  * members 2 and 3 down: {1, 4, 5} holds groups 2 and 3: a quorum, writes go on.
"""

import time

import pytest

from compat import servers as zkservers
from compat.ensemble import Ensemble
from compat.test_ensemble import pytest_generate_tests, ens_kind  # noqa: F401 - fixtures
from crash.kazoo_clients import client, close

pytestmark = pytest.mark.timeout(240)

GROUPS = {"group.1": "1:2:3", "group.2": "4", "group.3": "5"}


def _write(hosts, path, timeout=4.0):
    """True when a create through `hosts` succeeds within `timeout` seconds."""
    from kazoo.handlers.threading import KazooTimeoutError
    try:
        zk = client(hosts, start_timeout=timeout)
    except KazooTimeoutError:
        return False
    try:
        zk.create_async(path, b"x").get(timeout=timeout)
        return True
    except Exception:  # noqa: BLE001 - no quorum: connection loss, timeout, ...
        return False
    finally:
        close(zk)


def _wait_write(hosts, path, want, deadline_s=30.0):
    deadline = time.monotonic() + deadline_s
    i = 0
    while True:
        i += 1
        got = _write(hosts, "%s-%d" % (path, i))
        if got == want:
            return
        assert time.monotonic() < deadline, "writes %s after %.0fs" % (
            "still fail" if want else "still succeed", deadline_s)
        time.sleep(0.5)


def test_group_majorities_decide(ens_kind, tmp_path):
    ens = Ensemble(ens_kind, tmp_path / "ens", servers=5, extra_cfg=GROUPS)
    ens.start()
    try:
        leader = ens.leader(timeout=30)
        conf = zkservers.four_letter(ens.member(1).port, "conf")
        if ens_kind == "zkpy":   # (Apache's conf prints the same lines, see below)
            assert "group.1=1:2:3" in conf and "weight.5=1" in conf, conf
        for line in ("group.1=1:2:3", "group.2=4", "group.3=5"):
            assert line in conf, conf
        assert _write(ens.hosts(), "/before")
        # {1, 2, 3}: a majority of the servers, one group of three -- no quorum.
        for sid in (4, 5):
            ens.member(sid).kill()
        survivors = [ens.member(s) for s in (1, 2, 3)]
        _wait_write(ens.hosts(survivors), "/no-quorum", False)
        time.sleep(2)
        assert not _write(ens.hosts(survivors), "/still-none")
        for sid in (4, 5):
            ens.member(sid).start()
        ens.wait_healthy(60)
        # {1, 4, 5}: groups 2 and 3 -- a quorum.
        for sid in (2, 3):
            ens.member(sid).kill()
        survivors = [ens.member(s) for s in (1, 4, 5)]
        _wait_write(ens.hosts(survivors), "/quorum", True, deadline_s=60)
        del leader
    finally:
        ens.stop()
