"""A follower (or observer) of an ensemble (Zab's learner side).

Owns, while this server follows: the connection to the leader, the sync (DIFF / TRUNC / SNAP,
then persist and acknowledge NEWLEADER), the proposal and commit stream into the core, and the
client requests it forwards (their tokens wait here until the leader's proposal names them).
"""

import asyncio
import logging
import time

from zkpy.quorum import messages as m
from zkpy.quorum.link import PeerConn, StepDown
from zkpy.quorum.secure import Refused
from zkpy.tree import txns

log = logging.getLogger("zkpy.quorum")


class Follower(object):
    def __init__(self, peer, leader_id):
        self.peer = peer
        self.core = peer.core
        self.leader_id = leader_id
        self.conn = None
        self.forwarded = {}        # req_id -> the core's token for the reply
        self.syncs = {}            # req_id -> sync token
        self.touched = set()
        self.acking = False        # after NEWLEADER: durable txns are acked
        self._closed = False

    async def _connect(self):
        spec = self.peer.servers[self.leader_id]
        deadline = time.monotonic() + max(self.peer.init_s, 1.0)
        while True:
            try:
                reader, writer = await self.peer.security.connect_any(
                    spec.quorum_addresses(), 2.0, "quorum")
                return PeerConn(reader, writer)
            except (OSError, asyncio.TimeoutError, Refused) as e:
                if time.monotonic() > deadline:
                    raise StepDown("cannot reach leader %d at %s: %s"
                                   % (self.leader_id, ", ".join(
                                       "%s:%d" % a for a in spec.quorum_addresses()), e))
                await asyncio.sleep(0.2)

    async def run(self):
        peer, core = self.peer, self.core
        core.mode = "following"
        deadline = time.monotonic() + max(peer.init_s, 1.0)
        while True:
            # The leader turns learners away until its own election is done: retry until
            # initLimit (ZooKeeper's Learner.connectToLeader retries the same way).
            self.conn = conn = await self._connect()
            conn.send(m.follower_info(peer.myid, peer.accepted_epoch, peer.last_logged_zxid(),
                                      core.last_zxid, peer.observer))
            try:
                mtype, f = await conn.recv(peer.init_s)
                break
            except (StepDown, OSError) as e:
                conn.close()
                if time.monotonic() > deadline:
                    raise StepDown("leader %d turned me away: %s" % (self.leader_id, e))
                await asyncio.sleep(0.2)
        if mtype != m.LEADERINFO:
            raise StepDown("expected LEADERINFO, got %s" % m.NAMES.get(mtype))
        epoch = f[0]
        if epoch < peer.accepted_epoch:
            raise StepDown("leader %d offers epoch 0x%x below my accepted epoch 0x%x"
                           % (self.leader_id, epoch, peer.accepted_epoch))
        if epoch > peer.accepted_epoch:
            peer.set_accepted_epoch(epoch)
        conn.send(m.ack_epoch(peer.current_epoch, peer.last_logged_zxid()))
        mtype, f = await conn.recv(peer.init_s)
        if mtype == m.SNAP:
            await self._install_snapshot(conn, f[0])
        elif mtype == m.TRUNC:
            log.info("TRUNC: dropping my txns after 0x%x", f[0])
            core.txnlog.truncate_after(f[0])
            core.next_zxid = f[0] + 1
        elif mtype != m.DIFF:
            raise StepDown("expected DIFF/TRUNC/SNAP, got %s" % m.NAMES.get(mtype))
        else:
            log.info("DIFF from 0x%x", f[0])
        core.load_unapplied()
        # The txns after the sync point, until NEWLEADER.
        while True:
            mtype, f = await conn.recv(peer.init_s)
            if mtype == m.NEWLEADER:
                break
            if mtype == m.LPING:
                # Not answered before NEWLEADER (ZooKeeper's Learner.syncWithLeader ignores
                # pings too): the leader reads the NEWLEADER ACK as the next message, and a
                # PING there fails the sync. Its pings reach a learner this early when a SNAP
                # took longer than half a tick to send (held behind it, then flushed).
                continue
            self._dispatch(mtype, f)
        await core.committer.flush()
        peer.set_current_epoch(epoch)
        self.acking = True
        conn.send(m.one(m.ACK, peer.last_logged_zxid()))
        while True:
            mtype, f = await conn.recv(peer.init_s)
            if mtype == m.UPTODATE:
                break
            self._dispatch(mtype, f)
        core.commit(f[0])
        spec = peer.servers.get(peer.myid)
        peer._serve("observer" if spec is not None and spec.role == "observer" else "follower",
                    self.leader_id)
        log.info("FOLLOWING leader %d in epoch 0x%x; applied up to 0x%x", self.leader_id,
                 epoch, core.last_zxid)
        while True:
            mtype, f = await conn.recv(peer.sync_s)
            self._dispatch(mtype, f)

    async def _install_snapshot(self, conn, zxid):
        core = self.core
        chunks = []
        while True:
            mtype, f = await conn.recv(self.peer.init_s)
            if mtype == m.SNAPEND:
                break
            if mtype != m.SNAPDATA:
                raise StepDown("expected SNAPDATA, got %s" % m.NAMES.get(mtype))
            chunks.append(f[0])
        log.info("SNAP: installing the leader's state at 0x%x (%d bytes)", zxid,
                 sum(len(c) for c in chunks))
        await core.install_snapshot(chunks)

    def _dispatch(self, mtype, f):
        core = self.core
        if mtype == m.PROPOSAL:
            zxid, origin, req_id, payload = f
            token = self.forwarded.pop(req_id, None) if origin == self.peer.myid else None
            core.log_txn(zxid, txns.decode(payload), payload, token)
        elif mtype == m.COMMIT:
            core.commit(f[0])
        elif mtype == m.LPING:
            touched, self.touched = self.touched, set()
            self.conn.send(m.ping(sorted(touched)))
        elif mtype == m.REFUSED:
            token = self.forwarded.pop(f[0], None)
            if token is not None:
                core.forward_refused(token)
        elif mtype == m.SYNCDONE:
            token = self.syncs.pop(f[0], None)
            if token is not None:
                core.sync_reached(f[1], token)
        else:
            raise StepDown("unexpected %s from the leader" % m.NAMES.get(mtype))

    # -- the core's interface

    def durable(self, zxid):
        if self.acking and self.conn is not None:
            self.conn.send(m.one(m.ACK, zxid))

    def log_stalled(self, stalled):
        """My log cannot be written (True) or can again: tell the leader, which refuses new
        writes while no quorum can write. (Before NEWLEADER is acked the leader is not
        listening for it; a stall then holds the sync up anyway: the ACK waits for the log.)"""
        if self.acking and self.conn is not None:
            self.conn.send(m.one(m.LOGSTATE, 1 if stalled else 0))

    def forward(self, req_id, token, session_id, xid, op, body, ids):
        self.forwarded[req_id] = token
        self.conn.send(m.request(req_id, session_id, xid, op, body, ids))

    def forward_sync(self, req_id, token):
        self.syncs[req_id] = token
        self.conn.send(m.one(m.SYNC, req_id))

    def close(self):
        self._closed = True
        if self.conn is not None:
            self.conn.close()


