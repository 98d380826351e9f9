"""Many data watches on one standalone server, zkpy vs Apache ZooKeeper 3.8.

Owns ``zkpy-bench watches`` (also ``bench/watches``). Per server kind (one at a time, a fresh
standalone server from zkpy.bench.servers, as `zkpy-bench sessions` starts it):

1. build ``--znodes`` znodes of ``--value-size`` B, /watches-bench/n<i> (scaling.build_tree:
   pipelined creates);
2. ``--sessions`` sessions (zkpy.bench.fleet processes) set ``--watches`` data watches in all,
   getData (or exists, ``--watch-op``) with watch=true, ``--window`` in flight per session:
   session s watches the znodes (s * per + k) mod znodes, k < per = watches / sessions, so each
   session watches distinct znodes and each znode has watches / znodes watchers (defaults:
   100 sessions x 10k = 1M watches on 100k znodes, 10 each). Reported: the time from the
   common start to the last reply, and the server's private memory (anonymous, all its
   processes) before and after, per watch;
3. one more session setData's ``--writes`` watched znodes (spread over the tree), all sent at
   once: the time from that send to the last NodeDataChanged event (10 per znode by default),
   and the p50/p99 of each event's delay from the send.

Output: watches.md, watches.json, watches.png (matplotlib) in bench/results/watches-<date>/.
The pure parts (`watched`, `written`, `expected_events`, `event_stats`, `watches_table`) do no
I/O. Nothing in the server imports this module.
"""

import time

from zkpy.bench import fleet as fl
from zkpy.bench import loadgen, scaling, sessions

__all__ = ["watched", "watch_requests", "written", "expected_events", "event_stats",
           "watches_table", "add_watches_parser", "watches_main"]

DEFAULTS = dict(znodes=100000, watches=1000000, sessions=100, processes=2, writes=1000,
                watch_op="getdata", window=64, heap="4g", backlog=1024, value_size=100,
                build_processes=2, session_timeout=30000)
QUICK = dict(znodes=2000, watches=20000, sessions=20, writes=100)
ROOT = "/watches-bench"


# --- the plan (pure) ---------------------------------------------------------------------------

def watched(sid, per, znodes):
    """The znode indices session `sid` watches: `per` consecutive ones (mod znodes) from
    sid * per."""
    return [(sid * per + k) % znodes for k in range(per)]


def watch_requests(sid, per, znodes, root, op):
    """(op code, body) of session `sid`'s watch-setting requests (a fleet "watch" maker)."""
    from zkpy.proto import consts as c, records as r
    code, cls = ((c.OP_GET_DATA, r.GetDataRequest) if op == "getdata"
                 else (c.OP_EXISTS, r.ExistsRequest))
    for i in watched(sid, per, znodes):
        yield code, loadgen._enc(cls("%s/n%d" % (root, i), True))


def written(writes, znodes):
    """The znode indices written to fire the watches: `writes` of them, evenly spread."""
    writes = min(writes, znodes)
    step = znodes // writes
    return [i * step for i in range(writes)]


def expected_events(sids, per, znodes, targets):
    """How many watch events the sessions `sids` get when the znodes `targets` are written."""
    t = set(targets)
    return sum(sum(1 for i in watched(sid, per, znodes) if i in t) for sid in sids)


def event_stats(t_send_ns, events, expected):
    """events: [(arrival ns, path)] -> {events, expected, missing, last_ms (send to the last
    event), first_ms, p50_ms, p99_ms (each event's delay from the send)}."""
    delays = [(t - t_send_ns) / 1e6 for t, _ in events]
    p = loadgen.percentiles(delays, (0.5, 0.99))
    r = lambda v: None if v is None else round(v, 2)  # noqa: E731
    return {"events": len(delays), "expected": expected, "missing": expected - len(delays),
            "first_ms": r(min(delays)) if delays else None,
            "last_ms": r(max(delays)) if delays else None,
            "p50_ms": r(p[0.5]), "p99_ms": r(p[0.99])}


def _v(x, fmt="%.1f"):
    return "-" if x is None else fmt % x


def watches_table(reports):
    lines = ["| server | znodes | watches (sessions x each) | build s | set watches s "
             "(watches/s) | private MB before -> after | bytes per watch | JVM live heap "
             "bytes per watch | writes | events "
             "(expected) | send to last event ms | event delay p50 / p99 ms | all writes "
             "acked ms |", "|---|---:|---|---:|---:|---|---:|---:|---:|---|---:|---|---:|"]
    for r in reports:
        w, f, m = r.get("watch") or {}, r.get("fire") or {}, r.get("memory") or {}
        lines.append("| %s | %d | %d (%d x %d) | %s | %s (%s) | %s -> %s | %s | %s | %d | "
                     "%s (%s) | %s | %s / %s | %s |" % (
                         r["label"], r["znodes"], r["watches"], r["sessions"], r["per_session"],
                         _v(r.get("build_s")), _v(w.get("seconds"), "%.2f"),
                         _v(w.get("rate"), "%.0f"), _v(m.get("before_mb")),
                         _v(m.get("after_mb")), _v(m.get("per_watch_bytes"), "%.0f"),
                         _v(m.get("heap_per_watch_bytes"), "%.0f"), r["writes"],
                         _v(f.get("events"), "%d"), _v(f.get("expected"), "%d"),
                         _v(f.get("last_ms")), _v(f.get("p50_ms")), _v(f.get("p99_ms")),
                         _v(f.get("acked_ms"))))
    return "\n".join(lines)


