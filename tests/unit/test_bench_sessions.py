"""zkpy.bench.sessions / watches / fleet (`zkpy-bench sessions`, `zkpy-bench watches`): the
summaries, expiry statistics, tables, limit search, the watch plan and the source addresses.
Pure functions only (no servers, no sockets); well under a second."""

import argparse
from array import array

import pytest

from zkpy.bench import command, fleet, sessions, watches

MS = 1_000_000


def _connect_report(ok, failed, go, last, lat_ms, errors=None):
    return {"ok": ok, "failed": failed, "go_ns": go, "first_ns": go + MS, "last_ns": last,
            "lat_ns": array("q", [int(x * MS) for x in lat_ms]).tobytes(),
            "errors": errors or {}}


def test_connect_summary_rate_runs_from_the_common_start_to_the_last_response():
    go = 10 * 1_000_000_000
    reps = [_connect_report(600, 0, go, go + 500 * MS, [1.0] * 600),
            _connect_report(400, 2, go, go + 1000 * MS, [3.0] * 400,
                            {"connect: ECONNREFUSED Connection refused": 2})]
    c = sessions.connect_summary(reps, 1002)
    assert (c["ok"], c["failed"], c["target"]) == (1000, 2, 1002)
    assert c["seconds"] == 1.0
    assert c["rate"] == 1000.0
    assert (c["p50_ms"], c["p99_ms"]) == (1.0, 3.0)
    assert c["errors"] == {"connect: ECONNREFUSED Connection refused": 2}


def test_connect_summary_of_no_session_has_no_rate():
    c = sessions.connect_summary([_connect_report(0, 5, 1, None, [], {"x": 5})], 5)
    assert c["rate"] is None and c["seconds"] is None and c["p50_ms"] is None


def _mark(t0, t1, pings=0, ping_ms=(), writes_ms=(), lost=None, errors=None, skipped=0, up=0):
    enc = lambda v: array("q", [int(x * MS) for x in v]).tobytes()  # noqa: E731
    return {"t0_ns": t0, "t1_ns": t1, "pings": pings, "ping_lat_ns": enc(ping_ms),
            "writes_sent": len(writes_ms), "writes_skipped": skipped,
            "write_lat_ns": enc(writes_ms), "write_errors": errors or {}, "lost": lost or {},
            "up": up}


def test_steady_and_writes_summaries_add_the_processes_up():
    cpu = {"core": 10.0, "workers": 5.0, "total": 15.0}
    marks = [_mark(0, 2000 * MS, 100, [0.5] * 100, up=10, lost={"closed": 1}),
             _mark(0, 2000 * MS, 300, [1.5] * 300, up=20, lost={"closed": 2})]
    st = sessions.steady_summary(marks, cpu)
    assert st["pings_per_s"] == 200.0 and st["up"] == 30
    assert st["ping_p50_ms"] == 1.5 and st["lost"] == {"closed": 3}
    w = sessions.writes_summary([_mark(0, 4000 * MS, writes_ms=[2.0] * 40, skipped=3,
                                       errors={"setData: BADVERSION (-103)": 1})],
                                cpu, writers=10, rate=1.0)
    assert w["ops_per_s"] == 10.0 and w["offered_per_s"] == 10.0
    assert w["skipped"] == 3 and w["p99_ms"] == 2.0
    assert "|" in sessions.writes_table([{"sessions": 100, "label": "zkpy", "writes": w}])


def test_expiry_stats_error_is_event_minus_last_packet_minus_timeout():
    s = 1_000_000_000
    silenced = {1: (0, 6000), 2: (s, 6000), 3: (2 * s, 6000), 4: (0, 6000)}
    deleted = {1: 6 * s + 100 * MS, 2: 7 * s + 2000 * MS, 3: 7 * s + 900 * MS}  # 3: early
    closed = {1: 6 * s + 110 * MS}
    e = sessions.expiry_stats(silenced, deleted, closed)
    assert (e["silenced"], e["expired"], e["missing"], e["early"]) == (4, 3, 1, 1)
    assert e["error_max_ms"] == 2000.0 and e["error_min_ms"] == -100.0
    assert e["error_p50_ms"] == 100.0 and e["error_p99_ms"] == 2000.0
    assert e["closed"] == 1 and e["closed_error_p50_ms"] == 110.0


def test_expiry_stats_of_nothing_expired():
    e = sessions.expiry_stats({5: (0, 4000)}, {})
    assert e["expired"] == 0 and e["missing"] == 1 and e["error_p99_ms"] is None


