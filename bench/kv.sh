#!/usr/bin/env bash
# KV read throughput over HTTP with keep-alive (wrk, 64 connections, 2 threads) on SQLite
# and PostgreSQL: cached GET, uncached GET, and the ceiling measured in the same run: a bare
# handler returning constant JSON on the same server stack (/healthz).
# Usage: bench/kv.sh [seconds per run, default 10]
source "$(dirname "$0")/lib.sh"
SECS="${1:-10}"
need_wrk
build_release

put() {
  curl -fsS -X PUT -H "Authorization: Bearer $BENCH_TOKEN" -H 'content-type: application/json' \
    -d "$2" "$BASE/api/v1/kv/$1" >/dev/null
}

run_backend() {
  local name="$1" url="$2"
  start_server "$url"
  put bench.cached '{"type":"object","value":{"timeoutMs":2500,"retries":3},"isCached":true}'
  put bench.plain '{"type":"object","value":{"timeoutMs":2500,"retries":3}}'
  echo "== $name ($SECS s per run, 64 connections)"
  wrk_run "ceiling: GET /healthz" /healthz 64 "$SECS"
  wrk_run "cached GET /api/v1/kv/{key}" /api/v1/kv/bench.cached 64 "$SECS"
  wrk_run "uncached GET /api/v1/kv/{key}" /api/v1/kv/bench.plain 64 "$SECS"
  stop_server
}

tmp="$(mktemp -d)"
run_backend sqlite "sqlite://$tmp/bench.db"
pg_url="$(pg_fresh opshub_bench_kv)"
run_backend postgres "$pg_url"
pg_drop opshub_bench_kv
rm -rf "$tmp"
