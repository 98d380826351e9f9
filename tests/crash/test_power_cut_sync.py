"""Power cuts during a SNAP install on a follower and during log purges (issue 14's last two
moments), on crashfs, with the rounds of tests/crash/powercut.py: a kazoo write load, SIGKILL of
every server, a power cut (none / a prefix / a random subset of the unsynced writes persist),
restart, and every acknowledged write must be there.

1. SNAP: a zkpy 3-member pseudo-cluster, all on one crashfs mount, holds a big tree (24 znodes
   of 1000 KiB and 50k small ones: a SNAP of about 35 MB). Before each cut one follower is
   killed, the log rolls a few times behind it and the leader restarts (a leader's history for
   DIFF syncs holds only the last commitLogCount=2 txns here), so the follower, started again under the load, is synced
   by SNAP. The power goes while it installs -- per seed: right after its "SNAP: installing"
   line (in the LMDB transaction); as its old log's first file goes (the install committed and
   checkpointed, log_reset_pending set); within 0.2 s of its "FOLLOWING" line (the txns after
   the snapshot in its new log, LMDB's next checkpoint maybe not taken yet); points 4 on at
   random moments over about twice what an install takes (measured on the first, uncut SNAP).
   All members restart together; every acknowledged write (the load's and the big tree's) is
   there on every member, the members agree (their persistent trees under /pc; last zxid and
   node count), no log holds a Traceback or data found damaged; LMDB's verifier after a clean
   stop at the end.
2. Purge: a standalone zkpy whose log rolls every 1 KiB and is purged after every checkpoint
   (autopurge.purgeInterval=1ms, ZooKeeper 3.10's unit suffix; checkpoints every 100 ms) under
   the load. Per seed: a cut at a random moment, and two while a purge deletes files (one of
   its log files just went: at once, and up to 20 ms later); the server restarts with every
   acknowledged write. A purge cut whose purge never logged its end is "purge-interrupted".

Each cut prints a POWERCUT line (scripts/powercut.sh tabulates them) with where it fell.
ZKPY_POWERCUT_SEEDS=<n> seeds per test, ZKPY_POWERCUT_SEED=<seed> replays one seed's choices;
ZKPY_POWERCUT_POINTS=<n> cuts per seed (default 3).
"""

import os
import random
import re
import threading
import time

import pytest

from compat import servers as zkservers
from compat.ensemble import Ensemble, EnsembleError
from crash import powercut

pytestmark = pytest.mark.timeout(300 + 150 * powercut.ROUNDS)

POINTS = int(os.environ.get("ZKPY_POWERCUT_POINTS", "3"))


def _skip_unless_zkpy():
    reason = zkservers.zkpy_unavailable()
    if reason:
        pytest.skip(reason)


class LogWatch(object):
    """Follows a server log from its current end; `seen` is set (and `at`, the monotonic time)
    when a line holding `needle` is written."""

    POLL_S = 0.002

    def __init__(self, path, needle):
        self.path = str(path)
        self.needle = needle
        self.seen = threading.Event()
        self.at = None
        self._stop = False
        try:
            self.offset = os.path.getsize(self.path)
        except OSError:
            self.offset = 0
        self._thread = threading.Thread(target=self._run, name="log watch", daemon=True)
        self._thread.start()

    def _run(self):
        pos = self.offset
        tail = ""
        while not self._stop:
            try:
                with open(self.path, errors="replace") as f:
                    f.seek(pos)
                    new = f.read()
                    pos = f.tell()
            except OSError:
                new = ""
            if new:
                tail = (tail + new)[-4096:]
                if self.needle in tail:
                    self.at = time.monotonic()
                    self.seen.set()
                    return
            time.sleep(self.POLL_S)

    def text(self):
        """The log since the watch began."""
        with open(self.path, errors="replace") as f:
            f.seek(self.offset)
            return f.read()

    def close(self):
        self._stop = True


def _log_names(path):
    """The txn log files in `path` (a crashfs backing directory: names reach it at once)."""
    try:
        return set(n for n in os.listdir(str(path)) if n.startswith("log."))
    except OSError:
        return set()


_STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) ")


def _stamp(line):
    """Seconds (of the day, enough for differences within a test) of a log line's time."""
    m = _STAMP.match(line)
    if not m:
        return None
    h, mi, s = m.group(1)[11:].split(":")
    return int(h) * 3600 + int(mi) * 60 + int(s) + int(m.group(2)) / 1000.0


def _line_time(text, needle):
    for line in text.splitlines():
        if needle in line:
            return _stamp(line)
    return None


# ---------------------------------------------------------------------------------------------
# 1. A power cut during a SNAP install on a follower

