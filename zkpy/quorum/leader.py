"""The leader of an ensemble (Zab): discovery, learner sync, broadcast, commit.

Owns, while this server leads: the learners (one handler each: FOLLOWERINFO, LEADERINFO /
ACKEPOCH, DIFF / TRUNC / SNAP, NEWLEADER, then ACKs, pings, forwarded requests and syncs), the
in-memory history for DIFF syncs, the acks and the commit point (zkpy.quorum.zab), and a
reconfig on its way (committed by the old and the new voters). Drives the core through
core.commit / core.load_unapplied / core.remote_request; see zkpy.quorum.peer.
"""

import asyncio
import collections
import logging
import time

from zkpy import errors
from zkpy.errors import ZkError
from zkpy.quorum import messages as m
from zkpy.quorum import reconfig, zab
from zkpy.quorum.link import StepDown
from zkpy.storage.txnlog import list_log_files
from zkpy.tree import txns

log = logging.getLogger("zkpy.quorum")

HISTORY_MAX = 100000          # txns the leader keeps in memory for DIFF syncs (commitLogCount)


class _Learner(object):
    """The leader's view of one connected learner (LearnerHandler)."""

    def __init__(self, conn):
        self.conn = conn
        self.sid = None
        self.observer = False
        self.accepted_epoch = 0
        self.last_zxid = 0
        self.applied_zxid = 0
        self.ack_epoch = None
        self.synced = False        # receives the proposal stream
        self.acked_newleader = False
        self.last_heard = time.monotonic()
        self.holding = None        # frames held while a snapshot is being sent
        self.stalled = False       # LOGSTATE: its log cannot be written (it acks nothing)

    def send(self, data):
        if self.holding is not None:
            self.holding.append(data)
        else:
            self.conn.send(data)


