#!/bin/bash
# TLS / HTTP/2 load benchmark: berth, nginx, HAProxy, nghttpx and h2o, each with ONE
# worker/thread, terminating TLS 1.3 with the same ECDSA P-256 certificate (a CA + leaf made with
# openssl at start) and proxying over HTTP/1.1 keep-alive to the same berth_test_backend
# (--threads 1) /size/100 (100-byte answer). Modelled on bench/load/run.sh, whose lib.sh it uses.
#
#   bench/tls/run.sh [BERTH_BIN] [BACKEND_BIN]
#     defaults: build/berth and build/tests/support/berth_test_backend (relative to the repo
#     root; the backend is compiled into a temp dir if missing; berth is skipped if missing).
#
# Tests (TESTS, each against every target, interleaved):
#   h2       h2load -t1 -c$H2_CONNS -m$H2_STREAMS -D <DURATION>, ALPN h2, SNI bench.test: req/s.
#   h1       wrk -t1 -c$H1_CONNS -d<DURATION> over HTTPS/1.1 (keep-alive): req/s, p50, p99.
#   full     hsload (bench/tls/hsload.c, compiled at start): $HS_CONNS connections in flight, each
#            a NEW TCP connection + full TLS 1.3 handshake (no session offered) + one request with
#            "Connection: close": full handshakes/s. The client counts what the server decided
#            (SSL_session_reused): any resumed handshake in this test is a failure.
#   resumed  the same, each connection offering the ticket from its slot's previous connection:
#            resumed handshakes/s (PSK + ECDHE, no certificate); fewer than 95% resumed is a failure.
#
# Environment (defaults):
#   DURATION=5s  ROUNDS=2  WARMUP=1s  TESTS="h2 h1 full resumed"
#   TARGETS="berth nginx haproxy nghttpx h2o" (add berth-base with BASE_BIN=<an earlier berth>)
#   H2_CONNS=64 H2_STREAMS=10 H1_CONNS=64 HS_CONNS=32
#   PIN=1 SERVER_CPU=0 CLIENT_CPU=1 BACKEND_CPU=$SERVER_CPU  OUT=bench/tls/last-run.md  KEEP_TMP=0
#   QUIET_MAX=20 QUIET_SAMPLE=0.5 QUIET_WAIT=30 QUIET_TOTAL=180 (wait for other load to drop, below)
#   UPSTREAM_IDLE=1024 (lib.sh)  REQ_PATH=/size/100 (e.g. REQ_PATH=/status/503 shows the failure path)
#
# Schedule: for round in 1..ROUNDS, for test in TESTS, for target in TARGETS (order rotated by one
# each round): one client run of DURATION. The table reports medians over rounds, the per-round
# rates, ratios to the best peer (the fastest non-berth target of that test) and, from /proc, the
# CPU time the server under test used per request/handshake. Pinning as in bench/load/run.sh:
# the client alone on CLIENT_CPU, the server under test and the backend on SERVER_CPU.
#
# Fails loudly (message on stderr, a FAILURES section in the table, exit status 1) on socket
# errors, non-2xx answers, a run without result, a wrong protocol (not TLS 1.3, not h2 for h2),
# handshakes of the wrong kind, and lines in berth's log (level ERROR).
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BERTH_BIN=${1:-$ROOT/build/berth}
BACKEND_BIN=${2:-$ROOT/build/tests/support/berth_test_backend}
DURATION=${DURATION:-5s}
ROUNDS=${ROUNDS:-2}
WARMUP=${WARMUP:-1s}
TESTS=${TESTS:-"h2 h1 full resumed"}
TARGETS=${TARGETS:-"berth nginx haproxy nghttpx h2o"}
H2_CONNS=${H2_CONNS:-64}
H2_STREAMS=${H2_STREAMS:-10}
H1_CONNS=${H1_CONNS:-64}
HS_CONNS=${HS_CONNS:-32}
REQ_PATH=${REQ_PATH:-/size/100}
PIN=${PIN:-1}
OUT=${OUT:-$HERE/last-run.md}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
BACKEND_CPU=${BACKEND_CPU:-$SERVER_CPU}

secs_of() { local d=${1%s}; echo "$d"; }   # "5s" / "5" -> 5 (h2load -D and hsload -d take seconds)

for tool in h2load wrk curl openssl gcc /usr/bin/python3; do
  command -v "$tool" >/dev/null || { echo "missing tool: $tool" >&2; exit 1; }
