#!/usr/bin/env bash
# bench/server/run.sh: `keep server` against nginx over the same mTLS setup.
#
# Usage (as root, on Debian 12; a benchmark, not a test; never run in CI):
#
#   bench/server/run.sh
#
# Knobs (environment variables, all optional):
#   ROUNDS=2          measured runs per target and mode (keep and nginx interleaved)
#   DURATION=10       seconds per run
#   CONC=16           concurrent connections (keep-alive) / concurrent workers (-new)
#   KEEP_PORT=18210   NGINX_PORT=18453   (127.0.0.1 only)
#   QUIET_SECS=20     before measuring, wait until no cargo/rustc process has run for this long,
#   QUIET_MAX=900     ... but for at most this many seconds (then go on, with a warning)
#   OUT=FILE          where to save the summary (default bench/server/results-YYYY-MM-DD-HHMM.txt)
#   AUDIT=1           give keep an audit log (DESIGN's read goal includes audit); AUDIT=0 for
#                     none, or for a keep that predates the `audit:` config section
#   KEEP_BIN=PATH     use this keep binary and skip the cargo build (e.g. a build of a committed
#                     revision while the working tree is mid-edit)
#   PERF=FILE         record keep with `perf record -e cpu-clock` during its first measured
#                     keep-alive run and write `perf report --no-children` (top 80 lines) to FILE
#                     (needs Debian's linux-perf; software clock, so it works without counters)
#
# What it does:
#   1. installs nginx, golang-go and curl from Debian if missing; builds gload (gload/, Go stdlib
#      only, offline: GOPROXY=off) into the temp dir;
#   2. cargo build --release -p keep;
#   3. in a temp dir: a P-256 PKI made with `keep certificate create` (root CA, server leaf
#      `localhost`, client leaf `operator`); `keep server init` + `keep server` (sqlite, key-file
#      seal, admin common_name operator, TLS 1.3); writes secret/bench with curl; starts nginx
#      (1 worker, foreground, config nginx.conf.tmpl) with the same cert, key and client CA,
#      returning as a static body the very JSON body keep returns for the read;
#   4. interleaves keep and nginx runs (the order alternates each round, to cancel drift), each
#      GET https://127.0.0.1:PORT/v1/secret/data/bench, (a) keep-alive, CONC connections, then
#      (b) a new connection (full mTLS handshake) per request, CONC concurrent; every response must
#      be 200 with the secret in the body (gload -expect), errors are counted and reported;
#      records each server's CPU time per run and the RSS of keep and of the nginx worker;
#   5. prints the summary (per-run requests/s, medians, keep/nginx ratios vs the goals, p50/p99,
#      RSS) and saves it to OUT;
#   6. on exit (normal, error or Ctrl-C) stops keep and nginx and removes the temp dir.
#
# The load client shares the machine's CPUs with the server, and the host is noisy: read the
# ratios of interleaved runs, not the absolute numbers.
# Exit status: 0 done; 3 done but some requests failed; other non-zero: setup failed.
set -euo pipefail
shopt -u patsub_replacement 2>/dev/null || true # ${x//pat/rep}: no special '&' in rep

ROUNDS=${ROUNDS:-2}
DURATION=${DURATION:-10}
CONC=${CONC:-16}
KEEP_PORT=${KEEP_PORT:-18210}
NGINX_PORT=${NGINX_PORT:-18453}
QUIET_SECS=${QUIET_SECS:-20}
QUIET_MAX=${QUIET_MAX:-900}
AUDIT=${AUDIT:-1}
SECRET_VALUE=sk-bench
PATH_READ=/v1/secret/data/bench

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
OUT=${OUT:-$here/results-$(date +%Y-%m-%d-%H%M).txt}

log() { printf '==> %s\n' "$*" >&2; }
die() {
  printf 'error: %s\n' "$*" >&2
  exit 1
}

# ---- cleanup: everything started here is stopped, the temp dir removed ----------------------
tmp=""
keep_pid=""
nginx_pid=""
nginx_worker=""
sampler_pid=""

# alive PID: the process exists and is not a zombie (an exited child not yet reaped).
alive() {
  local st
  st=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
  [[ $st != Z* ]]
}

# stop PID SIGNAL: send SIGNAL, wait up to 15 s, then SIGKILL.
stop() {
  local pid=$1 sig=$2 i
  [ -n "$pid" ] && alive "$pid" || return 0
  kill "-$sig" "$pid" 2>/dev/null || true
  for ((i = 0; i < 150; i++)); do
    alive "$pid" || return 0
    sleep 0.1
  done
  log "pid $pid ignored SIG$sig for 15 s; killing it"
  kill -KILL "$pid" 2>/dev/null || true
}

