"""A seeded, deterministic simulator of a zkpy ensemble: N zkpy.quorum.machine.Member objects
over a simulated network, disks, clock and clients, with Zab's invariants checked at every step.

Owns nothing of the server: it drives the real pure state machines (machine.Member, and through
it election.Election and zab) the way the asyncio driver does -- ready() carried out in order,
persisted() when a simulated fsync completes -- and injects faults between the steps. Every run
is a function of its seed (one random.Random, no wall clock, no hash-order dependence), so a
failing seed replays exactly. Only tests/, bench/ and scripts/ import it.

The world:
  * clock: integer milliseconds; an event heap ordered by (time, sequence number);
  * election channel: per message a delay (reordering follows), drop and duplicate chances;
  * Zab connections: one per (learner, leader) pair, FIFO both ways, with a generation number;
    a partition, a crash or a close breaks it (messages in flight are lost) and each live end
    gets link_down for that generation only; a learner's message with no live connection
    opens one (or fails after a while: the peer is down or cut off);
  * disks: epochs and the applied state (LMDB) are durable when written; log appends are in
    the page cache until a simulated fsync (latency drawn per batch) completes; a crash keeps a
    random prefix of the unsynced appends, optionally with the last one torn (dropped by
    recovery); a restart builds a new Member from what is on disk; a disk can fill up for a
    while: an fsync then fails, the member is told log_stalled(True), its appends are kept and
    retried every `retry_ms` (nothing becomes durable, so nothing is acked), and once the
    disk has room again log_stalled(False) and persisted() (sync.py's _on_log_stalled and
    _on_durable);
  * clients: each sticks to a member (one ZooKeeper session), writes with up to two in flight
    (to the leader, or forwarded by a learner), reads, and sync+read; a member that stops
    serving fails what is in flight; a member whose applied zxid is below what the client has
    seen refuses it (ZooKeeper's "client has seen zxid" rule) and the client moves on; a
    client heard by a learner touches its session there (Member.touch), and the leader's
    Ready reports the ids its learners' PINGs carried; now and then (before the faults stop)
    a client asks for a membership change (`reconfig_every_ms`): one voter added from the
    servers that are not voters, or one removed while more than 3 are left, as its member
    sees the voters. A
    membership txn's payload is (client, seq, voters); every disk keeps the voters of its
    applied state (as LMDB keeps /zookeeper/config) and a restart starts from them.

Checked at every step (a Violation names the invariant, the seed and the time):
  one established leader per epoch; applied prefixes never diverge (a hash chain over the
  applied entries, compared per zxid, and the global applied order only grows at its end);
  no acknowledged write lost (each newly established leader holds every write acknowledged
  before); zxids strictly increasing in every log; no member acks a zxid its disk has not
  fsynced; per-client FIFO of writes in the applied order; reads never go back in a client's
  view and show exactly the committed state at their zxid; a sync then read sees every write
  acknowledged before the sync began; a leader reports only session touches some learner was
  given; an established leader is a voter of the membership it applied (the one-leader and
  committed-prefix checks cover every server, voter or not, before and after a reconfig).
  Liveness: after the faults stop (disks have room again), a leader is established and
  a write issued after that commits within `liveness_ms`.
"""

import bisect
import heapq
import random

from zkpy.quorum import machine as zm
from zkpy.quorum.election import Notification

__all__ = ["Violation", "Options", "Sim", "run_seed"]


class Violation(AssertionError):
    """An invariant broke: the message names it, with the seed and the simulated time."""


class Options(object):
    """A run's knobs; `random_options(rng)` draws them from the seed."""

    def __init__(self, **kw):
        self.voters = 3
        self.observers = 0
        self.params = zm.Params(tick_ms=100, init_limit=10, sync_limit=5,
                                finalize_wait_ms=50, max_notification_interval_ms=400,
                                history_max=30)
        self.tick_every_ms = 25
        self.delay_ms = (1, 15)          # network delay range
        self.drop_p = 0.05               # election channel
        self.dup_p = 0.05
        self.connect_fail_ms = (1, 100)
        self.fsync_ms = (1, 20)
        self.faults_ms = 8000            # faults happen before this time
        self.calm_ms = 8000              # then this long without faults
        self.liveness_ms = 6000          # a write commits within this after the faults stop
        self.crash_every_ms = 1500       # mean time between crashes (0: none)
        self.down_ms = (50, 1500)
        self.partition_every_ms = 2000   # mean time between partitions (0: none)
        self.partition_ms = (100, 2000)
        self.torn_p = 0.3
        self.clients = 3
        self.client_every_ms = (5, 60)
        self.check_acks = True           # off only to see what an early ack leads to
        self.tick_jitter = True          # off: every member's timer in lockstep
        self.full_every_ms = 0           # mean time between disks filling up (0: never)
        self.full_ms = (50, 1500)        # how long a disk stays full
        self.retry_ms = 100              # a stalled log's appends are retried this often
        self.reconfig_every_ms = 0       # mean time between membership change requests
        for k, v in kw.items():
            if not hasattr(self, k):
                raise TypeError("unknown option %s" % k)
            setattr(self, k, v)


