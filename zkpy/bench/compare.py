"""zkpy vs Apache ZooKeeper, one command; and tables from `zkpy-bench run --json` reports.

Owns two commands:

``zkpy-bench compare`` (also ``bench/compare``; the subcommand is hooked into zkpy.bench.command's
parser, and `add_compare_parser` / `compare_main` live here): installs Apache ZooKeeper 3.8 if
missing, starts zkpy and ZooKeeper with equivalent configs (zkpy.bench.servers), runs every
workload of `CASES` against each in turn (A B A B ..., `--rounds` times), prints one progress
line per run with an ETA, and writes into ``--out`` a Markdown table (ops/s and p99 per server
and the zkpy / ZooKeeper ratio per workload), a PNG chart (if matplotlib is importable) and the
JSON of every run. A run with errors is flagged in the table and the command exits 1.

``python -m zkpy.bench.compare FILE.json...``: a Markdown table with one row per workload and
one column per server (the report's ``label``), each cell "ops/s / p99 ms", followed by a long
table with every figure. Several reports of the same workload and server (rounds) show the
median ops/s with the range.

The pure parts (`plan_runs`, `eta_seconds`, `ratio_rows`, `ratio_table`, `pivot_table`,
`long_table`, `settings_from_args`) do no I/O. Nothing in the server imports this module; it
imports zkpy.bench.loadgen and zkpy.bench.servers.
"""

import argparse
import collections
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

__all__ = [
    "Case", "CASES", "load", "pivot_table", "long_table", "plan_runs", "estimate_run_s",
    "eta_seconds", "fmt_duration", "ratio_rows", "ratio_table", "write_chart",
    "add_compare_parser", "settings_from_args", "run_compare", "compare_main", "main",
]


# --- tables of reports ---------------------------------------------------------------------

def load(paths):
    reports = []
    for p in paths:
        with open(p) as f:
            r = json.load(f)
        r.setdefault("label", r.get("hosts", p))
        reports.append(r)
    return reports


def _case(r):
    # A comparison names its runs ("create-1KiB"); plain zkpy-bench reports only have the
    # workload.
    return r.get("case") or r["workload"]


def _groups(reports):
    """{(case, label): [reports]} plus case and label order of first appearance."""
    groups, workloads, labels = {}, [], []
    for r in reports:
        w, lab = _case(r), r["label"]
        if w not in workloads:
            workloads.append(w)
        if lab not in labels:
            labels.append(lab)
        groups.setdefault((w, lab), []).append(r)
    return groups, workloads, labels


def _ops(rs):
    vals = [r["ops_per_sec"] for r in rs]
    med = statistics.median(vals)
    if len(vals) == 1:
        return "%.0f" % med
    return "%.0f (%.0f-%.0f)" % (med, min(vals), max(vals))


def _ms(rs, key):
    vals = [r[key] for r in rs if r.get(key) is not None]
    return "-" if not vals else "%.1f" % statistics.median(vals)


def _err(rs):
    return sum(r.get("errors", 0) for r in rs)


def pivot_table(reports):
    groups, workloads, labels = _groups(reports)
    lines = ["| workload | " + " | ".join(labels) + " |",
             "|---|" + "---:|" * len(labels)]
    for w in workloads:
        cells = []
        for lab in labels:
            rs = groups.get((w, lab))
            if not rs:
                cells.append("")
                continue
            cell = "%s / %s" % (_ops(rs), _ms(rs, "p99_ms"))
            if _err(rs):
                cell += " **%d errors**" % _err(rs)
            cells.append(cell)
        lines.append("| %s | %s |" % (w, " | ".join(cells)))
    return "\n".join(lines)


