"""CPU time per operation, per process, during a `zkpy-bench run` (`zkpy-bench cpu`).

On a machine whose cores the load generator shares with the server, ops/s says how the two
split the cores as much as how fast the server is. CPU time per operation does not: this command
starts a server (zkpy or Apache ZooKeeper, the same way `zkpy-bench compare` does), runs one
workload against it with `zkpy-bench run`, and reads utime+stime of every process of the
server's process group and of the load generator's from /proc at the start and the end of the
measured window (after the warm-up), then divides by the operations counted in that window.

    zkpy-bench cpu --server zkpy --workload setdata --duration 8
    zkpy-bench cpu --server zkpy,apache --workload setdata,create,delete

The zkpy rows split the core process from the workers (by process name, as `ps` shows it:
the core sets none, workers are children of the core).
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from zkpy.bench import servers

_TICK = os.sysconf("SC_CLK_TCK")


def _proc_cpu(pid):
    """(utime+stime seconds, ppid, pgid) of one process, or None if it is gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            text = f.read()
    except OSError:
        return None
    rest = text[text.rindex(")") + 2:].split()
    # fields after the comm: state ppid pgrp session tty tpgid flags minflt cminflt majflt
    # cmajflt utime stime ...
    return (int(rest[11]) + int(rest[12])) / _TICK, int(rest[1]), int(rest[2])


def group_cpu(pgid):
    """{pid: (cpu seconds, ppid)} of every process in process group `pgid`."""
    out = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        st = _proc_cpu(int(name))
        if st is not None and st[2] == pgid:
            out[int(name)] = (st[0], st[1])
    return out


def _roles(snapshot, leader_pid, names):
    """Sum a group snapshot by role: the group leader's process vs its descendants."""
    total = {}
    for pid, (cpu, ppid) in snapshot.items():
        role = names[0] if pid == leader_pid else names[1]
        total[role] = total.get(role, 0.0) + cpu
    return total


def ended_processes(before, after):
    """Pids of the first group snapshot missing from the second: a process that ended inside
    the window took its CPU time with it, so the group's sum would even go down. (One that
    started inside it is fine: all its time is the window's.)"""
    return sorted(set(before) - set(after))


def measure(server, workload, args):
    """Run one workload against a started server; returns the report dict."""
    host = "127.0.0.1:%d" % server.port
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        report_path = f.name
    cmd = [sys.executable, "-m", "zkpy.bench.loadgen", "run", "--hosts", host,
           "--workload", workload,
           "--processes", str(args.processes), "--sessions", str(args.sessions),
           "--depth", str(args.depth), "--duration", str(args.duration),
           "--warmup", str(args.warmup), "--znodes", str(args.znodes),
           "--value-size", str(args.value_size), "--json", report_path, "-q"]
    load = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL)
    server_pgid = server.proc.pid
    # The measured window: after the run's setup (--setup seconds allowed) and warm-up. A
    # delete run first creates for --duration (unmeasured), then deletes what it made -- which
    # may take less than --duration: its window is the first part of the delete phase.
    lead = args.warmup + args.setup
    span = max(args.duration - args.setup - 0.5, 0.5)
    if workload == "delete":
        lead += args.duration
        span = max(args.duration / 3.0, 0.5)
    time.sleep(lead)
    t0 = time.monotonic()
    s0, l0 = group_cpu(server_pgid), group_cpu(load.pid)
    time.sleep(span)
    t1 = time.monotonic()
    s1, l1 = group_cpu(server_pgid), group_cpu(load.pid)
    load.wait()
    with open(report_path) as f:
        report = json.load(f)
    os.unlink(report_path)
    rate = report.get("ops_per_sec") or report.get("throughput") or 0.0
    window = t1 - t0
    ops = rate * window
    roles = ("core", "workers") if server.kind == "zkpy" else ("server", "server")
    ended = ended_processes(s0, s1) + ended_processes(l0, l1)
    if ended:
        # e.g. a delete run on a fast machine: its deletes ran out before the window ended and
        # the load processes exited (the window is placed by time, from outside the run)
        return {"server": server.kind, "workload": workload, "ops_per_sec": rate,
                "window_s": window, "errors": report.get("errors"), "cpu_us_per_op": {},
                "cores_busy": {},
                "invalid": "process(es) %s ended inside the measured window (a delete run "
                           "whose nodes ran out before it closed)" % ", ".join(map(str, ended))}
    d = {}
    for snap0, snap1, leader, names in ((s0, s1, server_pgid, roles),
                                         (l0, l1, load.pid, ("loadgen", "loadgen"))):
        a = _roles(snap0, leader, names)
        b = _roles(snap1, leader, names)
        for k in b:
            d[k] = d.get(k, 0.0) + b[k] - a.get(k, 0.0)
    return {"server": server.kind, "workload": workload, "ops_per_sec": rate,
            "window_s": window, "errors": report.get("errors"),
            "cpu_us_per_op": {k: (v * 1e6 / ops if ops else None) for k, v in d.items()},
            "cores_busy": {k: v / window for k, v in d.items()}}


def main(argv=None):
    p = argparse.ArgumentParser(prog="zkpy-bench cpu", description=__doc__.split("\n\n")[0])
    p.add_argument("--server", default="zkpy", help="zkpy, apache or both (comma-separated)")
    p.add_argument("--workload", default="setdata", help="comma-separated workloads")
    p.add_argument("--processes", type=int, default=2)
    p.add_argument("--sessions", type=int, default=32)
    p.add_argument("--depth", type=int, default=16)
    p.add_argument("--duration", type=float, default=8.0)
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--setup", type=float, default=1.0,
                   help="seconds allowed for the run's setup before the warm-up (default 1)")
    p.add_argument("--znodes", type=int, default=1000)
    p.add_argument("--value-size", type=int, default=100)
    p.add_argument("--extra-cfg", default="", help="zoo.cfg key=value,... for the server")
    args = p.parse_args(argv)
    extra = dict(kv.split("=", 1) for kv in args.extra_cfg.split(",") if kv)
    base = Path(tempfile.mkdtemp(prefix="zkpy-cpu-"))
    rows = []
    try:
        for kind in args.server.split(","):
            if kind == "apache":
                servers.ensure_apache(install=True)
            cluster = servers.make_cluster(kind, "standalone", base, extra_cfg=extra)
            cluster.start()
            try:
                server = cluster.members[0]
                for w in args.workload.split(","):
                    r = measure(server, w, args)
                    rows.append(r)
                    if r.get("invalid"):
                        print("%-7s %-12s %8.0f ops/s  CPU not measured: %s" % (
                            kind, w, r["ops_per_sec"], r["invalid"]), flush=True)
                        continue
                    cpu = r["cpu_us_per_op"]
                    print("%-7s %-12s %8.0f ops/s  CPU us/op: %s  (cores: %s)%s" % (
                        kind, w, r["ops_per_sec"],
                        " ".join("%s %.1f" % kv for kv in sorted(cpu.items()) if kv[1]),
                        " ".join("%s %.2f" % kv for kv in sorted(r["cores_busy"].items())),
                        "  ERRORS %s" % r["errors"] if r["errors"] else ""), flush=True)
            finally:
                cluster.stop()
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