def random_options(rng, **kw):
    o = Options()
    o.voters = rng.choice((3, 3, 5))
    o.observers = rng.choice((0, 0, 1))
    o.params = o.params._replace(history_max=rng.choice((3, 10, 30, 1000)),
                                 sync_limit=rng.choice((2, 5)))
    o.delay_ms = (1, rng.choice((5, 15, 40)))
    o.drop_p = rng.choice((0.0, 0.05, 0.2))
    o.dup_p = rng.choice((0.0, 0.05))
    o.fsync_ms = (1, rng.choice((2, 20, 80)))
    o.crash_every_ms = rng.choice((0, 600, 1500, 3000))
    o.partition_every_ms = rng.choice((0, 800, 2000))
    # Faults added later draw from a generator of their own, which leaves the main one where
    # it was: a seed with them off replays exactly the run it was before they existed.
    later = random.Random(repr(rng.getstate()))
    o.full_every_ms = later.choice((0, 0, 600, 2000))
    o.reconfig_every_ms = later.choice((0, 0, 500, 2000))
    spares = later.choice((1, 2))
    for k, v in kw.items():
        setattr(o, k, v)
    if o.reconfig_every_ms and not o.observers and "observers" not in kw:
        o.observers = spares      # servers a reconfig can add
    return o


_MASK = (1 << 61) - 1


def chain_next(chain, zxid, payload):
    """The applied state's digest after applying (zxid, payload) (payloads: (client, seq), or
    (client, seq, voters) for a membership change)."""
    c, s = payload[0], payload[1]
    v = sum(1 << x for x in payload[2]) if len(payload) > 2 else 0
    return (chain * 1000003 + zxid * 8191 + c * 131071 + s + v * 524287) & _MASK


def config_of(payload):
    """Member's config_of for the simulated payloads."""
    return payload[2] if len(payload) > 2 else None


class Disk(object):
    """One member's storage: epoch files and the applied state are durable when written; the
    log's appends until an fsync covers them."""

    def __init__(self):
        self.accepted_epoch = 0
        self.current_epoch = 0
        self.applied_zxid = 0
        self.chain = 0
        self.log_start = 0
        self.entries = []          # (zxid, payload)
        self.synced = 0            # entries[:synced] are durable
        self.fsyncs = []           # targets (entry counts) of fsyncs in flight
        self.voters = frozenset()  # the membership of the applied state
        self.config_version = 0    # the zxid that made it (a SNAP's zxid for a SNAP's)
        self.full_until = 0        # the disk takes no appends before this time
        self.stalled = False       # the member was told log_stalled(True)

    def last_synced_zxid(self):
        return self.entries[self.synced - 1][0] if self.synced else self.log_start

    def persisted(self):
        return zm.Persisted(self.accepted_epoch, self.current_epoch, self.applied_zxid,
                            self.log_start, tuple(self.entries))


class Client(object):
    def __init__(self, cid):
        self.cid = cid
        self.member = None
        self.seq = 0
        self.last_seen = 0
        self.writes = {}           # seq -> (member, issued_ms)
        self.last_acked_seq = 0
        self.reading = None        # (member, req_id, acked_max_at_start) of a sync+read


