"""Power cuts under a kazoo write load, for zkpy and Apache ZooKeeper alike: the harness.

One round: servers (a standalone server, or every member of a pseudo-cluster) keep their dataDir
on a crash-consistency filesystem (crashfs.CrashFS); kazoo clients write; at a random moment
every server process is SIGKILLed and the filesystem "loses power" (crashfs.power_cut: none, a
prefix or a random subset of the writes not yet fsynced persist); it is remounted (cold page
cache), the servers start again, and every acknowledged write must be there.

What is checked (Load.check), per client's own namespace:
  * every acknowledged create / setData / delete / multi holds: a node's data and version are
    those of its last acknowledged write; an acknowledged delete stays deleted;
  * the one request in flight at the cut (outcome unknown) either happened or not -- a multi all
    or nothing;
  * nothing else is there (no node nobody created, no older version);
  * sessions: an ephemeral of a session whose close was acknowledged is gone; an ephemeral of a
    session still open at the cut is there (session timeout 60 s: it outlives the restart);
  * in an ensemble, every member holds the same tree (read from each member after a sync).

The round driver (rounds(), one_round(), report()) and the member checks (check_members(),
verify_lmdb(), log_problems()) are shared by tests/crash/test_power_cut.py (a load alone, during
reconfigs) and tests/crash/test_power_cut_sync.py (during a SNAP install on a follower, during
log purges); scripts/powercut.sh runs hundreds of rounds and prints a table. Seeds are printed;
ZKPY_POWERCUT_SEED=<seed> replays one seed's choices (the load's timing, and so what was
acknowledged, differs from run to run); ZKPY_POWERCUT_SEEDS=<n> sets the seeds per case.
"""

import os
import random
import shutil
import threading
import time

from kazoo.exceptions import KazooException

from crash import kazoo_clients

OP_TIMEOUT = 3.0
SESSION_TIMEOUT = 60.0
MODES = ("none", "prefix", "random")


def client(hosts, **kw):
    kw.setdefault("timeout", SESSION_TIMEOUT)
    return kazoo_clients.client(hosts, start_timeout=30, **kw)


def close(c):
    """As kazoo_clients.close, but quiet: the servers may be dead."""
    try:
        kazoo_clients.close(c)
    except Exception:
        pass


class Worker(threading.Thread):
    """One session writing its own namespace, one request at a time, keeping what it was told.

    state: path -> (data, version) of acknowledged nodes (absent: acknowledged deleted or never
    created). inflight: {path: state after the op} of the one request whose outcome is unknown.
    """

    def __init__(self, zk, prefix, seed, stop):
        super().__init__(name="powercut-load %s" % prefix, daemon=True)
        self.zk = zk
        self.prefix = prefix
        self.rng = random.Random(seed)
        self.stop = stop
        self.state = {}
        self.touched = set()
        self.inflight = None
        self.acked = 0
        self.error = None
        self.wrong = None
        self.k = 0

    def _new_path(self):
        self.k += 1
        return "%s/n%05d" % (self.prefix, self.k)

    def _data(self, path):
        return ("%s@%d" % (path, self.k)).encode() * self.rng.choice((1, 3, 40))

    def run(self):
        zk = self.zk
        while not self.stop.is_set():
            r = self.rng.random()
            live = sorted(self.state)
            if not live or r < 0.35:
                path = self._new_path()
                data = self._data(path)
                after = {path: (data, 0)}
                op = lambda: zk.create_async(path, data)   # noqa: E731
            elif r < 0.7:
                path = self.rng.choice(live)
                data, version = self.state[path][0] + b"+", self.state[path][1]
                after = {path: (data, version + 1)}
                op = lambda: zk.set_async(path, data, version=version)   # noqa: E731
            elif r < 0.85:
                path = self.rng.choice(live)
                version = self.state[path][1]
                after = {path: None}
                op = lambda: zk.delete_async(path, version=version)   # noqa: E731
            else:
                # multi: a new node and a conditional set of an existing one, all or nothing
                path = self.rng.choice(live)
                new = self._new_path()
                data, version = self.state[path][0] + b"*", self.state[path][1]
                ndata = self._data(new)
                after = {path: (data, version + 1), new: (ndata, 0)}

                def op(path=path, new=new, data=data, version=version, ndata=ndata):
                    t = zk.transaction()
                    t.create(new, ndata)
                    t.set_data(path, data, version=version)
                    return t.commit_async()
            self.inflight = after
            self.touched.update(after)
            try:
                result = op().get(timeout=OP_TIMEOUT)
            except Exception as e:   # connection loss, timeout: outcome unknown; stop here
                self.error = e
                return
            if isinstance(result, list) and any(isinstance(x, Exception) for x in result):
                self.wrong = "multi %s failed: %r" % (sorted(after), result)
                return
            for p, st in after.items():
                if st is None:
                    self.state.pop(p, None)
                else:
                    self.state[p] = st
            self.inflight = None
            self.acked += 1


