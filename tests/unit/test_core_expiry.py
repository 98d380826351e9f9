"""Session expiry driven by the caller's clock (Core.expire_sessions(now_ms)), no wall-clock
wait: a session expires at its deadline rounded up to the next tick, as SessionTrackerImpl
does -- not a tick before -- its ephemerals go with it, a touch moves the deadline, and a server
that does not lead expires nothing."""


from zkpy.proto import codec, consts
from zkpy.proto import records as r
from zkpy.server import core as core_mod

from test_core_disk_full import OPEN_ACL, SID, Harness, run

TIMEOUT = 30000  # the harness's session


def _ephemeral(h, path):
    h.entry += 1
    h.core.request(h.origin, 1, h.entry, SID, h.entry, consts.OP_CREATE,
                   codec.encode(r.CreateRequest(path, b"e", OPEN_ACL, 1)))
    return h.entry


def test_expiry_at_the_tick_after_the_timeout(tmp_path):
    h = Harness(tmp_path)

    async def main():
        await h.start()
        e = _ephemeral(h, "/eph")
        await h.settle()
        assert h.answer(e) == 0
        tick = h.core.config.tick_time_ms
        assert h.core.sessions.get(SID).timeout_ms == TIMEOUT
        t0 = core_mod.now_ms()
        assert h.core.sessions.touch(SID, t0)
        deadline = ((t0 + TIMEOUT) // tick + 1) * tick
        assert h.core.expire_sessions(deadline - 1) == []
        # A touch just before moves the deadline on.
        assert h.core.sessions.touch(SID, t0 + tick)
        assert h.core.expire_sessions(deadline) == []
        later = ((t0 + tick + TIMEOUT) // tick + 1) * tick
        assert h.core.expire_sessions(later) == [SID]
        assert h.core.expire_sessions(later) == []   # closing: not expired twice
        await h.settle()
        assert h.core.sessions.get(SID) is None
        assert h.core.view.get("/eph") is None
        await h.stop()

    run(main())


def test_a_server_that_does_not_lead_expires_nothing(tmp_path):
    h = Harness(tmp_path)

    async def main():
        await h.start()
        h.core.serving = False          # e.g. an ensemble member without a leader
        far = core_mod.now_ms() + 10 * TIMEOUT
        assert h.core.expire_sessions(far) == []
        h.core.serving = True
        assert h.core.expire_sessions(far) == [SID]
        await h.settle()
        assert h.core.sessions.get(SID) is None
        await h.stop()

    run(main())


def test_sessions_of_a_restart_expire_from_the_restart(tmp_path):
    """A reopened server gives every stored session a full timeout from its start."""
    h = Harness(tmp_path)

    async def main():
        await h.start()
        await h.stop()

    run(main())
    again = core_mod.Core(h.core.config)
    again.open()
    try:
        s = again.sessions.get(SID)
        assert s is not None and s.timeout_ms == TIMEOUT
        assert s.deadline_ms >= core_mod.now_ms() + TIMEOUT - again.config.tick_time_ms
    finally:
        again.close_storage()


