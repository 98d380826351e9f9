#!/usr/bin/env python3
"""A/B of two zkpy checkouts on this machine: the same workloads against a server of each, in
turn (A B A B ...), same config and disk. Prints a table of median ops/s and p50 / p99 ms, and
the CPU time the servers' processes spent per op (cores and workers apart, from /proc): on this
shared 2-core machine, where throughput swings 15% from round to round, the steadier figure.

    python3 bench/ab.py OLD_CHECKOUT NEW_CHECKOUT [--rounds 3] [--duration 5]
    python3 bench/ab.py /work/wt-old . --workloads create,setdata,latency
    python3 bench/ab.py /work/wt-old . --ensemble      # two 3-node pseudo-clusters instead,
                                                       # sessions spread over the members

Each checkout must have its extensions built (pip install -e, or setup.py build_ext --inplace).
The load tool is this checkout's `zkpy-bench run` (zkpy.bench.loadgen); the servers run with
`workers` = the number of CPUs, forceSync=yes, dataDirs side by side in one temporary directory.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, HERE)
# This checkout's harness runs either checkout's servers.
from zkpy.testing.ensemble import Ensemble  # noqa: E402
from zkpy.testing.harness import ZkpyServer  # noqa: E402

# name: (workload, sessions, depth)
PLAN = {
    "create": ("create", 32, 16),
    "setdata": ("setdata", 32, 16),
    "delete": ("delete", 32, 16),
    "mixed": ("mixed", 32, 16),
    "mixed-random": ("mixed-random", 32, 16),
    "mixed-50": ("mixed-50", 32, 16),
    "create-1x1": ("create", 1, 1),
    "setdata-1x1": ("setdata", 1, 1),
    "latency": ("latency", 1, 1),
}

# Beside the harness's zoo.cfg (tickTime 2000, 127.0.0.1, forceSync's default): no connection
# limit. Ensembles: initLimit 10, syncLimit 5.
DEFAULTS = {"maxClientCnxns": "0"}


def start(code, root, ensemble):
    """A server of checkout `code`, or a 3-node pseudo-cluster of it, started and serving:
    (client ports, the servers' process group ids, the leader's pid or None, a function that
    stops it)."""
    kw = {"defaults": DEFAULTS, "zkpy_parent": os.path.abspath(code)}
    if ensemble:
        ens = Ensemble("zkpy", root, servers=3, **kw).start()
        return ([m.port for m in ens.members], [m.proc.pid for m in ens.members],
                ens.leader(10).proc.pid, ens.stop)
    server = ZkpyServer(root, **kw).start(60)
    return [server.port], [server.proc.pid], None, server.stop


_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pgids, leader=None):
    """(cores, workers, the leader's core): CPU seconds (user + system) so far of the processes
    of these process groups: each group's leader is a server's core, the others its workers."""
    cores = workers = lead = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pgrp = int(fields[2])
        if pgrp in pgids:
            t = (int(fields[11]) + int(fields[12])) / _TICK
            if int(entry) == pgrp:
                cores += t
                if pgrp == leader:
                    lead = t
            else:
                workers += t
    return cores, workers, lead


def run(ports, workload, sessions, depth, duration, warmup, out):
    hosts = ",".join("127.0.0.1:%d" % p for p in ports)
    cmd = [sys.executable, "-m", "zkpy.bench.loadgen", "run", "--hosts", hosts,
           "--workload", workload, "--processes", "2", "--sessions", str(sessions),
           "--depth", str(depth), "--duration", str(duration), "--warmup", str(warmup),
           "--json", out, "-q"]
    subprocess.run(cmd, check=True, env=dict(os.environ, PYTHONPATH=HERE),
                   stdout=subprocess.DEVNULL)
    with open(out) as f:
        return json.load(f)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--workloads", default=",".join(PLAN))
    ap.add_argument("--ensemble", action="store_true",
                    help="3-node pseudo-clusters, sessions spread over the members")
    args = ap.parse_args()
    base = tempfile.mkdtemp(prefix="zkpy-ab-")
    ports, groups, leaders, stops = {}, {}, {}, []
    try:
        for label, code in (("A", args.a), ("B", args.b)):
            ports[label], groups[label], leaders[label], stop = start(
                code, os.path.join(base, label), args.ensemble)
            stops.append(stop)
        results = {}
        for name in args.workloads.split(","):
            workload, sessions, depth = PLAN[name]
            for rnd in range(args.rounds):
                order = ("A", "B") if rnd % 2 == 0 else ("B", "A")
                for label in order:
                    c0, w0, l0 = cpu_seconds(groups[label], leaders[label])
                    rep = run(ports[label], workload, sessions, depth, args.duration,
                              args.warmup, os.path.join(base, "r.json"))
                    c1, w1, l1 = cpu_seconds(groups[label], leaders[label])
                    # the warmup's ops are not in the report: count its share of the CPU out
                    ops = rep["ops_per_sec"] * (args.duration + args.warmup) or 1
                    rep["core_us"] = (c1 - c0) / ops * 1e6
                    rep["worker_us"] = (w1 - w0) / ops * 1e6
                    rep["leader_us"] = (l1 - l0) / ops * 1e6
                    results.setdefault((name, label), []).append(rep)
                    print("%s %s round %d: %.0f ops/s p50 %.3f p99 %.3f ms; CPU per op: "
                          "cores %.0f us%s, workers %.0f us"
                          % (name, label, rnd + 1, rep["ops_per_sec"], rep["p50_ms"],
                             rep["p99_ms"], rep["core_us"],
                             " (the leader's %.0f)" % rep["leader_us"] if args.ensemble else "",
                             rep["worker_us"]), flush=True)
        print("\nA = %s, B = %s%s; %d rounds of %g s, alternating; medians\n"
              % (args.a, args.b, ", 3-node ensembles" if args.ensemble else "", args.rounds,
                 args.duration))
        print("| workload (sessions x depth) | A ops/s | B ops/s | B/A | A p50 / p99 ms "
              "| B p50 / p99 ms | A CPU us/op cores + workers | B CPU us/op | B/A CPU |")
        print("|---|---:|---:|---:|---|---|---|---|---:|")
        for name in args.workloads.split(","):
            _, sessions, depth = PLAN[name]
            row = []
            for label in ("A", "B"):
                reps = results[(name, label)]
                row.append([statistics.median(r[k] for r in reps)
                            for k in ("ops_per_sec", "p50_ms", "p99_ms", "core_us",
                                      "worker_us", "leader_us")])
            (a, ap50, ap99, ac, aw, al), (b, bp50, bp99, bc, bw, bl) = row
            print("| %s (%d x %d) | %.0f | %.0f | %.2f | %.3f / %.3f | %.3f / %.3f "
                  "| %.0f + %.0f | %.0f + %.0f | %.2f |"
                  % (name, sessions, depth, a, b, b / a if a else 0, ap50, ap99, bp50, bp99,
                     ac, aw, bc, bw, (bc + bw) / (ac + aw) if ac + aw else 0))
            if args.ensemble:
                print("|   of the cores: the leader's | | | | | | %.0f | %.0f | %.2f |"
                      % (al, bl, bl / al if al else 0))
    finally:
        for stop in stops:
            stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
