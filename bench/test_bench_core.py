"""The core's write path in one process, without sockets: CPU time per write.

A Core on a temporary dataDir (forceSync=no) is fed N setData / create / delete requests the way
a frontend feeds it (Core.request, as zkpy.server.standalone.LocalLink does), 256 per event-loop
pass, and its group committer applies them; the clock is time.process_time (every thread of the
process: the loop and the txn-log thread), so other work on this shared machine does not count.

Two origins:
  local  the frontend is in the core's process (workers=0): plain calls, replies dropped;
  ipc    what a worker costs the core (workers>=1): each request arrives as an IPC frame the
         core splits (ipc.Decoder) and decodes (ipc.decode) as WorkerHandle.on_frame does, and
         each batch / committed is encoded with ipc.batch / ipc.committed (the socket write
         itself is left out). The frames are built before the clock starts.

As a pytest-benchmark file (not part of the test suite, see bench/README.md):
    python -m pytest bench/test_bench_core.py -q --benchmark-only --benchmark-columns=min,median
(the time shown is per batch of N writes). As a script, CPU microseconds per write, best of R:
    python bench/test_bench_core.py [--n 20000] [--rounds 5] [--ops setdata,create,delete]
                                    [--origins local,ipc]
and, repeatable on a busy machine, instructions per write counted by callgrind (valgrind):
    python bench/test_bench_core.py --instructions [--ops ...] [--origins ipc]
                                    [--inside zkpy.server.core:Core._apply]
(--inside: only the instructions run inside that function or method, e.g.
zkpy.tree.datatree:fused_create; it is called through operator.call, which callgrind's
--toggle-collect counts in. A delete run's creates count too; subtract a create run's.)
"""

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

from zkpy.config import Config
from zkpy.proto import codec, consts
from zkpy.proto import records as r
from zkpy.workers import ipc
from zkpy.server.core import Core
try:
    from zkpy.server.gcpolicy import tune_gc
except ImportError:  # a zkpy from before tune_gc: the default GC settings, as its server had
    tune_gc = lambda: None  # noqa: E731

VALUE = bytes(range(100))
ACL = [r.ACL(consts.PERM_ALL, r.Id("world", "anyone"))]
N_SETDATA_NODES = 1000
CHUNK = 256            # requests handed to the core per event-loop pass (~ a worker's batch)
SID = 0x1000000000001
CONN = 7


def _enc(rec):
    return codec.encode(rec)


class _Origin(object):
    """A frontend as the core sees it; counts replies."""

    def __init__(self, use_ipc):
        self.use_ipc = use_ipc
        self.replies = 0
        self.errors = 0
        self.out = 0

    def batch(self, zxid, events, replies):
        if self.use_ipc:
            self.out += len(ipc.batch(zxid, events, list(replies)))
        self.replies += len(replies)

    def committed(self, zxid):
        if self.use_ipc:
            self.out += len(ipc.committed(zxid))

    def connected(self, *args):
        pass

    def close_conn(self, conn_id):
        pass


