"""Four-letter words on the client port: ruok, srvr, stat, conf, mntr, envi, isro, wchs, wchc,
wchp, dirs, cons, crst, srst, dump.

Output shapes copy Apache ZooKeeper 3.8's (checked against the real server). Read-only: it only
formats what the core reports.
"""

import os
import platform
import socket
import sys
import time

from zkpy import compiled
from zkpy import ZK_VERSION_STRING


class Report(object):
    """What the four-letter words print: the core's state plus every frontend's snapshot
    (Frontend.snapshot(): connections, packets, latency, watches), merged across workers."""

    def __init__(self, core, frontends, peer):
        self.core = core
        self.config = core.config
        self.peer = peer              # the connection asking, shown as "[0](queued=0,...)"
        self.frontends = frontends
        self.connections = [c for f in frontends for c in f["connections"]
                            if c["peer"] != peer]
        self.packets_received = sum(f["packets_received"] for f in frontends)
        self.packets_sent = sum(f["packets_sent"] for f in frontends)
        count = sum(f["latency_count"] for f in frontends)
        mins = [f["latency_min"] for f in frontends if f["latency_min"] is not None]
        self.latency = (min(mins) if mins else 0,
                        sum(f["latency_sum"] for f in frontends) / count if count else 0.0,
                        max([f["latency_max"] for f in frontends] or [0]))
        self.data_watches = {}
        for f in frontends:
            for path, sids in f["data_watches"].items():
                self.data_watches.setdefault(path, []).extend(sids)
        self.watch_count = sum(f["watch_count"] for f in frontends)


def _server_lines(rep):
    lo, avg, hi = rep.latency
    core = rep.core
    return [
        "Latency min/avg/max: %d/%.4g/%d" % (lo, avg, hi),
        "Received: %d" % rep.packets_received,
        "Sent: %d" % rep.packets_sent,
        "Connections: %d" % (len(rep.connections) + 1),
        "Outstanding: %d" % core.committer.pending,
        "Zxid: 0x%x" % core.last_zxid,
        "Mode: %s" % core.mode,
        # ZooKeeper's count includes the root twice (it is keyed both "" and "/").
        "Node count: %d" % (core.view.node_count() + 1),
    ]


def _dir_size(path):
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(root, f))
            except OSError:
                pass
    return total


def srvr(rep):
    return "\n".join(["Zookeeper version: " + ZK_VERSION_STRING] + _server_lines(rep)) + "\n"


def _short_line(c):
    return " /%s[1](queued=%d,recved=%d,sent=%d)" % (c["peer"], c["queued"], c["received"],
                                                    c["sent"])


def stat(rep):
    lines = ["Zookeeper version: " + ZK_VERSION_STRING, "Clients:"]
    lines.extend(_short_line(c) for c in sorted(rep.connections, key=lambda c: c["peer"]))
    lines.append(" /%s[0](queued=0,recved=1,sent=0)" % rep.peer)
    lines.append("")
    return "\n".join(lines + _server_lines(rep)) + "\n"


def conf(rep):
    cfg = rep.config
    return cfg.to_conf_text(data_dir_size=_dir_size(cfg.data_dir),
                            data_log_size=_dir_size(cfg.data_log_dir))


def mntr(rep):
    lo, avg, hi = rep.latency
    core = rep.core
    view = core.view
    gc = core.committer.stats()
    try:
        fds = len(os.listdir("/proc/self/fd"))
    except OSError:
        fds = 0
    try:
        import resource
        max_fds = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except Exception:
        max_fds = 0
    values = [
        ("version", ZK_VERSION_STRING),
        ("server_state", rep.core.mode),
        ("ephemerals_count", len(view.all_ephemerals())),
        ("num_alive_connections", len(rep.connections) + 1),
        ("avg_latency", round(avg, 4)),
        ("outstanding_requests", core.committer.pending),
        ("znode_count", view.node_count() + 1),
        ("global_sessions", len(core.sessions.sessions)),
        ("local_sessions", 0),
        ("packets_sent", rep.packets_sent),
        ("packets_received", rep.packets_received),
        ("watch_count", rep.watch_count),
        ("min_latency", lo),
        ("max_latency", hi),
        ("open_file_descriptor_count", fds),
        ("max_file_descriptor_count", max_fds),
        ("uptime", int((time.monotonic() - core.started) * 1000)),
        ("connection_drop_probability", 0.0),
        ("outstanding_tls_handshake", 0),
        ("auth_failed_count", 0),
        ("worker_processes", len(rep.frontends) if core.config.workers else 0),
        ("avg_fsynctime", round(gc["avg_fsynctime"], 4)),
        ("min_fsynctime", int(gc["min_fsynctime"])),
        ("max_fsynctime", int(gc["max_fsynctime"])),
        ("cnt_fsynctime", gc.get("cnt_fsynctime", 0)),
        ("sum_fsynctime", int(gc.get("sum_fsynctime", 0))),
        # fsyncs of the log slower than fsync.warningthresholdms (ZooKeeper's
        # ServerStats.fsyncThresholdExceedCount)
        ("fsync_threshold_exceed_count", gc.get("fsync_threshold_exceed_count", 0)),
        ("avg_sync_processor_batch_size", round(gc["records"] / gc["batches"], 4)
         if gc["batches"] else 0.0),
        ("max_sync_processor_batch_size", gc["max_batch_size"]),
        ("cnt_sync_processor_batch_size", gc["batches"]),
        ("sum_sync_processor_batch_size", gc["records"]),
    ]
    return "".join("zk_%s\t%s\n" % kv for kv in values)


