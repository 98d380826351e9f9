"""`zkpy-bench failover`: how long a 3-node ensemble takes to accept writes again after kill -9
of its leader, zkpy vs Apache ZooKeeper 3.8, and whether any acknowledged write was lost.

One repetition: a fresh 3-node pseudo-cluster (zkpy.bench.servers, topology "ensemble3", waited
on until srvr shows one leader and two followers); ``--sessions`` writer sessions, session i
connected first to member i mod 3 and holding the whole host list (on a lost connection it
tries the next member every RETRY_S, reattaching its session with its lastZxidSeen, as a
ZooKeeper client does); each writes setData on its own znode /failover/w<i> with the value
"<i>:<seq>", one request in flight, as fast as it is answered. After ``--warm`` seconds the
leader's process group is killed with SIGKILL (time t0). Measured:

  - **writes again**: t0 to the first acknowledged write *sent after t0* by a session that was
    connected to a surviving member at t0 (the issue's figure);
  - **all sessions**: t0 to the moment every session (also those that were on the leader) has
    had a write sent after t0 acknowledged;
  - **new leader**: t0 to srvr showing a leader and a follower among the survivors (polled).

Then the writers stop, a fresh session per survivor syncs and reads every znode back: the value's
seq must be at least the last acknowledged seq of its session and the version at least the last
acknowledged version, and acknowledged versions must rise strictly; anything else is counted as
a lost acknowledged write. Repeated ``--reps`` times per server kind and tickTime (2000 and 500
by default; initLimit 10, syncLimit 5 for both). Writes a table (median and range of the reps)
and the JSON of every repetition into ``--out``.

The pure parts (`parse_value`, `recovery_times`, `lost_writes`, `summarize`, `failover_table`,
`settings_from_args`) do no I/O.
"""

import json
import shutil
import socket
import statistics
import struct
import sys
import tempfile
import threading
import time
from pathlib import Path

from zkpy import errors as _e
from zkpy.proto import codec as _codec
from zkpy.proto import consts as _c
from zkpy.proto import records as _r

__all__ = [
    "DEFAULTS", "parse_value", "recovery_times", "lost_writes", "summarize", "failover_table",
    "add_failover_parser", "settings_from_args", "run_once", "failover_main",
]

ROOT = "/failover"
RETRY_S = 0.05            # pause between two failed connection attempts of a writer
CONNECT_TIMEOUT_S = 2.0
SESSION_TIMEOUT_MS = 30000

DEFAULTS = dict(reps=3, sessions=6, warm=3.0, after=1.0, timeout=60.0,
                tick_times=(2000, 500), init_limit=10, sync_limit=5)

_LEN = struct.Struct(">i")
_enc = _codec.encode


# --- pure parts ------------------------------------------------------------------------------

def value_of(sid, seq):
    return b"%d:%d" % (sid, seq)


def parse_value(data):
    """b"<sid>:<seq>" -> (sid, seq); None for anything else (the empty setup value)."""
    try:
        sid, seq = bytes(data or b"").split(b":")
        return int(sid), int(seq)
    except ValueError:
        return None


def recovery_times(writers, t_kill, survivor_ports):
    """(writes again s, all sessions s) after the kill at `t_kill`.

    `writers`: [{"port_at_kill": port, "acks": [(t_sent, t_ack, ...), ...]}]. "writes again"
    is the first ack of a write sent at or after t_kill among the writers whose port at the
    kill is in `survivor_ports`; "all sessions" the latest of every writer's first such ack.
    None where no such ack exists (for "all": if any writer has none)."""
    firsts, survivors = [], []
    for w in writers:
        post = [a[1] for a in w["acks"] if a[0] >= t_kill]
        first = min(post) - t_kill if post else None
        firsts.append(first)
        if w["port_at_kill"] in survivor_ports and first is not None:
            survivors.append(first)
    again = min(survivors) if survivors else None
    every = max(firsts) if firsts and all(f is not None for f in firsts) else None
    return again, every


