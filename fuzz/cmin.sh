#!/usr/bin/env bash
# Folds the inputs a long run found (fuzz/run.sh -k DIR) into the committed corpus and
# minimizes it with `cargo fuzz cmin`:
#
#   fuzz/cmin.sh DIR [TARGET...]
#
# Any input holding a private key marker (in ASCII or UTF-16) is dropped before it reaches
# fuzz/corpus, and so is any input that still carries a line of a key seed's base64 (DIR/.keys):
# the pem target's key seeds are generated per run and must never be committed.
set -euo pipefail
cd "$(dirname "$0")"
found=${1:?usage: cmin.sh DIR [TARGET...]}
shift
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(pem agent_config server_config policy vault_fields http)
target_dir=${KEEP_FUZZ_TARGET_DIR:-/var/tmp/keep-fuzz-target}
export PATH="${KEEP_CARGO_BIN:-/var/tmp/keep-cargo-bin}/bin:$PATH"
toolchain=(+nightly)
rustup run nightly rustc --version >/dev/null 2>&1 || { toolchain=(); export RUSTC_BOOTSTRAP=1; }

for t in "${targets[@]}"; do
  [ -d "$found/$t" ] && cp -n "$found/$t"/* "corpus/$t/" 2>/dev/null || true
  python3 - "corpus/$t" "$found/.keys" <<'PY'
import os, re, sys
marker = re.compile(rb"PRIVATE\s*KEY", re.I)
d, keys = sys.argv[1], sys.argv[2]
key_lines = set()
if os.path.isdir(keys):
    for k in os.listdir(keys):
        for line in open(os.path.join(keys, k), "rb").read().split(b"\n"):
            line = line.strip()
            if len(line) >= 24 and not line.startswith(b"-----"):
                key_lines.add(line[:24])
for name in os.listdir(d):
    path = os.path.join(d, name)
    data = open(path, "rb").read()
    views = [data, data.replace(b"\0", b"")]
    if any(marker.search(v) for v in views) or any(k in v for k in key_lines for v in views):
        os.remove(path)
        print(f"dropped {path}: holds a private key marker")
PY
  cargo "${toolchain[@]}" fuzz cmin -s none --target-dir "$target_dir" "$t" "corpus/$t" -- -rss_limit_mb=2048
done
du -sh corpus
