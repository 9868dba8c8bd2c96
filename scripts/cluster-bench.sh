#!/usr/bin/env bash
# Cluster benchmark with wrk: the same two measurements, in one run, on three
# setups side by side:
#   sqlite        one node, the embedded SQLite database (synchronous=FULL)
#   postgres      one node, PostgreSQL with fsync, synchronous_commit and
#                 full_page_writes turned back on (a throw-away server from
#                 scripts/postgres.sh)
#   postgres x2   two nodes (own data_dir, listen and admin port) sharing one
#                 PostgreSQL database; the load is split over both
# The measurements (as in scripts/bench.sh):
#   write     POST /demo/channels/bench/posts  JWT + schema + read + one document
#                                              and one queue message committed
#   messages  POST /acme/consumer/send         one message per request (topic bench,
#                                              a trivial consumer); messages consumed/s
#                                              from the first send to the last consumer
#                                              commit, every node consuming
# Each setup gets fresh data directories and a fresh database. With two nodes,
# two wrk processes run at once, one per node, with half the connections each:
# req/s is their sum, p50/p99 the worse node's.
# Uses the dev build target/debug/sluice (dependencies optimised), copied at
# the start so a concurrent rebuild cannot change it between setups.
# Environment: DURATION (default 10s), CONNECTIONS (default 32, all nodes
# together), PORT (default 18180; the second node listens on PORT+1), KEEP=1
# keeps the work directory (configurations, node logs, wrk output).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
duration=${DURATION:-10s}
connections=${CONNECTIONS:-32}
port=${PORT:-18180}

if ! command -v wrk >/dev/null; then
    echo "installing wrk" >&2
    { apt-get update -qq && apt-get install -y -qq wrk; } >/dev/null
fi
bash scripts/postgres.sh ensure
command -v psql >/dev/null || { echo "cluster-bench.sh: psql is missing" >&2; exit 1; }
bash scripts/build-guests.sh >/dev/null
[ -x target/debug/sluice ] || cargo build -p sluice-host --bin sluice

# The work directory must be traversable by the PostgreSQL server's user.
work=$(mktemp -d /tmp/cluster-bench.XXXXXX)
chmod 755 "$work"
nodes=()    # pids of the running `sluice serve` processes
loads=()    # pids of running wrk processes
pg_up=
cleanup() {
    local pid
    for pid in "${loads[@]}" "${nodes[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${loads[@]}" "${nodes[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    if [ -n "$pg_up" ]; then
        [ -n "${KEEP:-}" ] && cp "$work/pg/server.log" "$work/postgres.log" 2>/dev/null
        bash "$root/scripts/postgres.sh" stop "$work/pg" >/dev/null 2>&1 || true
    fi
    if [ -n "${KEEP:-}" ]; then
        echo "kept $work" >&2
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

bin=$work/sluice
cp target/debug/sluice "$bin"
# One development key for every node, so a token works on any of them.
secret=$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')

# PostgreSQL, with durability as on a real server.
pg_up=1
pg=$(bash scripts/postgres.sh start "$work/pg")
psql -XAtq "$pg/postgres" -c "ALTER SYSTEM SET fsync = on" \
    -c "ALTER SYSTEM SET synchronous_commit = on" \
    -c "ALTER SYSTEM SET full_page_writes = on" -c "SELECT pg_reload_conf()" >/dev/null
for _ in $(seq 1 50); do
    settings=$(psql -XAtq "$pg/postgres" -c "SHOW fsync" -c "SHOW synchronous_commit" \
        -c "SHOW full_page_writes" | tr '\n' ' ')
    [ "$settings" = "on on on " ] && break
    sleep 0.1
done
if [ "$settings" != "on on on " ]; then
    echo "cluster-bench.sh: PostgreSQL durability not on (fsync, synchronous_commit, full_page_writes: $settings)" >&2
    exit 1
fi
pg_version=$(psql -XAtq "$pg/postgres" -c "SHOW server_version")

# start_node NAME DATABASE_URL PORT: a `sluice serve` process with its own data
# directory and admin port; DATABASE_URL empty for the default SQLite file.
start_node() {
    local name=$1 url=$2 p=$3
    local dir=$work/$name
    mkdir -p "$dir"
    printf %s "$secret" >"$dir/dev-signing-key"
    chmod 600 "$dir/dev-signing-key"
    local database=
    [ -n "$url" ] && database="database_url = \"$url\""
    cat >"$dir/sluice.toml" <<TOML
listen = "127.0.0.1:$p"
data_dir = "$dir"
$database
functions_dirs = ["$root/guest-examples", "$root/tests/guests"]
[admin]
listen = "127.0.0.1:0"
[runtime]
cache_dir = "$root/target/sluice-bench-cache"
TOML
    RUST_LOG=${RUST_LOG:-warn} "$bin" --config "$dir/sluice.toml" serve >"$dir/node.log" 2>&1 &
    local pid=$!
    nodes+=("$pid")
    for _ in $(seq 1 3000); do
        curl -fs "http://127.0.0.1:$p/_sluice/health" >/dev/null 2>&1 && return
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "node $name exited at start-up:" >&2
            cat "$dir/node.log" >&2
            exit 1
        fi
        sleep 0.1
    done
    echo "node $name did not answer its health check within 300 s" >&2
    exit 1
}

stop_nodes() {
    local pid
    for pid in "${nodes[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${nodes[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    nodes=()
}

# query DATABASE_URL SQL: the rows, columns separated by |.
query() {
    case $1 in
        postgres*) psql -XAtq -v ON_ERROR_STOP=1 "$1" -c "$2" ;;
        *)
            python3 - "${1#sqlite://}" "$2" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], timeout=30)
