"""The ensemble shell of a server's core process: election, then leading or following (Zab).

Owns the sockets between servers (the election port: notifications of zkpy.quorum.election;
the quorum port: the learner protocol of zkpy.quorum.messages, served by the role), the epoch
files, the membership (and its dynamic config file) and the role the core plays:
zkpy.quorum.leader.Leader or zkpy.quorum.follower.Follower. The core (zkpy.server.core) keeps
its pipeline; this module is its `quorum`:
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
import itertools
import logging
import os
import time

from zkpy import errors
from zkpy.errors import ZkError
from zkpy.quorum import election as fle
from zkpy.quorum import reconfig, secure, zab
from zkpy.quorum.follower import Follower
from zkpy.quorum.leader import Leader
from zkpy.quorum.link import PeerConn, StepDown, now_ms
from zkpy.quorum import messages as m
from zkpy.storage import epochs

log = logging.getLogger("zkpy.quorum")

ACCEPTED_EPOCH = "acceptedEpoch"
CURRENT_EPOCH = "currentEpoch"


class QuorumPeer(object):
    def __init__(self, core, config):
        self.core = core
        self.config = config
        self.myid = config.myid
        self.servers = dict(config.servers)
        self.config_version = config.config_version
        if config.reconfig_enabled:
            self._adopt_stored_membership()
        # group.N / weight.N: hierarchical quorums (static: zkpy does not reconfigure them).
        self.rule = zab.Hierarchical(config.quorum_groups, config.quorum_weights or {}) \
            if config.quorum_groups else None
        self.voters = zab.voter_set(reconfig.voters_of(self.servers), self.rule)
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
        # TLS and SASL between servers: every connection of both ports goes through it.
        self.security = secure.QuorumSecurity(config)
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
        return reconfig.config_text(self.servers, self.config_version,
                                    self.config.quorum_groups, self.config.quorum_weights)

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
        self.voters = zab.voter_set(reconfig.voters_of(servers), self.rule)
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

    def prep_reconfig(self, req, authorize=None):
        """The leader: the /zookeeper/config text a ReconfigRequest asks for (ZkError if not);
        authorize() (the ACL check) runs once the request itself is found good."""
        if not self.can_propose():
            raise ZkError(errors.CONNECTIONLOSS, "not leading")
        return self.role.prep_reconfig(req, authorize)

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

    def log_stalled(self, stalled):
        if isinstance(self.role, Follower):
            self.role.log_stalled(stalled)

    def writes_refused(self):
        """Why the leader takes no new writes now (None: it does, or this is no leader)."""
        if isinstance(self.role, Leader):
            return self.role.writes_refused()
        return None

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
        await self._listen(me.election_addresses(), self._election_conn, "election")
        await self._listen(me.quorum_addresses(), self._learner_conn, "quorum")
        self._tasks.append(loop.create_task(self._run(), name="zkpy-quorum"))
        log.info("ensemble member %d of %s: election %s, quorum %s", self.myid,
                 sorted(self.servers),
                 " ".join("%s:%d" % a for a in me.election_addresses()),
                 " ".join("%s:%d" % a for a in me.quorum_addresses()))
        if self.security.tls is not None and self.security.connect_tls:
            why = await self.security.tls.check_own_name(host)
            if why is not None:
                log.warning("%s", why)

    async def _listen(self, addresses, handler, name):
        """Listen on every address of this server's line (multiAddress). One that cannot be
        bound (an interface that is down, a port taken) is logged and skipped while another
        of the kind is bound, so peers reach us there (ZooKeeper's Listener exits instead);
        with none bound the last error is raised."""
        error = None
        bound = 0
        for host, port in addresses:
            host = "127.0.0.1" if host == "localhost" else host
            try:
                self._servers.append(await self.security.listen(
                    host if host != "0.0.0.0" else None, port, handler, name))
                bound += 1
            except OSError as e:
                error = e
                if len(addresses) > 1:
                    log.warning("cannot listen for %s connections on %s:%d: %s", name, host,
                                port, e)
        if not bound:
            raise error

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
        self.security.close()

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
            if not self._stopping:   # (a stop gives up on a log it cannot write: said so)
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
                    if writer is not None and writer.is_closing():
                        # The peer went away (the reader side closed it): a TLS transport
                        # drops writes while it shuts down instead of failing them.
                        writer = None
                    if writer is None:
                        reader, writer = await self.security.connect_any(
                            spec.election_addresses(), 2.0, "election")
                        # Servers that do not know us answer on this connection.
                        self._tasks.append(asyncio.get_running_loop().create_task(
                            self._election_conn(reader, writer)))
                    data = fle.encode_notification(n)
                    writer.write(len(data).to_bytes(4, "big") + data)
                    await asyncio.wait_for(writer.drain(), 2.0)
                    break
                except (OSError, asyncio.TimeoutError, secure.Refused):
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
        conn = PeerConn(reader, writer)
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



def write_dynamic_config(cfg_path, text, version, myid=None):
    """As ZooKeeper does with reconfigEnabled: the membership goes to zoo.cfg.dynamic.<version>
    beside zoo.cfg (written to a temp file, fsynced, renamed), and zoo.cfg's server.N lines give
    way to dynamicConfigFile=<that file> (the old zoo.cfg kept as zoo.cfg.bak)."""
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
