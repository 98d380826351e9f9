"""Recovery from the transaction log: full rebuild, torn tails, corrupt middle records.

The server keeps its log in <dataDir>/zkpy-log/log.<16 hex> (format: zkpy/storage/txnlog.py) and
the tree in LMDB at <dataDir>/zkpy-db, which records the last applied zxid. On start the log is
replayed past that zxid. Deleting zkpy-db forces a rebuild of the whole tree from the log, which
is how these tests drive the replay path (after a clean stop or a SIGKILL LMDB is up to date).
"""

import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from compat.servers import make_server, zkpy_unavailable
from crash.kazoo_clients import client, close
from zkpy.storage import txnlog

pytestmark = [pytest.mark.timeout(60)]


@pytest.fixture
def server(tmp_path, request):
    reason = zkpy_unavailable()
    if reason:
        pytest.skip(reason)
    srv = make_server("zkpy", tmp_path / "zkpy")
    request.node._zk_servers = [srv]
    yield srv
    srv.stop()


def log_dir(server):
    return server.data_dir / "zkpy-log"


def log_files(server):
    return [Path(p) for _, p in txnlog.list_log_files(str(log_dir(server)))]


def records(path):
    """[(offset, length, zxid)] of the records in one log file (assumed undamaged; after a
    kill -9 the newest one ends in preallocated zeros, which are no record)."""
    data = open(path, "rb").read()
    assert data[:txnlog.FILE_HEADER_SIZE] == txnlog.FILE_HEADER
    out = []
    off = txnlog.FILE_HEADER_SIZE
    while off < len(data):
        length, _, zxid = struct.unpack_from(">IIQ", data, off)
        if zxid == 0:
            assert data[off:].count(0) == len(data) - off   # the preallocated tail
            break
        out.append((off, length, zxid))
        off += txnlog.RECORD_HEADER_SIZE + length
    return out


def dump(zk, path="/"):
    """{path: (data, stat)} of the whole tree."""
    data, stat = zk.get(path)
    out = {path: (data, tuple(stat))}
    for name in zk.get_children(path):
        out.update(dump(zk, (path.rstrip("/") + "/" + name)))
    return out


def section_since_last_start(server):
    """The server's output since the last `==== start` line the harness wrote."""
    text = server.log_text()
    return text[text.rfind("==== start"):]


def write_workload(zk):
    """Creates, sets, deletes, sequentials, an ephemeral and some failed requests."""
    from kazoo.exceptions import BadVersionError, NodeExistsError, NoNodeError

    zk.create("/app")
    for i in range(25):
        zk.create("/app/n%02d" % i, b"v%d" % i)
    for i in range(0, 25, 3):
        zk.set("/app/n%02d" % i, b"changed%d" % i)
    for i in range(0, 25, 5):
        zk.delete("/app/n%02d" % i)
    zk.create("/app/q", b"")
    for _ in range(5):
        zk.create("/app/q/item-", b"s", sequence=True)
    zk.delete("/app/q/item-0000000001")
    zk.create("/app/q/item-", b"s", sequence=True)
    zk.create("/app/eph", b"e", ephemeral=True)
    for exc, call in ((NodeExistsError, lambda: zk.create("/app")),
                      (NoNodeError, lambda: zk.delete("/nope")),
                      (BadVersionError, lambda: zk.set("/app", b"x", version=7))):
        with pytest.raises(exc):
            call()
    zk.set("/app", b"top")


def replayed_count(server):
    import re

    m = re.search(r"replayed (\d+) txns from the log", section_since_last_start(server))
    assert m, section_since_last_start(server)
    return int(m.group(1))


@pytest.mark.parametrize("delete_db", [True, False], ids=["rebuild", "keep-db"])
@pytest.mark.parametrize("how", ["stop", "kill9"])
def test_restart_gives_the_same_tree(server, how, delete_db):
    server.start()
    zk = client(server.hosts)
    write_workload(zk)
    before = dump(zk)
    if how == "stop":
        server.stop()
    else:
        server.kill()
    close(zk)  # server down: no closeSession, so /app/eph survives with its restored session
    total = sum(len(records(p)) for p in log_files(server))
    if delete_db:
        shutil.rmtree(server.data_dir / "zkpy-db")
    server.start()
    if delete_db:
        assert replayed_count(server) == total
    elif how == "stop":
        assert replayed_count(server) == 0
    zk = client(server.hosts)
    try:
        after = dump(zk)
    finally:
        close(zk)
    assert after == before
    assert "WARNING" not in section_since_last_start(server)


