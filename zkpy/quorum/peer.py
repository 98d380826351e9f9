"""The ensemble shell of a server's core process: election, then leading or following (Zab).

Owns the sockets between servers (the election port: notifications of zkpy.quorum.election;
the quorum port: the learner protocol of zkpy.quorum.messages), the epoch files and the role the
core plays. The core (zkpy.server.core) keeps its pipeline; this module is its `quorum`:
    leading / can_propose()        does this server prep writes (else it forwards them)
    proposed(zxid, payload, origin, req_id)   the leader logged a txn: send it to the learners
    durable(zxid)                  the local log holds every txn up to zxid (fsynced)
    forward(token, ...), forward_sync(token), touched(session_id)   a learner's clients
and drives it back with core.commit(zxid), core.log_txn, core.remote_request, core.sync_reached.

Rules kept here (Zab; ZOOKEEPER-3911/-4646/-4785 are what happens when they are not):
  * A learner acknowledges NEWLEADER only after everything it synced is fsynced and its
    currentEpoch file is written; it acknowledges a proposal only after its fsync.
  * LMDB holds committed txns only: the log past it is applied once the leader says committed
    (UPTODATE / COMMIT), so TRUNC never has to undo applied state.
  * A SNAP is installed in one LMDB transaction flagged `log_reset_pending`; the old log is
    removed after, and a restart finishes an interrupted removal (Core.open).
  * A server that is not leading or following a leader serves no client: it closes them all.
"""

import asyncio
import collections
import itertools
import logging
import time

from zkpy.quorum import election as fle
from zkpy import errors
from zkpy.errors import ZkError
from zkpy.quorum import messages as m
from zkpy.quorum import reconfig, zab
from zkpy.storage import epochs
from zkpy.storage.txnlog import list_log_files
from zkpy.tree import txns

log = logging.getLogger("zkpy.quorum")

HISTORY_MAX = 100000          # txns the leader keeps in memory for DIFF syncs (commitLogCount)
ACCEPTED_EPOCH = "acceptedEpoch"
CURRENT_EPOCH = "currentEpoch"


def now_ms():
    return int(time.monotonic() * 1000)


class StepDown(Exception):
    """Leave the current role and look for a leader again (the reason is in the message)."""


class _Conn(object):
    """A framed peer connection over asyncio streams."""

    def __init__(self, reader, writer):
        self.reader = reader
        self.writer = writer
        self.decoder = m.Decoder()
        self.frames = collections.deque()
        self.closed = False
        self._out = []

    async def recv(self, timeout_s):
        while not self.frames:
            data = await asyncio.wait_for(self.reader.read(1 << 20), timeout_s)
            if not data:
                raise StepDown("connection closed by the peer")
            self.frames.extend(self.decoder.feed(data))
        return m.decode(self.frames.popleft())

    def send(self, data):
        """Queue a frame; everything queued in one pass of the loop goes out in one write."""
        if self.closed:
            return
        if not self._out:
            asyncio.get_running_loop().call_soon(self._flush)
        self._out.append(data)

    def _flush(self):
        if self._out and not self.closed:
            self.writer.write(b"".join(self._out))
        self._out = []

    def close(self):
        if not self.closed:
            self._flush()
            self.closed = True
            try:
                self.writer.close()
            except Exception:  # noqa: BLE001 - already broken
                pass


