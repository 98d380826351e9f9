#!/usr/bin/env bash
# Run zkpy's micro-benchmarks (bench/, pytest-benchmark); see bench/README.md.
# Extra arguments go to pytest, e.g.:
#   bash scripts/bench_micro.sh --benchmark-save=baseline
#   bash scripts/bench_micro.sh --benchmark-compare=0001 --benchmark-compare-fail=median:25%
#   bash scripts/bench_micro.sh -k codec
# Not part of the test suite: `python -m pytest` (testpaths = tests) never collects bench/.
set -euo pipefail
cd "$(dirname "$0")/.."
exec python -m pytest bench -q --benchmark-only --benchmark-columns=min,median,ops "$@"
