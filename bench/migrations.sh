#!/usr/bin/env bash
# Benchmark of `opshub migrate up` (issue 3): N small migrations (one table + one index
# each) applied from empty to PostgreSQL and to SQLite, beside two floors measured in the
# same run with the databases' own clients:
#   one transaction    all N scripts concatenated in ONE transaction (psql -1 -f, sqlite3)
#   one commit each    the same with BEGIN/COMMIT around every migration
# and the time of a no-op run once all N are applied. Each figure is the median of REPEAT
# runs, wall clock, process start included. Not a test: it prints figures.
#
# Usage: bench/migrations.sh            (from the repository root)
#   N=500 REPEAT=5 PG_ADMIN_URL=postgres://postgres@127.0.0.1:5432/postgres \
#   BIN=target/release/opshub bench/migrations.sh
# Builds the release binary first unless BIN points at one. Needs psql and sqlite3.
set -euo pipefail

N=${N:-500}
REPEAT=${REPEAT:-5}
PG_ADMIN_URL=${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
if [[ -z "${BIN:-}" ]]; then
  cargo build --release --locked --quiet
  BIN="${CARGO_TARGET_DIR:-target}/release/opshub"
fi
command -v psql >/dev/null && command -v sqlite3 >/dev/null || { echo "needs psql and sqlite3" >&2; exit 2; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/migrations"
for i in $(seq 1 "$N"); do
  printf 'CREATE TABLE bench_t%d (id INT PRIMARY KEY, v INT);\nCREATE INDEX bench_t%d_v ON bench_t%d (v);\n' \
    "$i" "$i" "$i" > "$work/migrations/$(printf '%05d' "$i")_t$i.up.sql"
done
cat "$work"/migrations/*.up.sql > "$work/all.sql"
for f in "$work"/migrations/*.up.sql; do printf 'BEGIN;\n'; cat "$f"; printf 'COMMIT;\n'; done > "$work/commits.sql"

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

pg_url() { echo "${PG_ADMIN_URL%/*}/$1"; }
pg_fresh() {
  psql -q "$PG_ADMIN_URL" -c "DROP DATABASE IF EXISTS $1 WITH (FORCE)" -c "CREATE DATABASE $1" >/dev/null
}
opshub() { OPSHUB_LOG=warn "$BIN" "$@"; }

# time_one SETUP RUN: runs SETUP (untimed), then RUN (timed); prints milliseconds.
time_one() {
  eval "$1"
  local t0; t0=$(now_ms)
  eval "$2" >/dev/null
  echo $(( $(now_ms) - t0 ))
}

db=opshub_bench
lite="$work/bench.db"
pg_setup="pg_fresh $db"
pg_import="pg_fresh $db; opshub migrate import $work/migrations --database-url $(pg_url $db) >/dev/null"
lite_setup="rm -f $lite $lite-wal $lite-shm $lite.key"
lite_import="$lite_setup; opshub migrate import $work/migrations --database-url sqlite://$lite >/dev/null"
# name TAB setup TAB run — measured in rounds (every variant once per round) so that a drift of
# the machine (this is a shared VM; disk latency wanders) hits floors and opshub alike.
variants=(
  "pg_one"$'\t'"$pg_setup"$'\t'"psql -q -X -1 -v ON_ERROR_STOP=1 -f $work/all.sql $(pg_url $db)"
  "pg_each"$'\t'"$pg_setup"$'\t'"psql -q -X -v ON_ERROR_STOP=1 -f $work/commits.sql $(pg_url $db)"
  "pg_up"$'\t'"$pg_import"$'\t'"opshub migrate up --database-url $(pg_url $db)"
  "pg_noop"$'\t'":"$'\t'"opshub migrate up --database-url $(pg_url $db)"
  "pg_dir"$'\t'"$pg_setup"$'\t'"opshub migrate up --dir $work/migrations --database-url $(pg_url $db)"
  "pg_hello"$'\t'":"$'\t'"psql -X -q -c 'SELECT 1' $(pg_url $db)"
  "lite_one"$'\t'"$lite_setup"$'\t'"{ echo 'BEGIN;'; cat $work/all.sql; echo 'COMMIT;'; } | sqlite3 -bail $lite"
  "lite_each"$'\t'"$lite_setup"$'\t'"sqlite3 -bail $lite < $work/commits.sql"
  "lite_up"$'\t'"$lite_import"$'\t'"opshub migrate up --database-url sqlite://$lite"
  "lite_noop"$'\t'":"$'\t'"opshub migrate up --database-url sqlite://$lite"
  "lite_dir"$'\t'"$lite_setup"$'\t'"opshub migrate up --dir $work/migrations --database-url sqlite://$lite"
  "lite_hello"$'\t'":"$'\t'"sqlite3 $lite 'SELECT 1'"
)
for _ in $(seq 1 "$REPEAT"); do
  for v in "${variants[@]}"; do
    IFS=$'\t' read -r name setup run <<<"$v"
    time_one "$setup" "$run" >>"$work/$name.ms"
  done
done
psql -q "$PG_ADMIN_URL" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null
for v in "${variants[@]}"; do
  name=${v%%$'\t'*}
  printf -v "$name" '%s' "$(median <"$work/$name.ms")"
done
# Per-round ratios too: the median of up/one-tx over rounds pairs runs taken side by side.
round_ratio() {
  paste "$work/$1.ms" "$work/$2.ms" | awk '{print $1 / $2}' | median | xargs printf '%.2f'
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
printf '%s migrations (table + index each), median of %s runs, ms wall clock\n' "$N" "$REPEAT"
row='%-9s %8s %12s %10s %16s %7s %12s %12s %17s\n'
printf "$row" backend "one tx" "commit each" "opshub up" "opshub up --dir" "no-op" "client hello" "up / one tx" "up / commit each"
printf "$row" postgres "$pg_one" "$pg_each" "$pg_up" "$pg_dir" "$pg_noop" "$pg_hello" \
  "$(ratio "$pg_up" "$pg_one")" "$(ratio "$pg_up" "$pg_each")"
printf "$row" sqlite "$lite_one" "$lite_each" "$lite_up" "$lite_dir" "$lite_noop" "$lite_hello" \
  "$(ratio "$lite_up" "$lite_one")" "$(ratio "$lite_up" "$lite_each")"
echo "per-round median of up / one tx: postgres $(round_ratio pg_up pg_one), sqlite $(round_ratio lite_up lite_one); up / commit each: postgres $(round_ratio pg_up pg_each), sqlite $(round_ratio lite_up lite_each)"
echo "client hello: psql / sqlite3 running SELECT 1 (process start + connect), for the machine's noise floor"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
