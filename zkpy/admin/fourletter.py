"""Four-letter words on the client port: ruok, srvr, stat, conf, mntr, envi, isro, wchs, wchc,
wchp, dirs, cons, crst, srst, dump.

Output shapes copy Apache ZooKeeper 3.8's (checked against the real server). Read-only: it only
formats what the core reports.
"""

import os
import platform
import socket
import sys

from zkpy import ZK_VERSION_STRING


def _latency(stats):
    if not stats.latency_count:
        return 0, 0.0, 0
    return stats.latency_min, stats.latency_sum / stats.latency_count, stats.latency_max


def _server_lines(core):
    lo, avg, hi = _latency(core.stats)
    return [
        "Latency min/avg/max: %d/%.4g/%d" % (lo, avg, hi),
        "Received: %d" % core.stats.packets_received,
        "Sent: %d" % core.stats.packets_sent,
        "Connections: %d" % len(core.connections),
        "Outstanding: %d" % core.committer.pending,
        "Zxid: 0x%x" % core.last_zxid,
        "Mode: standalone",
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


def srvr(core, conn):
    return "\n".join(["Zookeeper version: " + ZK_VERSION_STRING] + _server_lines(core)) + "\n"


def stat(core, conn):
    lines = ["Zookeeper version: " + ZK_VERSION_STRING, "Clients:"]
    for c in sorted(core.connections, key=lambda c: c.peer):
        if c is conn or c.closed:
            continue
        lines.append(" /%s[1](queued=%d,recved=%d,sent=%d)" % (
            c.peer, len(c.pending), c.received, c.sent))
    lines.append(_cons_line(conn, conn))
    lines.append("")
    return "\n".join(lines + _server_lines(core)) + "\n"


def conf(core, conn):
    cfg = core.config
    return cfg.to_conf_text(data_dir_size=_dir_size(cfg.data_dir),
                            data_log_size=_dir_size(cfg.data_log_dir))


def mntr(core, conn):
    lo, avg, hi = _latency(core.stats)
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
        ("server_state", "standalone"),
        ("ephemerals_count", len(view.all_ephemerals())),
        ("num_alive_connections", len(core.connections)),
        ("avg_latency", round(avg, 4)),
        ("outstanding_requests", core.committer.pending),
        ("znode_count", view.node_count() + 1),
        ("global_sessions", len(core.sessions.sessions)),
        ("local_sessions", 0),
        ("packets_sent", core.stats.packets_sent),
        ("packets_received", core.stats.packets_received),
        ("watch_count", core.watches.count()),
        ("min_latency", lo),
        ("max_latency", hi),
        ("open_file_descriptor_count", fds),
        ("max_file_descriptor_count", max_fds),
        ("uptime", int((__import__("time").monotonic() - core.stats.started) * 1000)),
        ("connection_drop_probability", 0.0),
        ("outstanding_tls_handshake", 0),
        ("auth_failed_count", 0),
        ("avg_fsynctime", round(gc["avg_fsynctime"], 4)),
        ("min_fsynctime", int(gc["min_fsynctime"])),
        ("max_fsynctime", int(gc["max_fsynctime"])),
        ("cnt_fsynctime", gc.get("cnt_fsynctime", 0)),
        ("sum_fsynctime", int(gc.get("sum_fsynctime", 0))),
        ("avg_sync_processor_batch_size", round(gc["records"] / gc["batches"], 4)
         if gc["batches"] else 0.0),
        ("max_sync_processor_batch_size", gc["max_batch_size"]),
        ("cnt_sync_processor_batch_size", gc["batches"]),
        ("sum_sync_processor_batch_size", gc["records"]),
    ]
    return "".join("zk_%s\t%s\n" % kv for kv in values)


def envi(core, conn):
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
    return "\n".join(lines) + "\n"


def _data_watches(core):
    # ZooKeeper's wchs/wchc/wchp report the data-watch table (data and exists watches) only.
    return core.watches.data


