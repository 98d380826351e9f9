"""The core applies a batch while a worker is gone (it exited: at a clean stop, or it died) and
the core has not read its EOF yet: the batch is written to every worker socket before LMDB
commits it, so writing it finds the dead peer.

The worker found gone leaves the core's origins (Supervisor.worker_lost) and the apply goes
on: the batch is committed, the other workers get it, the core keeps serving (no fatal error,
which would make a clean stop exit 1 and leave the batch for the next start to replay).
Deterministic: the core's reader of the dead worker's socket is never run.
"""

import asyncio
import socket

from zkpy.config import Config
from zkpy.proto import codec, consts
from zkpy.proto import records as r
from zkpy.workers import ipc
from zkpy.server.core import Core, now_ms
from zkpy.workers.supervisor import Supervisor, WorkerHandle

SID = 0x1234
ACL = [r.ACL(consts.PERM_ALL, r.Id("world", "anyone"))]


class Recorder(object):
    """A live frontend, as the core sees it."""

    def __init__(self):
        self.batches = []
        self.committed_zxid = 0

    def batch(self, zxid, events, replies, committed=False):
        self.batches.append((zxid, list(replies)))
        if committed:
            self.committed(zxid)

    def committed(self, zxid):
        self.committed_zxid = zxid

    def connected(self, *args):
        pass

    def close_conn(self, conn_id):
        pass


def _create(path):
    return codec.encode(r.CreateRequest(path, b"v", ACL, 0))


def test_batch_for_a_worker_that_is_gone(tmp_path):
    cfg = Config(data_dir=str(tmp_path), data_log_dir=str(tmp_path), client_port=0,
                 force_sync=False, workers=1)
    core = Core(cfg)
    core.open()

    async def run():
        loop = asyncio.get_running_loop()
        core.start()
        core.sessions.add(SID, 30000, now_ms())
        sup = Supervisor(core, cfg)
        gone = WorkerHandle(sup, 1)
        core_end, worker_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        gone.channel = ipc.Channel(loop, core_end, gone.on_frame, gone.on_eof)
        loop.remove_reader(core_end.fileno())   # its EOF is not read before the apply
        gone.alive = True
        sup.workers.append(gone)
        live = Recorder()
        # The gone worker first: leaving the origins must not make the next one miss the batch.
        core.origins[:] = [gone, live]
        worker_end.close()   # the worker process exits
        core.request(live, 1, 1, SID, 1, consts.OP_CREATE, _create("/a"))
        core.request(gone, 2, 1, SID, 2, consts.OP_CREATE, _create("/b"))
        await core.committer.flush()
        assert core.fatal is None
        assert not gone.alive and core.origins == [live]
        assert live.batches and live.committed_zxid == core.last_zxid
        assert [e for _, replies in live.batches for e in replies][0][:2] == (1, 1)
        # The core goes on serving.
        core.request(live, 1, 2, SID, 3, consts.OP_CREATE, _create("/c"))
        await core.committer.flush()
        assert core.fatal is None and live.committed_zxid == core.last_zxid
        for path in ("/a", "/b", "/c"):
            assert core.view.get(path) is not None, path
        await core.stop()

    asyncio.run(run())