class QuorumPeer(object):
    def __init__(self, core, config):
        self.core = core
        self.config = config
        self.myid = config.myid
        self.servers = dict(config.servers)
        self.config_version = config.config_version
        if config.reconfig_enabled:
            self._adopt_stored_membership()
        self.voters = reconfig.voters_of(self.servers)
        self.observer = self.myid not in self.voters
        self.tick_ms = config.tick_time_ms
        self.init_s = config.init_limit * self.tick_ms / 1000.0
        self.sync_s = config.sync_limit * self.tick_ms / 1000.0
        self.accepted_epoch = epochs.read_epoch(config.data_dir, ACCEPTED_EPOCH, 0)
        self.current_epoch = epochs.read_epoch(config.data_dir, CURRENT_EPOCH, 0)
        self.role = None              # Leader or Follower while in one
        self.state = fle.LOOKING
        self.vote = None               # our vote once decided (what we answer the lookers)
        self.election = None
        self.election_epoch = 0
        self._out = {}                 # sid -> asyncio.Queue of notifications to send
        self._tasks = []
        self._servers = []
        self._stopping = False
        self._req_ids = itertools.count(1)
        core.sessions.server_id = self.myid
        core.quorum = self
        core.serving = False
        core.mode = "looking"

    def _adopt_stored_membership(self):
        """A reconfig committed here before a restart is in LMDB's /zookeeper/config even if
        its zoo.cfg.dynamic file was not written: the newer of the two wins."""
        node = self.core.view.get(reconfig.CONFIG_NODE)
        if node is None or not node.data:
            return
        try:
            version, servers = reconfig.parse_config_text(node.data.decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as e:
            log.warning("ignoring an unreadable %s: %s", reconfig.CONFIG_NODE, e)
            return
        if version > self.config_version:
            log.info("membership version 0x%x from %s (the config files hold 0x%x)", version,
                     reconfig.CONFIG_NODE, self.config_version)
            self.servers = servers
            self.config_version = version

    def membership_text(self):
        return reconfig.config_text(self.servers, self.config_version)

    def config_applied(self, zxid, data):
        """A setData of /zookeeper/config (reconfig) was applied here: switch membership."""
        if not self.config.reconfig_enabled:
            return   # only reconfig writes it, and only with reconfigEnabled
        try:
            version, servers = reconfig.parse_config_text(data.decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as e:
            log.error("%s set to something that is not a membership (%s); membership kept",
                      reconfig.CONFIG_NODE, e)
            return
        changed = not reconfig.same_membership(servers, self.servers)
        self.servers = servers
        self.config_version = version
        self.voters = reconfig.voters_of(servers)
        self.observer = self.myid not in self.voters
        log.info("membership version 0x%x: voters %s, observers %s%s", version,
                 sorted(self.voters), sorted(set(servers) - self.voters),
                 "" if self.myid in servers else "; this server is no longer a member")
        if self.config.reconfig_enabled and self.myid not in servers:
            # A server outside the membership keeps its own files (a restart must still find
            # itself in them, and join as a non-voting follower until a reconfig adds it).
            log.info("not writing a dynamic config file without this server in it")
        elif self.config.reconfig_enabled:
            try:
                write_dynamic_config(self.config.path, data.decode("utf-8"), version,
                                     self.myid)
            except OSError as e:
                log.error("writing the dynamic config file next to %s: %s", self.config.path, e)
        if self.vote is not None:
            self._set_state()
        if isinstance(self.role, Leader):
            self.role.config_applied(zxid, changed)

    def prep_reconfig(self, req):
        """The leader: the /zookeeper/config text a ReconfigRequest asks for (ZkError if not)."""
        if not self.can_propose():
            raise ZkError(errors.CONNECTIONLOSS, "not leading")
        return self.role.prep_reconfig(req)

    # ------------------------------------------------------------------ the core's interface

    @property
    def leading(self):
        return isinstance(self.role, Leader)

    def can_propose(self):
        return isinstance(self.role, Leader) and self.role.established

    def proposed(self, zxid, payload, origin, req_id):
        self.role.proposed(zxid, payload, origin, req_id)

    def durable(self, zxid):
        if self.role is not None:
            self.role.durable(zxid)

    def forward(self, token, session_id, xid, op, body, ids):
        if not isinstance(self.role, Follower):
            raise StepDown("not following")
        self.role.forward(next(self._req_ids), token, session_id, xid, op, body, ids)

    def forward_sync(self, token):
        self.role.forward_sync(next(self._req_ids), token)

    def touched(self, session_id):
        if isinstance(self.role, Follower):
            self.role.touched.add(session_id)

    def last_logged_zxid(self):
        return max(self.core.txnlog.last_zxid, self.core.last_zxid)

    # ------------------------------------------------------------------ start / stop

    async def start(self):
        me = self.servers[self.myid]
        host = me.host if me.host not in ("localhost",) else "127.0.0.1"
        loop = asyncio.get_running_loop()
        self._servers.append(await asyncio.start_server(
            self._election_conn, host if host != "0.0.0.0" else None, me.election_port,
            reuse_address=True))
        self._servers.append(await asyncio.start_server(
            self._learner_conn, host if host != "0.0.0.0" else None, me.peer_port,
            reuse_address=True))
        self._tasks.append(loop.create_task(self._run(), name="zkpy-quorum"))
        log.info("ensemble member %d of %s: election port %d, quorum port %d", self.myid,
                 sorted(self.servers), me.election_port, me.peer_port)

    async def stop(self):
        self._stopping = True
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            try:
                await t
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass
        if self.role is not None:
            self.role.close()
        for s in self._servers:
            s.close()

    # ------------------------------------------------------------------ main loop

    async def _run(self):
        while not self._stopping:
            try:
                leader_id = await self._look()
                if leader_id == self.myid:
                    self.role = Leader(self)
                else:
                    self.role = Follower(self, leader_id)
                await self.role.run()
            except (StepDown, m.ProtocolError, OSError, asyncio.IncompleteReadError,
                    asyncio.TimeoutError) as e:
                log.warning("leaving %s: %s", self.core.mode, str(e) or type(e).__name__)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - a bug must not leave us serving half a role
                log.exception("%s failed", self.core.mode)
                await asyncio.sleep(0.5)
            finally:
                if self.role is not None:
                    self.role.close()
                    self.role = None
                await self._stand_down()

    def _set_state(self):
        """The state we answer lookers with follows the membership: a learner that is not a
        voter (an observer, or not a member) says OBSERVING, and its vote is not counted."""
        if isinstance(self.role, Leader):
            self.state = fle.LEADING
        elif isinstance(self.role, Follower):
            self.state = fle.OBSERVING if self.myid not in self.voters else fle.FOLLOWING

    def _serve(self, mode, leader_id):
        """The role is ready: serve clients (closing any read-only session first)."""
        core = self.core
        # What we answer lookers from now on: the leader in this epoch. Every member of the
        # epoch answers the same (leader, epoch), so a server joining later finds a quorum of
        # equal votes even when they were elected in different rounds.
        self.vote = fle.Vote(leader_id, self.last_logged_zxid(), self.current_epoch)
        self._set_state()
        if not self.config.reconfig_enabled:
            # As ZooKeeper without reconfig: /zookeeper/config shows this server's own view of
            # the membership (each server may reach the others by other addresses), set
            # locally, never replicated.
            core.set_config_node(self.membership_text().encode("utf-8"), self.config_version)
        if core.read_only:
            log.info("leaving read-only mode: closing the read-only sessions")
            core.read_only = False
            core.close_all_clients()
        core.serving = True
        core.mode = mode

    async def _read_only_later(self):
        """readonlymode.enabled: still no quorum after max(2 s, tickTime) -> read-only server
        (QuorumPeer starts a ReadOnlyZooKeeperServer the same way)."""
        await asyncio.sleep(max(2000, self.tick_ms) / 1000.0)
        core = self.core
        if not core.serving and not self._stopping:
            log.info("no quorum: serving read-only clients")
            core.read_only = True
            core.mode = "read-only"

    async def _stand_down(self):
        core = self.core
        core.serving = False
        core.mode = "looking"
        if not core.read_only:
            core.close_all_clients()
        try:
            await core.committer.flush()
        except Exception as e:  # noqa: BLE001 - fatal log errors stop the server elsewhere
            log.error("flushing the log: %s", e)
        core.reset_pipeline()
        self.state = fle.LOOKING
        self.vote = None

    async def _look(self):
        """Run an election; returns the leader's id."""
        self.state = fle.LOOKING
        self.core.mode = "looking"
        el = fle.Election(self.myid, self.voters, self.last_logged_zxid(), self.current_epoch,
                          observer=self.observer, election_epoch=self.election_epoch,
                          observers=(set(self.servers) | {self.myid}) - self.voters)
        self.election = el
        log.info("LOOKING: my vote (epoch 0x%x, zxid 0x%x, id %d)", self.current_epoch,
                 self.last_logged_zxid(), self.myid)
        self._send(el.start(now_ms()))
        ro = None
        if self.config.readonly_mode_enabled and not self.core.read_only:
            ro = asyncio.get_running_loop().create_task(self._read_only_later())
        try:
            while el.decided is None:
                await asyncio.sleep(0.02)
                self._send(el.tick(now_ms()))
        finally:
            if ro is not None:
                ro.cancel()
        leader, vote = el.decided
        self.election_epoch = el.current().election_epoch
        self.election = None
        self.vote = vote
        self.state = el.state
        log.info("elected leader %d (zxid 0x%x, epoch 0x%x); I am %s", leader, vote.zxid,
                 vote.peer_epoch, fle.STATE_NAMES.get(el.state, el.state))
        return leader

    # ------------------------------------------------------------------ election transport

    def _send(self, out):
        for dest, n in out:
            if dest == self.myid or dest not in self.servers:
                continue
            q = self._out.get(dest)
            if q is None:
                q = self._out[dest] = asyncio.Queue()
                self._tasks.append(asyncio.get_running_loop().create_task(self._sender(dest, q)))
            if q.qsize() < 100:
                q.put_nowait(n)

    async def _sender(self, dest, q):
        spec = self.servers[dest]
        writer = None
        while True:
            n = await q.get()
            for attempt in (1, 2):
                try:
                    if writer is None:
                        reader, writer = await asyncio.wait_for(
                            asyncio.open_connection(spec.host, spec.election_port), 2.0)
                        # Servers that do not know us answer on this connection.
                        self._tasks.append(asyncio.get_running_loop().create_task(
                            self._election_conn(reader, writer)))
                    data = fle.encode_notification(n)
                    writer.write(len(data).to_bytes(4, "big") + data)
                    await asyncio.wait_for(writer.drain(), 2.0)
                    break
                except (OSError, asyncio.TimeoutError):
                    if writer is not None:
                        writer.close()
                    writer = None
                    if attempt == 2:
                        break  # dropped; the election re-sends

    async def _election_conn(self, reader, writer):
        try:
            while True:
                head = await reader.readexactly(4)
                n = int.from_bytes(head, "big")
                if n > 1024:
                    raise ValueError("notification of %d bytes" % n)
                note = fle.decode_notification(await reader.readexactly(n))
                self._notification(note, writer)
        except (asyncio.IncompleteReadError, ConnectionError, ValueError, OSError):
            pass
        except asyncio.CancelledError:   # the server is stopping
            pass
        finally:
            writer.close()

    def _notification(self, n, writer=None):
        if n.sender not in self.servers:
            # A server outside our view (just removed by a reconfig, or new and not added
            # yet): answer with our vote on the connection it came in on, as ZooKeeper's
            # WorkerReceiver does, so that it finds the leader and follows as a non-voter.
            el = self.election
            if el is not None and el.decided is None:
                reply = el.current()
            elif self.vote is not None:
                reply = fle.Notification(self.myid, self.state, self.vote, self.election_epoch)
            else:
                return
            if writer is not None and n.state == fle.LOOKING:
                data = fle.encode_notification(reply)
                writer.write(len(data).to_bytes(4, "big") + data)
            return
        el = self.election
        if el is not None and el.decided is None:
            self._send(el.receive(n, now_ms()))
            return
        if self.vote is not None:
            reply = fle.answer(n, self.state, self.vote, self.election_epoch, self.myid)
            if reply is not None:
                self._send([(n.sender, reply)])

    # ------------------------------------------------------------------ learner connections

    async def _learner_conn(self, reader, writer):
        conn = _Conn(reader, writer)
        # A follower may decide on us a moment before our own election loop does: wait a
        # little for the Leader role rather than turn it away (and restart its election).
        deadline = time.monotonic() + 2.0
        while not isinstance(self.role, Leader) and time.monotonic() < deadline:
            if self.state != fle.LOOKING and self.role is not None:
                break
            await asyncio.sleep(0.02)
        role = self.role
        if not isinstance(role, Leader):
            conn.close()
            return
        await role.handle_learner(conn)

    # ------------------------------------------------------------------ epochs

    def set_accepted_epoch(self, epoch):
        epochs.write_epoch(self.config.data_dir, ACCEPTED_EPOCH, epoch)
        self.accepted_epoch = epoch

    def set_current_epoch(self, epoch):
        epochs.write_epoch(self.config.data_dir, CURRENT_EPOCH, epoch)
        self.current_epoch = epoch


# ====================================================================================== leader


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

    def _try_commit(self):
        if not self.established:
            return
        point = zab.commit_point(self.acks, self.peer.voters)
        if self.reconfig is not None and point >= self.reconfig[0]:
            # A membership change commits on a quorum of the old voters and of the new ones.
            if zab.commit_point(self.acks, self.reconfig[1]) < self.reconfig[0]:
                point = self.reconfig[0] - 1
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

    def prep_reconfig(self, req):
        peer = self.peer
        if self.reconfig is not None or self.reconfig_next is not None:
            raise ZkError(errors.RECONFIGINPROGRESS)
        new = reconfig.plan(peer.servers, peer.config_version, req.joiningServers,
                            req.leavingServers, req.newMembers, req.curConfigId)
        voters = reconfig.voters_of(new)
        synced = [s for s, ln in self.learners.items() if ln.acked_newleader]
        if not self._voters_in(synced, voters):
            raise ZkError(errors.NEWCONFIGNOQUORUM, "no quorum of the new voters %s is in sync"
                          % sorted(voters))
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
            self.core.remote_request(ln.sid, req_id, session_id, xid, op, body, ids)
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


# ==================================================================================== follower


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
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(spec.host, spec.peer_port), 2.0)
                return _Conn(reader, writer)
            except (OSError, asyncio.TimeoutError) as e:
                if time.monotonic() > deadline:
                    raise StepDown("cannot reach leader %d at %s:%d: %s"
                                   % (self.leader_id, spec.host, spec.peer_port, e))
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
        loop = asyncio.get_running_loop()
        if core._rtxn is not None:
            core._rtxn.abort()
            core._rtxn = None
        await loop.run_in_executor(None, core.tree.install_snapshot, chunks)
        core.txnlog.reset()
        core.tree.clear_log_reset()
        core._renew_read()
        core.last_zxid = core.view.last_zxid()
        core.durable_zxid = core.commit_zxid = core.last_zxid
        core.next_zxid = core.last_zxid + 1
        core.overlay.applied(core.last_zxid)
        t = int(time.time() * 1000)
        core.sessions.sessions.clear()
        for sid, timeout in core.view.sessions().items():
            core.sessions.add(sid, timeout, t)
        for origin in core.origins:
            origin.batch(core.last_zxid, (), ())
            origin.committed(core.last_zxid)

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


def write_dynamic_config(cfg_path, text, version, myid=None):
    """As ZooKeeper does with reconfigEnabled: the membership goes to zoo.cfg.dynamic.<version>
    beside zoo.cfg (written to a temp file, fsynced, renamed), and zoo.cfg's server.N lines give
    way to dynamicConfigFile=<that file> (the old zoo.cfg kept as zoo.cfg.bak)."""
    import os
    directory = os.path.dirname(os.path.abspath(cfg_path))
    dyn = os.path.join(directory, "%s.dynamic.%x" % (os.path.basename(cfg_path), version))
    # The version is in the file name only (load_config refuses a version line inside).
    body = "\n".join(ln for ln in text.split("\n") if not ln.startswith("version="))
    _write_atomic(dyn, body + "\n")
    with open(cfg_path, encoding="latin-1") as f:
        lines = f.read().splitlines()
    drop = ("server.", "dynamicConfigFile")
    if myid is not None and any(ln.startswith("server.%d=" % myid) and ";" in ln
                                for ln in body.split("\n")):
        # Our line carries the client address: the static copies go (editStaticConfig).
        drop += ("clientPort=", "clientPort ", "clientPortAddress")
    kept = [ln for ln in lines if not ln.strip().startswith(drop)]
    kept.append("dynamicConfigFile=%s" % dyn)
    new = "\n".join(kept) + "\n"
    if new != "\n".join(lines) + "\n":
        if not os.path.exists(cfg_path + ".bak"):
            _write_atomic(cfg_path + ".bak", "\n".join(lines) + "\n")
        _write_atomic(cfg_path, new)


def _write_atomic(path, text):
    import os
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="latin-1") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fd = os.open(os.path.dirname(path) or ".", os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
