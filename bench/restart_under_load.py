#!/usr/bin/env python3
# PYTHONPATH=. python3 bench/restart_under_load.py [ZNODES]   (root: drops the page cache)
"""Restart after a power cut under write load at 1M znodes: build the tree, run a setData load,
kill -9 the server mid-load (zkpy: LMDB goes back to its last checkpoint, the log since is
replayed -- what a power cut leaves), drop the page cache, start, time the first getData."""
import os, subprocess, sys, tempfile, threading, time, statistics
from zkpy.bench import servers, scaling
N = int(sys.argv[1]) if len(sys.argv) > 1 else 1000000
base = tempfile.mkdtemp(prefix="zkpy-restart-under-load-")
out = {}
for kind in ("zkpy", "apache"):
    c = servers.make_cluster(kind, "standalone", base, label=kind)
    c.start()
    srv = c.members[0]
    addr = "127.0.0.1:%d" % srv.port
    t = scaling.build_tree(c.addrs[0], scaling.ROOT, 0, N, log=print, label=kind)
    print(kind, "built", N, "in %.1fs" % t, flush=True)
    ts = []
    for i in range(3):
        load = subprocess.Popen([sys.executable, "-m", "zkpy.bench.loadgen", "run", "--hosts", addr,
                                 "--workload", "setdata", "--processes", "2", "--sessions", "32",
                                 "--depth", "16", "--duration", "30", "--warmup", "0",
                                 "--root", "/load", "--znodes", "10000", "--keep", "-q"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(5.0 + i)
        dt = scaling.timed_restart(srv, scaling.ROOT + "/n%d" % (N - 1), how="kill9", cold=True)
        load.kill(); load.wait()
        ts.append(round(dt, 2))
        print(kind, "restart %d after a kill -9 under load, cold cache: %.2f s" % (i + 1, dt), flush=True)
        time.sleep(3)
    out[kind] = ts
    log = open(srv.log_path, errors="replace").read()
    print("\n".join(l for l in log.splitlines() if "replayed" in l or "restored" in l)[-1500:])
    c.stop()
print(out, {k: statistics.median(v) for k, v in out.items()})