class Leader(object):
    def __init__(self, peer):
        self.peer = peer
        self.core = peer.core
        self.learners = {}           # sid -> _Learner
        self.epoch = None
        self.established = False
        self.acks = {}               # voter sid -> cumulative ack zxid (me: my durable zxid)
        self.history = collections.deque()
        self.history_start = 0
        self.syncs = collections.deque()   # (target zxid, learner, req_id)
        self.reconfig_next = None    # voters of a reconfig being prepped (its txn comes next)
        self.reconfig = None         # (zxid, new voters) of a reconfig not yet applied
        self._changed = asyncio.Event()
        self._closed = False

    def _poke(self):
        self._changed.set()

    async def _until(self, cond, timeout_s, what):
        deadline = time.monotonic() + timeout_s
        while not cond():
            if self._closed:
                raise StepDown("closed")
            left = deadline - time.monotonic()
            if left <= 0:
                raise StepDown("timed out waiting for %s" % what)
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), min(left, 0.2))
            except asyncio.TimeoutError:
                pass

    def _voters_in(self, sids, voters=None):
        return zab.is_quorum(set(sids) | {self.peer.myid}, voters or self.peer.voters)

    async def run(self):
        peer, core = self.peer, self.core
        core.mode = "leading"
        log.info("LEADING: waiting for a quorum of followers")
        # Discovery: a quorum tells us its acceptedEpoch; the new epoch is above all of them.
        await self._until(lambda: self._voters_in(self.learners), peer.init_s,
                          "a quorum of followers to connect")
        epoch = max([peer.accepted_epoch] + [ln.accepted_epoch for ln in self.learners.values()
                                              if ln.sid in peer.voters]) + 1
        peer.set_accepted_epoch(epoch)
        self.epoch = epoch
        self._poke()
        await self._until(lambda: self._voters_in(
            s for s, ln in self.learners.items() if ln.ack_epoch is not None), peer.init_s,
            "a quorum of epoch acks")
        mine = (peer.current_epoch, peer.last_logged_zxid())
        for ln in self.learners.values():
            if ln.ack_epoch is not None and ln.ack_epoch > mine:
                raise StepDown("follower %d has a newer history (epoch 0x%x, zxid 0x%x) than "
                               "mine (0x%x, 0x%x)" % ((ln.sid,) + ln.ack_epoch + mine))
        # My whole log is the new epoch's initial history; it is committed once a quorum has it.
        self.history_start = core.last_zxid
        for zxid, payload in core.load_unapplied():
            self.history.append((zxid, payload))
        self._fill_history_before()
        self.acks[peer.myid] = peer.last_logged_zxid()
        peer.set_current_epoch(epoch)
        self._poke()   # learners waiting on the history can sync now
        await self._until(lambda: self._voters_in(
            s for s, ln in self.learners.items() if ln.acked_newleader),
            peer.init_s, "a quorum to acknowledge NEWLEADER")
        core.commit(peer.last_logged_zxid())
        core.next_zxid = zab.make_zxid(epoch, 1)
        core.overlay.applied(core.last_zxid)
        t = int(time.time() * 1000)
        for sid in list(core.sessions.sessions):
            core.sessions.touch(sid, t)
        self.established = True
        peer._serve("leader", peer.myid)
        if peer.config.reconfig_enabled:
            self._propose_membership()
        log.info("LEADING epoch 0x%x with %s; committed up to 0x%x", epoch,
                 sorted(s for s, ln in self.learners.items() if ln.acked_newleader),
                 core.commit_zxid)
        self._poke()
        ping = m.lping()
        while True:
            await asyncio.sleep(self.peer.tick_ms / 2000.0)
            if self._closed:
                raise StepDown("closed")
            now = time.monotonic()
            alive = [s for s, ln in self.learners.items()
                     if ln.acked_newleader and now - ln.last_heard <= peer.sync_s]
            if not self._voters_in(alive):
                raise StepDown("only %s of the voters %s are in sync with me"
                               % (sorted(alive + [peer.myid]), sorted(peer.voters)))
            for ln in self.learners.values():
                if ln.synced:
                    ln.send(ping)

    def _fill_history_before(self):
        """Older txns of the log (already applied) in front of the history, for DIFFs."""
        room = HISTORY_MAX - len(self.history)
        if room <= 0:
            return
        # The newest two log files (the log rolls at every LMDB checkpoint, ~10 s of writes).
        files = list_log_files(self.core.txnlog.dir)
        start = files[-2][0] - 1 if len(files) >= 2 else 0
        older = []
        for zxid, payload in self.core.txnlog.read_after(start):
            if zxid > self.history_start:
                break
            older.append((zxid, payload))
        older = older[-room:]
        if older:
            # The zxid before older[0] is unknown, so the history starts after older[0]: a
            # learner whose log ends there or later is synced by DIFF.
            self.history.extendleft(reversed(older[1:]))
            self.history_start = older[0][0]

    # -- the core's interface

    def proposed(self, zxid, payload, origin, req_id):
        if self.reconfig_next is not None:
            self.reconfig = (zxid, self.reconfig_next)
            self.reconfig_next = None
        self.history.append((zxid, payload))
        frame = m.proposal(zxid, origin, req_id, payload)
        for ln in self.learners.values():
            if ln.synced:
                ln.send(frame)
        h = self.history
        last_applied = self.core.last_zxid
        while len(h) > HISTORY_MAX and h[0][0] <= last_applied:
            self.history_start = h.popleft()[0]

    def durable(self, zxid):
        self.acks[self.peer.myid] = zxid
        self._try_commit()

    def writes_refused(self):
        """Why new writes cannot commit now (None: they can): no quorum of the voters can
        write its log (their disks are full -- LOGSTATE, and mine). They would wait for the
        disks; they are refused instead, as a standalone server refuses them."""
        writable = {s for s, ln in self.learners.items() if ln.acked_newleader and not ln.stalled}
        if self.core.log_error is None:
            writable.add(self.peer.myid)
        if zab.is_quorum(writable, self.peer.voters):
            return None
        return ("no quorum of the voters %s can write its transaction log (writable: %s)"
                % (sorted(self.peer.voters), sorted(writable)))

    def _try_commit(self):
        if not self.established:
            return
        point = zab.commit_point(self.acks, self.peer.voters)
        if self.reconfig is not None and point >= self.reconfig[0]:
            # A membership change commits on a quorum of the old voters and of the new ones,
            # and so does every txn after it until it is applied here (then the new voters
            # alone decide). Holding only the change itself to the new voters let a txn right
            # behind it commit on the old ones, to be lost when the new voters went on without
            # it (found by the simulator: test_sim's txn-after-reconfig scenario).
            new_point = zab.commit_point(self.acks, self.reconfig[1])
            if new_point < self.reconfig[0]:
                point = self.reconfig[0] - 1
            else:
                point = min(point, new_point)
        core = self.core
        if point <= core.commit_zxid:
            return
        core.commit(point)
        frame = m.one(m.COMMIT, point)
        for ln in self.learners.values():
            if ln.synced:
                ln.send(frame)
        while self.syncs and self.syncs[0][0] <= point:
            target, ln, req_id = self.syncs.popleft()
            ln.send(m.sync_done(req_id, target))

    def prep_reconfig(self, req, authorize=None):
        peer = self.peer
        if self.reconfig is not None or self.reconfig_next is not None:
            raise ZkError(errors.RECONFIGINPROGRESS)
        new = reconfig.plan(peer.servers, peer.config_version, req.joiningServers,
                            req.leavingServers, req.newMembers, req.curConfigId,
                            hierarchical=peer.rule is not None,
                            multi_address=peer.config.multi_address_enabled)
        voters = reconfig.voters_of(new)
        synced = [s for s, ln in self.learners.items() if ln.acked_newleader]
        if not self._voters_in(synced, voters):
            raise ZkError(errors.NEWCONFIGNOQUORUM, "no quorum of the new voters %s is in sync"
                          % sorted(voters))
        if authorize is not None:
            authorize()   # NOAUTH last, as ZooKeeper; nothing is taken on before it passed
        self.reconfig_next = voters
        # The version is the zxid of this txn: the one the core assigns next.
        return reconfig.config_text(new, self.core.next_zxid)

    def config_applied(self, zxid, changed):
        if self.reconfig is not None and self.reconfig[0] <= zxid:
            self.reconfig = None
        if self.peer.myid not in self.peer.voters:
            log.info("this leader is not a voter of the new membership: stepping down")
            self.close()

    def _propose_membership(self):
        """The first leader of an ensemble writes the membership into /zookeeper/config."""
        node = self.core.view.get(reconfig.CONFIG_NODE)
        try:
            _, stored = reconfig.parse_config_text(node.data.decode("utf-8"))
            if reconfig.same_membership(stored, self.peer.servers):
                return
        except (ValueError, UnicodeDecodeError, AttributeError):
            pass
        core = self.core
        self.reconfig_next = set(self.peer.voters)
        text = reconfig.config_text(self.peer.servers, core.next_zxid)
        core.submit(txns.Txn(txns.SET_DATA, 0, 0, int(time.time() * 1000),
                             path=reconfig.CONFIG_NODE, data=text.encode("utf-8"), version=-1),
                    None)

    # -- one learner

    async def handle_learner(self, conn):
        peer, core = self.peer, self.core
        ln = _Learner(conn)
        try:
            mtype, f = await conn.recv(peer.init_s)
            if mtype != m.FOLLOWERINFO:
                raise StepDown("expected FOLLOWERINFO, got %s" % m.NAMES.get(mtype))
            ln.sid, ln.accepted_epoch, ln.last_zxid, ln.applied_zxid, ln.observer = f
            if ln.sid == peer.myid or ln.sid <= 0:
                raise StepDown("learner id %d is mine or invalid" % ln.sid)
            if ln.sid not in peer.servers:
                log.info("learner %d is not in the membership: a non-voting follower", ln.sid)
            old = self.learners.get(ln.sid)
            if old is not None:
                old.conn.close()
            self.learners[ln.sid] = ln
            self._poke()
            await self._until(lambda: self.epoch is not None, peer.init_s, "the new epoch")
            conn.send(m.one(m.LEADERINFO, self.epoch))
            mtype, f = await conn.recv(peer.init_s)
            if mtype != m.ACKEPOCH:
                raise StepDown("expected ACKEPOCH, got %s" % m.NAMES.get(mtype))
            ln.ack_epoch = tuple(f)
            ln.last_zxid = f[1]
            self._poke()
            await self._until(lambda: self.acks.get(peer.myid) is not None, peer.init_s,
                              "my history")
            await self._sync(ln)
            conn.send(m.one(m.NEWLEADER, zab.make_zxid(self.epoch, 0)))
            mtype, f = await conn.recv(peer.init_s)
            if mtype != m.ACK:
                raise StepDown("expected the NEWLEADER ACK, got %s" % m.NAMES.get(mtype))
            ln.acked_newleader = True
            ln.last_heard = time.monotonic()
            self.acks[ln.sid] = f[0]
            self._poke()
            await self._until(lambda: self.established, peer.init_s, "a quorum")
            ln.send(m.one(m.UPTODATE, core.commit_zxid))
            self._try_commit()
            log.info("learner %d is up to date", ln.sid)
            while True:
                mtype, f = await conn.recv(peer.sync_s)
                ln.last_heard = time.monotonic()
                if mtype == m.ACK:
                    self.acks[ln.sid] = f[0]
                    self._try_commit()
                elif mtype == m.PING:
                    t = int(time.time() * 1000)
                    for sid in f[0]:
                        core.sessions.touch(sid, t)
                elif mtype == m.REQUEST:
                    req_id, session_id, xid, op, body, ids = f
                    self._remote(ln, req_id, session_id, xid, op, body, ids)
                elif mtype == m.LOGSTATE:
                    ln.stalled = bool(f[0])
                    log.warning("learner %d: its transaction log %s", ln.sid,
                                "cannot be written (it acks nothing until it can)"
                                if ln.stalled else "takes writes again")
                elif mtype == m.SYNC:
                    target = core.next_zxid - 1
                    if target <= core.commit_zxid:
                        ln.send(m.sync_done(f[0], target))
                    else:
                        self.syncs.append((target, ln, f[0]))
                else:
                    raise StepDown("unexpected %s" % m.NAMES.get(mtype))
        except (StepDown, m.ProtocolError, asyncio.TimeoutError, OSError) as e:
            log.warning("learner %s: %s", ln.sid, str(e) or type(e).__name__)
        finally:
            conn.close()
            if self.learners.get(ln.sid) is ln:
                del self.learners[ln.sid]
                self.acks.pop(ln.sid, None)
            self.syncs = collections.deque(s for s in self.syncs if s[1] is not ln)

    def _remote(self, ln, req_id, session_id, xid, op, body, ids):
        if not self.established:
            return
        try:
            if not self.core.remote_request(ln.sid, req_id, session_id, xid, op, body, ids):
                ln.send(m.one(m.REFUSED, req_id))
        except Exception:  # noqa: BLE001 - a bad request must not take the leader down
            log.exception("request 0x%x:%d from learner %d", session_id, xid, ln.sid)

    async def _sync(self, ln):
        """DIFF, TRUNC or SNAP, then the txns after, and from now on the proposal stream."""
        core = self.core
        zxids = [z for z, _ in self.history]
        leader_last = zxids[-1] if zxids else self.history_start
        kind, z = zab.sync_plan(zxids, self.history_start, leader_last, ln.last_zxid,
                                ln.applied_zxid)
        if kind == zab.SNAP:
            z = core.last_zxid
            ln.send(m.one(m.SNAP, z))
            rtxn = core.tree.read_txn()
            ln.holding = []
            after = [(zx, p) for zx, p in self.history if zx > z]
            ln.synced = True       # new proposals are held behind the snapshot
            log.info("syncing learner %d by SNAP at 0x%x (+%d txns)", ln.sid, z, len(after))
            try:
                loop = asyncio.get_running_loop()
                chunks = await loop.run_in_executor(
                    None, lambda: list(core.tree.snapshot_chunks(rtxn)))
            finally:
                rtxn.abort()
            for chunk in chunks:
                ln.conn.send(m.snap_data(chunk))
                ln.conn._flush()
                await ln.conn.writer.drain()
            ln.conn.send(m.snap_end())
            for zx, p in after:
                ln.conn.send(m.proposal(zx, 0, 0, p))
            held, ln.holding = ln.holding, None
            for frame in held:
                ln.conn.send(frame)
            return
        ln.send(m.one(m.TRUNC if kind == zab.TRUNC else m.DIFF, z))
        n = 0
        for zx, p in self.history:
            if zx > z:
                ln.send(m.proposal(zx, 0, 0, p))
                n += 1
        ln.synced = True
        log.info("syncing learner %d by %s from 0x%x (%d txns)", ln.sid, kind, z, n)

    def close(self):
        self._closed = True
        self.established = False
        for ln in list(self.learners.values()):
            ln.conn.close()
        self._poke()


