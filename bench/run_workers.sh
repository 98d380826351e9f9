#!/usr/bin/env bash
# Worker scaling, end to end: zkpy with workers=1, 2, 4 and Apache ZooKeeper 3.8 (Debian jars),
# each on its own free port on 127.0.0.1 with its own dataDir under /tmp, all started first and
# then driven in alternation (per workload: w1, w2, w4, apache), followed by the null-server
# ceiling of the load generator. Prints the table (python -m zkpy.bench.compare) at the end;
# bench/RESULTS-workers.md holds a copy.
#
#   bash bench/run_workers.sh                 # ~3 minutes on the 2-core machine
#   ROUNDS=2 DURATION=8 bash bench/run_workers.sh
#
# Knobs (environment): WORKLOADS ("getdata exists create"), DURATION (5 s measured per run),
# WARMUP (2 s), ROUNDS (1), PROCESSES (2 load processes), SESSIONS (32), DEPTH (16),
# VALUE_SIZE (100), ZNODES (1000), WORKERS ("1 2 4"), APACHE (1; 0 skips it), PREWARM (3 s of
# unmeasured getdata per server before the first run), OUT (results dir).
# Every server gets the same zoo.cfg keys: tickTime=2000, forceSync default (yes),
# maxClientCnxns=0, admin.enableServer=false, 4lw.commands.whitelist=*.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD

WORKLOADS=${WORKLOADS:-"getdata exists create"}
DURATION=${DURATION:-5}
WARMUP=${WARMUP:-2}
ROUNDS=${ROUNDS:-1}
PROCESSES=${PROCESSES:-2}
SESSIONS=${SESSIONS:-32}
DEPTH=${DEPTH:-16}
VALUE_SIZE=${VALUE_SIZE:-100}
ZNODES=${ZNODES:-1000}
WORKERS=${WORKERS:-"1 2 4"}
APACHE=${APACHE:-1}
PREWARM=${PREWARM:-3}
OUT=${OUT:-/tmp/zkpy-bench-workers.$$}
PY=${PYTHON:-python3}
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"

JARS="zookeeper zookeeper-jute slf4j-api slf4j-simple netty-handler netty-common netty-buffer
      netty-transport netty-transport-native-epoll netty-transport-native-unix-common
      netty-codec netty-resolver metrics-core snappy-java"
CP=$(for j in $JARS; do printf '/usr/share/java/%s.jar:' "$j"; done)
CP=${CP%:}

mkdir -p "$OUT"
PGIDS=()
cleanup() {
  # Only the process groups this script started (each server is its own session leader).
  for g in "${PGIDS[@]}"; do kill -TERM -- "-$g" 2>/dev/null || true; done
  sleep 1
  for g in "${PGIDS[@]}"; do kill -KILL -- "-$g" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_ready PORT NAME: srvr answers and says the server is serving (Apache answers ruok early).
wait_ready() {
  $PY - "$1" "$2" "$OUT/$2/server.log" <<'EOF'
import socket, sys, time
port, name, log = int(sys.argv[1]), sys.argv[2], sys.argv[3]
deadline = time.monotonic() + 60
last = ""
while time.monotonic() < deadline:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.sendall(b"srvr")
            last = b"".join(iter(lambda: s.recv(4096), b"")).decode(errors="replace")
        if "Mode:" in last and "not currently serving" not in last:
            sys.exit(0)
    except OSError as e:
        last = repr(e)
    time.sleep(0.2)
sys.exit("%s on port %d not serving after 60 s (last: %r); see %s" % (name, port, last, log))
EOF
}

# start_server NAME PORT CMD...: zoo.cfg in $OUT/NAME, own session; appends its pgid to PGIDS.
start_server() {
  local name=$1 port=$2 extra=$3; shift 3
  local dir="$OUT/$name"
  mkdir -p "$dir/data"
  {
    echo "tickTime=2000"
    echo "dataDir=$dir/data"
    echo "clientPort=$port"
    echo "clientPortAddress=127.0.0.1"
    echo "maxClientCnxns=0"
    echo "admin.enableServer=false"
    echo "4lw.commands.whitelist=*"
    if [ -n "$extra" ]; then echo "$extra"; fi
  } > "$dir/zoo.cfg"
  # bash -c writes its own pid (= the new session's pgid after setsid) and execs the server.
  setsid bash -c 'echo $$ > "$0/pgid"; cd "$0"; exec "$@"' "$dir" "$@" "$dir/zoo.cfg" \
    > "$dir/server.log" 2>&1 < /dev/null &
  for _ in $(seq 50); do [ -s "$dir/pgid" ] && break; sleep 0.1; done
  PGIDS+=("$(cat "$dir/pgid")")
}

SERVERS=()
declare -A PORT
for w in $WORKERS; do
  name="zkpy-w$w"; PORT[$name]=$(free_port)
  start_server "$name" "${PORT[$name]}" "workers=$w" $PY -m zkpy.cli.server start-foreground
  SERVERS+=("$name")
done
if [ "$APACHE" = 1 ]; then
  name="apache-3.8"; PORT[$name]=$(free_port)
  # As tests/compat/servers.py starts it (explicit jars, QuorumPeerMain), but with the JVM's
  # default JIT and GC: the tests' -XX:TieredStopAtLevel=1 would handicap it here.
  start_server "$name" "${PORT[$name]}" "" java -Xmx1g -Dzookeeper.jmx.log4j.disable=true \
    -cp "$CP" org.apache.zookeeper.server.quorum.QuorumPeerMain
  SERVERS+=("$name")
fi
for s in "${SERVERS[@]}"; do wait_ready "${PORT[$s]}" "$s"; done
for s in "${SERVERS[@]}"; do echo "server $s: 127.0.0.1:${PORT[$s]}, $OUT/$s" >&2; done

# A short unmeasured run per server first, so that no server (the JVM's JIT above all) meets
# the first measured workload cold.
for s in "${SERVERS[@]}"; do
  $PY -m zkpy.bench.loadgen run --hosts "127.0.0.1:${PORT[$s]}" --workload getdata \
    --duration "$PREWARM" --warmup 0 --processes "$PROCESSES" -q > /dev/null
done

COMMON=(--processes "$PROCESSES" --sessions "$SESSIONS" --depth "$DEPTH" --duration "$DURATION"
        --warmup "$WARMUP" --value-size "$VALUE_SIZE" --znodes "$ZNODES" -q)
echo "load: zkpy-bench run --workload W --hosts H ${COMMON[*]}" >&2
FAILED=0
FILES=()
for r in $(seq "$ROUNDS"); do
  for wl in $WORKLOADS; do
    for s in "${SERVERS[@]}"; do
      $PY -m zkpy.bench.loadgen run --hosts "127.0.0.1:${PORT[$s]}" --workload "$wl" \
        --label "$s" --json "$OUT/r$r-$wl-$s.json" "${COMMON[@]}" | sed "s/^/$s: /" \
        || FAILED=1
      FILES+=("$OUT/r$r-$wl-$s.json")
    done
  done
done
for wl in $WORKLOADS; do
  $PY -m zkpy.bench.loadgen run --null-server --workload "$wl" --label null-server \
    --json "$OUT/r1-$wl-null-server.json" "${COMMON[@]}" | sed "s/^/null-server: /" || FAILED=1
  FILES+=("$OUT/r1-$wl-null-server.json")
done

echo
echo "machine: $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg); results in $OUT"
EXISTING=()
for f in "${FILES[@]}"; do if [ -s "$f" ]; then EXISTING+=("$f"); fi; done
$PY -m zkpy.bench.compare "${EXISTING[@]}" || FAILED=1
exit $FAILED
