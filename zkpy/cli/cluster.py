"""zkpy-cluster: a pseudo-cluster of N servers on one machine, as ZooKeeper's admin guide sets it up.

    zkpy-cluster [--dir DIR] init [--servers N] [--observers K] [--base-client-port 2181]
                                  [--tick-time 2000] [--impl zkpy|apache] [--force]
    zkpy-cluster [--dir DIR] start [ID...] [--wait SECONDS]
    zkpy-cluster [--dir DIR] stop [ID...]
    zkpy-cluster [--dir DIR] status
    zkpy-cluster [--dir DIR] kill ID            (SIGKILL)
    zkpy-cluster [--dir DIR] restart ID [--wait SECONDS]
    zkpy-cluster [--dir DIR] pause ID           (SIGSTOP)
    zkpy-cluster [--dir DIR] resume ID          (SIGCONT)
    zkpy-cluster [--dir DIR] destroy            (stop all, remove DIR)

`init` writes DIR/zk<i>/zoo.cfg and DIR/zk<i>/data/myid for members 1..N (participants) and
N+1..N+K (observers), plus DIR/cluster.json (which implementation, the members and their ports).
Member i listens for clients on base+i-1 and talks to its peers on 2222+1111*(i-1) (quorum) and
the port after it (leader election), both shifted by base-2181. `--dir` may come before or after
the verb; the default is ./zkpy-cluster.

zkpy members run as daemons through `python -m zkpy.cli.server start|stop CFG` (pidfile
<dataDir>/zookeeper_server.pid, log DIR/zk<i>/zkpy-server.out); `--impl apache` runs Apache
ZooKeeper 3.8 instead (Debian's jars, QuorumPeerMain; pidfile DIR/zk<i>/zookeeper_server.pid, log
DIR/zk<i>/zookeeper.out), so the same cluster can be built out of the real thing.

The command lines, srvr and "is Apache ZooKeeper installed" are zkpy.testing.harness's, and the
members' zoo.cfg / server.N / myid are those of zkpy.testing.ensemble's Ensemble, shared with
the tests and the benchmarks; this module keeps the daemon verbs, pidfiles and cluster.json. It
does not import zkpy.bench.

Exit status: 0 on success; 1 when a command could not do what it was asked (a member did not
start, `status` finds a member down or not serving); 2 for usage and setup errors.
"""

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from zkpy.testing import harness
from zkpy.testing.ensemble import Ensemble

DEFAULT_DIR = "./zkpy-cluster"
DEFAULT_BASE_CLIENT_PORT = 2181
FIRST_PEER_PORT = 2222
PEER_PORT_STEP = 1111
META_FILE = "cluster.json"
IMPLS = ("zkpy", "apache")
START_WAIT = 60.0
STOP_WAIT = 30.0
APACHE_HINT = "apt-get install -y zookeeper zookeeper-bin"


class ClusterError(Exception):
    """A command cannot go on; the message says why. `code` is the exit status."""

    def __init__(self, message, code=2):
        super().__init__(message)
        self.code = code


def _out(text=""):
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


# --- layout ------------------------------------------------------------------------------

def member_ports(i, base_client_port=DEFAULT_BASE_CLIENT_PORT):
    """(client, peer, election) ports of member i (1-based), as the admin guide numbers them."""
    offset = base_client_port - DEFAULT_BASE_CLIENT_PORT
    peer = FIRST_PEER_PORT + PEER_PORT_STEP * (i - 1) + offset
    return base_client_port + i - 1, peer, peer + 1


