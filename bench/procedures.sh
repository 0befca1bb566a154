#!/usr/bin/env bash
# Benchmark of procedures on PostgreSQL (issue 4): N functions and N triggers (each trigger
# script also creates its trigger function) imported from Flyway R__ files and deployed,
# then
#   drift        `opshub proc drift --json` over all 2N deployed records (goal: < 1 s;
#                the catalog is read in one set-based query, never one per object)
#   deploy N     deploy-all of the N functions after every one of their files changed
# plus the first deploy of all 2N and a `psql -c 'SELECT 1'` for the process/connect floor.
# Each figure is the median of REPEAT runs, wall clock, process start included. Not a
# test: it prints figures.
#
# Usage: bench/procedures.sh            (from the repository root)
#   N=1000 REPEAT=5 PG_ADMIN_URL=postgres://postgres@127.0.0.1:5432/postgres \
#   BIN=target/release/opshub bench/procedures.sh
# Builds the release binary first unless BIN points at one. Needs psql.
set -euo pipefail

N=${N:-1000}
REPEAT=${REPEAT:-5}
PG_ADMIN_URL=${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
if [[ -z "${BIN:-}" ]]; then
  cargo build --release --locked --quiet
  BIN="${CARGO_TARGET_DIR:-target}/release/opshub"
fi
command -v psql >/dev/null || { echo "needs psql" >&2; exit 2; }

work=$(mktemp -d)
db=opshub_bench_proc
url="${PG_ADMIN_URL%/*}/$db"
trap 'rm -rf "$work"; psql -q "$PG_ADMIN_URL" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null' EXIT
export OPSHUB_MASTER_KEY="${OPSHUB_MASTER_KEY:-AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=}"

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
opshub() { OPSHUB_LOG=warn "$BIN" --database-url "$url" "$@"; }
time_one() {
  eval "$1"
  local t0; t0=$(now_ms)
  eval "$2" >/dev/null
  echo $(( $(now_ms) - t0 ))
}
measure() {
  for _ in $(seq 1 "$REPEAT"); do time_one "$1" "$2"; done | median
}

# write_functions K: the N function files, body `x + K`.
write_functions() {
  for i in $(seq 1 "$N"); do
    printf 'CREATE OR REPLACE FUNCTION bench_fn_%d(x integer) RETURNS integer\nLANGUAGE sql IMMUTABLE AS $$ SELECT x + %d $$;\n' \
      "$i" "$1" > "$work/procs/R__fn_$(printf '%05d' "$i").sql"
  done
}

psql -q "$PG_ADMIN_URL" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db" >/dev/null
for t in $(seq 0 9); do echo "CREATE TABLE bench_t$t (id int, v int);"; done | psql -q -X "$url" >/dev/null
mkdir -p "$work/procs"
write_functions 1
for i in $(seq 1 "$N"); do
  printf 'CREATE OR REPLACE FUNCTION bench_tg_fn_%d() RETURNS trigger LANGUAGE plpgsql AS $$\nBEGIN\n  NEW.v := NEW.v + %d;\n  RETURN NEW;\nEND $$;\nCREATE OR REPLACE TRIGGER bench_tg_%d BEFORE INSERT ON bench_t%d\n  FOR EACH ROW EXECUTE FUNCTION bench_tg_fn_%d();\n' \
    "$i" "$i" "$i" $(( i % 10 )) "$i" > "$work/procs/R__tg_$(printf '%05d' "$i").sql"
done

t0=$(now_ms); opshub proc import "$work/procs" >/dev/null; import_ms=$(( $(now_ms) - t0 ))
t0=$(now_ms); opshub proc deploy >/dev/null; first_ms=$(( $(now_ms) - t0 ))

if ! opshub proc drift >/dev/null; then echo "unexpected drift after deploy" >&2; exit 1; fi
drift_ms=$(measure ":" "opshub proc drift --json")
k=1
redeploy_ms=$(measure 'k=$((k + 1)); write_functions $k; opshub proc import $work/procs >/dev/null' \
  "opshub proc deploy")
if ! opshub proc drift >/dev/null; then echo "unexpected drift after redeploy" >&2; exit 1; fi
# Out-of-band drift on one object is found among all of them.
psql -q -X "$url" -c "CREATE OR REPLACE FUNCTION bench_fn_1(x integer) RETURNS integer LANGUAGE sql IMMUTABLE AS \$\$ SELECT x \$\$" >/dev/null
set +e; opshub proc drift --json > "$work/drift.json" 2>/dev/null; drift_exit=$?; set -e
drifted=$(grep -c '"state": "drifted"' "$work/drift.json" || true)
hello_ms=$(measure ":" "psql -X -q -c 'SELECT 1' $url")

printf 'PostgreSQL, %s functions + %s triggers (%s records), median of %s runs, ms wall clock\n' \
  "$N" "$N" $(( 2 * N )) "$REPEAT"
printf '%-44s %8s\n' "import $(( 2 * N )) R__ files" "$import_ms"
printf '%-44s %8s\n' "first deploy of $(( 2 * N ))" "$first_ms"
printf '%-44s %8s\n' "drift check of $(( 2 * N )) (goal < 1000)" "$drift_ms"
printf '%-44s %8s\n' "deploy-all of $N changed functions" "$redeploy_ms"
printf '%-44s %8s\n' "psql SELECT 1 (process + connect floor)" "$hello_ms"
printf 'one function altered by hand: drift exit %s, %s drifted record(s)\n' "$drift_exit" "$drifted"
