"""zkpy-server: start, stop and query a zkpy server the way zkServer.sh does.

    zkpy-server {start-foreground|start|stop|restart|status|version|print-cmd} [CFG]

CFG defaults to $ZOOCFG, then ./conf/zoo.cfg. `start` runs the server as a daemon with its pid in
<dataDir>/zookeeper_server.pid (or $ZOOPIDFILE) and its log in $ZOO_LOG_DIR (default: dataDir)
/zkpy-server.out; both may be set in the environment or, as zkEnv.sh sources them, in
$ZOOCFGDIR/zookeeper-env.sh or java.env. `status` asks the running server with `srvr` and prints
its Mode line; it exits 1 when no server answers, as zkServer.sh does.
"""

import logging
import logging.config
import os
import signal
import socket
import subprocess
import sys
import time

from zkpy import ZK_VERSION_STRING, __version__
from zkpy.config import load_config, load_script_variables
from zkpy.logsetup import setup_logging
from zkpy.errors import ConfigError, StorageCorruptError, StorageFullError
from zkpy.tree import acl as acls

USAGE = ("Usage: zkpy-server [--config <conf-dir>] "
         "{start|start-foreground|stop|version|restart|status|print-cmd} [CFG]")


def _config_path(args):
    if args:
        path = args[0]
        if os.path.isdir(path):
            path = os.path.join(path, "zoo.cfg")
        return path
    if os.environ.get("ZOOCFG"):
        return os.environ["ZOOCFG"]
    conf_dir = os.environ.get("ZOOCFGDIR", "conf")
    return os.path.join(conf_dir, "zoo.cfg")


# Variables zkServer.sh takes from zookeeper-env.sh / java.env (zkEnv.sh sources them into its
# own shell) that zkpy-server uses itself; the JVM flags are load_config's.
_SCRIPT_VARIABLES = ("ZOO_LOG_DIR", "ZOOPIDFILE")


def _load(path, check_tls=False):
    try:
        config = load_config(path, environ=os.environ)
        sourced = load_script_variables(path, os.environ)
        os.environ.update({k: sourced[k] for k in _SCRIPT_VARIABLES if sourced.get(k)})
        if check_tls:
            from zkpy.server import tls
            tls.check(config)   # the key and trust stores: readable, with the right passwords
        return config
    except FileNotFoundError:
        sys.stderr.write("zkpy-server: config file %s not found\n" % path)
        sys.exit(2)
    except ConfigError as e:
        sys.stderr.write("zkpy-server: invalid config: %s\n" % e)
        sys.exit(2)


def _pidfile(config):
    return os.environ.get("ZOOPIDFILE") or os.path.join(config.data_dir, "zookeeper_server.pid")


def _client_address(config):
    addr = config.client_port_address
    if not addr or addr in ("0.0.0.0", "::"):
        addr = "127.0.0.1"
    return addr


def four_letter(host, port, cmd, timeout=5.0):
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(cmd.encode())
        chunks = []
        while True:
            data = s.recv(65536)
            if not data:
                break
            chunks.append(data)
    return b"".join(chunks).decode("utf-8", "replace")


def _read_pid(config):
    try:
        with open(_pidfile(config)) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child counts as dead.
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def cmd_start_foreground(path):
    config = _load(path, check_tls=True)
    setup_logging(path)
    log = logging.getLogger("zkpy.server")
    for w in config.warnings:
        log.warning("%s", w)
    for note in config.notes:
        log.debug("%s", note)
    acls.configure(config)
    if config.krb5_conf:
        # -Djava.security.krb5.conf: MIT Kerberos reads KRB5_CONFIG (workers inherit it).
        os.environ["KRB5_CONFIG"] = config.krb5_conf
    if config.sasl_kerberos:
        # The service key must be there now, not at the first client's login.
        from zkpy.security.sasl import SaslError
        from zkpy.server.sasl_gssapi import GssapiServer
        try:
            GssapiServer(*config.sasl_kerberos)
        except SaslError as e:
            log.error("cannot start: the JAAS file %s, section %s: %s", config.jaas_path,
                      config.sasl_server_section, e)
            return 2
    from zkpy.server.standalone import run
    try:
        return run(config)
    except KeyboardInterrupt:
        return 0
    except (StorageCorruptError, StorageFullError) as e:
        log.error("cannot start: %s", e)
        return 1


