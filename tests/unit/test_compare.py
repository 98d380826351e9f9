"""zkpy.bench.compare (`zkpy-bench compare`): the ratio table, the run plan and its ETA, the
argument handling, and whole comparisons against two of zkpy-bench's null servers (no Java,
no zkpy server); the tls topology against a real zkpy server (and Apache ZooKeeper 3.8 when
installed). About fifteen seconds in all."""

import json
import sys

import pytest

from zkpy.bench import command, compare, loadgen, servers
from zkpy.proto import consts


def _report(case, label, ops, p99, errors=0, rnd=1):
    return {"workload": case.split("-")[0], "case": case, "label": label, "round": rnd,
            "ops_per_sec": ops, "p50_ms": p99 / 2, "p99_ms": p99, "p999_ms": p99 * 2,
            "errors": errors, "error_samples": ["boom"] * errors}


# --- the ratio table ------------------------------------------------------------------------

def test_ratio_rows_take_medians_over_rounds_and_divide():
    reports = [
        _report("getdata", "zkpy", 300.0, 10.0, rnd=1),
        _report("getdata", "ZooKeeper", 100.0, 40.0, rnd=1),
        _report("getdata", "zkpy", 100.0, 30.0, rnd=2),
        _report("getdata", "ZooKeeper", 100.0, 20.0, rnd=2),
        _report("getdata", "zkpy", 200.0, 20.0, rnd=3),
        _report("getdata", "ZooKeeper", 100.0, 40.0, rnd=3),
        _report("create-100B", "zkpy", 50.0, 8.0),
        _report("create-100B", "ZooKeeper", 100.0, 4.0),
    ]
    rows = compare.ratio_rows(reports, "zkpy", "ZooKeeper")
    assert [r["case"] for r in rows] == ["getdata", "create-100B"]
    g, c = rows
    assert g["a_ops"] == 200.0 and g["a_range"] == (100.0, 300.0) and g["a_runs"] == 3
    assert g["b_ops"] == 100.0 and g["a_p99"] == 20.0 and g["b_p99"] == 40.0
    assert g["ops_ratio"] == pytest.approx(2.0) and g["p99_ratio"] == pytest.approx(0.5)
    assert c["ops_ratio"] == pytest.approx(0.5) and c["p99_ratio"] == pytest.approx(2.0)


def test_ratio_table_cells_ratios_target_and_errors():
    reports = [
        _report("getdata", "zkpy", 200.0, 10.0),
        _report("getdata", "ZooKeeper", 100.0, 20.0),
        _report("setdata", "zkpy", 50.0, 10.0),
        _report("setdata", "ZooKeeper", 100.0, 5.0),
        _report("delete", "zkpy", 100.0, 5.0, errors=3),
        _report("delete", "ZooKeeper", 100.0, 5.0),
    ]
    table = compare.ratio_table(compare.ratio_rows(reports, "zkpy", "ZooKeeper"))
    lines = table.splitlines()
    assert lines[0].startswith("| workload | zkpy ops/s | ZooKeeper ops/s | ops/s zkpy / "
                               "ZooKeeper |")
    assert len(lines) == 5
    assert lines[2] == "| getdata | 200 | 100 | 2.00x | 10.0 | 20.0 | 0.50x | yes |"
    assert lines[3] == "| setdata | 50 | 100 | 0.50x | 10.0 | 5.0 | 2.00x | no |"
    assert "**3 errors**" in lines[4] and lines[4].endswith("| **errors** |")


def test_ratio_rows_with_a_missing_side_or_zero_ops():
    reports = [_report("getdata", "zkpy", 100.0, 10.0),
               _report("exists", "zkpy", 100.0, 10.0),
               _report("exists", "ZooKeeper", 0.0, 10.0, errors=1)]
    rows = compare.ratio_rows(reports, "zkpy", "ZooKeeper")
    assert rows[0]["b_ops"] is None and rows[0]["ops_ratio"] is None
    assert rows[1]["ops_ratio"] is None                     # no division by zero
    table = compare.ratio_table(rows)
    assert "| getdata | 100 | - | - |" in table