for row in db.execute(sys.argv[2]):
    print("|".join("" if v is None else str(v) for v in row))
PY
            ;;
    esac
}

# drained DATABASE_URL: waits until no delivery is left (at most 10 minutes).
drained() {
    local left
    for _ in $(seq 1 6000); do
        left=$(query "$1" "SELECT count(*) FROM deliveries")
        [ "$left" = 0 ] && return
        sleep 0.1
    done
    echo "cluster-bench.sh: $left deliveries still pending after 10 minutes" >&2
    exit 1
}

# A wrk script at $1 that POSTs JSON body $3 with bearer token $2.
post_lua() {
    cat >"$1" <<LUA
wrk.method = "POST"
wrk.headers["authorization"] = "Bearer $2"
wrk.headers["content-type"] = "application/json"
wrk.body = '$3'
LUA
}

# load NAME LUA PATH BASE...: one wrk per node at once, the connections split
# over them. Prints a line and sets rps, p50, p99 (ms, the worse node) and
# non2xx (all nodes, socket errors included).
load() {
    local name=$1 lua=$2 path=$3
    shift 3
    local c=$((connections / $#)) i=0 base pid outs=()
    loads=()
    for base in "$@"; do
        i=$((i + 1))
        wrk -t1 -c"$c" -d"$duration" --latency -s "$lua" "$base$path" >"$work/wrk-$name-$i.out" 2>&1 &
        loads+=("$!")
        outs+=("$work/wrk-$name-$i.out")
    done
    for pid in "${loads[@]}"; do
        wait "$pid"
    done
    loads=()
    read -r rps p50 p99 non2xx detail < <(python3 - "${outs[@]}" <<'PY'
import re, sys
unit = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}
def ms(text):
    value, suffix = re.fullmatch(r"([\d.]+)([a-z]+)", text).groups()
    return float(value) * unit[suffix]
rps, p50, p99, bad, parts = 0.0, 0.0, 0.0, 0, []
for path in sys.argv[1:]:
    out = open(path).read()
    r = float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1])
    a = ms(re.search(r"^\s+50%\s+(\S+)", out, re.M)[1])
    b = ms(re.search(r"^\s+99%\s+(\S+)", out, re.M)[1])
    n = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    s = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = (int(n[1]) if n else 0) + (sum(map(int, s.groups())) if s else 0)
    rps, p50, p99, bad = rps + r, max(p50, a), max(p99, b), bad + errors
    parts.append(f"{r:.0f}/{a:.2f}/{b:.2f}/{errors}")
print(f"{rps:.0f} {p50:.2f} {p99:.2f} {bad} {' + '.join(parts)}")
PY
    )
    printf '  %-10s %7s req/s   p50 %7s ms   p99 %7s ms   non-2xx %s' "$name" "$rps" "$p50" "$p99" "$non2xx"
    [ $# -gt 1 ] && printf '   per node req/s/p50/p99/non-2xx: %s' "$detail"
    echo
    grep -h -E 'Socket errors|Non-2xx' "${outs[@]}" | sed 's/^/    wrk: /' || true
}