def _server_cmd(path):
    return [sys.executable, "-m", "zkpy.cli.server", "start-foreground", os.path.abspath(path)]


def cmd_start(path):
    config = _load(path)
    print("Using config: %s" % os.path.abspath(path))
    sys.stdout.write("Starting zkpy ... ")
    sys.stdout.flush()
    pid = _read_pid(config)
    if pid and _alive(pid):
        print("already running as process %d." % pid)
        return 0
    os.makedirs(config.data_dir, exist_ok=True)
    log_dir = os.environ.get("ZOO_LOG_DIR") or config.data_dir
    os.makedirs(log_dir, exist_ok=True)
    out = open(os.path.join(log_dir, "zkpy-server.out"), "ab")
    proc = subprocess.Popen(_server_cmd(path), stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                            start_new_session=True)
    with open(_pidfile(config), "w") as f:
        f.write("%d\n" % proc.pid)
    deadline = time.time() + 60
    while time.time() < deadline:
        if proc.poll() is not None:
            print("FAILED TO START (exit code %d); see %s" % (proc.returncode, out.name))
            return 1
        try:
            if config.client_port is None:
                # secureClientPort only: a srvr would need a client certificate; the port
                # taking connections will do.
                socket.create_connection((_client_address(config), config.secure_client_port),
                                         1.0).close()
                print("STARTED")
                return 0
            if four_letter(_client_address(config), config.client_port, "srvr", 1.0):
                print("STARTED")
                return 0
        except OSError:
            time.sleep(0.1)
    print("FAILED TO START (no answer on port %d); see %s"
          % (config.client_port or config.secure_client_port, out.name))
    return 1


def cmd_stop(path):
    config = _load(path)
    print("Using config: %s" % os.path.abspath(path))
    sys.stdout.write("Stopping zkpy ... ")
    pid = _read_pid(config)
    if pid is None:
        print("no zkpy server to stop (could not find file %s)" % _pidfile(config))
        return 1
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    deadline = time.time() + 60
    while _alive(pid) and time.time() < deadline:
        time.sleep(0.1)
    if _alive(pid):
        print("process %d did not stop within 60 s" % pid)
        return 1
    try:
        os.unlink(_pidfile(config))
    except OSError:
        pass
    print("STOPPED")
    return 0


def cmd_status(path):
    config = _load(path)
    host = _client_address(config)
    print("Using config: %s" % os.path.abspath(path))
    if config.client_port is None:
        print("Client port not found; secureClientPort %d needs a TLS client (zkCli.sh "
              "with -Dzookeeper.client.secure=true): status asks the plaintext port only."
              % config.secure_client_port)
        return 1
    print("Client port found: %d. Client address: %s. Client SSL: false."
          % (config.client_port, host))
    try:
        text = four_letter(host, config.client_port, "srvr")
    except OSError:
        text = ""
    for line in text.splitlines():
        if line.startswith("Mode: "):
            print(line)
            return 0
    print("Error contacting service. It is probably not running.")
    return 1


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) >= 2 and argv[0] == "--config":
        os.environ["ZOOCFGDIR"] = argv[1]
        argv = argv[2:]
    if not argv:
        print(USAGE)
        return 2
    verb, rest = argv[0], argv[1:]
    if verb == "version":
        print("zkpy version %s (speaks ZooKeeper %s)" % (__version__, ZK_VERSION_STRING))
        return 0
    path = _config_path(rest)
    if verb == "start-foreground":
        return cmd_start_foreground(path)
    if verb == "start":
        return cmd_start(path)
    if verb == "stop":
        return cmd_stop(path)
    if verb == "restart":
        cmd_stop(path)
        time.sleep(0.5)
        return cmd_start(path)
    if verb == "status":
        return cmd_status(path)
    if verb == "print-cmd":
        print(" ".join(_server_cmd(path)))
        return 0
    print(USAGE)
    return 2


if __name__ == "__main__":
    sys.exit(main())
