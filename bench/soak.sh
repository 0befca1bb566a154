#!/usr/bin/env bash
# Issue 9, soak: ingest and event publishing at a steady rate (half each) against one
# `opshub serve` on PostgreSQL for SECONDS; every WINDOW seconds prints the server's RSS,
# open file descriptors and the window's p99 latencies. A webhook endpoint receives the
# events (a local receiver that answers 200), so deliveries run too.
# Usage: bench/soak.sh [rate/s, default 500] [seconds, default 600] [window, default 60]
source "$(dirname "$0")/lib.sh"
RATE="${1:-500}"
SECS="${2:-600}"
WINDOW="${3:-60}"
build_release
[ -n "${SKIP_BUILD:-}" ] || (cd "$ROOT" && cargo build --release --locked -q --example soak)
export OPSHUB_WEBHOOK_ALLOW_PRIVATE=true
pg_url="$(pg_fresh opshub_bench_soak)"
start_server "$pg_url"
# A receiver for the deliveries: python's http.server answering 200 to every POST.
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
python3 - "$port" <<'PY' &
import sys, http.server
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(200); self.send_header("content-length", "0"); self.end_headers()
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY
recv=$!
trap 'kill $recv 2>/dev/null || true' EXIT
sleep 0.5
curl -fsS -X POST -H "Authorization: Bearer $BENCH_TOKEN" -H 'content-type: application/json' \
  -d "{\"name\":\"soak\",\"endpoint\":\"http://127.0.0.1:$port/hook\",\"events\":[\"soak.*\"]}" \
  "$BASE/api/v1/webhooks" >/dev/null
"$ROOT/target/release/examples/soak" "$BASE" "$BENCH_TOKEN" "$SERVER_PID" "$RATE" "$SECS" "$WINDOW"
echo "database connections held by opshub at the end: $(psql "$pg_url" -Atc "SELECT count(*) FROM pg_stat_activity WHERE datname = 'opshub_bench_soak' AND pid <> pg_backend_pid()")"
stop_server
pg_drop opshub_bench_soak
