"""Many concurrent sessions on one standalone server, zkpy vs Apache ZooKeeper 3.8.

Owns ``zkpy-bench sessions`` (also ``bench/sessions``). Per server kind (one at a time, each a
fresh standalone server from zkpy.bench.servers: forceSync=yes, maxClientCnxns=0, the same
clientPortListenBacklog for both, ZooKeeper with ``-Xmx<--heap>``) and per session count
(``--sessions N``, or each of ``--steps``), with N sessions held by zkpy.bench.fleet processes
(raw jute sockets, bound to 127.0.0.2, .3, ... so loopback source ports do not run out):

a. connect storm: every process opens its sessions as fast as it can (``--connect-window``
   handshakes in flight each); sessions/s from the common start to the last ConnectResponse,
   how many failed and why;
b. steady pings: each session pings every negotiated sessionTimeout / 3 (first pings spread over
   that interval) for ``--steady`` s: the server's CPU % (utime + stime of its process group:
   zkpy's core and workers, the JVM) and its private memory (anonymous, all processes; the
   JVM's after a full GC, jcmd GC.run) before the sessions and after this phase, per session;
c. writes: every ``--write-every``-th session (10%) also setData's its own znode of
   ``--value-size`` B ``--write-rate`` times a second (one in flight: a due write whose last one
   is unanswered is skipped and counted), the rest only ping: ops/s, p50/p99, server CPU;
d. expiry: ``--expiry-sessions`` sessions each create an ephemeral, a watcher session sets an
   exists-watch on each, then those sessions go silent after their next ping (socket open,
   nothing sent; so their last packets are spread over a ping interval); the time
   from a session's last packet to its NodeDeleted event, minus its negotiated timeout, is the
   expiry error (p50/p99/max; a negative one would be a session expired early). The time the
   server closed the silent connection is reported beside it.

A server that cannot take N (sessions failed, the server died) is not run at the larger steps;
the limit table gives the highest N it took fully, and the error texts (the clients' and the
server log's). Output: sessions.md, sessions.json and sessions.png (matplotlib) in
bench/results/sessions-<date>/.

The pure parts (`connect_summary`, `steady_summary`, `writes_summary`, `expiry_stats`, the
tables, `limit_rows`, `expiry_subset`, `processes_for`, `plan_seconds`) do no I/O. Nothing in
the server imports this module.
"""

import math
import resource
import socket
import tempfile
import time
from array import array
from pathlib import Path

from zkpy.bench import fleet as fl
from zkpy.bench import loadgen, scaling

__all__ = ["connect_summary", "steady_summary", "writes_summary", "expiry_stats",
           "expiry_subset", "connect_table", "steady_table", "writes_table", "expiry_table",
           "limit_rows", "limit_table", "processes_for", "plan_seconds", "add_sessions_parser",
           "sessions_main"]

DEFAULTS = dict(sessions=100000, steps=None, processes=0, session_timeout=30000, steady=30.0,
                write_duration=30.0, write_every=10, write_rate=1.0, value_size=100,
                expiry_sessions=1000, connect_window=256, heap="4g", backlog=1024)
QUICK = dict(sessions=2000, session_timeout=6000, steady=4.0, write_duration=4.0,
             expiry_sessions=200)
SESSIONS_PER_PROCESS = 25000
ROOT = "/sessions-bench"
TICK_MS = 2000
WRITE_WARMUP_S = 1.0


# --- summaries (pure) --------------------------------------------------------------------------

def _lat(blobs):
    a = array("q")
    for b in blobs:
        a.frombytes(b)
    return a


def _pct_ms(values):
    p = loadgen.percentiles(values, (0.5, 0.99))
    return tuple(None if p[q] is None else round(p[q] / 1e6, 3) for q in (0.5, 0.99))


