#!/usr/bin/env bash
# Sustained webhook deliveries per second, durable, from publish to a local receiver that
# answers 200, with p50/p99 publish→receipt latency, on SQLite and PostgreSQL; beside it,
# in the same run, the floor: a bare HTTP client posting the same bodies to the same receiver.
# Usage: bench/webhooks.sh [events, default 20000] [concurrent publishers, default 32]
# BACKENDS="postgres" (or "sqlite") runs one backend only. Also prints the CPU time opshub
# and PostgreSQL spent per delivery (from /proc; ticks of 10 ms).
source "$(dirname "$0")/lib.sh"
EVENTS="${1:-20000}"
CONC="${2:-32}"
build_release
[ -n "${SKIP_BUILD:-}" ] || (cd "$ROOT" && cargo build --release --locked -q --example webhook_bench)
GEN="$ROOT/target/release/examples/webhook_bench"
export OPSHUB_WEBHOOK_ALLOW_PRIVATE=true

BACKENDS="${BACKENDS:-sqlite postgres}"

if [[ " $BACKENDS " == *" sqlite "* ]]; then
  tmp="$(mktemp -d)"
  echo "== sqlite ($EVENTS events, $CONC publishers)"
  start_server "sqlite://$tmp/bench.db"
  "$GEN" "$BASE" "$BENCH_TOKEN" "$EVENTS" "$CONC" "$SERVER_PID"
  stop_server
  rm -rf "$tmp"
fi

if [[ " $BACKENDS " == *" postgres "* ]]; then
  echo "== postgres ($EVENTS events, $CONC publishers)"
  pg_url="$(pg_fresh opshub_bench_wh 2>/dev/null)"
  start_server "$pg_url"
  "$GEN" "$BASE" "$BENCH_TOKEN" "$EVENTS" "$CONC" "$SERVER_PID"
  stop_server
  pg_drop opshub_bench_wh
fi