class Sim(object):
    def __init__(self, seed, options=None, trace=False):
        self.seed = seed
        self.rng = random.Random(seed)
        self.o = options or random_options(self.rng)
        o = self.o
        self.now = 0
        self.heap = []
        self._seq = 0
        self.steps = 0
        self.trace = [] if trace else None
        n = o.voters + o.observers
        self.ids = list(range(1, n + 1))
        self.disks = {sid: Disk() for sid in self.ids}
        for d in self.disks.values():
            d.voters = frozenset(range(1, o.voters + 1))
        self.members = {}          # sid -> Member (absent while crashed)
        self.incarnation = {sid: 0 for sid in self.ids}
        self.conns = {}            # (learner, leader) -> [gen, alive]
        self.fifo = {}             # (key, gen, dst) -> last delivery time
        self.cut = set()           # frozenset({a, b}) pairs that cannot talk
        self.faults = 0
        self.fault_log = {"crash": 0, "partition": 0, "drop": 0, "dup": 0, "torn": 0,
                          "full": 0, "stall": 0, "refused": 0, "reconfig": 0,
                          "reconfig_applied": 0}
        self.touch_given = set()   # session ids touched on some learner
        self.touches_reported = 0
        # what the checkers know
        self.truth = {0: 0}        # zxid -> chain after applying it
        self.truth_payload = {}
        self.truth_last = 0
        self.truth_seq = {}        # client -> last seq in the applied order
        self.established = {}      # epoch -> leader id
        self.acked = {}            # zxid -> payload acknowledged to its client
        self.acked_max = 0
        self.clients = [Client(c) for c in range(1, o.clients + 1)]
        self.pending = {sid: {} for sid in self.ids}   # member -> {zxid: (cid, seq)}
        self.forwarded = {sid: {} for sid in self.ids}  # member -> {req_id: (cid, seq)}
        self.syncs = {sid: {} for sid in self.ids}      # member -> {req_id: cid}
        self.sync_targets = {sid: [] for sid in self.ids}  # (target, cid) waiting for apply
        self._req = 0
        self.write_after_calm = False
        self.leader_after_calm = False
        self.leader_established_at = []
        self.role_of = {}
        self.fsync_ms_of = {}      # sid -> (lo, hi): a slow disk (scenarios)
        self.on_send = None        # scenarios: called with (src, dst, msg) before each send
        self.clients_on = True

    # ------------------------------------------------------------------ plumbing

    def at(self, t, kind, *data):
        self._seq += 1
        heapq.heappush(self.heap, (t, self._seq, kind, data))

    def fail(self, what):
        raise Violation("seed %d, t=%d ms: %s" % (self.seed, self.now, what))

    def log(self, *a):
        if self.trace is not None:
            self.trace.append("%7d " % self.now + " ".join(str(x) for x in a))

    def reachable(self, a, b):
        return a in self.members and b in self.members and frozenset((a, b)) not in self.cut

    # ------------------------------------------------------------------ run

    def run(self):
        self.start()
        self.run_until(lambda: False, self.o.faults_ms + self.o.calm_ms)
        self._check_liveness()
        return self

    def start(self):
        o = self.o
        for sid in self.ids:
            self._boot(sid)
        if o.crash_every_ms:
            self.at(self._exp(o.crash_every_ms), "crash")
        if o.partition_every_ms:
            self.at(self._exp(o.partition_every_ms), "partition")
        if o.full_every_ms:
            self.at(self._exp(o.full_every_ms), "full")
        if o.reconfig_every_ms:
            self.at(self._exp(o.reconfig_every_ms), "reconfig")
        for c in self.clients:
            self.at(self.rng.randint(*o.client_every_ms), "client", c.cid)
        self.at(o.faults_ms, "calm")

    def run_until(self, pred, end_ms):
        """Run events until pred() holds (True) or the clock passes end_ms (False)."""
        while self.heap and not pred():
            t, _, kind, data = self.heap[0]
            if t > end_ms:
                self.now = end_ms
                return False
            heapq.heappop(self.heap)
            self.now = t
            self.steps += 1
            getattr(self, "_ev_" + kind)(*data)
        return pred()

    # -- scenario controls (the seeded faults are off in scenarios)

    def isolate(self, sid):
        pairs = {frozenset((sid, b)) for b in self.ids if b != sid}
        self.cut |= pairs
        for key, c in list(self.conns.items()):
            if c[1] and frozenset(key) in pairs:
                self._break(key)

    def heal(self):
        self.cut.clear()

    def crash_now(self, sid, keep_unsynced=0):
        """Schedule a crash of `sid` at the current time (after the step in progress)."""
        self.at(self.now, "crash_one", sid, keep_unsynced)

    def _ev_crash_one(self, sid, keep_unsynced):
        if sid in self.members:
            self.crash(sid, keep_unsynced=keep_unsynced, torn=False)

    def restart(self, sid):
        if sid not in self.members:
            self._boot(sid)

    def leader(self):
        for sid, m in self.members.items():
            if m.state == zm.LEADING and m.serving:
                return sid
        return None

    def check_converged(self):
        """Every member up holds every acknowledged write, applied, the same state."""
        for sid, m in self.members.items():
            d = self.disks[sid]
            if d.applied_zxid < self.acked_max:
                self.fail("member %d applied only 0x%x, acknowledged up to 0x%x"
                          % (sid, d.applied_zxid, self.acked_max))
            if self.truth.get(d.applied_zxid) != d.chain:
                self.fail("member %d: state at 0x%x not the committed one" % (sid, d.applied_zxid))

    def _exp(self, mean):
        return self.now + max(1, int(self.rng.expovariate(1.0 / mean)))

    def _boot(self, sid):
        self.incarnation[sid] += 1
        d = self.disks[sid]
        m = zm.Member(sid, d.voters, self.o.params, d.persisted(),
                      observers=frozenset(self.ids) - d.voters, config_of=config_of,
                      config_version=d.config_version)
        self.members[sid] = m
        m.start(self.now)
        self._drain(sid)
        self.at(self._next_tick(), "tick", sid, self.incarnation[sid])

    def _next_tick(self):
        # Timers jitter (the asyncio loop's 20 ms polls do): with ticks in lockstep, a server
        # that re-sends its vote every interval can keep every other server's election timer
        # from ever expiring (see election.py's quiet timer; reported in issue 16).
        t = self.o.tick_every_ms
        if not self.o.tick_jitter:
            return self.now + t
        return self.now + self.rng.randint(t - t // 4, t + t // 4)

    # ------------------------------------------------------------------ events

    def _ev_tick(self, sid, inc):
        if self.incarnation[sid] != inc or sid not in self.members:
            return
        self.members[sid].tick(self.now)
        self._drain(sid)
        self.at(self._next_tick(), "tick", sid, inc)

    def _ev_el(self, dst, src, msg):
        if dst in self.members and self.reachable(src, dst):
            self.members[dst].receive(src, msg, self.now)
            self._drain(dst)

    def _ev_zab(self, key, gen, dst, src, msg):
        c = self.conns.get(key)
        if c is None or c[0] != gen or not c[1] or dst not in self.members:
            return
        self.log("deliver", src, "->", dst, msg)
        m = self.members[dst]
        t = type(msg)
        # Odd members take PROPOSAL / COMMIT through stream() and REQUEST through requests()
        # when they do (the driver's fast paths), even ones through receive(): both ways run
        # under every seed.
        if dst & 1 and t is zm.Proposal:
            done = m.stream(src, [(msg.zxid, msg.origin, msg.req_id, msg.payload)], 0, self.now)
        elif dst & 1 and t is zm.Commit:
            done = m.stream(src, (), msg.zxid, self.now)
        elif dst & 1 and t is zm.Request:
            done = m.requests(src, [(msg.req_id, msg.payload)], self.now)
        else:
            done = False
        if not done:
            m.receive(src, msg, self.now)
        self._drain(dst)

    def _ev_down(self, key, gen, dst, peer, accepted):
        c = self.conns.get(key)
        if c is None or c[0] != gen or dst not in self.members:
            return
        self.members[dst].link_down(peer, self.now, accepted)
        self._drain(dst)

    def _ev_connfail(self, key, gen, learner, leader):
        c = self.conns.get(key)
        if c is None or c[0] != gen:
            return
        c[1] = False
        if learner in self.members:
            self.members[learner].link_down(leader, self.now, False)
            self._drain(learner)

    def _ev_fsync(self, sid, inc, target):
        if self.incarnation[sid] != inc or sid not in self.members:
            return
        d = self.disks[sid]
        d.fsyncs.remove(target)
        target = min(target, len(d.entries))
        if target > d.synced:
            m = self.members[sid]
            if self.now < d.full_until:
                if not d.stalled:
                    self._stall(sid, d, m)
                return
            if d.stalled:
                d.stalled = False
                m.log_stalled(False, self.now)
            d.synced = target
            m.persisted(d.entries[target - 1][0], self.now)
            self._drain(sid)

    def _stall(self, sid, d, m):
        self.fault_log["stall"] += 1
        self.log("stall", sid)
        d.stalled = True
        m.log_stalled(True, self.now)
        self._drain(sid)
        self.at(self.now + self.o.retry_ms, "retry", sid, self.incarnation[sid])

    def _ev_retry(self, sid, inc):
        """The stalled log's appends are tried again (GroupCommitter's retry)."""
        if self.incarnation[sid] != inc or sid not in self.members:
            return
        d = self.disks[sid]
        if not d.stalled:
            return
        if self.now < d.full_until:
            self.at(self.now + self.o.retry_ms, "retry", sid, inc)
            return
        m = self.members[sid]
        d.stalled = False
        self.log("unstall", sid)
        m.log_stalled(False, self.now)
        if len(d.entries) > d.synced:
            d.synced = len(d.entries)
            m.persisted(d.entries[-1][0], self.now)
        self._drain(sid)

    def _ev_full(self):
        if self.now >= self.o.faults_ms:
            return
        self.at(self._exp(self.o.full_every_ms), "full")
        self.faults += 1
        self.fault_log["full"] += 1
        sid = self.rng.choice(self.ids)
        d = self.disks[sid]
        d.full_until = max(d.full_until, self.now + self.rng.randint(*self.o.full_ms))
        self.log("disk full", sid, "until", d.full_until)

    def _ev_crash(self):
        if self.now >= self.o.faults_ms:
            return
        self.at(self._exp(self.o.crash_every_ms), "crash")
        up = [s for s in self.ids if s in self.members]
        if not up:
            return
        self.crash(self.rng.choice(up))
        self.at(self.now + self.rng.randint(*self.o.down_ms), "restart",
                self._last_crashed, self.incarnation[self._last_crashed])

    def crash(self, sid, keep_unsynced=None, torn=None):
        """Power off `sid`: its connections break, unsynced appends are partly lost."""
        self.faults += 1
        self.fault_log["crash"] += 1
        self._last_crashed = sid
        self.log("crash", sid)
        del self.members[sid]
        self.incarnation[sid] += 1
        d = self.disks[sid]
        extra = len(d.entries) - d.synced
        keep = self.rng.randint(0, extra) if keep_unsynced is None else min(keep_unsynced, extra)
        if keep and (self.rng.random() < self.o.torn_p if torn is None else torn):
            keep -= 1      # the last surviving record is torn: recovery drops it
            self.fault_log["torn"] += 1
        del d.entries[d.synced + keep:]
        d.synced = len(d.entries)
        d.fsyncs = []
        d.stalled = False
        for key, c in list(self.conns.items()):
            if sid in key and c[1]:
                self._break(key)
        for c in self.clients:
            if c.member == sid:
                self._client_lost(c)
        self.pending[sid].clear()
        self.forwarded[sid].clear()
        self.syncs[sid].clear()
        self.sync_targets[sid] = []

    def _ev_restart(self, sid, inc):
        if sid not in self.members and self.incarnation[sid] == inc:
            self.log("restart", sid)
            self._boot(sid)

    def _ev_partition(self):
        if self.now >= self.o.faults_ms:
            return
        self.at(self._exp(self.o.partition_every_ms), "partition")
        self.faults += 1
        self.fault_log["partition"] += 1
        ids = list(self.ids)
        self.rng.shuffle(ids)
        k = self.rng.randint(1, len(ids) - 1)
        side = set(ids[:k])
        pairs = {frozenset((a, b)) for a in side for b in self.ids if b not in side}
        self.log("partition", sorted(side))
        self.cut |= pairs
        for key, c in list(self.conns.items()):
            if c[1] and frozenset(key) in pairs:
                self._break(key)
        self.at(self.now + self.rng.randint(*self.o.partition_ms), "heal", frozenset(pairs))

    def _ev_heal(self, pairs):
        self.cut -= pairs

    def _ev_calm(self):
        """The faults stop: heal everything, restart everyone."""
        self.cut.clear()
        for sid in self.ids:
            self.disks[sid].full_until = 0     # retried appends go through on the next try
            if sid not in self.members:
                self._boot(sid)

    # ------------------------------------------------------------------ network

    def _break(self, key):
        c = self.conns[key]
        c[1] = False
        learner, leader = key
        for dst, peer, accepted in ((learner, leader, False), (leader, learner, True)):
            if dst in self.members:
                self.at(self.now + self.rng.randint(*self.o.delay_ms), "down", key, c[0], dst,
                        peer, accepted)

    def _send(self, src, dst, msg):
        o, rng = self.o, self.rng
        if self.on_send is not None:
            self.on_send(src, dst, msg)
        if isinstance(msg, Notification):
            if not self.reachable(src, dst) or rng.random() < o.drop_p:
                self.fault_log["drop"] += 1
                return
            copies = 2 if rng.random() < o.dup_p else 1
            if copies == 2:
                self.fault_log["dup"] += 1
            for _ in range(copies):
                self.at(self.now + rng.randint(*o.delay_ms), "el", dst, src, msg)
            return
        if isinstance(msg, zm.Ack) and o.check_acks:
            # A member never acks a zxid its disk has not fsynced.
            d = self.disks[src]
            if msg.zxid > d.last_synced_zxid():
                self.fail("member %d acks 0x%x but its disk has fsynced up to 0x%x"
                          % (src, msg.zxid, d.last_synced_zxid()))
        learner_side = isinstance(msg, zm.LEARNER_MESSAGES)
        key = (src, dst) if learner_side else (dst, src)
        c = self.conns.get(key)
        if c is None or not c[1]:
            if type(msg) is not zm.FollowerInfo:
                return   # written to a broken connection: lost (link_down is on its way)
            gen = (c[0] + 1) if c else 1
            c = self.conns[key] = [gen, True]
            if not self.reachable(src, dst):
                c[1] = False
                self.at(self.now + rng.randint(*o.connect_fail_ms), "connfail", key, gen, src,
                        dst)
                return
        fk = (key, c[0], dst)
        t = max(self.now + rng.randint(*o.delay_ms), self.fifo.get(fk, 0))
        self.fifo[fk] = t
        self.at(t, "zab", key, c[0], dst, src, msg)

    def _close(self, sid, peer, accepted):
        key = (peer, sid) if accepted else (sid, peer)
        c = self.conns.get(key)
        if c is not None and c[1]:
            c[1] = False
            if peer in self.members:
                self.at(self.now + self.rng.randint(*self.o.delay_ms), "down", key, c[0], peer,
                        sid, not accepted)

    # ------------------------------------------------------------------ the driver

    def _drain(self, sid):
        m = self.members[sid]
        while m.has_ready():
            self._carry_out(sid, m, m.ready())

    def _carry_out(self, sid, m, r):
        d = self.disks[sid]
        if r.accepted_epoch is not None:
            d.accepted_epoch = r.accepted_epoch
        if r.current_epoch is not None:
            d.current_epoch = r.current_epoch
        if r.truncate_after is not None:
            z = r.truncate_after
            if z < d.applied_zxid:
                self.fail("member %d truncates to 0x%x below applied 0x%x"
                          % (sid, z, d.applied_zxid))
            n = len(d.entries)
            while n and d.entries[n - 1][0] > z:
                n -= 1
            del d.entries[n:]
            d.synced = min(d.synced, n)
            d.fsyncs = [min(t, n) for t in d.fsyncs]
        if r.snapshot is not None:
            z, state = r.snapshot
            sz, chain, voters = state
            if sz != z:
                self.fail("snapshot header 0x%x, state at 0x%x" % (z, sz))
            self._check_chain(sid, z, chain, None)
            if frozenset(m.voters) != voters and m.config_version <= z:
                # (a newer config adopted in an election is kept)
                self.fail("member %d installed a SNAP with voters %s but has %s"
                          % (sid, sorted(voters), sorted(m.voters)))
            d.applied_zxid, d.chain, d.voters, d.config_version = z, chain, voters, z
            d.entries, d.synced, d.log_start = [], 0, z
            d.fsyncs = [0 for _ in d.fsyncs]
        if r.append:
            for z, p in r.append:
                last = d.entries[-1][0] if d.entries else d.log_start
                if z <= last:
                    self.fail("member %d log: zxid 0x%x after 0x%x" % (sid, z, last))
                d.entries.append((z, p))
            target = len(d.entries)
            d.fsyncs.append(target)
            lat = self.fsync_ms_of.get(sid, self.o.fsync_ms)
            self.at(self.now + self.rng.randint(*lat), "fsync", sid,
                    self.incarnation[sid], target)
        if r.apply_upto is not None:
            self._apply(sid, d, r.apply_upto)
        for peer, accepted in r.close:
            self._close(sid, peer, accepted)
        for dst, msg in r.messages:
            if type(msg) is zm.Snap:
                if d.applied_zxid != msg.zxid:
                    self.fail("member %d: SNAP at 0x%x but applied 0x%x"
                              % (sid, msg.zxid, d.applied_zxid))
                if frozenset(msg.voters) != d.voters:
                    self.fail("member %d: SNAP with voters %s, its state has %s"
                              % (sid, sorted(msg.voters), sorted(d.voters)))
                msg = msg._replace(state=(d.applied_zxid, d.chain, d.voters))
            self._send(sid, dst, msg)
        if r.role is not None:
            self._role(sid, m, r.role)
        for origin, req_id, payload in r.requests:
            z = m.propose(payload, origin, req_id, self.now)
            if z is None:
                m.refuse(origin, req_id)
        for req_id, z in r.matched:
            w = self.forwarded[sid].pop(req_id, None)
            if w is not None:
                self.pending[sid][z] = w
        for req_id in r.refused:
            self.fault_log["refused"] += 1
            self._write_failed(sid, self.forwarded[sid].pop(req_id, None))
        for session_id in r.touched:
            if session_id not in self.touch_given:
                self.fail("leader %d reports a touch of session %d no learner was given"
                          % (sid, session_id))
            self.touches_reported += 1
        for req_id, z in r.syncs:
            cid = self.syncs[sid].pop(req_id, None)
            if cid is not None:
                self.sync_targets[sid].append((z, cid))
        self._serve_reads(sid)

    def _apply(self, sid, d, upto):
        if upto > d.last_synced_zxid():
            self.fail("member %d applies up to 0x%x, durable only to 0x%x"
                      % (sid, upto, d.last_synced_zxid()))
        i = bisect.bisect_right(d.entries, (d.applied_zxid, (1 << 62, 0)))
        for z, p in d.entries[i:]:
            if z > upto:
                break
            prev = d.applied_zxid
            d.chain = chain_next(d.chain, z, p)
            d.applied_zxid = z
            if len(p) > 2:
                d.voters, d.config_version = frozenset(p[2]), z
            self._check_chain(sid, z, d.chain, p, prev)
            w = self.pending[sid].pop(z, None)
            if w is not None:
                if w != p:
                    self.fail("member %d: client write %r replied as txn 0x%x holding %r"
                              % (sid, w, z, p))
                self._write_acked(z, p)
        if d.applied_zxid != upto:
            self.fail("member %d told to apply up to 0x%x, its log reaches 0x%x"
                      % (sid, upto, d.applied_zxid))

    def _check_chain(self, sid, z, chain, payload, prev=None):
        t = self.truth.get(z)
        if t is not None:
            if t != chain:
                self.fail("member %d applied state at 0x%x diverges from the committed one"
                          % (sid, z))
            return
        if payload is None or z < self.truth_last or prev != self.truth_last:
            self.fail("member %d applied 0x%x (after 0x%s) which is not in the committed "
                      "order (last 0x%x)" % (sid, z, "%x" % prev if prev is not None else "?",
                                              self.truth_last))
        self.truth[z] = chain
        self.truth_payload[z] = payload
        if len(payload) > 2:
            self.fault_log["reconfig_applied"] += 1
            self.log("reconfig committed", z, payload)
        self.truth_last = z
        cid, seq = payload[0], payload[1]
        if seq <= self.truth_seq.get(cid, 0):
            self.fail("client %d's write %d applied after its write %d (FIFO)"
                      % (cid, seq, self.truth_seq[cid]))
        self.truth_seq[cid] = seq

    def _role(self, sid, m, role):
        self.log("role", sid, role)
        self.role_of[sid] = role
        if role.state == zm.LEADING and role.serving:
            if sid not in m.voters:
                self.fail("leader %d established but not a voter of %s" % (sid, sorted(m.voters)))
            prev = self.established.setdefault(role.epoch, sid)
            if prev != sid:
                self.fail("two leaders established in epoch 0x%x: %d and %d"
                          % (role.epoch, prev, sid))
            self.leader_established_at.append(self.now)
            if self.now >= self.o.faults_ms:
                self.leader_after_calm = True
            # No acknowledged write lost: the new leader holds every one.
            have = dict(m.log)
            for z, p in self.acked.items():
                if z <= m.history_start:
                    if z > self.disks[sid].applied_zxid:
                        self.fail("leader %d: acked 0x%x before its history start but not "
                                  "applied" % (sid, z))
                elif have.get(z) != p:
                    self.fail("leader %d of epoch 0x%x lacks acknowledged write 0x%x %r"
                              % (sid, role.epoch, z, p))
        if not role.serving:
            for c in self.clients:
                if c.member == sid:
                    self._client_lost(c)
            self.pending[sid].clear()
            self.forwarded[sid].clear()
            self.syncs[sid].clear()
            self.sync_targets[sid] = []

    # ------------------------------------------------------------------ clients

    def _write_acked(self, z, p):
        cid, seq = p[0], p[1]
        if self.truth_payload.get(z) != p:
            self.fail("write %r acknowledged at 0x%x, committed there: %r"
                      % (p, z, self.truth_payload.get(z)))
        self.acked[z] = p
        self.acked_max = max(self.acked_max, z)
        c = self.clients[cid - 1]
        w = c.writes.pop(seq, None)
        if w is not None and w[1] >= self.o.faults_ms:
            self.write_after_calm = True
        c.last_seen = max(c.last_seen, z)

    def _write_failed(self, sid, w):
        if w is not None:
            self.clients[w[0] - 1].writes.pop(w[1], None)

    def _client_lost(self, c):
        # Connection loss: the outcome of writes in flight is unknown (they may commit).
        c.member = None
        c.writes.clear()
        c.reading = None

    def _ev_client(self, cid):
        c = self.clients[cid - 1]
        self.at(self.now + self.rng.randint(*self.o.client_every_ms), "client", cid)
        if not self.clients_on:
            return
        if c.member is None or c.member not in self.members \
                or not self.members[c.member].serving:
            c.member = None
            serving = [s for s in self.ids if s in self.members and self.members[s].serving]
            if not serving:
                return
            s = self.rng.choice(serving)
            if self.disks[s].applied_zxid < c.last_seen:
                return   # refused: this server is behind what the client has seen
            c.member = s
        sid = c.member
        m = self.members[sid]
        if m.state != zm.LEADING:
            m.touch(cid)        # the session's id is its client's
            self.touch_given.add(cid)
        r = self.rng.random()
        if r < 0.6:
            if len(c.writes) >= 2:
                return
            c.seq += 1
            self._submit(c, sid, m, (cid, c.seq), count_refused=True)
        elif r < 0.85 or c.reading is not None:
            self._read(c, sid, None)
        else:
            self._req += 1
            if m.sync(self._req):
                c.reading = (sid, self._req, self.acked_max)
                self.syncs[sid][self._req] = cid
            self._drain(sid)

    def _ev_reconfig(self):
        """A client asks its member for a membership change (one voter more or fewer). They
        stop with the faults: a leader removed steps down, which the liveness bound is not
        about."""
        if self.now >= self.o.faults_ms:
            return
        self.at(self._exp(self.o.reconfig_every_ms), "reconfig")
        if not self.clients_on:
            return
        c = self.rng.choice(self.clients)
        if c.member is None or c.member not in self.members \
                or not self.members[c.member].serving or len(c.writes) >= 2:
            return
        sid = c.member
        m = self.members[sid]
        voters = set(m.voters)
        others = sorted(set(self.ids) - voters)
        if others and (len(voters) <= 3 or self.rng.random() < 0.5):
            voters.add(self.rng.choice(others))
        elif len(voters) > 3:
            voters.remove(self.rng.choice(sorted(voters)))
        else:
            return
        self.fault_log["reconfig"] += 1
        c.seq += 1
        p = (c.cid, c.seq, tuple(sorted(voters)))
        self.log("reconfig asked", sid, p)
        self._submit(c, sid, m, p)

    def _submit(self, c, sid, m, p, count_refused=False):
        """Client c's write p (its c.seq) to member sid: proposed there if it leads, else
        forwarded; a write the member does not take is forgotten (count_refused: a leader's
        refusal while no quorum can write its log is counted as a fault seen)."""
        c.writes[c.seq] = (sid, self.now)
        if m.state == zm.LEADING:
            z = m.propose(p, 0, 0, self.now)
            if z is None:
                if count_refused and m.writes_refused() is not None:
                    self.fault_log["refused"] += 1
                c.writes.pop(c.seq)
            else:
                self.pending[sid][z] = p
        else:
            self._req += 1
            if m.forward(self._req, p):
                self.forwarded[sid][self._req] = p
            else:
                c.writes.pop(c.seq)
        self._drain(sid)

    def _read(self, c, sid, floor):
        d = self.disks[sid]
        z = d.applied_zxid
        if z < c.last_seen:
            self.fail("client %d read 0x%x from member %d after seeing 0x%x"
                      % (c.cid, z, sid, c.last_seen))
        if floor is not None and z < floor:
            self.fail("client %d: sync+read on member %d shows 0x%x, a write at 0x%x was "
                      "acknowledged before the sync" % (c.cid, sid, z, floor))
        t = self.truth.get(z)
        if t is not None and t != d.chain:
            self.fail("client %d read a state at 0x%x that was never committed" % (c.cid, z))
        c.last_seen = z

    def _serve_reads(self, sid):
        waiting = self.sync_targets.get(sid)
        if not waiting:
            return
        d = self.disks[sid]
        keep = []
        for target, cid in waiting:
            c = self.clients[cid - 1]
            if d.applied_zxid >= target:
                if c.reading is not None and c.reading[0] == sid:
                    floor = c.reading[2]
                    c.reading = None
                    self._read(c, sid, max(floor, target))
            else:
                keep.append((target, cid))
        self.sync_targets[sid] = keep

    # ------------------------------------------------------------------ liveness

    def _check_liveness(self):
        if not self.leader_after_calm and not self._leading_now():
            self.fail("no leader established within %d ms after the faults stopped"
                      % self.o.calm_ms)
        if not self.write_after_calm:
            self.fail("no write issued after the faults stopped was acknowledged in %d ms"
                      % self.o.calm_ms)

    def _leading_now(self):
        return any(m.state == zm.LEADING and m.serving for m in self.members.values())


def run_seed(seed, **kw):
    """Run one seed; returns the Sim (raises Violation, or BrokenInvariant from the machine)."""
    rng = random.Random(seed)
    opts = random_options(rng, **kw)
    sim = Sim(seed, opts)
    sim.rng = rng
    return sim.run()


def run_seeds(seeds, **kw):
    """Run every seed of `seeds`: ([(seed, "Type: message")] of the failures, steps, faults).
    The unit a process pool hands out (run_many)."""
    failed = []
    steps = faults = 0
    for seed in seeds:
        try:
            s = run_seed(seed, **kw)
            steps += s.steps
            faults += s.faults
        except Exception as e:  # noqa: BLE001 - every kind of failure, with its seed
            failed.append((seed, "%s: %s" % (type(e).__name__, e)))
    return failed, steps, faults


def run_many(seeds, jobs=None, **kw):
    """run_seeds over `jobs` processes (default: one per CPU): (failures sorted by seed, steps,
    faults)."""
    import concurrent.futures
    import multiprocessing
    import os
    seeds = list(seeds)
    jobs = max(1, min(jobs or os.cpu_count() or 1, len(seeds)))
    if jobs == 1:
        return run_seeds(seeds, **kw)
    parts = [seeds[i::jobs * 4] for i in range(jobs * 4)]
    failed, steps, faults = [], 0, 0
    with concurrent.futures.ProcessPoolExecutor(
            jobs, mp_context=multiprocessing.get_context("fork")) as ex:
        for f, st, fa in ex.map(_run_seeds_kw, [(part, kw) for part in parts]):
            failed += f
            steps += st
            faults += fa
    return sorted(failed), steps, faults


def _run_seeds_kw(args):
    seeds, kw = args
    return run_seeds(seeds, **kw)

