#!/usr/bin/env bash
# Runs every fuzz target for a bounded time each (CI: 15 s; by hand: as long as you like).
# Needs the nightly toolchain (libFuzzer's sanitizer flags) and cargo-fuzz, installed from
# crates.io when missing. New inputs go to a temporary corpus; seeds live in fuzz/seeds/.
# A crash leaves its input in fuzz/artifacts/<target>/ and fails the run: turn it into a
# regression test beside the code it broke.
# Usage: fuzz/run.sh [seconds per target, default 15] [target …]
set -euo pipefail
cd "$(dirname "$0")"
SECS="${1:-15}"
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(split pattern kv_value signature capture)
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked --quiet
corpus="$(mktemp -d)"
trap 'rm -rf "$corpus"' EXIT
cargo +nightly fuzz build -O
for t in "${TARGETS[@]}"; do
  mkdir -p "$corpus/$t"
  log="$corpus/$t.log"
  if ! cargo +nightly fuzz run -O "$t" "$corpus/$t" "seeds/$t" -- \
      -max_total_time="$SECS" -print_final_stats=1 >"$log" 2>&1; then
    tail -40 "$log"
    echo "fuzz: $t failed; the input is in fuzz/artifacts/$t/" >&2
    exit 1
  fi
  runs="$(awk '/stat::number_of_executed_units/ {print $NF}' "$log")"
  echo "fuzz: $t: ${runs:-?} inputs in ${SECS}s, no crash"
done
