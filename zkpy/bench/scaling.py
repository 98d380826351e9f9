"""Scaling runs of zkpy vs Apache ZooKeeper 3.8: sessions, tree size, memory, restart time.

Owns ``zkpy-bench scaling`` (also ``bench/scaling``; the subcommand is hooked into
zkpy.bench.loadgen's parser, `add_scaling_parser` / `scaling_main` live here). With both servers
started by zkpy.bench.servers (same zoo.cfg keys: forceSync=yes, maxClientCnxns=0, dataDir under
one directory in /tmp), it measures, each point zkpy then ZooKeeper:

1. ops/s of getdata and create vs the number of sessions (default 1, 10, 100, 1000), a fixed
   number of requests in flight per session (``--session-depth``), sessions spread over
   ``--processes`` load processes (zkpy.bench.loadgen.run_bench, 1000 znodes of 100 B);
2. ops/s of getdata and create vs tree size (default 10k, 100k, 1M znodes of 100 B, all children
   of /bench). The tree grows in place between points, built by pipelined creates from several
   processes (the build rate is reported); the runs read /bench/n<i> over the whole tree and
   create (then delete) nodes under /bench/c, so the size holds;
3. at the largest tree: the memory of each server's processes from /proc/<pid>/smaps_rollup
   (anonymous memory summed over every process of the server, i.e. zkpy's core and workers;
   LMDB's file-backed pages of data.mdb from /proc/<pid>/smaps, separately; the JVM's RSS), and
   restart time: kill -9 of the whole process group, start, time until the first getData
   succeeds (``--restarts`` times, median).

It prints a progress line per step with an ETA, and writes into ``--out`` scaling.md (tables,
targets, machine, command) and scaling.json (every report). The issue's targets it checks:
restart zkpy <= 0.2x ZooKeeper's time; zkpy's private memory <= 0.5x ZooKeeper's RSS.

The pure parts (`parse_smaps_rollup`, `parse_smaps`, `mapped_file_kb`, `memory_summary`,
`sessions_table`, `tree_table`, `memory_table`, `restart_table`, `targets`, `plan_steps`) do
no I/O. Nothing in the server imports this module; it imports zkpy.bench.loadgen (including its
private `_worker`/`_split`, to run against a prebuilt tree without the setup that wipes it),
zkpy.bench.servers and zkpy.bench.compare.
"""

import json
import multiprocessing
import os
import resource
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from array import array
from pathlib import Path

__all__ = [
    "parse_smaps_rollup", "parse_smaps", "mapped_file_kb", "memory_summary", "process_group",
    "measure_memory", "build_tree", "run_prepared", "probe_getdata", "timed_restart",
    "sessions_table", "tree_table", "memory_table", "restart_table", "targets",
    "targets_table", "plan_steps", "add_scaling_parser", "scaling_main",
]

DEFAULTS = dict(sessions="1,10,100,1000", sizes="10000,100000,1000000", session_depth=4,
                processes=2, duration=3.0, warmup=1.0, tree_sessions=32, tree_depth=16,
                restarts=3, build_processes=2, build_window=1000, heap="1g")
QUICK = dict(sessions="1,10,100", sizes="2000,20000", duration=1.0, warmup=0.5, restarts=2)
ROOT = "/bench"
VALUE_SIZE = 100
RESTART_TARGET = 0.2      # zkpy restart time / ZooKeeper's
MEMORY_TARGET = 0.5       # zkpy private memory / ZooKeeper RSS
BUILD_RATE_GUESS = 8000.0  # creates/s, for the ETA before the first build is measured


# --- /proc parsing (pure) ---------------------------------------------------------------------

def parse_smaps_rollup(text):
    """/proc/<pid>/smaps_rollup text -> {field: kB} (the "Rss:  123 kB" lines)."""
    out = {}
    for line in text.splitlines():
        key, sep, rest = line.partition(":")
        parts = rest.split()
        if sep and len(parts) == 2 and parts[1] == "kB" and parts[0].isdigit():
            out[key.strip()] = int(parts[0])
    return out


def _is_mapping_header(line):
    # "7f..-7f.. r--s 00000000 fd:01 1234   /path" : the first field is an address range.
    head = line.split(None, 1)[0] if line.strip() else ""
    a, sep, b = head.partition("-")
    if not sep:
        return False
    try:
        int(a, 16), int(b, 16)
    except ValueError:
        return False
    return True


def parse_smaps(text):
    """/proc/<pid>/smaps text -> [(pathname or "", {field: kB})], one entry per mapping."""
    maps = []
    for line in text.splitlines():
        if _is_mapping_header(line):
            parts = line.split(None, 5)
            maps.append((parts[5].strip() if len(parts) > 5 else "", {}))
        elif maps:
            key, sep, rest = line.partition(":")
            parts = rest.split()
            if sep and len(parts) == 2 and parts[1] == "kB" and parts[0].isdigit():
                maps[-1][1][key.strip()] = int(parts[0])
    return maps


