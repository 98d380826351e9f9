"""zkpy.bench.scaling (`zkpy-bench scaling`): /proc smaps parsing, the memory sums, the tables,
the targets and the plan. Pure functions only (no servers); well under a second."""

import argparse

import pytest

from zkpy.bench import command, scaling

ROLLUP = """\
55d0c0a00000-7ffd5e9f1000 ---p 00000000 00:00 0                          [rollup]
Rss:               120000 kB
Pss:               110000 kB
Pss_Anon:           50000 kB
Pss_File:           60000 kB
Pss_Shmem:              0 kB
Shared_Clean:       10000 kB
Shared_Dirty:           0 kB
Private_Clean:      60000 kB
Private_Dirty:      50000 kB
Referenced:        120000 kB
Anonymous:          50000 kB
LazyFree:               0 kB
AnonHugePages:          0 kB
Swap:                   0 kB
Locked:                 0 kB
"""

SMAPS = """\
55d0c0a00000-55d0c0a01000 r--p 00000000 fd:01 123  /usr/bin/python3.11
Size:                  4 kB
Rss:                   4 kB
Pss:                   2 kB
Anonymous:             0 kB
VmFlags: rd mr mw me dw sd
7f0000000000-7f1000000000 r--s 00000000 fd:01 456  /tmp/x/data/lmdb/data.mdb
Size:           67108864 kB
Rss:              300000 kB
Pss:              150000 kB
Anonymous:             0 kB
VmFlags: rd sh mr mw me ms sd
7f2000000000-7f2000100000 rw-p 00000000 00:00 0
Size:               1024 kB
Rss:                1000 kB
Pss:                1000 kB
Anonymous:          1000 kB
7ffd5e9d0000-7ffd5e9f1000 rw-p 00000000 00:00 0                          [stack]
Rss:                 132 kB
"""


def test_parse_smaps_rollup_reads_every_kb_field():
    r = scaling.parse_smaps_rollup(ROLLUP)
    assert r["Rss"] == 120000
    assert r["Anonymous"] == 50000
    assert r["Pss_Anon"] == 50000
    assert r["Private_Clean"] + r["Private_Dirty"] == 110000
    assert "55d0c0a00000-7ffd5e9f1000 ---p 00000000 00" not in r
    assert scaling.parse_smaps_rollup("") == {}


def test_parse_smaps_splits_mappings_and_keeps_paths():
    maps = scaling.parse_smaps(SMAPS)
    assert [p for p, _ in maps] == ["/usr/bin/python3.11", "/tmp/x/data/lmdb/data.mdb", "",
                                    "[stack]"]
    assert maps[1][1]["Rss"] == 300000
    assert "VmFlags" not in maps[1][1]          # not a kB line
    assert maps[3][1] == {"Rss": 132}
    assert scaling.mapped_file_kb(maps, "data.mdb") == {"Rss": 300000, "Pss": 150000}
    assert scaling.mapped_file_kb(maps, "nothing.mdb") == {"Rss": 0, "Pss": 0}


def test_memory_summary_sums_anonymous_and_counts_lmdb_once():
    roll = scaling.parse_smaps_rollup(ROLLUP)
    lm = {"Rss": 300000, "Pss": 150000}
    procs = [{"pid": 1, "cmd": "core", "rollup": roll, "lmdb": lm},
             {"pid": 2, "cmd": "worker", "rollup": roll, "lmdb": lm},
             {"pid": 3, "cmd": "worker", "rollup": {"Rss": 10, "Anonymous": 4}, "lmdb": {}}]
    s = scaling.memory_summary(procs)
    assert s["processes"] == 3
    assert s["rss"] == 240010
    assert s["anon"] == 100004
    assert s["pss_anon"] == 100000
    assert s["private"] == 220000
    assert s["file_rss"] == 140006
    assert s["lmdb_rss"] == 300000           # the same pages, mapped twice: max, not sum
    assert s["lmdb_pss"] == 300000           # Pss shares them out: the sum counts them once
    assert scaling.memory_summary([])["anon"] == 0


def _r(part, label, workload, ops, p99=5.0, errors=0, **kw):
    r = {"part": part, "label": label, "workload": workload, "ops_per_sec": ops,
         "p99_ms": p99, "errors": errors}
    r.update(kw)
    return r


