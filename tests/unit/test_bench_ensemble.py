"""zkpy.bench's 3-node ensemble: the member configs of `make_cluster(kind, "ensemble3")`, the
topology's argument handling in `zkpy-bench compare`, and the pure parts of `zkpy-bench
failover` (recovery times, lost-write accounting, the table). No server is started."""

import argparse

import pytest

from zkpy.bench import command, compare, failover, servers


# --- member configs ---------------------------------------------------------------------------

def test_member_config_is_the_standalone_one_plus_one_server_line_per_member(tmp_path):
    ports = list(range(20001, 20010))
    c = servers.make_cluster("apache", "ensemble3", tmp_path, label="e", tick_ms=500, ports=ports)
    s = servers.make_cluster("apache", "standalone", tmp_path, label="s", tick_ms=500)
    cfg, base = c.members[1].config(), s.members[0].config()
    drop = ("dataDir", "clientPort")
    assert {k: v for k, v in cfg.items() if not k.startswith("server.") and k not in drop} == \
        {k: v for k, v in base.items() if k not in drop}
    assert [k for k in cfg if k.startswith("server.")] == ["server.1", "server.2", "server.3"]
    assert cfg["server.2"] == "127.0.0.1:20005:20006" and cfg["clientPort"] == "20004"
    assert cfg["tickTime"] == "500" and cfg["initLimit"] == "10" and cfg["syncLimit"] == "5"


@pytest.mark.parametrize("kind", ["zkpy", "apache"])
def test_ensemble3_members_have_distinct_ports_dirs_and_the_same_server_lines(kind, tmp_path):
    c = servers.make_cluster(kind, "ensemble3", tmp_path, label=kind, tick_ms=2000)
    assert c.topology == "ensemble3" and len(c.members) == 3 and c.is_ensemble
    assert [m.sid for m in c.members] == [1, 2, 3]
    ports = [p for m in c.members for p in (m.port, m.peer_port, m.election_port)]
    assert len(set(ports)) == 9
    cfgs = [m.config() for m in c.members]
    lines = [{k: v for k, v in cfg.items() if k.startswith("server.")} for cfg in cfgs]
    assert lines[0] == lines[1] == lines[2]
    for m, cfg in zip(c.members, cfgs):
        assert cfg["server.%d" % m.sid] == "127.0.0.1:%d:%d" % (m.peer_port, m.election_port)
        assert cfg["clientPort"] == str(m.port)
        assert cfg["dataDir"] == str(tmp_path / kind / ("zk%d" % m.sid) / "data")
        for k, v in (("tickTime", "2000"), ("initLimit", "10"), ("syncLimit", "5"),
                     ("forceSync", "yes"), ("4lw.commands.whitelist", "*"),
                     ("admin.enableServer", "false")):
            assert cfg[k] == v
    assert len({cfg["dataDir"] for cfg in cfgs}) == 3
    assert c.addrs == [("127.0.0.1", m.port) for m in c.members]


def test_ensemble3_configs_are_the_same_for_both_kinds_but_workers(tmp_path):
    ports = list(range(20001, 20010))
    z = servers.make_cluster("zkpy", "ensemble3", tmp_path, label="z", ports=ports)
    a = servers.make_cluster("apache", "ensemble3", tmp_path, label="a", ports=ports)
    for mz, ma in zip(z.members, a.members):
        cz, ca = mz.config(), ma.config()
        assert cz.pop("workers") == "1"                   # 3 servers share the cores
        assert "workers" not in ca
        cz.pop("dataDir"), ca.pop("dataDir")
        assert cz == ca
    cmd = a.members[0].command()
    assert "-Xmx512m" in cmd and "-Xmx1g" not in cmd
    assert cmd[-2:] == ["org.apache.zookeeper.server.quorum.QuorumPeerMain",
                        str(a.members[0].cfg_path)]
    assert z.members[0].command()[-2:] == ["start-foreground", str(z.members[0].cfg_path)]