def _kill_after_last_write(server):
    """Writes /t00../t19 and /last (v1 then v2, the last record); SIGKILLs; returns the file."""
    server.start()
    zk = client(server.hosts)
    for i in range(20):
        zk.create("/t%02d" % i, b"%d" % i)
    zk.create("/last", b"v1")
    stat = zk.set("/last", b"v2")
    server.kill()
    close(zk)
    path = log_files(server)[-1]
    recs = records(path)
    assert recs[-1][2] == stat.mzxid, "the set of /last is not the last log record"
    return path, recs


@pytest.mark.parametrize("delete_db", [True, False], ids=["rebuild", "keep-db"])
@pytest.mark.parametrize("cut", ["in-header", "in-payload"])
def test_truncated_tail_is_cut_with_one_warning(server, cut, delete_db):
    path, recs = _kill_after_last_write(server)
    off, length, _ = recs[-1]
    size = off + (5 if cut == "in-header" else txnlog.RECORD_HEADER_SIZE + length // 2)
    with open(path, "r+b") as f:
        f.truncate(size)
    if delete_db:
        shutil.rmtree(server.data_dir / "zkpy-db")
    server.start()
    out = section_since_last_start(server)
    warnings = [line for line in out.splitlines() if " WARNING " in line]
    assert len(warnings) == 1, out
    assert str(path) in warnings[0] and "byte offset %d" % off in warnings[0], warnings[0]
    assert path.stat().st_size == off  # the torn record is gone from the file
    zk = client(server.hosts)
    try:
        for i in range(20):
            assert zk.get("/t%02d" % i)[0] == b"%d" % i
        # The log lost the set. A kept LMDB comes back to its last checkpoint: it holds the set
        # only if a checkpoint came after it (a state a real crash cannot leave: LMDB is
        # written only after the record was durable).
        m = re.search(r"restored to its checkpoint at zxid 0x([0-9a-f]+)", out)
        covered = not delete_db and (m is None or int(m.group(1), 16) >= recs[-1][2])
        assert zk.get("/last")[0] == (b"v2" if covered else b"v1")
        zk.set("/last", b"v3")       # appends after the cut work
        zk.create("/after-cut")
    finally:
        close(zk)
    server.stop()
    server.start()
    assert " WARNING " not in section_since_last_start(server)
    zk = client(server.hosts)
    try:
        assert zk.get("/last")[0] == b"v3" and zk.exists("/after-cut") is not None
    finally:
        close(zk)


def test_corrupt_last_record_is_a_torn_tail(server):
    """A CRC mismatch in the newest file's last record (nothing valid after it) is a torn write."""
    path, recs = _kill_after_last_write(server)
    off, length, _ = recs[-1]
    with open(path, "r+b") as f:
        f.seek(off + txnlog.RECORD_HEADER_SIZE + length - 1)
        b = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([b[0] ^ 0x40]))
    shutil.rmtree(server.data_dir / "zkpy-db")
    server.start()
    warnings = [line for line in section_since_last_start(server).splitlines()
                if " WARNING " in line]
    assert len(warnings) == 1 and str(path) in warnings[0] and "byte offset %d" % off in warnings[0]
    zk = client(server.hosts)
    try:
        assert zk.get("/last")[0] == b"v1"
    finally:
        close(zk)


def _run_server_expecting_failure(server):
    server.write_config()
    proc = subprocess.run(server.command(), cwd=server.root, env=server.env(),
                          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, timeout=30)
    return proc.returncode, proc.stdout.decode("utf-8", "replace")


# Field of the record header/payload to damage, as (offset within the record, xor mask).
FIELDS = {
    "length": (0, 0x80),     # top byte: the length now points far past the end of the file
    "crc": (7, 0x01),
    "zxid": (15, 0x04),
    "payload": (txnlog.RECORD_HEADER_SIZE + 3, 0x10),
}


@pytest.mark.parametrize("delete_db", [False, True], ids=["keep-db", "rebuild"])
@pytest.mark.parametrize("field", sorted(FIELDS))
def test_flipped_byte_in_a_middle_record_refuses_to_start(server, field, delete_db):
    server.start()
    zk = client(server.hosts)
    for i in range(30):
        zk.create("/m%02d" % i, b"x" * i)
    close(zk)
    server.stop()
    path = log_files(server)[-1]
    recs = records(path)
    off = recs[len(recs) // 2][0]
    rel, mask = FIELDS[field]
    with open(path, "r+b") as f:
        f.seek(off + rel)
        b = f.read(1)
        f.seek(off + rel)
        f.write(bytes([b[0] ^ mask]))
    damaged = path.read_bytes()
    if delete_db:
        shutil.rmtree(server.data_dir / "zkpy-db")
    code, out = _run_server_expecting_failure(server)
    assert code != 0, out
    assert str(path) in out and "byte offset %d" % off in out, out
    assert path.read_bytes() == damaged, "the server modified a corrupt log"