def test_sessions_table_one_row_per_workload_and_count_with_ratio():
    reports = [_r("sessions", "zkpy", "getdata", 2000.0, sessions=1, depth=4),
               _r("sessions", "ZooKeeper", "getdata", 1000.0, p99=10.0, sessions=1, depth=4),
               _r("sessions", "zkpy", "create", 300.0, errors=2, sessions=1000, depth=4),
               _r("tree", "zkpy", "getdata", 1.0, tree_size=10)]
    t = scaling.sessions_table(reports).splitlines()
    assert len(t) == 4
    assert t[2] == "| getdata | 1 | 1 x 4 | 2000 | 1000 | 2.00x | 5.0 | 10.0 |"
    assert t[3].startswith("| create | 1000 | 1000 x 4 | 300 **2 errors** | - | - |")


def test_tree_table_shows_build_rate_and_both_workloads():
    reports = [_r("tree", lab, w, ops, tree_size=1000)
               for lab, w, ops in (("zkpy", "getdata", 300.0), ("ZooKeeper", "getdata", 100.0),
                                   ("zkpy", "create", 50.0), ("ZooKeeper", "create", 100.0))]
    builds = [{"label": "zkpy", "size": 1000, "created": 1000, "seconds": 2.0}]
    t = scaling.tree_table(reports, builds).splitlines()
    assert t[2] == "| 1000 | 2.0 (500) | - | 300 | 100 | 3.00x | 50 | 100 | 0.50x |"


def _mem(anon, rss, procs=1, lmdb=0):
    return {"processes": procs, "rss": rss, "anon": anon, "pss_anon": anon, "private": anon,
            "file_rss": rss - anon, "lmdb_rss": lmdb, "lmdb_pss": lmdb}


def test_memory_and_restart_tables():
    t = scaling.memory_table({"zkpy": dict(_mem(1024, 4096, 3, 2048), when="now"),
                              "ZooKeeper": _mem(2048, 10240)}).splitlines()
    assert t[2] == "| zkpy | now | 3 | 4.0 | 1.0 | 1.0 | 3.0 | 2.0 |"
    assert t[3].endswith("| 10.0 | 2.0 | 2.0 | 8.0 | - |")
    r = scaling.restart_table({"zkpy": [0.5, 0.3, 0.4], "ZooKeeper": [3.0, 2.0]}).splitlines()
    assert r[0] == "| server | try 1 s | try 2 s | try 3 s | median s |"
    assert r[2] == "| zkpy | 0.50 | 0.30 | 0.40 | 0.40 |"
    assert r[3] == "| ZooKeeper | 3.00 | 2.00 |  | 2.50 |"


def test_targets_use_medians_and_anonymous_vs_rss():
    tg = scaling.targets({"zkpy": [0.5, 0.3, 0.4], "ZooKeeper": [3.0, 2.0, 2.5]},
                         {"zkpy": _mem(100, 500), "ZooKeeper": _mem(50, 150)})
    assert [t["holds"] for t in tg] == [True, False]
    assert tg[0]["value"] == pytest.approx(0.16)      # medians 0.4 / 2.5
    assert tg[1]["value"] == pytest.approx(2 / 3.0)   # zkpy anonymous 100 / ZooKeeper RSS 150
    tg = scaling.targets({"zkpy": [1.0], "ZooKeeper": [2.0]}, {})
    assert len(tg) == 1 and tg[0]["holds"] is False
    assert "**no**" in scaling.targets_table(tg)


def test_plan_covers_every_step_in_order():
    steps = scaling.plan_steps([1, 10], [100, 1000], ["zkpy", "ZooKeeper"], 3.0, 1.0, 3)
    names = [n for n, _ in steps]
    assert len(names) == 2 * 2 * 2 + 2 * (2 + 4) + 2 + 2
    assert names[0] == "sessions getdata 1 zkpy"
    assert names.index("build zkpy to 1000") > names.index("tree create 100 ZooKeeper")
    assert names[-1] == "restart ZooKeeper x3"
    assert all(s > 0 for _, s in steps)


def test_the_scaling_subcommand_is_hooked_and_settings_parse():
    args = command._parser().parse_args(["scaling", "--sessions", "1,10", "--sizes",
                                         "100_000,10000", "--out", "/tmp/x"])
    assert args.cmd == "scaling"
    s = scaling.settings_from_args(args)
    assert s["session_counts"] == [1, 10]
    assert s["tree_sizes"] == [10000, 100000]
    assert s["labels"] == ["zkpy", "ZooKeeper"]
    bad = argparse.Namespace(**dict(vars(args), sessions="0"))
    with pytest.raises(ValueError):
        scaling.settings_from_args(bad)