def long_table(reports):
    groups, workloads, labels = _groups(reports)
    lines = ["| workload | server | runs | ops/s | p50 ms | p99 ms | p999 ms | errors |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for w in workloads:
        for lab in labels:
            rs = groups.get((w, lab))
            if rs:
                lines.append("| %s | %s | %d | %s | %s | %s | %s | %d |" % (
                    w, lab, len(rs), _ops(rs), _ms(rs, "p50_ms"), _ms(rs, "p99_ms"),
                    _ms(rs, "p999_ms"), _err(rs)))
    return "\n".join(lines)


def _median(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def ratio_rows(reports, a, b):
    """Per case (in order of first appearance), server `a` against server `b`.

    Each row: case; a_ops, b_ops (median ops/s over rounds) with a_range/b_range (min, max);
    a_p99, b_p99 (median p99 ms); ops_ratio = a_ops / b_ops and p99_ratio = a_p99 / b_p99
    (None when not computable); a_errors, b_errors; a_runs, b_runs.
    """
    groups, cases, _ = _groups(reports)
    rows = []
    for c in cases:
        row = {"case": c}
        for side, lab in (("a", a), ("b", b)):
            rs = groups.get((c, lab), [])
            ops = [r["ops_per_sec"] for r in rs]
            row[side + "_ops"] = _median(ops)
            row[side + "_range"] = (min(ops), max(ops)) if ops else None
            row[side + "_p99"] = _median(r.get("p99_ms") for r in rs)
            row[side + "_errors"] = _err(rs)
            row[side + "_runs"] = len(rs)
        row["ops_ratio"] = (row["a_ops"] / row["b_ops"]
                            if row["a_ops"] is not None and row["b_ops"] else None)
        row["p99_ratio"] = (row["a_p99"] / row["b_p99"]
                            if row["a_p99"] is not None and row["b_p99"] else None)
        rows.append(row)
    return rows


def _fmt_ops(v, rng):
    if v is None:
        return "-"
    if rng is None or rng[0] == rng[1]:
        return "%.0f" % v
    return "%.0f (%.0f-%.0f)" % (v, rng[0], rng[1])


def ratio_table(rows, a="zkpy", b="ZooKeeper"):
    """Markdown: per case, ops/s and p99 of both servers and the ratios a / b.

    "meets" says whether a does at least as many ops/s as b with a p99 no worse (the issue's
    target). Cells of runs with errors say so in bold.
    """
    lines = ["| workload | %s ops/s | %s ops/s | ops/s %s / %s | %s p99 ms | %s p99 ms "
             "| p99 %s / %s | meets |" % (a, b, a, b, a, b, a, b),
             "|---|---:|---:|---:|---:|---:|---:|:---:|"]
    for r in rows:
        cells = []
        for side in ("a", "b"):
            cell = _fmt_ops(r[side + "_ops"], r[side + "_range"])
            if r[side + "_errors"]:
                cell += " **%d errors**" % r[side + "_errors"]
            cells.append(cell)
        ms = lambda v: "-" if v is None else "%.1f" % v  # noqa: E731
        ratio = lambda v: "-" if v is None else "%.2fx" % v  # noqa: E731
        errors = r["a_errors"] or r["b_errors"]
        if r["ops_ratio"] is None or r["p99_ratio"] is None:
            meets = "-"
        else:
            meets = "yes" if r["ops_ratio"] >= 1.0 and r["p99_ratio"] <= 1.0 else "no"
        if errors:
            meets = "**errors**"
        lines.append("| %s | %s | %s | %s | %s | %s | %s | %s |" % (
            r["case"], cells[0], cells[1], ratio(r["ops_ratio"]), ms(r["a_p99"]),
            ms(r["b_p99"]), ratio(r["p99_ratio"]), meets))
    return "\n".join(lines)


# --- the plan, its progress ----------------------------------------------------------------

Case = collections.namedtuple("Case", "name workload value_size")

# What `zkpy-bench compare` runs, in this order (see zkpy.bench.loadgen for each workload).
CASES = (
    Case("create-100B", "create", 100),
    Case("create-1KiB", "create", 1024),
    Case("getdata", "getdata", 100),
    Case("setdata", "setdata", 100),
    Case("delete", "delete", 100),
    Case("exists", "exists", 100),
    Case("getchildren", "getchildren", 100),
    Case("mixed-90/10", "mixed", 100),
    Case("mixed-90/10-random", "mixed-random", 100),
    Case("mixed-50/50", "mixed-50", 100),
    Case("latency", "latency", 100),
)
CASE_BY_NAME = {c.name: c for c in CASES}

Run = collections.namedtuple("Run", "round case label")


def plan_runs(cases, labels, rounds):
    """The order of the runs: per round, per case, every server in turn (A B A B ...)."""
    return [Run(r, c, lab) for r in range(1, rounds + 1) for c in cases for lab in labels]


RUN_OVERHEAD_S = 1.0     # setup of the znodes, fork and connect of the load processes


def estimate_run_s(case, duration, warmup):
    """Seconds a run should take before anything is measured (refined by eta_seconds)."""
    t = warmup + duration + RUN_OVERHEAD_S
    if case.workload == "create":
        t += warmup + duration      # cleanup deletes what the run created
    elif case.workload == "delete":
        t += duration               # the unmeasured create phase first
    return t


def eta_seconds(done_actual, done_estimated, remaining_estimated):
    """Seconds left: the remaining estimates scaled by how the finished runs compared with
    theirs (runs take longer on a slow or busy machine, and alike for all of them)."""
    remaining = sum(remaining_estimated)
    est = sum(done_estimated)
    if not done_actual or est <= 0:
        return remaining
    return remaining * (sum(done_actual) / est)


def fmt_duration(s):
    s = max(0, int(round(s)))
    if s >= 3600:
        return "%d:%02d:%02d" % (s // 3600, s % 3600 // 60, s % 60)
    return "%d:%02d" % (s // 60, s % 60)


def progress_line(i, n, run, report, elapsed_s, eta_s):
    width = len(str(n))
    if report.get("errors"):
        status = "ERRORS %d" % report["errors"]
    else:
        status = "ok"
    p99 = report.get("p99_ms")
    return ("[%*d/%d] round %d  %-12s %-10s %9.0f ops/s  p99 %7s ms  %-9s elapsed %s  ETA %s"
            % (width, i, n, run.round, run.case.name, run.label, report.get("ops_per_sec", 0),
               "-" if p99 is None else "%.1f" % p99, status, fmt_duration(elapsed_s),
               fmt_duration(eta_s)))


# --- settings --------------------------------------------------------------------------------

DEFAULTS = dict(rounds=2, duration=5.0, warmup=2.0, prewarm=3.0, processes=2, sessions=32,
                depth=16, znodes=1000, tick_ms=2000)
QUICK = dict(rounds=1, duration=1.0, warmup=0.5, prewarm=1.0)


def add_compare_parser(sub):
    """Add the `compare` subcommand to zkpy-bench's subparsers; returns its parser."""
    p = sub.add_parser(
        "compare", help="zkpy vs Apache ZooKeeper 3.8: every workload, table and chart",
        description="Start zkpy and Apache ZooKeeper 3.8 (installed with apt-get if missing, "
                    "as root) with equivalent configs, run every workload against each in "
                    "turn, and write a Markdown table, a PNG chart and the JSON of every run.")
    p.add_argument("--servers", default="zkpy,apache",
                   help="the two sides, A,B (kinds: zkpy, apache, null); the ratio is A / B "
                        "(default zkpy,apache)")
    p.add_argument("--topology", default="standalone", choices=_topologies(),
                   help="server layout of each side: standalone (one server), ensemble3 "
                        "(a 3-node pseudo-cluster, sessions round robin over its members) or "
                        "tls (one server, every session over TLS on secureClientPort with a "
                        "client certificate; both servers get the same PEM stores, made for "
                        "the run); default standalone")
    p.add_argument("--workloads", default="all",
                   help="comma-separated subset of: %s (default all)"
                        % ", ".join(c.name for c in CASES))
    p.add_argument("--rounds", type=int, help="A B rounds per workload (default %d)"
                   % DEFAULTS["rounds"])
    p.add_argument("--duration", type=float, help="measured seconds per run (default %g)"
                   % DEFAULTS["duration"])
    p.add_argument("--warmup", type=float, help="unmeasured seconds before each (default %g)"
                   % DEFAULTS["warmup"])
    p.add_argument("--prewarm", type=float,
                   help="unmeasured getdata seconds per server after its start (JIT; "
                        "default %g)" % DEFAULTS["prewarm"])
    p.add_argument("--processes", type=int, help="load processes (default %d)"
                   % DEFAULTS["processes"])
    p.add_argument("--sessions", type=int, help="sessions in total (default %d)"
                   % DEFAULTS["sessions"])
    p.add_argument("--depth", type=int, help="requests in flight per session (default %d)"
                   % DEFAULTS["depth"])
    p.add_argument("--znodes", type=int, help="znodes read/written (default %d)"
                   % DEFAULTS["znodes"])
    p.add_argument("--tick-time", dest="tick_ms", type=int,
                   help="tickTime of both servers, ms (default %d)" % DEFAULTS["tick_ms"])
    p.add_argument("--quick", action="store_true",
                   help="smoke run (~1 minute): 1 round, 1 s runs, 0.5 s warmup")
    p.add_argument("--out", help="results directory (default bench/results/<date>/ in a "
                                 "checkout, else ./zkpy-bench-results/<date>/)")
    p.add_argument("--data-dir", help="where both servers' dataDirs go (a fresh directory "
                                      "is made in it; default /tmp): one disk for both")
    p.add_argument("--keep-data", action="store_true",
                   help="keep the servers' directories (data, zoo.cfg, logs)")
    p.add_argument("--no-install", action="store_true",
                   help="fail instead of running apt-get when ZooKeeper is missing")
    p.add_argument("--no-chart", action="store_true", help="skip the PNG chart")
    return p


def _topologies():
    from zkpy.bench import servers
    return servers.TOPOLOGIES


def _checkout_root():
    root = Path(__file__).resolve().parents[2]
    if (root / "bench").is_dir() and (root / "setup.py").is_file():
        return root
    return None


def default_out(quick=False, today=None, topology="standalone"):
    today = today or time.strftime("%Y-%m-%d")
    name = today + ("" if topology == "standalone" else "-" + topology) + \
        ("-quick" if quick else "")
    root = _checkout_root()
    if root is not None:
        return root / "bench" / "results" / name
    return Path.cwd() / "zkpy-bench-results" / name


def settings_from_args(args):
    """The effective settings (a dict) from parsed `compare` arguments; ValueError if bad."""
    from zkpy.bench import servers as _servers
    s = dict(DEFAULTS)
    if args.quick:
        s.update(QUICK)
    for k in DEFAULTS:
        v = getattr(args, k, None)
        if v is not None:
            s[k] = v
    kinds = [k.strip() for k in args.servers.split(",") if k.strip()]
    if len(kinds) != 2:
        raise ValueError("--servers takes two kinds, A,B (got %r)" % args.servers)
    for k in kinds:
        if k not in _servers.SERVER_KINDS:
            raise ValueError("unknown server kind %r (one of %s)"
                             % (k, ", ".join(_servers.SERVER_KINDS)))
    if args.workloads.strip() == "all":
        cases = list(CASES)
    else:
        cases = []
        for name in args.workloads.split(","):
            name = name.strip()
            if name not in CASE_BY_NAME:
                raise ValueError("unknown workload %r (one of %s)"
                                 % (name, ", ".join(CASE_BY_NAME)))
            cases.append(CASE_BY_NAME[name])
    if args.topology != "standalone" and "null" in kinds:
        raise ValueError("--topology %s needs real servers (zkpy, apache), not the null "
                         "server" % args.topology)
    if s["rounds"] < 1 or s["duration"] <= 0 or s["warmup"] < 0 or s["prewarm"] < 0:
        raise ValueError("--rounds must be >= 1, --duration > 0, --warmup/--prewarm >= 0")
    if min(s["processes"], s["sessions"], s["depth"], s["znodes"], s["tick_ms"]) < 1:
        raise ValueError("--processes, --sessions, --depth, --znodes, --tick-time must be >= 1")
    s.update(
        kinds=kinds, labels=_labels(kinds), topology=args.topology, cases=cases,
        quick=args.quick,
        out=Path(args.out) if args.out else default_out(args.quick, topology=args.topology),
        data_dir=args.data_dir or tempfile.gettempdir(), keep_data=args.keep_data,
        install=not args.no_install, chart=not args.no_chart)
    return s


_NAMES = {"zkpy": "zkpy", "apache": "ZooKeeper", "null": "null"}


def _labels(kinds):
    labels = []
    for k in kinds:
        lab = _NAMES[k]
        n = 2
        while lab in labels:
            lab = "%s-%d" % (_NAMES[k], n)
            n += 1
        labels.append(lab)
    return labels


# --- the machine -----------------------------------------------------------------------------

def _read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def loadavg():
    return " ".join(_read("/proc/loadavg").split()[:3]) or "?"


def _disk_of(path):
    """(device, fstype, mount point) holding `path`, from /proc/mounts (longest prefix)."""
    path = os.path.realpath(path)
    best = ("?", "?", "")
    for line in _read("/proc/mounts").splitlines():
        parts = line.split()
        if len(parts) >= 3:
            mnt = parts[1]
            if (path == mnt or path.startswith(mnt.rstrip("/") + "/")) and \
                    len(mnt) > len(best[2]):
                best = (parts[0], parts[2], mnt)
    return best


def machine_description(data_dir):
    cpu = "?"
    for line in _read("/proc/cpuinfo").splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_gb = None
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            mem_gb = round(int(line.split()[1]) / 1024 / 1024, 1)
    java = None
    if shutil.which("java"):
        try:
            out = subprocess.run(["java", "-version"], capture_output=True, text=True,
                                 timeout=20)
            java = (out.stderr or out.stdout).splitlines()[0].strip()
        except (OSError, subprocess.SubprocessError, IndexError):
            pass
    commit = None
    root = _checkout_root()
    if root is not None and (root / ".git").exists():
        try:
            commit = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
                                    capture_output=True, text=True, timeout=10).stdout.strip()
            # Uncommitted changes to the package: the servers run the working tree.
            dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--",
                                    "zkpy"], capture_output=True, text=True,
                                   timeout=10).stdout.splitlines()
            dirty = [line[3:] for line in dirty if len(line) > 3]
            if dirty:
                commit += " + uncommitted changes in " + ", ".join(dirty)
        except (OSError, subprocess.SubprocessError):
            pass
    dev, fstype, mnt = _disk_of(data_dir)
    return {
        "cpus": os.cpu_count(), "cpu": cpu, "mem_gb": mem_gb,
        "kernel": platform.release(), "python": platform.python_version(), "java": java,
        "data_disk": "%s (%s, mounted on %s)" % (dev, fstype, mnt), "zkpy_commit": commit,
    }


def describe_machine(m):
    return ("%s CPUs (%s), %s GB RAM, Linux %s, Python %s, %s; data on %s"
            % (m["cpus"], m["cpu"], m["mem_gb"], m["kernel"], m["python"],
               m["java"] or "no java", m["data_disk"]))


# --- the chart ---------------------------------------------------------------------------------

def write_chart(rows, path, a="zkpy", b="ZooKeeper", title=None):
    """ops/s and p99 per workload, both servers side by side, as a PNG. Returns False (and
    writes nothing) when matplotlib is not importable."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    names = [r["case"] for r in rows]
    x = list(range(len(rows)))
    w = 0.38
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(11, 8), sharex=True)
    colors = {"a": "#2b7bba", "b": "#e08a1e"}
    for side, lab, off in (("a", a, -w / 2), ("b", b, w / 2)):
        ops = [r[side + "_ops"] or 0 for r in rows]
        lo = [max(0, o - (r[side + "_range"] or (o, o))[0]) for o, r in zip(ops, rows)]
        hi = [max(0, (r[side + "_range"] or (o, o))[1] - o) for o, r in zip(ops, rows)]
        ax1.bar([i + off for i in x], ops, w, yerr=[lo, hi], capsize=3, label=lab,
                color=colors[side])
        p99 = [r[side + "_p99"] or 0 for r in rows]
        ax2.bar([i + off for i in x], p99, w, label=lab, color=colors[side])
    for i, r in enumerate(rows):
        if r["ops_ratio"] is not None:
            top = max(hi_ for hi_ in ((r["a_range"] or (0, 0))[1], (r["b_range"] or (0, 0))[1]))
            ax1.annotate("%.2fx" % r["ops_ratio"], (i, top), ha="center", va="bottom",
                         fontsize=9, xytext=(0, 3), textcoords="offset points")
    ax1.set_ylabel("ops/s (median, bars: range over rounds)")
    ax1.set_title(title or "%s vs %s" % (a, b), fontsize=10)
    ax1.legend()
    ax1.grid(axis="y", alpha=0.3)
    ax1.margins(y=0.12)
    ax2.set_ylabel("p99 latency, ms (median)")
    ax2.grid(axis="y", alpha=0.3)
    ax2.set_xticks(x)
    ax2.set_xticklabels(names, rotation=20, ha="right")
    fig.text(0.01, 0.005, "labels above the bars: ops/s %s / %s" % (a, b), fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


# --- the run -----------------------------------------------------------------------------------

def _failed_report(run, why):
    return {"workload": run.case.workload, "ops": 0, "ops_per_sec": 0.0, "p50_ms": None,
            "p99_ms": None, "p999_ms": None, "max_ms": None, "errors": 1,
            "error_samples": [why]}


def _stderr(msg):
    print(msg, file=sys.stderr, flush=True)


def _tls_kw(cluster):
    # Only for a TLS side: a plaintext run is called exactly as before.
    tls = getattr(cluster, "tls", None)
    return {} if tls is None else {"tls": tls}


def run_compare(settings, clusters, log=_stderr, runner=None, clock=time.monotonic):
    """Start `clusters` (A, B), run the plan, stop them. Returns (reports, server info).

    `runner` is zkpy.bench.loadgen.run_bench unless a test gives another. A run that fails to
    start (connection refused, setup error) is kept as a report with one error.
    """
    from zkpy.bench import loadgen
    runner = runner or loadgen.run_bench
    s = settings
    plan = plan_runs(s["cases"], [c.label for c in clusters], s["rounds"])
    by_label = {c.label: c for c in clusters}
    estimates = [estimate_run_s(r.case, s["duration"], s["warmup"]) for r in plan]
    load = dict(processes=s["processes"], sessions=s["sessions"], depth=s["depth"],
                znodes=s["znodes"])
    reports, actual = [], []
    info = {}
    t_start = clock()
    try:
        for c in clusters:
            log("starting %s (%s): %s" % (c.label, c.topology, c.describe()))
            t0 = clock()
            c.start()
            info[c.label] = {"kind": c.kind, "topology": c.topology, "version": c.version,
                             "hosts": ",".join("%s:%d" % a for a in c.addrs),
                             "servers": c.describe(), "start_s": round(clock() - t0, 2)}
            log("  %s serving on %s after %.1f s (version %s)"
                % (c.label, info[c.label]["hosts"], clock() - t0, c.version))
        if s["prewarm"] > 0:
            for c in clusters:
                log("prewarm %s: %.0f s of getdata, not measured" % (c.label, s["prewarm"]))
                r = runner(c.addrs, "getdata", duration=s["prewarm"], warmup=0, **load,
                           **_tls_kw(c))
                if r.get("errors"):
                    log("ERROR: prewarm of %s had %d errors: %s"
                        % (c.label, r["errors"], "; ".join(r.get("error_samples", []))))
        log("%d runs: %d workloads x %d servers x %d rounds, %g s + %g s warmup each; "
            "estimated %s" % (len(plan), len(s["cases"]), len(clusters), s["rounds"],
                              s["duration"], s["warmup"], fmt_duration(sum(estimates))))
        for i, run in enumerate(plan):
            c = by_label[run.label]
            t0 = clock()
            if not c.alive():
                report = _failed_report(run, "%s is not running any more" % c.label)
            else:
                try:
                    report = runner(c.addrs, run.case.workload, duration=s["duration"],
                                    warmup=s["warmup"], value_size=run.case.value_size,
                                    **load, **_tls_kw(c))
                except (loadgen.BenchError, OSError, ValueError) as e:
                    report = _failed_report(run, "%s: %s" % (type(e).__name__, e))
            actual.append(clock() - t0)
            report.update(label=run.label, case=run.case.name, round=run.round,
                          topology=c.topology, server_kind=c.kind)
            reports.append(report)
            eta = eta_seconds(actual, estimates[:i + 1], estimates[i + 1:])
            log(progress_line(i + 1, len(plan), run, report, clock() - t_start, eta))
            if report.get("errors"):
                log("ERROR: %s on %s, round %d: %d error(s): %s" % (
                    run.case.name, run.label, run.round, report["errors"],
                    "; ".join(report.get("error_samples", [])[:3])))
                if not c.alive():
                    log(c.log_tails())
    finally:
        for c in clusters:
            c.stop()
    return reports, info


def begin_run(args, argv, settings_from_args):
    """What every zkpy-bench subcommand does first: the command line for the record, its
    settings, Apache ZooKeeper installed if a side needs it. Returns (command, settings), or
    (None, exit code) after printing the error."""
    from zkpy.bench import servers
    command = "zkpy-bench " + " ".join(sys.argv[1:] if argv is None else argv)
    try:
        s = settings_from_args(args)
    except ValueError as e:
        _stderr("ERROR: %s" % e)
        return None, 2
    try:
        if "apache" in s["kinds"]:
            servers.ensure_apache(log=_stderr, install=s["install"])
    except servers.ServerError as e:
        _stderr("ERROR: %s" % e)
        return None, 2
    return command, s


def compare_main(args, argv=None):
    """`zkpy-bench compare` with parsed arguments (`argv`: the command line, for the record;
    default sys.argv); returns the exit code."""
    from zkpy.bench import servers
    command, s = begin_run(args, argv, settings_from_args)
    if command is None:
        return s
    Path(s["data_dir"]).mkdir(parents=True, exist_ok=True)
    base = tempfile.mkdtemp(prefix="zkpy-compare-", dir=s["data_dir"])
    clusters = [servers.make_cluster(k, s["topology"], base, label=lab, tick_ms=s["tick_ms"])
                for k, lab in zip(s["kinds"], s["labels"])]
    machine = machine_description(base)
    load_before = loadavg()
    started = time.strftime("%Y-%m-%d %H:%M:%S %z")
    t0 = time.monotonic()
    try:
        reports, info = run_compare(s, clusters)
    except servers.ServerError as e:
        _stderr("ERROR: %s" % e)
        return 2
    except KeyboardInterrupt:
        _stderr("interrupted; servers stopped")
        return 130
    finally:
        if s["keep_data"]:
            _stderr("server directories kept in %s" % base)
        else:
            shutil.rmtree(base, ignore_errors=True)
    wall = time.monotonic() - t0
    machine.update(load_before=load_before, load_after=loadavg())
    a, b = s["labels"]
    rows = ratio_rows(reports, a, b)
    table = ratio_table(rows, a, b)
    out = Path(s["out"])
    out.mkdir(parents=True, exist_ok=True)
    chart = None
    if s["chart"]:
        title = "%s vs %s, %s, %s; %d round(s) of %gs runs; load avg %s -> %s" % (
            a, b, s["topology"], started[:10], s["rounds"], s["duration"],
            machine["load_before"], machine["load_after"])
        if write_chart(rows, out / "compare.png", a, b, title):
            chart = out / "compare.png"
        else:
            _stderr("no chart: matplotlib is not importable (pip install matplotlib)")
    settings_json = {k: v for k, v in s.items() if k not in ("cases", "out")}
    settings_json.update(cases=[c.name for c in s["cases"]], out=str(out))
    with open(out / "compare.json", "w") as f:
        json.dump({"command": command, "started": started, "wall_s": round(wall, 1),
                   "settings": settings_json, "machine": machine, "servers": info,
                   "rows": rows, "reports": reports}, f, indent=1, sort_keys=True, default=str)
        f.write("\n")
    errors = [r for r in reports if r.get("errors")]
    md = ["# %s vs %s (%s)" % (a, b, s["topology"]), "",
          "Command: `%s` (started %s, took %s)." % (command, started, fmt_duration(wall)), "",
          "Machine: %s. Load average %s before, %s after." % (
              describe_machine(machine), machine["load_before"], machine["load_after"]), ""]
    if machine["zkpy_commit"]:
        md += ["zkpy code: commit %s." % machine["zkpy_commit"], ""]
    for lab, i in info.items():
        md.append("- %s: %s (version %s)" % (lab, i["servers"], i["version"]))
    if s["topology"] == "tls":
        md += ["", "Topology tls: one server per side; every session (setup, load, cleanup) "
                   "over TLS on secureClientPort (127.0.0.1), with a client certificate. Both "
                   "servers get the same keys (serverCnxnFactory=NettyServerCnxnFactory, "
                   "ssl.keyStore.location / ssl.trustStore.location: the same PEM files, "
                   "generated for this run; ZooKeeper's defaults otherwise: ssl.clientAuth=need, "
                   "TLSv1.2); the plaintext clientPort serves only the harness's srvr checks."]
    elif s["topology"] != "standalone":
        md += ["", "Topology %s: %d members per side on 127.0.0.1, each with its own dataDir "
                   "and myid; sessions round robin over the members (session i on member "
                   "i mod %d; setup and cleanup through the first member, and each session "
                   "syncs before the run). zkpy members run with workers=1, Apache members "
                   "with -Xmx512m." % (s["topology"], len(clusters[0].members),
                                       len(clusters[0].members))]
    md += ["", "Load per run: %d sessions over %d processes, %d in flight per session "
               "(latency: 1), %g s measured after %g s warmup, %d znodes; %d round(s), "
               "servers in turn." % (s["sessions"], s["processes"], s["depth"],
                                     s["duration"], s["warmup"], s["znodes"], s["rounds"]),
           "", "ops/s: median over rounds (range); p99: median over rounds.", "", table, "",
           long_table(reports), ""]
    if chart is not None:
        md += ["![%s vs %s](compare.png)" % (a, b), ""]
    if errors:
        md += ["**%d run(s) had errors.**" % len(errors), ""]
    (out / "compare.md").write_text("\n".join(md))
    print(table, flush=True)
    _stderr("wrote %s, %s%s (took %s; load average %s -> %s)" % (
        out / "compare.md", out / "compare.json", ", " + str(chart) if chart else "",
        fmt_duration(wall), machine["load_before"], machine["load_after"]))
    if errors:
        _stderr("")
        _stderr("ERROR: %d of %d runs had errors; the table is not trustworthy:" % (
            len(errors), len(reports)))
        for r in errors:
            _stderr("  %s on %s, round %d: %s" % (r["case"], r["label"], r["round"],
                                                  "; ".join(r.get("error_samples", [])[:2])))
        return 1
    return 0


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m zkpy.bench.compare", description=__doc__)
    ap.add_argument("files", nargs="+", help="zkpy-bench --json reports")
    args = ap.parse_args(argv)
    reports = load(args.files)
    print("ops/s / p99 ms:\n")
    print(pivot_table(reports))
    print()
    print(long_table(reports))
    return 1 if any(r.get("errors") for r in reports) else 0


if __name__ == "__main__":
    sys.exit(main())
