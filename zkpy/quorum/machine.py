"""One ensemble member's Zab as a pure state machine: election, discovery, sync, broadcast.

Owns what a member knows and decides: its role (LOOKING / FOLLOWING / LEADING / OBSERVING),
its epochs, the in-memory window of its log, what is durable, committed and applied, and, when
it leads, its learners, their acks and the commit point. It never touches a socket, a file, a
clock or a random source, and it imports only the pure quorum modules (election, zab). Time
comes in as ``now_ms``. Driven by zkpy.quorum.peer (the server: sockets, timers, the log,
LMDB) and zkpy.testing.sim (the simulator); imported by tests.

Driving it (etcd raft's Step / Tick / Ready / Advance, in Zab's words)::

    m = Member(myid, voters, Params(...), Persisted(...), observers=..., config_of=...)
    m.start(now_ms)
    inputs:  m.tick(now_ms)                   time passed (call every few ms; nothing is lost
                                              by calling it late, deadlines are compared)
             m.receive(src, msg, now_ms)      an election Notification (lossy channel) or a Zab
                                              message below (FIFO per connection)
             m.link_down(peer, now_ms, accepted)   the Zab connection with `peer` broke;
                                              accepted: it was one `peer` opened to me (I am
                                              its leader side), else mine to `peer`
             m.persisted(zxid)                the log durably holds every entry up to zxid
             m.propose(payload, origin, req_id, now_ms) -> zxid or None   (established leader)
             m.forward(req_id, payload) / m.sync(req_id)   a learner's (or leader's) clients
             m.log_stalled(stalled, now_ms)   my log cannot take appends (a full disk: the
                                              driver keeps them and retries; True) or takes
                                              them again (False, before the persisted() call)
             m.touch(session_id)              a learner's client was heard from (PING)
             m.abandon(now_ms, why)           the driver cannot carry the role on: step down
             m.writes_refused() -> why or None   whether new writes would be refused now
    output:  r = m.ready()   -- then carry it out in this order, all of it before the next:
             1. r.accepted_epoch, r.current_epoch: write these epoch files (durably) first;
             2. r.truncate_after: drop every log entry after this zxid;
             3. r.snapshot (zxid, state): replace the applied state with the leader's and reset
                the log to start after zxid (one atomic step, as LmdbTree.install_snapshot);
             4. r.append [(zxid, payload)]: append to the log; call persisted(z) once fsynced;
             5. r.apply_upto: apply log entries up to this zxid (committed AND durable here);
             6. r.close [(peer, accepted)]: close these Zab connections;
             7. r.messages [(dest, msg)]: send; a Snap(zxid, None) is filled by the driver with
                its applied state, which is exactly at zxid after step 5;
             8. r.role (a RoleChange: serve clients or not), r.requests (the leader preps and
                proposes these forwarded writes), r.matched (a learner: my forwarded request
                req_id is txn zxid; reply once applied), r.refused, r.syncs (req_id, zxid:
                answer the sync once zxid is applied), r.touched (the leader: session ids its
                learners' PINGs carried; the driver touches them).

The rules: a learner acknowledges NEWLEADER only once
everything it synced is durable and its currentEpoch is written (ZOOKEEPER-3911, -4646, -4785);
it acknowledges a proposal only once it is durable; only committed entries are applied (apply
up to min(durable, committed)), so TRUNC never undoes applied state (asserted).

What each role does (ZooKeeper's Leader / LearnerHandler / Follower / Observer):
  * leader: discovery (a quorum of FOLLOWERINFO within initLimit, epoch = max accepted + 1,
    a quorum of ACKEPOCH; a learner whose history is newer is dropped), its whole log becomes the
    new epoch's history, learners synced by zab.sync_plan (DIFF / TRUNC / SNAP + PROPOSALs),
    NEWLEADER, a quorum of ACKs (it counts itself once its history is durable) -> established:
    everything in its log committed, UPTODATE, then PROPOSAL / ACK / COMMIT, LPING every half
    tick, step down when fewer than a quorum of synced voters were heard within syncLimit;
  * learner: FOLLOWERINFO (reconnecting every 200 ms for max(initLimit, 1 s) while the leader
    turns it away), LEADERINFO -> acceptedEpoch, ACKEPOCH, DIFF/TRUNC/SNAP + PROPOSALs until
    NEWLEADER, persist, currentEpoch, ACK, UPTODATE -> serving; initLimit between messages
    before serving, syncLimit after; PINGs carry the session ids its clients were heard from;
  * a LOOKING member holds a learner's connection up to 2 s in case it is about to lead;
  * stepping down waits until the log is durable before the election starts (the driver
    flushes its log when RoleChange.term moves on), commit knowledge is dropped;
  * read-only mode (Params.read_only_after_ms, readonlymode.enabled): not serving for that
    long -> RoleChange.read_only, until serving again;
  * the history for DIFF syncs is the log window: every entry not yet applied, and at most
    Params.history_max (commitLogCount) applied ones; the driver gives Member() the entries of
    its newest log files at a start.

Two choices of zkpy's own:
  * the leader counts itself in the NEWLEADER quorum only once its history is durable;
  * the SNAP is one message carrying the state and its voters (on the wire SNAP + SNAPDATA*
    + SNAPEND; the driver puts them together).

Also:
  * a full disk (LOGSTATE): a member whose log cannot take appends acks nothing until it can
    (the driver keeps the txns and retries); a learner tells its leader (LogState, once it is
    acking); the leader refuses new writes -- propose() returns None, a forwarded Request is
    answered Refused -- while fewer than a quorum of the voters (itself included) have acked
    NEWLEADER and can write (writes_refused); a stalled learner refuses its own clients'
    writes (forward() False). Reads and syncs go on;
  * reconfig: `config_of(payload)` (given by the driver; pure) names the voters a txn makes
    (None: not a membership change; the leader's driver preps /zookeeper/config's text into
    the payload). propose() of one returns None while another is not yet applied here
    (RECONFIGINPROGRESS, reconfig_in_progress()) or fewer than a quorum of the new voters are
    in sync (NEWCONFIGNOQUORUM, in_sync_quorum()). From a membership txn R until it is applied
    on the leader, every zxid >= R commits only once a quorum of the old voters AND of the new
    ones have acked it, and a new leader whose history holds R needs both quorums' NEWLEADER
    acks. Every member switches its voter set when it applies R; a member out of the voters
    follows as an observer; a leader out of them steps down; a SNAP carries the voters of the
    state it copies (the driver keeps them with that state, as LMDB keeps /zookeeper/config,
    and passes them to Member() on a restart).

Messages, and the zkpy.quorum.messages type each becomes on the wire:
    FollowerInfo(sid, accepted_epoch, last_zxid, applied_zxid, observer)   FOLLOWERINFO
    AckEpoch(current_epoch, last_zxid)        ACKEPOCH        Ack(zxid)          ACK
    Ping(session_ids)                         PING            Request(req_id, payload) REQUEST
    Sync(req_id)                              SYNC            LogState(stalled)  LOGSTATE
    LeaderInfo(epoch)                         LEADERINFO      Diff(zxid)         DIFF
    Trunc(zxid)                               TRUNC           Snap(zxid, state, voters)
                                                              SNAP+SNAPDATA*+SNAPEND
    Proposal(zxid, origin, req_id, payload)   PROPOSAL        NewLeader(zxid)    NEWLEADER
    UpToDate(zxid)                            UPTODATE        Commit(zxid)       COMMIT
    LPing()                                   LPING           SyncDone(req_id, zxid) SYNCDONE
    Refused(req_id)                           REFUSED
    election.Notification                     the election port's 41-byte notification
"""