def test_expiry_subset_is_spread_and_never_the_first_session():
    sub = sessions.expiry_subset(100000, 1000)
    assert len(sub) == len(set(sub)) == 1000
    assert min(sub) == 1 and max(sub) < 100000
    assert sessions.expiry_subset(10, 50) == list(range(1, 10))
    assert sessions.expiry_subset(1, 5) == []


def _run(label, n, ok, died=False, errors=None, server_errors=None, **kw):
    r = {"label": label, "sessions": n, "connect": {"ok": ok, "errors": errors or {}},
         "died": died, "server_errors": server_errors or []}
    r.update(kw)
    return r


def test_limit_rows_give_the_highest_n_taken_and_why_the_next_failed():
    reports = [_run("zkpy", 10000, 10000), _run("ZooKeeper", 10000, 10000),
               _run("zkpy", 25000, 25000),
               _run("ZooKeeper", 25000, 19980, errors={"connection closed by the server "
                                                       "during the handshake": 5020},
                    server_errors=["ERROR ... Too many open files"]),
               {"label": "ZooKeeper", "sessions": 50000, "skipped": True}]
    rows = {r["label"]: r for r in sessions.limit_rows(reports, ["zkpy", "ZooKeeper"])}
    assert rows["zkpy"]["highest_ok"] == 25000 and rows["zkpy"]["failed_at"] is None
    zk = rows["ZooKeeper"]
    assert (zk["highest_ok"], zk["failed_at"]) == (10000, 25000)
    why = "; ".join(zk["why"])
    assert "19980 of 25000 connected" in why and "Too many open files" in why
    table = sessions.limit_table(list(rows.values()))
    assert "| ZooKeeper | 10000 | 25000 |" in table


def test_a_server_that_died_did_not_take_its_sessions():
    assert not sessions.took_all(_run("zkpy", 100, 100, died=True))
    assert not sessions.took_all(_run("zkpy", 100, 100, error="BenchError: x"))
    assert sessions.took_all(_run("zkpy", 100, 100))


def test_session_tables_have_a_row_per_run_and_skip_missing_phases():
    cpu = {"core": 1.0, "workers": 2.0, "total": 3.0}
    r = _run("zkpy", 2000, 2000)
    r["connect"].update(failed=0, seconds=0.5, rate=4000.0, p50_ms=1.0, p99_ms=2.0)
    r["steady"] = sessions.steady_summary([_mark(0, MS * 1000, 10, [1.0] * 10, up=2000)], cpu)
    r["memory"] = {"before_mb": 50.0, "after_mb": 58.0, "per_session_kb": 4.1}
    r["timeout_ms"] = 6000
    r["expiry"] = sessions.expiry_stats({1: (0, 6000)}, {1: 6100 * MS})
    skipped = {"label": "ZooKeeper", "sessions": 2000, "skipped": True}
    for table, needle in ((sessions.connect_table, "| 2000 | zkpy | 2000 | 0 | 0.50 | 4000 |"),
                          (sessions.steady_table, "| 3.0 (1.0 + 2.0) |"),
                          (sessions.expiry_table, "| 100.0 / 100.0 / 100.0 / 100.0 |")):
        text = table([r, skipped])
        assert needle in text, text
        assert len(text.splitlines()) == 3        # header, rule, one row
    assert len(sessions.writes_table([r]).splitlines()) == 2


def test_client_processes_follow_the_open_files_limit():
    assert sessions.processes_for(2000, 1 << 20) == 2
    assert sessions.processes_for(100000, 1 << 20) == 4
    assert sessions.processes_for(100000, 20000) == 6       # 19000 per process
    assert sessions.processes_for(1000, 600) == 4           # 300 per process


def test_source_addresses_change_every_per_address_sessions():
    assert fleet.source_address(0) == "127.0.0.2"
    assert fleet.source_address(fleet.SOURCE_SESSIONS_MAX - 1) == "127.0.0.2"
    assert fleet.source_address(fleet.SOURCE_SESSIONS_MAX) == "127.0.0.3"
    with pytest.raises(ValueError):
        fleet.source_address(253 * fleet.SOURCE_SESSIONS_MAX)


def test_cpu_percent_and_server_log_errors():
    p = fleet.cpu_percent({"core": 1.0, "workers": 0.5}, {"core": 2.0, "workers": 1.5}, 4.0)
    assert p == {"core": 25.0, "workers": 25.0, "total": 50.0}
    log = "\n".join([
        "2026-12-08 10:00:01 WARN NIOServerCnxn - EndOfStreamException: Unable to read",
        "2026-12-08 10:00:02 ERROR NIOServerCnxnFactory - Too many open files",
        "2026-12-08 10:00:03 ERROR NIOServerCnxnFactory - Too many open files",
        "java.lang.OutOfMemoryError: Java heap space"])
    assert fleet.server_log_errors(log) == [
        "2026-12-08 10:00:03 ERROR NIOServerCnxnFactory - Too many open files",
        "java.lang.OutOfMemoryError: Java heap space"]


