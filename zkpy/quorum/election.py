"""Leader election: ZooKeeper's FastLeaderElection as a deterministic state machine.

Owns: ``Vote``, ``Notification``, the server states, ``total_order`` (totalOrderPredicate),
``Election`` (one round of lookForLeader: start / receive / tick, then ``decided``), ``answer``
(what a server that is no longer LOOKING sends a LOOKING peer, FastLeaderElection.Messenger's
WorkerReceiver) and the Notification wire format. Pure: it never touches a socket, a clock or a
random source; time comes in as ``now_ms`` and messages go out as ``(dest_id, Notification)``
pairs for the caller to send. Imported by ``zkpy.quorum.core``, the quorum driver and tests.

It decides who is proposed as leader, nothing more. As in ZooKeeper, election alone does not
guarantee that every server decides the same leader when messages are lost: a server may follow
a leader that ended up following someone else. Zab's discovery phase catches that (a leader
without a quorum of followers, or a follower that cannot reach its leader, goes back to LOOKING
and starts a new Election with ``election_epoch`` set to its last logical clock).

Simplified compared with FastLeaderElection.java:
- one voting view per Election: a newer config heard in a notification is adopted by the
  member (zkpy.quorum.machine), which starts a new Election; hierarchical quorums (zab.Hierarchical)
  as ZooKeeper's QuorumHierarchical, carried by the voters' zab.VoterSet;
- our own vote is recorded in the received-votes table directly instead of being delivered to
  ourselves through the connection manager;
- the finalize wait is one deadline (``finalize_wait_ms`` after a quorum first agrees) instead
  of a poll loop that restarts on every notification, and notifications that arrive during it
  are processed normally rather than discarded; a quorum of *every* voter decides at once;
- the retransmit interval starts at ``finalize_wait_ms`` and doubles up to
  ``max_notification_interval_ms``; on expiry we re-send to every voter (ZooKeeper re-sends to
  those whose queues are empty);
- an observer does not answer notifications with a lower election epoch (voters always answer
  a non-voter, so both answering would ping-pong forever).

Notification wire format (our own, not ZooKeeper's; big-endian)::

    notification := int64 sender, int8 state, int64 leader, int64 zxid,
                    int64 peer_epoch, int64 election_epoch        ; 41 bytes
                    [int64 config_version, uint32 count, int64 voter*count]   ; its config
    state        := 0 LOOKING | 1 FOLLOWING | 2 LEADING | 3 OBSERVING   ; ServerState ordinals
"""

import struct
from typing import Dict, FrozenSet, Iterable, List, NamedTuple, Optional, Tuple

from zkpy.quorum import zab

__all__ = ["LOOKING", "FOLLOWING", "LEADING", "OBSERVING", "STATE_NAMES", "NO_VOTE", "Vote",
           "Notification", "total_order", "Election", "answer", "encode_notification",
           "decode_notification", "NOTIFICATION_BYTES"]

# QuorumPeer.ServerState, in ordinal order (the wire byte is the ordinal).
LOOKING = 0
FOLLOWING = 1
LEADING = 2
OBSERVING = 3
STATE_NAMES = {LOOKING: "LOOKING", FOLLOWING: "FOLLOWING", LEADING: "LEADING",
               OBSERVING: "OBSERVING"}


class Vote(NamedTuple):
    """A proposal: who should lead, that server's last logged zxid and its current epoch."""
    leader: int
    zxid: int
    peer_epoch: int


class Notification(NamedTuple):
    """What peers exchange during election; election_epoch is the round's logical clock;
    config the sender's membership as (version, voter ids), or None (ZooKeeper's notification
    carries its config bytes the same way: a LOOKING server adopts a newer one)."""
    sender: int
    state: int
    vote: Vote
    election_epoch: int
    config: Optional[Tuple[int, FrozenSet[int]]] = None


# An observer's proposal (getInitId / getInitLastLoggedZxid / getPeerEpoch use Long.MIN_VALUE
# for non-participants): it loses to every real vote, and names no voter, so nobody counts it.
NO_VOTE = Vote(-1, -1, -1)

Outgoing = List[Tuple[int, Notification]]