import collections
from typing import Any, List, NamedTuple, Optional, Tuple

from zkpy.quorum import election as fle
from zkpy.quorum import zab

__all__ = ["LOOKING", "FOLLOWING", "LEADING", "OBSERVING", "Params", "Persisted", "Ready",
           "RoleChange", "Member", "FollowerInfo", "AckEpoch", "Ack", "Ping", "Request", "Sync",
           "LeaderInfo", "Diff", "Trunc", "Snap", "Proposal", "NewLeader", "UpToDate",
           "Commit", "LPing", "SyncDone", "Refused", "LogState", "LEARNER_MESSAGES",
           "BrokenInvariant"]

LOOKING, FOLLOWING, LEADING, OBSERVING = fle.LOOKING, fle.FOLLOWING, fle.LEADING, fle.OBSERVING


class BrokenInvariant(AssertionError):
    """A rule of Zab does not hold: a bug or corruption. The driver stops the process."""


def _check(cond, what):
    if not cond:
        raise BrokenInvariant(what)


# -- messages (learner -> leader) -----------------------------------------------------------------

class FollowerInfo(NamedTuple):
    sid: int
    accepted_epoch: int
    last_zxid: int
    applied_zxid: int
    observer: bool


class AckEpoch(NamedTuple):
    current_epoch: int
    last_zxid: int


class Ack(NamedTuple):
    zxid: int


class Ping(NamedTuple):
    session_ids: tuple = ()


class Request(NamedTuple):
    req_id: int
    payload: Any


class Sync(NamedTuple):
    req_id: int


class LogState(NamedTuple):
    stalled: bool


LEARNER_MESSAGES = (FollowerInfo, AckEpoch, Ack, Ping, Request, Sync, LogState)
_LEARNER_TYPES = frozenset(LEARNER_MESSAGES)


# -- messages (leader -> learner) -----------------------------------------------------------------

class LeaderInfo(NamedTuple):
    epoch: int


class Diff(NamedTuple):
    zxid: int


class Trunc(NamedTuple):
    zxid: int


class Snap(NamedTuple):
    zxid: int
    state: Any = None
    voters: Any = None       # the voter set of that state (its /zookeeper/config)


class Proposal(NamedTuple):
    zxid: int
    origin: int
    req_id: int
    payload: Any


class NewLeader(NamedTuple):
    zxid: int


class UpToDate(NamedTuple):
    zxid: int


class Commit(NamedTuple):
    zxid: int


class LPing(NamedTuple):
    pass


class SyncDone(NamedTuple):
    req_id: int
    zxid: int


class Refused(NamedTuple):
    req_id: int


# -- configuration, persisted state, output ----------------------------------------------------

class Params(NamedTuple):
    tick_ms: int = 2000
    init_limit: int = 10
    sync_limit: int = 5
    finalize_wait_ms: int = 200
    max_notification_interval_ms: int = 2000
    connect_retry_ms: int = 200       # Follower.run: the leader turned us away, retry
    learner_wait_ms: int = 2000       # QuorumPeer._learner_conn: a LOOKING server waits
    history_max: int = 100000         # commitLogCount (zkpy's default; ZooKeeper's 500)
    read_only_after_ms: Optional[int] = None   # readonlymode.enabled: max(2 s, tickTime)

    @property
    def init_ms(self):
        return self.init_limit * self.tick_ms

    @property
    def sync_ms(self):
        return self.sync_limit * self.tick_ms


class Persisted(NamedTuple):
    """What survives a restart: the epoch files, the applied (committed) state's zxid, and the
    durable log, which holds every txn after log_start (entries ascending)."""
    accepted_epoch: int = 0
    current_epoch: int = 0
    applied_zxid: int = 0
    log_start: int = 0
    entries: tuple = ()


class RoleChange(NamedTuple):
    state: int
    leader: Optional[int]
    epoch: Optional[int]
    serving: bool
    read_only: bool = False   # no quorum for read_only_after_ms: serve read-only sessions
    term: int = 0             # elections started so far: a new one means the role was left


class Ready(NamedTuple):
    accepted_epoch: Optional[int]
    current_epoch: Optional[int]
    truncate_after: Optional[int]
    snapshot: Optional[Tuple[int, Any]]
    append: List[Tuple[int, Any]]
    apply_upto: Optional[int]
    close: List[Tuple[int, bool]]
    messages: List[Tuple[int, Any]]
    role: Optional[RoleChange]
    requests: List[Tuple[int, int, Any]]
    matched: List[Tuple[int, int]]
    refused: List[int]
    syncs: List[Tuple[int, int]]
    touched: List[int]


class _Learner(object):
    """The leader's view of one connected learner (ZooKeeper's LearnerHandler)."""
    __slots__ = ("sid", "observer", "accepted_epoch", "last_zxid", "applied_zxid", "phase",
                 "deadline_ms", "heard_ms", "synced", "acked_newleader", "ack_epoch", "stalled")

    def __init__(self, info, now_ms, init_ms):
        self.sid = info.sid
        self.observer = info.observer
        self.accepted_epoch = info.accepted_epoch
        self.last_zxid = info.last_zxid
        self.applied_zxid = info.applied_zxid
        # info -> epoch (LEADERINFO sent) -> ackepoch -> newleader (synced, NEWLEADER sent)
        #      -> acked (NEWLEADER acked) -> uptodate
        self.phase = "info"
        self.deadline_ms = now_ms + init_ms
        self.heard_ms = now_ms
        self.synced = False          # receives the proposal stream
        self.acked_newleader = False
        self.ack_epoch = None        # (current_epoch, last_zxid) of its ACKEPOCH
        self.stalled = False         # LOGSTATE: its log cannot be written (it acks nothing)


