#!/usr/bin/env bash
# HTTP load test against a release build of Sluice on loopback, with wrk.
# Prints requests/s and p50/p99 latency for three routes:
#   read   GET  /demo/todos/{id}            JWT + fresh instance + a document read
#   echo   POST /acme/echo/{a}              JWT + role rule + JSON Schema + fresh instance
#   write  POST /demo/channels/bench/posts  JWT + schema + read + one document and one
#                                           queue message committed (synchronous=FULL)
# and, for reference, the host's own health check (HTTP floor, no function);
# then messages end to end:
#   send   POST /acme/consumer/send             one queue message per request, each
#                                                handled by a trivial consumer; reports
#                                                sends/s and messages consumed/s from the
#                                                first send to the last consumer commit
# With WASMTIME set to a wasmtime 48 CLI, the same run also measures the peer,
# `wasmtime serve` on a wasi:http hello component, fresh instance per request
# and with --max-instance-reuse-count 128, so the figures compare side by side.
# Environment: DURATION (default 10s), CONNECTIONS (default 64), PORT (default 18080).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
duration=${DURATION:-10s}
connections=${CONNECTIONS:-64}
port=${PORT:-18080}
base="http://127.0.0.1:$port"

if ! command -v wrk >/dev/null; then
    echo "installing wrk" >&2
    { apt-get update -qq && apt-get install -y -qq wrk; } >/dev/null
fi
bash scripts/build-guests.sh >/dev/null
cargo build --release -p sluice-host --bin sluice

data=$(mktemp -d)
cleanup() {
    [ -n "${server:-}" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
    rm -rf "$data"
}
trap cleanup EXIT
cat > "$data/sluice.toml" <<TOML
listen = "127.0.0.1:$port"
data_dir = "$data"
functions_dirs = ["$root/guest-examples", "$root/tests/guests"]
[admin]
listen = "127.0.0.1:0"
[runtime]
cache_dir = "$root/target/sluice-bench-cache"
TOML
sluice() { "$root/target/release/sluice" --config "$data/sluice.toml" "$@"; }
RUST_LOG=error "$root/target/release/sluice" --config "$data/sluice.toml" serve &
server=$!
for _ in $(seq 1 300); do
    curl -fs "$base/_sluice/health" >/dev/null 2>&1 && break
    sleep 0.1
done

alice=$(sluice token --sub alice --tenant demo)
editor=$(sluice token --sub ed --tenant acme --role editor)
curl -fs -X POST "$base/demo/channels" -H "authorization: Bearer $alice" \
    -H 'content-type: application/json' -d '{"name":"bench"}' >/dev/null
todo_id=$(curl -fs -X POST "$base/demo/todos" -H "authorization: Bearer $alice" \
    -H 'content-type: application/json' -d '{"title":"read me"}' |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')

lua="$data/request.lua"
run() { # name method path token body [base]
    cat > "$lua" <<LUA
wrk.method = "$2"
wrk.headers["authorization"] = "Bearer $4"
wrk.headers["content-type"] = "application/json"
wrk.body = '$5'
LUA
    local out
    out=$(wrk -t1 -c"$connections" -d"$duration" --latency -s "$lua" "${6:-$base}$3")
    local rps p50 p99 errors
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
    p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
    errors=$(awk '/Non-2xx/ {print $5}' <<<"$out")
    printf '%-22s %10s req/s   p50 %8s   p99 %8s   non-2xx %s\n' "$1" "$rps" "$p50" "$p99" "${errors:-0}"
}

echo "wrk -t1 -c$connections -d$duration, sluice release build, $(nproc) cores"
run "sluice health" GET /_sluice/health "" ""
run "sluice read" GET "/demo/todos/$todo_id" "$alice" ""
run "sluice echo" POST /acme/echo/load "$editor" '{"name":"load","age":1}'
run "sluice write" POST /demo/channels/bench/posts "$alice" '{"text":"load"}'

acme=$(sluice token --sub ops --tenant acme)
run "sluice send" POST /acme/consumer/send "$acme" '{"topic":"bench","payload":{"n":1}}'
python3 - "$data/sluice.db" <<'PY'
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], timeout=30)
while db.execute("SELECT count(*) FROM deliveries").fetchone()[0]:
    time.sleep(0.1)
sent, first, last_sent = db.execute(
    "SELECT count(*), min(created_at), max(created_at) FROM outbox WHERE topic = 'bench'").fetchone()
done, last = db.execute(
    "SELECT count(*), max(created_at) FROM invocations "
    "WHERE route = 'message bench' AND outcome = 'ok'").fetchone()
seconds = max(last - first, 1) / 1000
print(f"{'sluice messages':<22} {done / seconds:10.2f} msg/s   "
      f"{done} of {sent} consumed in {seconds:.2f} s, send to last commit")
# The backlog left when the sends stopped, handled with the CPU to itself.
after = db.execute(
    "SELECT count(*) FROM invocations WHERE route = 'message bench' AND outcome = 'ok' "
    "AND created_at > ?", (last_sent,)).fetchone()[0]
drain = max(last - last_sent, 1) / 1000
print(f"{'sluice messages drain':<22} {after / drain:10.2f} msg/s   "
      f"{after} consumed in {drain:.2f} s after the last send")
PY

if [ -n "${WASMTIME:-}" ]; then
    kill "$server" && wait "$server" 2>/dev/null || true
    server=
    hello_dir=host/benches/peers/wasi-http-hello
    CARGO_TARGET_DIR="$root/target/peers" cargo build --quiet --release \
        --target wasm32-wasip2 --manifest-path "$hello_dir/Cargo.toml"
    hello="$root/target/peers/wasm32-wasip2/release/wasi_http_hello.wasm"
    peer() { # name [flags]
        local name=$1
        shift
        "$WASMTIME" serve -S cli --addr "127.0.0.1:$port" "$@" "$hello" 2>/dev/null &
        server=$!
        for _ in $(seq 1 300); do
            curl -fs "$base/" >/dev/null 2>&1 && break
            sleep 0.1
        done
        run "$name" GET / "" ""
        kill "$server" && wait "$server" 2>/dev/null || true
        server=
    }
    peer "wasmtime serve"
    peer "wasmtime serve reuse128" --max-instance-reuse-count 128
fi
