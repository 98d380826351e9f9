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


def _spawn(code, root, cfg_text):
    os.makedirs(os.path.join(root, "data"), exist_ok=True)
    cfg = os.path.join(root, "zoo.cfg")
    with open(cfg, "w") as f:
        f.write(cfg_text)
    env = dict(os.environ, PYTHONPATH=os.path.abspath(code), PYTHONUNBUFFERED="1")
    log = open(os.path.join(root, "server.log"), "ab")
    return subprocess.Popen([sys.executable, "-m", "zkpy.cli.server", "start-foreground", cfg],
                            cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)


def _wait_serving(port, what, modes=(b"standalone", b"leader", b"follower")):
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"srvr")
                reply = s.recv(4096)
                if any(b"Mode: " + m in reply for m in modes):
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError("%s did not start serving" % what)


_COMMON = ("tickTime=2000\ndataDir=%s\nclientPort=%d\nclientPortAddress=127.0.0.1\n"
           "maxClientCnxns=0\n4lw.commands.whitelist=*\nadmin.enableServer=false\n")


def start(code, root, port):
    """One standalone server of checkout `code`: [(client port, process)]."""
    proc = _spawn(code, root, _COMMON % (os.path.join(root, "data"), port))
    _wait_serving(port, "the server of %s (%s)" % (code, root))
    return [(port, proc)]


def start_ensemble(code, root, n=3):
    """A pseudo-cluster of n members of checkout `code` (initLimit 10, syncLimit 5)."""
    ports = [(free_port(), free_port(), free_port()) for _ in range(n)]
    lines = "".join("server.%d=127.0.0.1:%d:%d\n" % (i + 1, q, e)
                    for i, (_, q, e) in enumerate(ports))
    members = []
    for i, (client, _, _) in enumerate(ports):
        mroot = os.path.join(root, "zk%d" % (i + 1))
        data = os.path.join(mroot, "data")
        os.makedirs(data)
        with open(os.path.join(data, "myid"), "w") as f:
            f.write("%d\n" % (i + 1))
        members.append((client, _spawn(code, mroot, _COMMON % (data, client)
                                       + "initLimit=10\nsyncLimit=5\n" + lines)))
    for client, _ in members:
        _wait_serving(client, "a member of %s (%s)" % (code, root), (b"leader", b"follower"))
    return members


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
    servers = {}
    try:
        for label, code in (("A", args.a), ("B", args.b)):
            root = os.path.join(base, label)
            servers[label] = start_ensemble(code, root) if args.ensemble \
                else start(code, root, free_port())
        results = {}
        for name in args.workloads.split(","):
            workload, sessions, depth = PLAN[name]
            for rnd in range(args.rounds):
                order = ("A", "B") if rnd % 2 == 0 else ("B", "A")
                for label in order:
                    rep = run([p for p, _ in servers[label]], workload, sessions, depth,
                              args.duration, args.warmup, os.path.join(base, "r.json"))
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
        procs = [proc for members in servers.values() for _, proc in members]
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