done
[ "$PIN" = 1 ] && ! command -v taskset >/dev/null && { echo "taskset missing; use PIN=0" >&2; exit 1; }

T=$(mktemp -d -t berth-tls.XXXXXX)
# shellcheck source=lib.sh
source "$HERE/lib.sh"
trap lib_cleanup EXIT
trap 'exit 130' INT TERM
ulimit -n "$(ulimit -Hn)" 2>/dev/null

gcc -O2 -o "$T/hsload" "$HERE/hsload.c" -lssl -lcrypto >"$T/hsload.build" 2>&1 ||
  { log "cannot compile hsload.c (needs gcc and libssl-dev): $(cat "$T/hsload.build")"; exit 1; }
HSLOAD=$T/hsload
make_certs || exit 1
BACKEND_BIN=$(ensure_backend "$BACKEND_BIN" "$ROOT/tests/support/test_backend.cpp") || exit 1
LOADAVG_START=$(cut -d' ' -f1-3 /proc/loadavg)
start_backend "$BACKEND_BIN" || exit 1
log "backend on 127.0.0.1:$BACKEND_PORT (pid $BACKEND_PID)"

declare -A PORT SRV_PID
ACTIVE=()
NOTES=()
FAILURES=()
for t in $TARGETS; do
  case $t in
    berth)
      if [ ! -x "$BERTH_BIN" ]; then NOTES+=("berth skipped: $BERTH_BIN not found"); continue; fi
      start_berth_tls "$BERTH_BIN" || { FAILURES+=("berth failed to start"); continue; }
      PORT[$t]=$BERTH_PORT SRV_PID[$t]=$BERTH_PID ;;
    berth-base)  # an earlier berth build (BASE_BIN), to measure a change in the same run
      if [ ! -x "${BASE_BIN:-}" ]; then NOTES+=("berth-base skipped: BASE_BIN not set or not found"); continue; fi
      start_berth_tls "$BASE_BIN" berth-base || { FAILURES+=("berth-base failed to start"); continue; }
      PORT[$t]=$BERTH_PORT SRV_PID[$t]=$BERTH_PID ;;
    nginx)
      command -v nginx >/dev/null || { NOTES+=("nginx skipped: not installed"); continue; }
      start_nginx_tls || { FAILURES+=("nginx failed to start"); continue; }
      PORT[$t]=$NGINX_PORT SRV_PID[$t]=$NGINX_PID ;;
    haproxy)
      command -v haproxy >/dev/null || { NOTES+=("haproxy skipped: not installed"); continue; }
      start_haproxy_tls || { FAILURES+=("haproxy failed to start"); continue; }
      PORT[$t]=$HAPROXY_PORT SRV_PID[$t]=$HAPROXY_PID ;;
    nghttpx)
      command -v nghttpx >/dev/null || { NOTES+=("nghttpx skipped: not installed (nghttp2-proxy)"); continue; }
      start_nghttpx || { FAILURES+=("nghttpx failed to start"); continue; }
      PORT[$t]=$NGHTTPX_PORT SRV_PID[$t]=$NGHTTPX_PID ;;
    h2o)
      command -v h2o >/dev/null || { NOTES+=("h2o skipped: not installed"); continue; }
      start_h2o || { FAILURES+=("h2o failed to start"); continue; }
      PORT[$t]=$H2O_PORT SRV_PID[$t]=$H2O_PID ;;
    *) echo "unknown target $t" >&2; exit 2 ;;
  esac
  if ! check_tls "$t" "${PORT[$t]}"; then FAILURES+=("$t skipped: failed the TLS/h2 check on /size/100"); continue; fi
  ACTIVE+=("$t")
  log "$t ready on 127.0.0.1:${PORT[$t]} (pid ${SRV_PID[$t]})"
done
[ "${#ACTIVE[@]}" -gt 0 ] || { echo "no target could be started" >&2; exit 1; }

CLIENT_PIN=$(pin "$CLIENT_CPU")
HZ=$(getconf CLK_TCK)
NCPU=$(nproc)
# The same accounting as bench/load/run.sh.
cpu_busy() { awk '/^cpu /{print $2+$3+$4+$7+$8+$9; exit}' /proc/stat; }   # jiffies, all CPUs
pid_jiffies() {   # utime+stime jiffies of the given pids and their direct children
  local p sum=0 v
  for p in "$@" $(for q in "$@"; do ps -o pid= --ppid "$q"; done); do
    v=$(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null | awk '{print $12+$13}')
    sum=$((sum + ${v:-0}))
  done
  echo "$sum"
}
children_cpu() { awk 'NR==2{split($1,a,/[ms]/); split($2,b,/[ms]/); print a[1]*60+a[2]+b[1]*60+b[2]}' "$1"; }

