#!/usr/bin/env bash
# bench/server/conn_memory.sh: the resident memory of `keep server` holding N idle keep-alive
# mTLS connections. A benchmark, not a test.
#
#   KEEP_BIN=target/release/keep N=1000 bench/server/conn_memory.sh
#
# Makes a `keep init` lab in a temp dir (one agent), raises the listener's connection limits to
# fit N connections of one certificate, starts the server and runs idle_conns.py against it.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
N=${N:-1000}
PORT=${PORT:-18290}
keep=${KEEP_BIN:?set KEEP_BIN to a keep binary (a release build)}
tmp=$(mktemp -d /tmp/keep-connmem.XXXXXX)
pid=""
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT
"$keep" init "$tmp/lab" --listen "127.0.0.1:$PORT" --agent a1 >/dev/null
limit=$((N + 64))
python3 - "$tmp/lab/keep-server.yaml" "$limit" <<'PY'
import sys
path, limit = sys.argv[1], sys.argv[2]
text = open(path).read()
block = (f"  limits:\n    max_connections: {limit}\n    per_identity_connections: {limit}\n"
         f"    idle_timeout: 10m\n")
text = text.replace("listener:\n", "listener:\n" + block, 1)
open(path, "w").write(text)
PY
ulimit -n $((N * 2 + 256))
"$keep" server --config "$tmp/lab/keep-server.yaml" >"$tmp/server.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
  sleep 0.2
done
agent="$tmp/lab/agents/a1"
python3 "$here/idle_conns.py" --port "$PORT" --cert "$agent/agent.crt" --key "$agent/agent.key" \
  --ca "$agent/root_ca.crt" --pid "$pid" --n "$N"
sleep 2
echo "server connections still established 5 s after the client closed them: $(ss -Htn state established "( sport = :$PORT )" | wc -l)"
echo "server RSS now: $(awk '/VmRSS/ {printf "%.1f MiB", $2/1024}' "/proc/$pid/status"), threads: $(ls "/proc/$pid/task" | wc -l)"
