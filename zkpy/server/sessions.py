"""The session table: ids, passwords, timeouts and expiry. Pure (time comes in as now_ms).

Mirrors SessionTrackerImpl: deadlines are rounded up to the next tick so expiry runs once per tick;
every packet from a session touches it. Session ids follow ZooKeeper's layout
((time_ms << 24) >>> 8) | (server_id << 56), and passwords are ZooKeeper's: 16 bytes of
java.util.Random(session_id ^ SUPER_SECRET), so they are the same after a restart without storing
them.
"""

SUPER_SECRET = 0xB3415C00
_MASK48 = (1 << 48) - 1
_MASK64 = (1 << 64) - 1


def _signed64(v):
    v &= _MASK64
    return v - (1 << 64) if v & (1 << 63) else v


def java_random_bytes(seed, n):
    """java.util.Random(seed).nextBytes(byte[n])."""
    s = (seed ^ 0x5DEECE66D) & _MASK48
    out = bytearray()
    while len(out) < n:
        s = (s * 0x5DEECE66D + 0xB) & _MASK48
        r = s >> 16  # next(32), as unsigned bits
        for _ in range(min(4, n - len(out))):
            out.append(r & 0xFF)
            r >>= 8
    return bytes(out)


def session_password(session_id):
    return java_random_bytes(_signed64(session_id ^ SUPER_SECRET), 16)


def initial_session_id(now_ms, server_id):
    sid = ((now_ms << 24) & _MASK64) >> 8
    sid |= server_id << 56
    sid = _signed64(sid)
    if sid == -(1 << 63):  # reserved as the container marker (EphemeralType)
        sid += 1
    return sid


class Session(object):
    __slots__ = ("session_id", "timeout_ms", "deadline_ms", "closing", "owner")

    def __init__(self, session_id, timeout_ms, deadline_ms):
        self.session_id = session_id
        self.timeout_ms = timeout_ms
        self.deadline_ms = deadline_ms
        self.closing = False   # a closeSession txn is on its way; refuse new requests
        self.owner = None      # the connection currently holding the session, if any


class SessionTable(object):
    def __init__(self, tick_ms, server_id=1):
        self.tick_ms = tick_ms
        self.server_id = server_id
        self.sessions = {}
        self._next_id = None

    def _deadline(self, now_ms, timeout_ms):
        t = now_ms + timeout_ms
        return (t // self.tick_ms + 1) * self.tick_ms

    def next_session_id(self, now_ms):
        if self._next_id is None:
            self._next_id = initial_session_id(now_ms, self.server_id)
        sid = self._next_id
        self._next_id += 1
        return sid

    def add(self, session_id, timeout_ms, now_ms):
        s = Session(session_id, timeout_ms, self._deadline(now_ms, timeout_ms))
        self.sessions[session_id] = s
        return s

    def get(self, session_id):
        return self.sessions.get(session_id)

    def touch(self, session_id, now_ms):
        s = self.sessions.get(session_id)
        if s is None or s.closing:
            return False
        s.deadline_ms = self._deadline(now_ms, s.timeout_ms)
        return True

    def remove(self, session_id):
        return self.sessions.pop(session_id, None)

    def expired(self, now_ms):
        """Sessions past their deadline and not already closing."""
        return [s for s in self.sessions.values() if not s.closing and s.deadline_ms <= now_ms]
