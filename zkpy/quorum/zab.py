"""Zab's bookkeeping, pure: the leader's commit point from acks, and how a learner is synced.

zxid = epoch << 32 | counter. Acks are cumulative (a learner logs in zxid order, so its ACK of z
says every txn up to z is durable there); the commit point is the highest zxid durable on a
quorum of voters, the leader included. A quorum is a majority of the voters, or what a
Hierarchical rule (group.N / weight.N) says, carried by the VoterSet.
"""

EPOCH_SHIFT = 32


def epoch_of(zxid):
    return zxid >> EPOCH_SHIFT


def make_zxid(epoch, counter):
    return (epoch << EPOCH_SHIFT) | counter


def quorum_size(voters):
    return len(voters) // 2 + 1


class Hierarchical(object):
    """ZooKeeper's hierarchical quorums (QuorumHierarchical: `group.N=a:b:c`, `weight.a=w`): a
    set is a quorum when more than half of the groups (those of non-zero weight) each have more
    than half of their weight in it -- `w > total // 2`, integer halves, as ZooKeeper computes
    them. A server's weight defaults to 1; weight 0 votes but never counts, nor leads."""

    def __init__(self, groups, weights):
        self.group_of = {}
        self.weight = {}
        for gid, sids in groups.items():
            for sid in sids:
                self.group_of[sid] = gid
                self.weight[sid] = weights.get(sid, 1)
        self.group_weight = {}
        for sid, gid in self.group_of.items():
            self.group_weight[gid] = self.group_weight.get(gid, 0) + self.weight[sid]
        self.num_groups = sum(1 for w in self.group_weight.values() if w > 0)

    def weight_of(self, sid):
        return self.weight.get(sid, 0)

    def contains_quorum(self, sids):
        got = {}
        for sid in sids:
            gid = self.group_of.get(sid)
            if gid is not None:
                got[gid] = got.get(gid, 0) + self.weight[sid]
        majorities = sum(1 for gid, w in got.items() if w > self.group_weight[gid] // 2)
        return majorities > self.num_groups // 2

    def __repr__(self):
        return "Hierarchical(%d groups)" % len(self.group_weight)


class VoterSet(frozenset):
    """The voting members, with the rule that says which of their sets is a quorum (`rule`:
    None for a majority, or a Hierarchical). Set operations on it give plain frozensets."""
    rule = None


def voter_set(sids, rule=None):
    v = VoterSet(sids)
    v.rule = rule
    return v


def weight_of(voters, sid):
    """A voter's weight (1 under a majority rule; 0 for a non-voter)."""
    rule = getattr(voters, "rule", None)
    if rule is not None:
        return rule.weight_of(sid) if sid in voters else 0
    return 1 if sid in voters else 0


def commit_point(acks, voters):
    """Highest zxid acked by a quorum of `voters`; acks: {sid: zxid} (missing = nothing)."""
    rule = getattr(voters, "rule", None)
    if rule is None:
        values = sorted((acks.get(sid, -1) for sid in voters), reverse=True)
        return values[quorum_size(voters) - 1]
    for z in sorted({acks.get(sid, -1) for sid in voters}, reverse=True):
        if rule.contains_quorum([sid for sid in voters if acks.get(sid, -1) >= z]):
            return z
    return -1


def is_quorum(sids, voters):
    rule = getattr(voters, "rule", None)
    if rule is not None:
        return rule.contains_quorum(set(sids) & voters)
    return len(set(sids) & set(voters)) >= quorum_size(voters)


DIFF, TRUNC, SNAP = "DIFF", "TRUNC", "SNAP"


def sync_plan(history_zxids, history_start, leader_last, learner_last, learner_applied):
    """How to bring a learner's log in line with the leader's: (kind, zxid).

    history_zxids: the zxids the leader holds in memory, ascending, covering every txn after
    history_start (the leader's log has nothing it lacks after that point: history_start is the
    zxid the in-memory history begins after, e.g. its LMDB state when it loaded it);
    leader_last: the last zxid in the leader's log (proposed or not);
    learner_last / learner_applied: the learner's last logged and last applied (committed) zxid.
      (DIFF, z): the learner's log agrees up to z == learner_last; send the txns after z.
      (TRUNC, z): drop the learner's txns after z (never below what it applied), then as DIFF.
      (SNAP, z): send a copy of the leader's state at z (its applied state), then the txns after.
    A txn with the same zxid is the same txn on every server (one leader per epoch), so "the
    learner's last zxid is in my history" means its log is a prefix of mine.
    """
    if learner_last == leader_last:
        return DIFF, learner_last
    if learner_last < history_start:
        return SNAP, None
    if learner_last == history_start:
        return DIFF, learner_last
    # learner_last is past the start of our history: in it (a prefix), or a txn we do not have
    # (proposed by an earlier leader, never committed): cut it back to the last zxid we share.
    lo, hi = 0, len(history_zxids)
    while lo < hi:
        mid = (lo + hi) // 2
        if history_zxids[mid] <= learner_last:
            lo = mid + 1
        else:
            hi = mid
    shared = history_zxids[lo - 1] if lo else history_start
    if shared == learner_last:
        return DIFF, learner_last
    if shared < learner_applied:
        # Cannot happen when only committed txns are applied; refuse to cut committed state.
        return SNAP, None
    return TRUNC, shared