# client TEST TARGET DURATION: runs the load client of TEST in the foreground, output in $T/client.out,
# and prints a normalized line: rps= requests= errors= non2xx= p50_us= p99_us= full= resumed= bad=
# (bad = a protocol/handshake-kind problem, "-" if none).
client() {
  local test=$1 t=$2 dur=$3 port=${PORT[$2]} s
  s=$(secs_of "$dur")
  case $test in
    h2)
      # shellcheck disable=SC2086
      $CLIENT_PIN h2load -t1 -c"$H2_CONNS" -m"$H2_STREAMS" -D "$s" --connect-to="127.0.0.1:$port" \
          "https://$SNI:$port$REQ_PATH" >"$T/client.out" 2>&1 ;;
    h1)
      # shellcheck disable=SC2086
      $CLIENT_PIN wrk -t1 -c"$H1_CONNS" -d"$s"s --timeout 5s -s "$ROOT/bench/load/report.lua" \
          "https://127.0.0.1:$port$REQ_PATH" >"$T/client.out" 2>&1 ;;
    full|resumed)
      # shellcheck disable=SC2086,SC2046
      $CLIENT_PIN "$HSLOAD" -c "$HS_CONNS" -d "$s" $([ "$test" = resumed ] && echo -r) -s "$SNI" \
          127.0.0.1 "$port" "$REQ_PATH" >"$T/client.out" 2>&1 ;;
  esac
}

# parse TEST: the normalized result of $T/client.out, or nothing.
parse() {
  local test=$1 f=$T/client.out
  case $test in
    h2)
      awk '
        /^finished in/ { rps = $4 + 0; ok = 1 }
        /^requests:/ { req = $8 + 0; err = $10 + $12 + $14 }
        /^status codes:/ { non2xx = $5 + $7 + $9 }
        /^TLS Protocol:/ { tls = $3 }
        /^Application protocol:/ { alpn = $3 }
        END {
          if (!ok) exit
          bad = "-"
          if (tls != "TLSv1.3") bad = "tls=" (tls == "" ? "none" : tls)
          else if (alpn != "h2") bad = "alpn=" (alpn == "" ? "none" : alpn)
          printf "rps=%.1f requests=%d errors=%d non2xx=%d p50_us=- p99_us=- full=- resumed=- bad=%s\n", rps, req, err, non2xx, bad
        }' "$f" ;;
    h1)
      grep '^RESULT ' "$f" | tail -1 | sed 's/^RESULT //; s/ mb_s=[^ ]*//; s/$/ full=- resumed=- bad=-/' ;;
    full|resumed)
      grep '^RESULT ' "$f" | tail -1 | awk -v test="$test" '{
        for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
        bad = "-"
        if (v["proto"] != "TLSv1.3") bad = "tls=" v["proto"]
        else if (test == "full" && v["resumed"] > 0) bad = "resumed=" v["resumed"]
        else if (test == "resumed" && v["resumed"] < 0.95 * v["requests"]) bad = "only_" v["resumed"] "_of_" v["requests"] "_resumed"
        printf "rps=%s requests=%s errors=%s non2xx=%s p50_us=%s p99_us=%s full=%s resumed=%s bad=%s group=%s\n",
          v["rps"], v["requests"], v["errors"], v["non2xx"], v["p50_us"], v["p99_us"], v["full"], v["resumed"], bad, v["group"]
      }' ;;
  esac
}