class Load(object):
    """Writers plus session probes over `hosts` (a list: clients are spread over them)."""

    def __init__(self, hosts, tag, seed, writers=4):
        self.hosts = hosts if isinstance(hosts, list) else [hosts]
        self.tag = tag
        self.seed = seed
        self.writers = writers
        self.stop = threading.Event()
        self.workers = []
        self.clients = []
        self.closed_ephemerals = []   # of sessions whose close was acknowledged
        self.open_ephemerals = []     # (path, session id) of sessions open at the cut

    def start(self):
        setup = client(self.hosts[0])
        try:
            setup.ensure_path("/pc/%s" % self.tag)
            # sessions: one closed (acknowledged) with its ephemeral, one left open
            for i, h in enumerate(self.hosts):
                gone = client(h)
                gone.create("/pc/%s/eph-closed-%d" % (self.tag, i), ephemeral=True)
                close(gone)   # closeSession acknowledged
                self.closed_ephemerals.append("/pc/%s/eph-closed-%d" % (self.tag, i))
                keep = client(h)
                path = "/pc/%s/eph-open-%d" % (self.tag, i)
                keep.create(path, ephemeral=True)
                self.open_ephemerals.append((path, keep.client_id[0]))
                self.clients.append(keep)
        finally:
            close(setup)
        for i in range(self.writers):
            zk = client(self.hosts[i % len(self.hosts)])
            self.clients.append(zk)
            prefix = "/pc/%s/w%d" % (self.tag, i)
            zk.ensure_path(prefix)
            w = Worker(zk, prefix, self.seed * 100 + i, self.stop)
            self.workers.append(w)
        for w in self.workers:
            w.start()

    def halt(self):
        """After the servers died: stop the writers and drop the clients (no request queued
        in a client may reach the restarted servers)."""
        self.stop.set()
        for c in self.clients:
            close(c)
        for w in self.workers:
            w.join(OP_TIMEOUT + 10)
        problems = [w.wrong for w in self.workers if w.wrong]
        return problems

    @property
    def acked(self):
        return sum(w.acked for w in self.workers)

    def check(self, zk, sessions=True):
        """Problems (strings) of the tree `zk` sees against what was acknowledged. sessions=False:
        leave the open sessions' ephemerals out (an earlier round's: by now they may have
        expired, as they should)."""
        problems = []
        for w in self.workers:
            inflight = w.inflight or {}
            landed = set()   # for the in-flight request's paths: True/False where it tells
            for path in sorted(w.touched):
                acked = w.state.get(path)
                got = _read(zk, path)
                if path not in inflight:
                    if got != acked:
                        problems.append("%s: holds %s, acknowledged %s"
                                        % (path, _show(got), _show(acked)))
                    continue
                after = inflight[path]
                if got not in (acked, after):
                    problems.append("%s: holds %s, acknowledged %s, in flight %s"
                                    % (path, _show(got), _show(acked), _show(after)))
                elif acked != after:
                    landed.add(got == after)
            if len(landed) > 1:
                problems.append("%s: the in-flight multi landed in part: %s"
                                % (w.prefix, sorted(inflight)))
            try:
                children = set(zk.get_children(w.prefix))
            except KazooException as e:
                problems.append("%s: %r" % (w.prefix, e))
                continue
            known = set(p.rsplit("/", 1)[1] for p in w.touched)
            extra = children - known
            if extra:
                problems.append("%s: nodes nobody wrote: %s" % (w.prefix, sorted(extra)[:5]))
        for path in self.closed_ephemerals:
            if zk.exists(path) is not None:
                problems.append("%s: ephemeral of a closed session is back" % path)
        for path, sid in (self.open_ephemerals if sessions else ()):
            st = zk.exists(path)
            if st is None:
                problems.append("%s: ephemeral of open session 0x%x is gone" % (path, sid))
            elif st.ephemeralOwner != sid:
                problems.append("%s: owner 0x%x, not 0x%x" % (path, st.ephemeralOwner, sid))
        return problems


def _read(zk, path):
    try:
        data, stat = zk.get(path)
    except KazooException as e:
        if type(e).__name__ == "NoNodeError":
            return None
        raise
    return (data, stat.version)


def _show(st):
    if st is None:
        return "nothing"
    data, version = st
    return "v%d %r" % (version, data[:40])


