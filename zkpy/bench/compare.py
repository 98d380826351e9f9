"""Tables from `zkpy-bench run --json` reports.

Owns ``python -m zkpy.bench.compare FILE.json...``: a Markdown table with one row per workload
and one column per server (the report's ``label``), each cell "ops/s / p99 ms", followed by a
long table with every figure. Several reports of the same workload and server (rounds) show
the median ops/s with the range. Imports nothing from the server; reads files, prints text.
"""

import argparse
import json
import statistics
import sys

__all__ = ["load", "pivot_table", "long_table", "main"]


def load(paths):
    reports = []
    for p in paths:
        with open(p) as f:
            r = json.load(f)
        r.setdefault("label", r.get("hosts", p))
        reports.append(r)
    return reports


def _groups(reports):
    """{(workload, label): [reports]} plus workload and label order of first appearance."""
    groups, workloads, labels = {}, [], []
    for r in reports:
        w, lab = r["workload"], r["label"]
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
