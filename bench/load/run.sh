#!/bin/bash
# Load benchmark: wrk against the test backend directly ("ceiling"), berth, nginx and HAProxy,
# interleaved, each proxy with ONE worker/thread and upstream keep-alive to the same
# berth_test_backend (--threads 1).
#
#   bench/load/run.sh [BERTH_BIN] [BACKEND_BIN]
#     defaults: build/berth and build/tests/support/berth_test_backend (relative to the repo root;
#     the backend is compiled from tests/support/test_backend.cpp into a temp dir if missing;
#     berth is skipped with a message if missing).
#
# Environment (defaults):
#   DURATION=10s  ROUNDS=3  CONNS=64  WRK_THREADS=1  SIZES="100 16384"
#   TARGETS="ceiling berth nginx haproxy"  WARMUP=2s  PIN=1  SERVER_CPU=0  CLIENT_CPU=1
#   BACKEND_CPU=$SERVER_CPU
#   OUT=bench/load/last-run.md
#
# Schedule: for round in 1..ROUNDS, for size in SIZES, for target in TARGETS (the target order
# is rotated by one each round so no target always runs right after the same neighbour): one wrk
# run of DURATION with CONNS keep-alive connections on /size/<size>. The table reports the
# median over rounds of req/s, p50 and p99 (each median taken separately), the per-round req/s,
# and ratios of the median req/s to nginx and to the ceiling for the same size.
#
# Pinning (PIN=1, made for the 2-core machine): wrk runs alone on CLIENT_CPU (so -t1: one core
# for one wrk thread); the proxy under test AND the backend share SERVER_CPU, so the whole
# server side gets exactly one core and that core is the bottleneck for every target. A proxy's
# throughput is then ~ 1 / (proxy cost + backend cost) per request; the ceiling is the backend
# alone on that core. Alternative BACKEND_CPU=1 gives the proxy a core of its own but puts the
# backend next to wrk, which then caps all proxies at about the same rate (the proxies ran at
# only 65-80% CPU that way: less discriminating). For BACKEND_CPU != SERVER_CPU the backend is
# moved to SERVER_CPU (taskset -p) during ceiling runs. PIN=0 lets the scheduler place everything.
#
# Besides req/s and latency, the table shows the CPU time the server under test used per request
# (from /proc/PID/stat before/after each run) and the CPU used by unrelated processes in the
# meantime ("other load"): on a shared machine req/s is noisy, CPU µs per request much less so.
# Everything listens on 127.0.0.1 only, on ports chosen at run time.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BERTH_BIN=${1:-$ROOT/build/berth}
BACKEND_BIN=${2:-$ROOT/build/tests/support/berth_test_backend}
DURATION=${DURATION:-10s}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-64}
WRK_THREADS=${WRK_THREADS:-1}
SIZES=${SIZES:-"100 16384"}
TARGETS=${TARGETS:-"ceiling berth nginx haproxy"}
WARMUP=${WARMUP:-2s}
PIN=${PIN:-1}
OUT=${OUT:-$HERE/last-run.md}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
BACKEND_CPU=${BACKEND_CPU:-$SERVER_CPU}

for tool in wrk curl /usr/bin/python3; do
  command -v "$tool" >/dev/null || { echo "missing tool: $tool" >&2; exit 1; }
done
[ "$PIN" = 1 ] && ! command -v taskset >/dev/null && { echo "taskset missing; use PIN=0" >&2; exit 1; }

T=$(mktemp -d -t berth-load.XXXXXX)
# shellcheck source=lib.sh
source "$HERE/lib.sh"
trap lib_cleanup EXIT
trap 'exit 130' INT TERM
ulimit -n "$(ulimit -Hn)" 2>/dev/null

BACKEND_BIN=$(ensure_backend "$BACKEND_BIN" "$ROOT/tests/support/test_backend.cpp") || exit 1
LOADAVG_START=$(cut -d' ' -f1-3 /proc/loadavg)
start_backend "$BACKEND_BIN" || exit 1
log "backend on 127.0.0.1:$BACKEND_PORT (pid $BACKEND_PID)"

declare -A PORT
ACTIVE=()
NOTES=()
for t in $TARGETS; do
  case $t in
    ceiling) PORT[$t]=$BACKEND_PORT ;;
    nginx)
      if command -v nginx >/dev/null && start_nginx; then PORT[$t]=$NGINX_PORT
      else NOTES+=("nginx skipped (missing or failed to start)"); continue; fi ;;
    haproxy)
      if command -v haproxy >/dev/null && start_haproxy; then PORT[$t]=$HAPROXY_PORT
      else NOTES+=("haproxy skipped (missing or failed to start)"); continue; fi ;;
    berth)
      if [ ! -x "$BERTH_BIN" ]; then
        log "berth binary $BERTH_BIN not found: skipping berth"
        NOTES+=("berth skipped: $BERTH_BIN not found"); continue
      fi
      if start_berth "$BERTH_BIN"; then PORT[$t]=$BERTH_PORT
      else NOTES+=("berth skipped: failed to start (see log above)"); continue; fi ;;
    *) echo "unknown target $t" >&2; exit 2 ;;
  esac
  if ! check_target "$t" "${PORT[$t]}"; then NOTES+=("$t skipped: wrong answer on /size/100"); continue; fi
  ACTIVE+=("$t")
  log "$t ready on 127.0.0.1:${PORT[$t]}"
