"""The quorum state machine's per-message cost on a serving follower and on the leader
(zkpy.quorum.machine.Member).

A follower of a 3-member ensemble, established in the seeded simulator (zkpy.testing.sim), is fed
a leader's stream of PROPOSAL / COMMIT pairs in reads of BATCH frames, each read followed by its
Ready, an fsync of what it appended (persisted) and that Ready -- what the asyncio driver
(zkpy.quorum.peer) does per read from the leader. Two ways in:
  receive  one Member.receive per message (a Proposal / Commit object each);
  stream   one Member.stream per read, fed the frames' field tuples (the driver's fast path).
The wire decoding, the log and LMDB are left out: this is the state machine's own share.

The leader of that ensemble is fed BATCH client writes a loop pass (propose each), then its
Ready is carried out (each message encoded as the driver does, zkpy.quorum.link.to_wire, once
per message object), its own fsync (persisted) and each follower's ACK of the batch, and the
Ready of those (the COMMIT): what the driver does per pass of the leader's loop under load.

As a pytest-benchmark file (not part of the test suite, see bench/README.md):
    python -m pytest bench/test_bench_quorum.py -q --benchmark-only --benchmark-columns=min,median
(the time shown is per N pairs). As a script, CPU microseconds per PROPOSAL + COMMIT, best of R:
    python bench/test_bench_quorum.py [--n 100000] [--rounds 5] [--batches 2,16,64]
"""

import argparse
import time

import pytest

from zkpy.quorum import machine as zm
from zkpy.testing import sim

N = 20000


def serving_follower(seed=3):
    """(member, leader id): a follower of an established ensemble, every member serving."""
    s = sim.Sim(seed, sim.Options(voters=3, crash_every_ms=0, partition_every_ms=0, drop_p=0.0,
                                  dup_p=0.0, faults_ms=0, calm_ms=0, check_acks=False))
    s.start()
    assert s.run_until(lambda: s.leader() is not None and all(
        m.serving for m in s.members.values()), 5000), "no established ensemble"
    leader = s.leader()
    follower = min(x for x in s.ids if x != leader)
    s.members[follower]._sim_members = s.members
    return s.members[follower], leader


def reads(first, n, batch, lag=8):
    """The leader's frames as (is_proposal, fields), `batch` a read: proposal i, and the commit
    of i - lag (the quorum's acks trail the stream)."""
    frames = []
    for i in range(n):
        frames.append((True, (first + i, 0, 0, (1, i))))
        if i >= lag:
            frames.append((False, (first + i - lag,)))
    return [frames[i:i + batch] for i in range(0, len(frames), batch)]


def feed(member, leader, batches, way):
    now = 10 ** 6
    for frames in batches:
        if way == "stream":
            props = [f for is_p, f in frames if is_p]
            commit = max((f[0] for is_p, f in frames if not is_p), default=0)
            if not member.stream(leader, props, commit, now):
                raise AssertionError("the follower is not serving")
        else:
            for is_p, f in frames:
                member.receive(leader, zm.Proposal(*f) if is_p else zm.Commit(f[0]), now)
        while member.has_ready():
            member.ready()
        member.persisted(member.last_zxid, now)
        while member.has_ready():
            member.ready()


def serving_leader(seed=3):
    member, leader = serving_follower(seed)
    s_members = member._sim_members
    m = s_members[leader]
    m._config_of = lambda payload: None   # the server's, with reconfig disabled (the default)
    return m, [x for x in s_members if x != leader]


def carry_out(member, sent):
    from zkpy.quorum.link import to_wire
    last = None
    while member.has_ready():
        r = member.ready()
        for dest, msg in r.messages:
            if msg is not last:
                last, frame = msg, to_wire(msg)
            sent.append(frame)


def lead(member, followers, n, batch):
    now = 10 ** 6
    sent = []
    payload = b"\0" * 120   # about a setData txn of 100 bytes
    for _ in range(0, n, batch):
        for _ in range(batch):
            if member.propose(payload, 0, 0, now) is None:
                raise AssertionError("the leader takes no writes")
        carry_out(member, sent)
        last = member.last_zxid
        member.persisted(last, now)
        for f in followers:
            member.receive(f, zm.Ack(last), now)
        carry_out(member, sent)
        del sent[:]
    return member


def run_once(n, batch, way):
    if way == "leader":
        member, followers = serving_leader()
        t0 = time.process_time()
        lead(member, followers, n, batch)
        dt = time.process_time() - t0
        if member.applied_zxid != member.last_zxid:
            raise AssertionError("applied 0x%x of 0x%x" % (member.applied_zxid,
                                                          member.last_zxid))
        return dt
    member, leader = serving_follower()
    batches = reads(member.last_zxid + 1, n, batch)
    t0 = time.process_time()
    feed(member, leader, batches, way)
    dt = time.process_time() - t0
    if member.applied_zxid < member.last_zxid - 8:
        raise AssertionError("applied 0x%x of 0x%x" % (member.applied_zxid, member.last_zxid))
    return dt


@pytest.mark.benchmark(group="quorum-follower")
@pytest.mark.parametrize("batch", [2, 16])
@pytest.mark.parametrize("way", ["receive", "stream"])
def test_follower_stream(benchmark, way, batch):
    def setup():
        member, leader = serving_follower()
        return (member, leader, reads(member.last_zxid + 1, N, batch), way), {}

    benchmark.pedantic(feed, setup=setup, rounds=5)


@pytest.mark.benchmark(group="quorum-leader")
@pytest.mark.parametrize("batch", [2, 16])
def test_leader_pass(benchmark, batch):
    def setup():
        member, followers = serving_leader()
        return (member, followers, N, batch), {}

    benchmark.pedantic(lead, setup=setup, rounds=5)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=100000, help="PROPOSAL + COMMIT pairs per round")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--batches", default="2,16,64", help="frames per read")
    a = ap.parse_args()
    print("%-8s %6s %12s" % ("way", "batch", "us per pair / per write"))
    for batch in [int(x) for x in a.batches.split(",")]:
        for way in ("receive", "stream", "leader"):
            best = min(run_once(a.n, batch, way) for _ in range(a.rounds))
            print("%-8s %6d %12.2f" % (way, batch, best / a.n * 1e6))


if __name__ == "__main__":
    main()