def test_pivot_and_long_tables_group_by_case():
    reports = [_report("create-100B", "zkpy", 10.0, 1.0), _report("create-1KiB", "zkpy", 5.0, 2.0)]
    assert "| create-100B |" in compare.pivot_table(reports)
    assert "| create-1KiB | zkpy | 1 |" in compare.long_table(reports)


# --- the plan, the ETA ----------------------------------------------------------------------

def test_plan_alternates_servers_per_workload_and_round():
    cases = compare.CASES[:2]
    plan = compare.plan_runs(cases, ["A", "B"], 2)
    assert [(r.round, r.case.name, r.label) for r in plan] == [
        (1, "create-100B", "A"), (1, "create-100B", "B"),
        (1, "create-1KiB", "A"), (1, "create-1KiB", "B"),
        (2, "create-100B", "A"), (2, "create-100B", "B"),
        (2, "create-1KiB", "A"), (2, "create-1KiB", "B")]


def test_every_workload_of_the_issue_is_planned():
    names = [c.name for c in compare.CASES]
    assert names == ["create-100B", "create-1KiB", "getdata", "setdata", "delete", "exists",
                     "getchildren", "mixed-90/10", "mixed-90/10-random", "mixed-50/50",
                     "latency"]
    assert {c.workload for c in compare.CASES} == set(loadgen.WORKLOADS)
    assert compare.CASE_BY_NAME["create-1KiB"].value_size == 1024


def test_default_full_run_fits_in_eight_minutes():
    est = [compare.estimate_run_s(r.case, 5.0, 2.0)
           for r in compare.plan_runs(compare.CASES, ["A", "B"], 2)]
    assert sum(est) < 8 * 60 - 30                  # 30 s for starts and prewarm
    get = compare.CASE_BY_NAME["getdata"]
    create = compare.CASE_BY_NAME["create-100B"]
    assert compare.estimate_run_s(create, 5, 2) > compare.estimate_run_s(get, 5, 2)


def test_eta_scales_remaining_estimates_by_observed_speed():
    assert compare.eta_seconds([], [], [10, 20]) == 30
    assert compare.eta_seconds([20], [10], [10, 20]) == pytest.approx(60)
    assert compare.eta_seconds([5, 5], [10, 10], [40]) == pytest.approx(20)
    assert compare.eta_seconds([5], [10], []) == 0


def test_fmt_duration():
    assert compare.fmt_duration(0) == "0:00"
    assert compare.fmt_duration(59.6) == "1:00"
    assert compare.fmt_duration(421) == "7:01"
    assert compare.fmt_duration(3725) == "1:02:05"
    assert compare.fmt_duration(-3) == "0:00"


def test_progress_line_says_errors():
    run = compare.Run(1, compare.CASE_BY_NAME["getdata"], "zkpy")
    ok = compare.progress_line(3, 36, run, {"ops_per_sec": 1234.4, "p99_ms": 5.25,
                                            "errors": 0}, 61, 300)
    assert ok.startswith("[ 3/36] round 1  getdata") and "1234 ops/s" in ok
    assert "elapsed 1:01" in ok and "ETA 5:00" in ok and " ok " in ok
    bad = compare.progress_line(3, 36, run, {"ops_per_sec": 0, "p99_ms": None, "errors": 2},
                                1, 1)
    assert "ERRORS 2" in bad and "p99       - ms" in bad


# --- arguments --------------------------------------------------------------------------------

def _settings(*argv):
    args = command._parser().parse_args(["compare"] + list(argv))
    return compare.settings_from_args(args)


def test_default_settings():
    s = _settings()
    assert s["kinds"] == ["zkpy", "apache"] and s["labels"] == ["zkpy", "ZooKeeper"]
    assert s["topology"] == "standalone" and s["rounds"] == 2
    assert s["duration"] == 5.0 and s["warmup"] == 2.0 and s["tick_ms"] == 2000
    assert [c.name for c in s["cases"]] == [c.name for c in compare.CASES]
    assert s["install"] and s["chart"] and not s["keep_data"]
    assert s["out"].name == compare.time.strftime("%Y-%m-%d")


