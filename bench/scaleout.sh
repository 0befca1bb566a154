#!/usr/bin/env bash
# Issue 9, scale-out under faults: three `opshub serve` on one PostgreSQL, publishing,
# ingest and KV writes at once for SECONDS while instance 0 is SIGKILLed and restarted
# twice; three concurrent `migrate up --dir` first. Prints counts (lost, duplicates,
# double claims, KV mismatches) and exits 1 if anything acknowledged was lost.
# Usage: bench/scaleout.sh [seconds, default 180]
source "$(dirname "$0")/lib.sh"
SECS="${1:-180}"
build_release
[ -n "${SKIP_BUILD:-}" ] || (cd "$ROOT" && cargo build --release --locked -q --example scaleout)
"$ROOT/target/release/examples/scaleout" "$BIN" "$PG_ADMIN_URL" "$SECS"