def total_order(new: Vote, cur: Vote, voters=None) -> bool:
    """True when `new` beats `cur` (FastLeaderElection.totalOrderPredicate): a candidate of
    weight 0 (hierarchical quorums, `voters` a zab.VoterSet) never does."""
    if voters is not None and getattr(voters, "rule", None) is not None \
            and zab.weight_of(voters, new.leader) == 0:
        return False
    return (new.peer_epoch > cur.peer_epoch
            or (new.peer_epoch == cur.peer_epoch
                and (new.zxid > cur.zxid
                     or (new.zxid == cur.zxid and new.leader > cur.leader))))


def _same_vote(a: Vote, a_state: int, b: Vote, b_state: int) -> bool:
    # Vote.equals: when either side is LOOKING the whole vote must match; between servers that
    # have finished an election only the leader and its epoch matter (their zxids may differ).
    if a_state == LOOKING or b_state == LOOKING:
        return a == b
    return a.leader == b.leader and a.peer_epoch == b.peer_epoch


class Election:
    """One lookForLeader round for server `myid`.

    Drive it with ``start`` once, then ``receive`` for every notification and ``tick`` now and
    then; send what they return. Once ``decided`` is set (``(leader_id, Vote)``) they return []
    and the caller answers LOOKING peers with ``answer`` instead.
    """

    def __init__(self, myid: int, voters: Iterable[int], last_zxid: int, current_epoch: int,
                 observer: bool = False, finalize_wait_ms: int = 200,
                 max_notification_interval_ms: int = 2000, election_epoch: int = 0,
                 observers: Iterable[int] = (), config=None):
        self.myid = myid
        self.config = config   # (version, voters) sent with every notification, or None
        # (a zab.VoterSet keeps its quorum rule: hierarchical quorums)
        self.voters: FrozenSet[int] = voters if isinstance(voters, frozenset) \
            else frozenset(voters)
        # Non-voters we expect notifications from; a voter answers their LOOKING notifications
        # with its current vote (WorkerReceiver: "not a voter, send back our vote").
        self.observers: FrozenSet[int] = frozenset(observers) - self.voters
        self.observer = observer
        assert self.voters, "an election needs at least one voter"
        assert (myid not in self.voters) if observer else (myid in self.voters), \
            "server %d: observer=%s but voters=%s" % (myid, observer, sorted(self.voters))
        assert 0 < finalize_wait_ms <= max_notification_interval_ms, \
            (finalize_wait_ms, max_notification_interval_ms)
        self.finalize_wait_ms = finalize_wait_ms
        self.max_notification_interval_ms = max_notification_interval_ms
        self.election_epoch = election_epoch  # logicalclock
        self.init_vote = NO_VOTE if observer else Vote(myid, last_zxid, current_epoch)
        self.proposal = self.init_vote
        self.state = LOOKING
        self.decided: Optional[Tuple[int, Vote]] = None
        # recvset: votes of this round (election_epoch == ours), with the sender's state.
        self.recv: Dict[int, Tuple[Vote, int]] = {}
        # outofelection: FOLLOWING / LEADING notifications of any round: (vote, epoch, state).
        self.outofelection: Dict[int, Tuple[Vote, int, int]] = {}
        self.finalize_deadline_ms: Optional[int] = None
        self.notification_interval_ms = finalize_wait_ms
        self._quiet_since_ms = 0
        self._started = False

    # -- what we say -----------------------------------------------------------------------

    def current(self) -> Notification:
        """Our current notification: LOOKING with our proposal, or, once decided, our state
        and the vote we decided on (what ``answer`` needs)."""
        vote = self.decided[1] if self.decided else self.proposal
        return Notification(self.myid, self.state, vote, self.election_epoch, self.config)

    def _broadcast(self) -> Outgoing:
        n = self.current()
        return [(v, n) for v in sorted(self.voters) if v != self.myid]

    # -- driving -----------------------------------------------------------------------------

    def start(self, now_ms: int) -> Outgoing:
        """Begin the round: bump the logical clock, propose ourselves, tell every voter."""
        assert not self._started, "Election.start called twice"
        self._started = True
        self.election_epoch += 1
        self.proposal = self.init_vote
        self._quiet_since_ms = now_ms
        self._record_own_vote()
        out = self._broadcast()
        # A single-voter ensemble (or one where we are the only voter) decides on itself.
        self._check_recv_quorum(now_ms)
        return [] if self.decided else out

    def receive(self, n: Notification, now_ms: int) -> Outgoing:
        """Process one notification from a peer; return what to send."""
        assert self._started, "Election.receive before start"
        if self.decided is not None or n.sender == self.myid:
            return []
        if n.sender not in self.voters:
            # WorkerReceiver answers a non-voter (an observer) with our current vote; it never
            # enters the tallies. Only answer LOOKING ones, so two servers never ping-pong.
            if n.sender in self.observers and n.state == LOOKING and not self.observer:
                return [(n.sender, self.current())]
            return []
        if n.vote.leader not in self.voters:
            return []  # validVoter(n.leader): a vote for a non-member is ignored
        self._quiet_since_ms = now_ms
        if n.state == LOOKING:
            return self._receive_looking(n, now_ms)
        if n.state in (FOLLOWING, LEADING):
            self._receive_out_of_election(n)
        return []  # OBSERVING: logged and ignored by ZooKeeper

    def tick(self, now_ms: int) -> Outgoing:
        """Let time pass: finalize a pending decision, or re-send our vote when it is quiet."""
        assert self._started, "Election.tick before start"
        if self.decided is not None:
            return []
        if self.finalize_deadline_ms is not None:
            if now_ms >= self.finalize_deadline_ms:
                self._decide(self.proposal.leader, self.proposal)
            return []  # no retransmission while waiting to finalize, as in lookForLeader
        if now_ms - self._quiet_since_ms >= self.notification_interval_ms:
            self._quiet_since_ms = now_ms
            self.notification_interval_ms = min(2 * self.notification_interval_ms,
                                                self.max_notification_interval_ms)
            return self._broadcast()
        return []

    # -- the rules ---------------------------------------------------------------------------

    def _receive_looking(self, n: Notification, now_ms: int) -> Outgoing:
        out: Outgoing = []
        if n.election_epoch > self.election_epoch:
            # A newer round: join it, forget this round's votes, and propose the better of
            # their vote and our own initial vote.
            self.election_epoch = n.election_epoch
            self.recv.clear()
            self.finalize_deadline_ms = None
            self._set_proposal(n.vote if total_order(n.vote, self.init_vote, self.voters)
                               else self.init_vote)
            out = self._broadcast()
        elif n.election_epoch < self.election_epoch:
            # A stale round: not counted, but tell the sender where we are so it catches up.
            # An observer stays quiet: the voter would answer it back, forever.
            return [] if self.observer else [(n.sender, self.current())]
        elif total_order(n.vote, self.proposal, self.voters):
            self._set_proposal(n.vote)
            out = self._broadcast()
        elif not self.observer and total_order(self.proposal, n.vote, self.voters):
            # A worse vote of this round: tell its sender ours (zkpy's addition; ZooKeeper
            # stays quiet). Its server may be the one that never heard the better votes (a
            # partition lost them), re-sending its vote every interval -- which keeps every
            # other server's quiet timer from expiring, so nobody re-sends the better one:
            # with timers in lockstep the election never ends (simulator seed 215). It adopts
            # ours at once (total order), so this never ping-pongs.
            out = [(n.sender, self.current())]
        self.recv[n.sender] = (n.vote, LOOKING)
        self._check_recv_quorum(now_ms)
        return [] if self.decided else out

    def _receive_out_of_election(self, n: Notification) -> None:
        leader = n.vote.leader
        if n.election_epoch == self.election_epoch:
            # Notifications of the same round are considered together with the LOOKING ones.
            self.recv[n.sender] = (n.vote, n.state)
            if self._agree(self.recv, n) and self._check_leader(self.recv, leader,
                                                                n.election_epoch):
                self._decide(leader, n.vote)
                return
        # Before joining an established ensemble, a quorum must follow the same leader and the
        # leader must have told us it leads (ZOOKEEPER-1732: this holds this round's votes too).
        self.outofelection[n.sender] = (n.vote, n.election_epoch, n.state)
        table = {sid: (vote, state) for sid, (vote, _, state) in self.outofelection.items()}
        if self._agree(table, n) and self._check_leader(table, leader, n.election_epoch):
            self.election_epoch = n.election_epoch
            self._decide(leader, n.vote)

    def _agree(self, table: Dict[int, Tuple[Vote, int]], n: Notification) -> bool:
        ids = {sid for sid, (vote, state) in table.items()
               if _same_vote(vote, state, n.vote, n.state)}
        return self._is_quorum(ids)

    def _check_leader(self, table: Dict[int, Tuple[Vote, int]], leader: int,
                      election_epoch: int) -> bool:
        # checkLeader: if everyone else thinks I lead, I lead (in the same round); if the
        # leader is someone else, I must have heard from it saying it is LEADING.
        if leader == self.myid:
            return self.election_epoch == election_epoch
        entry = table.get(leader)
        return entry is not None and entry[1] == LEADING

    def _check_recv_quorum(self, now_ms: int) -> None:
        agreeing = {sid for sid, (vote, _) in self.recv.items() if vote == self.proposal}
        if not self._is_quorum(agreeing):
            self.finalize_deadline_ms = None
        elif agreeing >= self.voters:
            self._decide(self.proposal.leader, self.proposal)  # nobody left to change it
        elif self.finalize_deadline_ms is None:
            # Wait a little for a better vote before settling (finalizeWait).
            self.finalize_deadline_ms = now_ms + self.finalize_wait_ms

    def _is_quorum(self, ids) -> bool:
        return zab.is_quorum(ids, self.voters)

    def _set_proposal(self, vote: Vote) -> None:
        if vote != self.proposal:
            self.finalize_deadline_ms = None  # a better vote: the election continues
        self.proposal = vote
        self._record_own_vote()

    def _record_own_vote(self) -> None:
        if not self.observer:
            self.recv[self.myid] = (self.proposal, LOOKING)

    def _decide(self, leader: int, vote: Vote) -> None:
        assert leader in self.voters, "decided on non-voter %d" % leader
        self.decided = (leader, vote)
        self.finalize_deadline_ms = None
        if self.observer:
            self.state = OBSERVING
        else:
            self.state = LEADING if leader == self.myid else FOLLOWING