def test_ensemble3_tick_and_limits_reach_every_member(tmp_path):
    c = servers.make_cluster("apache", "ensemble3", tmp_path, tick_ms=500, init_limit=7,
                             sync_limit=3)
    for m in c.members:
        cfg = m.config()
        assert (cfg["tickTime"], cfg["initLimit"], cfg["syncLimit"]) == ("500", "7", "3")


def test_standalone_is_unchanged(tmp_path):
    c = servers.make_cluster("apache", "standalone", tmp_path, label="ZooKeeper")
    assert len(c.members) == 1 and not c.is_ensemble
    assert "-Xmx1g" in c.members[0].command()
    assert not any(k.startswith("server.") for k in c.members[0].config())


def test_ensemble3_needs_a_real_server(tmp_path):
    with pytest.raises(ValueError, match="zkpy or apache"):
        servers.make_cluster("null", "ensemble3", tmp_path)


def test_srvr_mode():
    assert servers.srvr_mode("Zookeeper version: 3.8.0\nMode: follower\nNode count: 5\n") \
        == "follower"
    assert servers.srvr_mode("This ZooKeeper instance is not currently serving requests\n") \
        is None
    assert servers.srvr_mode(None) is None and servers.srvr_mode("") is None


# --- compare --topology ------------------------------------------------------------------------

def _compare_settings(*argv):
    args = command._parser().parse_args(["compare"] + list(argv))
    return compare.settings_from_args(args)


def test_compare_takes_topology_ensemble3():
    s = _compare_settings("--topology", "ensemble3", "--rounds", "1", "--duration", "3")
    assert s["topology"] == "ensemble3" and s["rounds"] == 1 and s["duration"] == 3.0
    assert s["out"].name.endswith("-ensemble3")          # not the standalone results
    assert _compare_settings()["out"].name == compare.default_out().name


def test_compare_ensemble3_refuses_the_null_server():
    with pytest.raises(ValueError, match="real servers"):
        _compare_settings("--topology", "ensemble3", "--servers", "zkpy,null")


def test_default_out_names():
    assert compare.default_out(today="2026-01-02").name == "2026-01-02"
    assert compare.default_out(today="2026-01-02", topology="ensemble3").name == \
        "2026-01-02-ensemble3"
    assert compare.default_out(True, "2026-01-02", "ensemble3").name == \
        "2026-01-02-ensemble3-quick"


# --- failover: pure parts ------------------------------------------------------------------------

def test_parse_value():
    assert failover.parse_value(failover.value_of(3, 41)) == (3, 41)
    assert failover.parse_value(b"") is None and failover.parse_value(None) is None
    assert failover.parse_value(b"garbage") is None


def test_recovery_times_count_only_writes_sent_after_the_kill():
    t = 100.0
    writers = [
        # On a survivor: its write sent before the kill and acked after does not count.
        {"port_at_kill": 1, "acks": [(99.0, 99.1), (99.9, 100.2), (101.0, 101.5)]},
        {"port_at_kill": 2, "acks": [(100.5, 101.2)]},
        # On the leader (port 3): back later, and not counted for "writes again".
        {"port_at_kill": 3, "acks": [(99.5, 99.6), (100.1, 100.9), (102.0, 103.0)]},
    ]
    again, every = failover.recovery_times(writers, t, {1, 2})
    assert again == pytest.approx(1.2)          # writer 2's ack at 101.2
    assert every == pytest.approx(1.5)          # writer 1 was the last back


def test_recovery_times_without_recovery():
    writers = [{"port_at_kill": 1, "acks": [(99.0, 99.1)]},
               {"port_at_kill": 2, "acks": [(100.5, 101.0)]}]
    assert failover.recovery_times(writers, 100.0, {1}) == (None, None)
    assert failover.recovery_times(writers, 100.0, {2}) == (pytest.approx(1.0), None)