# messages DATABASE_URL: messages consumed/s from the first send to the last
# consumer commit (as scripts/bench.sh); sets msgs.
messages() {
    local sent first last_sent done last failed
    IFS='|' read -r sent first last_sent < <(query "$1" \
        "SELECT count(*), min(created_at), max(created_at) FROM outbox WHERE topic = 'bench'")
    IFS='|' read -r done last < <(query "$1" \
        "SELECT count(*), max(created_at) FROM invocations WHERE route = 'message bench' AND outcome = 'ok'")
    failed=$(query "$1" "SELECT count(*) FROM invocations WHERE route = 'message bench' AND outcome <> 'ok'")
    msgs=$(awk -v d="$done" -v a="$first" -v b="$last" 'BEGIN { s = (b - a) / 1000; if (s < 0.001) s = 0.001; printf "%.0f", d / s }')
    local drain
    drain=$(awk -v a="$last_sent" -v b="$last" 'BEGIN { printf "%.2f", (b - a) / 1000 }')
    printf '  %-10s %7s msg/s   %s of %s consumed in %.2f s, send to last commit (%s s after the last send); failed attempts: %s\n' \
        messages "$msgs" "$done" "$sent" "$(awk -v a="$first" -v b="$last" 'BEGIN { print (b - a) / 1000 }')" "$drain" "$failed"
}

