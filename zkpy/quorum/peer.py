"""The ensemble shell of a server's core process: a thin asyncio driver over the Zab state
machine (zkpy.quorum.machine.Member).

Owns the quorum port's connections (zkpy.quorum.messages frames, one zkpy.quorum.link.Link
each), the election port through zkpy.quorum.votes, the timers, the epoch files and the
membership's addresses (its dynamic config files: zkpy.quorum.dynconfig). Every
decision is the Member's: this module feeds it what happened (messages, ticks, the log's
fsyncs, the core's requests) and carries out its Ready in the order machine.py states:
    1. the epoch files           5. apply_upto: core.commit (LMDB, replies, watches)
    2. TRUNC: the log cut back   6. connections closed
    3. SNAP: LMDB replaced       7. messages sent (a Snap streamed from an LMDB read txn
    4. appends: core.log_txn        taken right after step 5)
                                 8. the role (serve clients or not), forwarded requests,
                                    refusals, syncs, session touches
A Ready that leaves a role (a new election term) first stands down: clients closed, the log
flushed, the core's pipeline reset; that and a SNAP install are the only awaited steps, and
no other Ready is carried out meanwhile (the Member keeps taking inputs).

The core (zkpy.server.core) keeps its pipeline; this is its `quorum`:
    leading / can_propose()        does this server prep writes (else it forwards them)
    proposed(zxid, payload, origin, req_id)   the leader prepped and logged a txn
    durable(zxid), log_stalled(stalled)       the local log's fsyncs and outages
    forward(token, ...), forward_sync(token), touched(session_id)   a learner's clients
    prep_reconfig(req, authorize), config_applied(zxid, data)         reconfig
and is driven back through core.log_txn / commit / load_unapplied / install_snapshot /
remote_request / sync_reached / forward_refused.

Rules kept (Zab; ZOOKEEPER-3911/-4646/-4785 are what happens when they are not), decided in
the Member, carried out here: a learner acknowledges NEWLEADER only after everything it synced
is fsynced and its currentEpoch file is written, and a proposal only after its fsync; LMDB holds
committed txns only (apply up to min(durable, committed)), so TRUNC never undoes applied state;
a SNAP is installed in one LMDB transaction flagged `log_reset_pending` (Core.open finishes an
interrupted removal of the old log); a server neither leading nor following serves no client.
"""

import asyncio
import itertools
import logging
import time

from zkpy import errors
from zkpy.errors import ZkError
from zkpy.quorum import election as fle
from zkpy.quorum import machine as zm
from zkpy.quorum import messages as m
from zkpy.quorum import dynconfig, reconfig, secure, zab
from zkpy.quorum.link import Link, from_leader, from_learner, now_ms, to_wire
from zkpy.quorum.votes import ElectionTransport
from zkpy.storage import epochs
from zkpy.storage.groupcommit import INLINE_MAX_RECORDS
from zkpy.storage.txnlog import list_log_files
from zkpy.tree import txns

log = logging.getLogger("zkpy.quorum")

ACCEPTED_EPOCH = "acceptedEpoch"
CURRENT_EPOCH = "currentEpoch"
TICK_S = 0.02                   # how often the Member is told the time
_CONFIG_NODE_BYTES = reconfig.CONFIG_NODE.encode("utf-8")
_MODES = {zm.LEADING: "leading", zm.FOLLOWING: "following", zm.OBSERVING: "following"}
_LEARNER_TYPES = frozenset(zm.LEARNER_MESSAGES)


