"""Zab's bookkeeping, pure: the leader's commit point from acks, and how a learner is synced.

zxid = epoch << 32 | counter. Acks are cumulative (a learner logs in zxid order, so its ACK of z
says every txn up to z is durable there); the commit point is the highest zxid durable on a
quorum of voters, the leader included.
"""

EPOCH_SHIFT = 32


def epoch_of(zxid):
    return zxid >> EPOCH_SHIFT


def make_zxid(epoch, counter):
    return (epoch << EPOCH_SHIFT) | counter


def quorum_size(voters):
    return len(voters) // 2 + 1


def commit_point(acks, voters):
    """Highest zxid acked by a quorum of `voters`; acks: {sid: zxid} (missing = nothing)."""
    values = sorted((acks.get(sid, -1) for sid in voters), reverse=True)
    return values[quorum_size(voters) - 1]


def is_quorum(sids, voters):
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
