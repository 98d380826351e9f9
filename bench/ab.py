#!/usr/bin/env python3
"""A/B of two zkpy checkouts on this machine: the same workloads against a server of each, in
turn (A B A B ...), same config and disk. Prints a table of median ops/s and p50 / p99 ms.

    python3 bench/ab.py OLD_CHECKOUT NEW_CHECKOUT [--rounds 3] [--duration 5]
    python3 bench/ab.py /work/wt-old . --workloads create,setdata,latency

Each checkout must have its extensions built (pip install -e, or setup.py build_ext --inplace).
The load tool is this checkout's `zkpy-bench run` (zkpy.bench.loadgen); the servers run with
`workers` = the number of CPUs, forceSync=yes, dataDirs side by side in one temporary directory.
"""

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# name: (workload, sessions, depth)
PLAN = {
    "create": ("create", 32, 16),
    "setdata": ("setdata", 32, 16),
    "delete": ("delete", 32, 16),
    "mixed": ("mixed", 32, 16),
    "create-1x1": ("create", 1, 1),
    "setdata-1x1": ("setdata", 1, 1),
    "latency": ("latency", 1, 1),
}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(code, root, port):
    os.makedirs(os.path.join(root, "data"))
    cfg = os.path.join(root, "zoo.cfg")
    with open(cfg, "w") as f:
        f.write("tickTime=2000\ndataDir=%s\nclientPort=%d\nclientPortAddress=127.0.0.1\n"
                "maxClientCnxns=0\n4lw.commands.whitelist=*\nadmin.enableServer=false\n"
                % (os.path.join(root, "data"), port))
    env = dict(os.environ, PYTHONPATH=os.path.abspath(code), PYTHONUNBUFFERED="1")
    log = open(os.path.join(root, "server.log"), "ab")
    proc = subprocess.Popen([sys.executable, "-m", "zkpy.cli.server", "start-foreground", cfg],
                            cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"srvr")
                if b"Mode" in s.recv(4096):
                    return proc
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("server of %s did not start (%s)" % (code, root))


def run(port, workload, sessions, depth, duration, warmup, out):
    cmd = [sys.executable, "-m", "zkpy.bench.loadgen", "run", "--hosts", "127.0.0.1:%d" % port,
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
    args = ap.parse_args()
    base = tempfile.mkdtemp(prefix="zkpy-ab-")
    servers = {}
    try:
        for label, code in (("A", args.a), ("B", args.b)):
            port = free_port()
            servers[label] = (port, start(code, os.path.join(base, label), port))
        results = {}
        for name in args.workloads.split(","):
            workload, sessions, depth = PLAN[name]
            for rnd in range(args.rounds):
                order = ("A", "B") if rnd % 2 == 0 else ("B", "A")
                for label in order:
                    rep = run(servers[label][0], workload, sessions, depth, args.duration,
                              args.warmup, os.path.join(base, "r.json"))
                    results.setdefault((name, label), []).append(rep)
                    print("%s %s round %d: %.0f ops/s p50 %.3f p99 %.3f ms"
                          % (name, label, rnd + 1, rep["ops_per_sec"], rep["p50_ms"],
                             rep["p99_ms"]), flush=True)
        print("\nA = %s, B = %s; %d rounds of %g s, alternating; medians\n"
              % (args.a, args.b, args.rounds, args.duration))
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
        for port, proc in servers.values():
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
