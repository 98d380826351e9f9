"""zkpy-bench: a ZooKeeper wire-protocol load generator, and a null server to measure it.

Owns the `zkpy-bench` command line (console script ``zkpy-bench=zkpy.bench.command:main``; also
``python -m zkpy.bench`` and ``python -m zkpy.bench.loadgen``): one parser whose subcommands
each module of zkpy.bench adds and runs itself:

    zkpy-bench run / serve-null     zkpy.bench.loadgen
    zkpy-bench compare              zkpy.bench.compare
    zkpy-bench scaling              zkpy.bench.scaling
    zkpy-bench sessions             zkpy.bench.sessions (client processes: zkpy.bench.fleet)
    zkpy-bench watches              zkpy.bench.watches
    zkpy-bench failover             zkpy.bench.failover
    zkpy-bench cpu                  zkpy.bench.cpu (its own argument parser)

It sits on top of those modules and none of them imports it, so the package has no import
cycles (tests/unit/test_import_graph.py). Nothing outside zkpy.bench imports it.
"""

import argparse
import sys

from zkpy.bench import compare, cpu, failover, loadgen, scaling, sessions, watches


def _parser():
    ap = argparse.ArgumentParser(prog="zkpy-bench", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    loadgen.add_run_parsers(sub)
    compare.add_compare_parser(sub)
    scaling.add_scaling_parser(sub)
    sessions.add_sessions_parser(sub)
    watches.add_watches_parser(sub)
    failover.add_failover_parser(sub)
    sub.add_parser("cpu", add_help=False,
                   help="CPU time per operation of the server's and the load's processes "
                        "(zkpy-bench cpu --help)")
    return ap


def main(argv=None):
    rest = sys.argv[1:] if argv is None else list(argv)
    if rest[:1] == ["cpu"]:   # its own argument parser
        return cpu.main(rest[1:])
    args = _parser().parse_args(argv)
    if args.cmd == "compare":
        return compare.compare_main(args, argv)
    if args.cmd == "scaling":
        return scaling.scaling_main(args, argv)
    if args.cmd == "sessions":
        return sessions.sessions_main(args, argv)
    if args.cmd == "watches":
        return watches.watches_main(args, argv)
    if args.cmd == "failover":
        return failover.failover_main(args, argv)
    return loadgen.run_main(args, argv)


if __name__ == "__main__":
    sys.exit(main())