# run_one TEST TARGET DURATION: writes the result line (or nothing) to $T/last.result, with
# cpu_srv/cpu_be/other/secs as in bench/load/run.sh.
run_one() {
  local test=$1 t=$2 dur=$3 srv=${SRV_PID[$2]} b0 b1 s0 s1 e0 e1 c0 c1 w0 w1 line
  b0=$(cpu_busy); s0=$(pid_jiffies "$srv"); e0=$(pid_jiffies "$BACKEND_PID"); w0=$(date +%s.%N)
  times >"$T/times0"
  client "$test" "$t" "$dur"
  times >"$T/times1"
  w1=$(date +%s.%N); b1=$(cpu_busy); s1=$(pid_jiffies "$srv"); e1=$(pid_jiffies "$BACKEND_PID")
  c0=$(children_cpu "$T/times0"); c1=$(children_cpu "$T/times1")
  { echo "== $test $t"; cat "$T/client.out"; } >>"$T/client.log"
  : >"$T/last.result"
  line=$(parse "$test")
  [ -n "$line" ] || return 0
  local extra
  extra=$(awk -v hz="$HZ" -v n="$NCPU" -v b="$((b1 - b0))" -v s="$((s1 - s0))" -v e="$((e1 - e0))" \
              -v c="$c0" -v c1="$c1" -v w0="$w0" -v w1="$w1" 'BEGIN {
    secs = w1 - w0; cl = c1 - c; srv = s / hz; be = e / hz
    other = b / hz - srv - be - cl; if (other < 0) other = 0
    printf "cpu_srv=%.1f cpu_be=%.1f cpu_cli=%.1f other=%.0f secs=%.3f", 100 * srv / secs, 100 * be / secs, 100 * cl / secs, 100 * other / (secs * n), secs }')
  echo "$line $extra" >"$T/last.result"
}

# wait_quiet: the machine is shared (builds run beside this). Before each measurement, wait until
# the CPU use of everything else (our servers are idle then) stays below QUIET_MAX % of all cores
# over QUIET_SAMPLE seconds, for at most QUIET_WAIT seconds per run and QUIET_TOTAL in all; a run
# that starts anyway is listed in the notes. QUIET_MAX=100 turns this off.
QUIET_MAX=${QUIET_MAX:-20}
QUIET_SAMPLE=${QUIET_SAMPLE:-0.5}
QUIET_WAIT=${QUIET_WAIT:-30}
QUIET_TOTAL=${QUIET_TOTAL:-180}
QUIET_WAITED=0
busy_pct() {   # % of all cores busy over QUIET_SAMPLE seconds
  local a b
  a=$(awk '/^cpu /{print $2+$3+$4+$7+$8+$9, $2+$3+$4+$5+$6+$7+$8+$9; exit}' /proc/stat)
  sleep "$QUIET_SAMPLE"
  b=$(awk '/^cpu /{print $2+$3+$4+$7+$8+$9, $2+$3+$4+$5+$6+$7+$8+$9; exit}' /proc/stat)
  awk -v a="$a" -v b="$b" 'BEGIN { split(a, x, " "); split(b, y, " "); t = y[2] - x[2]; print (t > 0 ? int(100 * (y[1] - x[1]) / t) : 0) }'
}
wait_quiet() {
  local what=$1 start=$SECONDS p
  [ "$QUIET_MAX" -ge 100 ] && return 0
  while p=$(busy_pct); [ "$p" -gt "$QUIET_MAX" ]; do
    if [ $((SECONDS - start)) -ge "$QUIET_WAIT" ] || [ $((QUIET_WAITED + SECONDS - start)) -ge "$QUIET_TOTAL" ]; then
      log "$what: machine still busy (${p}% of all cores), measuring anyway"
      NOTES+=("$what ran while other processes used ${p}% of all cores")
      break
    fi
    sleep 2
  done
  [ $((SECONDS - start)) -gt 1 ] && log "$what: waited $((SECONDS - start)) s for other load to drop"
  QUIET_WAITED=$((QUIET_WAITED + SECONDS - start))
}

berth_log_lines() { if [ -f "$T/berth/stdout" ]; then grep -c . "$T/berth/stdout"; else echo 0; fi; }
kv() { tr ' ' '\n' <<<"$2" | sed -n "s/^$1=//p" | head -1; }   # kv KEY "k=v k=v ...": the value
BERTH_LOG0=$(berth_log_lines)

if [ "$WARMUP" != 0 ] && [ "$WARMUP" != 0s ]; then
  for t in "${ACTIVE[@]}"; do run_one h2 "$t" "$WARMUP"; done
fi

