"""zkpy.quorum.zab (commit point, sync plan) and zkpy.quorum.messages (learner protocol codec)."""

import pytest

from zkpy.quorum import messages as m
from zkpy.quorum import zab


def z(epoch, counter):
    return zab.make_zxid(epoch, counter)


def test_zxid_layout():
    assert z(3, 7) == (3 << 32) | 7
    assert zab.epoch_of(z(3, 7)) == 3


def test_commit_point_needs_a_quorum_of_voters():
    voters = {1, 2, 3}
    assert zab.commit_point({1: 10}, voters) == -1
    assert zab.commit_point({1: 10, 2: 7}, voters) == 7
    assert zab.commit_point({1: 10, 2: 7, 3: 9}, voters) == 9
    # An observer's (non-voter's) ack does not count.
    assert zab.commit_point({1: 10, 4: 10}, voters) == -1
    five = {1, 2, 3, 4, 5}
    assert zab.commit_point({1: 5, 2: 4, 3: 3, 4: 2}, five) == 3


def test_is_quorum():
    assert zab.is_quorum({1, 2}, {1, 2, 3})
    assert not zab.is_quorum({1, 4}, {1, 2, 3})
    assert not zab.is_quorum({1, 2}, {1, 2, 3, 4})


HIST = [z(1, 1), z(1, 2), z(1, 3), z(2, 1), z(2, 2)]


@pytest.mark.parametrize("learner_last, applied, expected", [
    (z(2, 2), z(2, 2), (zab.DIFF, z(2, 2))),      # up to date
    (z(1, 2), z(1, 1), (zab.DIFF, z(1, 2))),      # a prefix
    (0, 0, (zab.DIFF, 0)),                        # history starts at 0
    (z(1, 5), z(1, 3), (zab.TRUNC, z(1, 3))),     # proposals of epoch 1 nobody committed
    (z(2, 9), z(2, 2), (zab.TRUNC, z(2, 2))),     # ahead of the leader
    (z(1, 5), z(1, 4), (zab.SNAP, None)),         # would cut applied state: never
])
def test_sync_plan(learner_last, applied, expected):
    assert zab.sync_plan(HIST, 0, HIST[-1], learner_last, applied) == expected


def test_sync_plan_before_history_is_snap():
    assert zab.sync_plan(HIST[2:], z(1, 2), HIST[-1], z(1, 1), z(1, 1)) == (zab.SNAP, None)
    assert zab.sync_plan(HIST[2:], z(1, 2), HIST[-1], z(1, 2), z(1, 1)) == (zab.DIFF, z(1, 2))
    assert zab.sync_plan([], z(1, 2), z(1, 2), z(1, 2), 0) == (zab.DIFF, z(1, 2))


def test_messages_round_trip():
    frames = [
        m.follower_info(2, 5, z(5, 9), z(5, 3), observer=True),
        m.ack_epoch(4, z(4, 1)),
        m.one(m.COMMIT, z(5, 10)),
        m.ping([1, -2, 3]),
        m.request(7, 0x1234, 9, 5, b"body", [("digest", "u:x"), ("ip", "1.2.3.4")]),
        m.proposal(z(5, 11), 2, 7, b"\x00txn"),
        m.snap(z(5, 4), {3, 1, 2}), m.snap_data(b"chunk"), m.snap_end(), m.lping(),
        m.sync_done(3, z(5, 2)),
        m.one(m.LOGSTATE, 1), m.one(m.REFUSED, 8),
    ]
    dec = m.Decoder()
    stream = b"".join(frames)
    got = []
    for i in range(0, len(stream), 7):   # split anywhere
        got.extend(m.decode(f) for f in dec.feed(stream[i:i + 7]))
    assert got == [
        (m.FOLLOWERINFO, (2, 5, z(5, 9), z(5, 3), True)),
        (m.ACKEPOCH, (4, z(4, 1))),
        (m.COMMIT, (z(5, 10),)),
        (m.PING, ([1, -2, 3],)),
        (m.REQUEST, (7, (0x1234, 9, 5, b"body", (("digest", "u:x"), ("ip", "1.2.3.4"))))),
        (m.PROPOSAL, (z(5, 11), 2, 7, b"\x00txn")),
        (m.SNAP, (z(5, 4), (1, 2, 3))),
        (m.SNAPDATA, (b"chunk",)), (m.SNAPEND, ()), (m.LPING, ()),
        (m.SYNCDONE, (3, z(5, 2))),
        (m.LOGSTATE, (1,)), (m.REFUSED, (8,)),
    ]


@pytest.mark.parametrize("body", [b"", b"\x63", b"\x03\x00", m.one(m.ACK, 1)[4:] + b"x",
                                  m.ping([1])[4:-1], m.snap(1, [1, 2])[4:-1], b"\x1a" + b"\x00" * 24 + b"\xff\xff\xff\xff"])
def test_bad_messages_are_protocol_errors(body):
    with pytest.raises(m.ProtocolError):
        m.decode(body)


def test_decoder_refuses_absurd_lengths():
    with pytest.raises(m.ProtocolError):
        m.Decoder().feed(b"\xff\xff\xff\xff\x01")
    with pytest.raises(m.ProtocolError):
        m.Decoder().feed(b"\x00\x00\x00\x00")


# --- hierarchical quorums ------------------------------------------------------------------------

def _hier(weights=None):
    return zab.voter_set({1, 2, 3, 4, 5}, zab.Hierarchical({1: (1, 2, 3), 2: (4,), 3: (5,)},
                                                           weights or {}))


def test_hierarchical_quorum_is_a_majority_of_group_majorities():
    v = _hier()
    assert not zab.is_quorum({1, 2, 3}, v)      # 3 of 5 servers, 1 of 3 groups
    assert zab.is_quorum({1, 4, 5}, v)           # groups 2 and 3
    assert zab.is_quorum({1, 2, 4}, v)           # groups 1 (2 of 3) and 2
    assert not zab.is_quorum({1, 4}, v)          # group 2 only (1 of 3 in group 1)
    assert not zab.is_quorum(set(), v)
    # a plain majority still for a set without a rule
    assert zab.is_quorum({1, 2, 3}, frozenset({1, 2, 3, 4, 5}))


def test_hierarchical_weights_integer_halves_and_zero_weight():
    # group 1 weighs 1+1+2 = 4: it needs more than 2 (its integer half).
    v = _hier({3: 2})
    assert not zab.is_quorum({1, 2, 4}, v)       # group 1 has 2, not more than 2
    assert zab.is_quorum({1, 3, 4}, v)           # 3 > 2
    # weight 0: votes, never counts; a group of weight 0 is not counted among the groups.
    z = zab.voter_set({1, 2, 3, 4}, zab.Hierarchical({1: (1, 2, 3), 2: (4,)}, {4: 0}))
    assert zab.weight_of(z, 4) == 0 and zab.weight_of(z, 1) == 1
    assert zab.is_quorum({1, 2}, z)              # 1 of 1 counted group
    assert not zab.is_quorum({1, 4}, z)


def test_hierarchical_commit_point():
    v = _hier()
    acks = {1: 10, 2: 9, 3: 8, 4: 5, 5: 3}
    # highest z acked by a quorum: {>=5}: 1,2,3,4 -> groups 1 and 2
    assert zab.commit_point(acks, v) == 5
    assert zab.commit_point({1: 10, 2: 10, 3: 10}, v) == -1
    assert zab.commit_point({1: 7, 4: 6, 5: 9}, v) == 6
