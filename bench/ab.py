#!/usr/bin/env python3
"""A/B of two zkpy checkouts on this machine: the same workloads against a server of each, in
turn (A B A B ...), same config and disk. Prints a table of median ops/s and p50 / p99 ms.

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
    (client ports, a function that stops it)."""
    kw = {"defaults": DEFAULTS, "zkpy_parent": os.path.abspath(code)}
    if ensemble:
        ens = Ensemble("zkpy", root, servers=3, **kw).start()
        return [m.port for m in ens.members], ens.stop
    server = ZkpyServer(root, **kw).start(60)
    return [server.port], server.stop


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
    ports, stops = {}, []
    try:
        for label, code in (("A", args.a), ("B", args.b)):
            ports[label], stop = start(code, os.path.join(base, label), args.ensemble)
            stops.append(stop)
        results = {}
        for name in args.workloads.split(","):
            workload, sessions, depth = PLAN[name]
            for rnd in range(args.rounds):
                order = ("A", "B") if rnd % 2 == 0 else ("B", "A")
                for label in order:
                    rep = run(ports[label], workload, sessions, depth, args.duration,
                              args.warmup, os.path.join(base, "r.json"))
                    results.setdefault((name, label), []).append(rep)
                    print("%s %s round %d: %.0f ops/s p50 %.3f p99 %.3f ms"
                          % (name, label, rnd + 1, rep["ops_per_sec"], rep["p50_ms"],
                             rep["p99_ms"]), flush=True)
        print("\nA = %s, B = %s%s; %d rounds of %g s, alternating; medians\n"
              % (args.a, args.b, ", 3-node ensembles" if args.ensemble else "", args.rounds,
                 args.duration))
        print("| workload (sessions x depth) | A ops/s | B ops/s | B/A | A p50 / p99 ms "
              "| B p50 / p99 ms |")
        print("|---|---:|---:|---:|---|---|")
        for name in args.workloads.split(","):
            _, sessions, depth = PLAN[name]
            row = []
            for label in ("A", "B"):
                reps = results[(name, label)]
                row.append((statistics.median(r["ops_per_sec"] for r in reps),
                            statistics.median(r["p50_ms"] for r in reps),
                            statistics.median(r["p99_ms"] for r in reps)))
            (a, ap50, ap99), (b, bp50, bp99) = row
            print("| %s (%d x %d) | %.0f | %.0f | %.2f | %.3f / %.3f | %.3f / %.3f |"
                  % (name, sessions, depth, a, b, b / a if a else 0, ap50, ap99, bp50, bp99))
    finally:
        for stop in stops:
            stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