def test_watch_plan_gives_distinct_znodes_per_session_and_equal_watchers_per_znode():
    sessions_n, per, znodes = 100, 10000, 100000
    counts = [0] * znodes
    for sid in range(sessions_n):
        w = watches.watched(sid, per, znodes)
        assert len(set(w)) == per
        for i in w:
            counts[i] += 1
    assert set(counts) == {10}
    targets = watches.written(1000, znodes)
    assert len(set(targets)) == 1000 and max(targets) < znodes
    assert watches.expected_events(range(sessions_n), per, znodes, targets) == 10000
    assert watches.expected_events([0], per, znodes, targets) == 100


def test_watch_requests_are_jute_getdata_or_exists_with_watch_set():
    from zkpy.proto import codec, consts as c, records as r
    reqs = list(watches.watch_requests(1, 3, 5, "/w", "exists"))
    assert [op for op, _ in reqs] == [c.OP_EXISTS] * 3
    decoded = [codec.decode(r.ExistsRequest, body)[0] for _, body in reqs]
    assert [(d.path, d.watch) for d in decoded] == [("/w/n3", True), ("/w/n4", True),
                                                    ("/w/n0", True)]
    op, body = next(watches.watch_requests(0, 1, 5, "/w", "getdata"))
    assert op == c.OP_GET_DATA and codec.decode(r.GetDataRequest, body)[0].watch


def test_event_stats_and_the_watches_table():
    t0 = 5 * 1_000_000_000
    events = [(t0 + k * MS, "/w/n%d" % k) for k in range(1, 101)]
    f = watches.event_stats(t0, events, 110)
    assert (f["events"], f["missing"], f["first_ms"], f["last_ms"]) == (100, 10, 1.0, 100.0)
    assert (f["p50_ms"], f["p99_ms"]) == (50.0, 99.0)
    rep = {"label": "zkpy", "znodes": 2000, "sessions": 20, "per_session": 1000,
           "watches": 20000, "writes": 100, "build_s": 0.1,
           "watch": {"seconds": 0.2, "rate": 100000.0},
           "memory": {"before_mb": 50.0, "after_mb": 54.0, "per_watch_bytes": 209.7},
           "fire": dict(f, acked_ms=3.0)}
    failed = {"label": "ZooKeeper", "znodes": 2000, "sessions": 20, "per_session": 1000,
              "watches": 20000, "writes": 100, "error": "BenchError: x"}
    table = watches.watches_table([rep, failed])
    assert "| zkpy | 2000 | 20000 (20 x 1000) | 0.1 | 0.20 (100000) | 50.0 -> 54.0 | 210 | - |" \
        in table
    assert "| ZooKeeper | 2000 | 20000 (20 x 1000) | - | - (-) |" in table


def test_both_commands_are_zkpy_bench_subcommands_with_quick_settings():
    ap = command._parser()
    a = ap.parse_args(["sessions", "--quick", "--steps", "1000,500", "--out", "/tmp/x"])
    s = sessions._sessions_settings(a)
    assert s["step_counts"] == [500, 1000] and s["session_timeout"] == 6000
    assert s["labels"] == ["zkpy", "ZooKeeper"]
    a = ap.parse_args(["watches", "--quick", "--out", "/tmp/x"])
    s = watches._watches_settings(a)
    assert (s["znodes"], s["watches"], s["sessions"]) == (2000, 20000, 20)
    with pytest.raises(ValueError):
        watches._watches_settings(ap.parse_args(["watches", "--watches", "10", "--sessions",
                                                 "100", "--out", "/tmp/x"]))
    assert isinstance(a, argparse.Namespace)


def test_jvm_heap_used_is_read_from_gc_heap_info():
    text = (" garbage-first heap   total 1048576K, used 44032K [0x00000000c0000000, "
            "0x0000000100000000)\n  region size 1024K, 3 young (3072K), 0 survivors (0K)\n"
            " Metaspace       used 20000K, committed 20500K, reserved 1114112K\n")
    assert fleet.jvm_heap_used_kb(text) == 44032
    assert fleet.jvm_heap_used_kb("") is None and fleet.jvm_heap_used_kb(None) is None
    assert fleet.heap_delta_bytes({"heap_used_kb": 1000}, {"heap_used_kb": 2000}, 512) == 2000.0
    assert fleet.heap_delta_bytes({"heap_used_kb": None}, {"heap_used_kb": 2000}, 1) is None
