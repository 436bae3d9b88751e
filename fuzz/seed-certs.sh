#!/usr/bin/env bash
# Regenerates the certificate part of the committed `pem` corpus into DIR: a root, an
# intermediate, a leaf with SANs, a CRL, and the manglings the forgiving reader accepts (CRLF,
# indentation, literal \n escapes, YAML folding onto one line, UTF-16, raw DER, text around the
# blocks). Certificates and CRLs only: the keys stay in a temporary directory.
set -euo pipefail
dir=${1:?usage: seed-certs.sh DIR}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout root.key \
  -subj /CN=fuzz-root -days 3650 -addext basicConstraints=critical,CA:true \
  -addext keyUsage=critical,keyCertSign,cRLSign -out root.pem 2>/dev/null
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout int.key \
  -subj /CN=fuzz-intermediate -out int.csr 2>/dev/null
printf 'basicConstraints=critical,CA:true,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\n' > int.ext
openssl x509 -req -in int.csr -CA root.pem -CAkey root.key -CAcreateserial -days 365 \
  -extfile int.ext -out int.pem 2>/dev/null
openssl req -new -newkey rsa:2048 -nodes -keyout leaf.key -subj "/CN=agent-a/OU=claw" \
  -out leaf.csr 2>/dev/null
printf 'subjectAltName=DNS:a.claw.internal,URI:spiffe://claw/agent-a,IP:127.0.0.1,email:a@claw.internal\nextendedKeyUsage=clientAuth,serverAuth\n' > leaf.ext
openssl x509 -req -in leaf.csr -CA int.pem -CAkey int.key -CAcreateserial -days 1 \
  -extfile leaf.ext -out leaf.pem 2>/dev/null
mkdir -p ca/newcerts && : > ca/index.txt && echo 01 > ca/crlnumber
cat > ca.cnf <<CNF
[ca]
default_ca = d
[d]
database = ca/index.txt
crlnumber = ca/crlnumber
default_md = sha256
default_crl_days = 1
CNF
openssl ca -config ca.cnf -gencrl -keyfile int.key -cert int.pem -out crl.pem 2>/dev/null

cp root.pem "$dir/cert-root.pem"
cat leaf.pem int.pem > "$dir/cert-chain.pem"
cp crl.pem "$dir/crl.pem"
openssl x509 -in leaf.pem -outform DER -out "$dir/cert-leaf.der"
openssl x509 -in root.pem -trustout -out "$dir/cert-trusted.pem" 2>/dev/null
sed 's/BEGIN CERTIFICATE/BEGIN X509 CERTIFICATE/;s/END CERTIFICATE/END X509 CERTIFICATE/' int.pem > "$dir/cert-x509-label.pem"
sed 's/$/\r/' leaf.pem > "$dir/cert-crlf.pem"
sed 's/^/      /' int.pem > "$dir/cert-indented.pem"
awk '{printf "%s\\n", $0}' root.pem > "$dir/cert-escaped.txt"
tr '\n' ' ' < root.pem > "$dir/cert-folded.txt"
{ printf 'Subject: fuzz-root\nissuer=fuzz\n\n'; cat root.pem; printf '\ntrailing words\n'; } > "$dir/cert-with-text.pem"
{ printf '\xff\xfe'; iconv -f UTF-8 -t UTF-16LE < int.pem; } > "$dir/cert-utf16le.pem"
printf -- '-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n' > "$dir/ec-parameters.pem"
printf -- '-----BEGIN CERTIFICATE-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00\n\nMIIB\n-----END CERTIFICATE-----\n' > "$dir/headers.pem"
head -c 300 leaf.pem > "$dir/cert-truncated.pem"