BIG_NODES = 24                 # 1000 KiB each: with the small ones, a SNAP of about 35 MB
BIG_BYTES = 1000 * 1024
SMALL_DIRS = 50                # x SMALL_PER_DIR small znodes, created by multis of that many
SMALL_PER_DIR = 1000
ROLLS = 3                      # big rewrites behind a stopped follower: each its own log file
SNAP_CFG = {
    "checkpointIntervalMs": "500",
    "txnLogSizeLimitInKb": "64",     # each 1000 KiB write ends a log file
    "commitLogCount": "2",           # a leader keeps 2 applied txns in memory for DIFF syncs
    "autopurge.purgeInterval": "1s",
}
INSTALLING = "SNAP: installing"


class BigTree(object):
    """/bulk: BIG_NODES znodes of BIG_BYTES (rewritten now and then) and SMALL_DIRS x
    SMALL_PER_DIR small ones, every write acknowledged. check() reads all the big nodes' stats
    (version and size), one's data, and a sample of the small ones and of their parents."""

    def __init__(self):
        self.big = {}   # path -> acknowledged version

    @staticmethod
    def big_data(path, version):
        unit = ("%s@v%d;" % (path, version)).encode()
        return (unit * (BIG_BYTES // len(unit) + 1))[:BIG_BYTES]

    @staticmethod
    def small_data(path):
        return ("%s:small" % path).encode() * 4

    def build(self, zk):
        zk.ensure_path("/bulk/s")
        pending = []
        for i in range(BIG_NODES):
            p = "/bulk/b%03d" % i
            pending.append((p, zk.create_async(p, self.big_data(p, 0))))
        for d in range(SMALL_DIRS):
            t = zk.transaction()
            base = "/bulk/s/d%03d" % d
            t.create(base)
            for j in range(SMALL_PER_DIR):
                p = "%s/n%04d" % (base, j)
                t.create(p, self.small_data(p))
            pending.append((base, t.commit_async()))
        for p, a in pending:
            result = a.get(timeout=120)
            if isinstance(result, list):
                bad = [r for r in result if isinstance(r, Exception)]
                assert not bad, "building %s: %r" % (p, bad[:3])
            elif p.startswith("/bulk/b"):
                self.big[p] = 0

    def rewrite(self, zk, rng, n):
        """n acknowledged rewrites of big nodes, one after the other (one log file each)."""
        for _ in range(n):
            p = rng.choice(sorted(self.big))
            v = self.big[p]
            zk.set(p, self.big_data(p, v + 1), version=v)
            self.big[p] = v + 1

    def check(self, zk, rng):
        problems = []
        paths = sorted(self.big)
        for p in paths:
            st = zk.exists(p)
            if st is None or (st.version, st.dataLength) != (self.big[p], BIG_BYTES):
                problems.append("%s: stat %s, acknowledged v%d of %d bytes"
                                % (p, st and (st.version, st.dataLength), self.big[p],
                                   BIG_BYTES))
        for p in rng.sample(paths, 1):
            data, st = zk.get(p)
            if data != self.big_data(p, self.big[p]):
                problems.append("%s: v%d holds other data than acknowledged" % (p, st.version))
        for d in rng.sample(range(SMALL_DIRS), 3):
            base = "/bulk/s/d%03d" % d
            n = len(zk.get_children(base))
            if n != SMALL_PER_DIR:
                problems.append("%s: %d children, acknowledged %d" % (base, n, SMALL_PER_DIR))
        for _ in range(20):
            p = "/bulk/s/d%03d/n%04d" % (rng.randrange(SMALL_DIRS), rng.randrange(SMALL_PER_DIR))
            got = zk.exists(p) and zk.get(p)[0]
            if got != self.small_data(p):
                problems.append("%s: holds %r" % (p, got and got[:40]))
        return problems


def _srvr_fields(member):
    text = member.srvr() or ""
    zxid = re.search(r"^Zxid: (0x[0-9a-f]+)", text, re.M)
    count = re.search(r"^Node count: (\d+)", text, re.M)
    return (zxid and zxid.group(1), count and int(count.group(1)))


def _converged(ens, timeout=15.0):
    """Every member applied the same last zxid and holds as many znodes (the whole trees, big
    one included, compared in one look: nothing writes now but session expiries, so they meet
    within a few tries)."""
    deadline = time.monotonic() + timeout
    while True:
        seen = {m.sid: _srvr_fields(m) for m in ens.members}
        if len(set(seen.values())) == 1 and None not in list(seen.values())[0]:
            return []
        if time.monotonic() > deadline:
            return ["members disagree on (last zxid, node count): %s" % seen]
        time.sleep(0.2)


def test_power_cut_during_snap_install(crashfs, tmp_path):
    _skip_unless_zkpy()
    ens = Ensemble("zkpy", tmp_path / "ens", servers=3, extra_cfg=SNAP_CFG)
    for m in ens.members:
        m.data_dir = crashfs.mountpoint / ("zk%d" % m.sid)
    tree = BigTree()
    setup = {}      # "install_s": how long the uncut SNAP install took
    stages = {}     # where the cuts fell -> count
    logs_seen = {}  # member -> how much of its log was looked at

    def resync(target, others, rng, rewrites):
        """Kill `target` (a follower), roll the log behind it, restart the leader: the next
        leader's history (commitLogCount) ends before the target's last txn, so the target's
        next start is synced by SNAP. Returns the others' hosts."""
        target.kill()
        zk = powercut.client(ens.hosts(others))
        try:
            if rewrites:
                tree.rewrite(zk, rng, rewrites)
            else:
                tree.build(zk)
                tree.rewrite(zk, rng, ROLLS)
        finally:
            powercut.close(zk)
        leader = ens.leader(timeout=30)
        leader.stop()     # the other one has no quorum alone: a new election once it is back
        leader.start()
        ens.wait_healthy(members=others)
        return [m.hosts for m in others]

    def start_empty():
        """A new ensemble with the big tree; its first SNAP (uncut) is timed."""
        ens.start()
        leader = ens.leader(timeout=30)
        target = next(m for m in ens.members if m is not leader)
        others = [m for m in ens.members if m is not target]
        resync(target, others, random.Random(0), 0)
        mark = {m.sid: len(m.log_text()) for m in others}
        watch = LogWatch(target.log_path, "FOLLOWING leader")
        target.start()
        assert watch.seen.wait(120), "no FOLLOWING line:\n" + target.log_tail()
        text = watch.text()
        assert INSTALLING in text, "the follower was not synced by SNAP:\n" + text[-3000:]
        for m in others:   # the sync went through at once (no PING read as its ACK)
            since = m.log_text()[mark[m.sid]:]
            assert "expected the NEWLEADER ACK" not in since, \
                "the SNAP sync failed once:\n" + since[-3000:]
        setup["install_s"] = _line_time(text, "FOLLOWING leader") - _line_time(text, INSTALLING)
        size = re.search(r"SNAP: installing .* \((\d+) bytes\)", text).group(1)
        print("snapshot of %s bytes: installed in %.3f s" % (size, setup["install_s"]))
        ens.wait_healthy()

    state = {}

    def prepare(rseed):
        rng = random.Random(rseed)
        leader = ens.leader(timeout=30)
        target = rng.choice([m for m in ens.members if m is not leader])
        others = [m for m in ens.members if m is not target]
        state["target"] = target
        return resync(target, others, rng, ROLLS)

    def cut_at(load, rng, point, delay):
        target = state["target"]
        mark = len(target.log_text())
        watch = LogWatch(target.log_path, INSTALLING)
        synced = LogWatch(target.log_path, "FOLLOWING leader")
        state["watches"] = (watch, synced)
        target.start()
        assert watch.seen.wait(60), "%s was not synced by SNAP:\n%s" % (target,
                                                                        watch.text()[-3000:])
        if point == 1:
            # once the install is committed and checkpointed: as the old log goes (its files
            # are removed newest first; names reach crashfs's backing directory at once)
            log_dir = crashfs.backing / ("zk%d" % target.sid) / "zkpy-log"
            old = _log_names(log_dir)
            deadline = time.monotonic() + 10
            while old and _log_names(log_dir) >= old and time.monotonic() < deadline:
                time.sleep(0.0005)
            state["reset_seen"] = bool(old) and time.monotonic() < deadline
            time.sleep(rng.uniform(0.0, 0.005))
        elif point == 2:
            # once synced: its new log holds the txns after the snapshot, mostly before its
            # next checkpoint (checkpointIntervalMs)
            assert synced.seen.wait(60), "%s: no FOLLOWING line:\n%s" % (
                target, synced.text()[-3000:])
            time.sleep(rng.uniform(0.0, 0.2))
        else:
            # right after the line (point 0); any moment of about twice an install (3 on)
            delay = 0.0 if point == 0 else rng.uniform(0.0, 2.0 * setup["install_s"])
            left = watch.at + delay - time.monotonic()
            if left > 0:
                time.sleep(left)
        late = time.monotonic() - watch.at

        def label():
            # what the follower had logged when it was killed, and what its restart did
            watch.close()
            synced.close()
            runs = target.log_text()[mark:].split("==== start")   # "", before, after
            before, after = runs[1], "".join(runs[2:])
            if "FOLLOWING leader" in before:
                stage = "synced"
            elif "txnlog reset" in before:
                stage = "log-reset"
            elif point == 1:
                stage = "resetting" if state["reset_seen"] else "no-reset-seen"
            else:
                stage = "installing"
            if "finishing an interrupted snapshot install" in after:
                stage += ",reset-finished-on-restart"
            stages[stage] = stages.get(stage, 0) + 1
            return "snap+%.3fs/%s" % (late, stage)
        return label

    def check(loads):
        try:
            ens.wait_healthy()
        except EnsembleError as e:
            return ["no ensemble after the restart: %s" % str(e).splitlines()[0]] + \
                powercut.log_problems(ens.members, logs_seen)
        problems = powercut.check_members(ens, loads)
        rng = random.Random()
        for m in ens.members:
            zk = powercut.client(m.hosts)
            try:
                zk.sync("/bulk")
                problems += ["member %d: %s" % (m.sid, p) for p in tree.check(zk, rng)]
            finally:
                powercut.close(zk)
        problems += _converged(ens)
        problems += powercut.log_problems(ens.members, logs_seen)
        return problems

    def restart_empty():
        ens.stop()
        start_empty()

    try:
        start_empty()
        # One seed (its 3 cuts at the 3 points) in the default run, the slowest case of the
        # suite; ZKPY_POWERCUT_SEEDS sets more (scripts/powercut.sh).
        powercut.rounds("zkpy", "ensemble3-snap", ens.members, None, crashfs, check,
                        restart_empty, points=POINTS, prepare=prepare, cut_at=cut_at,
                        default_seeds=1)
        print("SNAP install %.3f s; where the cuts fell: %s" % (setup["install_s"], stages))
        assert any(not k.startswith("synced") for k in stages), "no cut fell in an install"
    finally:
        for w in state.get("watches", ()):
            w.close()
        ens.stop()


# ---------------------------------------------------------------------------------------------
# 2. A power cut during a log purge

PURGE_CFG = {
    "checkpointIntervalMs": "100",
    # a new log file every few batches: a checkpoint interval spans dozens of files, far more
    # than the 3 newest a purge keeps, so a purge that went past the durable checkpoint would
    # leave a hole a restart trips on
    "txnLogSizeLimitInKb": "1",
    "autopurge.purgeInterval": "1ms",   # after every checkpoint
    "autopurge.snapRetainCount": "3",
}


def test_power_cut_during_log_purge(crashfs, tmp_path):
    _skip_unless_zkpy()
    srv = zkservers.make_server("zkpy", tmp_path / "zkpy", PURGE_CFG)
    srv.data_dir = crashfs.mountpoint / "data"
    # names reach crashfs's backing directory at once: watched there, not through the mount
    log_dir = crashfs.backing / "data" / "zkpy-log"
    srv.start()
    where = {}
    logs_seen = {}

    def cut_at(load, rng, point, delay):
        if point == 0:   # a random moment of the load
            time.sleep(delay)
            where["random"] = where.get("random", 0) + 1
            return "random+%.2fs" % delay
        # while a purge deletes files: once the first is gone, at once or a moment later
        time.sleep(rng.uniform(0.3, 1.5))
        mark = len(srv.log_text())
        deadline = time.monotonic() + 10
        before = _log_names(log_dir)
        while time.monotonic() < deadline:
            now = _log_names(log_dir)
            if before - now:
                break
            before = now
            time.sleep(0.0005)
        else:
            where["no purge seen"] = where.get("no purge seen", 0) + 1
            return "no-purge-seen"
        delay = 0.0 if point == 1 else rng.uniform(0.0, 0.02)
        time.sleep(delay)

        def label():
            # the purge under way at the cut logs its line once done: none before the restart
            # means the cut fell inside it
            before_restart = srv.log_text()[mark:].split("==== start")[0]
            key = "purge-finished" if "txnlog purge: deleted" in before_restart else \
                "purge-interrupted"
            where[key] = where.get(key, 0) + 1
            return "%s+%.1fms" % (key, delay * 1000)
        return label

    def check(loads):
        zk = powercut.client(srv.hosts)
        try:
            problems = powercut.check_loads(zk, loads)
        finally:
            powercut.close(zk)
        return problems + powercut.log_problems([srv], logs_seen)

    try:
        powercut.rounds("zkpy", "standalone-purge", [srv], srv.hosts, crashfs, check, srv.start,
                        points=POINTS, cut_at=cut_at)
        purges = srv.log_text().count("txnlog purge: deleted")
        print("purges: %d; cuts: %s" % (purges, where))
        assert purges > 0, "no log file was purged"
        assert where.get("purge-interrupted"), "no cut fell during a purge"
    finally:
        srv.stop()