RES=$T/results.tsv
: >"$RES"
n=${#ACTIVE[@]}
for r in $(seq "$ROUNDS"); do
  for test in $TESTS; do
    for i in $(seq 0 $((n - 1))); do
      t=${ACTIVE[$(( (i + r - 1) % n ))]}
      wait_quiet "round $r $test $t"
      run_one "$test" "$t" "$DURATION"
      line=$(cat "$T/last.result")
      if [ -z "$line" ]; then
        log "round $r $test $t: NO RESULT: $(tail -5 "$T/client.out")"
        FAILURES+=("round $r $test $t: the client produced no result: $(tail -3 "$T/client.out" | tr '\n' ' ')")
        continue
      fi
      log "round $r $test $t: $line"
      printf '%s\t%s\t%s\t%s\n' "$r" "$test" "$t" "$line" >>"$RES"
      e=$(kv errors "$line"); x=$(kv non2xx "$line"); bad=$(kv bad "$line")
      [ "${e:-0}" != 0 ] && FAILURES+=("round $r $test $t: $e socket/handshake errors (or failed h2 streams)")
      [ "${x:-0}" != 0 ] && FAILURES+=("round $r $test $t: $x non-2xx answers")
      [ "${bad:--}" != - ] && FAILURES+=("round $r $test $t: $bad")
    done
  done
done

# Anything berth logged (level ERROR) during the measurements; a dead target.
BERTH_LOG1=$(berth_log_lines)
if [ "$BERTH_LOG1" -gt "$BERTH_LOG0" ]; then
  FAILURES+=("berth logged $((BERTH_LOG1 - BERTH_LOG0)) line(s), first: $(sed -n "$((BERTH_LOG0 + 1))p" "$T/berth/stdout" | cut -c1-300)")
fi
for t in "${ACTIVE[@]}"; do
  kill -0 "${SRV_PID[$t]}" 2>/dev/null || FAILURES+=("$t (pid ${SRV_PID[$t]}) died during the run")
done

versions() {
  printf 'h2load: %s; ' "$(h2load --version 2>&1 | awk '{print $2}')"
  printf 'wrk: %s; ' "$(wrk -v 2>&1 | head -1 | awk '{print $2}')"
  printf 'openssl: %s; ' "$(openssl version | awk '{print $2}')"
  command -v nginx >/dev/null && printf 'nginx: %s; ' "$(nginx -v 2>&1 | sed 's/.*nginx\///')"
  command -v haproxy >/dev/null && printf 'haproxy: %s; ' "$(haproxy -v 2>&1 | head -1 | awk '{print $3}')"
  command -v nghttpx >/dev/null && printf 'nghttpx: %s; ' "$(nghttpx --version 2>&1 | awk '{print $2}')"
  command -v h2o >/dev/null && printf 'h2o: %s; ' "$(h2o -v 2>&1 | head -1 | awk '{print $3}')"
  printf 'kernel: %s; cpus: %s' "$(uname -r)" "$(nproc)"
}

{
  echo "# TLS / HTTP/2 load benchmark ($(date -u '+%Y-%m-%d %H:%M UTC'))"
  echo
  echo "TLS 1.3, ECDSA P-256 certificate, GET /size/100 proxied over HTTP/1.1 keep-alive to one backend;"
  echo "one worker/thread per server; $ROUNDS round(s) of $DURATION per test and target, interleaved;" \
       "pinning: $([ "$PIN" = 1 ] && echo "client on cpu $CLIENT_CPU, server on cpu $SERVER_CPU, backend on cpu $BACKEND_CPU" || echo off)."
  echo "Load average at start: $LOADAVG_START, at end: $(cut -d' ' -f1-3 /proc/loadavg). $(versions)."
  echo
  echo "Tests: **h2** = \`h2load -t1 -c$H2_CONNS -m$H2_STREAMS\` (ALPN h2, req/s); **h1** = \`wrk -t1 -c$H1_CONNS\` over HTTPS/1.1"
  echo "(req/s); **full** = new connection + full handshake + one request per connection, $HS_CONNS in flight (handshakes/s);"
  echo "**resumed** = the same with TLS 1.3 ticket resumption (handshakes/s); full/resumed counts are the server's decision"
  echo "(SSL_session_reused on the client), p50/p99 there = connect to end of response. vs best peer = median rate / the"
  echo "best non-berth median of the same test. CPU µs/op = server CPU time (incl. child processes) per request or"
  echo "handshake; server/backend/client CPU in % of one core (a client near 100% means the client, not the server, set"
  echo "the rate); other load = unrelated CPU use during the run (max over rounds, % of all cores)."
  for note in "${NOTES[@]}"; do echo "Note: $note."; done
  echo
  /usr/bin/python3 - "$RES" "${ACTIVE[*]}" "$TESTS" <<'PY'
import sys, statistics
res, targets, tests = sys.argv[1], sys.argv[2].split(), sys.argv[3].split()
runs = {}
for line in open(res):
    r, test, t, kv = line.rstrip("\n").split("\t")
    runs.setdefault((t, test), []).append(dict(x.split("=", 1) for x in kv.split()))
med = lambda xs: statistics.median(xs) if xs else None
def num(d, k):
    v = d.get(k, "-")
    return None if v in ("-", "") else float(v)
def agg(t, test):
    rs = runs.get((t, test), [])
    if not rs:
        return None
    p50 = [num(d, "p50_us") for d in rs]; p99 = [num(d, "p99_us") for d in rs]
    full = sum(int(d["full"]) for d in rs if d.get("full", "-") != "-")
    resumed = sum(int(d["resumed"]) for d in rs if d.get("resumed", "-") != "-")
    return {
        "rps": med([float(d["rps"]) for d in rs]),
        "p50": med([x for x in p50 if x is not None]), "p99": med([x for x in p99 if x is not None]),
        "rounds": [float(d["rps"]) for d in rs],
        "errors": sum(int(d["errors"]) + int(d["non2xx"]) for d in rs),
        "cpu": med([float(d["cpu_srv"]) for d in rs]),
        "be": med([float(d["cpu_be"]) for d in rs]),
        "cli": med([float(d["cpu_cli"]) for d in rs]),
        "us": med([float(d["cpu_srv"]) / 100 * float(d["secs"]) / max(int(d["requests"]), 1) * 1e6 for d in rs]),
        "other": max(int(d["other"]) for d in rs),
        "resumed": "-" if test not in ("full", "resumed") else f"{100 * resumed / max(full + resumed, 1):.0f}%",
        "group": rs[-1].get("group", ""),
    }
unit = {"h2": "req/s", "h1": "req/s", "full": "hs/s", "resumed": "hs/s"}
name = {"h2": "h2 (h2load)", "h1": "HTTPS/1.1 (wrk)", "full": "full handshake", "resumed": "resumed handshake"}
def ms(us): return "-" if us is None else f"{us/1000:.2f} ms"
def k(x): return f"{x/1000:.1f}k" if x >= 1000 else f"{x:.0f}"
print("| test | target | rate (median) | p50 | p99 | vs best peer | per-round | server CPU | CPU µs/op | backend CPU | client CPU | resumed | other load | errors |")
print("|---|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|")
summary = []
for test in tests:
    a = {t: agg(t, test) for t in targets}
    peers = [(a[t]["rps"], t) for t in targets if not t.startswith("berth") and a[t]]
    best, best_t = max(peers) if peers else (None, None)
    for t in targets:
        x = a[t]
        if x is None:
            print(f"| {name[test]} | {t} | no result | - | - | - | - | - | - | - | - | - | - | - |")
            continue
        ratio = f"{x['rps'] / best:.2f}" if best else "-"
        label = f"**{t}**" if t.startswith("berth") else t
        print(f"| {name[test]} | {label} | {x['rps']:,.0f} {unit[test]} | {ms(x['p50'])} | {ms(x['p99'])} | {ratio} | "
              f"{' / '.join(k(v) for v in x['rounds'])} | {x['cpu']:.0f}% | {x['us']:.1f} | {x['be']:.0f}% | {x['cli']:.0f}% | {x['resumed']} | "
              f"{x['other']}% | {x['errors']} |")
    if a.get("berth") and best:
        summary.append(f"{name[test]}: berth {a['berth']['rps']:,.0f} {unit[test]} = **{a['berth']['rps'] / best:.2f}x** "
                       f"the best peer ({best_t}, {best:,.0f}); CPU µs/op berth {a['berth']['us']:.1f}, {best_t} {a[best_t]['us']:.1f}"
                       + (" (client at ≥90% CPU: the rates are client-bound, compare CPU µs/op)"
                          if max(a['berth']['cli'], a[best_t]['cli']) >= 90 else ""))
print()
for s in summary:
    print(f"- {s}")
groups = sorted({a["group"] for t in targets for test in ("full", "resumed") if (a := agg(t, test)) and a["group"]})
if groups:
    print(f"\nKey exchange negotiated in the handshake tests: {', '.join(groups)}.")
PY
  if [ "${#FAILURES[@]}" -gt 0 ]; then
    echo
    echo "**FAILURES:**"
    for f in "${FAILURES[@]}"; do echo "- $f"; done
  fi
} >"$T/table.md"

cat "$T/table.md"
cp "$T/table.md" "$OUT"
log "table written to $OUT"
if [ "${#FAILURES[@]}" -gt 0 ]; then
  log ""
  log "!!!!!!!! TLS BENCHMARK FAILURES (${#FAILURES[@]}) !!!!!!!!"
  for f in "${FAILURES[@]}"; do log "  $f"; done
  log "client outputs: $T/client.log (KEEP_TMP=1 keeps $T)"
  exit 1
fi
