"""zkpy.bench.loadgen: percentile math, request building, the report, and short runs against
its own null server (no real ZooKeeper). About two seconds in all."""

import json
import math
import struct

import pytest

from zkpy.bench import command, compare, loadgen
from zkpy.proto import codec, consts, records


# --- percentiles ----------------------------------------------------------------------------

def test_percentiles_nearest_rank():
    values = list(range(1, 101))          # 1..100
    p = loadgen.percentiles(values, (0.5, 0.99, 0.999, 1.0))
    assert p == {0.5: 50, 0.99: 99, 0.999: 100, 1.0: 100}


def test_percentiles_unsorted_and_small():
    assert loadgen.percentiles([5, 1, 3], (0.5,)) == {0.5: 3}
    assert loadgen.percentiles([7], (0.5, 0.99)) == {0.5: 7, 0.99: 7}
    assert loadgen.percentiles([], (0.5, 0.99)) == {0.5: None, 0.99: None}


def test_percentiles_p999_of_a_thousand():
    values = list(range(1000, 0, -1))     # 1000 values, descending
    p = loadgen.percentiles(values)
    assert p[0.5] == 500 and p[0.99] == 990 and p[0.999] == 999


def test_percentiles_match_definition():
    import random
    rnd = random.Random(7)
    values = [rnd.randrange(10**6) for _ in range(1234)]
    s = sorted(values)
    for q in (0.1, 0.5, 0.9, 0.99, 0.999):
        assert loadgen.percentiles(values, (q,))[q] == s[math.ceil(q * len(s)) - 1]


def test_percentiles_rejects_bad_q():
    with pytest.raises(ValueError):
        loadgen.percentiles([1, 2], (0,))
    with pytest.raises(ValueError):
        loadgen.percentiles([1, 2], (1.5,))


def test_summarize_adds_rates_and_converts_to_ms():
    parts = [
        {"ops": 100, "window_s": 2.0, "lat_ns": [1_000_000] * 100, "errors": 0,
         "error_samples": []},
        {"ops": 300, "window_s": 2.0, "lat_ns": [3_000_000] * 300, "errors": 1,
         "error_samples": ["boom"]},
    ]
    r = loadgen.summarize(parts)
    assert r["ops"] == 400 and r["ops_per_sec"] == 200.0
    assert r["p50_ms"] == 3.0 and r["p99_ms"] == 3.0 and r["max_ms"] == 3.0
    assert r["errors"] == 1 and r["error_samples"] == ["boom"]


def test_summarize_counts_an_empty_window_as_an_error():
    parts = [{"ops": 0, "window_s": 0.0, "lat_ns": [], "errors": 0, "error_samples": []}] * 2
    r = loadgen.summarize(parts)
    assert r["ops"] == 0 and r["ops_per_sec"] == 0 and r["p99_ms"] is None
    assert r["errors"] == 1 and r["error_samples"] == [loadgen.NO_OPS]


# --- requests -------------------------------------------------------------------------------

def test_build_request_frame():
    body = codec.encode(records.GetDataRequest("/bench/n1", False))
    frame = loadgen.build_request(7, consts.OP_GET_DATA, body)
    (n,) = struct.unpack_from(">i", frame)
    assert n == len(frame) - 4
    xid, op, off = codec.decode_request_header(frame, 4)
    assert (xid, op) == (7, consts.OP_GET_DATA)
    rec, end = codec.decode(records.GetDataRequest, frame, off)
    assert rec == records.GetDataRequest("/bench/n1", False) and end == len(frame)
    assert loadgen.build_request(3, consts.OP_CLOSE_SESSION) == struct.pack(">iii", 8, 3, -11)


@pytest.mark.parametrize("name,op,cls", [
    ("getdata", consts.OP_GET_DATA, records.GetDataRequest),
    ("latency", consts.OP_GET_DATA, records.GetDataRequest),
    ("exists", consts.OP_EXISTS, records.ExistsRequest),
    ("setdata", consts.OP_SET_DATA, records.SetDataRequest),
])
def test_workload_reads_and_writes_cycle_over_znodes(name, op, cls):
    wl = loadgen.Workload(name, root="/b", znodes=5, value_size=10)
    seen = set()
    for k in range(5):
        got_op, body = wl.request(0, k)
        assert got_op == op
        rec, end = codec.decode(cls, body)
        assert end == len(body)
        assert rec.path.startswith("/b/n")
        seen.add(rec.path)
        if cls is records.SetDataRequest:
            assert rec.data == b"x" * 10 and rec.version == -1
        else:
            assert rec.watch is False
    assert seen == {"/b/n%d" % i for i in range(5)}
    # Another session starts elsewhere in the cycle.
    assert wl.request(1, 0) != wl.request(0, 0) or wl.znodes == 1


def test_workload_mixed_is_one_set_in_ten():
    wl = loadgen.Workload("mixed", znodes=100)
    ops = [wl.request(3, k)[0] for k in range(100)]
    assert ops.count(consts.OP_SET_DATA) == 10
    assert ops.count(consts.OP_GET_DATA) == 90


