"""An ensemble member whose local data is damaged says so, sets the damaged copy aside and is
resynced by the leader (it never refuses to serve forever, never votes with the damaged zxid).

A standalone server with the same damage stops with one message naming the file (see
tests/unit/test_lmdb_checkpoint.py for the kinds of damage LmdbTree reports).
"""

import os

import pytest

from compat import servers as zkservers
from compat.ensemble import Ensemble
from crash.kazoo_clients import client, close

pytestmark = pytest.mark.timeout(120)


def _garble_data_file(member):
    """Every page but the two meta pages zeroed (damage a checkpoint cannot repair: the meta
    pages alone it can -- it writes them back)."""
    path = os.path.join(str(member.data_dir), "zkpy-db", "data.mdb")
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.seek(2 * 4096)
        f.write(b"\0" * (size - 2 * 4096))
    return path


def _wipe_checkpoint_slots(member):
    for name in ("checkpoint.0", "checkpoint.1"):
        with open(os.path.join(str(member.data_dir), "zkpy-db", name), "wb") as f:
            f.write(b"\0" * 100)


@pytest.mark.parametrize("damage", [_garble_data_file, _wipe_checkpoint_slots],
                         ids=["data-file", "checkpoint"])
def test_damaged_member_is_resynced_by_the_leader(tmp_path, damage):
    reason = zkservers.zkpy_unavailable()
    if reason:
        pytest.skip(reason)
    ens = Ensemble("zkpy", tmp_path / "ens", servers=3)
    ens.start()
    try:
        leader = ens.leader(timeout=30)
        victim = next(m for m in ens.members if m is not leader)
        zk = client(ens.hosts())
        try:
            zk.create("/app")
            for i in range(200):
                zk.create("/app/n%03d" % i, b"v%d" % i)
        finally:
            close(zk)
        victim.stop()
        damage(victim)
        victim.start()
        victim.wait_mode(("follower",), timeout=60)
        log = victim.log_path.read_text(errors="replace")
        assert "local data damaged" in log and "resyncing from the leader" in log, log[-3000:]
        assert any(n.startswith("zkpy-db.damaged-") for n in os.listdir(str(victim.data_dir)))
        zk = client("127.0.0.1:%d" % victim.client_port)
        try:
            zk.sync("/app")
            assert len(zk.get_children("/app")) == 200
            assert zk.get("/app/n199")[0] == b"v199"
            zk.create("/app/after")   # and it takes part in writes again
        finally:
            close(zk)
        # It restarts cleanly from the resynced copy.
        victim.stop()
        victim.start()
        victim.wait_mode(("follower", "leader"), timeout=60)
        zk = client("127.0.0.1:%d" % victim.client_port)
        try:
            zk.sync("/app")
            assert zk.exists("/app/after") is not None
        finally:
            close(zk)
    finally:
        ens.stop()


@pytest.mark.parametrize("damage", [_garble_data_file, _wipe_checkpoint_slots],
                         ids=["data-file", "checkpoint"])
def test_damaged_standalone_stops_with_one_message(tmp_path, damage):
    import subprocess
    import sys

    srv = zkservers.make_server("zkpy", tmp_path / "zkpy")
    srv.start()
    try:
        zk = client(srv.hosts)
        try:
            for i in range(50):
                zk.create("/n%02d" % i, b"x" * 100)
        finally:
            close(zk)
    finally:
        srv.stop()
    damage(srv)
    proc = subprocess.run([sys.executable, "-m", "zkpy.cli.server", "start-foreground",
                           str(srv.cfg_path)], capture_output=True, text=True, timeout=60)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert "Traceback" not in out, out
    lines = [ln for ln in out.splitlines() if "cannot start" in ln]
    assert len(lines) == 1 and "zkpy-db" in lines[0], out
    # nothing was created or replaced: the damaged files are still there as they were
    assert os.path.exists(os.path.join(str(srv.data_dir), "zkpy-db", "data.mdb"))
    assert not any(".damaged-" in n for n in os.listdir(str(srv.data_dir)))