def wchs(core, conn):
    table = _data_watches(core)
    watchers = set()
    for ws in table.values():
        watchers |= ws
    total = sum(len(ws) for ws in table.values())
    return "%d connections watching %d paths\nTotal watches:%d\n" % (
        len(watchers), len(table), total)


def wchc(core, conn):
    by_session = {}
    for path, ws in _data_watches(core).items():
        for w in ws:
            by_session.setdefault(w.session_id, []).append(path)
    out = []
    for sid, paths in by_session.items():
        out.append("0x%x\n" % sid + "".join("\t%s\n" % p for p in paths))
    return "".join(out) + "\n"


def wchp(core, conn):
    out = []
    for path, ws in _data_watches(core).items():
        out.append(path + "\n" + "".join("\t0x%x\n" % w.session_id for w in ws))
    return "".join(out) + "\n"


def dirs(core, conn):
    cfg = core.config
    return "datadir_size: %d\nlogdir_size: %d\n" % (_dir_size(cfg.data_dir),
                                                     _dir_size(cfg.data_log_dir))


def _cons_line(c, this):
    if c is this:
        return " /%s[0](queued=0,recved=1,sent=0)" % c.peer
    line = " /%s[1](queued=%d,recved=%d,sent=%d" % (c.peer, len(c.pending), c.received, c.sent)
    if c.session_id:
        lo, avg, hi = c.latency_min or 0, (c.latency_sum // c.latency_count
                                           if c.latency_count else 0), c.latency_max
        line += (",sid=0x%x,lop=%s,est=%d,to=%d,lcxid=0x%x,lzxid=0x%x,lresp=%d,llat=%d,"
                 "minlat=%d,avglat=%d,maxlat=%d" % (
                     c.session_id, c.last_op, c.established_ms, c.timeout_ms,
                     c.last_cxid & 0xFFFFFFFF, c.last_zxid & 0xFFFFFFFFFFFFFFFF,
                     c.last_response_ms, c.last_latency, lo, avg, hi))
    return line + ")"


def cons(core, conn):
    conns = sorted((c for c in core.connections if not c.closed or c is conn),
                   key=lambda c: c.peer)
    return "".join(_cons_line(c, conn) + "\n" for c in conns) + "\n"


def crst(core, conn):
    for c in core.connections:
        c.reset_stats()
    return "Connection stats reset.\n"


def srst(core, conn):
    core.stats.reset()
    return "Server stats reset.\n"


def dump(core, conn):
    import time as _time
    sessions = core.sessions.sessions
    lines = ["SessionTracker dump:", "Session Sets (%d)/(%d):" % (len(sessions), len(sessions))]
    by_deadline = {}
    for s in sessions.values():
        by_deadline.setdefault(s.deadline_ms, []).append(s.session_id)
    for deadline in sorted(by_deadline):
        ids = by_deadline[deadline]
        lines.append("%d expire at %s:" % (len(ids), _time.strftime(
            "%a %b %d %H:%M:%S UTC %Y", _time.gmtime(deadline / 1000.0))))
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
    conns = [c for c in core.connections if not c.closed or c is conn]
    lines.append("Connections Sets (1)/(%d):" % len(conns))
    lines.append("%d expire at %s:" % (len(conns), _time.strftime(
        "%a %b %d %H:%M:%S UTC %Y", _time.gmtime())))
    lines.extend("\tip: /%s sessionId: 0x%x" % (c.peer, c.session_id) for c in conns)
    return "\n".join(lines) + "\n"


def ruok(core, conn):
    return "imok"


def isro(core, conn):
    return "rw"


COMMANDS = {"ruok": ruok, "srvr": srvr, "stat": stat, "conf": conf, "mntr": mntr,
            "envi": envi, "isro": isro, "wchs": wchs, "wchc": wchc, "wchp": wchp, "dirs": dirs,
            "cons": cons, "crst": crst, "srst": srst, "dump": dump}


def run(cmd, core, conn):
    fn = COMMANDS.get(cmd)
    if fn is None:
        return "%s is not implemented yet\n" % cmd
    return fn(core, conn)