cleanup() {
  local rc=$?
  set +e
  stop "$sampler_pid" KILL
  stop "$keep_pid" TERM
  stop "$nginx_pid" QUIT
  stop "$nginx_worker" KILL # only if it outlived its master
  if [ -n "$tmp" ] && [ -d "$tmp" ]; then rm -rf "$tmp"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

[ "$(id -u)" -eq 0 ] || die "run as root (it installs packages and starts nginx)"
[[ $ROUNDS =~ ^[1-9][0-9]*$ && $DURATION =~ ^[1-9][0-9]*$ && $CONC =~ ^[1-9][0-9]*$ ]] ||
  die "ROUNDS, DURATION and CONC must be positive integers"

# ---- 1. tools -------------------------------------------------------------------------------
need=()
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx)
command -v go >/dev/null || need+=(golang-go)
command -v curl >/dev/null || need+=(curl)
if ((${#need[@]})); then
  log "installing ${need[*]} from Debian"
  timeout 600 apt-get update
  DEBIAN_FRONTEND=noninteractive timeout 1200 apt-get install -y "${need[@]}"
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

tmp=$(mktemp -d /tmp/keep-bench.XXXXXX)
chmod 700 "$tmp"

log "building gload (Go stdlib only, offline)"
(cd "$here/gload" && GOPROXY=off GOFLAGS='' timeout 300 go build -o "$tmp/gload" .)

# ---- 2. keep --------------------------------------------------------------------------------
if [ -n "${KEEP_BIN:-}" ]; then
  built=$KEEP_BIN
  keep_src="KEEP_BIN=$KEEP_BIN"
  log "using KEEP_BIN=$built (no build)"
else
  log "building keep (release; 3-7 min from scratch)"
  timeout 3600 cargo build --release --quiet --manifest-path "$repo/Cargo.toml" -p keep
  built="${CARGO_TARGET_DIR:-$repo/target}/release/keep"
  keep_src="built from the tree at $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo '?')"
  if ! git -C "$repo" diff --quiet HEAD -- . ':!bench' 2>/dev/null; then keep_src+=" + uncommitted changes"; fi
fi
[ -x "$built" ] || die "$built was not built"
# A private copy: another build replacing target/release/keep mid-run changes nothing here.
cp "$built" "$tmp/keep"
keep=$tmp/keep

# ---- 3. PKI, keep server, secret, nginx -------------------------------------------------------
for p in "$KEEP_PORT" "$NGINX_PORT"; do
  [ -z "$(ss -Htln "sport = :$p")" ] || die "port $p is in use; set KEEP_PORT / NGINX_PORT"
done

log "PKI (P-256) with keep certificate create"
mkdir -p "$tmp/pki"
(
  cd "$tmp/pki"
  k() { "$keep" certificate create "$@" --no-password --insecure >>pki.log 2>&1 || { cat pki.log >&2; exit 1; }; }
  k "Bench Root CA" ca.crt ca.key --profile root-ca
  k localhost server.crt server.key --profile leaf --ca ca.crt --ca-key ca.key \
    --san localhost --san 127.0.0.1 --eku server
  k operator client.crt client.key --profile leaf --ca ca.crt --ca-key ca.key --eku client
)
pki=$tmp/pki
curl_m() { curl -sS --max-time 5 --cacert "$pki/ca.crt" --cert "$pki/client.crt" --key "$pki/client.key" "$@"; }

cat >"$tmp/keep-server.yaml" <<EOF
listener:
  address: 127.0.0.1:$KEEP_PORT
  tls:
    cert_file: pki/server.crt
    key_file: pki/server.key
    client_ca_file: pki/ca.crt
    min_version: "1.3"
  # The load comes from one address and one certificate: the per-source and per-certificate
  # budgets (docs/security.md) would otherwise refuse connections beyond 32 handshaking and
  # 128 connected at CONC=64 and above.
  limits:
    per_source_handshaking: $((CONC + 16))
    per_identity_connections: $((CONC * 2 + 16))
    max_handshaking: $((CONC + 16 > 256 ? CONC + 16 : 256))
storage:
  sqlite: { path: keep.db }
seal:
  key_file: unseal.key
admins:
  - common_name: operator
EOF
if [ "$AUDIT" = 1 ]; then
  printf 'audit:\n  file: audit.log\n' >>"$tmp/keep-server.yaml"
fi
log "keep server init + start on 127.0.0.1:$KEEP_PORT"
"$keep" server init --config "$tmp/keep-server.yaml" 2>>"$tmp/keep.log"
"$keep" server --config "$tmp/keep-server.yaml" 2>>"$tmp/keep.log" &
keep_pid=$!

# wait_ready NAME PID URL LOG: up to 30 s for a 200; on failure show the end of LOG.
wait_ready() {
  local name=$1 pid=$2 url=$3 logf=$4 i
  for ((i = 0; i < 300; i++)); do
    if ! alive "$pid"; then
      tail -20 "$logf" >&2
      die "$name exited at start"
    fi
    [ "$(curl_m -o /dev/null -w '%{http_code}' "$url" 2>/dev/null)" = 200 ] && return 0
    sleep 0.1
  done
  tail -20 "$logf" >&2
  die "$name did not answer 200 at $url within 30 s"
}
wait_ready keep "$keep_pid" "https://127.0.0.1:$KEEP_PORT/v1/sys/health" "$tmp/keep.log"

code=$(curl_m -o "$tmp/write.json" -w '%{http_code}' -X POST -H 'Content-Type: application/json' \
  -d "{\"data\":{\"apiKey\":\"$SECRET_VALUE\"}}" "https://127.0.0.1:$KEEP_PORT$PATH_READ")
[ "$code" = 200 ] || die "writing the secret: HTTP $code: $(cat "$tmp/write.json")"
code=$(curl_m -o "$tmp/read.json" -w '%{http_code}' "https://127.0.0.1:$KEEP_PORT$PATH_READ")
body=$(cat "$tmp/read.json")
if [ "$code" != 200 ] || [[ $body != *"\"$SECRET_VALUE\""* ]]; then
  die "reading the secret: HTTP $code: $body"
fi
[[ $body != *'$'* ]] || die "keep's body contains '\$', which nginx would expand: $body"

log "nginx (1 worker) on 127.0.0.1:$NGINX_PORT, same cert/key/CA, keep's body as static response"
mkdir -p "$tmp/nginx/logs" "$tmp/nginx/tmp"
esc=${body//\\/\\\\}
esc=${esc//\'/\\\'}
conf=$(<"$here/nginx.conf.tmpl")
conf=${conf//@DIR@/$tmp}
conf=${conf//@PORT@/$NGINX_PORT}
conf=${conf//@CERT@/$pki/server.crt}
conf=${conf//@KEY@/$pki/server.key}
conf=${conf//@CA@/$pki/ca.crt}
conf=${conf//@BODY@/$esc}
printf '%s\n' "$conf" >"$tmp/nginx/nginx.conf"
"$NGINX" -p "$tmp/nginx/" -c "$tmp/nginx/nginx.conf" -e "$tmp/nginx/logs/error.log" &
nginx_pid=$!
wait_ready nginx "$nginx_pid" "https://127.0.0.1:$NGINX_PORT$PATH_READ" "$tmp/nginx/logs/error.log"
nginx_worker=$(pgrep -P "$nginx_pid" | head -1)
[ -n "$nginx_worker" ] || die "no nginx worker process"
[ "$(curl_m "https://127.0.0.1:$NGINX_PORT$PATH_READ")" = "$body" ] || die "nginx's body differs from keep's"

# ---- 4. runs --------------------------------------------------------------------------------
rss_kb() { ps -o rss= -p "$1" | tr -d ' '; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; } # utime + stime of the process
hz=$(getconf CLK_TCK)

# Quiet machine: no cargo/rustc for QUIET_SECS (bounded by QUIET_MAX).
quiet_since=$SECONDS
waited_from=$SECONDS
while ((SECONDS - quiet_since < QUIET_SECS)); do
  if pgrep -x 'cargo|rustc' >/dev/null; then quiet_since=$SECONDS; fi
  if ((SECONDS - waited_from > QUIET_MAX)); then
    log "WARNING: cargo/rustc still running after ${QUIET_MAX}s; measuring anyway (noisy)"
    break
  fi
  sleep 2
done

keep_rss_idle=$(rss_kb "$keep_pid")
nginx_rss_idle=$(rss_kb "$nginx_worker")

keep_threads_max=0
runs=$tmp/runs.tsv # mode target round rps p50 p99 errors requests srv_cpu_s busy
: >"$runs"
# run_one MODE TARGET ROUND SECONDS [record]
run_one() {
  local mode=$1 target=$2 round=$3 secs=$4 port pid t0 t1 out extra=()
  if [ "$target" = keep ]; then port=$KEEP_PORT pid=$keep_pid; else port=$NGINX_PORT pid=$nginx_worker; fi
  if [ "$mode" = new ]; then extra=(-new); fi
  alive "$pid" || die "$target is no longer running"
  # Notes whether a cargo/rustc process ran during the run (polled twice a second): such runs
  # are marked "busy" in the table, their numbers are less trustworthy.
  : >"$tmp/busy"
  rm -f "$tmp/run-done"
  (for ((i = 0; i < 2 * (secs + 90); i++)); do
    [ -e "$tmp/run-done" ] && break
    if pgrep -x 'cargo|rustc' >/dev/null; then echo busy >"$tmp/busy"; fi
    sleep 0.5
  done) &
  sampler_pid=$!
  local perf_pid=""
  if [ -n "${PERF:-}" ] && [ "$target" = keep ] && [ "$mode" = keepalive ] && [ "$round" = 1 ] && [ ! -e "$tmp/perf.data" ]; then
    perf record -q -e cpu-clock -p "$pid" -o "$tmp/perf.data" -- sleep "$secs" 2>/dev/null &
    perf_pid=$!
  fi
  t0=$(cpu_ticks "$pid")
  out=$(timeout $((secs + 60)) "$tmp/gload" -url "https://127.0.0.1:$port$PATH_READ" \
    -ca "$pki/ca.crt" -cert "$pki/client.crt" -key "$pki/client.key" \
    -c "$CONC" -d "${secs}s" -timeout 10s -expect "\"$SECRET_VALUE\"" "${extra[@]}" 2>"$tmp/gload.err") ||
    die "gload failed: $(cat "$tmp/gload.err")"
  t1=$(cpu_ticks "$pid")
  if [ -n "$perf_pid" ]; then
    wait "$perf_pid" || true
    perf report -i "$tmp/perf.data" --no-children --stdio --percent-limit 0.7 2>/dev/null |
      grep -v '^$' | head -80 >"$PERF" || true
  fi
  if [ "$target" = keep ]; then
    local th
    th=$(awk '/^Threads:/ {print $2}' "/proc/$pid/status")
    if ((th > keep_threads_max)); then keep_threads_max=$th; fi
  fi
  touch "$tmp/run-done"
  wait "$sampler_pid" || true
  sampler_pid=""
  if [ -s "$tmp/gload.err" ]; then sed "s/^/    [$target $mode] /" "$tmp/gload.err" >&2; fi
  [ "${5:-}" = record ] || return 0
  # out: requests=N errors=E secs=S rps=R p50_ms=X p99_ms=Y max_ms=Z
  awk -v m="$mode" -v t="$target" -v r="$round" -v cpu="$((t1 - t0))" -v hz="$hz" -v busy="$(if [ -s "$tmp/busy" ]; then echo busy; else echo -; fi)" '{
      for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
      printf "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%.2f\t%s\n", m, t, r, v["rps"], v["p50_ms"], v["p99_ms"], v["errors"], v["requests"], cpu / hz, busy
    }' <<<"$out" >>"$runs"
  log "$(printf '%-9s %-5s round %d: %s' "$mode" "$target" "$round" "$out")"
}

for mode in keepalive new; do
  log "warm-up ($mode, 2 s each)"
  run_one "$mode" keep 0 2
  run_one "$mode" nginx 0 2
  for ((r = 1; r <= ROUNDS; r++)); do
    if ((r % 2)); then order="keep nginx"; else order="nginx keep"; fi
    for t in $order; do
      sleep 1
      run_one "$mode" "$t" "$r" "$DURATION" record
    done
  done
done
sleep 1
keep_rss_after=$(rss_kb "$keep_pid")
nginx_rss_after=$(rss_kb "$nginx_worker")
audit_info="no audit log"
if [ "$AUDIT" = 1 ]; then
  audit_info="audit log on ($(du -m "$tmp/audit.log" | cut -f1) MB, $(wc -l <"$tmp/audit.log") lines after the runs)"
fi

# ---- 5. summary -----------------------------------------------------------------------------
summary() {
  echo "keep server vs nginx over mTLS (TLS 1.3, P-256 certs made by keep) - $(date '+%Y-%m-%d %H:%M:%S %Z')"
  echo "host: $(nproc) vCPU, $(uname -r); $("$NGINX" -v 2>&1 | sed 's/^nginx version: //'); $(go version | awk '{print $3}') gload"
  echo "keep: $keep_src"
  echo "load: GET https://127.0.0.1:PORT$PATH_READ, ${DURATION}s per run, c=$CONC, $ROUNDS rounds, order alternating per round;"
  echo "      response body ${#body} bytes from both (nginx returns keep's body)"
  echo "keep: reads as admin \"operator\" (no token); $audit_info; up to $keep_threads_max threads at the end of a run"
  echo
  echo "Runs (srv CPU = server process user+sys seconds during the run; req/CPU-s = requests per server CPU"
  echo "second; cargo = busy when a cargo/rustc process ran at some point during the run)"
  awk -F'\t' 'BEGIN { printf "%-9s %-5s %5s %9s %8s %8s %6s %8s %9s  %s\n", "mode", "srv", "round", "req/s", "p50 ms", "p99 ms", "errors", "srv CPU", "req/CPU-s", "cargo" }
    { printf "%-9s %-5s %5d %9.0f %8.3f %8.3f %6d %8.2f %9.0f  %s\n", $1, $2, $3, $4, $5, $6, $7, $9, ($9 > 0 ? $8 / $9 : 0), $10 }' "$runs"
  echo
  awk -F'\t' -v kri="$keep_rss_idle" -v kra="$keep_rss_after" -v nri="$nginx_rss_idle" -v nra="$nginx_rss_after" '
    function median(list,   a, n, i, j, x) {
      n = split(list, a, " ")
      for (i = 2; i <= n; i++) { x = a[i] + 0; for (j = i - 1; j >= 1 && a[j] + 0 > x; j--) a[j + 1] = a[j]; a[j + 1] = x }
      return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    { k = $1 SUBSEP $2
      rps[k] = rps[k] " " $4; p50[k] = p50[k] " " $5; p99[k] = p99[k] " " $6
      err[$1] += $7; eff[k] = eff[k] " " ($9 > 0 ? $8 / $9 : 0); byround[$1 SUBSEP $2 SUBSEP $3] = $4; rounds[$3] = 1 }
    END {
      printf "Medians                         keep      nginx   keep/nginx   goal   verdict\n"
      split("keepalive new", modes, " "); goal["keepalive"] = 0.6; goal["new"] = 0.9
      label["keepalive"] = "(a) keep-alive"; label["new"] = "(b) new conn/request"
      for (mi = 1; mi <= 2; mi++) {
        m = modes[mi]; kr = median(rps[m SUBSEP "keep"]); nr = median(rps[m SUBSEP "nginx"])
        ratio = nr > 0 ? kr / nr : 0
        lo = 1e9; hi = 0
        for (r in rounds) { n = byround[m SUBSEP "nginx" SUBSEP r]; if (n > 0) { x = byround[m SUBSEP "keep" SUBSEP r] / n; if (x < lo) lo = x; if (x > hi) hi = x } }
        printf "%-22s req/s   %9.0f  %9.0f   %6.2fx     >=%.1fx  %s  (per-round %.2f-%.2f)\n", label[m], kr, nr, ratio, goal[m], (ratio >= goal[m] ? "meets" : "BELOW"), lo, hi
        printf "%-22s p50 ms  %9.3f  %9.3f\n", "", median(p50[m SUBSEP "keep"]), median(p50[m SUBSEP "nginx"])
        printf "%-22s p99 ms  %9.3f  %9.3f\n", "", median(p99[m SUBSEP "keep"]), median(p99[m SUBSEP "nginx"])
        ke = median(eff[m SUBSEP "keep"]); ne = median(eff[m SUBSEP "nginx"])
        printf "%-22s req/CPU-s %7.0f  %9.0f   %6.2fx   (server CPU efficiency)\n", "", ke, ne, (ne > 0 ? ke / ne : 0)
        printf "%-22s errors  %9d (all runs, both servers)\n", "", err[m]
      }
      printf "\nRSS (MiB)                     idle   after all runs\n"
      printf "keep server                 %6.1f   %6.1f   goal <= 25 MiB after load: %s\n", kri / 1024, kra / 1024, (kra <= 25 * 1024 ? "meets" : "ABOVE")
      printf "nginx worker                %6.1f   %6.1f\n", nri / 1024, nra / 1024
    }' "$runs"
}

summary | tee "$OUT"
log "saved $OUT"
total_errors=$(awk -F'\t' '{ s += $7 } END { print s + 0 }' "$runs")
if [ "$total_errors" -ne 0 ]; then
  log "WARNING: $total_errors requests failed (not 200 or wrong body); see the lines above"
  exit 3
fi