def test_quick_settings_and_explicit_values_win():
    s = _settings("--quick")
    assert s["rounds"] == 1 and s["duration"] == 1.0 and s["warmup"] == 0.5
    assert s["out"].name.endswith("-quick")
    s = _settings("--quick", "--rounds", "3", "--duration", "2", "--workloads",
                  "getdata, latency", "--servers", "null,null", "--out", "/tmp/x",
                  "--no-install", "--no-chart", "--tick-time", "500")
    assert s["rounds"] == 3 and s["duration"] == 2.0 and s["warmup"] == 0.5
    assert [c.name for c in s["cases"]] == ["getdata", "latency"]
    assert s["labels"] == ["null", "null-2"] and str(s["out"]) == "/tmp/x"
    assert not s["install"] and not s["chart"] and s["tick_ms"] == 500


@pytest.mark.parametrize("argv", [
    ["--servers", "zkpy"], ["--servers", "zkpy,etcd"], ["--servers", "zkpy,apache,null"],
    ["--workloads", "getdata,nope"], ["--rounds", "0"], ["--duration", "0"],
    ["--sessions", "0"],
])
def test_bad_settings_are_refused(argv):
    with pytest.raises(ValueError):
        _settings(*argv)


def test_unknown_topology_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit):
        _settings("--topology", "ensemble7")


def test_bad_settings_exit_2(capsys):
    assert command.main(["compare", "--servers", "zkpy"]) == 2
    assert "ERROR" in capsys.readouterr().err


# --- servers ----------------------------------------------------------------------------------

def test_both_real_servers_get_the_same_config(tmp_path):
    z = servers.make_cluster("zkpy", "standalone", tmp_path, label="zkpy")
    a = servers.make_cluster("apache", "standalone", tmp_path, label="ZooKeeper")
    cz, ca = z.members[0].config(), a.members[0].config()
    drop = ("dataDir", "clientPort")
    assert {k: v for k, v in cz.items() if k not in drop} == \
        {k: v for k, v in ca.items() if k not in drop}
    assert cz["forceSync"] == "yes" and cz["admin.enableServer"] == "false"
    assert "workers" not in cz                        # zkpy's default: one per CPU
    assert cz["dataDir"].startswith(str(tmp_path)) and ca["dataDir"].startswith(str(tmp_path))
    assert cz["dataDir"] != ca["dataDir"]
    assert a.members[0].command()[0] == "java"
    assert z.members[0].command()[:3] == [sys.executable, "-m", "zkpy.cli.server"]


def test_make_cluster_refuses_unknown_kind_and_topology(tmp_path):
    with pytest.raises(ValueError):
        servers.make_cluster("etcd", "standalone", tmp_path)
    with pytest.raises(ValueError):
        servers.make_cluster("zkpy", "ensemble7", tmp_path)


def test_missing_apache_without_install_says_how(monkeypatch, tmp_path):
    from zkpy.testing import harness
    monkeypatch.setattr(harness, "JAVA_DIR", tmp_path)   # where apache_missing() looks
    assert "zookeeper.jar" in servers.apache_missing()
    with pytest.raises(servers.ServerError, match="apt-get install -y zookeeper"):
        servers.ensure_apache(log=lambda m: None, install=False)
    monkeypatch.setattr(servers.os, "geteuid", lambda: 1000)
    with pytest.raises(servers.ServerError, match="not root"):
        servers.ensure_apache(log=lambda m: None, install=True)