@pytest.mark.parametrize("name, share", [("mixed-random", 0.10), ("mixed-50", 0.50)])
def test_workload_random_mixes_are_seeded_and_bunch_up(name, share):
    wl = loadgen.Workload(name, znodes=100)
    streams = [[wl.request(sid, k)[0] for k in range(2000)] for sid in range(8)]
    writes = sum(s.count(consts.OP_SET_DATA) for s in streams)
    assert abs(writes / 16000.0 - share) < 0.02
    assert all(set(s) == {consts.OP_SET_DATA, consts.OP_GET_DATA} for s in streams)
    # the same stream every time, different per session, and not every 10th request
    assert streams[0] == [loadgen.Workload(name, znodes=100).request(0, k)[0]
                          for k in range(2000)]
    assert streams[0] != streams[1]
    runs = max(len(r) for s in streams for r in "".join(
        "w" if op == consts.OP_SET_DATA else "." for op in s).split("."))
    assert runs >= 2   # writes sometimes come in runs


def test_workload_create_and_delete_paths():
    wl = loadgen.Workload("create", root="/bench", value_size=1024)
    op, body = wl.request(4, 17)
    assert op == consts.OP_CREATE
    rec, _ = codec.decode(records.CreateRequest, body)
    assert rec.path == "/bench/c/s4-17" and rec.data == b"x" * 1024
    assert rec.flags == consts.CREATE_PERSISTENT and rec.acl == loadgen.OPEN_ACL_UNSAFE
    op, body = wl.delete_request(4, 17)
    assert op == consts.OP_DELETE
    assert codec.decode(records.DeleteRequest, body)[0] == records.DeleteRequest(
        "/bench/c/s4-17", -1)
    assert not wl.needs_znodes()


def test_workload_getchildren_and_bad_names():
    wl = loadgen.Workload("getchildren", root="/x/")
    op, body = wl.request(0, 0)
    assert op == consts.OP_GET_CHILDREN
    assert codec.decode(records.GetChildrenRequest, body)[0].path == "/x"
    with pytest.raises(ValueError):
        loadgen.Workload("nope")


def test_split_and_hosts():
    assert loadgen._split(5, 2) == [[0, 2, 4], [1, 3]]
    assert loadgen._split(1, 4) == [[0]]
    assert loadgen.parse_hosts("a:1, b:2") == [("a", 1), ("b", 2)]
    assert loadgen.parse_hosts("[::1]:2181") == [("::1", 2181)]


# --- against the null server ----------------------------------------------------------------

@pytest.fixture(scope="module")
def null_server():
    proc, port = loadgen.start_null_server()
    yield [("127.0.0.1", port)]
    proc.terminate()
    proc.join(5)


def test_null_server_handshake_and_reply(null_server):
    client = loadgen.SyncClient(null_server[0])
    try:
        assert client.session_id != 0
        err, body = client.call(consts.OP_GET_DATA,
                                codec.encode(records.GetDataRequest("/a", False)))
        assert err == 0
        rec, _ = codec.decode(records.GetDataResponse, body)
        assert rec.data == b"" and rec.stat == records.Stat()
    finally:
        client.close()


def test_one_second_run_against_null_server(null_server, tmp_path):
    r = loadgen.run_bench(null_server, "getdata", processes=1, sessions=4, depth=8,
                          duration=1.0, warmup=0.2, znodes=20)
    assert r["errors"] == 0
    assert r["ops"] > 1000 and r["ops_per_sec"] > 1000
    assert 0 < r["p50_ms"] <= r["p99_ms"] <= r["p999_ms"] <= r["max_ms"]
    assert r["window_s"] == pytest.approx(1.0, abs=0.05)


def test_cli_create_run_writes_json(null_server, tmp_path, capsys):
    out = tmp_path / "r.json"
    host = "%s:%d" % null_server[0]
    rc = command.main(["run", "--hosts", host, "--workload", "create", "--processes", "2",
                       "--sessions", "4", "--depth", "4", "--duration", "0.3", "--warmup", "0",
                       "--json", str(out), "--label", "null", "-q"])
    assert rc == 0
    r = json.loads(out.read_text())
    assert r["workload"] == "create" and r["label"] == "null" and r["errors"] == 0
    assert r["processes"] == 2 and r["ops"] > 0
    assert "ops/s" in capsys.readouterr().out
    table = compare.pivot_table([r])
    assert "| create |" in table and "null" in table


def test_error_replies_are_loud_and_fail_the_run(capsys):
    # This null server answers every getData with NONODE: the run must exit 1 and say so.
    proc, port = loadgen.start_null_server(fail_op=consts.OP_GET_DATA)
    try:
        rc = command.main(["run", "--hosts", "127.0.0.1:%d" % port, "--workload", "mixed",
                           "--processes", "1", "--sessions", "2", "--depth", "2",
                           "--duration", "0.3", "--warmup", "0", "-q"])
    finally:
        proc.terminate()
        proc.join(5)
    assert rc == 1
    err = capsys.readouterr().err
    assert "ERROR" in err and "NONODE (-101)" in err