def _merge(dicts):
    out = {}
    for d in dicts:
        for k, v in d.items():
            out[k] = out.get(k, 0) + v
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def connect_summary(reports, target):
    """The fleet processes' connect reports -> {target, ok, failed, seconds, rate, p50_ms,
    p99_ms, errors}. seconds: from the common start to the last ConnectResponse."""
    ok = sum(r["ok"] for r in reports)
    lasts = [r["last_ns"] for r in reports if r["last_ns"]]
    go = min(r["go_ns"] for r in reports) if reports else 0
    secs = (max(lasts) - go) / 1e9 if lasts else None
    p50, p99 = _pct_ms(_lat(r["lat_ns"] for r in reports))
    return {"target": target, "ok": ok, "failed": sum(r["failed"] for r in reports),
            "seconds": None if secs is None else round(secs, 3),
            "rate": round(ok / secs, 1) if secs else None, "p50_ms": p50, "p99_ms": p99,
            "errors": _merge(r["errors"] for r in reports)}


def _window(marks):
    return max((m["t1_ns"] - m["t0_ns"]) / 1e9 for m in marks) if marks else 0.0


def steady_summary(marks, cpu):
    """Marks of the steady phase + cpu_percent -> {seconds, pings, pings_per_s, ping p50/p99,
    up, lost, cpu}."""
    secs = _window(marks)
    pings = sum(m["pings"] for m in marks)
    p50, p99 = _pct_ms(_lat(m["ping_lat_ns"] for m in marks))
    return {"seconds": round(secs, 2), "pings": pings,
            "pings_per_s": round(pings / secs, 1) if secs else None, "ping_p50_ms": p50,
            "ping_p99_ms": p99, "up": sum(m["up"] for m in marks),
            "lost": _merge(m["lost"] for m in marks), "cpu": cpu}


def writes_summary(marks, cpu, writers, rate):
    """Marks of the write phase -> {writers, offered_per_s, ops, ops_per_s, p50/p99, errors,
    skipped, pings_per_s, lost, cpu}."""
    secs = _window(marks)
    lat = _lat(m["write_lat_ns"] for m in marks)
    p50, p99 = _pct_ms(lat)
    pings = sum(m["pings"] for m in marks)
    return {"seconds": round(secs, 2), "writers": writers,
            "offered_per_s": round(writers * rate, 1), "ops": len(lat),
            "ops_per_s": round(len(lat) / secs, 1) if secs else None, "p50_ms": p50,
            "p99_ms": p99, "errors": _merge(m["write_errors"] for m in marks),
            "skipped": sum(m["writes_skipped"] for m in marks),
            "pings_per_s": round(pings / secs, 1) if secs else None,
            "lost": _merge(m["lost"] for m in marks), "cpu": cpu}


def expiry_stats(silenced, deleted, closed=None):
    """Session expiry accuracy. silenced: {sid: (last send ns, negotiated timeout ms)};
    deleted: {sid: ns its ephemeral's NodeDeleted arrived}; closed: {sid: ns the server closed
    its connection}. Errors are (event - last send) - timeout, in ms: {silenced, expired,
    missing, early, error p50/p99/max/min ms, closed, closed error p50/p99 ms}."""
    closed = closed or {}
    errs, cerrs = [], []
    for sid, (last, timeout_ms) in silenced.items():
        if sid in deleted:
            errs.append((deleted[sid] - last) / 1e6 - timeout_ms)
        if sid in closed:
            cerrs.append((closed[sid] - last) / 1e6 - timeout_ms)
    p = loadgen.percentiles(errs, (0.5, 0.99))
    c = loadgen.percentiles(cerrs, (0.5, 0.99))
    r = lambda v: None if v is None else round(v, 1)  # noqa: E731
    return {"silenced": len(silenced), "expired": len(errs),
            "missing": len(silenced) - len(errs), "early": sum(1 for e in errs if e < 0),
            "error_p50_ms": r(p[0.5]), "error_p99_ms": r(p[0.99]),
            "error_max_ms": r(max(errs)) if errs else None,
            "error_min_ms": r(min(errs)) if errs else None,
            "closed": len(cerrs), "closed_error_p50_ms": r(c[0.5]),
            "closed_error_p99_ms": r(c[0.99])}


