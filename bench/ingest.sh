#!/usr/bin/env bash
# Durable ingest throughput and p99 latency on SQLite and PostgreSQL, beside two floors
# measured in the same run and process (examples/bench_server.rs):
#   floor POST  = POST /floor: reads the body, answers 200, stores nothing, no opshub layers
#   floor GET   = GET /healthz through opshub's whole middleware stack, no database
#   ingest      = POST /ingest/bench: verified, linked into the chain, committed, then 200
# Usage: bench/ingest.sh [seconds=10] [connections=64]
# Needs wrk (apt-get install -y wrk) and, for PostgreSQL, OPSHUB_BENCH_POSTGRES_URL
# (default postgres://postgres@127.0.0.1:5432/test; a fresh database is created and dropped).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
conns=${2:-64}
pg_admin=${OPSHUB_BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}
[ -n "${SKIP_BUILD:-}" ] || cargo build --release --locked --example bench_server >&2
target=$(cargo metadata --format-version 1 --no-deps | sed -E 's/.*"target_directory":"([^"]*)".*/\1/')
bin="$target/release/examples/bench_server"
work=$(mktemp -d)
pg_db="opshub_bench_$$"
pid=""
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  psql -q "$pg_admin" -c "DROP DATABASE IF EXISTS $pg_db WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

# serve URL: starts the bench server on a free port and sets $base.
serve() {
  # Emptied here: the background redirect may truncate only after the first check below.
  : >"$work/out"
  OPSHUB_DATABASE_URL="$1" OPSHUB_LISTEN=127.0.0.1:0 \
    OPSHUB_MASTER_KEY="$(head -c 32 /dev/urandom | base64)" OPSHUB_DB_POOL_SIZE=16 \
    "$bin" >"$work/out" 2>"$work/err" &
  pid=$!
  # A fresh PostgreSQL database gets opshub's schema first, which takes a while on a busy machine.
  for _ in $(seq 1 1200); do
    grep -q "listening on" "$work/out" 2>/dev/null && break
    kill -0 "$pid" 2>/dev/null || { cat "$work/err" >&2; exit 1; }
    sleep 0.05
  done
  grep -q "listening on" "$work/out" || { echo "the bench server did not start" >&2; exit 1; }
  base="http://$(awk '/listening on/ {print $3}' "$work/out")"
}

stop() {
  kill "$pid" && wait "$pid" 2>/dev/null || true
  pid=""
}

# measure DB NAME URL [LUA]: one wrk run, one result line.
measure() {
  local args=(-t2 -c"$conns" -d"${secs}s" --latency)
  [ -n "${4:-}" ] && args+=(-s "$4")
  wrk "${args[@]}" "$3" >"$work/wrk"
  local rps p99 p50 bad
  rps=$(awk '/^Requests\/sec/ {printf "%d", $2}' "$work/wrk")
  p50=$(awk '$1 == "50%" {print $2}' "$work/wrk")
  p99=$(awk '$1 == "99%" {print $2}' "$work/wrk")
  bad=$(awk '/Non-2xx|Socket errors/ {printf "%s ", $0}' "$work/wrk")
  printf "%-10s %-12s %10s %10s %10s  %s\n" "$1" "$2" "$rps" "$p50" "$p99" "${bad:-}"
}

run() {
  measure "$1" "floor POST" "$base/floor" bench/post.lua
  measure "$1" "floor GET" "$base/healthz"
  measure "$1" "ingest" "$base/ingest/bench" bench/post.lua
}

echo "# $(nproc) cores, ${secs}s per run, $conns connections, wrk -t2, keep-alive"
printf "%-10s %-12s %10s %10s %10s\n" "database" "route" "req/s" "p50" "p99"
serve "sqlite://$work/bench.db"
run sqlite
stop
if psql -q "$pg_admin" -c "CREATE DATABASE $pg_db" >/dev/null 2>&1; then
  serve "$(echo "$pg_admin" | sed -E "s#/[^/?]+(\?|$)#/$pg_db\1#")"
  run postgres
  stop
else
  echo "postgres: skipped ($pg_admin is not reachable with psql)"
fi
