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

Used by tests/crash/test_power_cut.py (a few seeds in CI) and scripts/powercut.sh (hundreds,
with a table). Seeds are printed; ZKPY_POWERCUT_SEED=<seed> replays one round's choices (the
load's timing, and so what was acknowledged, differs from run to run).
"""

import random
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
    stack = [root]
    while stack:
        p = stack.pop()
        try:
            data, st = zk.get(p)
            kids = zk.get_children(p)
        except KazooException:
            continue
        if st.ephemeralOwner == 0:
            out[p] = (data, st.version)
        stack.extend(p + "/" + k for k in kids)
    return out


def choose(seed):
    """A round's random choices from its seed: (mode, seconds of load before the cut)."""
    rng = random.Random(seed)
    return rng.choice(MODES), rng.uniform(0.5, 4.0)


def wait_acked(load, minimum, timeout):
    deadline = time.monotonic() + timeout
    while load.acked < minimum and time.monotonic() < deadline:
        time.sleep(0.05)
