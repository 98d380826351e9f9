#!/usr/bin/env bash
# Run the compatibility suite once per worker count (issue 3: "the whole suite passes with
# workers=1 and workers=4"): ZKPY_TEST_WORKERS=N makes tests/compat/servers.py write workers=N
# into every zkpy server's zoo.cfg (tests that set `workers` themselves keep theirs).
#   scripts/test_workers_matrix.sh                 counts 1 4 0, all of tests/compat
#   WORKER_COUNTS="1 4" scripts/test_workers_matrix.sh -x -k kazoo   extra args go to pytest
# Runs every count even after a failure; exits non-zero if any count failed, and says which.
set -uo pipefail
cd "$(dirname "$0")/.."

counts=${WORKER_COUNTS:-"1 4 0"}
# MATRIX_PARALLEL=1 runs the counts at the same time (each its own pytest, servers on their own
# free ports; the output of each is printed when all are done): the suite mostly waits on
# sockets and timers, so on 2 cores the pair takes ~60% of the time one after the other.
parallel=${MATRIX_PARALLEL:-0}
failed=()
logdir=$(mktemp -d)
run_count() {
  local n=$1
  # The ensemble suites (tests/compat/test_ensemble*.py) run once, in the main pytest run: they
  # test the quorum, not the worker count, and three servers per test make them the slowest.
  # So do the security suites (TLS, SASL, audit): they are about the handshake and the
  # identities, and test_tls.py checks its worker counts (0 and 2) itself.
  local start
  start=$(date +%s)
  echo "==== workers=$n: python -m pytest -q tests/compat (but test_ensemble*) ${*:2}"
  if ZKPY_TEST_WORKERS=$n python -m pytest -q tests/compat --ignore-glob='tests/compat/test_ensemble*' \
      --ignore-glob='tests/compat/test_tls*' --ignore-glob='tests/compat/test_sasl*' \
      --ignore-glob='tests/compat/test_audit*' --ignore-glob='tests/compat/test_security*' "${@:2}"; then
    echo "==== workers=$n passed in $(( $(date +%s) - start ))s"
  else
    echo "==== workers=$n FAILED in $(( $(date +%s) - start ))s"
    return 1
  fi
}
if [ "$parallel" = 1 ]; then
  pids=()
  for n in $counts; do
    run_count "$n" "$@" >"$logdir/$n.log" 2>&1 &
    pids+=("$!")
  done
  i=0
  for n in $counts; do
    wait "${pids[$i]}" || failed+=("$n")
    cat "$logdir/$n.log"
    i=$((i + 1))
  done
else
  for n in $counts; do
    run_count "$n" "$@" || failed+=("$n")
  done
fi
rm -rf "$logdir"
if [ ${#failed[@]} -gt 0 ]; then
  echo "failed worker counts: ${failed[*]}"
  exit 1
fi
echo "all worker counts passed: $counts"
