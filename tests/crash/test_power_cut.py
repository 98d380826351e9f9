"""Power cuts under a kazoo write load: no acknowledged write lost, no damage -- zkpy and, as the
reference, Apache ZooKeeper 3.8 in the same scenario (tests/crash/powercut.py says what a round
does and checks). Standalone servers and 3-member pseudo-clusters (all members on one crashfs
mount: they lose power together, as a rack does), and zkpy's pseudo-cluster while it commits
dynamic reconfigs.

A few seeds per case in the default run; `scripts/powercut.sh` runs hundreds and prints a table.
ZKPY_POWERCUT_SEEDS=<n> sets the rounds per case here, ZKPY_POWERCUT_SEED=<seed> replays one.
"""

import os
import random
import threading
import time

import lmdb.verify
import pytest

from compat import servers as zkservers
from compat.ensemble import Ensemble
from crash import powercut

pytestmark = pytest.mark.timeout(600)

ROUNDS = int(os.environ.get("ZKPY_POWERCUT_SEEDS", "2"))
# scripts/powercut.sh: after a failed round, report it, start over on empty data, go on
KEEP_GOING = os.environ.get("ZKPY_POWERCUT_KEEP_GOING") == "1"
# ZooKeeper with no snapshot yet but a log refuses to start unless told to trust that (the
# issue's reference setup); zkpy warns about the unknown key, so only Apache gets it.
APACHE_CFG = {"snapshot.trust.empty": "true"}
# checkpoints and log rolls often, so the cuts fall before, during and after them
ZKPY_CFG = {"checkpointIntervalMs": "500", "txnLogSizeLimitInKb": "64"}


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
    """py-lmdb's offline verifier (every structural invariant of the file) over each zkpy
    database, after a clean stop: the problems found."""
    out = []
    for d in data_dirs:
        path = os.path.join(str(d), "zkpy-db")
        if os.path.isdir(path):
            out.extend("%s: %s" % (path, p) for p in lmdb.verify.verify(path))
    return out


def _round(servers, hosts, fs, seed, background=None):
    """One power-cut round over running `servers`: load, kill them all, cut, remount, start
    them all. Returns (load, mode, cut summary, problems so far). background: a function
    started in a thread with the load, given an Event that is set once the servers are dead."""
    mode, delay = powercut.choose(seed)
    dead = threading.Event()
    bg = None
    if background is not None:
        bg = threading.Thread(target=background, args=(dead,), daemon=True)
        bg.start()
    # What earlier rounds and the start-up wrote without an fsync reaches the disk anyway a
    # while later (the kernel's dirty_expire, 30 s): the cut hits this round's writes only.
    # (Without it Apache ZooKeeper, which does not fsync its snapshots, fails to start after
    # a few "random" cuts in a row: every snapshot on the disk damaged.)
    fs.writeback()
    load = powercut.Load(hosts, "r%d" % seed, seed)
    load.start()
    powercut.wait_acked(load, 1, 30)
    time.sleep(delay)
    for s in servers:
        s.kill()
    summary = fs.power_cut(mode, seed)
    dead.set()
    problems = load.halt()
    if bg is not None:
        bg.join(30)
    fs.remount()
    for s in servers:
        try:
            s.start()
        except zkservers.ServerStartError as e:
            problems.append("%s did not come back: %s" % (s, e))
    return load, mode, summary, problems


def report(kind, layout, seed, mode, load, summary, problems):
    """One parseable line per round (scripts/powercut.sh tabulates them)."""
    print("POWERCUT kind=%s layout=%s seed=%d mode=%s acked=%d pending_pages=%d "
          "persisted_pages=%d problems=%d%s"
          % (kind, layout, seed, mode, load.acked, summary.get("pages_pending", 0),
             summary.get("pages_persisted", 0), len(problems),
             "".join("\n    " + p for p in problems[:10])))


def _rounds(kind, layout, servers, hosts, fs, check, restart_empty, background=None):
    """Power-cut rounds over running `servers`: after each, check(loads so far) gives the
    problems. A failed round fails the test -- or, with KEEP_GOING, is reported and the
    servers start over on empty data (restart_empty)."""
    loads = []
    failed = []
    for seed in seeds():
        load, mode, summary, problems = _round(servers, hosts, fs, seed, background)
        if not problems:
            # every round's own writes; earlier rounds' again every 5th round and at the end
            # (each re-check reads all of them: every round would make a long run quadratic)
            last = len(loads) + 1 == ROUNDS
            problems = check(loads + [load] if last or len(loads) % 5 == 4 else [load])
        report(kind, layout, seed, mode, load, summary, problems)
        if problems and KEEP_GOING:
            failed.append(seed)
            for s in servers:
                s.kill()
                _wipe(s.data_dir)
            restart_empty()
            loads = []
            continue
        assert load.acked > 0, "no write acknowledged before the cut (seed %d)" % seed
        assert not problems, "%s seed %d mode %s:\n%s" % (kind, seed, mode,
                                                          "\n".join(problems[:20]))
        loads.append(load)
    assert not failed, "failed rounds (seeds): %s" % failed
    if kind == "zkpy":
        for s in servers:
            s.stop()
        assert _verify_lmdb([s.data_dir for s in servers]) == []


def _check_loads(zk, loads):
    """Every load's writes as `zk` sees them (earlier rounds' open sessions may have expired
    since: only the last round's are checked)."""
    problems = []
    for load in loads:
        problems += load.check(zk, sessions=load is loads[-1])
    return problems


@pytest.mark.parametrize("kind", ["zkpy", "apache"])
def test_standalone_power_cut(kind, crashfs, tmp_path):
    _skip_unless(kind)
    srv = zkservers.SERVER_CLASSES[kind](tmp_path / kind, _cfg(kind))
    srv.data_dir = crashfs.mountpoint / "data"
    srv.start()

    def check(loads):
        zk = powercut.client(srv.hosts)
        try:
            return _check_loads(zk, loads)
        finally:
            powercut.close(zk)
    try:
        _rounds(kind, "standalone", [srv], srv.hosts, crashfs, check, srv.start)
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
        return _check_members(ens, loads)
    try:
        _rounds(kind, "ensemble3", ens.members, [m.hosts for m in ens.members], crashfs, check,
                ens.start)
    finally:
        ens.stop()


def _wipe(path):
    import shutil
    shutil.rmtree(str(path), ignore_errors=True)


def _check_members(ens, loads):
    """Every load's writes, read through the first member; every member's tree the same."""
    problems = []
    dumps = []
    for m in ens.members:
        zk = powercut.client(m.hosts)
        try:
            zk.sync("/pc")
            if not dumps:
                problems += _check_loads(zk, loads)
            dumps.append((m.sid, powercut.tree_dump(zk)))
        finally:
            powercut.close(zk)
    first = dumps[0][1]
    for sid, d in dumps[1:]:
        if d != first:
            diff = sorted(set(d.items()) ^ set(first.items()))[:5]
            problems.append("member %d's tree differs from member %d's: %s"
                            % (sid, dumps[0][0], diff))
    return problems


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
        problems = _check_members(ens, loads)
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
        _rounds("zkpy", "ensemble3-reconfig", ens.members, [m.hosts for m in ens.members],
                crashfs, check, ens.start, background=reconfigs)
        print("reconfigs acknowledged: %d" % len(acked))
        assert acked, "no reconfig was acknowledged"
    finally:
        ens.stop()