def tree_dump(zk, root="/pc"):
    """{path: (data, version)} of every persistent node under root (the members of an
    ensemble are compared on these; ephemerals of open sessions are checked through one member
    by Load.check -- right after a restart the others may still be re-establishing sessions)."""
    out = {}
    level = [root]
    while level:   # a level of the tree at a time, its reads pipelined
        asked = [(p, zk.get_async(p), zk.get_children_async(p)) for p in level]
        level = []
        for p, got, kids in asked:
            try:
                data, st = got.get(timeout=30)
                names = kids.get(timeout=30)
            except KazooException:   # gone meanwhile (an ephemeral of an expired session)
                continue
            if st.ephemeralOwner == 0:
                out[p] = (data, st.version)
            level.extend(p + "/" + k for k in names)
    return out


def choose(seed):
    """A round's random choices from its seed: (mode, seconds of load before the cut)."""
    rng = random.Random(seed)
    return rng.choice(MODES), rng.uniform(0.5, 4.0)


def wait_acked(load, minimum, timeout):
    deadline = time.monotonic() + timeout
    while load.acked < minimum and time.monotonic() < deadline:
        time.sleep(0.05)


def point_seed(seed, point):
    """The seed of the point-th cut of a seed's rounds: the seed itself for point 0 (one cut
    per seed, as test_power_cut's rounds), else one drawn from "<seed>/<point>"."""
    if point == 0:
        return seed
    return random.Random("%d/%d" % (seed, point)).randrange(1 << 30)


# -- the round driver ---------------------------------------------------------------------------

ROUNDS = int(os.environ.get("ZKPY_POWERCUT_SEEDS", "2"))
# scripts/powercut.sh: after a failed round, report it, start over on empty data, go on
KEEP_GOING = os.environ.get("ZKPY_POWERCUT_KEEP_GOING") == "1"


def seeds(default=None):
    """The seeds of a case: ZKPY_POWERCUT_SEED's alone, else ZKPY_POWERCUT_SEEDS random ones
    (unset: `default`, or ROUNDS)."""
    if os.environ.get("ZKPY_POWERCUT_SEED"):
        return [int(os.environ["ZKPY_POWERCUT_SEED"])]
    n = ROUNDS if default is None or "ZKPY_POWERCUT_SEEDS" in os.environ else default
    return [random.SystemRandom().randrange(1 << 30) for _ in range(n)]


def one_round(servers, hosts, fs, seed, point=0, background=None, prepare=None, cut_at=None):
    """One power-cut round over running `servers`: load, kill them all, cut, remount, start
    them all. Returns (load, mode, cut summary, problems so far, what cut_at said).

    prepare(rseed): called first (rseed: this cut's seed, point_seed(seed, point)); returns the
      hosts for the load, or None for `hosts`.
    cut_at(load, rng, point, delay): called once the load has an acknowledged write; returns
      at the moment of the cut, with a label for the report or a function giving it, called
      after the check (where the cut fell may only show then, in the logs); without cut_at
      the cut comes `delay` s later (the cut's seed's choice). rng: a random.Random of its own.
    background: a function started in a thread with the load, given an Event that is set once
      the servers are dead."""
    rseed = point_seed(seed, point)
    mode, delay = choose(rseed)
    if prepare is not None:
        hosts = prepare(rseed) or hosts
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
    load = Load(hosts, "r%d" % rseed, rseed)
    load.start()
    wait_acked(load, 1, 30)
    if cut_at is None:
        time.sleep(delay)
        label = None
    else:
        label = cut_at(load, random.Random(rseed), point, delay)
    for s in servers:
        s.kill()
    summary = fs.power_cut(mode, rseed)
    dead.set()
    problems = load.halt()
    if bg is not None:
        bg.join(30)
    fs.remount()
    problems += start_all(servers)
    return load, mode, summary, problems, label