def lost_writes(acks, final):
    """Acknowledged writes of one session the final read does not account for.

    `acks`: [(seq, version)] in the order acknowledged; `final`: (seq, version) read back (None
    if the znode was unreadable or held no value of this session). A write is lost if its seq is
    above the final seq, or its version above the final version, or it did not get a version
    above every earlier acknowledged write's (two acknowledged writes with one version: one
    overwrote the other without committing it)."""
    if not acks:
        return 0
    lost = 0
    if final is None:
        return len(acks)
    fseq, fver = final
    top = None
    for seq, ver in acks:
        if seq > fseq or ver > fver or (top is not None and ver <= top):
            lost += 1
        top = ver if top is None else max(top, ver)
    return lost


def _stats(vals):
    vals = [v for v in vals if v is not None]
    if not vals:
        return None
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals),
            "n": len(vals)}


def summarize(results):
    """Rows per (kind, tickTime), in order of first appearance, from run_once results."""
    order, groups = [], {}
    for r in results:
        key = (r["kind"], r["tick_ms"])
        if key not in groups:
            order.append(key)
            groups[key] = []
        groups[key].append(r)
    rows = []
    for key in order:
        rs = groups[key]
        rows.append({
            "kind": key[0], "label": rs[0].get("label", key[0]), "tick_ms": key[1],
            "init_limit": rs[0]["init_limit"], "sync_limit": rs[0]["sync_limit"],
            "reps": len(rs),
            "again": _stats(r["again_s"] for r in rs),
            "all": _stats(r["all_s"] for r in rs),
            "election": _stats(r["election_s"] for r in rs),
            "no_recovery": sum(1 for r in rs if r["again_s"] is None),
            "acked": sum(r["acked"] for r in rs),
            "acked_after": sum(r["acked_after_kill"] for r in rs),
            "lost": sum(r["lost"] for r in rs),
            "errors": sum(r["error_replies"] for r in rs),
            "expired": sum(r["expired"] for r in rs),
            "failed": sum(1 for r in rs if r.get("failure")),
        })
    return rows


def _fmt_stats(st):
    if st is None:
        return "-"
    if st["n"] == 1 or st["min"] == st["max"]:
        return "%.2f" % st["median"]
    return "%.2f (%.2f-%.2f)" % (st["median"], st["min"], st["max"])