# errors DATABASE_URL NODE...: failed or 5xx invocations in the database, and
# the ERROR/WARN lines of the nodes' logs (but the development key's warning)
# and ERROR/FATAL/PANIC lines of PostgreSQL's log since the last call, verbatim
# (the first few of each).
pg_seen=0
errors() {
    local url=$1 node log lines failed
    shift
    failed=$(query "$url" "SELECT route, outcome, status, count(*) FROM invocations
                           WHERE outcome <> 'ok' OR status >= 500 GROUP BY route, outcome, status")
    echo "    failed or 5xx invocations (route|outcome|status|count): ${failed:-none}"
    for node in "$@"; do
        log=$work/$node/node.log
        lines=$(grep -E '\b(ERROR|WARN)\b' "$log" | grep -v 'DEVELOPMENT key' || true)
        if [ -z "$lines" ]; then
            echo "    $node log: no ERROR or WARN line"
        else
            echo "    $node log: $(wc -l <<<"$lines") ERROR/WARN lines; the first ones:"
            head -n 5 <<<"$lines" | sed 's/^/      /'
        fi
    done
    if [[ $url == postgres* ]]; then
        log=$work/pg/server.log
        lines=$(tail -n +$((pg_seen + 1)) "$log" | grep -E '\b(ERROR|FATAL|PANIC):' || true)
        pg_seen=$(wc -l <"$log")
        if [ -z "$lines" ]; then
            echo "    PostgreSQL log: no ERROR, FATAL or PANIC line"
        else
            echo "    PostgreSQL log: $(wc -l <<<"$lines") ERROR/FATAL/PANIC lines; the first ones:"
            head -n 5 <<<"$lines" | sed 's/^/      /'
        fi
    fi
}

# CPU seconds, to see who had the two cores: the machine (busy jiffies of
# /proc/stat), the nodes, PostgreSQL (the postmaster with its reaped children,
# and its live backends) and this script's reaped children (wrk, psql, …).
hz=$(getconf CLK_TCK)
cpu_machine() { awk -v hz="$hz" '/^cpu / { printf "%.2f", ($2 + $3 + $4 + $7 + $8 + $9) / hz }' /proc/stat; }
cpu_pids() { # PID...: user + system (+ reaped children with -c first)
    local fields='$14 + $15' pid
    if [ "$1" = -c ]; then fields='$14 + $15 + $16 + $17'; shift; fi
    for pid in "$@"; do
        awk "{ print $fields }" "/proc/$pid/stat" 2>/dev/null || true
    done | awk -v hz="$hz" '{ s += $1 } END { printf "%.2f", s / hz }'
}
cpu_pg() {
    local pm
    pm=$(head -n 1 "$work/pg/data/postmaster.pid")
    echo "$(cpu_pids -c "$pm") $(cpu_pids $(ps --ppid "$pm" -o pid=))" | awk '{ printf "%.2f", $1 + $2 }'
}
# From `times` run in this shell beforehand (a subshell has its own children).
cpu_tools() { awk 'NR == 2 { split($1, u, "m"); split($2, s, "m"); printf "%.2f", u[1] * 60 + u[2] + s[1] * 60 + s[2] }' "$work/times"; }
cpu_mark() { times >"$work/times"; c_wall=$(date +%s.%N) c_machine=$(cpu_machine) c_nodes=$(cpu_pids "${nodes[@]}") c_pg=$(cpu_pg) c_tools=$(cpu_tools); }
cpu_report() {
    local wall machine nodes_cpu pg_cpu tools
    times >"$work/times"
    wall=$(awk -v a="$c_wall" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
    machine=$(awk -v a="$c_machine" -v b="$(cpu_machine)" 'BEGIN { printf "%.1f", b - a }')
    nodes_cpu=$(awk -v a="$c_nodes" -v b="$(cpu_pids "${nodes[@]}")" 'BEGIN { printf "%.1f", b - a }')
    pg_cpu=$(awk -v a="$c_pg" -v b="$(cpu_pg)" 'BEGIN { printf "%.1f", b - a }')
    tools=$(awk -v a="$c_tools" -v b="$(cpu_tools)" 'BEGIN { printf "%.1f", b - a }')
    echo "    CPU s over $wall s wall ($(nproc) cores): all $machine = nodes $nodes_cpu + PostgreSQL $pg_cpu" \
        "+ wrk and tools $tools + other processes $(awk -v m="$machine" -v a="$nodes_cpu" -v b="$pg_cpu" -v c="$tools" 'BEGIN { printf "%.1f", m - a - b - c }')"
}

declare -A t_rps t_p50 t_p99 t_msgs t_bad
setups=()

# run_setup LABEL DATABASE_URL NODE...: fresh nodes, the write route, the
# backlog drained, then the messages run.
run_setup() {
    local label=$1 url=$2 node i=0 bases=() db
    shift 2
    setups+=("$label")
    for node in "$@"; do
        start_node "$node" "$url" $((port + i))
        bases+=("http://127.0.0.1:$((port + i))")
        i=$((i + 1))
    done
    db=${url:-sqlite://$work/$1/sluice.db}
    local cfg=$work/$1/sluice.toml
    local alice acme
    alice=$("$bin" --config "$cfg" token --sub alice --tenant demo)
    acme=$("$bin" --config "$cfg" token --sub ops --tenant acme)
    curl -fs -X POST "${bases[0]}/demo/channels" -H "authorization: Bearer $alice" \
        -H 'content-type: application/json' -d '{"name":"bench"}' >/dev/null
    post_lua "$work/write.lua" "$alice" '{"text":"load"}'
    post_lua "$work/send.lua" "$acme" '{"topic":"bench","payload":{"n":1}}'
    echo "$label ($# node$([ $# -gt 1 ] && echo s))"
    cpu_mark
    load write "$work/write.lua" /demo/channels/bench/posts "${bases[@]}"
    t_rps[$label]=$rps t_p50[$label]=$p50 t_p99[$label]=$p99 t_bad[$label]=$non2xx
    # The channels consumer's inbox writes, so they do not share the next run.
    drained "$db"
    load send "$work/send.lua" /acme/consumer/send "${bases[@]}"
    t_bad[$label]="${t_bad[$label]}+$non2xx"
    drained "$db"
    messages "$db"
    t_msgs[$label]=$msgs
    cpu_report
    errors "$db" "$@"
    stop_nodes
}

echo "wrk -t1 -c$connections -d$duration per setup (split over the nodes), sluice dev build" \
    "(dependencies optimised), PostgreSQL $pg_version with fsync/synchronous_commit/full_page_writes on," \
    "$(nproc) cores shared by everything; load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
run_setup "sqlite" "" sqlite
psql -XAtq "$pg/postgres" -c "CREATE DATABASE bench1" -c "CREATE DATABASE bench2" >/dev/null
run_setup "postgres" "$pg/bench1" pg1
run_setup "postgres x2" "$pg/bench2" pg2a pg2b

echo
printf '%-12s %12s %9s %9s %11s %12s %12s  %s\n' setup "write req/s" "p50 ms" "p99 ms" "messages/s" "write ratio" "msgs ratio" "non-2xx write+send"
for s in "${setups[@]}"; do
    printf '%-12s %12s %9s %9s %11s %12s %12s  %s\n' "$s" "${t_rps[$s]}" "${t_p50[$s]}" "${t_p99[$s]}" "${t_msgs[$s]}" \
        "$(awk -v a="${t_rps[$s]}" -v b="${t_rps[sqlite]}" 'BEGIN { printf "%.2f", a / b }')" \
        "$(awk -v a="${t_msgs[$s]}" -v b="${t_msgs[sqlite]}" 'BEGIN { printf "%.2f", a / b }')" "${t_bad[$s]}"
done
echo "(ratio: to sqlite in this run; with two nodes, p50 and p99 are the worse node's)"
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