done
[ "${#ACTIVE[@]}" -gt 0 ] || { echo "no target could be started" >&2; exit 1; }

WRK_PIN=$(pin "$CLIENT_CPU")
backend_to() { [ "$PIN" = 1 ] && taskset -p -c "$1" "$BACKEND_PID" >/dev/null; }

HZ=$(getconf CLK_TCK)
NCPU=$(nproc)
declare -A SRV_PID=([ceiling]=$BACKEND_PID [berth]=${BERTH_PID:-} [nginx]=${NGINX_PID:-} [haproxy]=${HAPROXY_PID:-})
cpu_busy() { awk '/^cpu /{print $2+$3+$4+$7+$8+$9; exit}' /proc/stat; }   # jiffies, all CPUs
# utime+stime jiffies of the given pids and their direct children
pid_jiffies() {
  local p sum=0 v
  for p in "$@" $(for q in "$@"; do ps -o pid= --ppid "$q"; done); do
    v=$(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null | awk '{print $12+$13}')
    sum=$((sum + ${v:-0}))
  done
  echo "$sum"
}
# CPU seconds of this shell's waited-for children, from a `times` snapshot file (`times` must run
# in this shell, not in a $(...) subshell, whose children counters start at zero).
children_cpu() { awk 'NR==2{split($1,a,/[ms]/); split($2,b,/[ms]/); print a[1]*60+a[2]+b[1]*60+b[2]}' "$1"; }

# run_wrk TARGET SIZE DURATION: writes the RESULT line (or nothing) to $T/last.result, with
#   cpu_srv=<% of one core used by the server under test (proxy + children; backend for ceiling)>
#   cpu_be=<% of one core used by the backend>  other=<% of all cores used by everything else>
run_wrk() {
  local t=$1 size=$2 dur=$3 srv=${SRV_PID[$1]} b0 b1 s0 s1 e0 e1 c0 c1 w0 w1
  [ "$t" = ceiling ] && backend_to "$SERVER_CPU"
  b0=$(cpu_busy); s0=$(pid_jiffies "$srv"); e0=$(pid_jiffies "$BACKEND_PID"); w0=$(date +%s.%N)
  times >"$T/times0"
  # shellcheck disable=SC2086
  $WRK_PIN wrk -t"$WRK_THREADS" -c"$CONNS" -d"$dur" --timeout 5s -s "$HERE/report.lua" \
      "http://127.0.0.1:${PORT[$t]}/size/$size" >"$T/wrk.out" 2>&1
  times >"$T/times1"
  w1=$(date +%s.%N); b1=$(cpu_busy); s1=$(pid_jiffies "$srv"); e1=$(pid_jiffies "$BACKEND_PID")
  c0=$(children_cpu "$T/times0"); c1=$(children_cpu "$T/times1")
  [ "$t" = ceiling ] && backend_to "$BACKEND_CPU"
  cat "$T/wrk.out" >>"$T/wrk.log"
  : >"$T/last.result"
  grep -q '^RESULT ' "$T/wrk.out" || return 0
  local extra
  extra=$(awk -v hz="$HZ" -v n="$NCPU" -v b="$((b1 - b0))" -v s="$((s1 - s0))" -v e="$((e1 - e0))" \
              -v c="$c0" -v c1="$c1" -v w0="$w0" -v w1="$w1" -v ceil="$([ "$t" = ceiling ] && echo 1 || echo 0)" 'BEGIN {
    secs = w1 - w0; wrk = c1 - c; srv = s / hz; be = e / hz
    other = b / hz - srv - (ceil ? 0 : be) - wrk; if (other < 0) other = 0
    printf "cpu_srv=%.1f cpu_be=%.1f other=%.0f secs=%.3f", 100 * srv / secs, 100 * be / secs, 100 * other / (secs * n), secs }')
  echo "$(grep '^RESULT ' "$T/wrk.out" | tail -1) $extra" >"$T/last.result"
}

if [ "$WARMUP" != 0 ] && [ "$WARMUP" != 0s ]; then
  for t in "${ACTIVE[@]}"; do run_wrk "$t" 100 "$WARMUP"; done
fi