def start_all(servers):
    """Start the servers at once (machines that lost power together boot together); the
    problems: those that did not come back."""
    from compat.servers import ServerStartError
    problems = []

    def start(s):
        try:
            s.start()
        except ServerStartError as e:
            problems.append("%s did not come back: %s" % (s, e))
    threads = [threading.Thread(target=start, args=(s,), daemon=True) for s in servers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return problems


def report(kind, layout, seed, mode, load, summary, problems, point=None, cut=None):
    """One parseable line per cut (scripts/powercut.sh tabulates them; what follows problems=
    is for the reader: the cut's index within its seed and where it fell)."""
    extra = ""
    if point is not None:
        extra += " point=%d" % point
    if cut:
        extra += " cut=%s" % cut
    print("POWERCUT kind=%s layout=%s seed=%d mode=%s acked=%d pending_pages=%d "
          "persisted_pages=%d problems=%d%s%s"
          % (kind, layout, seed, mode, load.acked, summary.get("pages_pending", 0),
             summary.get("pages_persisted", 0), len(problems), extra,
             "".join("\n    " + p for p in problems[:10])), flush=True)


def rounds(kind, layout, servers, hosts, fs, check, restart_empty, background=None, points=1,
           prepare=None, cut_at=None, default_seeds=None):
    """Power-cut rounds over running `servers`, `points` cuts per seed (see one_round for
    prepare, cut_at and background): after each, check(loads so far) gives the problems. A
    failed round fails the test -- or, with KEEP_GOING, is reported and the servers start over
    on empty data (restart_empty). zkpy: in the end, a clean stop and LMDB's verifier."""
    loads = []
    failed = []
    todo = [(seed, point) for seed in seeds(default_seeds) for point in range(points)]
    for i, (seed, point) in enumerate(todo):
        load, mode, summary, problems, label = one_round(
            servers, hosts, fs, seed, point, background=background, prepare=prepare,
            cut_at=cut_at)
        if not problems:
            # every round's own writes; earlier rounds' again every 5th round and at the end
            # (each re-check reads all of them: every round would make a long run quadratic)
            last = i + 1 == len(todo)
            problems = check(loads + [load] if last or len(loads) % 5 == 4 else [load])
        report(kind, layout, seed, mode, load, summary, problems,
               point=point if points > 1 else None, cut=label() if callable(label) else label)
        if problems and KEEP_GOING:
            failed.append(seed)
            for s in servers:
                s.kill()
                shutil.rmtree(str(s.data_dir), ignore_errors=True)
            restart_empty()
            loads = []
            continue
        assert load.acked > 0, "no write acknowledged before the cut (seed %d)" % seed
        assert not problems, "%s seed %d point %d mode %s:\n%s" % (
            kind, seed, point, mode, "\n".join(problems[:20]))
        loads.append(load)
    assert not failed, "failed rounds (seeds): %s" % failed
    if kind == "zkpy":
        for s in servers:
            s.stop()
        assert verify_lmdb([s.data_dir for s in servers]) == []


# -- checks -------------------------------------------------------------------------------------

def verify_lmdb(data_dirs):
    """py-lmdb's offline verifier (every structural invariant of the file) over each zkpy
    database, after a clean stop: the problems found."""
    import lmdb.verify
    out = []
    for d in data_dirs:
        path = os.path.join(str(d), "zkpy-db")
        if os.path.isdir(path):
            out.extend("%s: %s" % (path, p) for p in lmdb.verify.verify(path))
    return out


def check_loads(zk, loads):
    """Every load's writes as `zk` sees them (earlier rounds' open sessions may have expired
    since: only the last round's are checked)."""
    problems = []
    for load in loads:
        problems += load.check(zk, sessions=load is loads[-1])
    return problems


def check_members(ens, loads):
    """Every load's writes, read through the first member; every member's tree the same."""
    problems = []
    dumps = []
    for m in ens.members:
        zk = client(m.hosts)
        try:
            zk.sync("/pc")
            if not dumps:
                problems += check_loads(zk, loads)
            dumps.append((m.sid, tree_dump(zk)))
        finally:
            close(zk)
    first = dumps[0][1]
    for sid, d in dumps[1:]:
        if d != first:
            diff = sorted(set(d.items()) ^ set(first.items()))[:5]
            problems.append("member %d's tree differs from member %d's: %s"
                            % (sid, dumps[0][0], diff))
    return problems


# What no server log may hold after a power cut: a crash of the code, or data it found damaged
# (an ensemble member then sets its data aside and is resynced -- never needed after a power
# cut if every write that matters was synced).
BAD_LOG_LINES = ("Traceback", "local data damaged", "cannot start")


def log_problems(servers, seen=None):
    """The lines of the servers' logs that say something went wrong (BAD_LOG_LINES); for a
    Traceback, the line before it and its exception's line. seen: a dict kept by the caller
    (server -> characters already looked at): only what was logged since is looked at."""
    problems = []
    for s in servers:
        text = s.log_text()
        start = 0
        if seen is not None:
            start, seen[s] = seen.get(s, 0), len(text)
        lines = text[start:].splitlines()
        for i, line in enumerate(lines):
            if not any(bad in line for bad in BAD_LOG_LINES):
                continue
            if "Traceback" in line:
                end = i + 1
                while end < len(lines) and lines[end][:1] in (" ", "\t"):
                    end += 1
                line = "%s / %s" % (lines[i - 1] if i else "",
                                    lines[end] if end < len(lines) else "?")
            problems.append("%s logged: %s" % (s, line.strip()[:400]))
    return problems