class CoreBench(object):
    """One Core on a fresh temp dataDir, inside its own event loop."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="zkpy-bench-core-", dir="/tmp")
        cfg = Config(data_dir=self.dir, client_port=0, data_log_dir=self.dir, force_sync=False,
                     workers=0)
        self.loop = asyncio.new_event_loop()
        self.core = Core(cfg)
        self.core.open()
        tune_gc()  # as zkpy.server.standalone.serve does in the core process
        self.loop.run_until_complete(self._start())
        self.core.sessions.add(SID, 30000, int(time.time() * 1000))
        self.xid = 1
        self.entry = 1
        self.created = 0
        self.run_no = 0
        # setData targets
        self._drive([(consts.OP_CREATE, _enc(r.CreateRequest("/s%04d" % i, VALUE, ACL, 0)))
                     for i in range(N_SETDATA_NODES)] +
                    [(consts.OP_CREATE, _enc(r.CreateRequest("/c", b"", ACL, 0)))],
                    _Origin(False))

    async def _start(self):
        self.core.start()

    def close(self):
        self.loop.run_until_complete(self.core.stop())
        self.loop.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- requests

    def setdata(self, n):
        return [(consts.OP_SET_DATA, _enc(r.SetDataRequest("/s%04d" % (i % N_SETDATA_NODES),
                                                           VALUE, -1))) for i in range(n)]

    def creates(self, n):
        base = self.created
        self.created += n
        return [(consts.OP_CREATE, _enc(r.CreateRequest("/c/n%09d" % (base + i), VALUE, ACL, 0)))
                for i in range(n)]

    def deletes(self, n):
        """Creates n nodes (unmeasured) and returns the requests deleting them."""
        reqs = self.creates(n)
        self._drive(reqs, _Origin(False))
        out = []
        for _, body in reqs:
            req, _ = codec.DECODERS[r.CreateRequest](body, 0)
            out.append((consts.OP_DELETE, _enc(r.DeleteRequest(req.path, -1))))
        return out

    # -- driving

    def _frames(self, reqs):
        frames = []
        for op, body in reqs:
            frames.append(ipc.request(CONN, self.entry, SID, self.xid, op, body))
            self.xid += 1
            self.entry += 1
        return frames

    def _drive(self, reqs, origin, frames=None):
        """Feed the requests CHUNK per loop pass; wait for every reply. Returns CPU seconds
        (user + system); self.last_user is the user part."""
        core = self.core
        core.origins[:] = [origin]
        n = len(reqs)

        async def go():
            u0 = os.times().user
            t0 = time.process_time()
            if frames is None:
                for i in range(0, n, CHUNK):
                    for op, body in reqs[i:i + CHUNK]:
                        core.request(origin, CONN, self.entry, SID, self.xid, op, body)
                        self.xid += 1
                        self.entry += 1
                    await asyncio.sleep(0)
            else:
                dec = ipc.Decoder()
                for i in range(0, n, CHUNK):
                    for frame in dec.feed(b"".join(frames[i:i + CHUNK])):
                        mtype, args = ipc.decode(frame)
                        core.request(origin, *args)
                    await asyncio.sleep(0)
            await core.committer.flush()
            while origin.replies < n:
                await asyncio.sleep(0)
            self.last_user = os.times().user - u0
            return time.process_time() - t0

        return self.loop.run_until_complete(go())

    def run(self, op, n, use_ipc):
        """CPU seconds for n writes of `op` ("setdata", "create", "delete")."""
        reqs = {"setdata": self.setdata, "create": self.creates, "delete": self.deletes}[op](n)
        origin = _Origin(use_ipc)
        frames = self._frames(reqs) if use_ipc else None
        return self._drive(reqs, origin, frames)


# ---------------------------------------------------------------- pytest-benchmark

N_PYTEST = 2000

try:
    import pytest
except ImportError:  # script mode without pytest
    pytest = None

if pytest is not None:
    @pytest.fixture(scope="module")
    def core_bench():
        b = CoreBench()
        yield b
        b.close()

    @pytest.mark.benchmark(group="core-write")
    @pytest.mark.parametrize("origin", ["local", "ipc"])
    @pytest.mark.parametrize("op", ["setdata", "create", "delete"])
    def test_core_write(benchmark, core_bench, op, origin):
        """One round = N_PYTEST writes through the core; the timer is process_time."""
        use_ipc = origin == "ipc"
        state = {}

        def setup():
            reqs = {"setdata": core_bench.setdata, "create": core_bench.creates,
                    "delete": core_bench.deletes}[op](N_PYTEST)
            state["origin"] = _Origin(use_ipc)
            state["frames"] = core_bench._frames(reqs) if use_ipc else None
            return (reqs,), {}

        def one(reqs):
            return core_bench._drive(reqs, state["origin"], state["frames"])

        benchmark.extra_info["writes_per_round"] = N_PYTEST
        benchmark._timer = time.process_time
        benchmark.pedantic(one, setup=setup, rounds=5, iterations=1)
        assert state["origin"].replies == N_PYTEST
        benchmark.extra_info["cpu_us_per_write_min"] = round(
            benchmark.stats.stats.min * 1e6 / N_PYTEST, 2)


# ---------------------------------------------------------------- script mode

def _collected(op, n, origin, inside=None):
    """callgrind's instruction count for one run of this script (valgrind must be installed)."""
    env = dict(os.environ, PYTHONHASHSEED="0")   # the same dict layouts every run
    toggle = ["--toggle-collect=_operator_call"] if inside else []
    wrap = ["--inside", inside] if inside else []
    out = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"] + toggle +
        [sys.executable, os.path.abspath(__file__), "--n", str(n), "--rounds", "1", "--ops", op,
         "--origins", origin, "--small-map"] + wrap,
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=True).stdout
    m = re.search(r"Collected : (\d+)", out)
    if m is None:
        raise SystemExit("no callgrind total in:\n" + out[-2000:])
    return int(m.group(1))