def mapped_file_kb(maps, suffix):
    """{"Rss": kB, "Pss": kB} summed over the mappings whose path ends with `suffix`."""
    out = {"Rss": 0, "Pss": 0}
    for path, fields in maps:
        if path.endswith(suffix):
            for k in out:
                out[k] += fields.get(k, 0)
    return out


def memory_summary(procs):
    """Sum per-process figures. `procs`: [{"pid", "cmd", "rollup": {...}, "lmdb": {...}}].

    Returns kB figures: rss (sum of Rss), anon (sum of Anonymous: private memory, what the
    issue's target counts; pages a forked child still shares with its parent would be counted
    twice, hence also pss_anon), pss_anon (sum of Pss_Anon), private (sum of Private_Clean +
    Private_Dirty, file-backed private pages included), file_rss (sum of Rss - Anonymous),
    lmdb_rss (max over processes of data.mdb's resident pages: the same pages, mapped by
    each), lmdb_pss (sum of data.mdb's Pss: its resident pages counted once), processes.
    """
    s = {"processes": len(procs), "rss": 0, "anon": 0, "pss_anon": 0, "private": 0,
         "file_rss": 0, "lmdb_rss": 0, "lmdb_pss": 0}
    for p in procs:
        r = p["rollup"]
        s["rss"] += r.get("Rss", 0)
        s["anon"] += r.get("Anonymous", 0)
        s["pss_anon"] += r.get("Pss_Anon", 0)
        s["private"] += r.get("Private_Clean", 0) + r.get("Private_Dirty", 0)
        s["file_rss"] += r.get("Rss", 0) - r.get("Anonymous", 0)
        lm = p.get("lmdb") or {}
        s["lmdb_rss"] = max(s["lmdb_rss"], lm.get("Rss", 0))
        s["lmdb_pss"] += lm.get("Pss", 0)
    return s


# --- /proc reading ----------------------------------------------------------------------------

def process_group(pgid):
    """Pids of the live processes in process group `pgid` (the server and what it forked)."""
    pids = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name) as f:
                stat = f.read()
        except OSError:
            continue
        # Fields after the ")" closing the command name: state ppid pgrp ...
        fields = stat.rpartition(")")[2].split()
        if len(fields) > 2 and fields[2] == str(pgid) and fields[0] != "Z":
            pids.append(int(name))
    return sorted(pids)


def _read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def measure_memory(pgid):
    """memory_summary of process group `pgid`, plus the per-process figures."""
    procs = []
    for pid in process_group(pgid):
        rollup = parse_smaps_rollup(_read("/proc/%d/smaps_rollup" % pid))
        if not rollup:
            continue
        cmd = _read("/proc/%d/cmdline" % pid).replace("\0", " ").strip()
        lmdb = mapped_file_kb(parse_smaps(_read("/proc/%d/smaps" % pid)), "data.mdb")
        procs.append({"pid": pid, "cmd": cmd[:160], "rollup": rollup, "lmdb": lmdb})
    summary = memory_summary(procs)
    summary["per_process"] = [{"pid": p["pid"], "cmd": p["cmd"],
                               "rss": p["rollup"].get("Rss", 0),
                               "anon": p["rollup"].get("Anonymous", 0),
                               "lmdb_rss": p["lmdb"].get("Rss", 0)} for p in procs]
    return summary


# --- building a tree, running against it ----------------------------------------------------

def _mk(path, value):
    from zkpy.bench import loadgen
    from zkpy.proto import consts as c, records as r
    return c.OP_CREATE, loadgen._enc(r.CreateRequest(path, value, loadgen.OPEN_ACL_UNSAFE,
                                                     c.CREATE_PERSISTENT))


def _build_part(addr, root, indices, value, window, counter):
    from zkpy.bench import loadgen
    client = loadgen.SyncClient(addr)
    try:
        chunk = 5000
        for i in range(0, len(indices), chunk):
            reqs = [_mk("%s/n%d" % (root, j), value) for j in indices[i:i + chunk]]
            for err, _ in client.call_many(reqs, window):
                if err:
                    raise loadgen.BenchError("build: create failed: %s"
                                             % loadgen.error_name(err))
            with counter.get_lock():
                counter.value += len(reqs)
    finally:
        client.close()


def _build_child(addr, root, indices, value, window, counter, conn):
    try:
        _build_part(addr, root, indices, value, window, counter)
        conn.send(None)
    except Exception as e:        # reported by the parent, which fails the run
        conn.send("%s: %s" % (type(e).__name__, e))


