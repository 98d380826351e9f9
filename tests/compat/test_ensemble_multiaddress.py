"""multiAddress.enabled (ZooKeeper 3.6+): a server line with several `|`-joined address pairs.

Three zkpy members whose every server line lists a dead pair first -- 127.0.0.1 ports this test
holds bound without listening, so the member cannot listen there and a connection is refused
at once -- and a working pair second. The members must find each other on the second pair for
the election and for Zab: the ensemble forms, replicates a write and survives a leader kill.
(zkpy only: Apache ZooKeeper exits when it cannot bind one of its addresses.)
"""

import socket
import time

import pytest

from compat.ensemble import Ensemble, KazooClients
from zkpy.testing import harness

pytestmark = pytest.mark.timeout(60)


class DeadFirstEnsemble(Ensemble):
    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.holders = []
        self.dead = {}
        for m in self.members:
            pair = []
            for _ in range(2):
                s = socket.socket()   # bound, never listening, no SO_REUSEADDR
                s.bind((harness.LOCALHOST, 0))
                self.holders.append(s)
                pair.append(s.getsockname()[1])
            self.dead[m.sid] = tuple(pair)

    def server_line(self, viewer, member):
        dq, de = self.dead[member.sid]
        return "%s:%d:%d|%s" % (harness.LOCALHOST, dq, de,
                                super().server_line(viewer, member))

    def stop(self):
        super().stop()
        for s in self.holders:
            s.close()


def test_dead_first_address_ensemble_forms_replicates_and_fails_over(tmp_path, request):
    ens = DeadFirstEnsemble("zkpy", tmp_path / "ens", extra_cfg={
        "multiAddress.enabled": "true",
        "multiAddress.reachabilityCheckTimeoutMs": "500"})
    request.node._zk_servers = list(ens.members)
    clients = KazooClients()
    try:
        t0 = time.monotonic()
        ens.start(timeout=30)
        leader = ens.leader(timeout=10)
        assert leader is not None
        # conf prints the line as ZooKeeper does: every pair, `|`-joined
        dq, de = ens.dead[1]
        m1 = ens.member(1)
        assert "server.1=127.0.0.1:%d:%d|127.0.0.1:%d:%d:participant" % (
            dq, de, m1.peer_port, m1.election_port) in m1.four_letter("conf")

        follower = ens.followers()[0]
        w = clients(follower.hosts)
        w.create("/multi", b"one")
        for m in ens.members:
            r = clients(m.hosts)
            r.sync("/multi")
            assert r.get("/multi")[0] == b"one", m

        leader.kill()
        rest = [m for m in ens.members if m is not leader]
        ens.wait_healthy(30, members=rest)
        new_leader = ens.leader(timeout=10)
        assert new_leader is not None and new_leader is not leader
        w2 = clients(rest[0].hosts)
        w2.set("/multi", b"two")
        for m in rest:
            r = clients(m.hosts)
            r.sync("/multi")
            assert r.get("/multi")[0] == b"two", m
        print("multiAddress ensemble: %.1fs" % (time.monotonic() - t0))
    finally:
        clients.close()
        ens.stop()