def answer(n: Notification, my_state: int, my_vote: Vote, my_election_epoch: int,
           myid: int, config=None) -> Optional[Notification]:
    """What a server that is not LOOKING sends back to a notification `n`.

    A LOOKING sender gets the vote we follow, our state and our election epoch (WorkerReceiver,
    "if this server is not looking, send back the current leader"). Anything else gets None, so
    two servers that are done never answer each other forever.
    """
    assert my_state != LOOKING, "answer() is for servers that are not looking"
    if n.state != LOOKING or n.sender == myid:
        return None
    return Notification(myid, my_state, my_vote, my_election_epoch, config)


_NOTIFICATION = struct.Struct(">qbqqqq")
NOTIFICATION_BYTES = _NOTIFICATION.size  # 41
_CONFIG_HEAD = struct.Struct(">qI")
_SID = struct.Struct(">q")
MAX_CONFIG_VOTERS = 255


def encode_notification(n: Notification) -> bytes:
    """The 41-byte wire form of `n` (grammar in the module docstring)."""
    v = n.vote
    out = _NOTIFICATION.pack(n.sender, n.state, v.leader, v.zxid, v.peer_epoch,
                             n.election_epoch)
    if n.config is not None:
        version, voters = n.config
        voters = sorted(voters)
        out += _CONFIG_HEAD.pack(version, len(voters)) + b"".join(_SID.pack(s) for s in voters)
    return out


def decode_notification(b) -> Notification:
    """Parse a 41-byte notification; ValueError on a wrong length or an unknown state."""
    if len(b) < NOTIFICATION_BYTES:
        raise ValueError("notification: %d bytes, expected %d" % (len(b), NOTIFICATION_BYTES))
    sender, state, leader, zxid, peer_epoch, election_epoch = _NOTIFICATION.unpack_from(b)
    if state not in STATE_NAMES:
        raise ValueError("notification from %d: unknown state %d" % (sender, state))
    config = None
    if len(b) > NOTIFICATION_BYTES:
        o = NOTIFICATION_BYTES
        if len(b) < o + _CONFIG_HEAD.size:
            raise ValueError("notification from %d: a truncated config" % sender)
        version, count = _CONFIG_HEAD.unpack_from(b, o)
        o += _CONFIG_HEAD.size
        if count > MAX_CONFIG_VOTERS or len(b) != o + count * _SID.size:
            raise ValueError("notification from %d: a config of %d voters in %d bytes"
                             % (sender, count, len(b) - o))
        config = (version, frozenset(_SID.unpack_from(b, o + i * _SID.size)[0]
                                     for i in range(count)))
    return Notification(sender, state, Vote(leader, zxid, peer_epoch), election_epoch, config)