RES=$T/results.tsv
: >"$RES"
n=${#ACTIVE[@]}
for r in $(seq "$ROUNDS"); do
  for size in $SIZES; do
    for i in $(seq 0 $((n - 1))); do
      t=${ACTIVE[$(( (i + r - 1) % n ))]}
      run_wrk "$t" "$size" "$DURATION"
      line=$(cat "$T/last.result")
      if [ -z "$line" ]; then
        log "round $r size $size $t: wrk produced no result"
        continue
      fi
      log "round $r size $size $t: ${line#RESULT }"
      printf '%s\t%s\t%s\t%s\n' "$r" "$size" "$t" "${line#RESULT }" >>"$RES"
      sleep 0.5
    done
  done
done

versions() {
  printf 'wrk: %s; ' "$(wrk -v 2>&1 | head -1 | awk '{print $2}')"
  command -v nginx >/dev/null && printf 'nginx: %s; ' "$(nginx -v 2>&1 | sed 's/.*nginx\///')"
  command -v haproxy >/dev/null && printf 'haproxy: %s; ' "$(haproxy -v 2>&1 | head -1 | awk '{print $3}')"
  printf 'kernel: %s; cpus: %s' "$(uname -r)" "$(nproc)"
}

{
  echo "# Load benchmark ($(date -u '+%Y-%m-%d %H:%M UTC'))"
  echo
  echo "wrk -t$WRK_THREADS -c$CONNS -d$DURATION, keep-alive, GET /size/N; $ROUNDS round(s), interleaved;" \
       "pinning: $([ "$PIN" = 1 ] && echo "wrk on cpu $CLIENT_CPU, proxy on cpu $SERVER_CPU, backend on cpu $BACKEND_CPU (cpu $SERVER_CPU for the ceiling run)" || echo off)."
  echo "Load average at start: $LOADAVG_START, at end: $(cut -d' ' -f1-3 /proc/loadavg). $(versions)."
  echo
  echo "server CPU = CPU used by the server under test (proxy incl. children; the backend for ceiling) in % of one core;"
  echo "CPU µs/req = that CPU time divided by the requests served (median over rounds);"
  echo "backend CPU = the backend's share, % of one core; other load = CPU used by unrelated processes during the run"
  echo "(max over rounds) in % of all $NCPU cores — results with noticeable other load are noisy."
  for note in "${NOTES[@]}"; do echo "Note: $note."; done
  echo
  /usr/bin/python3 - "$RES" "${ACTIVE[*]}" "$SIZES" <<'PY'
import sys, statistics
res, targets, sizes = sys.argv[1], sys.argv[2].split(), sys.argv[3].split()
runs = {}
for line in open(res):
    r, size, t, kv = line.rstrip("\n").split("\t")
    d = dict(x.split("=") for x in kv.split())
    runs.setdefault((t, size), []).append(d)
med = lambda xs: statistics.median(xs) if xs else None
def agg(t, size):
    rs = runs.get((t, size), [])
    return {
        "rps": med([float(d["rps"]) for d in rs]),
        "p50": med([int(d["p50_us"]) for d in rs]),
        "p99": med([int(d["p99_us"]) for d in rs]),
        "rounds": [float(d["rps"]) for d in rs],
        "errors": sum(int(d["errors"]) + int(d["non2xx"]) for d in rs),
        "cpu": med([float(d.get("cpu_srv", 0)) for d in rs]),
        "be": med([float(d.get("cpu_be", 0)) for d in rs]),
        # CPU µs per request of the server under test (proxy; for the ceiling: the backend)
        "us": med([float(d["cpu_srv"]) / 100 * float(d["secs"]) / max(int(d["requests"]), 1) * 1e6 for d in rs]),
        "other": max([int(d.get("other", 0)) for d in rs] or [0]),
    }
def ms(us): return "-" if us is None else f"{us/1000:.2f} ms"
def ratio(a, b): return "-" if (a is None or not b) else f"{a/b:.2f}"
def k(x): return f"{x/1000:.1f}k"
print("| target | size | req/s (median) | p50 | p99 | vs nginx | vs ceiling | per-round req/s | server CPU | CPU µs/req | backend CPU | other load | errors |")
print("|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|")
for size in sizes:
    base = {t: agg(t, size) for t in targets}
    ng = base.get("nginx", {}).get("rps")
    ce = base.get("ceiling", {}).get("rps")
    for t in targets:
        a = base[t]
        if a["rps"] is None:
            print(f"| {t} | {size} B | - | - | - | - | - | no result | - | - | - | - | - |")
            continue
        print(f"| {t} | {size} B | {a['rps']:,.0f} | {ms(a['p50'])} | {ms(a['p99'])} | {ratio(a['rps'], ng)} | "
              f"{ratio(a['rps'], ce)} | {' / '.join(k(x) for x in a['rounds'])} | {a['cpu']:.0f}% | {a['us']:.1f} | {a['be']:.0f}% | "
              f"{a['other']}% | {a['errors']} |")
PY
} >"$T/table.md"

cat "$T/table.md"
cp "$T/table.md" "$OUT"
log "table written to $OUT"