def _wrap_inside(target):
    """Call `target` ("module:function" or "module:Class.method") through operator.call."""
    import importlib
    import operator
    mod, _, attr = target.partition(":")
    owner = importlib.import_module(mod)
    parts = attr.split(".")
    for name in parts[:-1]:
        owner = getattr(owner, name)
    fn = getattr(owner, parts[-1])
    call = getattr(operator, "call", None)
    if call is None:
        raise SystemExit("--inside needs Python 3.11+ (operator.call)")

    def wrapped(*args, **kwargs):
        return call(fn, *args, **kwargs)
    setattr(owner, parts[-1], wrapped)


def instructions(ops, origins, n1=1000, n2=4000, inside=None):
    """Instructions per write: the slope of callgrind's total between runs of n1 and n2 writes
    (the fixed costs -- start, imports, setup -- cancel). Repeatable to ~0.1% whatever else the
    machine runs, unlike CPU time. A delete run also does its unmeasured creates, so a delete is
    its run's slope minus a create run's."""
    slopes = {}
    for origin in origins:
        for op in ops:
            need = [op] + (["create"] if op == "delete" else [])
            for o in need:
                if (o, origin) not in slopes:
                    slopes[o, origin] = (_collected(o, n2, origin, inside)
                                         - _collected(o, n1, origin, inside)) / float(n2 - n1)
            per = slopes[op, origin] - (slopes["create", origin] if op == "delete" else 0)
            print("%-8s %-6s %9.0f instructions/write%s (callgrind, n=%d..%d)"
                  % (op, origin, per, " inside " + inside if inside else "", n1, n2))
            sys.stdout.flush()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=20000, help="writes per run (default 20000)")
    p.add_argument("--rounds", type=int, default=5, help="runs per case; best is reported")
    p.add_argument("--ops", default="setdata,create,delete")
    p.add_argument("--origins", default="local,ipc")
    p.add_argument("--instructions", action="store_true",
                   help="count instructions per write under callgrind instead of timing")
    p.add_argument("--small-map", action="store_true",
                   help="a 1 GiB LMDB map (valgrind cannot reserve the default 64 GiB)")
    p.add_argument("--inside", metavar="MODULE:FUNCTION",
                   help="with --instructions: count only inside this function or method")
    a = p.parse_args(argv)
    if a.instructions:
        return instructions(a.ops.split(","), a.origins.split(","), inside=a.inside)
    if a.inside:
        _wrap_inside(a.inside)
    if a.small_map:
        from zkpy.storage import lmdb_tree
        init = lmdb_tree.LmdbTree.__init__
        lmdb_tree.LmdbTree.__init__ = (lambda self, path, map_size=1 << 30, readonly=False:
                                       init(self, path, 1 << 30, readonly))
    from zkpy.storage import codec_impl, crc
    print("node codec %s, crc32c %s, n=%d, best of %d, load %s"
          % (codec_impl.IMPLEMENTATION, crc.IMPLEMENTATION, a.n, a.rounds,
             " ".join("%.2f" % x for x in os.getloadavg())))
    b = CoreBench()
    try:
        for op in a.ops.split(","):
            for origin in a.origins.split(","):
                runs = []
                for _ in range(a.rounds):
                    runs.append((b.run(op, a.n, origin == "ipc"), b.last_user))
                best = min(t for t, _ in runs) * 1e6 / a.n
                med = sorted(t for t, _ in runs)[len(runs) // 2] * 1e6 / a.n
                user = min(u for _, u in runs) * 1e6 / a.n
                print("%-8s %-6s %7.2f us/write CPU (median %.2f; best user-only %.2f)"
                      % (op, origin, best, med, user))
                sys.stdout.flush()
    finally:
        b.close()


if __name__ == "__main__":
    main()
