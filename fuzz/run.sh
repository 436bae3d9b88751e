#!/usr/bin/env bash
# Builds the fuzz targets and runs each for a while, one process at a time.
#
#   fuzz/run.sh [-t SECONDS] [-k DIR] [TARGET...]
#
# -t  seconds per target (default 30); -k keep the new inputs in DIR/TARGET (for cmin.sh)
# instead of a temporary directory. No TARGET: all of them. The committed corpus
# (fuzz/corpus/TARGET) is read, never written. Exits non-zero on the first crash or failed
# invariant; the input is then in fuzz/artifacts/TARGET/.
#
# Needs a nightly toolchain (or the stable one with RUSTC_BOOTSTRAP=1, which this falls back
# to) and cargo-fuzz, which it installs from crates.io into $KEEP_CARGO_BIN when missing.
set -euo pipefail
cd "$(dirname "$0")"

seconds=30
keep=""
while getopts "t:k:" opt; do
  case $opt in
    t) seconds=$OPTARG ;;
    k) keep=$OPTARG ;;
    *) exit 2 ;;
  esac
done
shift $((OPTIND - 1))
all=(pem agent_config server_config policy vault_fields http)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${all[@]}")

# A target dir outside the clone, shared by every run, so the next build is incremental.
target_dir=${KEEP_FUZZ_TARGET_DIR:-/var/tmp/keep-fuzz-target}
bin_root=${KEEP_CARGO_BIN:-/var/tmp/keep-cargo-bin}
cargo_fuzz_version=0.13.2
export PATH="$bin_root/bin:$PATH"

if rustup run nightly rustc --version >/dev/null 2>&1; then
  toolchain=(+nightly)
else
  # libFuzzer's instrumentation flags need a nightly compiler; the stable one accepts them
  # with RUSTC_BOOTSTRAP.
  echo "no nightly toolchain: using the default one with RUSTC_BOOTSTRAP=1"
  toolchain=()
  export RUSTC_BOOTSTRAP=1
fi
if [ "$(cargo fuzz --version 2>/dev/null)" != "cargo-fuzz $cargo_fuzz_version" ]; then
  cargo install cargo-fuzz --version "$cargo_fuzz_version" --locked --root "$bin_root"
fi

# No AddressSanitizer: keep forbids unsafe code, and ASan halves the executions per second on
# a shared 2-core machine. Debug assertions and overflow checks are on (cargo fuzz's default).
fuzz=(cargo "${toolchain[@]}" fuzz)
common=(-s none --target-dir "$target_dir")
"${fuzz[@]}" build "${common[@]}"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for t in "${targets[@]}"; do
  if [ -n "$keep" ]; then work="$keep/$t"; else work="$tmp/$t"; fi
  mkdir -p "$work" "corpus/$t"
  extra=()
  if [ "$t" = pem ]; then
    # Key seeds are made now, in a temporary directory: none is ever committed.
    # With -k they stay in DIR/.keys so that cmin.sh can drop inputs derived from them.
    keys="$tmp/keys"
    [ -z "$keep" ] || keys="$keep/.keys"
    ./seed-keys.sh "$keys"
    extra=("$keys")
  fi
  echo "=== fuzz $t for ${seconds}s"
  "${fuzz[@]}" run "${common[@]}" "$t" "$work" "corpus/$t" "${extra[@]}" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    2>&1 | sed -u '/^#[0-9].*\(NEW\|REDUCE\|pulse\)/d' || {
      echo "fuzz target $t failed: see fuzz/artifacts/$t/" >&2
      exit 1
    }
done
