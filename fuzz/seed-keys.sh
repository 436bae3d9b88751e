#!/usr/bin/env bash
# Writes private-key seeds for the `pem` target into DIR (a temporary directory, never the
# committed corpus: no private key block is ever committed, not even a throwaway one).
# Keys in every form the reader takes: PKCS#8, SEC1, PKCS#1, encrypted PKCS#8 (scrypt and
# PBKDF2), legacy OpenSSL encryption, a key after its certificate, CRLF and indented copies.
set -euo pipefail
dir=${1:?usage: seed-keys.sh DIR}
mkdir -p "$dir"
cd "$dir"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$tmp/ec.p8" 2>/dev/null
openssl genpkey -algorithm ED25519 -out "$tmp/ed.p8" 2>/dev/null
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$tmp/rsa.p8" 2>/dev/null
cp "$tmp/ec.p8" key-pkcs8-ec
cp "$tmp/ed.p8" key-pkcs8-ed25519
cp "$tmp/rsa.p8" key-pkcs8-rsa
openssl ec -in "$tmp/ec.p8" -out key-sec1 2>/dev/null
openssl rsa -in "$tmp/rsa.p8" -traditional -out key-pkcs1 2>/dev/null
# Cheap KDF parameters: the fuzz target never decrypts, but the seeds should parse.
openssl pkcs8 -topk8 -in "$tmp/ec.p8" -v2 aes-256-cbc -scrypt -scrypt_N 1024 -scrypt_r 8 -scrypt_p 1 \
  -passout pass:fuzz -out key-encrypted-scrypt 2>/dev/null
openssl pkcs8 -topk8 -in "$tmp/ec.p8" -v2 aes-128-cbc -v2prf hmacWithSHA256 -iter 1000 \
  -passout pass:fuzz -out key-encrypted-pbkdf2 2>/dev/null
openssl ec -in "$tmp/ec.p8" -aes128 -passout pass:fuzz -out key-legacy-encrypted 2>/dev/null
openssl req -x509 -new -key "$tmp/ec.p8" -subj /CN=fuzz -days 1 -out "$tmp/cert.pem" 2>/dev/null
cat "$tmp/cert.pem" "$tmp/ec.p8" > key-bundle
sed 's/$/\r/' "$tmp/ec.p8" > key-crlf
sed 's/^/    /' key-sec1 > key-indented
