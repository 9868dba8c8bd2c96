#!/usr/bin/env bash
# How long a host with N deployed functions (default 1,000) takes from start
# until it serves its first request, with the compiled-artifact cache warm
# (a normal restart) and cold (a new engine: everything recompiled), and how
# much memory those idle functions hold.
#
#   bash scripts/restart-bench.sh [N] [DISTINCT]
#
# Function i runs component i % DISTINCT (DISTINCT defaults to N): the echo
# guest with a unique custom section appended, so each is a distinct
# component with its own compiled artifact. Compiling one takes about a
# quarter of a second, so `restart-bench.sh 10000 1000` deploys 10,000
# functions in a few minutes: each of the 1,000 components under 10 names.
# COLD=0 skips the cold restart; SLUICE=path measures another build. Runs a
# release build on loopback ports 18480/18481.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
n="${1:-1000}"
distinct="${2:-$n}"
cold_too="${COLD:-1}"
per_tenant=10

bash "$root/scripts/build-guests.sh" >/dev/null
# The same targets as scripts/bench.sh, so the two share one release build.
cargo build --locked --release -p sluice-host --bin sluice --example hyper-hello
bin="${SLUICE:-$root/target/release/sluice}"
echo_wasm="$root/target/wasm32-wasip2/guest/echo.wasm"

work="$(mktemp -d)"
pid=""
cleanup() {
    [[ -n "$pid" ]] && kill "$pid" 2>/dev/null || true
    [[ -n "${KEEP:-}" ]] || rm -rf "$work"
}
trap cleanup EXIT

cat >"$work/sluice.toml" <<TOML
listen = "127.0.0.1:18480"
data_dir = "$work/data"
functions_dirs = []
[admin]
listen = "127.0.0.1:18481"
TOML
sluice() { "$bin" --config "$work/sluice.toml" "$@"; }

start() {
    # The binary itself, not the shell function: $! must be its pid.
    RUST_LOG=warn,sluice_host::app=info "$bin" --config "$work/sluice.toml" serve 2>>"$work/log" &
    pid=$!
}
stop() {
    kill -TERM "$pid"
    wait "$pid" || true
    pid=""
}
# Milliseconds from now until GET $1 answers 200.
first_request_ms() {
    local url="$1" t0
    t0=$(date +%s%N)
    until curl -fs -o /dev/null "$url"; do sleep 0.005; done
    echo $(( ($(date +%s%N) - t0) / 1000000 ))
}
rss_mib() { awk '/^VmRSS/ {printf "%.0f", $2 / 1024}' "/proc/$pid/status"; }

start
until curl -fs -o /dev/null http://127.0.0.1:18480/_sluice/health; do sleep 0.05; done
sleep 1
empty_rss=$(rss_mib)
key="$(sluice key create --name restart-bench)"
export SLUICE_ADMIN_URL=http://127.0.0.1:18481 SLUICE_ADMIN_KEY="$key"

echo "deploying $n functions, $distinct distinct components (each compiled once)..."
# A custom section (id 0) makes the bytes, and so the artifact, unique.
mkdir -p "$work/components"
python3 - "$echo_wasm" "$work/components" "$distinct" <<'PY'
import sys
src, dst, distinct = sys.argv[1], sys.argv[2], int(sys.argv[3])
def leb(n):
    out = bytearray()
    while True:
        b = n & 0x7F; n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n: return bytes(out)
base = open(src, "rb").read()
for i in range(distinct):
    name = b"sluice-bench"
    payload = leb(len(name)) + name + str(i).encode()
    open(f"{dst}/{i}.wasm", "wb").write(base + b"\x00" + leb(len(payload)) + payload)
PY
for ((i = 0; i < per_tenant; i++)); do
    printf '[[routes]]\nmethod = "GET"\npath = "/f%s/{a}"\nauth = "public"\n' "$i" >"$work/m$i.toml"
done
t0=$(date +%s)
for ((i = 0; i < n; i++)); do
    tenant="t$((i / per_tenant))"
    f=$((i % per_tenant))
    if ((f == 0)); then sluice tenant create "$tenant" >/dev/null; fi
    curl -fsS -o /dev/null -H "authorization: Bearer $key" \
        -F "manifest=@$work/m$f.toml" -F "component=@$work/components/$((i % distinct)).wasm" \
        "http://127.0.0.1:18481/v1/tenants/$tenant/functions/f$f/versions"
    if (((i + 1) % 1000 == 0)); then echo "  $((i + 1)) deployed ($(($(date +%s) - t0)) s)"; fi
done
last="http://127.0.0.1:18480/t$(((n - 1) / per_tenant))/f$(((n - 1) % per_tenant))/x"

deployed_rss=$(rss_mib)
stop
start
warm=$(first_request_ms "$last")
sleep 1
idle_rss=$(rss_mib)
loaded=$(curl -fsS -H "authorization: Bearer $key" http://127.0.0.1:18481/metrics |
    awk '/^sluice_components_loaded / {print $2}')
stop
if [[ "$cold_too" != 0 ]]; then
    rm -rf "$work/data/cache"
    start
    cold=$(first_request_ms "$last")
    stop
fi

echo
echo "restart with $n deployed functions, $(nproc) cores, release build:"
echo "  warm artifact cache: ${warm} ms until the first request is served"
if [[ -n "${cold:-}" ]]; then echo "  cold (recompile all): ${cold} ms"; fi
echo "resident memory (VmRSS):"
echo "  no functions: ${empty_rss} MiB"
echo "  after the deploys: ${deployed_rss} MiB"
echo "  restarted, idle with $n functions: ${idle_rss} MiB" \
    "($(( (idle_rss - empty_rss) * 1024 / n )) KiB a function; ${loaded:-?} components loaded)"
grep "functions loaded" "$work/log" | sed "s/^/  log: /" || true
