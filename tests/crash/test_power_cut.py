"""Power cuts under a kazoo write load: no acknowledged write lost, no damage -- zkpy and, as the
reference, Apache ZooKeeper 3.8 in the same scenario (tests/crash/powercut.py says what a round
does and checks). Standalone servers and 3-member pseudo-clusters (all members on one crashfs
mount: they lose power together, as a rack does), and zkpy's pseudo-cluster while it commits
dynamic reconfigs.

A few seeds per case in the default run; `scripts/powercut.sh` runs hundreds and prints a table.
ZKPY_POWERCUT_SEEDS=<n> sets the rounds per case here, ZKPY_POWERCUT_SEED=<seed> replays one.
"""

import time

import pytest

from compat import servers as zkservers
from compat.ensemble import Ensemble
from crash import powercut

pytestmark = pytest.mark.timeout(600)

# ZooKeeper with no snapshot yet but a log refuses to start unless told to trust that (the
# issue's reference setup); zkpy warns about the unknown key, so only Apache gets it.
APACHE_CFG = {"snapshot.trust.empty": "true"}
# checkpoints and log rolls often, so the cuts fall before, during and after them
ZKPY_CFG = {"checkpointIntervalMs": "500", "txnLogSizeLimitInKb": "64"}


def _cfg(kind):
    return dict(APACHE_CFG if kind == "apache" else ZKPY_CFG)


def _skip_unless(kind):
    reason = zkservers.UNAVAILABLE[kind]()
    if reason:
        pytest.skip(reason)


@pytest.mark.parametrize("kind", ["zkpy", "apache"])
def test_standalone_power_cut(kind, crashfs, tmp_path):
    _skip_unless(kind)
    srv = zkservers.make_server(kind, tmp_path / kind, _cfg(kind))
    srv.data_dir = crashfs.mountpoint / "data"
    srv.start()

    def check(loads):
        zk = powercut.client(srv.hosts)
        try:
            return powercut.check_loads(zk, loads)
        finally:
            powercut.close(zk)
    try:
        powercut.rounds(kind, "standalone", [srv], srv.hosts, crashfs, check, srv.start)
    finally:
        srv.stop()


@pytest.mark.parametrize("kind", ["zkpy", "apache"])
def test_ensemble_power_cut(kind, crashfs, tmp_path):
    """All three members lose power at once; they come back with every acknowledged write and
    the same tree."""
    _skip_unless(kind)
    ens = Ensemble(kind, tmp_path / "ens", servers=3, extra_cfg=_cfg(kind))
    for m in ens.members:
        m.data_dir = crashfs.mountpoint / ("zk%d" % m.sid)
    ens.start()

    def check(loads):
        ens.wait_healthy()
        return powercut.check_members(ens, loads)
    try:
        powercut.rounds(kind, "ensemble3", ens.members, [m.hosts for m in ens.members], crashfs, check,
                ens.start)
    finally:
        ens.stop()


def test_ensemble_power_cut_during_reconfig(crashfs, tmp_path):
    """zkpy, 3 members, reconfigEnabled: a client keeps committing reconfigs (the same members,
    a new config version each: every member writes zoo.cfg.dynamic.<version> and rewrites its
    zoo.cfg, both on the crashfs mount) under the write load; all lose power at once. They come
    back from the zoo.cfg they had (no file torn or missing), with every acknowledged write,
    and agree on /zookeeper/config, at least as new as the last acknowledged reconfig."""
    _skip_unless("zkpy")
    cfg = dict(ZKPY_CFG, reconfigEnabled="true", skipACL="yes")
    ens = Ensemble("zkpy", tmp_path / "ens", servers=3, extra_cfg=cfg)
    for m in ens.members:
        m.data_dir = crashfs.mountpoint / ("zk%d" % m.sid) / "data"
        m.cfg_path = crashfs.mountpoint / ("zk%d" % m.sid) / "zoo.cfg"
    ens.start()
    for m in ens.members:
        m.keep_config = True   # restarts use the zoo.cfg the server rewrote
    members = ",".join("server.%d=127.0.0.1:%d:%d:participant;%d"
                       % (m.sid, m.peer_port, m.election_port, m.port) for m in ens.members)
    acked = []   # mzxid of each acknowledged reconfig, all rounds

    def reconfigs(dead):
        zk = powercut.client(ens.hosts())
        try:
            while not dead.is_set():
                try:
                    _, stat = zk.reconfig(joining=None, leaving=None, new_members=members)
                except Exception:   # the cut (or a reconfig already in progress)
                    time.sleep(0.05)
                    continue
                acked.append(stat.mzxid)
        finally:
            powercut.close(zk)

    def check(loads):
        ens.wait_healthy()
        problems = powercut.check_members(ens, loads)
        configs = []
        for m in ens.members:
            zk = powercut.client(m.hosts)
            try:
                zk.sync("/zookeeper/config")
                data, stat = zk.get("/zookeeper/config")
                configs.append((data, stat.mzxid))
            finally:
                powercut.close(zk)
        if len(set(configs)) != 1:
            problems.append("members disagree on /zookeeper/config: %s" % configs)
        elif acked and configs[0][1] < max(acked):
            problems.append("/zookeeper/config at zxid 0x%x, older than the last acknowledged "
                            "reconfig (0x%x)" % (configs[0][1], max(acked)))
        return problems

    try:
        powercut.rounds("zkpy", "ensemble3-reconfig", ens.members, [m.hosts for m in ens.members],
                crashfs, check, ens.start, background=reconfigs)
        print("reconfigs acknowledged: %d" % len(acked))
        assert acked, "no reconfig was acknowledged"
    finally:
        ens.stop()