def build_tree(addr, root, start, stop, value_size=VALUE_SIZE, processes=2, window=1000,
               log=None, label=""):
    """Create root/n<start> .. root/n<stop-1> (and root, root/c if missing) with pipelined
    creates from `processes` sessions in forked processes. Returns seconds taken."""
    from zkpy.bench import loadgen
    from zkpy import errors as e
    log = log or (lambda m: None)
    t0 = time.monotonic()
    client = loadgen.SyncClient(addr)
    try:
        for path in (root, root + "/c"):
            err, _ = client.call(*_mk(path, b""))
            if err and err != e.NODEEXISTS:
                raise loadgen.BenchError("build: create %s: %s" % (path, loadgen.error_name(err)))
    finally:
        client.close()
    n = stop - start
    if n <= 0:
        return time.monotonic() - t0
    ctx = multiprocessing.get_context("fork")
    counter = ctx.Value("q", 0)
    value = b"x" * value_size
    procs = []
    for k in range(processes):
        parent, child = ctx.Pipe()
        p = ctx.Process(target=_build_child, daemon=True,
                        args=(addr, root, range(start + k, stop, processes), value, window,
                              counter, child))
        p.start()
        procs.append((p, parent))
    last_log = time.monotonic()
    failures = []
    try:
        pending = list(procs)
        while pending:
            for item in list(pending):
                p, conn = item
                if conn.poll(0.5 / max(1, len(pending))):
                    msg = conn.recv()
                    if msg:
                        failures.append(msg)
                    pending.remove(item)
                elif not p.is_alive():
                    failures.append("a build process died")
                    pending.remove(item)
            now = time.monotonic()
            if now - last_log >= 5.0:
                done = counter.value
                rate = done / max(1e-9, now - t0)
                log("  build %s: %d/%d znodes, %.0f creates/s, ETA %s"
                    % (label, done, n, rate, _fmt((n - done) / rate if rate else 0)))
                last_log = now
    finally:
        for p, _ in procs:
            p.join(5)
            if p.is_alive():
                p.kill()
                p.join()
    if failures:
        raise loadgen.BenchError("; ".join(failures))
    return time.monotonic() - t0


def run_prepared(addrs, workload, processes=2, sessions=32, depth=16, duration=3.0,
                 warmup=1.0, znodes=1000, root=ROOT, value_size=VALUE_SIZE, log=None):
    """zkpy.bench.loadgen.run_bench against a tree that is already there: no setup (which
    would wipe `root`), no final wipe; create runs still delete what they created."""
    from zkpy.bench import loadgen
    log = log or (lambda m: None)
    if workload == "latency":
        depth = 1
    cfg = dict(workload=workload, root=root, znodes=znodes, value_size=value_size,
               addrs=list(addrs), depth=depth, duration=duration, warmup=warmup, keep=False,
               tls=None)   # (loadgen._worker's config: plain sockets here)
    t_wall = time.monotonic()
    ctx = multiprocessing.get_context("fork")
    procs, conns = [], []
    for sids in loadgen._split(sessions, processes):
        parent, child = ctx.Pipe()
        p = ctx.Process(target=loadgen._worker, args=(child, cfg, sids), daemon=True)
        p.start()
        child.close()
        procs.append(p)
        conns.append(parent)
    parts = []
    try:
        failures = []
        for c in conns:
            msg = c.recv()
            if msg[0] != "ready":
                failures.append(msg[1])
        if failures:
            raise loadgen.BenchError("; ".join(failures))
        start = time.perf_counter_ns() + 50_000_000
        for c in conns:
            c.send(("go", start))
        for c in conns:
            try:
                msg = c.recv()
            except EOFError:
                raise loadgen.BenchError("a load process died") from None
            parts.append(msg[1])
    finally:
        for c in conns:
            try:
                c.send(("stop",))
            except OSError:
                pass
        for p in procs:
            p.join(5)
            if p.is_alive():
                p.kill()
                p.join()
    for p in parts:
        if isinstance(p["lat_ns"], bytes):
            p["lat_ns"] = array("q", p["lat_ns"])
    report = loadgen.summarize(parts, wall_s=time.monotonic() - t_wall)
    report.update(workload=workload, processes=len(procs), sessions=sessions, depth=depth,
                  duration_s=duration, warmup_s=warmup, value_size=value_size, znodes=znodes)
    return report


# --- restart ----------------------------------------------------------------------------------

_LEN = struct.Struct(">i")


def _recv_frame(sock):
    def exact(n):
        buf = b""
        while len(buf) < n:
            chunk = sock.recv(n - len(buf))
            if not chunk:
                raise OSError("closed")
            buf += chunk
        return buf
    (n,) = _LEN.unpack(exact(4))
    return exact(n)


def probe_getdata(port, path, timeout=0.5):
    """One session, one getData of `path`: True if it succeeded (any failure: False)."""
    from zkpy.bench import loadgen
    from zkpy.proto import codec, consts as c, records as r
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            body = codec.encode_connect_request(r.ConnectRequest(0, 0, 30000, 0, b"\0" * 16))
            s.sendall(_LEN.pack(len(body)) + body)
            resp, _ = codec.decode_connect_response(_recv_frame(s))
            if resp.timeOut <= 0 or resp.sessionId == 0:
                return False
            s.sendall(loadgen.build_request(1, c.OP_GET_DATA,
                                            codec.encode(r.GetDataRequest(path, False))))
            xid, _zxid, err, _off = codec.decode_reply_header(_recv_frame(s))
            ok = xid == 1 and err == 0
            try:
                s.sendall(loadgen.build_request(2, c.OP_CLOSE_SESSION))
                _recv_frame(s)
            except OSError:
                pass
            return ok
    except (OSError, ValueError, struct.error):
        return False


