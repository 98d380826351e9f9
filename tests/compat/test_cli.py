"""The zkpy-server command line (zkpy only): start/status/stop as a daemon, start-foreground and
its signals, version, and a bad config naming the key and the line.
"""

import os
import signal
import subprocess
import sys
import time

import pytest

from compat import servers as zkservers

REPO = str(zkservers.REPO_ROOT)


@pytest.fixture(autouse=True)
def _zkpy_selected(zk_targets):
    if "zkpy" not in zk_targets:
        pytest.skip("zkpy not in ZKPY_TEST_TARGETS")
    reason = zkservers.zkpy_unavailable()
    if reason:
        pytest.skip(reason)


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (REPO, env.get("PYTHONPATH", "")) if p)
    env.pop("ZOOPIDFILE", None)
    env.pop("ZOO_LOG_DIR", None)
    return env


def cli(*args, timeout=30):
    return subprocess.run([sys.executable, "-m", "zkpy.cli.server", *args], env=_env(),
                          stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=timeout)


def write_cfg(tmp_path, **extra):
    port = zkservers.free_port()
    data = tmp_path / "data"
    lines = ["tickTime=2000", "dataDir=%s" % data, "clientPort=%d" % port,
             "clientPortAddress=127.0.0.1", "4lw.commands.whitelist=*"]
    lines += ["%s=%s" % kv for kv in extra.items()]
    cfg = tmp_path / "zoo.cfg"
    cfg.write_text("\n".join(lines) + "\n")
    return cfg, port, data


def wait_serving(port, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if zkservers.four_letter(port, "ruok", timeout=1.0) == "imok":
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError("no server answering on port %d" % port)


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def test_start_status_stop_daemon(tmp_path):
    cfg, port, data = write_cfg(tmp_path)
    pidfile = data / "zookeeper_server.pid"
    started = cli("start", str(cfg))
    pid = None
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        assert "STARTED" in started.stdout
        assert pidfile.exists()
        pid = int(pidfile.read_text().strip())
        assert _alive(pid)
        assert zkservers.four_letter(port, "ruok") == "imok"

        status = cli("status", str(cfg))
        assert status.returncode == 0, status.stdout + status.stderr
        assert "Mode: standalone" in status.stdout

        again = cli("start", str(cfg))  # a second start sees the running one
        assert again.returncode == 0 and "already running" in again.stdout

        stopped = cli("stop", str(cfg))
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        assert "STOPPED" in stopped.stdout
        assert not _alive(pid)
        assert not pidfile.exists()

        status = cli("status", str(cfg))
        assert status.returncode == 1
        assert "Mode:" not in status.stdout
    finally:
        if pid is not None and _alive(pid):
            os.kill(pid, signal.SIGKILL)


def test_start_takes_log_dir_and_pid_file_from_zookeeper_env_sh(tmp_path):
    """zkServer.sh gets ZOO_LOG_DIR and ZOOPIDFILE from $ZOOCFGDIR/zookeeper-env.sh (zkEnv.sh
    sources it; java.env after it) as well as from the environment."""
    cfg, port, _ = write_cfg(tmp_path)
    (tmp_path / "zookeeper-env.sh").write_text(
        'ZOO_LOG_DIR="%s/logs"\nexport ZOOPIDFILE=$ZOO_LOG_DIR/zk.pid\n' % tmp_path)
    pidfile = tmp_path / "logs" / "zk.pid"
    started = cli("start", str(cfg))
    pid = None
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        pid = int(pidfile.read_text().strip())
        assert (tmp_path / "logs" / "zkpy-server.out").exists()
        assert zkservers.four_letter(port, "ruok") == "imok"
        stopped = cli("stop", str(cfg))
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        assert not _alive(pid) and not pidfile.exists()
    finally:
        if pid is not None and _alive(pid):
            os.kill(pid, signal.SIGKILL)


def test_stop_without_server_fails(tmp_path):
    cfg, _, _ = write_cfg(tmp_path)
    stopped = cli("stop", str(cfg))
    assert stopped.returncode != 0
    assert "STOPPED" not in stopped.stdout


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_start_foreground_exits_cleanly_on_signal(tmp_path, sig):
    cfg, port, _ = write_cfg(tmp_path)
    log = open(tmp_path / "fg.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "zkpy.cli.server", "start-foreground",
                             str(cfg)], env=_env(), stdin=subprocess.DEVNULL, stdout=log,
                            stderr=subprocess.STDOUT)
    try:
        wait_serving(port)
        # Some data on the way out must survive.
        from kazoo.client import KazooClient

        client = KazooClient(hosts="127.0.0.1:%d" % port, timeout=5.0)
        client.start(timeout=10)
        client.create("/kept", b"yes")
        client.stop()
        client.close()
        proc.send_signal(sig)
        code = proc.wait(timeout=15)
        assert code == 0, code   # a clean stop (README: "SIGTERM / SIGINT stop it cleanly")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    text = (tmp_path / "fg.log").read_text(errors="replace")
    assert "Traceback" not in text, text
    # Restart on the same data: the node is there.
    proc = subprocess.Popen([sys.executable, "-m", "zkpy.cli.server", "start-foreground",
                             str(cfg)], env=_env(), stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_serving(port)
        from kazoo.client import KazooClient

        client = KazooClient(hosts="127.0.0.1:%d" % port, timeout=5.0)
        client.start(timeout=10)
        assert client.get("/kept")[0] == b"yes"
        client.stop()
        client.close()
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def test_version():
    out = cli("version")
    assert out.returncode == 0
    assert "zkpy version" in out.stdout and "3.8" in out.stdout


def test_no_arguments_prints_usage():
    out = cli()
    assert out.returncode != 0
    assert "Usage" in out.stdout + out.stderr


@pytest.mark.parametrize("verb", ["start-foreground", "start", "status"])
def test_bad_config_names_key_and_line(tmp_path, verb):
    data = tmp_path / "data"
    cfg = tmp_path / "zoo.cfg"
    cfg.write_text("tickTime=2000\ndataDir=%s\nclientPort=abc\n" % data)
    out = cli(verb, str(cfg))
    assert out.returncode != 0
    msg = out.stdout + out.stderr
    assert "clientPort" in msg and ":3" in msg, msg
    assert "Traceback" not in msg
    assert not (data / "zookeeper_server.pid").exists()


def test_missing_config_file(tmp_path):
    out = cli("start-foreground", str(tmp_path / "nope.cfg"))
    assert out.returncode != 0
    assert "nope.cfg" in out.stdout + out.stderr
