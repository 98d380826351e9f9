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
failed=()
for n in $counts; do
  echo "==== workers=$n: python -m pytest -q tests/compat (but test_ensemble*) $*"
  start=$(date +%s)
  # The ensemble suites (tests/compat/test_ensemble*.py) run once, in the main pytest run: they
  # test the quorum, not the worker count, and three servers per test make them the slowest.
  # So do the security suites (TLS, SASL, audit): they are about the handshake and the
  # identities, and test_tls.py checks its worker counts (0 and 2) itself.
  if ZKPY_TEST_WORKERS=$n python -m pytest -q tests/compat --ignore-glob='tests/compat/test_ensemble*' \
      --ignore-glob='tests/compat/test_tls*' --ignore-glob='tests/compat/test_sasl*' \
      --ignore-glob='tests/compat/test_audit*' --ignore-glob='tests/compat/test_security*' "$@"; then
    echo "==== workers=$n passed in $(( $(date +%s) - start ))s"
  else
    echo "==== workers=$n FAILED in $(( $(date +%s) - start ))s"
    failed+=("$n")
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "failed worker counts: ${failed[*]}"
  exit 1
fi
echo "all worker counts passed: $counts"