def test_unreachable_server_is_an_error(capsys):
    proc, port = loadgen.start_null_server()
    proc.terminate()
    proc.join(5)
    # Nothing listens there any more: the run cannot even set up.
    rc = command.main(["run", "--hosts", "127.0.0.1:%d" % port, "--duration", "0.2", "-q"])
    assert rc == 2
    assert "ERROR" in capsys.readouterr().err


def test_summarize_reports_the_window_every_process_was_in():
    part = {"ops": 1, "window_s": 1.0, "lat_ns": [1000], "errors": 0, "error_samples": []}
    parts = [dict(part, window_ns=(100, 900)), dict(part, window_ns=(150, 800))]
    assert loadgen.summarize(parts)["window_monotonic_ns"] == [150, 800]
    assert loadgen.summarize([part])["window_monotonic_ns"] is None


# --- TLS sessions ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    from zkpy.bench import servers
    return servers.tls_material(tmp_path_factory.mktemp("tls"))


def _tls_pair(material):
    """A TlsSocket (client) and an ssl.SSLSocket (server, needing a client certificate) over
    a socketpair, after the handshake."""
    import socket
    import ssl
    import threading
    a, b = socket.socketpair()
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(material.keystore)
    sctx.load_verify_locations(material.truststore)
    sctx.verify_mode = ssl.CERT_REQUIRED
    box = {}
    t = threading.Thread(target=lambda: box.setdefault("s", sctx.wrap_socket(b, server_side=True)))
    t.start()
    c = loadgen.TlsSocket(a, loadgen.client_context(material.client), "127.0.0.1").handshake()
    t.join(10)
    return c, box["s"]


def test_tls_socket_keeps_the_stream_exact_through_a_full_send_buffer(tls_files):
    import selectors
    import threading
    import time
    c, s = _tls_pair(tls_files)
    try:
        got = bytearray()
        total = 6 << 20

        def read_later():
            time.sleep(0.3)                       # let the client fill its socket buffer
            while len(got) < total:
                data = s.recv(1 << 16)
                if not data:
                    break
                got.extend(data)

        reader = threading.Thread(target=read_later)
        reader.start()
        c.setblocking(False)
        sel = selectors.DefaultSelector()
        sel.register(c, selectors.EVENT_WRITE)
        sent = bytearray()
        wbuf = bytearray()
        chunk = 0
        blocked = held = 0
        while len(sent) < total or wbuf:
            if len(sent) < total:                 # the load loop appends while a send waits
                piece = bytes([chunk % 251]) * 65536 + chunk.to_bytes(4, "big")
                piece = piece[:total - len(sent)]
                wbuf += piece
                sent += piece
                chunk += 1
            try:
                n = c.send(wbuf)
            except BlockingIOError:
                n = 0
                blocked += 1
            if 0 < n < len(wbuf):
                held += 1
            del wbuf[:n]
            if wbuf:
                sel.select(5)
        reader.join(30)
        assert held                               # ciphertext was left over (byte kept)
        assert len(got) == total and got == sent
        # and back: replies decrypted whole, BlockingIOError when there is nothing
        with pytest.raises(BlockingIOError):
            c.recv(1 << 18)
        reply = bytes(range(256)) * 4096          # 1 MiB
        threading.Thread(target=s.sendall, args=(reply,)).start()
        sel.modify(c, selectors.EVENT_READ)
        back = bytearray()
        while len(back) < len(reply):
            assert sel.select(5)
            try:
                back += c.recv(1 << 18)
            except BlockingIOError:
                pass
        assert back == reply
        # blocking use, as SyncClient and _close_sessions: small reads, sendall
        c.setblocking(True)
        c.sendall(b"ping")
        assert s.recv(4) == b"ping"
        s.sendall(b"0123456789")
        assert c.recv(4) == b"0123" and c.recv(100) == b"456789"
    finally:
        c.close()
        s.close()


def test_tls_client_refuses_a_server_its_ca_did_not_sign(tls_files, tmp_path):
    import socket
    import ssl
    import threading
    from zkpy.testing import tlsstores as ts
    other = ts.write_pem_trust(tmp_path / "other.pem", ts.make_ca("another CA"))
    files = loadgen.TlsFiles(other, tls_files.client_cert, tls_files.client_key)
    assert loadgen.client_context(files).verify_mode == ssl.CERT_REQUIRED
    assert loadgen.client_context(files) is loadgen.client_context(tuple(files))
    a, b = socket.socketpair()
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(tls_files.keystore)

    def serve():
        try:
            sctx.wrap_socket(b, server_side=True)
        except OSError:
            pass

    t = threading.Thread(target=serve)
    t.start()
    try:
        with pytest.raises(ssl.SSLCertVerificationError):
            loadgen.TlsSocket(a, loadgen.client_context(files), "127.0.0.1").handshake()
    finally:
        a.close()
        t.join(10)
        b.close()


def test_cli_tls_options_need_all_three(capsys):
    rc = command.main(["run", "--hosts", "127.0.0.1:1", "--tls-ca", "ca.pem", "-q"])
    assert rc == 2 and "--tls-cert" in capsys.readouterr().err
