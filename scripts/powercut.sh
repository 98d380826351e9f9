#!/usr/bin/env bash
# Many power cuts (tests/crash/test_power_cut.py, test_power_cut_sync.py) and a table of the
# outcomes:
#   scripts/powercut.sh [ROUNDS] [pytest -k expression]
#   scripts/powercut.sh 100                 # 100 rounds per case: zkpy and Apache ZooKeeper 3.8,
#                                           # standalone and 3-member (~1.5 h on 2 cores), and
#                                           # zkpy's SNAP-install and log-purge cases (3 cuts
#                                           # per round: ~35 s and ~10 s a round)
#   scripts/powercut.sh 50 "zkpy and standalone"
#   scripts/powercut.sh 20 "snap or purge"
# A failed round is reported (its seed and what was wrong) and the case starts over on empty
# data; the table counts rounds, acknowledged writes and failed rounds per server, layout and
# power-cut mode. Output: the table on stdout, the whole log in powercut-<date>.log.
set -uo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-50}
EXPR=${2:-}
[ -n "${VIRTUAL_ENV:-}" ] || { [ -d .venv ] && . .venv/bin/activate; }
LOG=${POWERCUT_LOG:-powercut-$(date +%Y%m%d-%H%M%S).log}
echo "power cuts: $ROUNDS rounds per case${EXPR:+ (-k \"$EXPR\")}; log: $LOG" >&2
ZKPY_POWERCUT_SEEDS=$ROUNDS ZKPY_POWERCUT_KEEP_GOING=1 \
  python -m pytest -s -p no:cacheprovider --timeout=$((ROUNDS * 60 + 300)) \
  tests/crash/test_power_cut.py tests/crash/test_power_cut_sync.py ${EXPR:+-k "$EXPR"} \
  >"$LOG" 2>&1
rc=$?
python - "$LOG" <<'PY'
import collections, re, sys
rows = collections.OrderedDict()
for line in open(sys.argv[1], errors="replace"):
    m = re.match(r"POWERCUT kind=(\S+) layout=(\S+) seed=(\d+) mode=(\S+) acked=(\d+) "
                 r"pending_pages=(\d+) persisted_pages=(\d+) problems=(\d+)", line)
    if not m:
        continue
    kind, layout, seed, mode, acked, _, _, problems = m.groups()
    r = rows.setdefault((kind, layout, mode), [0, 0, 0, []])
    r[0] += 1
    r[1] += int(acked)
    if int(problems):
        r[2] += 1
        r[3].append(seed)
print("| server | layout | mode | power cuts | writes acknowledged | rounds with a lost write or damage |")
print("|---|---|---|---:|---:|---:|")
for (kind, layout, mode), (n, acked, bad, seeds) in sorted(rows.items()):
    print("| %s | %s | %s | %d | %d | %d%s |" % (kind, layout, mode, n, acked, bad,
          " (seeds %s)" % ", ".join(seeds[:5]) if seeds else ""))
PY
exit $rc