def envi(rep):
    lines = [
        "Environment:",
        "zookeeper.version=" + ZK_VERSION_STRING,
        "host.name=" + socket.gethostname(),
        "python.version=" + platform.python_version(),
        "python.implementation=" + platform.python_implementation(),
        "python.executable=" + sys.executable,
        "os.name=" + platform.system(),
        "os.arch=" + platform.machine(),
        "os.version=" + platform.release(),
        "user.name=" + (os.environ.get("USER") or str(os.getuid())),
        "user.home=" + os.path.expanduser("~"),
        "user.dir=" + os.getcwd(),
    ]
    # Which twin of each compiled module this server runs (zkpy.compiled).
    lines += ["zkpy.compiled.%s=%s" % (name, choice) for name, choice in compiled.choices()]
    return "\n".join(lines) + "\n"


def wchs(rep):
    # ZooKeeper's wchs/wchc/wchp report the data-watch table: data, exists, persistent and
    # persistent recursive watches (not the child table).
    table = rep.data_watches
    sessions = set(s for sids in table.values() for s in sids)
    total = sum(len(sids) for sids in table.values())
    return "%d connections watching %d paths\nTotal watches:%d\n" % (
        len(sessions), len(table), total)


def wchc(rep):
    by_session = {}
    for path, sids in rep.data_watches.items():
        for sid in sids:
            by_session.setdefault(sid, []).append(path)
    out = ["0x%x\n" % sid + "".join("\t%s\n" % p for p in paths)
           for sid, paths in by_session.items()]
    return "".join(out) + "\n"


def wchp(rep):
    out = [path + "\n" + "".join("\t0x%x\n" % sid for sid in sids)
           for path, sids in rep.data_watches.items()]
    return "".join(out) + "\n"


def dirs(rep):
    cfg = rep.config
    return "datadir_size: %d\nlogdir_size: %d\n" % (_dir_size(cfg.data_dir),
                                                     _dir_size(cfg.data_log_dir))


def _cons_line(c):
    line = _short_line(c)[:-1]
    if c["session_id"]:
        line += (",sid=0x%x,lop=%s,est=%d,to=%d,lcxid=0x%x,lzxid=0x%x,lresp=%d,llat=%d,"
                 "minlat=%d,avglat=%d,maxlat=%d" % (
                     c["session_id"], c["last_op"], c["established_ms"], c["timeout_ms"],
                     c["last_cxid"] & 0xFFFFFFFF, c["last_zxid"] & 0xFFFFFFFFFFFFFFFF,
                     c["last_response_ms"], c["last_latency"], c["latency_min"],
                     c["latency_avg"], c["latency_max"]))
    return line + ")"


def cons(rep):
    lines = [_cons_line(c) for c in sorted(rep.connections, key=lambda c: c["peer"])]
    lines.append(" /%s[0](queued=0,recved=1,sent=0)" % rep.peer)
    return "\n".join(lines) + "\n\n"


def crst(rep):
    return "Connection stats reset.\n"


def srst(rep):
    return "Server stats reset.\n"


def dump(rep):
    core = rep.core
    sessions = core.sessions.sessions
    lines = ["SessionTracker dump:", "Session Sets (%d)/(%d):" % (len(sessions), len(sessions))]
    by_deadline = {}
    for s in sessions.values():
        by_deadline.setdefault(s.deadline_ms, []).append(s.session_id)
    for deadline in sorted(by_deadline):
        ids = by_deadline[deadline]
        lines.append("%d expire at %s:" % (len(ids), time.strftime(
            "%a %b %d %H:%M:%S UTC %Y", time.gmtime(deadline / 1000.0))))
        lines.extend("\t0x%x" % sid for sid in ids)
    owners = {}
    for owner, path in core.view.all_ephemerals():
        owners.setdefault(owner, []).append(path)
    lines.append("ephemeral nodes dump:")
    lines.append("Sessions with Ephemerals (%d):" % len(owners))
    for owner, paths in owners.items():
        lines.append("0x%x:" % owner)
        lines.extend("\t%s" % p for p in paths)
    lines.append("Connections dump:")
    n = len(rep.connections) + 1
    lines.append("Connections Sets (1)/(%d):" % n)
    lines.append("%d expire at %s:" % (n, time.strftime("%a %b %d %H:%M:%S UTC %Y",
                                                         time.gmtime())))
    lines.append("\tip: /%s sessionId: 0x0" % rep.peer)
    lines.extend("\tip: /%s sessionId: 0x%x" % (c["peer"], c["session_id"])
                 for c in rep.connections)
    return "\n".join(lines) + "\n"


def ruok(rep):
    return "imok"


def isro(rep):
    core = rep.core
    return "ro" if core.read_only else "rw" if core.serving else "null"


COMMANDS = {"ruok": ruok, "srvr": srvr, "stat": stat, "conf": conf, "mntr": mntr,
            "envi": envi, "isro": isro, "wchs": wchs, "wchc": wchc, "wchp": wchp, "dirs": dirs,
            "cons": cons, "crst": crst, "srst": srst, "dump": dump}


# Commands that change state: the caller resets the counters (in every worker) first.
RESETS = {"crst": "connections", "srst": "server"}


def run(cmd, report):
    fn = COMMANDS.get(cmd)
    if fn is None:
        return "%s is not implemented yet\n" % cmd
    if not (report.core.serving or report.core.read_only) and cmd not in _ALWAYS:
        return NOT_SERVING + "\n"
    return fn(report)


# What a server without a quorum still answers (ZooKeeper checks isZKServerRunning in the rest).
_ALWAYS = ("ruok", "envi", "isro")
NOT_SERVING = "This ZooKeeper instance is not currently serving requests"
