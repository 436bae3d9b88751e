#!/usr/bin/env bash
# The lab PKI from the OpenClaw mTLS thread, made with keep: an offline root, an intermediate
# for automation, the vault's server cert and an agent's client cert, every key encrypted.
#
# Usage: scripts/lab-pki.sh [DIR]     (default DIR: ./claw-lab; refuses to overwrite it)
set -euo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
dir="${1:-claw-lab}"
if [ -e "$dir" ]; then
  echo "error: $dir already exists; pick another directory (nothing was changed)" >&2
  exit 64
fi

echo "==> building keep (release)"
cargo build --release --quiet --manifest-path "$here/Cargo.toml" -p keep
keep="${CARGO_TARGET_DIR:-$here/target}/release/keep"

mkdir -p "$dir" && chmod 700 "$dir" && cd "$dir"
umask 077
# Lab passwords, generated and kept next to the keys. In production the root's password and
# key go offline (a USB stick in a drawer), and the agent's key lives on a memory-backed mount.
head -c 24 /dev/urandom | base64 > root.pass
head -c 24 /dev/urandom | base64 > intermediate.pass
head -c 24 /dev/urandom | base64 > leaf.pass

echo "==> root CA (10 years, kept offline)"
"$keep" certificate create root.claw.internal "Claw Root CA" root_ca.crt root_ca.key \
  --profile root-ca --password-file root.pass

echo "==> intermediate CA for automation (signs the short-lived leaves)"
"$keep" certificate create intermediate.claw.internal "Claw Intermediate CA" \
  intermediate_ca.crt intermediate_ca.key --profile intermediate-ca \
  --ca root_ca.crt --ca-key root_ca.key --ca-password-file root.pass \
  --password-file intermediate.pass

echo "==> vault server certificate (SAN vault.claw.internal, serverAuth)"
"$keep" certificate create vault.claw.internal "Vault Server" vault.crt vault.key \
  --profile leaf --ca intermediate_ca.crt --ca-key intermediate_ca.key \
  --ca-password-file intermediate.pass --san vault.claw.internal --san localhost \
  --san 127.0.0.1 --eku server --bundle --password-file leaf.pass

echo "==> agent client certificate (SAN agent.claw.internal, clientAuth)"
"$keep" certificate create agent.claw.internal "OpenClaw Agent" agent.crt agent.key \
  --profile leaf --ca intermediate_ca.crt --ca-key intermediate_ca.key \
  --ca-password-file intermediate.pass --eku client --bundle --password-file leaf.pass

echo "==> checks"
"$keep" certificate verify vault.crt --roots root_ca.crt --host vault.claw.internal --purpose server
"$keep" certificate verify agent.crt --roots root_ca.crt --purpose client
"$keep" certificate lint root_ca.crt intermediate_ca.crt vault.crt
"$keep" certificate lint --purpose client agent.crt
"$keep" certificate needs-renewal agent.crt -v || true

echo
echo "Lab PKI ready in $(pwd):"
ls -l
echo
echo "Next: move root_ca.key and root.pass offline; the vault gets vault.crt/vault.key and"
echo "root_ca.crt; the agent gets agent.crt/agent.key and root_ca.crt on a memory-backed mount."