def test_lost_writes():
    acks = [(1, 1), (2, 2), (4, 4), (5, 5)]      # seq 3 was in flight at the kill
    assert failover.lost_writes(acks, (5, 5)) == 0
    assert failover.lost_writes(acks, (6, 6)) == 0           # an unacked write committed
    assert failover.lost_writes(acks, (4, 4)) == 1           # the last ack is gone
    assert failover.lost_writes(acks, (2, 2)) == 2
    assert failover.lost_writes(acks, None) == 4             # znode unreadable
    assert failover.lost_writes([], None) == 0
    # Two acknowledged writes with one version: one of them never committed.
    assert failover.lost_writes([(1, 1), (2, 1), (3, 2)], (3, 2)) == 1


def _result(kind, tick, again, all_s=None, lost=0, rep=1, **kw):
    r = {"kind": kind, "label": {"zkpy": "zkpy", "apache": "ZooKeeper"}[kind],
         "tick_ms": tick, "init_limit": 10, "sync_limit": 5, "rep": rep, "again_s": again,
         "all_s": all_s if all_s is not None else again, "election_s": again,
         "acked": 100, "acked_after_kill": 10, "lost": lost, "error_replies": 0,
         "expired": 0, "failure": None}
    r.update(kw)
    return r


def test_summarize_and_table():
    results = [_result("zkpy", 2000, 1.0), _result("apache", 2000, 0.5),
               _result("zkpy", 2000, 3.0, rep=2), _result("apache", 2000, 0.4, rep=2),
               _result("zkpy", 2000, 2.0, rep=3, lost=2), _result("apache", 2000, 0.6, rep=3),
               _result("zkpy", 500, None, rep=1)]
    rows = failover.summarize(results)
    assert [(r["kind"], r["tick_ms"]) for r in rows] == [("zkpy", 2000), ("apache", 2000),
                                                          ("zkpy", 500)]
    z = rows[0]
    assert z["reps"] == 3 and z["again"] == {"median": 2.0, "min": 1.0, "max": 3.0, "n": 3}
    assert z["lost"] == 2 and z["acked"] == 300 and z["acked_after"] == 30
    assert rows[2]["again"] is None and rows[2]["no_recovery"] == 1
    lines = failover.failover_table(rows).splitlines()
    assert lines[0].startswith("| server | tickTime ms | init/syncLimit | reps | writes again s")
    assert len(lines) == 5
    assert lines[2].startswith("| zkpy | 2000 | 10/5 | 3 | 2.00 (1.00-3.00) | ")
    assert "| **2** |" in lines[2]
    assert lines[3].startswith("| ZooKeeper | 2000 | 10/5 | 3 | 0.50 (0.40-0.60) | ")
    assert "| 0 |" in lines[3]
    assert "**1 rep(s) without recovery**" in lines[4]


def test_failed_rep_is_flagged():
    rows = failover.summarize([_result("apache", 500, None, failure="ServerError: boom")])
    assert "**1 rep(s) failed**" in failover.failover_table(rows)


def _failover_settings(*argv):
    args = command._parser().parse_args(["failover"] + list(argv))
    return failover.settings_from_args(args)


def test_failover_settings():
    s = _failover_settings()
    assert s["kinds"] == ["zkpy", "apache"] and s["tick_times"] == [2000, 500]
    assert s["reps"] == 3 and (s["init_limit"], s["sync_limit"]) == (10, 5)
    assert s["out"].name.endswith("-failover")
    s = _failover_settings("--servers", "apache", "--tick-times", "500", "--reps", "1")
    assert s["kinds"] == ["apache"] and s["tick_times"] == [500] and s["reps"] == 1


@pytest.mark.parametrize("argv", [["--servers", "null"], ["--tick-times", "fast"],
                                  ["--reps", "0"], ["--servers", ""]])
def test_bad_failover_settings(argv):
    with pytest.raises(ValueError):
        _failover_settings(*argv)


def test_bad_failover_settings_exit_2(capsys):
    assert command.main(["failover", "--servers", "etcd"]) == 2
    assert "ERROR" in capsys.readouterr().err


def test_failover_subcommand_is_registered():
    args = command._parser().parse_args(["failover", "--reps", "2"])
    assert isinstance(args, argparse.Namespace) and args.cmd == "failover" and args.reps == 2
