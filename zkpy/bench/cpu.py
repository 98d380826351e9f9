"""CPU time per operation, per process, during a `zkpy-bench run` (`zkpy-bench cpu`).

On a machine whose cores the load generator shares with the server, ops/s says how the two
split the cores as much as how fast the server is. CPU time per operation does not: this command
starts a server (zkpy or Apache ZooKeeper, the same way `zkpy-bench compare` does), runs one
workload against it with `zkpy-bench run`, and reads utime+stime of every process of the
server's process group and of the load generator's from /proc every 0.1 s through the run. The
run's report gives its measured window on the machine's monotonic clock (after the warm-up; for
delete, until its nodes ran out); the first and the last reading inside it are subtracted and
divided by the operations of that span (the run's rate times its length).

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


def groups_cpu(*pgids):
    """[{pid: (cpu seconds, ppid)}] of every process in each of the process groups `pgids`,
    from one pass over /proc."""
    out = {pgid: {} for pgid in pgids}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        st = _proc_cpu(int(name))
        if st is not None and st[2] in out:
            out[st[2]][int(name)] = (st[0], st[1])
    return [out[pgid] for pgid in pgids]


def group_cpu(pgid):
    """{pid: (cpu seconds, ppid)} of every process in process group `pgid`."""
    return groups_cpu(pgid)[0]


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


SAMPLE_S = 0.1   # how often /proc is read during a run


def window_samples(samples, window):
    """The first and the last of `samples` [(t_ns, ...)] inside `window` [start_ns, end_ns], or
    None if fewer than two fall in it."""
    if window is None:
        return None
    inside = [x for x in samples if window[0] <= x[0] <= window[1]]
    if len(inside) < 2:
        return None
    return inside[0], inside[-1]


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
    # /proc through the whole run; afterwards the run's report says when its measured window
    # was (on the same monotonic clock), and the samples inside it are the ones used.
    samples = []
    while load.poll() is None:
        samples.append((time.perf_counter_ns(),) + tuple(groups_cpu(server_pgid, load.pid)))
        time.sleep(SAMPLE_S)
    with open(report_path) as f:
        report = json.load(f)
    os.unlink(report_path)
    rate = report.get("ops_per_sec") or report.get("throughput") or 0.0
    result = {"server": server.kind, "workload": workload, "ops_per_sec": rate,
              "errors": report.get("errors"), "cpu_us_per_op": {}, "cores_busy": {}}
    pair = window_samples(samples, report.get("window_monotonic_ns"))
    if pair is None:
        result["window_s"] = 0.0
        result["invalid"] = ("the measured window holds fewer than two /proc samples (every "
                             "%g s)" % SAMPLE_S)
        return result
    (t0, s0, l0), (t1, s1, l1) = pair
    window = (t1 - t0) / 1e9
    result["window_s"] = window
    ended = ended_processes(s0, s1) + ended_processes(l0, l1)
    if ended:
        result["invalid"] = ("process(es) %s ended inside the measured window"
                             % ", ".join(map(str, ended)))
        return result
    ops = rate * window
    roles = ("core", "workers") if server.kind == "zkpy" else ("server", "server")
    d = {}
    for snap0, snap1, leader, names in ((s0, s1, server_pgid, roles),
                                         (l0, l1, load.pid, ("loadgen", "loadgen"))):
        a = _roles(snap0, leader, names)
        b = _roles(snap1, leader, names)
        for k in b:
            d[k] = d.get(k, 0.0) + b[k] - a.get(k, 0.0)
    result["cpu_us_per_op"] = {k: (v * 1e6 / ops if ops else None) for k, v in d.items()}
    result["cores_busy"] = {k: v / window for k, v in d.items()}
    return result


def main(argv=None):
    p = argparse.ArgumentParser(prog="zkpy-bench cpu", description=__doc__.split("\n\n")[0])
    p.add_argument("--server", default="zkpy", help="zkpy, apache or both (comma-separated)")
    p.add_argument("--workload", default="setdata", help="comma-separated workloads")
    p.add_argument("--processes", type=int, default=2)
    p.add_argument("--sessions", type=int, default=32)
    p.add_argument("--depth", type=int, default=16)
    p.add_argument("--duration", type=float, default=8.0)
    p.add_argument("--warmup", type=float, default=2.0)
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
