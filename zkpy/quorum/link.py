"""One framed TCP connection between two servers of an ensemble, and the wire <-> machine
message translation.

Owns the asyncio stream plumbing of the quorum port: frames of zkpy.quorum.messages read one
at a time, outgoing frames queued so that one loop pass writes them at once, and frames held
back while a SNAP streams. `to_wire` / `from_wire` turn zkpy.quorum.machine's messages into
frames and back (pure).
"""

import asyncio
import collections
import time

from zkpy.quorum import machine as zm
from zkpy.quorum import messages as m


def now_ms():
    return int(time.monotonic() * 1000)


class Link(object):
    """A framed peer connection over asyncio streams (reader/writer given at once, or by
    attach() once a connection attempt succeeded; frames sent before are kept)."""

    def __init__(self, reader=None, writer=None):
        self.reader = reader
        self.writer = writer
        self.decoder = m.Decoder()
        self.frames = collections.deque()
        self.closed = False
        self.holding = None     # frames held back while a SNAP streams (a list)
        self._out = []

    def attach(self, reader, writer):
        self.reader, self.writer = reader, writer
        if self._out:
            asyncio.get_running_loop().call_soon(self._flush)

    async def recv(self):
        """The next frame as (type, fields); ConnectionError at the end of the stream."""
        while not self.frames:
            data = await self.reader.read(1 << 20)
            if not data:
                raise ConnectionError("connection closed by the peer")
            self.frames.extend(self.decoder.feed(data))
        return m.decode(self.frames.popleft())

    async def recv_many(self):
        """Every frame read so far (at least one), decoded: the caller feeds them all to the
        state machine and carries out one Ready for the lot."""
        while not self.frames:
            data = await self.reader.read(1 << 20)
            if not data:
                raise ConnectionError("connection closed by the peer")
            self.frames.extend(self.decoder.feed(data))
        frames, self.frames = self.frames, collections.deque()
        return [m.decode(f) for f in frames]

    def send(self, data):
        """Queue a frame; everything queued in one pass of the loop goes out in one write."""
        if self.closed:
            return
        if self.holding is not None:
            self.holding.append(data)
            return
        if not self._out and self.writer is not None:
            asyncio.get_running_loop().call_soon(self._flush)
        self._out.append(data)

    async def write_now(self, data):
        """Past the held frames (a SNAP's own stream), with flow control."""
        self._flush()
        if not self.closed:
            self.writer.write(data)
            await self.writer.drain()

    def release(self):
        """The SNAP is sent: the frames held meanwhile follow it."""
        held, self.holding = self.holding or [], None
        for data in held:
            self.send(data)

    def flush(self):
        """Write what is queued now (the scheduled write then finds nothing to do)."""
        if self._out:
            self._flush()

    def _flush(self):
        if self._out and not self.closed and self.writer is not None:
            self.writer.write(b"".join(self._out))
            self._out = []

    def close(self):
        if not self.closed:
            self._flush()
            self.closed = True
            if self.writer is not None:
                try:
                    self.writer.close()
                except Exception:  # noqa: BLE001 - already broken
                    pass


# -- machine messages <-> frames -------------------------------------------------------------------

def to_wire(msg):
    """A zkpy.quorum.machine message (not a Notification, not a Snap) -> its frame."""
    t = type(msg)
    if t is zm.Proposal:
        return m.proposal(msg.zxid, msg.origin, msg.req_id, msg.payload)
    if t is zm.Ack:
        return m.one(m.ACK, msg.zxid)
    if t is zm.Commit:
        return m.one(m.COMMIT, msg.zxid)
    if t is zm.Request:
        session_id, xid, op, body, ids = msg.payload
        return m.request(msg.req_id, session_id, xid, op, body, ids)
    if t is zm.Ping:
        return m.ping(msg.session_ids)
    if t is zm.LPing:
        return m.lping()
    if t is zm.SyncDone:
        return m.sync_done(msg.req_id, msg.zxid)
    if t is zm.FollowerInfo:
        return m.follower_info(msg.sid, msg.accepted_epoch, msg.last_zxid, msg.applied_zxid,
                               msg.observer)
    if t is zm.AckEpoch:
        return m.ack_epoch(msg.current_epoch, msg.last_zxid)
    if t is zm.LogState:
        return m.one(m.LOGSTATE, 1 if msg.stalled else 0)
    if t is zm.Sync:
        return m.one(m.SYNC, msg.req_id)
    if t is zm.Refused:
        return m.one(m.REFUSED, msg.req_id)
    kind = _ONE.get(t)
    if kind is None:
        raise TypeError("no frame for %r" % (msg,))
    return m.one(kind, msg[0])


_ONE = {zm.LeaderInfo: m.LEADERINFO, zm.Diff: m.DIFF, zm.Trunc: m.TRUNC,
        zm.NewLeader: m.NEWLEADER, zm.UpToDate: m.UPTODATE}

# What a learner sends (the leader reads) and what a leader sends (a learner reads); SNAP,
# SNAPDATA and SNAPEND are put together by the reader into one Snap.
_FROM_LEARNER = {
    m.FOLLOWERINFO: lambda f: zm.FollowerInfo(*f),
    m.ACKEPOCH: lambda f: zm.AckEpoch(*f),
    m.ACK: lambda f: zm.Ack(f[0]),
    m.PING: lambda f: zm.Ping(tuple(f[0])),
    m.REQUEST: lambda f: zm.Request(*f),
    m.SYNC: lambda f: zm.Sync(f[0]),
    m.LOGSTATE: lambda f: zm.LogState(bool(f[0])),
}
_FROM_LEADER = {
    m.LEADERINFO: lambda f: zm.LeaderInfo(f[0]),
    m.DIFF: lambda f: zm.Diff(f[0]),
    m.TRUNC: lambda f: zm.Trunc(f[0]),
    m.PROPOSAL: lambda f: zm.Proposal(*f),
    m.NEWLEADER: lambda f: zm.NewLeader(f[0]),
    m.UPTODATE: lambda f: zm.UpToDate(f[0]),
    m.COMMIT: lambda f: zm.Commit(f[0]),
    m.LPING: lambda f: zm.LPing(),
    m.SYNCDONE: lambda f: zm.SyncDone(*f),
    m.REFUSED: lambda f: zm.Refused(f[0]),
}


def from_learner(mtype, fields):
    if mtype == m.ACK:   # the bulk of what a leader reads
        return zm.Ack(fields[0])
    return _convert(_FROM_LEARNER, mtype, fields, "learner")


def from_leader(mtype, fields):
    if mtype == m.PROPOSAL:   # the bulk of what a learner reads
        return zm.Proposal(*fields)
    if mtype == m.COMMIT:
        return zm.Commit(fields[0])
    return _convert(_FROM_LEADER, mtype, fields, "leader")


def _convert(table, mtype, fields, who):
    conv = table.get(mtype)
    if conv is None:
        raise m.ProtocolError("%s is not a %s's message" % (m.NAMES.get(mtype, mtype), who))
    return conv(fields)