# learner phases: connecting -> syncing (ACKEPOCH sent) -> diffing (DIFF/TRUNC/SNAP seen)
#                 -> newleader (waiting for the log to be durable) -> acked -> serving
# leader phases:  discovery -> epoch (LEADERINFO out) -> newleader (history taken) -> established


class Member(object):
    def __init__(self, myid, voters, params=Params(), persisted=Persisted(), observers=(),
                 config_of=None, config_version=0):
        self.myid = myid
        self.voters = voters if isinstance(voters, zab.VoterSet) else zab.voter_set(voters)
        self.observers = frozenset(observers) - self.voters
        self.observer = myid not in self.voters
        # The version of the voter set: the zxid of the membership txn that made it (a SNAP's
        # zxid for the voters it carried), sent with every election notification.
        self.config_version = config_version
        self._applied_config = (config_version, self.voters)   # that of the applied state
        self._config_of = config_of or (lambda payload: None)
        self.p = params
        ps = persisted
        _check(ps.log_start <= max(ps.applied_zxid, ps.log_start), "log start")
        self.accepted_epoch = ps.accepted_epoch
        self.current_epoch = ps.current_epoch
        self.applied_zxid = ps.applied_zxid
        self.log = collections.deque(ps.entries)     # the in-memory window of the log
        self.history_start = ps.log_start            # the window holds every txn after this
        # (zxid, voters) of the membership txns of the log not yet applied (config_of, asked
        # once per entry as it is appended)
        self._config_txns = []
        last = ps.log_start
        for z, p in ps.entries:
            _check(z > last, "log zxids not increasing at 0x%x" % z)
            last = z
            if z > ps.applied_zxid:
                v = self._config_of(p)
                if v is not None:
                    self._config_txns.append((z, v))
        self.last_zxid = max(last, ps.applied_zxid)
        self.durable_zxid = self.last_zxid
        self.committed_zxid = self.applied_zxid
        self._trim()
        # role
        self.state = LOOKING
        self.leader_id = None
        self.epoch = None
        self.serving = False
        self.phase = None
        self.election = None
        self.election_epoch = 0
        self.vote = None
        self._look_pending = False
        self._started = False
        self._looks = 0              # RoleChange.term
        self._looking_since = 0
        self.read_only = False
        # learner side
        self._heard_ms = 0
        self._connect_deadline_ms = 0
        self._retry_at_ms = None
        self._acking = False
        self._held = []              # messages that arrived while the NEWLEADER ack waits
        self._newleader_epoch = None
        self._req_ids_forwarded = set()
        self._touched = set()        # session ids for the next PING
        self.stalled = False         # my log cannot take appends (log_stalled)
        # leader side
        self.learners = {}
        self.acks = {}
        self._wgen = 0               # bumped when what writes_refused() reads changes
        self._wcache = (-1, None)
        self._pcache = (-1, False)
        self._held_infos = {}        # sid -> (FollowerInfo, deadline) while LOOKING
        self._answered_ms = {}       # non-voter -> when my vote last answered it
        self._syncs = collections.deque()   # (target zxid, sid or None, req_id)
        self._counter = 0
        self._next_ping_ms = 0
        self._phase_deadline_ms = 0
        self._history_last = None
        # the Ready being built
        self._reset_ready()
        self._role_reported = None
        self._snap_pending = False

    # ------------------------------------------------------------------ Ready

    def _reset_ready(self):
        self._w_accepted = None
        self._w_current = None
        self._w_trunc = None
        self._w_snap = None
        self._w_append = []
        self._w_apply = None
        self._w_close = []
        self._w_msgs = []
        self._w_requests = []
        self._w_matched = []
        self._w_refused = []
        self._w_syncs = []
        self._w_touched = []

    def _role(self):
        return RoleChange(self.state, self.leader_id, self.epoch, self.serving,
                          self.read_only and not self.serving, self._looks)

    def ready(self):
        """What the driver must do now, in the order of the fields (module docstring)."""
        role = None
        if self._role_changed():
            role = self._role_reported = self._role()
        r = Ready(self._w_accepted, self._w_current, self._w_trunc, self._w_snap,
                  self._w_append, self._w_apply, self._w_close, self._w_msgs, role,
                  self._w_requests, self._w_matched, self._w_refused, self._w_syncs,
                  self._w_touched)
        self._reset_ready()
        if self._snap_pending:
            self._snap_pending = False
            self._advance_apply()     # held back while a Snap was in this batch
        return r

    def has_ready(self):
        return bool(self._w_accepted is not None or self._w_current is not None
                    or self._w_trunc is not None or self._w_snap is not None or self._w_append
                    or self._w_apply is not None or self._w_close or self._w_msgs
                    or self._w_requests or self._w_matched or self._w_refused or self._w_syncs
                    or self._w_touched
                    or self._role_changed())

    def _role_changed(self):
        r = self._role_reported
        return (r is None or r.state != self.state or r.serving != self.serving
                or r.term != self._looks or r.leader != self.leader_id or r.epoch != self.epoch
                or r.read_only != (self.read_only and not self.serving))

    def _send(self, dest, msg):
        self._w_msgs.append((dest, msg))

    def _write_accepted(self, epoch):
        self.accepted_epoch = epoch
        self._w_accepted = epoch        # written before anything of this Ready is sent

    def _write_current(self, epoch):
        self.current_epoch = epoch
        self._w_current = epoch

    def _append(self, zxid, payload, voters):
        """The leader logs its own proposal (`voters`: the membership it makes, or None)."""
        if zxid <= self.last_zxid:
            raise BrokenInvariant("member %d: appending 0x%x after 0x%x"
                                  % (self.myid, zxid, self.last_zxid))
        self.log.append((zxid, payload))
        self.last_zxid = zxid
        self._w_append.append((zxid, payload))
        if voters is not None:
            self._config_txns.append((zxid, voters))

    def _truncate(self, zxid):
        if zxid < self.applied_zxid:
            raise BrokenInvariant("member %d: TRUNC to 0x%x below applied 0x%x"
                                  % (self.myid, zxid, self.applied_zxid))
        while self.log and self.log[-1][0] > zxid:
            self.log.pop()
        self._config_txns = [(z, v) for z, v in self._config_txns if z <= zxid]
        self.last_zxid = min(self.last_zxid, zxid)
        self.durable_zxid = min(self.durable_zxid, zxid)
        # Entries of this batch past zxid are never written; earlier ones are past the disk's
        # last entry, so truncating first and appending them after is the same log.
        self._w_append = [(z, p) for z, p in self._w_append if z <= zxid]
        _check(self._w_snap is None, "TRUNC and SNAP in one Ready")
        self._w_trunc = zxid if self._w_trunc is None else min(self._w_trunc, zxid)

    def _install_snapshot(self, zxid, state):
        _check(self._w_trunc is None, "TRUNC and SNAP in one Ready")
        self.log.clear()
        self._config_txns = []
        self.history_start = zxid
        self.last_zxid = self.durable_zxid = self.applied_zxid = self.committed_zxid = zxid
        self._w_append = []
        self._w_apply = None
        self._w_snap = (zxid, state)

    def _advance_apply(self):
        if self._snap_pending:
            return   # the Snap in this batch is taken at the zxid applied so far
        target = min(self.durable_zxid, self.committed_zxid)
        if target > self.applied_zxid:
            before = self.applied_zxid
            self.applied_zxid = target
            self._w_apply = target
            if self._config_txns:
                for z, voters in self._configs_in(before, target):
                    self._applied_config = (z, frozenset(voters))
                    if z > self.config_version:   # not older than one adopted in an election
                        self._switch_voters(voters, z)
                if self._config_txns[0][0] <= target:
                    self._config_txns = [(z, v) for z, v in self._config_txns if z > target]
            if len(self.log) > self.p.history_max:
                self._trim()

    def _configs_in(self, after, upto):
        """(zxid, voters) of the membership txns in my log within (after, upto]; `after` is
        never below the applied zxid (the list forgets applied ones)."""
        return [(z, v) for z, v in self._config_txns if after < z <= upto]

    def reconfig_in_progress(self):
        """A membership txn is in my log and not yet applied (RECONFIGINPROGRESS)."""
        return bool(self._config_txns)

    def in_sync_quorum(self, voters):
        """A quorum of `voters` has acked NEWLEADER (is in sync with me), or I am not leading
        (NEWCONFIGNOQUORUM when not)."""
        synced = {s for s, ln in self.learners.items() if ln.acked_newleader}
        return zab.is_quorum(synced | {self.myid}, zab.voter_set(voters, self.voters.rule))

    def _zxid_before(self, zxid):
        for z, _ in reversed(self.log):
            if z < zxid:
                return z
        return self.history_start

    def _switch_voters(self, voters, version):
        """A membership txn is applied here, a SNAP brought other voters, or an election
        notification a newer config."""
        self.config_version = max(self.config_version, version)
        known = self.voters | self.observers | frozenset(voters)
        self.voters = zab.voter_set(voters, self.voters.rule)
        self._wgen += 1
        self.observers = known - self.voters
        self.observer = self.myid not in self.voters
        if self.state in (FOLLOWING, OBSERVING):
            self.state = OBSERVING if self.observer else FOLLOWING
        # A leader out of the new voters steps down on its next tick.

    def _trim(self):
        # Keep at most history_max entries, never dropping one not applied.
        log = self.log
        while len(log) > self.p.history_max and log[0][0] <= self.applied_zxid:
            self.history_start = log.popleft()[0]

    # ------------------------------------------------------------------ inputs

    def start(self, now_ms):
        _check(not self._started, "start called twice")
        self._started = True
        self._look(now_ms)

    def tick(self, now_ms):
        if not self.serving and not self.read_only and self.p.read_only_after_ms is not None \
                and now_ms - self._looking_since >= self.p.read_only_after_ms:
            self.read_only = True   # no quorum: serve read-only sessions
        if self.state == LOOKING:
            for sid, (_, deadline) in list(self._held_infos.items()):
                if now_ms >= deadline:
                    del self._held_infos[sid]
                    self._w_close.append((sid, True))
            if self.election is not None:
                self._election_out(self.election.tick(now_ms), now_ms)
        elif self.state == LEADING:
            self._leader_tick(now_ms)
        else:
            self._learner_tick(now_ms)

    def receive(self, src, msg, now_ms):
        t = type(msg)
        if t is Proposal or t is Commit:    # the stream's bulk first
            self._from_leader(src, msg, now_ms)
        elif t is fle.Notification:
            self._notification(msg, now_ms)
        elif t in _LEARNER_TYPES:
            self._from_learner(src, msg, now_ms)
        else:
            self._from_leader(src, msg, now_ms)

    def stream(self, src, proposals, commit, now_ms):
        """A serving learner's bulk input in one call (the driver's fast path): the PROPOSALs
        of one read from the leader, in order, as (zxid, origin, req_id, payload), and the
        highest COMMIT zxid among them (0: none). The same as receive() of each Proposal and
        Commit in wire order -- a COMMIT never comes before its PROPOSAL, and what is applied
        is min(durable, committed) whatever the order, durable moving only in persisted() --
        without a message object each. False, and nothing done, unless serving as a learner
        of `src`: the driver then passes the messages one by one."""
        if self.phase != "serving" or src != self.leader_id or self._retry_at_ms is not None \
                or self.state not in (FOLLOWING, OBSERVING):
            return False
        self._heard_ms = now_ms
        if proposals:
            self._take_proposals(proposals)
        self._commit_seen(commit)
        return True

    def _take_proposals(self, proposals):
        """A learner logs the leader's proposals, (zxid, origin, req_id, payload) in order."""
        last = self.last_zxid
        log_append = self.log.append
        out_append = self._w_append.append
        config_of = self._config_of
        myid = self.myid
        for zxid, origin, req_id, payload in proposals:
            # A leader's log has no holes: the next txn of its epoch, or the first of a later
            # one (ZOOKEEPER-4925: a learner must refuse a discontinuous proposal stream).
            if zxid != last + 1 and not (zab.epoch_of(zxid) > zab.epoch_of(last)
                                         and zxid & 0xffffffff == 1):
                self.last_zxid = last
                raise BrokenInvariant("member %d: proposal 0x%x after 0x%x leaves a hole"
                                      % (myid, zxid, last))
            entry = (zxid, payload)
            log_append(entry)
            out_append(entry)
            voters = config_of(payload)
            if voters is not None:
                self._config_txns.append((zxid, voters))
            if origin == myid:
                self._w_matched.append((req_id, zxid))
            last = zxid
        self.last_zxid = last

    def _commit_seen(self, zxid):
        if zxid > self.committed_zxid:
            self.committed_zxid = zxid
            self._advance_apply()

    def requests(self, src, reqs, now_ms):
        """The leader's bulk input from a learner in one call (the driver's fast path): the
        REQUESTs of one read, in order, as (req_id, payload). The same as receive() of each
        Request while the leader is established and takes writes and the learner is past its
        NEWLEADER ack; False, and nothing done, otherwise (the driver passes them one by one:
        refused, dropped, or the learner dropped for a message out of turn)."""
        ln = self.learners.get(src) if self.state == LEADING else None
        if ln is None or self.phase != "established" or ln.phase not in ("acked", "uptodate") \
                or self.writes_refused() is not None:
            return False
        ln.heard_ms = now_ms
        self._w_requests.extend([(src, req_id, payload) for req_id, payload in reqs])
        return True

    def link_down(self, peer, now_ms, accepted):
        if accepted:
            self._held_infos.pop(peer, None)
            if self.state == LEADING and peer in self.learners:
                self._drop_learner(peer, now_ms, close=False)
        elif self.state in (FOLLOWING, OBSERVING) and peer == self.leader_id:
            if self.phase == "connecting" and now_ms <= self._connect_deadline_ms:
                self._retry_at_ms = now_ms + self.p.connect_retry_ms
            else:
                self._step_down(now_ms, "connection to leader %d closed" % peer, close=False)

    def persisted(self, zxid, now_ms=0):
        zxid = min(zxid, self.last_zxid)
        if zxid <= self.durable_zxid:
            return
        self.durable_zxid = zxid
        if self.state == LEADING:
            if self._history_last is not None:
                self.acks[self.myid] = zxid
                self._check_established(now_ms)
                self._try_commit()
        elif self.state in (FOLLOWING, OBSERVING):
            if self.phase == "newleader":
                self._maybe_ack_newleader(now_ms)
            elif self._acking:
                self._send(self.leader_id, Ack(zxid))   # acked only once durable
        elif self._look_pending and self.durable_zxid >= self.last_zxid:
            self._look(now_ms)
        self._advance_apply()

    def propose(self, payload, origin=0, req_id=0, now_ms=0):
        """The established leader logs a txn and sends it to the learners: its zxid, or None
        when this member cannot propose (the driver answers its client CONNECTIONLOSS)."""
        if not self.can_propose():
            return None
        new_voters = self._config_of(payload)
        if new_voters is not None:
            if self.reconfig_in_progress() or not self.in_sync_quorum(new_voters):
                return None   # RECONFIGINPROGRESS, NEWCONFIGNOQUORUM
        self._counter += 1
        if self._counter > 0xffffffff:
            self._step_down(now_ms, "zxid counter exhausted")   # a new epoch starts over
            return None
        zxid = zab.make_zxid(self.epoch, self._counter)
        self._append(zxid, payload, new_voters)
        # (the window is trimmed as txns are applied, _advance_apply)
        prop = Proposal(zxid, origin, req_id, payload)
        msgs = self._w_msgs
        for ln in self.learners.values():
            if ln.synced:
                msgs.append((ln.sid, prop))
        return zxid

    def forward(self, req_id, payload):
        """A serving learner's client write goes to the leader; False if not serving."""
        if not (self.serving and self.state in (FOLLOWING, OBSERVING)) or self.stalled:
            return False
        self._send(self.leader_id, Request(req_id, payload))
        return True

    def sync(self, req_id):
        """sync(): answered in ready().syncs with the zxid to wait for (applied here)."""
        if not self.serving:
            return False
        if self.state == LEADING:
            self._sync_request(None, req_id)
        else:
            self._send(self.leader_id, Sync(req_id))
        return True

    def log_stalled(self, stalled, now_ms=0):
        """My log cannot take appends (True: the driver keeps them and retries; nothing more
        becomes durable meanwhile) or can again (False; then persisted() as usual)."""
        stalled = bool(stalled)
        if stalled == self.stalled:
            return
        self.stalled = stalled
        self._wgen += 1
        if self.state in (FOLLOWING, OBSERVING) and self._acking:
            self._send(self.leader_id, LogState(stalled))

    def touch(self, session_id):
        """A learner's client was heard from: its id goes to the leader with the next PING."""
        if self.state in (FOLLOWING, OBSERVING):
            self._touched.add(session_id)

    def can_propose(self):
        """I am the established leader, a voter, and a quorum can write its log (propose
        would take a txn). Asked per client write: cached until the role, the phase, the
        voters or a log's state change (_wgen)."""
        gen, ok = self._pcache
        if gen == self._wgen:
            return ok
        ok = self.state == LEADING and self.phase == "established" \
            and self.writes_refused() is None and self.myid in self.voters
        self._pcache = (self._wgen, ok)
        return ok

    def writes_refused(self):
        """Why the established leader takes no new writes now (None: it does, or this is not
        an established leader): fewer than a quorum of the voters can write their logs
        (a write would wait for the disks; it is refused instead)."""
        gen, why = self._wcache
        if gen == self._wgen:
            return why
        why = self._writes_refused()
        self._wcache = (self._wgen, why)
        return why

    def _writes_refused(self):
        if not (self.state == LEADING and self.phase == "established"):
            return None
        writable = {s for s, ln in self.learners.items() if ln.acked_newleader and not ln.stalled}
        if not self.stalled:
            writable.add(self.myid)
        if zab.is_quorum(writable, self.voters):
            return None
        return ("no quorum of the voters %s can write its transaction log (writable: %s)"
                % (sorted(self.voters), sorted(writable)))

    def abandon(self, now_ms, why):
        """The driver cannot carry this role on (a SNAP it could not send or install, a local
        failure): leave it and look for a leader again."""
        if self.state != LOOKING:
            self._step_down(now_ms, why)

    def refuse(self, origin, req_id):
        """The leader's driver did not take a forwarded request (core.remote_request False)."""
        if self.state == LEADING and origin in self.learners:
            self._send(origin, Refused(req_id))

    # ------------------------------------------------------------------ election

    def _set_role(self, state, leader=None, epoch=None, serving=False):
        self.state, self.leader_id, self.epoch, self.serving = state, leader, epoch, serving
        self._wgen += 1
        if serving:
            self.read_only = False

    def _look(self, now_ms, new_term=True):
        if not self._look_pending and new_term:
            self._looks += 1
            self._looking_since = now_ms
        self._set_role(LOOKING)
        self.phase = None
        self.vote = None
        self.election = None
        if self.durable_zxid < self.last_zxid:
            # the driver flushes the log before the next election: wait for it.
            self._look_pending = True
            return
        self._look_pending = False
        el = fle.Election(self.myid, self.voters, self.last_zxid, self.current_epoch,
                          observer=self.observer, finalize_wait_ms=self.p.finalize_wait_ms,
                          max_notification_interval_ms=self.p.max_notification_interval_ms,
                          election_epoch=self.election_epoch,
                          observers=self.observers | ({self.myid} if self.observer else set()),
                          config=self._config_note())
        self.election = el
        self._election_out(el.start(now_ms), now_ms)

    def _config_note(self):
        return (self.config_version, frozenset(self.voters))

    def _adopt(self, config, now_ms):
        """A LOOKING member heard a newer config (applied by its sender, so committed): take
        its voters and start the election over with them (ZooKeeper's WorkerReceiver:
        processReconfig, "restarting leader election")."""
        version, voters = config
        if frozenset(voters) == self.voters:
            self.config_version = version
            self.election.config = self._config_note()
            return
        self._switch_voters(voters, version)
        self._look(now_ms, new_term=False)

    def _election_out(self, out, now_ms):
        for dest, n in out:
            if dest != self.myid:
                self._send(dest, n)
        el = self.election
        if el is not None and el.decided is not None:
            leader, vote = el.decided
            self.election_epoch = el.current().election_epoch
            self.election = None
            self.vote = vote
            if leader == self.myid:
                self._lead(now_ms)
            else:
                self._follow(leader, el.state, now_ms)

    def _notification(self, n, now_ms):
        if self.election is not None and n.config is not None \
                and n.config[0] > self.config_version:
            self._adopt(n.config, now_ms)
        el = self.election
        if el is not None:
            out = el.receive(n, now_ms)
            if n.sender not in self.voters and out:
                # A non-voter is answered with my vote at most once per finalize wait. Two
                # servers that disagree on the voters (one applied a reconfig, one did not)
                # would otherwise ping-pong for good: I answer its LOOKING notification as an
                # observer's, it answers mine as a stale round's (seed 519, reconfigs often).
                last = self._answered_ms.get(n.sender)
                if last is not None and now_ms - last < self.p.finalize_wait_ms:
                    out = [(d, x) for d, x in out if d != n.sender]
                else:
                    self._answered_ms[n.sender] = now_ms
            self._election_out(out, now_ms)
        elif self.vote is not None and self.state != LOOKING:
            reply = fle.answer(n, self.state, self.vote, self.election_epoch, self.myid,
                               self._config_note())
            if reply is not None:
                self._send(n.sender, reply)

    def _step_down(self, now_ms, why, close=True):
        """Leave the role (StepDown in the asyncio code): close its connections and look for a
        leader again. What I know is committed stays so: once my log has it durably it is
        applied, LOOKING or not (ZooKeeper goes further: its fastForwardDataBase applies all
        the log, committed or not). A read-only server shows every write acknowledged to
        a client before the leader went away, if its log holds it."""
        self.last_step_down = why
        if self.state == LEADING:
            for sid in list(self.learners):
                self._w_close.append((sid, True))
            self.learners.clear()
            self._wgen += 1
            self.acks.clear()
            self._syncs.clear()
            self._history_last = None
        elif self.state in (FOLLOWING, OBSERVING) and close:
            self._w_close.append((self.leader_id, False))
        self._acking = False
        self._held = []
        self._retry_at_ms = None
        self._look(now_ms)

    # ------------------------------------------------------------------ learner

    def _follow(self, leader, state, now_ms):
        self._set_role(state, leader)
        for sid in list(self._held_infos):
            self._w_close.append((sid, True))      # not leading: turn them away
        self._held_infos.clear()
        self.phase = "connecting"
        self._connect_deadline_ms = now_ms + max(self.p.init_ms, 1000)
        self._acking = False
        self._held = []
        self._touched = set()
        self._connect(now_ms)

    def _connect(self, now_ms):
        self._retry_at_ms = None
        self._heard_ms = now_ms
        self._send(self.leader_id, FollowerInfo(self.myid, self.accepted_epoch, self.last_zxid,
                                                self.applied_zxid, self.observer))

    def _learner_tick(self, now_ms):
        if self._retry_at_ms is not None:
            if now_ms >= self._retry_at_ms:
                if now_ms > self._connect_deadline_ms:
                    self._step_down(now_ms, "cannot reach leader %d" % self.leader_id)
                else:
                    self._connect(now_ms)
            return
        limit = self.p.sync_ms if self.phase == "serving" else self.p.init_ms
        if self.phase != "newleader" and now_ms - self._heard_ms > limit:
            self._step_down(now_ms, "leader %d silent for %d ms in %s"
                            % (self.leader_id, now_ms - self._heard_ms, self.phase))

    def _from_leader(self, src, msg, now_ms):
        if self.state not in (FOLLOWING, OBSERVING) or src != self.leader_id \
                or self._retry_at_ms is not None:
            return   # a message of a connection closed meanwhile
        self._heard_ms = now_ms
        phase = self.phase
        if phase == "connecting":
            if type(msg) is not LeaderInfo:
                return self._step_down(now_ms, "expected LEADERINFO, got %r" % (msg,))
            if msg.epoch < self.accepted_epoch:
                return self._step_down(now_ms, "leader %d offers epoch 0x%x below my accepted "
                                       "epoch 0x%x" % (src, msg.epoch, self.accepted_epoch))
            if msg.epoch > self.accepted_epoch:
                self._write_accepted(msg.epoch)   # written before ACKEPOCH goes out
            self.epoch = msg.epoch
            self._send(src, AckEpoch(self.current_epoch, self.last_zxid))
            self.phase = "syncing"
        elif phase == "syncing":
            t = type(msg)
            if t is Snap:
                self._install_snapshot(msg.zxid, msg.state)
                if msg.voters is not None:
                    self._applied_config = (msg.zxid, frozenset(msg.voters))
                    if msg.zxid > self.config_version:   # else I adopted a newer one
                        self._switch_voters(msg.voters, msg.zxid)
            elif t is Trunc:
                self._truncate(msg.zxid)
            elif t is not Diff:
                return self._step_down(now_ms, "expected DIFF/TRUNC/SNAP, got %r" % (msg,))
            self.phase = "diffing"
        elif phase == "diffing":
            if type(msg) is NewLeader:
                self._newleader_epoch = self.epoch
                self.phase = "newleader"
                self._maybe_ack_newleader(now_ms)
            elif type(msg) is not LPing:   # not answered before NEWLEADER (as Learner.syncWithLeader)
                self._dispatch(msg, now_ms)
        elif phase == "newleader":
            self._held.append(msg)   # read after the ACK, as the asyncio follower does
        elif phase == "acked":
            if type(msg) is UpToDate:
                self._uptodate(msg.zxid, now_ms)
            else:
                self._dispatch(msg, now_ms)
        else:
            self._dispatch(msg, now_ms)

    def _maybe_ack_newleader(self, now_ms):
        if self.durable_zxid < self.last_zxid:
            return   # everything synced must be durable first (ZOOKEEPER-3911/-4646/-4785)
        self._write_current(self._newleader_epoch)   # currentEpoch before the ACK
        self._acking = True
        self.phase = "acked"
        self._send(self.leader_id, Ack(self.last_zxid))
        if self.stalled:
            self._send(self.leader_id, LogState(True))   # it listens from now on
        held, self._held = self._held, []
        for msg in held:
            if self.phase not in ("acked", "serving"):
                break
            self._from_leader(self.leader_id, msg, now_ms)

    def _uptodate(self, zxid, now_ms):
        self.committed_zxid = max(self.committed_zxid, zxid)
        self._advance_apply()
        self.phase = "serving"
        self.serving = True
        self.read_only = False
        self.vote = fle.Vote(self.leader_id, self.last_zxid, self.current_epoch)

    def _dispatch(self, msg, now_ms):
        t = type(msg)
        if t is Proposal:
            self._take_proposals((msg,))
        elif t is Commit:
            self._commit_seen(msg.zxid)
        elif t is LPing:
            touched, self._touched = self._touched, set()
            self._send(self.leader_id, Ping(tuple(sorted(touched))))
        elif t is Refused:
            self._w_refused.append(msg.req_id)
        elif t is SyncDone:
            self._w_syncs.append((msg.req_id, msg.zxid))
        else:
            self._step_down(now_ms, "unexpected %r from the leader" % (msg,))

    # ------------------------------------------------------------------ leader

    def _lead(self, now_ms):
        self._set_role(LEADING, self.myid)
        self.phase = "discovery"
        self._phase_deadline_ms = now_ms + self.p.init_ms
        self.learners = {}
        self._wgen += 1
        self.acks = {}
        self._syncs.clear()
        self._history_last = None
        held, self._held_infos = self._held_infos, {}
        for sid, (info, _) in sorted(held.items()):
            self._learner_info(sid, info, now_ms)
        self._check_discovery(now_ms)

    def _voters_in(self, sids):
        return zab.is_quorum(set(sids) | {self.myid}, self.voters)

    def _check_discovery(self, now_ms):
        if self.phase != "discovery" or not self._voters_in(self.learners):
            return
        epoch = max([self.accepted_epoch] + [ln.accepted_epoch for ln in self.learners.values()
                                             if ln.sid in self.voters]) + 1
        self._write_accepted(epoch)
        self.epoch = epoch
        self.phase = "epoch"
        self._phase_deadline_ms = now_ms + self.p.init_ms
        for ln in list(self.learners.values()):
            self._drive(ln, now_ms)

    def _check_epoch_acks(self, now_ms):
        if self.phase != "epoch" or not self._voters_in(
                s for s, ln in self.learners.items() if ln.ack_epoch is not None):
            return
        # My whole log is the new epoch's initial history; committed once a quorum has it.
        self._history_last = self.last_zxid
        self.acks[self.myid] = self.durable_zxid
        self._write_current(self.epoch)
        self.phase = "newleader"
        self._phase_deadline_ms = now_ms + self.p.init_ms
        for ln in list(self.learners.values()):
            self._drive(ln, now_ms)
        self._check_established(now_ms)

    def _check_established(self, now_ms):
        if self.phase != "newleader":
            return
        acked = [s for s, ln in self.learners.items() if ln.acked_newleader]
        # I count once my own history is durable (the asyncio leader: flushed on stand-down).
        if self.durable_zxid >= self._history_last:
            acked.append(self.myid)
        if not zab.is_quorum(acked, self.voters):
            return
        for _, voters in self._configs_in(self.applied_zxid, self._history_last):
            if not zab.is_quorum(acked, zab.voter_set(voters)):
                return   # a membership change in the history: its new voters must have it too
        self.phase = "established"
        self._wgen += 1
        self.committed_zxid = max(self.committed_zxid, self._history_last)
        self._counter = 0
        self.serving = True
        self.read_only = False
        self.vote = fle.Vote(self.myid, self.last_zxid, self.current_epoch)
        self._next_ping_ms = now_ms + self.p.tick_ms // 2
        self._advance_apply()
        if self.myid not in self.voters:
            # Its history held a membership change without it.
            return self._step_down(now_ms, "not a voter of the membership in my history")
        for ln in list(self.learners.values()):
            self._drive(ln, now_ms)
        self._try_commit()

    def _learner_info(self, src, info, now_ms):
        if info.sid != src or src == self.myid:
            self._w_close.append((src, True))
            return
        self.learners[src] = _Learner(info, now_ms, self.p.init_ms)
        self._wgen += 1
        self.acks.pop(src, None)
        self._drive(self.learners[src], now_ms)

    def _from_learner(self, src, msg, now_ms):
        if type(msg) is FollowerInfo:
            if self.state == LOOKING:
                # It may have decided on us a moment before we did.
                self._held_infos[src] = (msg, now_ms + self.p.learner_wait_ms)
            elif self.state != LEADING:
                self._w_close.append((src, True))
            else:
                if src in self.learners:
                    self._drop_learner(src, now_ms, close=False)   # its old connection
                self._learner_info(src, msg, now_ms)
                self._check_discovery(now_ms)
            return
        ln = self.learners.get(src) if self.state == LEADING else None
        if ln is None:
            return   # a message of a connection closed meanwhile
        ln.heard_ms = now_ms
        t = type(msg)
        if ln.phase == "epoch":
            if t is not AckEpoch:
                return self._drop_learner(src, now_ms, "expected ACKEPOCH, got %r" % (msg,))
            ack = (msg.current_epoch, msg.last_zxid)
            mine = (self.current_epoch, self.last_zxid)
            if self.phase == "epoch" and ack > mine:
                # ZooKeeper's waitForEpochAck, "Follower is ahead of the leader": that learner
                # is dropped and the leader goes on with the others (or times out, and a new
                # election follows). Stepping down instead livelocked when the learner ahead
                # cannot lead (a non-voter: simulator seeds 451, 231). Once the leader is past
                # this phase a learner ahead is not checked: its sync TRUNCs what it has beyond.
                return self._drop_learner(src, now_ms, "follower %d is ahead of the leader: %r "
                                          "> %r" % (src, ack, mine))
            ln.ack_epoch = ack
            ln.last_zxid = msg.last_zxid
            ln.phase = "ackepoch"
            ln.deadline_ms = now_ms + self.p.init_ms
            self._drive(ln, now_ms)
            self._check_epoch_acks(now_ms)
        elif ln.phase == "newleader":
            if t is not Ack:
                return self._drop_learner(src, now_ms, "expected the NEWLEADER ACK, got %r"
                                          % (msg,))
            ln.acked_newleader = True
            self._wgen += 1
            ln.phase = "acked"
            ln.deadline_ms = now_ms + self.p.init_ms
            self.acks[src] = msg.zxid
            self._check_established(now_ms)
            self._drive(ln, now_ms)
        elif ln.phase in ("acked", "uptodate"):
            if t is Ack:
                self.acks[src] = msg.zxid
                self._try_commit()
            elif t is Ping:
                self._w_touched.extend(msg.session_ids)   # the driver touches them
            elif t is LogState:
                ln.stalled = bool(msg.stalled)
                self._wgen += 1
            elif t is Request:
                if self.phase == "established":
                    if self.writes_refused() is not None:
                        self._send(src, Refused(msg.req_id))
                    else:
                        self._w_requests.append((src, msg.req_id, msg.payload))
            elif t is Sync:
                self._sync_request(src, msg.req_id)
            else:
                self._drop_learner(src, now_ms, "unexpected %r" % (msg,))
        else:
            self._drop_learner(src, now_ms, "%r in phase %s" % (msg, ln.phase))

    def _drive(self, ln, now_ms):
        """Move one learner's handshake on as far as the leader's own progress allows."""
        if ln.phase == "info" and self.epoch is not None and self.phase != "discovery":
            self._send(ln.sid, LeaderInfo(self.epoch))
            ln.phase = "epoch"
            ln.deadline_ms = now_ms + self.p.init_ms
        if ln.phase == "ackepoch" and self._history_last is not None:
            self._sync_learner(ln)
            self._send(ln.sid, NewLeader(zab.make_zxid(self.epoch, 0)))
            ln.phase = "newleader"
            ln.deadline_ms = now_ms + self.p.init_ms
        if ln.phase == "acked" and self.phase == "established":
            self._send(ln.sid, UpToDate(self.committed_zxid))
            ln.phase = "uptodate"
            ln.heard_ms = now_ms
            self._try_commit()

    def _sync_learner(self, ln):
        """DIFF, TRUNC or SNAP, then the txns after; from now on the proposal stream."""
        zxids = [z for z, _ in self.log]
        leader_last = zxids[-1] if zxids else self.history_start
        kind, z = zab.sync_plan(zxids, self.history_start, leader_last, ln.last_zxid,
                                ln.applied_zxid)
        if kind == zab.SNAP:
            z = self.applied_zxid
            self._snap_pending = True    # the driver fills it with its state at z
            self._send(ln.sid, Snap(z, None, self._applied_config[1]))
        else:
            self._send(ln.sid, (Trunc if kind == zab.TRUNC else Diff)(z))
        for zx, p in self.log:
            if zx > z:
                self._send(ln.sid, Proposal(zx, 0, 0, p))
        ln.synced = True

    def _drop_learner(self, sid, now_ms, why=None, close=True):
        ln = self.learners.pop(sid, None)
        self._wgen += 1
        if ln is None:
            return
        self.acks.pop(sid, None)
        self._syncs = collections.deque(s for s in self._syncs if s[1] != sid)
        if close:
            self._w_close.append((sid, True))

    def _leader_tick(self, now_ms):
        for ln in list(self.learners.values()):
            limit_passed = (now_ms - ln.heard_ms > self.p.sync_ms) if ln.phase == "uptodate" \
                else (now_ms > ln.deadline_ms)
            if limit_passed:
                self._drop_learner(ln.sid, now_ms, "timed out in %s" % ln.phase)
        if self.myid not in self.voters:
            return self._step_down(now_ms, "not a voter of the membership applied")
        if self.phase != "established":
            if now_ms > self._phase_deadline_ms:
                self._step_down(now_ms, "timed out in %s" % self.phase)
            return
        if now_ms < self._next_ping_ms:
            return
        self._next_ping_ms = now_ms + self.p.tick_ms // 2
        alive = [s for s, ln in self.learners.items()
                 if ln.acked_newleader and now_ms - ln.heard_ms <= self.p.sync_ms]
        if not self._voters_in(alive):
            return self._step_down(now_ms, "only %s of the voters %s are in sync"
                                   % (sorted(alive + [self.myid]), sorted(self.voters)))
        for ln in self.learners.values():
            if ln.synced:
                self._send(ln.sid, LPing())

    def _try_commit(self):
        if self.phase != "established":
            return
        point = zab.commit_point(self.acks, self.voters)
        for z, voters in (self._configs_in(self.applied_zxid, point) if self._config_txns
                          else ()):
            # From a membership txn until it is applied here, both quorums must have a txn.
            new_point = zab.commit_point(self.acks, zab.voter_set(voters))
            if new_point < z:
                point = self._zxid_before(z)   # a zxid of the log, not z - 1
                break
            point = min(point, new_point)
        if point <= self.committed_zxid:
            return
        self.committed_zxid = point
        for ln in self.learners.values():
            if ln.synced:
                self._send(ln.sid, Commit(point))
        self._advance_apply()
        self._answer_syncs()

    def _sync_request(self, sid, req_id):
        if self.phase != "established":
            return
        self._syncs.append((self.last_zxid, sid, req_id))
        self._answer_syncs()

    def _answer_syncs(self):
        # A learner waits for the committed target; the leader's own client for applied.
        while self._syncs:
            target, sid, req_id = self._syncs[0]
            if target > self.committed_zxid:
                break
            self._syncs.popleft()
            if sid is None:
                self._w_syncs.append((req_id, target))
            else:
                self._send(sid, SyncDone(req_id, target))