class Member:
    def __init__(self, cluster, spec):
        self.cluster = cluster
        self.id = spec["id"]
        self.client_port = spec["client_port"]
        self.peer_port = spec["peer_port"]
        self.election_port = spec["election_port"]
        self.role = spec["role"]
        self.dir = cluster.root / ("zk%d" % self.id)
        self.cfg = self.dir / "zoo.cfg"
        self.data_dir = self.dir / "data"

    @property
    def name(self):
        return "zk%d" % self.id

    # -- process --------------------------------------------------------------------------
    @property
    def pidfile(self):
        if self.cluster.impl == "zkpy":
            return self.data_dir / "zookeeper_server.pid"   # zkpy.cli.server's default
        return self.dir / "zookeeper_server.pid"

    @property
    def log_path(self):
        return self.dir / ("zkpy-server.out" if self.cluster.impl == "zkpy" else "zookeeper.out")

    def pid(self):
        """The member's live pid, or None (no pidfile, dead, or a pid reused by another program)."""
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            with open("/proc/%d/cmdline" % pid, "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode("utf-8", "replace")
            with open("/proc/%d/stat" % pid) as f:
                state = f.read().rsplit(")", 1)[-1].split()[0]
        except OSError:
            return None
        if state in ("Z", "X") or str(self.cfg) not in cmdline:
            return None
        return pid

    def paused(self, pid=None):
        pid = pid or self.pid()
        if pid is None:
            return False
        try:
            with open("/proc/%d/stat" % pid) as f:
                return f.read().rsplit(")", 1)[-1].split()[0] == "T"
        except OSError:
            return False

    def signal(self, sig):
        pid = self.pid()
        if pid is None:
            raise ClusterError("%s is not running" % self.name, code=1)
        # Each member runs in its own session: the group reaches zkpy's worker processes too.
        try:
            if os.getpgid(pid) == pid:
                os.killpg(pid, sig)
            else:
                os.kill(pid, sig)
        except ProcessLookupError:
            pass
        return pid

    def env(self):
        env = harness.zkpy_env()     # members run the same zkpy as this command
        env["ZOO_LOG_DIR"] = str(self.dir)
        return env

    def _check_ports_free(self):
        for what, host, port in (("client", "", self.client_port),
                                 ("quorum", "127.0.0.1", self.peer_port),
                                 ("election", "127.0.0.1", self.election_port)):
            with socket.socket() as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    s.bind((host, port))
                except OSError as e:
                    raise ClusterError("%s: %s port %d is in use (%s); stop whatever holds it or "
                                       "init with another --base-client-port"
                                       % (self.name, what, port, e.strerror), code=1)

    def start(self):
        """Start the member's process (does not wait for a quorum). Returns its pid."""
        pid = self.pid()
        if pid is not None:
            _out("%s: already running as process %d" % (self.name, pid))
            return pid
        if not self.cfg.exists():
            raise ClusterError("%s: %s is missing; run `zkpy-cluster init` again" %
                               (self.name, self.cfg))
        self._check_ports_free()
        if self.cluster.impl == "zkpy":
            return self._start_zkpy()
        return self._start_apache()

    def _start_zkpy(self):
        res = subprocess.run(harness.zkpy_command(self.cfg, "start"), env=self.env(),
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT)
        pid = self.pid()
        if res.returncode != 0 or pid is None:
            raise ClusterError("%s: zkpy server did not start (exit %d): %s\n--- %s ---\n%s"
                               % (self.name, res.returncode,
                                  res.stdout.decode(errors="replace").strip(),
                                  self.log_path, self.log_tail()), code=1)
        _out("%s: started zkpy (pid %d, client port %d)" % (self.name, pid, self.client_port))
        return pid

    def _start_apache(self):
        why = harness.apache_missing()
        if why:
            raise ClusterError("Apache ZooKeeper 3.8 is not installed (%s): %s"
                               % (why, APACHE_HINT))
        with open(self.log_path, "ab") as log:
            proc = subprocess.Popen(harness.apache_command(self.cfg), cwd=self.dir,
                                    env=self.env(), stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        self.pidfile.write_text("%d\n" % proc.pid)
        # The client port is bound before the leader election starts: wait for it.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                self.pidfile.unlink()
                raise ClusterError("%s: Apache ZooKeeper exited with %d during start\n--- %s "
                                   "---\n%s" % (self.name, proc.returncode, self.log_path,
                                                self.log_tail()), code=1)
            if self.srvr() is not None:
                break
            time.sleep(0.1)
        else:
            raise ClusterError("%s: Apache ZooKeeper (pid %d) does not answer on client port %d "
                               "after 30 s; see %s" % (self.name, proc.pid, self.client_port,
                                                       self.log_path), code=1)
        _out("%s: started Apache ZooKeeper (pid %d, client port %d)"
             % (self.name, proc.pid, self.client_port))
        return proc.pid

    def stop(self, timeout=STOP_WAIT):
        pid = self.pid()
        if pid is None:
            _out("%s: not running" % self.name)
            self._clear_pidfile()
            return True
        if self.paused(pid):
            self.signal(signal.SIGCONT)     # a stopped process would never see the SIGTERM
        if self.cluster.impl == "zkpy":
            subprocess.run(harness.zkpy_command(self.cfg, "stop"), env=self.env(),
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=timeout + 70)
        else:
            self.signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while self.pid() is not None and time.monotonic() < deadline:
            time.sleep(0.1)
        if self.pid() is not None:
            _out("%s: process %d did not stop within %.0f s: SIGKILL" % (self.name, pid, timeout))
            self.signal(signal.SIGKILL)
            self._wait_gone(pid)
        self._reap_group(pid)
        self._clear_pidfile()
        _out("%s: stopped (was process %d)" % (self.name, pid))
        return True

    def kill(self):
        pid = self.signal(signal.SIGKILL)
        self._wait_gone(pid)
        self._clear_pidfile()
        _out("%s: killed process %d (SIGKILL)" % (self.name, pid))

    def _wait_gone(self, pid, timeout=10.0):
        deadline = time.monotonic() + timeout
        while self.pid() is not None and time.monotonic() < deadline:
            time.sleep(0.05)

    def _reap_group(self, pid):
        try:
            os.killpg(pid, signal.SIGKILL)      # anything the member forked and left behind
        except (ProcessLookupError, PermissionError):
            pass

    def _clear_pidfile(self):
        try:
            self.pidfile.unlink()
        except OSError:
            pass

    # -- inspection -----------------------------------------------------------------------
    def srvr(self, timeout=2.0):
        """The `srvr` answer, or None when nothing answers on the client port."""
        try:
            return harness.four_letter(self.client_port, "srvr", timeout=timeout)
        except OSError:
            return None

    def mode(self):
        """'leader', 'follower', 'observer', 'standalone', or None (down or not serving)."""
        return harness.srvr_mode(self.srvr())

    def status_line(self):
        pid = self.pid()
        head = "%-5s client port %-5d" % (self.name, self.client_port)
        if self.role == "observer":
            head += " (observer)"
        if pid is None:
            return head + "  down", False
        if self.paused(pid):
            return head + "  pid %-7d paused (SIGSTOP)" % pid, False
        text = self.srvr()
        if text is None:
            return head + "  pid %-7d not answering on its client port" % pid, False
        for line in text.splitlines():
            if line.startswith("Mode:"):
                ok = not (line.strip() == "Mode: standalone"
                          and len(self.cluster.participants()) > 1)
                return head + "  pid %-7d %s" % (pid, line.strip()), ok
        if harness.NOT_SERVING in text:
            return head + "  pid %-7d not serving (no quorum)" % pid, False
        return head + "  pid %-7d no Mode line in srvr: %r" % (pid, text[:80]), False

    def log_tail(self, lines=20):
        return harness.log_tail(self.log_path, lines)


class Cluster:
    def __init__(self, root):
        self.root = Path(root).resolve()
        meta_path = self.root / META_FILE
        try:
            meta = json.loads(meta_path.read_text())
        except FileNotFoundError:
            raise ClusterError("no cluster in %s (%s missing): run `zkpy-cluster --dir %s init` "
                               "first" % (self.root, META_FILE, root)) from None
        except ValueError as e:
            raise ClusterError("%s is not valid JSON: %s" % (meta_path, e)) from None
        self.impl = meta["impl"]
        self.tick_time = meta["tick_time"]
        self.members = [Member(self, spec) for spec in meta["members"]]

    def select(self, ids):
        if not ids:
            return list(self.members)
        by_id = {m.id: m for m in self.members}
        chosen = []
        for raw in ids:
            try:
                i = int(str(raw).lstrip("zk"))
            except ValueError:
                raise ClusterError("member id %r is not a number" % raw) from None
            if i not in by_id:
                raise ClusterError("no member %s in this cluster (members: %s)"
                                   % (raw, " ".join(str(m.id) for m in self.members)))
            chosen.append(by_id[i])
        return chosen

    def one(self, raw):
        return self.select([raw])[0]

    def participants(self):
        return [m for m in self.members if m.role != "observer"]

    def quorum_possible(self, extra=()):
        running = [m for m in self.participants() if m in extra or m.pid() is not None]
        return len(running) > len(self.participants()) // 2

    def wait_serving(self, members, timeout):
        """Wait until every member in `members` reports a Mode; True if they all did."""
        deadline = time.monotonic() + timeout
        while True:
            modes = {m: m.mode() for m in members}
            standalone = [m for m, mode in modes.items() if mode == "standalone"]
            if standalone and len(self.participants()) > 1:
                raise ClusterError("%s runs standalone: it ignored its server.N lines (a %s "
                                   "without ensemble support?); see %s"
                                   % (standalone[0].name, self.impl, standalone[0].log_path),
                                   code=1)
            pending = [m for m, mode in modes.items() if mode is None]
            if not pending:
                return True
            dead = [m for m in pending if m.pid() is None]
            if dead:
                raise ClusterError("%s exited; see %s:\n%s" % (dead[0].name, dead[0].log_path,
                                                              dead[0].log_tail()), code=1)
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.2)


# --- commands ----------------------------------------------------------------------------

def cmd_init(args):
    root = Path(args.dir).resolve()
    if args.servers < 1:
        raise ClusterError("--servers must be at least 1 (got %d)" % args.servers)
    if args.observers < 0:
        raise ClusterError("--observers must not be negative (got %d)" % args.observers)
    if args.tick_time <= 0:
        raise ClusterError("--tick-time must be > 0 ms (got %d)" % args.tick_time)
    total = args.servers + args.observers
    if args.observers and args.servers < 2:
        raise ClusterError("observers need a quorum of at least 2 participants "
                           "(--servers %d)" % args.servers)
    last = member_ports(total, args.base_client_port)
    first = member_ports(1, args.base_client_port)
    if args.base_client_port < 1 or max(last) > 65535 or min(first) < 1:
        raise ClusterError("--base-client-port %d puts ports outside 1..65535 (member %d would "
                           "use %s)" % (args.base_client_port, total, last))
    if (root / META_FILE).exists():
        if not args.force:
            raise ClusterError("%s already holds a cluster; `zkpy-cluster --dir %s destroy` it "
                               "first, or init --force to overwrite its configs"
                               % (root, args.dir))
        running = [m.name for m in Cluster(root).members if m.pid() is not None]
        if running:
            raise ClusterError("%s: members %s are running; stop them first"
                               % (root, " ".join(running)))
    if args.impl == "apache":
        why = harness.apache_missing()
        if why:
            raise ClusterError("--impl apache: Apache ZooKeeper 3.8 is not installed (%s): %s"
                               % (why, APACHE_HINT))
    # The members' zoo.cfg as the harness writes an ensemble's (DIR/zk<i>: zoo.cfg, data/myid),
    # with the admin guide's ports; clients may come from any address.
    ens = Ensemble(args.impl, root, servers=args.servers, observers=args.observers,
                   tick_ms=args.tick_time, extra_cfg={"clientPortAddress": None},
                   ports=[p for i in range(1, total + 1)
                          for p in member_ports(i, args.base_client_port)])
    for m in ens.members:
        harness.write_cfg(m.cfg_path, m.config())
        harness.write_myid(m.data_dir, m.sid)
    members = [{"id": m.sid, "client_port": m.port, "peer_port": m.peer_port,
                "election_port": m.election_port, "role": m.role} for m in ens.members]
    meta = {"impl": args.impl, "tick_time": args.tick_time,
            "base_client_port": args.base_client_port, "members": members}
    (root / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    _out("initialized a %s cluster of %d servers%s in %s"
         % (args.impl, args.servers, " + %d observers" % args.observers if args.observers else "",
            root))
    for m in members:
        _out("  zk%d  client %d  quorum %d  election %d%s"
             % (m["id"], m["client_port"], m["peer_port"], m["election_port"],
                "  observer" if m["role"] == "observer" else ""))
    return 0


def cmd_start(args):
    cluster = Cluster(args.dir)
    members = cluster.select(args.ids)
    for m in members:
        m.start()
    if args.wait <= 0:
        return 0
    if not cluster.quorum_possible():
        _out("fewer than a majority of the %d participants are running: no quorum to wait for"
             % len(cluster.participants()))
        return 0
    ok = cluster.wait_serving(members, args.wait)
    for m in cluster.members:
        _out(m.status_line()[0])
    if not ok:
        _out("zkpy-cluster: not every started member serves after %.0f s" % args.wait)
        return 1
    return 0


def cmd_stop(args):
    cluster = Cluster(args.dir)
    # Observers and followers first, so a stop of the whole cluster elects no new leaders.
    members = cluster.select(args.ids)
    members.sort(key=lambda m: (m.mode() == "leader", m.role != "observer"))
    for m in members:
        m.stop()
    return 0


def cmd_status(args):
    cluster = Cluster(args.dir)
    _out("%s cluster in %s" % (cluster.impl, cluster.root))
    all_ok = True
    for m in cluster.members:
        line, ok = m.status_line()
        all_ok &= ok
        _out(line)
    return 0 if all_ok else 1


def cmd_kill(args):
    Cluster(args.dir).one(args.id).kill()
    return 0


def cmd_restart(args):
    cluster = Cluster(args.dir)
    m = cluster.one(args.id)
    m.stop()
    m.start()
    if args.wait > 0 and cluster.quorum_possible():
        if not cluster.wait_serving([m], args.wait):
            _out(m.status_line()[0])
            _out("zkpy-cluster: %s does not serve %.0f s after its restart" % (m.name, args.wait))
            return 1
        _out(m.status_line()[0])
    return 0


def cmd_pause(args):
    m = Cluster(args.dir).one(args.id)
    pid = m.signal(signal.SIGSTOP)
    _out("%s: paused process %d (SIGSTOP)" % (m.name, pid))
    return 0


def cmd_resume(args):
    m = Cluster(args.dir).one(args.id)
    pid = m.signal(signal.SIGCONT)
    _out("%s: resumed process %d (SIGCONT)" % (m.name, pid))
    return 0


def cmd_destroy(args):
    cluster = Cluster(args.dir)
    for m in cluster.members:
        if m.pid() is not None:
            m.stop()
    shutil.rmtree(cluster.root)
    _out("removed %s" % cluster.root)
    return 0


# --- argument parsing --------------------------------------------------------------------

def _parser():
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--dir", default=argparse.SUPPRESS,
                        help="cluster directory (default %s)" % DEFAULT_DIR)
    p = argparse.ArgumentParser(prog="zkpy-cluster",
                                description="A ZooKeeper pseudo-cluster on one machine.")
    p.add_argument("--dir", default=DEFAULT_DIR, help="cluster directory (default %(default)s)")
    sub = p.add_subparsers(dest="verb", metavar="COMMAND")
    sub.required = True

    s = sub.add_parser("init", parents=[common], help="write zoo.cfg and myid of every member")
    s.add_argument("--servers", type=int, default=3, help="participants (default 3)")
    s.add_argument("--observers", type=int, default=0, help="observers (default 0)")
    s.add_argument("--base-client-port", type=int, default=DEFAULT_BASE_CLIENT_PORT,
                   help="client port of member 1 (default 2181); peer ports shift with it")
    s.add_argument("--tick-time", type=int, default=2000, help="tickTime in ms (default 2000)")
    s.add_argument("--impl", choices=IMPLS, default="zkpy",
                   help="zkpy (default) or apache (Apache ZooKeeper 3.8's jars)")
    s.add_argument("--force", action="store_true", help="overwrite an existing cluster's configs")
    s.set_defaults(func=cmd_init)

    s = sub.add_parser("start", parents=[common], help="start members (default: all)")
    s.add_argument("ids", nargs="*", metavar="ID")
    s.add_argument("--wait", type=float, default=START_WAIT,
                   help="seconds to wait for the started members to serve (0: don't wait)")
    s.set_defaults(func=cmd_start)

    s = sub.add_parser("stop", parents=[common], help="stop members (default: all)")
    s.add_argument("ids", nargs="*", metavar="ID")
    s.set_defaults(func=cmd_stop)

    s = sub.add_parser("status", parents=[common], help="one line per member (srvr's Mode)")
    s.set_defaults(func=cmd_status)

    for verb, func, text in (("kill", cmd_kill, "SIGKILL a member"),
                             ("pause", cmd_pause, "SIGSTOP a member"),
                             ("resume", cmd_resume, "SIGCONT a member")):
        s = sub.add_parser(verb, parents=[common], help=text)
        s.add_argument("id", metavar="ID")
        s.set_defaults(func=func)

    s = sub.add_parser("restart", parents=[common], help="stop and start a member")
    s.add_argument("id", metavar="ID")
    s.add_argument("--wait", type=float, default=START_WAIT)
    s.set_defaults(func=cmd_restart)

    s = sub.add_parser("destroy", parents=[common], help="stop every member, remove the dir")
    s.set_defaults(func=cmd_destroy)
    return p


def main(argv=None):
    args = _parser().parse_args(argv)
    try:
        return args.func(args)
    except ClusterError as e:
        sys.stderr.write("zkpy-cluster: %s\n" % e)
        return e.code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