# --- one server ---------------------------------------------------------------------------------

def run_one(s, kind, label, base, log):
    from zkpy.bench import servers
    from zkpy.proto import consts as c, records as rec
    per = s["watches"] // s["sessions"]
    rep = {"label": label, "kind": kind, "znodes": s["znodes"], "sessions": s["sessions"],
           "per_session": per, "watches": per * s["sessions"], "writes": s["writes"],
           "watch_op": s["watch_op"]}
    cluster = servers.make_cluster(
        kind, "standalone", base, label="%s-watches" % kind,
        jvm_opts=("-Xmx%s" % s["heap"], "-Dzookeeper.jmx.log4j.disable=true"),
        extra_cfg={"clientPortListenBacklog": str(s["backlog"])} if s["backlog"] > 0 else {})
    server = cluster.members[0]
    fleet = None
    try:
        cluster.start()
        rep.update(server=cluster.describe(), version=cluster.version)
        addr = cluster.addrs[0]
        rep["build_s"] = round(scaling.build_tree(addr, ROOT, 0, s["znodes"], s["value_size"],
                                                  s["build_processes"], log=log, label=label), 2)
        log("  %s: %d znodes built in %.1f s" % (label, s["znodes"], rep["build_s"]))
        fleet = fl.FleetProcs(addr, s["sessions"], s["processes"], s["session_timeout"])
        conn = sessions.connect_summary(
            [x[1] for x in fleet.call(("connect", time.perf_counter_ns()), 60.0)],
            s["sessions"])
        if conn["ok"] != s["sessions"]:
            raise loadgen.BenchError("%d of %d sessions connected: %s"
                                     % (conn["ok"], s["sessions"], conn["errors"]))
        time.sleep(1.0)
        mem0 = fl.server_memory(server)
        go = time.perf_counter_ns() + 200_000_000
        got = fleet.call(("watch", go, watch_requests,
                          (per, s["znodes"], ROOT, s["watch_op"]), s["window"]),
                         120.0 + rep["watches"] / 1000.0)
        secs = (max(x[1] for x in got) - go) / 1e9
        rep["watch"] = {"seconds": round(secs, 3), "rate": round(rep["watches"] / secs, 1),
                        "errors": sessions._merge(x[2] for x in got)}
        log("  %d watches set in %.2f s (%.0f/s)%s" % (
            rep["watches"], secs, rep["watch"]["rate"],
            "; errors %s" % rep["watch"]["errors"] if rep["watch"]["errors"] else ""))
        time.sleep(2.0)
        mem1 = fl.server_memory(server)
        rep["memory"] = {"before_mb": round(mem0["anon"] / 1024, 1),
                         "after_mb": round(mem1["anon"] / 1024, 1),
                         "per_watch_bytes": round((mem1["anon"] - mem0["anon"]) * 1024
                                                  / rep["watches"], 1),
                         "heap_per_watch_bytes": fl.heap_delta_bytes(mem0, mem1,
                                                                     rep["watches"]),
                         "detail": [mem0, mem1]}
        targets = written(s["writes"], s["znodes"])
        expect = [expected_events(sids, per, s["znodes"], targets) for sids in fleet.split]
        fleet.send_each([("listen", k) for k in expect])
        writer = loadgen.SyncClient(addr)
        value = b"y" * s["value_size"]
        reqs = [(c.OP_SET_DATA, loadgen._enc(rec.SetDataRequest("%s/n%d" % (ROOT, i), value,
                                                                  -1))) for i in targets]
        try:
            t_send = time.perf_counter_ns()
            res = writer.call_many(reqs, len(reqs))
            t_acked = time.perf_counter_ns()
        finally:
            writer.close()
        bad = sum(1 for err, _ in res if err)
        events = []
        for x in fleet.recv_all(30.0 + sum(expect) / 500.0, nudge=("report",)):
            events.extend(x[1])
        f = rep["fire"] = event_stats(t_send, events, sum(expect))
        f.update(acked_ms=round((t_acked - t_send) / 1e6, 2), write_errors=bad)
        log("  %d writes: %d of %d events, the last %s ms after the send; delay p50 %s p99 "
            "%s ms" % (len(targets), f["events"], f["expected"], _v(f["last_ms"]),
                       _v(f["p50_ms"]), _v(f["p99_ms"])))
    except (loadgen.BenchError, servers.ServerError, OSError, ValueError) as e:
        fl.record_error(rep, e, log)
    finally:
        fl.finish_run(rep, server, fleet, cluster)
    return rep


# --- the command -------------------------------------------------------------------------------

