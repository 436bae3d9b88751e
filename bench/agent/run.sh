#!/usr/bin/env bash
# Agent-side benchmarks (the performance goals in docs/):
#   1. `keep openclaw-resolver` spawn → answer for 3 ids against a local keep server, beside the
#      same provider written with hvac (Python) — the reference, run interleaved in this script;
#   2. `keep agent` sidecar RSS when idle.
# Usage: bench/agent/run.sh [ROUNDS]   (needs cargo, openssl-free; hvac from KEEP_TEST_PYTHON or
# /var/tmp/keep-venv, else the reference is skipped). Writes results-<date>.txt here.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
rounds="${1:-40}"
python="${KEEP_TEST_PYTHON:-/var/tmp/keep-venv/bin/python}"

if [ -n "${KEEP_BIN:-}" ]; then
  keep="$KEEP_BIN"   # another build to compare
else
  cargo build --release --quiet --manifest-path "$repo/Cargo.toml" -p keep
  keep="${CARGO_TARGET_DIR:-$repo/target}/release/keep"
fi
# The agent-side build for sidecar images (`--profile agent --no-default-features`: no server,
# init, demo or doctor; size-optimized): its own target dir, so it never replaces the full one.
if [ -n "${KEEP_AGENT_BIN:-}" ]; then
  agent_keep="$KEEP_AGENT_BIN"
else
  agent_target="${CARGO_TARGET_DIR:-$repo/target}/agent-only"
  CARGO_TARGET_DIR="$agent_target" cargo build --profile agent --quiet \
    --manifest-path "$repo/Cargo.toml" -p keep --no-default-features
  agent_keep="$agent_target/agent/keep"
fi

work="$(mktemp -d /dev/shm/keep-bench.XXXXXX 2>/dev/null || mktemp -d)"
server_pid=""; agent_pid=""
cleanup() {
  [ -n "$agent_pid" ] && kill "$agent_pid" 2>/dev/null || true
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
cd "$work"
umask 077

# PKI: unencrypted keys except agent-enc.key (the default `keep certificate` makes).
k() { "$keep" "$@" >/dev/null 2>&1 || { echo "failed: keep $*" >&2; "$keep" "$@"; exit 1; }; }
k certificate create "Bench Root" "Bench Root" root.crt root.key --profile root-ca --no-password --insecure
leaf() { k certificate create "$1" "$1" "$2.crt" "$2.key" --profile leaf --ca root.crt --ca-key root.key "${@:3}"; }
leaf localhost server --san localhost --san 127.0.0.1 --eku server --no-password --insecure
leaf operator admin --eku client --no-password --insecure
leaf agent agent --eku client --no-password --insecure
head -c 24 /dev/urandom | base64 > agent.pass
k certificate create agent agent agent-enc.crt agent-enc.key --profile leaf --ca root.crt \
  --ca-key root.key --eku client --password-file agent.pass

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
url="https://127.0.0.1:$port"
cat > keep-server.yaml <<YAML
listener:
  address: 127.0.0.1:$port
  tls: { cert_file: server.crt, key_file: server.key, client_ca_file: root.crt }
storage:
  sqlite: { path: keep.db }
seal:
  key_file: unseal.key
audit:
  file: audit.log
admins:
  - common_name: operator
YAML
k server init --config keep-server.yaml
"$keep" server --config keep-server.yaml 2>server.log & server_pid=$!
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done

admin=(--addr "$url" --ca-cert root.crt --client-cert admin.crt --client-key admin.key)
printf 'path "secret/data/openclaw/*" { capabilities = ["read"] }\n' > agents.hcl
k policy write agents agents.hcl "${admin[@]}"
k auth cert write agents --certificate root.crt --allowed-common-names agent --token-policies agents "${admin[@]}"
k kv put secret/openclaw/llm api_key=sk-bench-llm model=gpt-5 "${admin[@]}"
k kv put secret/openclaw/search api_key=sk-bench-search "${admin[@]}"
k kv put secret/openclaw/mail token=bench-mail "${admin[@]}"

mkdir -m 700 sinks
agent_yaml() { # NAME CERT KEY [EXTRA]
  cat > "$1" <<YAML
vault_connection:
  url: $url
  mtls: { cert_file: $2, key_file: $3, ca_cert_file: root.crt }
  role: agents
$4
secrets:
  - path: openclaw/llm
    env: { OPENAI_API_KEY: api_key }
    file: { path: sinks/llm.json, format: json, mode: "0400" }
  - path: openclaw/search
    file: { path: sinks/search.env, format: env, mode: "0400" }
YAML
}
agent_yaml agent.yaml agent.crt agent.key ""
agent_yaml agent-enc.yaml agent-enc.crt agent-enc.key "  " 
sed -i "s|key_file: agent-enc.key|key_file: agent-enc.key, key_password_file: agent.pass|" agent-enc.yaml

out="$here/results-$(date -u +%Y-%m-%d-%H%M).txt"
{
echo "# bench/agent/run.sh $(date -u +%FT%TZ), $(nproc) CPUs, rounds=$rounds"
echo "# keep $("$keep" --version)"
echo
echo "## openclaw-resolver: spawn → answer, 3 ids (login, 3 reads over one connection, revoke)"
req='{"protocolVersion":1,"provider":"keep","ids":["openclaw/llm#api_key","openclaw/search","openclaw/mail#token"]}'
cmds=("keep-resolver(plain-key)=$keep openclaw-resolver --config $work/agent.yaml"
      "keep-resolver(encrypted-key)=$keep openclaw-resolver --config $work/agent-enc.yaml")
cmds+=("keep-resolver(agent build)=$agent_keep openclaw-resolver --config $work/agent.yaml")
if "$python" -c 'import hvac' 2>/dev/null; then
  cmds+=("hvac-resolver(python)=$python $here/hvac_resolver.py $url $work/root.crt $work/agent.crt $work/agent.key agents")
else
  echo "(hvac reference skipped: no python with hvac at $python)"
fi
python3 "$here/spawn_timer.py" "$rounds" "$req" "${cmds[@]}"
echo
for variant in full agent-only; do
bin="$keep"; [ "$variant" = agent-only ] && bin="$agent_keep"
rm -f sinks/*
echo "## keep agent sidecar, idle (2 secrets, file sinks, default poll interval): $variant binary"
"$bin" agent --config agent.yaml 2>agent.log & agent_pid=$!
for _ in $(seq 100); do [ -s sinks/search.env ] && break; sleep 0.1; done
sleep 5
grep -E 'VmRSS|RssAnon|RssFile|VmHWM|Threads' "/proc/$agent_pid/status" | tr -s ' \t' ' '
# RSS counts every page of the binary faulted in since start (the kernel maps 64 KiB around
# each fault), shared with other keep processes and reclaimable. The working set: pages
# referenced during one idle poll after clearing the referenced bits.
echo 1 > "/proc/$agent_pid/clear_refs"
sleep "${IDLE_WINDOW:-35}"
awk '/^Referenced:/{r+=$2} /^Anonymous:/{a+=$2} END{printf "working set over the idle window: %d kB referenced (%d kB anonymous)\n", r, a}' "/proc/$agent_pid/smaps"
kill "$agent_pid"; wait "$agent_pid" 2>/dev/null || true
echo "binary size: $(stat -c %s "$bin") bytes"
echo
done
} | tee "$out"
echo "results: $out"
