# Shared helpers for bench scripts: build, start/stop an opshub server, run wrk.
# Benchmarks print figures; they assert nothing (targets live in the notes, not in tests).

set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${BIN:-$ROOT/target/release/opshub}"
PG_ADMIN_URL="${OPSHUB_BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}"
BENCH_TOKEN="opshub_bench-admin-token-0123456789abcdef"
export OPSHUB_MASTER_KEY="${OPSHUB_MASTER_KEY:-AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=}"

need_wrk() {
  command -v wrk >/dev/null || { echo "installing wrk (Debian package)"; apt-get install -y wrk >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y wrk >/dev/null; }; }
}

# SKIP_BUILD=1 runs the binaries already built (e.g. copies, while the tree changes).
build_release() {
  [ -n "${SKIP_BUILD:-}" ] || (cd "$ROOT" && cargo build --release --locked -q)
}

# start_server URL -> sets SERVER_PID and BASE
start_server() {
  local url="$1" log
  log="$(mktemp)"
  OPSHUB_DATABASE_URL="$url" OPSHUB_ADMIN_TOKEN="$BENCH_TOKEN" OPSHUB_LOG=warn,opshub::cli=info \
    OPSHUB_LOG_FORMAT=json OPSHUB_DB_POOL_SIZE="${POOL:-16}" \
    "$BIN" serve --listen 127.0.0.1:0 >/dev/null 2>"$log" &
  SERVER_PID=$!
  for _ in $(seq 1 100); do
    BASE="$(grep -o '"addr":"[^"]*"' "$log" | head -1 | cut -d'"' -f4 || true)"
    [ -n "$BASE" ] && BASE="http://$BASE" && return 0
    sleep 0.1
  done
  echo "server did not start:"; cat "$log"; return 1
}

stop_server() {
  kill -TERM "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
}

# pg_fresh NAME -> prints a URL of a new database NAME (dropped first if it exists)
pg_fresh() {
  psql "$PG_ADMIN_URL" -qc "DROP DATABASE IF EXISTS $1 WITH (FORCE)" -c "CREATE DATABASE $1" >/dev/null
  echo "${PG_ADMIN_URL%/*}/$1"
}

pg_drop() {
  psql "$PG_ADMIN_URL" -qc "DROP DATABASE IF EXISTS $1 WITH (FORCE)" >/dev/null
}

# wrk_run LABEL PATH [CONNECTIONS] [SECONDS] -> one line: label, requests/s, p50, p99
wrk_run() {
  local label="$1" path="$2" conns="${3:-64}" secs="${4:-10}" out
  out="$(wrk -t2 -c"$conns" -d"${secs}s" --latency -H "Authorization: Bearer $BENCH_TOKEN" "$BASE$path")"
  local rps p50 p99 errors
  rps="$(awk '/Requests\/sec/ {print $2}' <<<"$out")"
  p50="$(awk '$1=="50%" {print $2}' <<<"$out")"
  p99="$(awk '$1=="99%" {print $2}' <<<"$out")"
  errors="$(awk '/Non-2xx|Socket errors/ {print}' <<<"$out" | tr '\n' ' ')"
  printf '%-34s %10s req/s   p50 %8s   p99 %8s   %s\n' "$label" "$rps" "$p50" "$p99" "$errors"
}
