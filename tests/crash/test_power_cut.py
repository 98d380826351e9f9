"""Power cuts under a kazoo write load: no acknowledged write lost, no damage -- zkpy and, as the
reference, Apache ZooKeeper 3.8 in the same scenario (tests/crash/powercut.py says what a round
does and checks). Standalone servers and 3-member pseudo-clusters (all members on one crashfs
mount: they lose power together, as a rack does).

A few seeds per case in the default run; `scripts/powercut.sh` runs hundreds and prints a table.
ZKPY_POWERCUT_SEEDS=<n> sets the rounds per case here, ZKPY_POWERCUT_SEED=<seed> replays one.
"""

import os
import random

import lmdb.verify
import pytest

from compat import servers as zkservers
from compat.ensemble import Ensemble
from crash import powercut

pytestmark = pytest.mark.timeout(600)

ROUNDS = int(os.environ.get("ZKPY_POWERCUT_SEEDS", "2"))
# ZooKeeper with no snapshot yet but a log refuses to start unless told to trust that (the
# issue's reference setup); zkpy warns about the unknown key, so only Apache gets it.
APACHE_CFG = {"snapshot.trust.empty": "true"}
# checkpoints often, so the cuts fall before, during and after them
ZKPY_CFG = {"checkpointIntervalMs": "500"}


def seeds():
    if os.environ.get("ZKPY_POWERCUT_SEED"):
        return [int(os.environ["ZKPY_POWERCUT_SEED"])]
    return [random.SystemRandom().randrange(1 << 30) for _ in range(ROUNDS)]


def _cfg(kind):
    return dict(APACHE_CFG if kind == "apache" else ZKPY_CFG)


def _skip_unless(kind):
    reason = zkservers.UNAVAILABLE[kind]()
    if reason:
        pytest.skip(reason)


def _verify_lmdb(data_dirs):
    """py-lmdb's offline verifier over each zkpy database as the cut left it (before the
    restart puts back the checkpoint's meta pages): reported, not asserted -- the restore is
    what makes it whole. Returns the problems of the restored state, checked after restart."""
    out = []
    for d in data_dirs:
        path = os.path.join(str(d), "zkpy-db")
        if os.path.isdir(path):
            out.extend("%s: %s" % (path, p) for p in lmdb.verify.verify(path))
    return out


def _round(servers, hosts, fs, seed, kind, check_agreement=None):
    """One power-cut round over running `servers`; returns (problems, summary)."""
    mode, delay = powercut.choose(seed)
    load = powercut.Load(hosts, "r%d" % seed, seed)
    load.start()
    powercut.wait_acked(load, 1, 30)
    import time
    time.sleep(delay)
    for s in servers:
        s.kill()
    summary = fs.power_cut(mode, seed)
    wrong = load.halt()
    fs.remount()
    problems = list(wrong)
    for s in servers:
        s.start()
    return load, mode, summary, problems


@pytest.mark.parametrize("kind", ["zkpy", "apache"])
def test_standalone_power_cut(kind, crashfs, tmp_path):
    _skip_unless(kind)
    srv = zkservers.SERVER_CLASSES[kind](tmp_path / kind, _cfg(kind))
    srv.data_dir = crashfs.mountpoint / "data"
    srv.start()
    rounds = []
    try:
        for seed in seeds():
            load, mode, summary, problems = _round([srv], srv.hosts, crashfs, seed, kind)
            zk = powercut.client(srv.hosts)
            try:
                for earlier in rounds:   # earlier rounds' data survives later cuts too
                    problems += earlier.check(zk)
                problems += load.check(zk)
            finally:
                powercut.close(zk)
            print("%s power cut: seed %d mode %s, %d writes acknowledged, %s"
                  % (kind, seed, mode, load.acked, summary))
            assert load.acked > 0, "no write acknowledged before the cut (seed %d)" % seed
            assert not problems, "%s seed %d mode %s:\n%s" % (kind, seed, mode,
                                                              "\n".join(problems[:20]))
            rounds.append(load)
        if kind == "zkpy":
            srv.stop()
            assert _verify_lmdb([srv.data_dir]) == []
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
    hosts = [m.hosts for m in ens.members]
    rounds = []
    try:
        for seed in seeds():
            load, mode, summary, problems = _round(ens.members, hosts, crashfs, seed, kind)
            ens.wait_healthy()
            dumps = []
            for m in ens.members:
                zk = powercut.client(m.hosts)
                try:
                    zk.sync("/pc")
                    if not dumps:
                        for earlier in rounds:
                            problems += earlier.check(zk)
                        problems += load.check(zk)
                    dumps.append((m.sid, powercut.tree_dump(zk)))
                finally:
                    powercut.close(zk)
            first = dumps[0][1]
            for sid, d in dumps[1:]:
                if d != first:
                    diff = sorted(set(d.items()) ^ set(first.items()))[:5]
                    problems.append("member %d's tree differs from member %d's: %s"
                                    % (sid, dumps[0][0], diff))
            print("%s ensemble power cut: seed %d mode %s, %d writes acknowledged, %s"
                  % (kind, seed, mode, load.acked, summary))
            assert load.acked > 0, "no write acknowledged before the cut (seed %d)" % seed
            assert not problems, "%s seed %d mode %s:\n%s" % (kind, seed, mode,
                                                              "\n".join(problems[:20]))
            rounds.append(load)
    finally:
        ens.stop()
