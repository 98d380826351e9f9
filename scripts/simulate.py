#!/usr/bin/env python3
"""Run the ensemble simulator (zkpy.testing.sim) over many seeds; print any failing seed.

    python scripts/simulate.py --seeds 10000 --start 0       # seeds 0..9999
    python scripts/simulate.py --start 58 --seeds 1 -v       # replay one, with its trace tail
    python scripts/simulate.py --seeds 1000000 --jobs 2      # overnight, on every core

Exit status 1 if any seed failed. A failing seed becomes a regression test in
tests/unit/test_sim.py (REGRESSION_SEEDS).
"""

import argparse
import random
import sys
import time
import traceback

from zkpy.testing import sim


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=1000)
    ap.add_argument("--start", type=int, default=0)
    ap.add_argument("--faults-ms", type=int, default=None, help="fault phase length")
    ap.add_argument("--calm-ms", type=int, default=None, help="calm phase length")
    ap.add_argument("-v", "--verbose", action="store_true", help="trace a failing seed")
    ap.add_argument("--jobs", type=int, default=1,
                    help="processes (seeds in blocks of 1000; no per-fault totals)")
    a = ap.parse_args(argv)
    if a.jobs > 1:
        return _parallel(a)
    kw = _phases(a)
    t0 = time.monotonic()
    steps = faults = failed = 0
    totals = {}
    for seed in range(a.start, a.start + a.seeds):
        rng = random.Random(seed)
        s = sim.Sim(seed, sim.random_options(rng, **kw), trace=a.verbose)
        s.rng = rng
        try:
            s.run()
        except Exception as e:  # noqa: BLE001 - report every kind of failure with its seed
            failed += 1
            print("FAIL seed %d: %s: %s" % (seed, type(e).__name__, e), flush=True)
            if a.verbose:
                traceback.print_exc()
                print("\n".join(s.trace[-60:]))
        steps += s.steps
        faults += s.faults
        for k, v in s.fault_log.items():
            totals[k] = totals.get(k, 0) + v
    dt = time.monotonic() - t0
    print("seeds %d..%d: %d failed; %d steps in %.1f s (%.0f steps/s); faults %d %s"
          % (a.start, a.start + a.seeds - 1, failed, steps, dt, steps / max(dt, 1e-9), faults,
             " ".join("%s=%d" % kv for kv in sorted(totals.items()))))
    return 1 if failed else 0


def _phases(a):
    """The phase lengths asked for, as sim.random_options keywords."""
    kw = {}
    if a.faults_ms is not None:
        kw["faults_ms"] = a.faults_ms
    if a.calm_ms is not None:
        kw["calm_ms"] = a.calm_ms
    return kw


def _parallel(a):
    kw = _phases(a)
    t0 = time.monotonic()
    steps = faults = 0
    failed = []
    end = a.start + a.seeds
    for lo in range(a.start, end, 1000):
        f, st, fa = sim.run_many(range(lo, min(lo + 1000, end)), jobs=a.jobs, **kw)
        for seed, what in f:
            print("FAIL seed %d: %s" % (seed, what), flush=True)
        failed += f
        steps += st
        faults += fa
    dt = time.monotonic() - t0
    print("seeds %d..%d: %d failed; %d steps in %.1f s (%.0f steps/s); faults %d"
          % (a.start, end - 1, len(failed), steps, dt, steps / max(dt, 1e-9), faults))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
