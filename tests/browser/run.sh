#!/usr/bin/env bash
# Browser test of the web console: installs Debian's Chromium and the pinned node packages
# when they are missing, builds opshub, serves it on a fresh SQLite database in a temporary
# folder, and drives the console with Playwright (console.test.mjs). Fails on any failure.
# CONSOLE_TEST_BIN=path skips the build and uses that binary.
set -euo pipefail
cd "$(dirname "$0")"
start=$(date +%s)

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "browser: installing node and npm"
  apt-get update -qq && apt-get install -y -qq nodejs npm >/dev/null
fi
if [ ! -x /usr/bin/chromium ]; then
  echo "browser: installing chromium"
  apt-get update -qq && apt-get install -y -qq chromium >/dev/null
fi
if [ ! -d node_modules/playwright-core ] || [ ! -d node_modules/pngjs ]; then
  echo "browser: npm ci"
  npm ci --no-audit --no-fund --loglevel=error
fi

bin="${CONSOLE_TEST_BIN:-}"
if [ -z "$bin" ]; then
  echo "browser: cargo build"
  (cd ../.. && cargo build --locked --quiet)
  bin="$(cd ../.. && pwd)/target/debug/opshub"
fi

work="$(mktemp -d)"
server=""
cleanup() {
  if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

port="$(node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')"
export OPSHUB_DATABASE_URL="sqlite://$work/opshub.db"
export OPSHUB_ADMIN_TOKEN="browser-test-admin-token-$(date +%s%N)"
export OPSHUB_WEBHOOK_ALLOW_PRIVATE=true
export OPSHUB_LOG=warn
OPSHUB_LISTEN="127.0.0.1:$port" "$bin" serve >"$work/serve.log" 2>&1 &
server=$!

for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
  if ! kill -0 "$server" 2>/dev/null; then cat "$work/serve.log" >&2; exit 1; fi
  sleep 0.1
done

read_token="$("$bin" token create --name browser-reader --scope read --json | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).token))')"

export OPSHUB_URL="http://127.0.0.1:$port"
export OPSHUB_READ_TOKEN="$read_token"
export SCREENSHOT_DIR="${SCREENSHOT_DIR:-$PWD/screenshots}"
mkdir -p "$SCREENSHOT_DIR"

status=0
node --test --test-concurrency=1 console.test.mjs || status=$?
if [ "$status" -ne 0 ]; then
  echo "browser: server log follows" >&2
  tail -n 50 "$work/serve.log" >&2
fi
echo "browser: done in $(( $(date +%s) - start )) s"
exit "$status"