def test_chart_is_skipped_without_matplotlib(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    rows = compare.ratio_rows([_report("getdata", "A", 1.0, 1.0),
                               _report("getdata", "B", 1.0, 1.0)], "A", "B")
    assert compare.write_chart(rows, tmp_path / "c.png", "A", "B") is False
    assert not (tmp_path / "c.png").exists()


# --- whole comparisons against null servers ---------------------------------------------------

QUICK_LOAD = ["--duration", "0.3", "--warmup", "0.1", "--prewarm", "0.2", "--rounds", "1",
              "--processes", "1", "--sessions", "4", "--depth", "4", "--znodes", "50"]


def test_compare_two_null_servers(tmp_path, capsys):
    out = tmp_path / "out"
    code = command.main(["compare", "--servers", "null,null", "--workloads",
                         "create-1KiB,getdata,delete,latency", "--out", str(out),
                         "--data-dir", str(tmp_path), "--no-chart"] + QUICK_LOAD)
    cap = capsys.readouterr()
    assert code == 0, cap.err
    assert "| getdata |" in cap.out and "ops/s null / null-2" in cap.out
    assert "[8/8] round 1  latency" in cap.err and "ETA" in cap.err
    doc = json.loads((out / "compare.json").read_text())
    assert [(r["case"], r["label"]) for r in doc["reports"]] == [
        (c, lab) for c in ("create-1KiB", "getdata", "delete", "latency")
        for lab in ("null", "null-2")]
    assert all(r["errors"] == 0 and r["ops"] > 0 for r in doc["reports"])
    assert doc["reports"][0]["value_size"] == 1024
    assert doc["command"].startswith("zkpy-bench compare --servers null,null")
    assert doc["machine"]["cpus"] >= 1 and doc["machine"]["load_before"]
    md = (out / "compare.md").read_text()
    assert "| latency |" in md and "Load average" in md
    assert not list(tmp_path.glob("zkpy-compare-*"))      # server dirs removed


def test_compare_with_errors_fails_loudly(tmp_path, capsys, monkeypatch):
    real = servers.make_cluster

    def failing(kind, topology, base, label=None, tick_ms=2000):
        # The second side answers every getData with NONODE.
        kw = {"fail_op": consts.OP_GET_DATA} if label == "null-2" else {}
        return real(kind, topology, base, label=label, tick_ms=tick_ms, **kw)

    monkeypatch.setattr(servers, "make_cluster", failing)
    out = tmp_path / "out"
    code = command.main(["compare", "--servers", "null,null", "--workloads", "getdata",
                         "--out", str(out), "--data-dir", str(tmp_path), "--no-chart"]
                        + QUICK_LOAD[:-2] + ["--prewarm", "0"])
    cap = capsys.readouterr()
    assert code == 1
    assert "ERROR: getdata on null-2" in cap.err and "ERRORS" in cap.err
    assert "ERROR: 1 of 2 runs had errors" in cap.err
    assert "**errors**" in cap.out
    assert "had errors" in (out / "compare.md").read_text()


def test_a_dead_server_is_an_error_not_a_hang(tmp_path):
    cluster = servers.make_cluster("null", "standalone", tmp_path, label="null")
    s = _settings("--servers", "null,null", "--workloads", "getdata,exists", *QUICK_LOAD)
    s["prewarm"] = 0
    lines = []

    def runner(addrs, workload, **kw):
        cluster.members[0].stop()          # the server dies during the first run
        raise loadgen.BenchError("connection refused")

    reports, info = compare.run_compare(s, [cluster], log=lines.append, runner=runner)
    assert [r["errors"] for r in reports] == [1, 1]
    assert "not running any more" in reports[1]["error_samples"][0]
    assert any(line.startswith("ERROR: exists on null") for line in lines)
    assert info["null"]["kind"] == "null"


# --- the tls topology ---------------------------------------------------------------------------

def test_tls_topology_same_keys_and_stores_for_both_servers(tmp_path):
    z = servers.make_cluster("zkpy", "tls", tmp_path, label="zkpy")
    a = servers.make_cluster("apache", "tls", tmp_path, label="ZooKeeper")
    cz, ca = z.members[0].config(), a.members[0].config()
    drop = ("dataDir", "clientPort", "secureClientPort")
    assert {k: v for k, v in cz.items() if k not in drop} == \
        {k: v for k, v in ca.items() if k not in drop}
    assert cz["serverCnxnFactory"] == "org.apache.zookeeper.server.NettyServerCnxnFactory"
    assert cz["secureClientPortAddress"] == "127.0.0.1" and "ssl.clientAuth" not in cz
    m = z.members[0]
    assert cz["secureClientPort"] == str(m.secure_port) != cz["clientPort"]
    # made once in the run's directory, shared by both sides
    assert cz["ssl.keyStore.location"] == str(tmp_path / "tls" / "server.pem")
    assert cz["ssl.trustStore.location"] == str(tmp_path / "tls" / "ca.pem")
    assert z.tls == a.tls and z.tls.ca == cz["ssl.trustStore.location"]
    assert all(servers.Path(f).is_file() for f in z.tls)
    assert z.addrs == [("127.0.0.1", m.secure_port)]
    assert servers.make_cluster("zkpy", "standalone", tmp_path).tls is None
    with pytest.raises(ValueError):
        servers.make_cluster("null", "tls", tmp_path)
    s = _settings("--topology", "tls", "--quick")
    assert s["topology"] == "tls" and s["out"].name.endswith("-tls-quick")
    with pytest.raises(ValueError):
        _settings("--topology", "tls", "--servers", "null,null")


def _tls_runs(cluster, workloads):
    s = _settings("--topology", "tls", "--workloads", workloads, *QUICK_LOAD)
    s["prewarm"] = 0
    lines = []
    reports, info = compare.run_compare(s, [cluster], log=lines.append)
    assert [r["errors"] for r in reports] == [0] * len(reports), lines
    assert all(r["ops"] > 0 and r["tls"] for r in reports)
    return reports, info


def test_tls_topology_against_zkpy(tmp_path):
    """A real zkpy server with TLS only for its clients: the load generator's TLS sessions run
    reads, creates and deletes (setup and cleanup over TLS too); a session without a client
    certificate, or in plaintext, gets nothing on the secure port."""
    cluster = servers.make_cluster("zkpy", "tls", tmp_path, label="zkpy",
                                   extra_cfg={"workers": "1"})
    reports, info = _tls_runs(cluster, "getdata,create-1KiB,delete")
    assert info["zkpy"]["topology"] == "tls"
    assert "(TLS TLSv1.2 ECDHE-" in info["zkpy"]["servers"]       # ZooKeeper's default protocol
    assert info["zkpy"]["hosts"] == "127.0.0.1:%d" % cluster.members[0].secure_port
    assert not cluster.alive()                                   # stopped afterwards


def _session_without_certificate(addr, ca):
    """What a TLS client without a certificate gets: the first bytes of the answer to its
    ConnectRequest (b"" when the server closes), or None when the handshake fails."""
    import socket
    import ssl
    from zkpy.proto import codec, records
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(ca)
    t = loadgen.TlsSocket(socket.create_connection(addr, timeout=5), ctx, "127.0.0.1")
    try:
        t.handshake()
        body = codec.encode_connect_request(records.ConnectRequest(0, 0, 30000, 0, b"\0" * 16))
        t.sendall(len(body).to_bytes(4, "big") + body)
        return t.recv(4)
    except OSError:
        return None
    finally:
        t.close()


def test_tls_sessions_need_a_client_certificate(tmp_path):
    cluster = servers.make_cluster("zkpy", "tls", tmp_path, label="zkpy",
                                   extra_cfg={"workers": "1"})
    cluster.start()
    try:
        addr = cluster.addrs[0]
        loadgen.SyncClient(addr, tls=cluster.tls).close()
        assert not _session_without_certificate(addr, cluster.tls.ca)
        with pytest.raises((loadgen.BenchError, OSError)):
            loadgen.connect_session(addr)                         # plaintext on the TLS port
    finally:
        cluster.stop()


@pytest.mark.skipif(servers.apache_missing() is not None,
                    reason="Apache ZooKeeper 3.8 not installed (apt-get install zookeeper)")
def test_tls_topology_against_apache_smoke(tmp_path):
    """ZooKeeper 3.8 with the same keys and stores (NettyServerCnxnFactory on the Debian
    classpath): one short read run over TLS."""
    cluster = servers.make_cluster("apache", "tls", tmp_path, label="ZooKeeper")
    reports, info = _tls_runs(cluster, "getdata")
    assert info["ZooKeeper"]["version"].startswith("3.8")
    assert "(TLS TLSv1.2 ECDHE-" in info["ZooKeeper"]["servers"]