def drop_page_cache():
    """What a power cut does to the page cache (root only): sync, then drop every clean page,
    so a restart reads its data from the disk."""
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def timed_restart(server, path, timeout=120.0, poll_s=0.01, how="kill9", cold=False):
    """Stop `server` -- how="kill9": kill -9 of its whole process group (a crash: zkpy puts LMDB
    back to its last checkpoint and replays the log from there, as after a power cut);
    how="stop": SIGTERM and wait (a clean stop) -- then, with cold=True, drop the page cache (as
    a power cut leaves it), start it again, and time until a getData of `path` succeeds.
    Returns seconds from the start of the new process."""
    if how == "stop":
        server._signal(signal.SIGTERM)
    else:
        server._signal(signal.SIGKILL)
    server.proc.wait(60)
    if cold:
        drop_page_cache()
    t0 = time.monotonic()
    server.proc = subprocess.Popen(server.command(), cwd=server.root, env=server.env(),
                                   stdin=subprocess.DEVNULL, stdout=server._log_file,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    while time.monotonic() - t0 < timeout:
        if probe_getdata(server.port, path):
            return time.monotonic() - t0
        if server.proc.poll() is not None:
            raise RuntimeError("%s exited with %s after kill -9 and restart; log %s"
                               % (server.kind, server.proc.returncode, server.log_path))
        time.sleep(poll_s)
    raise RuntimeError("%s: no getData within %.0f s of restart" % (server.kind, timeout))


# --- tables (pure) ----------------------------------------------------------------------------

def _k(v):
    return "-" if v is None else "%.0f" % v


def _ratio(a, b):
    return None if a is None or not b else a / b


def _rx(v):
    return "-" if v is None else "%.2fx" % v


def _ms(v):
    return "-" if v is None else "%.1f" % v


def _cell(r):
    if r is None:
        return "-"
    s = _k(r.get("ops_per_sec"))
    if r.get("errors"):
        s += " **%d errors**" % r["errors"]
    return s


def _find(reports, **kw):
    for r in reports:
        if all(r.get(k) == v for k, v in kw.items()):
            return r
    return None


def sessions_table(reports, a="zkpy", b="ZooKeeper"):
    """Markdown: per workload and session count, ops/s and p99 of both servers, ratio a / b.
    `reports`: run reports with part="sessions", label, workload, sessions, depth."""
    rs = [r for r in reports if r.get("part") == "sessions"]
    lines = ["| workload | sessions | in flight | %s ops/s | %s ops/s | %s / %s | %s p99 ms "
             "| %s p99 ms |" % (a, b, a, b, a, b), "|---|---:|---:|---:|---:|---:|---:|---:|"]
    keys = []
    for r in rs:
        if (r["workload"], r["sessions"]) not in keys:
            keys.append((r["workload"], r["sessions"]))
    for w, n in keys:
        ra = _find(rs, workload=w, sessions=n, label=a)
        rb = _find(rs, workload=w, sessions=n, label=b)
        depth = (ra or rb)["depth"]
        lines.append("| %s | %d | %d x %d | %s | %s | %s | %s | %s |" % (
            w, n, n, depth, _cell(ra), _cell(rb),
            _rx(_ratio(ra and ra["ops_per_sec"], rb and rb["ops_per_sec"])),
            _ms(ra and ra.get("p99_ms")), _ms(rb and rb.get("p99_ms"))))
    return "\n".join(lines)


def tree_table(reports, builds, a="zkpy", b="ZooKeeper"):
    """Markdown: per tree size, build time and ops/s of getdata and create for both servers.
    `builds`: [{"label", "size", "seconds", "created"}] (seconds to grow to `size`)."""
    rs = [r for r in reports if r.get("part") == "tree"]
    sizes = []
    for r in rs:
        if r["tree_size"] not in sizes:
            sizes.append(r["tree_size"])
    lines = ["| znodes | build %s s (creates/s) | build %s s (creates/s) | getdata %s | "
             "getdata %s | %s / %s | create %s | create %s | %s / %s |"
             % (a, b, a, b, a, b, a, b, a, b),
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]

    def build(lab, size):
        bl = _find(builds, label=lab, size=size)
        if bl is None:
            return "-"
        rate = bl["created"] / bl["seconds"] if bl["seconds"] > 0 else None
        return "%.1f (%s)" % (bl["seconds"], _k(rate))
    for n in sizes:
        cells = ["%d" % n, build(a, n), build(b, n)]
        for w in ("getdata", "create"):
            ra = _find(rs, workload=w, tree_size=n, label=a)
            rb = _find(rs, workload=w, tree_size=n, label=b)
            cells += [_cell(ra), _cell(rb),
                      _rx(_ratio(ra and ra["ops_per_sec"], rb and rb["ops_per_sec"]))]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _mb(kb):
    return "-" if kb is None else "%.1f" % (kb / 1024.0)


def memory_table(mem):
    """Markdown from {label: memory summary} (measure_memory), MB."""
    lines = ["| server | when | processes | RSS MB | anonymous MB (sum) | Pss_Anon MB (sum) | "
             "file-backed RSS MB (sum) | LMDB data.mdb resident MB |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for key, m in mem.items():
        lines.append("| %s | %s | %d | %s | %s | %s | %s | %s |" % (
            m.get("label", key), m.get("when", ""), m["processes"], _mb(m["rss"]),
            _mb(m["anon"]), _mb(m["pss_anon"]), _mb(m["file_rss"]),
            _mb(m["lmdb_pss"]) if m["lmdb_rss"] else "-"))
    return "\n".join(lines)


def restart_table(restarts, a="zkpy", b="ZooKeeper"):
    """Markdown from {label: [seconds]}: every try, the median, the ratio of medians."""
    n = max((len(v) for v in restarts.values()), default=0)
    lines = ["| server | " + " | ".join("try %d s" % (i + 1) for i in range(n))
             + " | median s |", "|---|" + "---:|" * (n + 1)]
    for lab, ts in restarts.items():
        cells = ["%.2f" % t for t in ts] + [""] * (n - len(ts))
        lines.append("| %s | %s | %s |" % (lab, " | ".join(cells),
                                         "%.2f" % statistics.median(ts) if ts else "-"))
    return "\n".join(lines)


def targets(restarts, mem, a="zkpy", b="ZooKeeper"):
    """The issue's two targets: [{"name", "value", "target", "holds", "detail"}]."""
    out = []
    ra, rb = restarts.get(a), restarts.get(b)
    if ra and rb:
        ma, mb = statistics.median(ra), statistics.median(rb)
        v = ma / mb if mb > 0 else None
        out.append({"name": "restart time %s / %s" % (a, b), "value": v,
                    "target": RESTART_TARGET, "holds": v is not None and v <= RESTART_TARGET,
                    "detail": "%.2f s / %.2f s (medians)" % (ma, mb)})
    xa, xb = mem.get(a), mem.get(b)
    if xa and xb:
        v = xa["anon"] / xb["rss"] if xb["rss"] else None
        out.append({"name": "%s private memory / %s RSS" % (a, b), "value": v,
                    "target": MEMORY_TARGET, "holds": v is not None and v <= MEMORY_TARGET,
                    "detail": "%s MB anonymous over %d processes / %s MB"
                              % (_mb(xa["anon"]), xa["processes"], _mb(xb["rss"]))})
    return out


def targets_table(tgts):
    lines = ["| target | measured | limit | holds |", "|---|---:|---:|:---:|"]
    for t in tgts:
        lines.append("| %s: %s | %s | <= %.1fx | %s |" % (
            t["name"], t["detail"], _rx(t["value"]), t["target"],
            "yes" if t["holds"] else "**no**"))
    return "\n".join(lines)


# --- the plan and its progress ----------------------------------------------------------------

def _fmt(s):
    from zkpy.bench import compare
    return compare.fmt_duration(s)


def plan_steps(session_counts, sizes, labels, duration, warmup, restarts):
    """[(name, estimated seconds)] in run order, for progress and ETA."""
    steps = []
    run_s = duration + warmup + 1.5
    for n in session_counts:
        for w in ("getdata", "create"):
            for lab in labels:
                extra = duration + warmup if w == "create" else 0.0   # its cleanup deletes
                steps.append(("sessions %s %d %s" % (w, n, lab),
                              run_s + extra + n / 500.0))
    prev = 0
    for n in sizes:
        for lab in labels:
            steps.append(("build %s to %d" % (lab, n), (n - prev) / BUILD_RATE_GUESS))
        for w in ("getdata", "create"):
            for lab in labels:
                extra = duration + warmup if w == "create" else 0.0
                steps.append(("tree %s %d %s" % (w, n, lab), run_s + extra + n / 5e5))
        prev = n
    for lab in labels:
        steps.append(("memory %s" % lab, 1.0))
    for lab in labels:
        steps.append(("restart %s x%d" % (lab, restarts), restarts * 6.0))
    return steps


class Progress:
    def __init__(self, steps, log, clock=time.monotonic):
        self.steps = steps
        self.log = log
        self.clock = clock
        self.i = 0
        self.t0 = clock()
        self.actual = []
        self.step_t0 = None

    def start(self, name):
        self.step_t0 = self.clock()
        self.log("[%d/%d] %s ..." % (self.i + 1, len(self.steps), name))

    def done(self, summary=""):
        from zkpy.bench import compare
        self.actual.append(self.clock() - self.step_t0)
        est = [s for _, s in self.steps]
        self.i += 1
        eta = compare.eta_seconds(self.actual, est[:self.i], est[self.i:])
        self.log("[%d/%d] %s  (%.1f s; elapsed %s, ETA %s)" % (
            self.i, len(self.steps), summary, self.actual[-1], _fmt(self.clock() - self.t0),
            _fmt(eta)))


# --- the command -------------------------------------------------------------------------------

def add_scaling_parser(sub):
    p = sub.add_parser(
        "scaling", help="zkpy vs Apache ZooKeeper 3.8: ops/s vs sessions and tree size, "
                        "memory and restart time at the largest tree",
        description=__doc__.split("\n\n")[0])
    p.add_argument("--sessions", help="session counts (default %s)" % DEFAULTS["sessions"])
    p.add_argument("--session-depth", type=int,
                   help="requests in flight per session in the sessions runs (default %d)"
                        % DEFAULTS["session_depth"])
    p.add_argument("--sizes", help="tree sizes, znodes (default %s)" % DEFAULTS["sizes"])
    p.add_argument("--heap", help="ZooKeeper's -Xmx (default %s; 10M znodes of 100 B need "
                   "about 4g)" % DEFAULTS["heap"])
    p.add_argument("--processes", type=int, help="load processes (default %d)"
                   % DEFAULTS["processes"])
    p.add_argument("--tree-sessions", type=int, help="sessions of the tree-size runs "
                   "(default %d)" % DEFAULTS["tree_sessions"])
    p.add_argument("--tree-depth", type=int, help="in flight per session in the tree-size runs "
                   "(default %d)" % DEFAULTS["tree_depth"])
    p.add_argument("--duration", type=float, help="measured seconds per run (default %g)"
                   % DEFAULTS["duration"])
    p.add_argument("--warmup", type=float, help="unmeasured seconds first (default %g)"
                   % DEFAULTS["warmup"])
    p.add_argument("--restarts", type=int, help="kill -9 / start tries per server (default %d)"
                   % DEFAULTS["restarts"])
    p.add_argument("--restart-how", choices=("kill9", "stop"), default="kill9",
                   help="stop the server for the restart runs with kill -9 (a crash: zkpy "
                   "restores its LMDB checkpoint and replays the log after it) or SIGTERM (a "
                   "clean stop)")
    p.add_argument("--cold", action="store_true",
                   help="drop the page cache before each restart (root: what a power cut leaves)")
    p.add_argument("--servers", default="zkpy,apache", help="A,B (default zkpy,apache)")
    p.add_argument("--quick", action="store_true", help="a small smoke run (%s)"
                   % ", ".join("%s=%s" % kv for kv in QUICK.items()))
    p.add_argument("--out", help="output directory (default bench/results/scaling-<date>)")
    p.add_argument("--data-dir", help="where the servers' directories go (default /tmp)")
    p.add_argument("--keep-data", action="store_true")
    p.add_argument("--no-install", action="store_true",
                   help="fail instead of installing Apache ZooKeeper")
    return p


def _ints(text):
    return [int(x) for x in str(text).replace("_", "").split(",") if x.strip()]


def settings_from_args(args):
    s = dict(DEFAULTS)
    if args.quick:
        s.update(QUICK)
    for k in DEFAULTS:
        v = getattr(args, k, None)
        if v is not None:
            s[k] = v
    s["session_counts"] = _ints(s["sessions"])
    s["tree_sizes"] = sorted(_ints(s["sizes"]))
    if not s["session_counts"] or min(s["session_counts"]) < 1 or not s["tree_sizes"] or \
            min(s["tree_sizes"]) < 1:
        raise ValueError("--sessions and --sizes need positive counts")
    if s["restarts"] < 1 or s["duration"] <= 0 or s["warmup"] < 0:
        raise ValueError("--restarts >= 1, --duration > 0, --warmup >= 0")
    s["restart_how"] = getattr(args, "restart_how", "kill9")
    s["cold"] = bool(getattr(args, "cold", False))
    s["kinds"] = [k.strip() for k in args.servers.split(",")]
    if len(s["kinds"]) != 2:
        raise ValueError("--servers takes two kinds, A,B")
    from zkpy.bench import compare
    s["labels"] = compare._labels(s["kinds"])
    if args.out:
        s["out"] = Path(args.out)
    else:
        root = compare._checkout_root() or Path.cwd()
        s["out"] = (Path(root) / "bench" / "results"
                    / ("scaling-" + time.strftime("%Y-%m-%d") + ("-quick" if args.quick else "")))
    s["data_dir"] = args.data_dir or tempfile.gettempdir()
    s["keep_data"] = args.keep_data
    s["install"] = not args.no_install
    return s


def _raise_nofile(need):
    """Raise RLIMIT_NOFILE to `need`: the soft limit, and the hard one too where that is
    allowed (root). Processes started afterwards (the servers, load processes) inherit it.
    Returns the soft limit now (below `need` when the hard limit could not be raised)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        if hard != resource.RLIM_INFINITY and hard < need:
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (need, need))
                return need
            except (ValueError, OSError):
                pass
        new = need if hard == resource.RLIM_INFINITY else min(hard, need)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def _stderr(msg):
    print(msg, file=sys.stderr, flush=True)


def run_scaling(s, clusters, log=_stderr):
    """Everything but the files: returns the results dict."""
    labels = [c.label for c in clusters]
    steps = plan_steps(s["session_counts"], s["tree_sizes"], labels, s["duration"],
                       s["warmup"], s["restarts"])
    prog = Progress(steps, log)
    log("%d steps, estimated %s" % (len(steps), _fmt(sum(x for _, x in steps))))
    from zkpy.bench import loadgen
    reports, builds, mem, restarts, errors = [], [], {}, {}, []

    def record(r, **kw):
        r.update(kw)
        reports.append(r)
        if r.get("errors"):
            errors.append("%s %s: %s" % (kw.get("label"), r["workload"],
                                         "; ".join(r.get("error_samples", [])[:2])))
        return "%s %.0f ops/s p99 %s ms%s" % (kw.get("label"), r["ops_per_sec"],
                                              _ms(r.get("p99_ms")),
                                              "  ERRORS %d" % r["errors"] if r["errors"] else "")

    def guarded(fn, workload, label):
        try:
            return fn()
        except (loadgen.BenchError, OSError, ValueError) as e:
            return {"workload": workload, "ops": 0, "ops_per_sec": 0.0, "p50_ms": None,
                    "p99_ms": None, "p999_ms": None, "errors": 1,
                    "error_samples": ["%s: %s" % (type(e).__name__, e)]}

    # 1. sessions (loadgen.run_bench: its own 1000 znodes under /sessions, wiped after).
    for n in s["session_counts"]:
        for w in ("getdata", "create"):
            for c in clusters:
                prog.start("sessions: %s, %d sessions x depth %d, %s"
                           % (w, n, s["session_depth"], c.label))
                r = guarded(lambda: loadgen.run_bench(
                    c.addrs, w, processes=s["processes"], sessions=n,
                    depth=s["session_depth"], duration=s["duration"], warmup=s["warmup"],
                    value_size=VALUE_SIZE, znodes=1000, root="/sessions"), w, c.label)
                prog.done(record(r, part="sessions", label=c.label, sessions=n,
                                 depth=s["session_depth"]))
    # 2. tree size: grow /bench in place.
    have = 0
    for size in s["tree_sizes"]:
        for c in clusters:
            prog.start("build %s: /bench/n%d .. n%d" % (c.label, have, size - 1))
            secs = build_tree(c.addrs[0], ROOT, have, size, VALUE_SIZE, s["build_processes"],
                              s["build_window"], log, c.label)
            builds.append({"label": c.label, "size": size, "created": size - have,
                           "seconds": round(secs, 2)})
            prog.done("%s built %d znodes in %.1f s (%.0f creates/s)"
                      % (c.label, size - have, secs, (size - have) / max(secs, 1e-9)))
        have = size
        for w in ("getdata", "create"):
            for c in clusters:
                prog.start("tree %d: %s, %s" % (size, w, c.label))
                r = guarded(lambda: run_prepared(
                    c.addrs, w, processes=s["processes"], sessions=s["tree_sessions"],
                    depth=s["tree_depth"], duration=s["duration"], warmup=s["warmup"],
                    znodes=size), w, c.label)
                prog.done(record(r, part="tree", label=c.label, tree_size=size))
    # 3. memory, then restart time, at the largest tree.
    time.sleep(2.0)       # let writes settle (group commit, GC after the last run)
    for c in clusters:
        prog.start("memory of %s at %d znodes" % (c.label, have))
        m = measure_memory(c.members[0].proc.pid)
        m.update(label=c.label, when="after the runs, %d znodes" % have)
        mem[c.label] = m
        prog.done("%s: RSS %s MB, anonymous %s MB over %d processes, LMDB resident %s MB"
                  % (c.label, _mb(m["rss"]), _mb(m["anon"]), m["processes"],
                     _mb(m["lmdb_pss"])))
    after = {}
    for c in clusters:
        prog.start("restart %s x%d (%s%s, start, first getData)"
                   % (c.label, s["restarts"], "kill -9" if s["restart_how"] == "kill9"
                      else "SIGTERM", ", page cache dropped" if s["cold"] else ""))
        ts = []
        for i in range(s["restarts"]):
            t = timed_restart(c.members[0], ROOT + "/n%d" % (have - 1),
                              how=s["restart_how"], cold=s["cold"])
            ts.append(round(t, 3))
            log("  %s restart %d: first getData after %.2f s" % (c.label, i + 1, t))
            time.sleep(1.0)
        restarts[c.label] = ts
        time.sleep(1.0)
        m = measure_memory(c.members[0].proc.pid)
        m.update(label=c.label, when="~2 s after a restart")
        after[c.label] = m
        prog.done("%s restart median %.2f s" % (c.label, statistics.median(ts)))
    for lab, m in after.items():
        mem[lab + " (restarted)"] = m
    return {"reports": reports, "builds": builds, "memory": mem, "restarts": restarts,
            "errors": errors}


def scaling_main(args, argv=None):
    from zkpy.bench import compare, servers
    command, s = compare.begin_run(args, argv, settings_from_args)
    if command is None:
        return s
    # Every session is a socket in a load process and one in the server (inherited limit).
    nofile = _raise_nofile(2 * max(s["session_counts"]) + 512)
    Path(s["data_dir"]).mkdir(parents=True, exist_ok=True)
    base = tempfile.mkdtemp(prefix="zkpy-scaling-", dir=s["data_dir"])
    apache_jvm = ("-Xmx%s" % s["heap"],) + servers.APACHE_JVM_OPTS[1:]
    clusters = [servers.make_cluster(k, "standalone", base, label=lab,
                                     **({"jvm_opts": apache_jvm} if k == "apache" else {}))
                for k, lab in zip(s["kinds"], s["labels"])]
    machine = compare.machine_description(base)
    machine.update(load_before=compare.loadavg(), nofile=nofile)
    started = time.strftime("%Y-%m-%d %H:%M:%S %z")
    t0 = time.monotonic()
    try:
        for c in clusters:
            _stderr("starting %s: %s" % (c.label, c.describe()))
            c.start()
        res = run_scaling(s, clusters)
    except (servers.ServerError, RuntimeError) as e:
        _stderr("ERROR: %s" % e)
        for c in clusters:
            _stderr(c.log_tails())
        return 2
    except KeyboardInterrupt:
        _stderr("interrupted; servers stopped")
        return 130
    finally:
        for c in clusters:
            c.stop()
        if s["keep_data"]:
            _stderr("server directories kept in %s" % base)
        else:
            shutil.rmtree(base, ignore_errors=True)
    wall = time.monotonic() - t0
    machine["load_after"] = compare.loadavg()
    a, b = s["labels"]
    tgts = targets(res["restarts"], res["memory"], a, b)
    out = Path(s["out"])
    out.mkdir(parents=True, exist_ok=True)
    settings_json = {k: (str(v) if isinstance(v, Path) else v) for k, v in s.items()}
    with open(out / "scaling.json", "w") as f:
        json.dump({"command": command, "started": started, "wall_s": round(wall, 1),
                   "settings": settings_json, "machine": machine, "targets": tgts,
                   **res}, f, indent=1, sort_keys=True, default=str)
        f.write("\n")
    md = render_markdown(s, res, tgts, machine, command, started, wall)
    (out / "scaling.md").write_text(md)
    print(md, flush=True)
    _stderr("wrote %s, %s (took %s)" % (out / "scaling.md", out / "scaling.json", _fmt(wall)))
    if res["errors"]:
        _stderr("ERROR: %d run(s) had errors:\n  %s" % (len(res["errors"]),
                                                        "\n  ".join(res["errors"])))
        return 1
    return 0


def render_markdown(s, res, tgts, machine, command, started, wall):
    from zkpy.bench import compare
    a, b = s["labels"]
    md = ["# Scaling: %s vs %s (standalone)" % (a, b), "",
          "Command: `%s` (started %s, took %s)." % (command, started, _fmt(wall)), "",
          "Machine: %s. Load average %s before, %s after. Open files limit %s."
          % (compare.describe_machine(machine), machine["load_before"],
             machine["load_after"], machine.get("nofile")), ""]
    if machine.get("zkpy_commit"):
        md += ["zkpy code: commit %s." % machine["zkpy_commit"], ""]
    md += ["## ops/s vs sessions", "",
           "getdata over 1000 znodes of 100 B / persistent creates of 100 B; %d request(s) "
           "in flight per session, sessions over up to %d load processes; %g s measured after "
           "%g s warmup, one run per cell." % (s["session_depth"], s["processes"],
                                               s["duration"], s["warmup"]), "",
           sessions_table(res["reports"], a, b), "",
           "## ops/s vs tree size", "",
           "All znodes (100 B) are children of /bench; getdata reads /bench/n<i> over the "
           "whole tree, create adds (then deletes) nodes under /bench/c. %d sessions x %d in "
           "flight over %d processes, %g s measured. Build: pipelined creates from %d sessions "
           "(%d in flight each), growing the tree from the previous size."
           % (s["tree_sessions"], s["tree_depth"], s["processes"], s["duration"],
              s["build_processes"], s["build_window"]), "",
           tree_table(res["reports"], res["builds"], a, b), "",
           "## Memory at %d znodes" % max(s["tree_sizes"]), "",
           memory_table(res["memory"]), "",
           "## Restart at %d znodes (%s%s, start, until the first getData succeeds)"
           % (max(s["tree_sizes"]), "SIGTERM" if s.get("restart_how") == "stop" else "kill -9",
              ", page cache dropped" if s.get("cold") else ""), "",
           restart_table(res["restarts"], a, b), "",
           "## Targets", "", targets_table(tgts), ""]
    if res["errors"]:
        md += ["**%d run(s) had errors:** %s" % (len(res["errors"]), "; ".join(res["errors"])),
               ""]
    return "\n".join(md)