# The log batch size at or below which the quorum's messages are sent as soon as they are made
# (QuorumPeer._light); the group committer's inline threshold.
LIGHT_BATCH = INLINE_MAX_RECORDS


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
        rule = zab.Hierarchical(config.quorum_groups, config.quorum_weights or {}) \
            if config.quorum_groups else None
        self.rule = rule
        voters = zab.voter_set(reconfig.voters_of(self.servers), rule)
        tick = config.tick_time_ms
        params = zm.Params(
            tick_ms=tick, init_limit=config.init_limit, sync_limit=config.sync_limit,
            history_max=config.commit_log_count,
            read_only_after_ms=max(2000, tick) if config.readonly_mode_enabled else None)
        self.member = zm.Member(self.myid, voters, params, self._persisted(),
                                observers=set(self.servers) - voters,
                                config_of=self._config_of, config_version=self.config_version)
        self._accepted = {}            # sid -> Link a learner opened to me
        self._leader_link = None       # the Link I opened to my leader
        self._leader_sid = None
        self._forwarded = {}           # req_id -> the core's token of a forwarded request
        self._sync_tokens = {}         # req_id -> the core's token of a forwarded sync
        self._req_ids = itertools.count(1)
        self._role = None              # the RoleChange carried out last
        self._established = False      # leading, and the core set up to prep
        self._need_reload = True       # the core's pipeline lacks the log past LMDB
        self._pumping = False
        self._busy = False             # a stand-down or SNAP install is being awaited
        self._last_msg = self._last_frame = None
        self._tasks = set()
        self._servers = []
        self._stopping = False
        # TLS and SASL between servers: every connection of both ports goes through it.
        self.security = secure.QuorumSecurity(config)
        self.votes = ElectionTransport(self.myid, self.security, lambda: self.servers,
                                       self._spawn, self._notification)
        core.sessions.server_id = self.myid
        core.quorum = self
        core.serving = False
        core.mode = "looking"

    def _persisted(self):
        """What the Member starts from: the epoch files, LMDB's zxid and the log -- the txns
        past LMDB (never known committed here) and, for DIFF syncs, the applied ones of the
        newest two log files (leader._fill_history_before)."""
        core, cfg = self.core, self.config
        applied = core.last_zxid
        files = list_log_files(core.txnlog.dir)
        start = min(files[-2][0] - 1, applied) if len(files) >= 2 else 0
        entries = list(core.txnlog.read_after(start))
        log_start = applied
        if entries and entries[0][0] <= applied:
            # The zxid before the oldest is unknown: the window starts after it.
            log_start = entries[0][0]
            entries = entries[1:]
        return zm.Persisted(
            accepted_epoch=epochs.read_epoch(cfg.data_dir, ACCEPTED_EPOCH, 0),
            current_epoch=epochs.read_epoch(cfg.data_dir, CURRENT_EPOCH, 0),
            applied_zxid=applied, log_start=log_start, entries=tuple(entries))

    def _config_of(self, payload):
        """The voters a txn makes (a reconfig's setData of /zookeeper/config), else None."""
        if not self.config.reconfig_enabled or _CONFIG_NODE_BYTES not in payload:
            return None
        try:
            txn = txns.decode(payload)
            if txn.type != txns.SET_DATA or txn.path != reconfig.CONFIG_NODE:
                return None
            _, servers = reconfig.parse_config_text(txn.data.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            return None
        return reconfig.voters_of(servers)

    def _adopt_stored_membership(self):
        """A reconfig committed here before a restart (or a SNAP's state) is in LMDB's
        /zookeeper/config even if its zoo.cfg.dynamic file was not written: the newer of the
        two wins."""
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
        """A setData of /zookeeper/config (reconfig) was applied here: the new addresses and
        the dynamic config file (the Member switched its voters when it said apply)."""
        if not self.config.reconfig_enabled:
            return   # only reconfig writes it, and only with reconfigEnabled
        try:
            version, servers = reconfig.parse_config_text(data.decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as e:
            log.error("%s set to something that is not a membership (%s); membership kept",
                      reconfig.CONFIG_NODE, e)
            return
        self.servers = servers
        self.config_version = version
        voters = set(reconfig.voters_of(servers))
        log.info("membership version 0x%x: voters %s, observers %s%s", version,
                 sorted(voters), sorted(set(servers) - voters),
                 "" if self.myid in servers else "; this server is no longer a member")
        if self.myid not in servers:
            # A server outside the membership keeps its own files (a restart must still find
            # itself in them, and join as a non-voting follower until a reconfig adds it).
            log.info("not writing a dynamic config file without this server in it")
            return
        try:
            dynconfig.write_dynamic_config(self.config.path, data.decode("utf-8"), version,
                                           self.myid)
        except OSError as e:
            log.error("writing the dynamic config file next to %s: %s", self.config.path, e)

    def prep_reconfig(self, req, authorize=None):
        """The leader: the /zookeeper/config text a ReconfigRequest asks for (ZkError if not);
        authorize() (the ACL check) runs once the request itself is found good."""
        if not self.can_propose():
            raise ZkError(errors.CONNECTIONLOSS, "not leading")
        if self.member.reconfig_in_progress():
            raise ZkError(errors.RECONFIGINPROGRESS)
        new = reconfig.plan(self.servers, self.config_version, req.joiningServers,
                            req.leavingServers, req.newMembers, req.curConfigId,
                            hierarchical=self.rule is not None,
                            multi_address=self.config.multi_address_enabled)
        voters = reconfig.voters_of(new)
        if not self.member.in_sync_quorum(voters):
            raise ZkError(errors.NEWCONFIGNOQUORUM, "no quorum of the new voters %s is in sync"
                          % sorted(voters))
        if authorize is not None:
            authorize()   # NOAUTH last, as ZooKeeper; nothing is taken on before it passed
        # The version is the zxid of this txn: the one the core assigns next.
        return reconfig.config_text(new, self.core.next_zxid)

    # ------------------------------------------------------------------ the core's interface

    @property
    def leading(self):
        return self.member.state == zm.LEADING

    def can_propose(self):
        return self._established and self.member.can_propose()

    def proposed(self, zxid, payload, origin, req_id):
        got = self.member.propose(payload, origin, req_id, now_ms())
        if got != zxid:
            # can_propose() said yes a moment ago: the core and the Member disagree, and the
            # core's log holds a txn the Member does not know. Stop rather than go on.
            self._broken(zm.BrokenInvariant(
                "the core logged txn 0x%x, the leader's state machine proposed %s"
                % (zxid, got if got is None else hex(got))))
            return
        self._pump_soon()

    def durable(self, zxid):
        self.member.persisted(zxid, now_ms())
        self._pump()
        if self._light():
            self._flush_links()   # a learner's ACK, the leader's COMMIT: now, not a pass later

    def _light(self):
        """Few writes in flight (the log's last batch was small): a message sent now instead
        of at the end of the loop pass shortens a client's round trip. Under load the pass's
        messages go out together (one write per link, one wakeup of each peer)."""
        return self.core.committer.last_batch_size <= LIGHT_BATCH

    def log_stalled(self, stalled):
        self.member.log_stalled(stalled, now_ms())
        self._pump()

    def writes_refused(self):
        """Why the leader takes no new writes now (None: it does, or this is no leader)."""
        return self.member.writes_refused()

    def forward(self, token, session_id, xid, op, body, ids):
        req_id = next(self._req_ids)
        if not self.member.forward(req_id, (session_id, xid, op, body, tuple(ids))):
            self.core.forward_refused(token)
            return
        self._forwarded[req_id] = token
        self._pump_soon()

    def forward_sync(self, token):
        req_id = next(self._req_ids)
        if not self.member.sync(req_id):
            token[0].close_conn(token[1])
            return
        self._sync_tokens[req_id] = token
        self._pump_soon()

    def touched(self, session_id):
        self.member.touch(session_id)

    # ------------------------------------------------------------------ start / stop

    async def start(self):
        me = self.servers[self.myid]
        host = me.host if me.host not in ("localhost",) else "127.0.0.1"
        await self._listen(me.election_addresses(), self.votes.serve, "election")
        await self._listen(me.quorum_addresses(), self._learner_conn, "quorum")
        log.info("ensemble member %d of %s: election %s, quorum %s", self.myid,
                 sorted(self.servers),
                 " ".join("%s:%d" % a for a in me.election_addresses()),
                 " ".join("%s:%d" % a for a in me.quorum_addresses()))
        if self.security.tls is not None and self.security.connect_tls:
            why = await self.security.tls.check_own_name(host)
            if why is not None:
                log.warning("%s", why)
        self.member.start(now_ms())
        self._spawn(self._ticker(), "zkpy-quorum-tick")
        self._pump()

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
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        for t in tasks:
            try:
                await t
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass
        for link in list(self._accepted.values()):
            link.close()
        if self._leader_link is not None:
            self._leader_link.close()
        for s in self._servers:
            s.close()
        self.security.close()

    def _spawn(self, coro, name=None):
        t = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)
        return t

    async def _ticker(self):
        while True:
            await asyncio.sleep(TICK_S)
            self.member.tick(now_ms())
            self._pump()

    # ------------------------------------------------------------------ carrying out Ready

    def _pump_soon(self):
        """After the core's own calls (a proposal, a forwarded request): once per loop pass,
        so the proposals of one pass go out together."""
        if not self._pumping:
            self._pumping = True
            asyncio.get_running_loop().call_soon(self._pump_now)

    def before_log_append(self):
        """The core's log is about to append (and fsync, maybe holding the loop): what this
        pass queued for the quorum goes out first -- a leader's proposals reach the learners
        while its own fsync runs, as ZooKeeper's leader sends them before logging; a
        learner's forwarded requests and acks do not wait for its fsync either."""
        if self._pumping and not self._busy and not self._stopping:
            self._pump_now()

    def _pump_now(self):
        self._pumping = False
        self._pump()
        # The proposals (forwarded requests) of this pass go out now, one write per link,
        # not one loop pass later.
        self._flush_links()

    def _flush_links(self):
        if self._leader_link is not None:
            self._leader_link.flush()
        for link in self._accepted.values():
            link.flush()

    def _pump(self):
        if self._pumping or self._busy or self._stopping:
            return
        self._pumping = True
        mb = self.member
        try:
            while mb.has_ready():
                r = mb.ready()
                if r.snapshot is not None or self._leaves_role(r.role):
                    self._busy = True
                    self._spawn(self._carry_out_async(r))
                    return
                self._carry_out(r)
        except zm.BrokenInvariant as e:
            self._broken(e)
        finally:
            self._pumping = False

    def _broken(self, e):
        log.critical("a rule of Zab does not hold, stopping the server: %s", e)
        self._stopping = True
        self.core._on_fatal(e)

    def _leaves_role(self, role):
        return role is not None and self._role is not None and role.term != self._role.term

    async def _carry_out_async(self, r):
        try:
            if self._leaves_role(r.role):
                await self._stand_down()
            self._write_epochs(r)
            if r.truncate_after is not None:
                self._truncate(r.truncate_after)
            if r.snapshot is not None and not await self._install(*r.snapshot):
                return
            self._carry_out_rest(r)
        except zm.BrokenInvariant as e:
            self._broken(e)
        except Exception:  # noqa: BLE001 - a bug must not leave us serving half a role
            log.exception("carrying out the quorum's decisions")
            self.member.abandon(now_ms(), "a local failure")
        finally:
            self._busy = False
            if not self._stopping:
                asyncio.get_running_loop().call_soon(self._pump)

    def _carry_out(self, r):
        self._write_epochs(r)
        if r.truncate_after is not None:
            self._truncate(r.truncate_after)
        self._carry_out_rest(r)

    def _write_epochs(self, r):
        if r.accepted_epoch is not None:
            epochs.write_epoch(self.config.data_dir, ACCEPTED_EPOCH, r.accepted_epoch)
        if r.current_epoch is not None:
            epochs.write_epoch(self.config.data_dir, CURRENT_EPOCH, r.current_epoch)

    def _truncate(self, zxid):
        log.info("TRUNC: dropping my txns after 0x%x", zxid)
        core = self.core
        core.txnlog.truncate_after(zxid)
        core.next_zxid = zxid + 1

    async def _install(self, zxid, chunks):
        core = self.core
        log.info("SNAP: installing the leader's state at 0x%x (%d bytes)", zxid,
                 sum(len(c) for c in chunks))
        try:
            await core.install_snapshot(chunks)
        except Exception as e:  # noqa: BLE001 - LMDB kept its old state (one txn)
            log.error("installing the leader's snapshot: %s", e)
            self.member.abandon(now_ms(), "the SNAP could not be installed")
            return False
        if self.config.reconfig_enabled:
            self._adopt_stored_membership()
        self._need_reload = False   # the log is empty now
        return True

    def _carry_out_rest(self, r):
        core = self.core
        if self._need_reload and (r.append or r.apply_upto is not None):
            core.load_unapplied()   # the log past LMDB, as it is after any TRUNC
            self._need_reload = False
        if r.append:
            matched = dict((z, req_id) for req_id, z in r.matched) if r.matched else None
            logged = core.next_zxid
            for zxid, payload in r.append:
                if zxid < logged:
                    continue   # the leader's own proposal: prep logged it
                token = None
                if matched is not None and zxid in matched:
                    token = self._forwarded.pop(matched[zxid], None)
                core.log_txn(zxid, txns.decode(payload), payload, token)
        messages = r.messages
        if messages and r.apply_upto is not None and not r.close and self._light() and \
                not any(type(msg) is zm.Snap for _, msg in messages):
            # No Snap (filled with the state after the apply) and nothing closed: the messages
            # need not wait for the apply -- a leader's COMMIT reaches the learners while it
            # applies the txns itself (ZooKeeper's leader too commits to them first).
            self._send_all(messages)
            self._flush_links()
            messages = ()
        if r.apply_upto is not None:
            core.commit(r.apply_upto)
        for sid, accepted in r.close:
            self._close(sid, accepted)
        if messages:
            self._send_all(messages)
        if r.role is not None:
            self._take_role(r.role)
        for src, req_id, payload in r.requests:
            try:
                if not core.remote_request(src, req_id, *payload):
                    self.member.refuse(src, req_id)
            except zm.BrokenInvariant:
                raise
            except Exception:  # noqa: BLE001 - a bad request must not take the leader down
                log.exception("request 0x%x:%d from learner %d", payload[0], payload[1], src)
        for req_id in r.refused:
            token = self._forwarded.pop(req_id, None)
            if token is not None:
                core.forward_refused(token)
        for req_id, zxid in r.syncs:
            token = self._sync_tokens.pop(req_id, None)
            if token is not None:
                core.sync_reached(zxid, token)
        if r.touched:
            t = int(time.time() * 1000)
            for sid in r.touched:
                core.sessions.touch(sid, t)

    # ------------------------------------------------------------------ roles

    async def _stand_down(self):
        """Leaving a role: no clients served, the log flushed (the Member waits for it before
        its election), the core's queue of unapplied txns dropped (reset_pipeline: the log past
        LMDB is read again before the next append or apply, which the Member still sends for
        what it knows is committed)."""
        core = self.core
        why = getattr(self.member, "last_step_down", None)
        log.warning("leaving %s: %s", core.mode, why or "a new election")
        core.serving = False
        core.mode = "looking"
        self._established = False
        self._forwarded.clear()
        self._sync_tokens.clear()
        if not core.read_only:
            core.close_all_clients()
        try:
            await core.committer.flush()
        except Exception as e:  # noqa: BLE001 - fatal log errors stop the server elsewhere
            if not self._stopping:   # (a stop gives up on a log it cannot write: said so)
                log.error("flushing the log: %s", e)
        core.reset_pipeline()
        self._need_reload = True

    def _take_role(self, role):
        prev, self._role = self._role, role
        core = self.core
        mb = self.member
        if role.read_only and not core.read_only:
            log.info("no quorum: serving read-only clients")
            core.read_only = True
        if role.state == zm.LOOKING:
            core.mode = "read-only" if core.read_only else "looking"
            if prev is None or prev.term != role.term:
                log.info("LOOKING: my vote (epoch 0x%x, zxid 0x%x, id %d)", mb.current_epoch,
                         mb.last_zxid, self.myid)
            return
        if not role.serving:
            if prev is None or prev.state != role.state or prev.term != role.term:
                core.mode = _MODES[role.state]
                vote = mb.vote
                log.info("elected leader %d (zxid 0x%x, epoch 0x%x); I am %s", role.leader,
                         vote.zxid if vote else 0, vote.peer_epoch if vote else 0,
                         fle.STATE_NAMES.get(role.state, role.state))
                if role.state == zm.LEADING:
                    log.info("LEADING: waiting for a quorum of followers")
            return
        if prev is not None and prev.serving and prev.term == role.term:
            return   # a follower became an observer (or back) by a reconfig
        self._serve(role)

    def _serve(self, role):
        """The role is ready: serve clients (closing any read-only session first)."""
        core = self.core
        if role.state == zm.LEADING:
            core.next_zxid = zab.make_zxid(role.epoch, 1)
            core.overlay.applied(core.last_zxid)
            t = int(time.time() * 1000)
            for sid in list(core.sessions.sessions):
                core.sessions.touch(sid, t)
            self._established = True
            mode = "leader"
        else:
            spec = self.servers.get(self.myid)
            mode = "observer" if spec is not None and spec.role == "observer" else "follower"
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
        mb = self.member
        if role.state == zm.LEADING:
            log.info("LEADING epoch 0x%x with %s; committed up to 0x%x", role.epoch,
                     sorted(s for s, ln in mb.learners.items() if ln.acked_newleader),
                     core.commit_zxid)
            if self.config.reconfig_enabled:
                self._propose_membership()
        else:
            log.info("FOLLOWING leader %d in epoch 0x%x; applied up to 0x%x", role.leader,
                     mb.current_epoch, core.last_zxid)

    def _propose_membership(self):
        """The first leader of an ensemble writes the membership into /zookeeper/config."""
        core = self.core
        node = core.view.get(reconfig.CONFIG_NODE)
        try:
            _, stored = reconfig.parse_config_text(node.data.decode("utf-8"))
            if reconfig.same_membership(stored, self.servers):
                return
        except (ValueError, UnicodeDecodeError, AttributeError):
            pass
        text = reconfig.config_text(self.servers, core.next_zxid)
        core.submit(txns.Txn(txns.SET_DATA, 0, 0, int(time.time() * 1000),
                             path=reconfig.CONFIG_NODE, data=text.encode("utf-8"), version=-1),
                    None)

    # ------------------------------------------------------------------ quorum connections

    def _send_all(self, messages):
        """A Ready's messages, in order. The bulk (a Proposal or Commit, each one object for
        every learner it goes to) is encoded once and queued on each learner's link here."""
        accepted = self._accepted
        last = frame = None
        for dest, msg in messages:
            t = type(msg)
            if t is zm.Proposal:
                if msg is not last:
                    last, frame = msg, m.proposal(*msg)
            elif t is zm.Commit:
                if msg is not last:
                    last, frame = msg, m.one(m.COMMIT, msg.zxid)
            else:
                self._route(dest, msg)
                continue
            link = accepted.get(dest)
            if link is not None:
                link.send(frame)

    def _route(self, dest, msg):
        t = type(msg)
        if t is fle.Notification:
            self.votes.send(dest, msg)
            return
        if t in _LEARNER_TYPES:
            if t is zm.FollowerInfo:
                self._connect_leader(dest, to_wire(msg))
            elif self._leader_link is not None and self._leader_sid == dest:
                self._leader_link.send(to_wire(msg))
            return
        link = self._accepted.get(dest)
        if link is None:
            return
        if t is zm.Snap:
            self._send_snap(dest, link, msg)
            return
        if t is zm.Diff or t is zm.Trunc:
            log.info("syncing learner %d by %s from 0x%x", dest,
                     "DIFF" if t is zm.Diff else "TRUNC", msg.zxid)
        if msg is not self._last_msg:   # one LPing goes to every learner
            self._last_msg, self._last_frame = msg, to_wire(msg)
        link.send(self._last_frame)

    def _close(self, sid, accepted):
        if accepted:
            link = self._accepted.pop(sid, None)
        elif self._leader_sid == sid:
            link, self._leader_link, self._leader_sid = self._leader_link, None, None
        else:
            link = None
        if link is not None:
            link.close()

    def _link_lost(self, sid, link, accepted, why):
        """A connection ended (or failed to open): the Member hears of it if it is current."""
        if accepted:
            if self._accepted.get(sid) is not link:
                return
            del self._accepted[sid]
        else:
            if self._leader_link is not link:
                return
            self._leader_link = self._leader_sid = None
        connected = link.writer is not None
        link.close()
        if why:
            (log.info if connected else log.debug)(
                "%s %d: %s", "learner" if accepted else "leader", sid, why)
        if not self._stopping:
            self.member.link_down(sid, now_ms(), accepted)
            self._pump()

    def _connect_leader(self, sid, first_frame):
        """A FOLLOWERINFO starts a new connection to the leader (the Member retries)."""
        if self._leader_link is not None:
            self._leader_link.close()
        link = Link()
        link.send(first_frame)
        self._leader_link, self._leader_sid = link, sid
        self._spawn(self._leader_conn(sid, link))

    async def _leader_conn(self, sid, link):
        spec = self.servers.get(sid)
        why = None
        try:
            if spec is None:
                raise ConnectionError("server %d is not in the membership" % sid)
            reader, writer = await self.security.connect_any(spec.quorum_addresses(), 2.0,
                                                             "quorum")
            if link.closed:
                writer.close()
                return
            link.attach(reader, writer)
            snap = None
            mb = self.member
            while True:
                frames = await link.recv_many()
                t = now_ms()
                run = []   # PROPOSAL / COMMIT frames in a row: one stream() call
                for mtype, f in frames:
                    if snap is None and (mtype == m.PROPOSAL or mtype == m.COMMIT):
                        run.append((mtype, f))
                        continue
                    if run:
                        self._stream(sid, run, t)
                        run = []
                    if snap is not None:
                        if mtype == m.SNAPDATA:
                            snap[2].append(f[0])
                            continue
                        if mtype != m.SNAPEND:
                            raise m.ProtocolError("expected SNAPDATA, got %s"
                                                  % m.NAMES.get(mtype))
                        msg, snap = zm.Snap(snap[0], snap[2], snap[1]), None
                    elif mtype == m.SNAP:
                        snap = (f[0], f[1], [])
                        continue
                    else:
                        msg = from_leader(mtype, f)
                    if link.closed:
                        break
                    mb.receive(sid, msg, t)
                if run and not link.closed:
                    self._stream(sid, run, t)
                self._pump()
                if link.closed:
                    return
        except asyncio.CancelledError:
            raise
        except (OSError, asyncio.TimeoutError, secure.Refused, m.ProtocolError) as e:
            why = str(e) or type(e).__name__
        self._link_lost(sid, link, False, why if not link.closed else None)

    def _stream(self, sid, run, t):
        """The leader's PROPOSAL / COMMIT frames of one read, in order: in one Member.stream
        call while serving, else one by one."""
        props = []
        commit = 0
        for mtype, f in run:
            if mtype == m.PROPOSAL:
                props.append(f)
            elif f[0] > commit:
                commit = f[0]
        mb = self.member
        if not mb.stream(sid, props, commit, t):
            for mtype, f in run:
                mb.receive(sid, from_leader(mtype, f), t)

    def _requests(self, sid, reqs, t):
        """A learner's REQUEST frames of one read, in order, as (req_id, payload): in one
        Member.requests call while it takes them, else one by one."""
        mb = self.member
        if not mb.requests(sid, reqs, t):
            for req_id, payload in reqs:
                mb.receive(sid, zm.Request(req_id, payload), t)

    async def _learner_conn(self, reader, writer):
        link = Link(reader, writer)
        sid = None
        why = None
        try:
            mtype, f = await asyncio.wait_for(link.recv(), self.member.p.init_ms / 1000.0)
            if mtype != m.FOLLOWERINFO:
                raise m.ProtocolError("expected FOLLOWERINFO, got %s" % m.NAMES.get(mtype))
            if f[0] == self.myid or f[0] <= 0:
                raise m.ProtocolError("learner id %d is mine or invalid" % f[0])
            sid = f[0]
            if sid not in self.servers:
                log.info("learner %d is not in the membership: a non-voting follower", sid)
            old = self._accepted.get(sid)
            self._accepted[sid] = link
            if old is not None:
                old.close()
            self.member.receive(sid, from_learner(mtype, f), now_ms())
            self._pump()
            mb = self.member
            while True:
                frames = await link.recv_many()
                if link.closed:
                    return
                t = now_ms()
                reqs = []   # REQUEST frames in a row: one Member.requests call
                for mtype, f in frames:
                    if mtype == m.REQUEST:
                        reqs.append(f)   # (req_id, payload)
                        continue
                    if reqs:
                        self._requests(sid, reqs, t)
                        reqs = []
                    if mtype == m.FOLLOWERINFO:
                        raise m.ProtocolError("a second FOLLOWERINFO")
                    mb.receive(sid, from_learner(mtype, f), t)
                    if link.closed:
                        break
                if reqs and not link.closed:
                    self._requests(sid, reqs, t)
                self._pump()
                if link.closed:
                    return
        except asyncio.CancelledError:
            raise
        except (OSError, asyncio.TimeoutError, m.ProtocolError) as e:
            why = str(e) or type(e).__name__
        finally:
            if sid is None:
                link.close()
        if sid is not None:
            self._link_lost(sid, link, True, why if not link.closed else None)
        elif why:
            log.info("quorum connection refused: %s", why)

    def _send_snap(self, sid, link, msg):
        """The Member's Snap(zxid): a copy of LMDB right now (it is exactly at zxid: the apply
        of this Ready ran), streamed from a read txn; frames after it wait behind it."""
        core = self.core
        if core.last_zxid != msg.zxid:
            log.error("cannot SNAP learner %d: my database is at 0x%x, not 0x%x", sid,
                      core.last_zxid, msg.zxid)
            self._link_lost(sid, link, True, None)
            return
        link.send(m.snap(msg.zxid, msg.voters or ()))
        rtxn = core.tree.read_txn()
        link.holding = []
        log.info("syncing learner %d by SNAP at 0x%x", sid, msg.zxid)
        self._spawn(self._stream_snap(sid, link, rtxn))

    async def _stream_snap(self, sid, link, rtxn):
        core = self.core
        try:
            try:
                chunks = await asyncio.get_running_loop().run_in_executor(
                    None, lambda: list(core.tree.snapshot_chunks(rtxn)))
            finally:
                rtxn.abort()
            for chunk in chunks:
                await link.write_now(m.snap_data(chunk))
            await link.write_now(m.snap_end())
            link.release()
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - the learner is dropped, the leader goes on
            self._link_lost(sid, link, True, "sending the SNAP: %s" % e)

    # ------------------------------------------------------------------ election

    def _notification(self, n, answer=None):
        mb = self.member
        if n.sender not in self.servers:
            # A server outside our view (just removed by a reconfig, or new and not added
            # yet): answer with our vote on the connection it came in on, as ZooKeeper's
            # WorkerReceiver does, so that it finds the leader and follows as a non-voter.
            el = mb.election
            if el is not None and el.decided is None:
                reply = el.current()
            elif mb.vote is not None and mb.state != zm.LOOKING:
                reply = fle.Notification(self.myid, mb.state, mb.vote, mb.election_epoch)
            else:
                return
            if answer is not None and n.state == fle.LOOKING:
                answer(reply)
            return
        mb.receive(n.sender, n, now_ms())
        self._pump()
