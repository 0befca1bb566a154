#!/usr/bin/env bash
# API conformance: Schemathesis generates requests from /api/openapi.json of a running
# `opshub serve` (fresh SQLite, admin token) and checks every answer: no 5xx, status codes,
# content types and bodies as documented. Bounded examples per operation (CI: 15).
# Usage: tests/schemathesis/run.sh [max examples per operation, default 15] [extra st args…]
# Longer by hand: `tests/schemathesis/run.sh 500` (a few minutes), or drop determinism and
# explore: `ST_EXPLORE=1 tests/schemathesis/run.sh 200` (new random data each run; the
# report prints the seed, and `--seed N` repeats it). Exceptions per operation, with their reasons:
# tests/schemathesis/schemathesis.toml.
set -euo pipefail
cd "$(dirname "$0")/../.."
N="${1:-15}"
shift || true
bash tests/python/setup.sh >/dev/null
cargo build --locked -q
tmp="$(mktemp -d)"
token="opshub_schemathesis-admin-token-0123456789"
OPSHUB_DATABASE_URL="sqlite://$tmp/st.db" OPSHUB_ADMIN_TOKEN="$token" OPSHUB_LOG=warn,opshub::cli=info \
  OPSHUB_LOG_FORMAT=json target/debug/opshub serve --listen 127.0.0.1:0 >/dev/null 2>"$tmp/log" &
pid=$!
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; rm -rf "$tmp"' EXIT
base=""
for _ in $(seq 1 100); do
  base="$(grep -o '"addr":"[^"]*"' "$tmp/log" | head -1 | cut -d'"' -f4 || true)"
  [ -n "$base" ] && break
  sleep 0.1
done
[ -n "$base" ] || { cat "$tmp/log"; echo "schemathesis: the server did not start" >&2; exit 1; }
det=(--generation-deterministic)
[ -n "${ST_EXPLORE:-}" ] && det=()
st() {
  target/pyvenv/bin/schemathesis --config-file tests/schemathesis/schemathesis.toml \
    run "http://$base/api/openapi.json" \
    --header "Authorization: Bearer $token" \
    --max-examples "$N" --workers 2 \
    "${det[@]}" --suppress-health-check all "$@"
}
# Revoking a token is tested alone and last: the stateful phase follows links from the token
# list to DELETE /tokens/{id} and would revoke the very token the run authenticates with,
# leaving every later request a 401.
revoke='DELETE /api/v1/tokens/{id}'
st --exclude-name "$revoke" "$@"
st --include-name "$revoke" "$@"
if grep -q '"level":"ERROR"' "$tmp/log"; then
  echo "schemathesis: the server logged errors:" >&2
  grep '"level":"ERROR"' "$tmp/log" | head -20 >&2
  exit 1
fi