def expiry_subset(n, k):
    """The sids of the k sessions (of n) that go silent: spread evenly, never sid 0."""
    k = max(0, min(k, n - 1))
    if k == 0:
        return []
    stride = max(1, (n - 1) // k)
    return [1 + i * stride for i in range(k)]


# --- tables (pure) -----------------------------------------------------------------------------

def _v(x, fmt="%.1f"):
    return "-" if x is None else fmt % x


def _errs(d, n=2):
    return "; ".join("%s (%d)" % kv for kv in list(d.items())[:n]) if d else ""


def _rows(reports, key):
    return [r for r in reports if r.get(key)]


def connect_table(reports):
    lines = ["| sessions | server | connected | failed | seconds | sessions/s | handshake p50 "
             "/ p99 ms | errors (count) |", "|---:|---|---:|---:|---:|---:|---|---|"]
    for r in _rows(reports, "connect"):
        c = r["connect"]
        lines.append("| %d | %s | %d | %d | %s | %s | %s / %s | %s |" % (
            r["sessions"], r["label"], c["ok"], c["failed"], _v(c["seconds"], "%.2f"),
            _v(c["rate"], "%.0f"), _v(c["p50_ms"]), _v(c["p99_ms"]), _errs(c["errors"])))
    return "\n".join(lines)


def _mem_per_session(r):
    m = r.get("memory") or {}
    return m.get("per_session_kb")


def steady_table(reports):
    lines = ["| sessions | server | CPU % (core + workers) | pings/s | ping p50 / p99 ms | "
             "private MB before -> after | KB per session | JVM live heap B per session | "
             "lost |", "|---:|---|---|---:|---|---|---:|---:|---:|"]
    for r in _rows(reports, "steady"):
        st, m, cpu = r["steady"], r.get("memory") or {}, r["steady"]["cpu"]
        lines.append("| %d | %s | %s (%s + %s) | %s | %s / %s | %s -> %s | %s | %s | %d |" % (
            r["sessions"], r["label"], _v(cpu["total"]), _v(cpu["core"]), _v(cpu["workers"]),
            _v(st["pings_per_s"], "%.0f"), _v(st["ping_p50_ms"]), _v(st["ping_p99_ms"]),
            _v(m.get("before_mb")), _v(m.get("after_mb")), _v(_mem_per_session(r), "%.2f"),
            _v(m.get("heap_per_session_bytes"), "%.0f"), sum(st["lost"].values())))
    return "\n".join(lines)


def writes_table(reports):
    lines = ["| sessions | server | writers | offered/s | setData ops/s | p50 ms | p99 ms | "
             "skipped | errors | CPU % |", "|---:|---|---:|---:|---:|---:|---:|---:|---|---:|"]
    for r in _rows(reports, "writes"):
        w = r["writes"]
        lines.append("| %d | %s | %d | %.0f | %s | %s | %s | %d | %s | %s |" % (
            r["sessions"], r["label"], w["writers"], w["offered_per_s"],
            _v(w["ops_per_s"], "%.0f"), _v(w["p50_ms"], "%.2f"), _v(w["p99_ms"], "%.2f"),
            w["skipped"], _errs(w["errors"]) or "0", _v(w["cpu"]["total"])))
    return "\n".join(lines)


def expiry_table(reports):
    lines = ["| sessions | server | timeout ms | silenced | expired | missing | early | "
             "error p50 / p99 / max / min ms | connection closed: error p50 / p99 ms |",
             "|---:|---|---:|---:|---:|---:|---:|---|---|"]
    for r in _rows(reports, "expiry"):
        e = r["expiry"]
        lines.append("| %d | %s | %s | %d | %d | %d | %d | %s / %s / %s / %s | %s / %s |" % (
            r["sessions"], r["label"], r.get("timeout_ms", "-"), e["silenced"], e["expired"],
            e["missing"], e["early"], _v(e["error_p50_ms"]), _v(e["error_p99_ms"]),
            _v(e["error_max_ms"]), _v(e["error_min_ms"]), _v(e["closed_error_p50_ms"]),
            _v(e["closed_error_p99_ms"])))
    return "\n".join(lines)


def took_all(r):
    """Did the server take every session of this run (and live through it)?"""
    c = r.get("connect")
    return bool(c) and c["ok"] == r["sessions"] and not r.get("died") and not r.get("error")


def limit_rows(reports, labels):
    """Per server: the highest N it took fully, the first N it did not, with why."""
    rows = []
    for lab in labels:
        rs = sorted((r for r in reports if r["label"] == lab and not r.get("skipped")),
                    key=lambda r: r["sessions"])
        good = [r["sessions"] for r in rs if took_all(r)]
        bad = next((r for r in rs if not took_all(r)), None)
        why = []
        if bad is not None:
            c = bad.get("connect") or {}
            if c:
                why.append("%d of %d connected" % (c["ok"], bad["sessions"]))
            if bad.get("died"):
                why.append("server died")
            if bad.get("error"):
                why.append(bad["error"])
            if c.get("errors"):
                why.append("clients: " + _errs(c["errors"], 3))
            if bad.get("server_errors"):
                why.append("server log: " + " / ".join(bad["server_errors"][-2:]))
        rows.append({"label": lab, "highest_ok": max(good) if good else None,
                     "failed_at": None if bad is None else bad["sessions"], "why": why})
    return rows


def limit_table(rows):
    lines = ["| server | highest N taken fully | failed at N | why |", "|---|---:|---:|---|"]
    for x in rows:
        lines.append("| %s | %s | %s | %s |" % (
            x["label"], _v(x["highest_ok"], "%d"), _v(x["failed_at"], "%d"),
            "; ".join(x["why"]).replace("|", "/") or "-"))
    return "\n".join(lines)


def processes_for(n, nofile):
    """Client processes for n sessions: SESSIONS_PER_PROCESS each at most, fewer when the
    open files limit is lower (1000 descriptors kept spare; half the limit when it is below
    2000), at least 2."""
    per = max(1, min(SESSIONS_PER_PROCESS, nofile - 1000 if nofile > 2000 else nofile // 2))
    return max(2, math.ceil(n / per))


def plan_seconds(s, n):
    """A rough estimate of one server's run at n sessions, seconds."""
    t = 8.0 + n / 4000.0 + 2.0                                   # start, connect, settle
    if "steady" in s["phases"]:
        t += s["steady"] + 1.0
    if "writes" in s["phases"]:
        t += s["write_duration"] + WRITE_WARMUP_S + 1.0
    if "expiry" in s["phases"]:
        t += s["session_timeout"] / 1000.0 + TICK_MS / 1000.0 + 4.0
    return t


# --- one server at one N -------------------------------------------------------------------

def _wait_deleted(client, want, deadline, ping_every_s):
    """Read `client`'s notifications until every path of `want` {path: sid} had its
    NodeDeleted, or `deadline` (monotonic s); pings to keep the watcher's session alive.
    Returns {sid: perf_counter_ns of the event}."""
    from zkpy.proto import codec, consts as c, records as rec
    client.sock.settimeout(0.2)
    got, next_ping = {}, time.monotonic() + ping_every_s
    ping = loadgen.build_request(c.XID_PING, c.OP_PING)
    while len(got) < len(want) and time.monotonic() < deadline:
        if time.monotonic() >= next_ping:
            client.sock.sendall(ping)
            next_ping += ping_every_s
        try:
            frame = client.read_frame()
        except socket.timeout:
            continue
        now = time.perf_counter_ns()
        xid, _zxid, _err, off = codec.decode_reply_header(frame)
        if xid == c.XID_NOTIFICATION:
            ev, _ = codec.decode(rec.WatcherEvent, frame, off)
            if ev.type == c.EVENT_NODE_DELETED and ev.path in want:
                got[want[ev.path]] = now
    return got


def _expiry(s, fleet, addr, n, ok, log):
    from zkpy.proto import consts as c, records as rec
    subset = set(expiry_subset(n, min(s["expiry_sessions"], ok // 2)))
    created = fleet.call(("ephemerals", subset, ROOT), 120.0)
    create_errors = _merge(x[1] for x in created)
    paths = {"%s/e%d" % (ROOT, sid): sid for sid in sorted(subset)}
    watcher = loadgen.SyncClient(addr)
    try:
        res = watcher.call_many([(c.OP_EXISTS, loadgen._enc(rec.ExistsRequest(p, True)))
                                 for p in paths], 1000)
        want = {p: sid for (p, sid), (err, _) in zip(paths.items(), res) if err == 0}
        fleet.call(("mark",), 30.0)
        silenced = {}
        for x in fleet.call(("silence", set(want.values())), 30.0 + s["session_timeout"] / 1e3):
            silenced.update(x[1])
        timeout_s = max((t for _, t in silenced.values()), default=s["session_timeout"]) / 1e3
        log("  %d sessions silent; waiting up to %.0f s for their expiry"
            % (len(silenced), timeout_s + 2 * TICK_MS / 1e3 + 10))
        deadline = time.monotonic() + timeout_s + 2 * TICK_MS / 1e3 + 10.0
        deleted = _wait_deleted(watcher, want, deadline, loadgen.SESSION_TIMEOUT_MS / 3e3)
    finally:
        watcher.close()
    closed = {}
    for x in fleet.call(("closed",), 30.0):
        closed.update(x[1])
    others = fleet.call(("mark",), 30.0)
    out = expiry_stats(silenced, deleted, closed)
    out.update(create_errors=create_errors, others_lost=_merge(m[1]["lost"] for m in others))
    return out


def run_one(s, kind, label, n, base, log):
    """One fresh server of `kind`, n sessions, the phases of s["phases"]: the report dict."""
    from zkpy.bench import servers
    rep = {"label": label, "kind": kind, "sessions": n, "timeout_ms": s["session_timeout"]}
    jvm = ("-Xmx%s" % s["heap"], "-Dzookeeper.jmx.log4j.disable=true")
    extra = {"clientPortListenBacklog": str(s["backlog"])} if s["backlog"] > 0 else {}
    cluster = servers.make_cluster(kind, "standalone", base, label="%s-%d" % (kind, n),
                                   jvm_opts=jvm, extra_cfg=extra)
    server = cluster.members[0]
    procs = s["processes"] or processes_for(n, resource.getrlimit(resource.RLIMIT_NOFILE)[0])
    fleet = None
    try:
        cluster.start()
        rep.update(server=cluster.describe(), version=cluster.version, processes=procs)
        pgid, addr = server.proc.pid, cluster.addrs[0]
        writers = len(range(0, n, s["write_every"]))
        scaling.build_tree(addr, ROOT, 0, writers, s["value_size"], processes=1)
        time.sleep(1.0)
        mem0 = fl.server_memory(server)
        fleet = fl.FleetProcs(addr, n, procs, s["session_timeout"], s["connect_window"])
        log("  %s, %d sessions: connect storm from %d processes" % (label, n, procs))
        go = time.perf_counter_ns() + 200_000_000
        got = fleet.call(("connect", go), fl.HANDSHAKE_TIMEOUT_S + n / 500.0 + 60.0)
        conn = rep["connect"] = connect_summary([x[1] for x in got], n)
        log("  connected %d, failed %d in %s s: %s sessions/s%s" % (
            conn["ok"], conn["failed"], _v(conn["seconds"], "%.2f"), _v(conn["rate"], "%.0f"),
            ("; " + _errs(conn["errors"], 3)) if conn["errors"] else ""))
        if not server.running():
            raise loadgen.BenchError("server died during the connect storm")
        time.sleep(2.0)
        mem1 = fl.server_memory(server)
        mem2 = mem1
        if "steady" in s["phases"]:
            fleet.call(("mark",), 30.0)
            c0, t0 = fl.server_cpu(pgid), time.monotonic()
            time.sleep(s["steady"])
            cpu = fl.cpu_percent(c0, fl.server_cpu(pgid), time.monotonic() - t0)
            st = rep["steady"] = steady_summary([x[1] for x in fleet.call(("mark",), 30.0)],
                                                cpu)
            mem2 = fl.server_memory(server)
            log("  steady: CPU %s %%, %s pings/s, ping p99 %s ms, lost %d" % (
                _v(cpu["total"]), _v(st["pings_per_s"], "%.0f"), _v(st["ping_p99_ms"]),
                sum(st["lost"].values())))
        ok = max(1, conn["ok"])
        rep["memory"] = {
            "before_mb": round(mem0["anon"] / 1024, 1), "after_connect_mb": round(
                mem1["anon"] / 1024, 1), "after_mb": round(mem2["anon"] / 1024, 1),
            "rss_before_mb": round(mem0["rss"] / 1024, 1),
            "rss_after_mb": round(mem2["rss"] / 1024, 1),
            "per_session_kb": round((mem2["anon"] - mem0["anon"]) / ok, 3),
            "heap_per_session_bytes": fl.heap_delta_bytes(mem0, mem2, ok),
            "processes": mem2["processes"], "detail": [mem0, mem1, mem2]}
        if "writes" in s["phases"] and server.running():
            fleet.call(("writes", s["write_rate"], s["write_every"], ROOT, s["value_size"]), 30)
            time.sleep(WRITE_WARMUP_S)
            fleet.call(("mark",), 30.0)
            c0, t0 = fl.server_cpu(pgid), time.monotonic()
            time.sleep(s["write_duration"])
            cpu = fl.cpu_percent(c0, fl.server_cpu(pgid), time.monotonic() - t0)
            marks = [x[1] for x in fleet.call(("mark",), 30.0)]
            fleet.call(("writes", 0, s["write_every"], ROOT, 0), 30.0)
            w = rep["writes"] = writes_summary(marks, cpu, writers, s["write_rate"])
            log("  writes: %s setData/s (offered %.0f), p50 %s p99 %s ms, CPU %s %%" % (
                _v(w["ops_per_s"], "%.0f"), w["offered_per_s"], _v(w["p50_ms"], "%.2f"),
                _v(w["p99_ms"], "%.2f"), _v(cpu["total"])))
            time.sleep(1.0)
        if "expiry" in s["phases"] and server.running():
            e = rep["expiry"] = _expiry(s, fleet, addr, n, conn["ok"], log)
            log("  expiry: %d of %d expired, error p50 %s p99 %s max %s min %s ms" % (
                e["expired"], e["silenced"], _v(e["error_p50_ms"]), _v(e["error_p99_ms"]),
                _v(e["error_max_ms"]), _v(e["error_min_ms"])))
    except (loadgen.BenchError, servers.ServerError, OSError, ValueError) as e:
        fl.record_error(rep, e, log)
    finally:
        fl.finish_run(rep, server, fleet, cluster)
    return rep


# --- the command -------------------------------------------------------------------------------

def add_sessions_parser(sub):
    p = sub.add_parser("sessions", help="zkpy vs Apache ZooKeeper 3.8: N concurrent sessions "
                       "(connect storm, steady pings, 10%% writes, expiry accuracy)",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("--sessions", type=int, help="sessions (default %d)" % DEFAULTS["sessions"])
    p.add_argument("--steps", help="session counts to step through, e.g. "
                   "10000,25000,50000,100000 (a server failing one skips the larger ones)")
    p.add_argument("--processes", type=int, help="client processes (default: one per %d "
                   "sessions, at least 2)" % SESSIONS_PER_PROCESS)
    p.add_argument("--session-timeout", type=int, help="requested sessionTimeout ms "
                   "(default %d; pings every third of it)" % DEFAULTS["session_timeout"])
    p.add_argument("--steady", type=float, help="seconds of pings only (default %g)"
                   % DEFAULTS["steady"])
    p.add_argument("--write-duration", type=float, help="measured seconds of the write phase "
                   "(default %g)" % DEFAULTS["write_duration"])
    p.add_argument("--write-every", type=int, help="every k-th session writes (default %d: "
                   "10%%%%)" % DEFAULTS["write_every"])
    p.add_argument("--write-rate", type=float, help="setData/s per writing session "
                   "(default %g)" % DEFAULTS["write_rate"])
    p.add_argument("--value-size", type=int, help="setData bytes (default %d)"
                   % DEFAULTS["value_size"])
    p.add_argument("--expiry-sessions", type=int, help="sessions that go silent in the "
                   "expiry phase (default %d)" % DEFAULTS["expiry_sessions"])
    p.add_argument("--connect-window", type=int, help="handshakes in flight per client "
                   "process (default %d)" % DEFAULTS["connect_window"])
    p.add_argument("--heap", help="ZooKeeper's -Xmx (default %s)" % DEFAULTS["heap"])
    p.add_argument("--backlog", type=int, help="clientPortListenBacklog of both servers "
                   "(default %d; 0: each server's own default)" % DEFAULTS["backlog"])
    p.add_argument("--phases", default="connect,steady,writes,expiry",
                   help="which of steady,writes,expiry run after the connect storm")
    p.add_argument("--servers", default="zkpy,apache", help="kinds, in run order")
    p.add_argument("--quick", action="store_true", help="a small smoke run (%s)"
                   % ", ".join("%s=%s" % kv for kv in QUICK.items()))
    p.add_argument("--out", help="output directory (default bench/results/sessions-<date>)")
    p.add_argument("--data-dir", help="where the servers' directories go (default /tmp)")
    p.add_argument("--keep-data", action="store_true")
    p.add_argument("--no-install", action="store_true",
                   help="fail instead of installing Apache ZooKeeper")
    return p


def settings_from_args(args, name="sessions", defaults=DEFAULTS, quick=QUICK):
    """Defaults, then --quick's, then the options given; the common keys of both commands
    (kinds, labels, out, data_dir, keep_data, install). Shared with zkpy.bench.watches."""
    from zkpy.bench import compare
    s = dict(defaults)
    if args.quick:
        s.update(quick)
    for k in defaults:
        v = getattr(args, k, None)
        if v is not None:
            s[k] = v
    s["kinds"] = [k.strip() for k in args.servers.split(",") if k.strip()]
    if not s["kinds"] or any(k not in ("zkpy", "apache") for k in s["kinds"]):
        raise ValueError("--servers takes zkpy and/or apache")
    s["labels"] = compare._labels(s["kinds"])
    root = compare._checkout_root() or Path.cwd()
    s["out"] = Path(args.out) if args.out else (
        Path(root) / "bench" / "results"
        / ("%s-%s%s" % (name, time.strftime("%Y-%m-%d"), "-quick" if args.quick else "")))
    s["data_dir"] = args.data_dir or tempfile.gettempdir()
    s["keep_data"] = args.keep_data
    s["install"] = not args.no_install
    s["quick"] = bool(args.quick)
    return s


def _sessions_settings(args):
    s = settings_from_args(args)
    s["step_counts"] = sorted(scaling._ints(s["steps"])) if s["steps"] else [s["sessions"]]
    s["phases"] = [x.strip() for x in args.phases.split(",") if x.strip()]
    if min(s["step_counts"]) < 2 or s["session_timeout"] < 1 or s["write_every"] < 1:
        raise ValueError("--sessions / --steps >= 2, --session-timeout and --write-every > 0")
    if max(s["step_counts"]) > 250 * fl.SOURCE_SESSIONS_MAX:
        raise ValueError("at most %d sessions (loopback source addresses)"
                         % (250 * fl.SOURCE_SESSIONS_MAX))
    return s


def render_markdown(s, reports, machine, command, started, wall):
    md = fl.header("Concurrent sessions: %s (standalone)" % " vs ".join(s["labels"]), reports,
                   machine, command, started, wall)
    md += ["Each server alone on the machine, fresh per session count; ZooKeeper with "
           "-Xmx%s; both with maxClientCnxns=0, forceSync=yes, tickTime=%d%s. Sessions ask for "
           "a %d ms timeout and ping every third of the negotiated one; client processes: raw "
           "jute sockets (zkpy.bench.fleet), %d handshakes in flight each, bound to 127.0.0.2, "
           ".3, ... (%d sessions per address)."
           % (s["heap"], TICK_MS, ", clientPortListenBacklog=%d" % s["backlog"]
              if s["backlog"] > 0 else "", s["session_timeout"], s["connect_window"],
              fl.SOURCE_SESSIONS_MAX), "",
           "## Limit", "", limit_table(limit_rows(reports, s["labels"])), "",
           "## Connect storm", "", connect_table(reports), ""]
    if _rows(reports, "steady"):
        md += ["## Steady pings (%g s)" % s["steady"], "",
               "CPU: % of one core (utime + stime of the server's process group). Private "
               "memory: anonymous memory summed over the server's processes (zkpy: core and "
               "workers; ZooKeeper: the JVM, read right after a full GC -- jcmd GC.run -- so it "
               "is live data plus the heap G1 keeps committed), before the sessions and after "
               "this phase; per session = the difference / sessions connected. JVM live heap: "
               "the heap's used bytes after that GC (jcmd GC.heap_info), difference per "
               "session.", "",
               steady_table(reports), ""]
    if _rows(reports, "writes"):
        md += ["## Writes: every %d-th session setData's %d B %g times a second (%g s)"
               % (s["write_every"], s["value_size"], s["write_rate"], s["write_duration"]), "",
               writes_table(reports), ""]
    if _rows(reports, "expiry"):
        md += ["## Session expiry", "",
               "Silent sessions (socket open, nothing sent after their next ping, so the last "
               "packets spread over a ping interval) with an ephemeral each, watched by "
               "another session: error = (NodeDeleted arrival - the session's last packet) - "
               "negotiated timeout. Both servers expire sessions on tickTime boundaries, so "
               "0..tickTime is expected; early = negative errors.", "",
               expiry_table(reports), ""]
    return "\n".join(md + fl.error_lines(reports))


def chart_panels(s, reports):
    xs = [str(n) for n in s["step_counts"]]

    def series(get):
        out = {}
        for lab in s["labels"]:
            vals = []
            for n in s["step_counts"]:
                r = next((x for x in reports if x["label"] == lab and x["sessions"] == n), None)
                try:
                    vals.append(get(r))
                except (TypeError, KeyError):
                    vals.append(None)
            out[lab] = vals
        return out
    return [("connect storm, sessions/s", xs, series(lambda r: r["connect"]["rate"])),
            ("server CPU % during steady pings", xs,
             series(lambda r: r["steady"]["cpu"]["total"])),
            ("private KB per session", xs, series(lambda r: r["memory"]["per_session_kb"])),
            ("setData p99 ms (10% writers)", xs, series(lambda r: r["writes"]["p99_ms"])),
            ("expiry error p99 ms", xs, series(lambda r: r["expiry"]["error_p99_ms"]))]


def sessions_main(args, argv=None):
    def body(s, base, log):
        est = sum(plan_seconds(s, n) for n in s["step_counts"]) * len(s["kinds"])
        log("%d run(s), estimated %s" % (len(s["step_counts"]) * len(s["kinds"]),
                                         fl.fmt_duration(est)))
        t0 = time.monotonic()
        reports, failed = [], set()
        for n in s["step_counts"]:
            for kind, lab in zip(s["kinds"], s["labels"]):
                if lab in failed:
                    reports.append({"label": lab, "kind": kind, "sessions": n, "skipped": True})
                    log("skip %s at %d sessions (it failed a smaller step)" % (lab, n))
                    continue
                log("%s, %d sessions (elapsed %s)"
                    % (lab, n, fl.fmt_duration(time.monotonic() - t0)))
                r = run_one(s, kind, lab, n, base, log)
                reports.append(r)
                if not took_all(r):
                    failed.add(lab)
        return reports, {"limits": limit_rows(reports, s["labels"])}
    return fl.command_main(args, argv, "sessions", _sessions_settings, body,
                           lambda s: max(s["step_counts"]) + 20000, render_markdown,
                           chart_panels)