def failover_table(rows):
    """Markdown: per server and tickTime, the recovery times (s, median (range) of the reps),
    acknowledged writes and the lost ones."""
    lines = ["| server | tickTime ms | init/syncLimit | reps | writes again s | all sessions "
             "writing s | new leader (srvr) s | acked writes (after kill) | lost acked "
             "writes | error replies | expired sessions |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        again = _fmt_stats(r["again"])
        if r["no_recovery"]:
            again += " **%d rep(s) without recovery**" % r["no_recovery"]
        if r["failed"]:
            again += " **%d rep(s) failed**" % r["failed"]
        lost = "%d" % r["lost"] if not r["lost"] else "**%d**" % r["lost"]
        lines.append("| %s | %d | %d/%d | %d | %s | %s | %s | %d (%d) | %s | %d | %d |" % (
            r["label"], r["tick_ms"], r["init_limit"], r["sync_limit"], r["reps"], again,
            _fmt_stats(r["all"]), _fmt_stats(r["election"]), r["acked"], r["acked_after"],
            lost, r["errors"], r["expired"]))
    return "\n".join(lines)


# --- the writer sessions ---------------------------------------------------------------------

class _Lost(Exception):
    """The connection broke (EOF, reset, timeout, refused handshake)."""


def _recv_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise _Lost("connection closed by the server")
        buf += chunk
    return bytes(buf)


def _read_frame(sock):
    (n,) = _LEN.unpack(_recv_exact(sock, 4))
    if n < 0 or n > 1 << 24:
        raise _Lost("bad frame length %d" % n)
    return _recv_exact(sock, n)


class Writer(threading.Thread):
    """One session writing setData on its own znode, one request in flight; fails over along
    `hosts` (starting with hosts[0]) with its session id, password and lastZxidSeen."""

    def __init__(self, sid, hosts, path, clock=time.monotonic):
        super().__init__(name="writer-%d" % sid, daemon=True)
        self.sid = sid
        self.hosts = list(hosts)
        self.path = path
        self.clock = clock
        self.next_host = 0
        self.session_id = 0
        self.passwd = b"\0" * 16
        self.last_zxid = 0
        self.read_timeout = SESSION_TIMEOUT_MS / 1000.0 * 2 / 3
        self.port = None               # member port of the current connection, None if none
        self.acks = []                 # (t_sent, t_ack, seq, version, zxid, port)
        self.errors = []               # (t, message): error replies
        self.events = []               # (t, what)
        self.expired = 0
        self.stop_flag = threading.Event()
        self.crash = None

    def _connect_once(self, addr):
        sock = socket.create_connection(addr, timeout=CONNECT_TIMEOUT_S)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            req = _r.ConnectRequest(0, self.last_zxid, SESSION_TIMEOUT_MS, self.session_id,
                                    self.passwd)
            body = _codec.encode_connect_request(req)
            sock.sendall(_LEN.pack(len(body)) + body)
            resp, _ = _codec.decode_connect_response(_read_frame(sock))
        except BaseException:
            sock.close()
            raise
        if resp.timeOut <= 0 or resp.sessionId == 0:
            sock.close()
            if self.session_id:
                # Expired (or refused): start over with a new session, as an application would.
                self.expired += 1
                self.events.append((self.clock(), "session 0x%x expired" % self.session_id))
                self.session_id, self.passwd = 0, b"\0" * 16
            raise _Lost("session refused")
        self.session_id, self.passwd = resp.sessionId, resp.passwd
        self.read_timeout = max(1.0, resp.timeOut / 1000.0 * 2 / 3)
        sock.settimeout(self.read_timeout)
        return sock

    def _connect(self):
        while not self.stop_flag.is_set():
            addr = self.hosts[self.next_host % len(self.hosts)]
            self.next_host += 1
            try:
                sock = self._connect_once(addr)
            except (OSError, _Lost, ValueError) as e:
                self.events.append((self.clock(), "connect %s:%d failed: %s" % (
                    addr[0], addr[1], e)))
                time.sleep(RETRY_S)
                continue
            except Exception as e:      # a malformed answer: try the next member
                self.events.append((self.clock(), "connect %s:%d: %r" % (addr[0], addr[1], e)))
                time.sleep(RETRY_S)
                continue
            self.port = addr[1]
            self.events.append((self.clock(), "connected to %s:%d" % addr))
            return sock
        return None

    def run(self):
        try:
            self._run()
        except Exception as e:       # noqa: BLE001 - reported, not raised in a thread
            self.crash = repr(e)

    def _run(self):
        sock = None
        xid = 1
        seq = 0
        dec_set = _codec.DECODERS[_r.SetDataResponse]
        while not self.stop_flag.is_set():
            if sock is None:
                sock = self._connect()
                if sock is None:
                    break
            seq += 1
            body = _enc(_r.SetDataRequest(self.path, value_of(self.sid, seq), -1))
            frame = _LEN.pack(8 + len(body)) + struct.pack(">ii", xid, _c.OP_SET_DATA) + body
            t_sent = self.clock()
            try:
                sock.sendall(frame)
                while True:
                    reply = _read_frame(sock)
                    rxid, zxid, err, off = _codec.decode_reply_header(reply)
                    if rxid < 0:
                        continue            # ping or notification
                    break
            except (OSError, _Lost) as e:
                self.events.append((self.clock(), "lost connection to :%s: %s"
                                    % (self.port, e)))
                self.port = None
                sock.close()
                sock = None
                continue
            t_ack = self.clock()
            if rxid != xid:
                self.errors.append((t_ack, "reply xid %d, expected %d" % (rxid, xid)))
                sock.close()
                sock, self.port = None, None
                continue
            xid += 1
            if zxid > self.last_zxid:
                self.last_zxid = zxid
            if err:
                self.errors.append((t_ack, "setData %s seq %d: %s (%d)" % (
                    self.path, seq, _e.CODE_NAMES.get(err, "?"), err)))
                if err == _e.SESSIONEXPIRED:
                    self.expired += 1
                    self.session_id, self.passwd = 0, b"\0" * 16
                    sock.close()
                    sock, self.port = None, None
                continue
            stat = dec_set(reply, off)[0].stat
            self.acks.append((t_sent, t_ack, seq, stat.version, zxid, self.port))
        if sock is not None:
            try:
                sock.settimeout(2.0)
                sock.sendall(_LEN.pack(8) + struct.pack(">ii", xid, _c.OP_CLOSE_SESSION))
                _read_frame(sock)
            except (OSError, _Lost):
                pass
            sock.close()


def _events(events, t_kill, head=8, tail=8):
    """A writer's events from the kill on (s after it), first `head` and last `tail`."""
    ev = [(round(t - t_kill, 3), e) for t, e in events if t >= t_kill - 0.01]
    if len(ev) > head + tail:
        ev = ev[:head] + [(None, "... %d more ..." % (len(ev) - head - tail))] + ev[-tail:]
    return ev


# --- one repetition --------------------------------------------------------------------------

def _setup(addr, paths):
    from zkpy.bench import loadgen
    client = loadgen.SyncClient(addr)
    try:
        loadgen.wipe(client, ROOT)
        reqs = [(_c.OP_CREATE, _enc(_r.CreateRequest(p, b"", loadgen.OPEN_ACL_UNSAFE,
                                                     _c.CREATE_PERSISTENT)))
                for p in [ROOT] + paths]
        for p, (err, _) in zip([ROOT] + paths, client.call_many(reqs)):
            if err:
                raise loadgen.BenchError("setup: create %s: %s" % (p, loadgen.error_name(err)))
    finally:
        client.close()


def _read_back(addr, paths):
    """{path: (seq, version, sid) or None} as `addr` sees them after a sync."""
    from zkpy.bench import loadgen
    client = loadgen.SyncClient(addr)
    try:
        err, _ = client.call(_c.OP_SYNC, _enc(_r.SyncRequest(ROOT)))
        if err:
            raise loadgen.BenchError("sync on :%d: %s" % (addr[1], loadgen.error_name(err)))
        reqs = [(_c.OP_GET_DATA, _enc(_r.GetDataRequest(p, False))) for p in paths]
        dec = _codec.DECODERS[_r.GetDataResponse]
        out = {}
        for p, (err, body) in zip(paths, client.call_many(reqs)):
            if err:
                out[p] = None
                continue
            resp = dec(body, 0)[0]
            v = parse_value(resp.data)
            out[p] = None if v is None else (v[1], resp.stat.version, v[0])
        return out
    finally:
        client.close()


def run_once(kind, tick_ms, base_dir, sessions=6, warm=3.0, after=1.0, timeout=60.0,
             init_limit=10, sync_limit=5, rep=1, label=None, log=print):
    """One repetition (see the module doc); returns a result dict (JSON-able)."""
    from zkpy.bench import servers
    label = label or kind
    cluster = servers.make_cluster(kind, "ensemble3", base_dir, label="%s-tick%d-rep%d" % (
        kind, tick_ms, rep), tick_ms=tick_ms, init_limit=init_limit, sync_limit=sync_limit)
    res = {"kind": kind, "label": label, "tick_ms": tick_ms, "init_limit": init_limit,
           "sync_limit": sync_limit, "rep": rep, "sessions": sessions, "again_s": None,
           "all_s": None, "election_s": None, "acked": 0, "acked_after_kill": 0, "lost": 0,
           "error_replies": 0, "expired": 0, "failure": None,
           "member_dirs": [str(m.root) for m in cluster.members]}
    writers = []
    try:
        t0 = time.monotonic()
        leader = cluster.start()
        leader = cluster.leader()
        res["start_s"] = round(time.monotonic() - t0, 2)
        res["leader"] = leader.sid
        res["version"] = cluster.version
        hosts = cluster.addrs
        paths = ["%s/w%d" % (ROOT, i) for i in range(sessions)]
        _setup(hosts[0], paths)
        for i in range(sessions):
            rot = hosts[i % len(hosts):] + hosts[:i % len(hosts)]
            writers.append(Writer(i, rot, paths[i]))
        for w in writers:
            w.start()
        time.sleep(warm)
        ports_at_kill = [w.port for w in writers]
        acked_before = sum(len(w.acks) for w in writers)
        t_kill = time.monotonic()
        leader.kill()                   # kill -9 of its process group; waits for the process
        survivors = [m for m in cluster.members if m is not leader]
        log("  %s tick %d rep %d: killed leader (member %d) after %d acked writes; "
            "sessions on ports %s" % (label, tick_ms, rep, leader.sid, acked_before,
                                      ports_at_kill))
        # Poll the survivors for a new leader while the writers fail over.
        deadline = t_kill + timeout
        while time.monotonic() < deadline:
            if res["election_s"] is None:
                modes = cluster.modes(survivors)
                if sorted(modes.values(), key=str) == ["follower", "leader"]:
                    res["election_s"] = round(time.monotonic() - t_kill, 3)
            if all(any(a[0] >= t_kill for a in w.acks) for w in writers) and \
                    res["election_s"] is not None:
                break
            if any(not w.is_alive() for w in writers):
                break
            time.sleep(0.05)
        time.sleep(after)
        for w in writers:
            w.stop_flag.set()
        for w in writers:
            w.join(CONNECT_TIMEOUT_S + 35)
        survivor_ports = {m.port for m in survivors}
        wd = [{"port_at_kill": p, "acks": w.acks} for p, w in zip(ports_at_kill, writers)]
        again, every = recovery_times(wd, t_kill, survivor_ports)
        res["again_s"] = None if again is None else round(again, 3)
        res["all_s"] = None if every is None else round(every, 3)
        res["acked"] = sum(len(w.acks) for w in writers)
        res["acked_after_kill"] = sum(1 for w in writers for a in w.acks if a[0] >= t_kill)
        res["error_replies"] = sum(len(w.errors) for w in writers)
        res["error_samples"] = [m for w in writers for _, m in w.errors][:5]
        res["expired"] = sum(w.expired for w in writers)
        res["crashes"] = [w.crash for w in writers if w.crash]
        res["new_leader"] = next((m.sid for m in survivors if m.mode() == "leader"), None)
        # Read every znode back from each survivor.
        lost_by_member = {}
        finals = {}
        for m in survivors:
            try:
                got = _read_back(("127.0.0.1", m.port), paths)
            except Exception as e:       # noqa: BLE001 - a survivor that cannot answer
                res.setdefault("read_errors", []).append("member %d: %r" % (m.sid, e))
                got = {p: None for p in paths}
            lost = 0
            for i, (w, p) in enumerate(zip(writers, paths)):
                f = got.get(p)
                final = None if f is None or f[2] != i else (f[0], f[1])
                lost += lost_writes([(a[2], a[3]) for a in w.acks], final)
            lost_by_member[m.sid] = lost
            finals[m.sid] = {p: got.get(p) for p in paths}
        res["lost"] = max(lost_by_member.values()) if lost_by_member else 0
        res["lost_by_member"] = lost_by_member
        res["final_values"] = finals
        res["writer_events"] = [_events(w.events, t_kill) for w in writers]
        res["early_events"] = [[(round(t - t_kill, 3), e) for t, e in w.events
                                if t < t_kill][:6] for w in writers]
        if res["error_replies"] or res["expired"] or res["lost"] or res["again_s"] is None:
            res["log_tails"] = cluster.log_tails()
        log("  %s tick %d rep %d: writes again after %s s, all sessions after %s s, new "
            "leader (member %s) after %s s; %d acked (%d after the kill), %d lost, %d error "
            "replies" % (label, tick_ms, rep, res["again_s"], res["all_s"], res["new_leader"],
                         res["election_s"], res["acked"], res["acked_after_kill"], res["lost"],
                         res["error_replies"]))
    except Exception as e:       # noqa: BLE001 - one failed rep is reported, the rest run
        res["failure"] = "%s: %s" % (type(e).__name__, e)
        res["log_tails"] = cluster.log_tails()
        log("ERROR: %s tick %d rep %d failed: %s" % (label, tick_ms, rep, res["failure"]))
    finally:
        for w in writers:
            w.stop_flag.set()
        cluster.stop()
    return res


# --- command line ----------------------------------------------------------------------------

def add_failover_parser(sub):
    p = sub.add_parser(
        "failover", help="3-node ensembles, zkpy vs Apache ZooKeeper 3.8: time from kill -9 "
                         "of the leader until writes succeed again; lost acknowledged writes",
        description=__doc__.split("\n\n")[0])
    p.add_argument("--servers", default="zkpy,apache",
                   help="kinds to measure, in order (zkpy, apache; default zkpy,apache)")
    p.add_argument("--tick-times", default=",".join(str(t) for t in DEFAULTS["tick_times"]),
                   help="tickTime values, ms (default %s); initLimit/syncLimit 10/5 for all"
                   % ",".join(str(t) for t in DEFAULTS["tick_times"]))
    p.add_argument("--reps", type=int, default=DEFAULTS["reps"],
                   help="repetitions per server and tickTime, each a fresh ensemble "
                        "(default %d)" % DEFAULTS["reps"])
    p.add_argument("--sessions", type=int, default=DEFAULTS["sessions"],
                   help="writer sessions, spread round robin over the members (default %d)"
                   % DEFAULTS["sessions"])
    p.add_argument("--warm", type=float, default=DEFAULTS["warm"],
                   help="seconds of writes before the kill (default %g)" % DEFAULTS["warm"])
    p.add_argument("--timeout", type=float, default=DEFAULTS["timeout"],
                   help="give up waiting for recovery after this many s (default %g)"
                   % DEFAULTS["timeout"])
    p.add_argument("--out", help="results directory (default bench/results/<date>-failover/)")
    p.add_argument("--data-dir", help="where the members' directories go (default /tmp)")
    p.add_argument("--keep-data", action="store_true",
                   help="keep the members' directories (zoo.cfg, data, logs)")
    p.add_argument("--no-install", action="store_true",
                   help="fail instead of running apt-get when ZooKeeper is missing")
    return p


def settings_from_args(args):
    kinds = [k.strip() for k in args.servers.split(",") if k.strip()]
    for k in kinds:
        if k not in ("zkpy", "apache"):
            raise ValueError("failover needs real servers: zkpy or apache (got %r)" % k)
    if not kinds:
        raise ValueError("--servers names no server")
    try:
        ticks = [int(t) for t in args.tick_times.split(",") if t.strip()]
    except ValueError:
        raise ValueError("--tick-times takes integers, ms (got %r)" % args.tick_times) from None
    if not ticks or min(ticks) < 1:
        raise ValueError("--tick-times must name at least one tickTime >= 1")
    if args.reps < 1 or args.sessions < 1 or args.warm < 0 or args.timeout <= 0:
        raise ValueError("--reps and --sessions must be >= 1, --warm >= 0, --timeout > 0")
    from zkpy.bench import compare
    out = Path(args.out) if args.out else (
        compare.default_out().parent / (compare.default_out().name + "-failover"))
    return dict(kinds=kinds, tick_times=ticks, reps=args.reps, sessions=args.sessions,
                warm=args.warm, after=DEFAULTS["after"], timeout=args.timeout,
                init_limit=DEFAULTS["init_limit"], sync_limit=DEFAULTS["sync_limit"],
                out=out, data_dir=args.data_dir or tempfile.gettempdir(),
                keep_data=args.keep_data, install=not args.no_install)


def _stderr(msg):
    print(msg, file=sys.stderr, flush=True)


_NAMES = {"zkpy": "zkpy", "apache": "ZooKeeper"}


def failover_main(args, argv=None):
    from zkpy.bench import compare
    command, s = compare.begin_run(args, argv, settings_from_args)
    if command is None:
        return s
    Path(s["data_dir"]).mkdir(parents=True, exist_ok=True)
    base = tempfile.mkdtemp(prefix="zkpy-failover-", dir=s["data_dir"])
    machine = compare.machine_description(base)
    load_before = compare.loadavg()
    started = time.strftime("%Y-%m-%d %H:%M:%S %z")
    t0 = time.monotonic()
    results = []
    try:
        # Per tickTime, per repetition, the kinds in turn (A B A B).
        for tick in s["tick_times"]:
            for rep in range(1, s["reps"] + 1):
                for kind in s["kinds"]:
                    _stderr("[%s] %s, tickTime %d, rep %d/%d (load average %s)" % (
                        compare.fmt_duration(time.monotonic() - t0), _NAMES[kind], tick,
                        rep, s["reps"], compare.loadavg()))
                    results.append(run_once(
                        kind, tick, base, sessions=s["sessions"], warm=s["warm"],
                        after=s["after"], timeout=s["timeout"], init_limit=s["init_limit"],
                        sync_limit=s["sync_limit"], rep=rep, label=_NAMES[kind], log=_stderr))
    except KeyboardInterrupt:
        _stderr("interrupted; servers stopped")
        return 130
    finally:
        problems = [r for r in results if r["failure"] or r["lost"] or r["again_s"] is None
                    or r["error_replies"] or r["expired"]]
        if s["keep_data"] or problems:
            _stderr("member directories (zoo.cfg, data, server.log) kept in %s" % base)
        else:
            shutil.rmtree(base, ignore_errors=True)
    wall = time.monotonic() - t0
    machine.update(load_before=load_before, load_after=compare.loadavg())
    rows = summarize(results)
    table = failover_table(rows)
    out = Path(s["out"])
    out.mkdir(parents=True, exist_ok=True)
    settings_json = dict(s, out=str(out))
    with open(out / "failover.json", "w") as f:
        json.dump({"command": command, "started": started, "wall_s": round(wall, 1),
                   "settings": settings_json, "machine": machine, "rows": rows,
                   "results": results}, f, indent=1, sort_keys=True, default=str)
        f.write("\n")
    md = ["# Leader failover, 3-node ensembles: %s" % " vs ".join(_NAMES[k] for k in s["kinds"]),
          "", "Command: `%s` (started %s, took %s)." % (command, started, fmt(wall)), "",
          "Machine: %s. Load average %s before, %s after." % (
              compare.describe_machine(machine), machine["load_before"],
              machine["load_after"]), ""]
    if machine["zkpy_commit"]:
        md += ["zkpy code: commit %s." % machine["zkpy_commit"], ""]
    md += ["%d writer sessions (setData on their own znode, one in flight), round robin over "
           "the members, each with the full host list; kill -9 of the leader after %g s; "
           "times in s from the kill, median (range) of %d rep(s), a fresh ensemble each."
           % (s["sessions"], s["warm"], s["reps"]), "", table, ""]
    if problems:
        md += ["**%d repetition(s) had problems** (failure, lost writes, no recovery, error "
               "replies or expired sessions); "
               "see failover.json." % len(problems), ""]
    (out / "failover.md").write_text("\n".join(md))
    print(table, flush=True)
    _stderr("wrote %s, %s (took %s; load average %s -> %s)" % (
        out / "failover.md", out / "failover.json", fmt(wall), machine["load_before"],
        machine["load_after"]))
    return 1 if problems else 0


def fmt(s):
    from zkpy.bench import compare
    return compare.fmt_duration(s)
