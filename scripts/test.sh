#!/usr/bin/env bash
# Install what the tests need and run them: the README's test command, and what .ci/run calls.
#   - Debian packages zookeeper + zookeeper-bin (Apache ZooKeeper 3.8: the real server for
#     side-by-side tests, zkCli.sh and cli_mt), when running as root and they are missing;
#   - a virtualenv in .venv (unless one is active) with zkpy installed editable plus its test extras;
#   - a check that every compiled module built (zkpy.compiled);
#   - then pytest over tests/ (zkpy with the default worker count, side by side with Apache
#     ZooKeeper), where a skip tests/allowed_skips.txt does not allow fails the run
#     (ZKPY_STRICT_SKIPS=0 to let skips pass, e.g. without the Debian packages); and - unless
#     arguments are given, which go to one pytest run instead - the pure twins (ZKPY_PURE=1:
#     unit tests and kazoo) and, at the same time, the zkpy compatibility suite again with
#     workers=1 and workers=4 (scripts/test_workers_matrix.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

#   - Debian's libcurator-recipes-java (Curator, for tests/compat/test_curator.py) and a JDK.
#   - Debian's fuse3 (fusermount3 and libfuse3, for tests/crash/crashfs.py; its tests skip
#     without /dev/fuse).
#   - Debian's krb5-kdc, krb5-admin-server, krb5-user (a real KDC for the Kerberos tests) and
#     libkrb5-dev (to build the gssapi and pykerberos packages).
PKGS="zookeeper zookeeper-bin libcurator-recipes-java fuse3 krb5-kdc krb5-admin-server krb5-user libkrb5-dev"
command -v javac >/dev/null || PKGS="$PKGS default-jdk-headless"
if ! [ -x /usr/share/zookeeper/bin/zkCli.sh ] || ! [ -x /usr/lib/zookeeper/bin/cli_mt ] \
    || ! [ -f /usr/share/java/curator-recipes.jar ] || ! command -v javac >/dev/null \
    || ! command -v fusermount3 >/dev/null || ! [ -x /usr/sbin/krb5kdc ] \
    || ! command -v krb5-config >/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    # shellcheck disable=SC2086
    apt-get install -y -q $PKGS >/dev/null 2>&1 || {
      apt-get update -q >/dev/null && apt-get install -y -q $PKGS >/dev/null; }
  else
    echo "note: Apache ZooKeeper or fuse3 is not installed (apt-get install $PKGS);" \
         "the side-by-side, zkCli/cli_mt and crashfs tests will be skipped" >&2
  fi
fi

if [ -z "${VIRTUAL_ENV:-}" ]; then
  [ -d .venv ] || python3 -m venv .venv
  # shellcheck disable=SC1091
  . .venv/bin/activate
fi
python -m pip install -q --upgrade pip >/dev/null
python -m pip install -q -e '.[test]'
# GSSAPI (server side) and pykerberos (kazoo's GSSAPI client) build against MIT Kerberos; without
# it the Kerberos tests skip, saying so.
python -m pip install -q gssapi kerberos 2>/dev/null \
  || echo "note: gssapi/kerberos did not install (needs libkrb5-dev); Kerberos tests will skip" >&2
# CI honesty (issue 16): every compiled module must have built -- a failed build would otherwise
# run the pure twins and skip the compiled modules' tests without a word.
python - <<'PY'
import sys
from zkpy import compiled
bad = [(name, why) for name, why in compiled.choices() if why != "compiled"]
for name, why in bad:
    print("scripts/test.sh: compiled module %s did not load: %s" % (name, why), file=sys.stderr)
sys.exit(1 if bad else 0)
PY
if [ $# -gt 0 ]; then
  exec python -m pytest -q "$@"
fi
# Every skip must be one tests/allowed_skips.txt allows (tests/conftest.py), and pytest says
# why each test skipped (-rs).
export ZKPY_STRICT_SKIPS=${ZKPY_STRICT_SKIPS:-1}
python -m pytest -q -rs
# Then, at the same time (both mostly wait on sockets and timers; on 2 cores the pair takes
# about the time of the longer one): the pure twins (ZKPY_PURE=1): the unit tests (but those of
# the bench tools and the simulator, which run no compiled code) and kazoo against a server
# running the pure code (envi says which twins run); and the zkpy compatibility suite again
# with workers=1 and workers=4. The pure twins' output is printed when both are done.
pure_log=$(mktemp)
( ZKPY_PURE=1 ZKPY_TEST_TARGETS=zkpy python -m pytest -q -rs -p no:cacheprovider tests/unit \
    --ignore=tests/unit/test_sim.py --ignore=tests/unit/test_compare.py \
    --ignore-glob='tests/unit/test_bench_*' --ignore=tests/unit/test_scaling.py \
    --ignore=tests/unit/test_loadgen.py --ignore=tests/unit/test_skip_policy.py \
    tests/compat/test_kazoo_basic.py tests/compat/test_fourletter.py ) >"$pure_log" 2>&1 &
pure_pid=$!
matrix=0
ZKPY_TEST_TARGETS=zkpy WORKER_COUNTS="1 4" MATRIX_PARALLEL=1 bash scripts/test_workers_matrix.sh \
  || matrix=$?
pure=0
wait "$pure_pid" || pure=$?
echo "==== pure twins (ZKPY_PURE=1)"
cat "$pure_log"
rm -f "$pure_log"
[ "$pure" = 0 ] || echo "the pure twins' run FAILED" >&2
[ "$matrix" = 0 ] || echo "the worker-count matrix FAILED" >&2
[ "$pure" = 0 ] && [ "$matrix" = 0 ]