def add_watches_parser(sub):
    p = sub.add_parser("watches", help="zkpy vs Apache ZooKeeper 3.8: 1M data watches on 100k "
                       "znodes (time, memory per watch, event fan-out delay)",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("--znodes", type=int, help="znodes (default %d)" % DEFAULTS["znodes"])
    p.add_argument("--watches", type=int, help="watches in all (default %d)"
                   % DEFAULTS["watches"])
    p.add_argument("--sessions", type=int, help="watching sessions (default %d)"
                   % DEFAULTS["sessions"])
    p.add_argument("--processes", type=int, help="client processes (default %d)"
                   % DEFAULTS["processes"])
    p.add_argument("--writes", type=int, help="watched znodes written (default %d)"
                   % DEFAULTS["writes"])
    p.add_argument("--watch-op", choices=("getdata", "exists"),
                   help="how watches are set (default %s)" % DEFAULTS["watch_op"])
    p.add_argument("--window", type=int, help="watch requests in flight per session "
                   "(default %d)" % DEFAULTS["window"])
    p.add_argument("--value-size", type=int, help="znode bytes (default %d)"
                   % DEFAULTS["value_size"])
    p.add_argument("--heap", help="ZooKeeper's -Xmx (default %s)" % DEFAULTS["heap"])
    p.add_argument("--backlog", type=int, help="clientPortListenBacklog of both (default %d; "
                   "0: each server's own)" % DEFAULTS["backlog"])
    p.add_argument("--servers", default="zkpy,apache", help="kinds, in run order")
    p.add_argument("--quick", action="store_true", help="a small smoke run (%s)"
                   % ", ".join("%s=%s" % kv for kv in QUICK.items()))
    p.add_argument("--out", help="output directory (default bench/results/watches-<date>)")
    p.add_argument("--data-dir", help="where the servers' directories go (default /tmp)")
    p.add_argument("--keep-data", action="store_true")
    p.add_argument("--no-install", action="store_true",
                   help="fail instead of installing Apache ZooKeeper")
    return p


def _watches_settings(args):
    s = sessions.settings_from_args(args, "watches", DEFAULTS, QUICK)
    if min(s["znodes"], s["sessions"], s["writes"], s["processes"], s["window"]) < 1:
        raise ValueError("--znodes, --sessions, --writes, --processes, --window must be >= 1")
    per = s["watches"] // s["sessions"]
    if not 1 <= per <= s["znodes"]:
        raise ValueError("--watches / --sessions = %d watches per session: between 1 and "
                         "--znodes (%d): a session watches distinct znodes"
                         % (per, s["znodes"]))
    return s


def plan_seconds(s):
    return 8.0 + s["znodes"] / 8000.0 + s["watches"] / 20000.0 + 6.0


def render(s, reports, machine, command, started, wall):
    per = s["watches"] // s["sessions"]
    md = fl.header("Watches: %s (standalone)" % " vs ".join(s["labels"]), reports, machine,
                   command, started, wall)
    md += ["%d znodes of %d B; %d sessions x %d %s watches (%s watchers per znode), %d in "
           "flight per session, over %d client processes; then %d watched znodes written at "
           "once by another session. ZooKeeper with -Xmx%s; both with maxClientCnxns=0, "
           "forceSync=yes%s. Private memory: anonymous memory summed over the server's "
           "processes, after the sessions connected and 2 s after the last watch was set "
           "(ZooKeeper: right after a full GC, jcmd GC.run, so it is live data plus the heap "
           "G1 keeps committed, not the garbage of setting the watches; JVM live heap: the "
           "heap's used bytes after that GC, jcmd GC.heap_info)."
           % (s["znodes"], s["value_size"], s["sessions"], per, s["watch_op"],
              "%g" % (per * s["sessions"] / s["znodes"]), s["window"], s["processes"],
              s["writes"], s["heap"], ", clientPortListenBacklog=%d" % s["backlog"]
              if s["backlog"] > 0 else ""), "", watches_table(reports), ""]
    md += fl.error_lines(reports)
    return "\n".join(md)


def chart_panels(s, reports):
    xs = ["%d watches / %d znodes" % (s["watches"], s["znodes"])]

    def series(get):
        out = {}
        for r in reports:
            try:
                out[r["label"]] = [get(r)]
            except (TypeError, KeyError):
                out[r["label"]] = [None]
        return out
    return [("time to set the watches, s", xs, series(lambda r: r["watch"]["seconds"])),
            ("private bytes per watch", xs, series(lambda r: r["memory"]["per_watch_bytes"])),
            ("writes sent -> last watch event, ms", xs, series(lambda r: r["fire"]["last_ms"])),
            ("event delay p99, ms", xs, series(lambda r: r["fire"]["p99_ms"]))]


def watches_main(args, argv=None):
    def body(s, base, log):
        log("estimated %s" % fl.fmt_duration(plan_seconds(s) * len(s["kinds"])))
        reports = []
        for kind, lab in zip(s["kinds"], s["labels"]):
            log("%s: %d watches on %d znodes" % (lab, s["watches"], s["znodes"]))
            reports.append(run_one(s, kind, lab, base, log))
        return reports, {}
    return fl.command_main(args, argv, "watches", _watches_settings, body,
                           lambda s: s["sessions"] + 20000, render, chart_panels)
