#!/usr/bin/env bash
# Cluster benchmark with wrk: the same two measurements, in one run, on
# several setups side by side:
#   sqlite        one node, the embedded SQLite database (synchronous=FULL)
#   postgres xN   N nodes (own data_dir, listen and admin port) sharing one
#                 PostgreSQL database (fsync, synchronous_commit and
#                 full_page_writes on; a throw-away server from
#                 scripts/postgres.sh), for each N in NODES
# Each node reaches PostgreSQL through its own delay relay
# (tests/src/bin/delay-relay.rs) adding a round trip of RTT_MS, as between two
# machines: this kernel has no netem qdisc to delay a network namespace's
# link, so the delay is made in user space.
# With NETNS=1, every process gets a network of its own (scripts/netbed.sh):
# PostgreSQL and the relays in namespace sbdb, node K in sbnK, wrk in sbload,
# all joined by veth pairs on one bridge, so that traffic crosses a network
# stack between them as between machines. With CUT=1 (needs NETNS=1) a last
# setup cuts one node's link mid-load (`netbed.sh cut`): the write
# acknowledgements are checked against the rows committed (none may be
# lost), the queue must drain through the other nodes once the cut node's
# leases expire (lease_ms = 5000 there), and the other nodes' figures show
# whether they carried on.
# The measurements (as in scripts/bench.sh):
#   write     POST /tK/channels/bench/posts    the channels example deployed
#                                              to 8 tenants t1..t8, requests
#                                              taking turns over them: JWT +
#                                              schema + read + one document and
#                                              one queue message committed
#   messages  POST /acme/consumer/send         one message per request (topic bench,
#                                              a trivial consumer); messages consumed/s
#                                              from the first send to the last consumer
#                                              commit, every node consuming
# Each setup gets fresh data directories and a fresh database. The offered
# load is fixed per node: one wrk process per node with CONNECTIONS
# connections each, all at once; req/s is their sum, p50/p99 the worse node's.
# Uses the dev build target/debug/sluice (dependencies optimised), or the
# binary SLUICE names, copied at the start so a concurrent rebuild cannot
# change it between setups.
# Environment: DURATION (default 10s), CONNECTIONS (default 16 per node),
# NODES (default "1 2 3"), RTT_MS (default 1; 0: no relay but with NETNS=1),
# PORT (default 18180; node i listens on PORT+i, its admin API on
# PORT+100+i), SQLITE=0 skips the sqlite setup, NETNS=1 and CUT=1 (above;
# as root), KEEP=1 keeps the work directory (configurations, node logs, wrk
# output).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
duration=${DURATION:-10s}
connections=${CONNECTIONS:-16}
port=${PORT:-18180}
rtt=${RTT_MS:-1}
node_counts=${NODES:-1 2 3}
netns=${NETNS:-0}
cut=${CUT:-0}
if [ "$cut" != 0 ] && [ "$netns" = 0 ]; then
    echo "cluster-bench.sh: CUT=1 needs NETNS=1" >&2
    exit 2
fi
# in_ns NAMESPACE COMMAND...: runs COMMAND in the namespace with NETNS=1, as
# it is otherwise. For a command in the background, whose pid is wanted,
# `ns NAMESPACE` sets the array `pre` to put before it instead (ip netns exec
# execs the command, so the pid stays the command's).
in_ns() {
    local ns=$1
    shift
    if [ "$netns" = 0 ]; then "$@"; else ip netns exec "$ns" "$@"; fi
}
ns() {
    pre=()
    [ "$netns" = 0 ] || pre=(ip netns exec "$1")
}
# The address a process in NAMESPACE listens on.
addr_of() {
    if [ "$netns" = 0 ]; then echo 127.0.0.1; else bash "$root/scripts/netbed.sh" ip "$1"; fi
}
pgsql() { in_ns sbdb psql "$@"; }

if ! command -v wrk >/dev/null; then
    echo "installing wrk" >&2
    { apt-get update -qq && apt-get install -y -qq wrk; } >/dev/null
fi
bash scripts/postgres.sh ensure
command -v psql >/dev/null || { echo "cluster-bench.sh: psql is missing" >&2; exit 1; }
bash scripts/build-guests.sh >/dev/null
source_bin=${SLUICE:-target/debug/sluice}
[ -x "$source_bin" ] || cargo build -p sluice-host --bin sluice
relay_bin=$root/target/debug/delay-relay
[ -x "$relay_bin" ] || cargo build --bin delay-relay

# The work directory must be traversable by the PostgreSQL server's user.
work=$(mktemp -d /tmp/cluster-bench.XXXXXX)
chmod 755 "$work"
nodes=()    # pids of the running `sluice serve` processes
relays=()   # pids of the running delay relays
loads=()    # pids of running wrk processes
pg_up=
bed_up=
cleanup() {
    local pid
    for pid in "${loads[@]}" "${nodes[@]}" "${relays[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${loads[@]}" "${nodes[@]}" "${relays[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    if [ -n "$pg_up" ]; then
        [ -n "${KEEP:-}" ] && cp "$work/pg/server.log" "$work/postgres.log" 2>/dev/null
        bash "$root/scripts/postgres.sh" stop "$work/pg" >/dev/null 2>&1 || true
    fi
    [ -n "$bed_up" ] && bash "$root/scripts/netbed.sh" down

    if [ -n "${KEEP:-}" ]; then
        echo "kept $work" >&2
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

bin=$work/sluice
cp "$source_bin" "$bin"
# One development key for every node, so a token works on any of them.
secret=$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')

if [ "$netns" != 0 ]; then
    most=1
    for n in $node_counts; do [ "$n" -gt "$most" ] && most=$n; done
    [ "$cut" != 0 ] && [ "$most" -lt 3 ] && most=3
    bed_up=1
    bash scripts/netbed.sh up "$most"
fi

# PostgreSQL, with durability as on a real server.
pg_up=1
pg=$(in_ns sbdb bash scripts/postgres.sh start "$work/pg")
pgsql -XAtq "$pg/postgres" -c "ALTER SYSTEM SET fsync = on" \
    -c "ALTER SYSTEM SET synchronous_commit = on" \
    -c "ALTER SYSTEM SET full_page_writes = on" -c "SELECT pg_reload_conf()" >/dev/null
for _ in $(seq 1 50); do
    settings=$(pgsql -XAtq "$pg/postgres" -c "SHOW fsync" -c "SHOW synchronous_commit" \
        -c "SHOW full_page_writes" | tr '\n' ' ')
    [ "$settings" = "on on on " ] && break
    sleep 0.1
done
if [ "$settings" != "on on on " ]; then
    echo "cluster-bench.sh: PostgreSQL durability not on (fsync, synchronous_commit, full_page_writes: $settings)" >&2
    exit 1
fi
pg_version=$(pgsql -XAtq "$pg/postgres" -c "SHOW server_version")

# relay PORT: a delay relay from PORT (in sbdb with NETNS=1) to PostgreSQL;
# sets relay_url to the URL prefix to use instead of $pg ($pg when RTT_MS is
# 0 without NETNS: PostgreSQL listens on sbdb's loopback only).
relay() {
    relay_url=$pg
    [ "$rtt" = 0 ] && [ "$netns" = 0 ] && return
    local pg_port=${pg##*:} host
    host=$(addr_of sbdb)
    ns sbdb
    "${pre[@]}" "$relay_bin" "$host:$1" "127.0.0.1:$pg_port" "$rtt" >/dev/null 2>&1 &
    relays+=("$!")
    for _ in $(seq 1 100); do
        (echo >"/dev/tcp/$host/$1") 2>/dev/null && break
        sleep 0.05
    done
    relay_url="postgres://postgres@$host:$1"
}

stop_relays() {
    local pid
    for pid in "${relays[@]}"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    relays=()
}

# start_node NAME DATABASE_URL PORT NAMESPACE [TOML]: a `sluice serve` process
# with its own data directory, admin API on PORT+100, in NAMESPACE with
# NETNS=1; DATABASE_URL empty for the default SQLite file; TOML appended to
# its configuration.
start_node() {
    local name=$1 url=$2 p=$3 ns=$4 extra=${5:-}
    local dir=$work/$name host pre
    host=$(addr_of "$ns")
    mkdir -p "$dir"
    printf %s "$secret" >"$dir/dev-signing-key"
    chmod 600 "$dir/dev-signing-key"
    local database=
    [ -n "$url" ] && database="database_url = \"$url\""
    cat >"$dir/sluice.toml" <<TOML
listen = "$host:$p"
data_dir = "$dir"
$database
functions_dirs = ["$root/guest-examples", "$root/tests/guests"]
[admin]
listen = "$host:$((p + 100))"
[runtime]
cache_dir = "$root/target/sluice-bench-cache"
$extra
TOML
    ns "$ns"
    RUST_LOG=${RUST_LOG:-warn} "${pre[@]}" "$bin" --config "$dir/sluice.toml" serve >"$dir/node.log" 2>&1 &
    local pid=$!
    nodes+=("$pid")
    for _ in $(seq 1 3000); do
        curl -fs "http://$host:$p/_sluice/health" >/dev/null 2>&1 && return
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
        postgres*) pgsql -XAtq -v ON_ERROR_STOP=1 "$1" -c "$2" ;;
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

# load NAME LUA PATH BASE...: one wrk per node at once, CONNECTIONS each. Prints a line and sets rps, p50, p99 (ms, the worse node) and
# non2xx (all nodes, socket errors included).
load() {
    local name=$1 lua=$2 path=$3
    shift 3
    local c=$connections i=0 base pid outs=()
    loads=()
    for base in "$@"; do
        i=$((i + 1))
        ns sbload
        "${pre[@]}" wrk -t1 -c"$c" -d"$duration" --latency -s "$lua" "$base$path" >"$work/wrk-$name-$i.out" 2>&1 &
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
# CPU the hypervisor gave to someone else (steal): a run with much of it is noise.
cpu_steal() { awk -v hz="$hz" '/^cpu / { printf "%.2f", $9 / hz }' /proc/stat; }
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
cpu_mark() { times >"$work/times"; c_wall=$(date +%s.%N) c_steal=$(cpu_steal) c_machine=$(cpu_machine) c_nodes=$(cpu_pids "${nodes[@]}") c_pg=$(cpu_pg) c_tools=$(cpu_tools); }
cpu_report() {
    local wall machine nodes_cpu pg_cpu tools
    times >"$work/times"
    wall=$(awk -v a="$c_wall" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
    machine=$(awk -v a="$c_machine" -v b="$(cpu_machine)" 'BEGIN { printf "%.1f", b - a }')
    nodes_cpu=$(awk -v a="$c_nodes" -v b="$(cpu_pids "${nodes[@]}")" 'BEGIN { printf "%.1f", b - a }')
    pg_cpu=$(awk -v a="$c_pg" -v b="$(cpu_pg)" 'BEGIN { printf "%.1f", b - a }')
    tools=$(awk -v a="$c_tools" -v b="$(cpu_tools)" 'BEGIN { printf "%.1f", b - a }')
    echo "    CPU s over $wall s wall ($(nproc) cores): all $machine = nodes $nodes_cpu + PostgreSQL $pg_cpu" \
        "+ wrk and tools $tools + other processes and the relays $(awk -v m="$machine" -v a="$nodes_cpu" -v b="$pg_cpu" -v c="$tools" 'BEGIN { printf "%.1f", m - a - b - c }')" \
        "(of which stolen by the hypervisor $(awk -v a="$c_steal" -v b="$(cpu_steal)" 'BEGIN { printf "%.1f", b - a }'))"
}

declare -A t_rps t_p50 t_p99 t_msgs t_bad
setups=()

# tenants CFG ADMIN BASE...: tenants t1..t8, each with the channels example
# deployed and a channel "bench" every node serves; writes write.lua, whose
# requests take turns over them.
tenants() {
    local cfg=$1 admin=$2 t key token base lua=$work/write.lua
    shift 2
    key=$("$bin" --config "$cfg" key create --name bench)
    echo 'local targets = {' >"$lua"
    for t in t1 t2 t3 t4 t5 t6 t7 t8; do
        "$bin" --config "$cfg" --admin-url "$admin" --key "$key" tenant create "$t" >/dev/null
        "$bin" --config "$cfg" --admin-url "$admin" --key "$key" deploy --tenant "$t" \
            --manifest "$root/guest-examples/channels/sluice.toml" \
            "$root/target/wasm32-wasip2/guest/channels.wasm" >/dev/null
        token=$("$bin" --config "$cfg" token --sub alice --tenant "$t")
        curl -fs -X POST "$1/$t/channels" -H "authorization: Bearer $token" \
            -H 'content-type: application/json' -d '{"name":"bench"}' >/dev/null
        for base in "$@"; do
            for _ in $(seq 1 100); do
                curl -fs -o /dev/null -X POST "$base/$t/channels/bench/posts" \
                    -H "authorization: Bearer $token" -H 'content-type: application/json' \
                    -d '{"text":"ready"}' && break
                sleep 0.1
            done
        done
        echo "  { path = \"/$t/channels/bench/posts\", token = \"$token\" }," >>"$lua"
    done
    cat >>"$lua" <<'LUA'
}
local i = 0
request = function()
    i = i % #targets + 1
    local t = targets[i]
    return wrk.format("POST", t.path, {
        ["authorization"] = "Bearer " .. t.token,
        ["content-type"] = "application/json",
    }, '{"text":"load"}')
end
LUA
}

# start_nodes DATABASE_URL TOML NODE...: node K of NODE... in namespace
# sbnK, through a relay of its own to DATABASE_URL (empty: SQLite); sets
# bases to their public URLs and admin to the first one's admin API.
start_nodes() {
    local url=$1 extra=$2 node i=0 node_url host
    shift 2
    bases=()
    for node in "$@"; do
        node_url=$url
        if [ -n "$url" ]; then
            relay $((port + 200 + i))
            node_url="$relay_url/${url##*/}"
        fi
        start_node "$node" "$node_url" $((port + i)) "sbn$((i + 1))" "$extra"
        host=$(addr_of "sbn$((i + 1))")
        bases+=("http://$host:$((port + i))")
        [ "$i" = 0 ] && admin="http://$host:$((port + 100))"
        i=$((i + 1))
    done
}

# run_setup LABEL DATABASE_URL NODE...: fresh nodes, the write route, the
# backlog drained, then the messages run.
run_setup() {
    local label=$1 url=$2 db
    shift 2
    setups+=("$label")
    start_nodes "$url" "" "$@"
    db=${url:-sqlite://$work/$1/sluice.db}
    local cfg=$work/$1/sluice.toml
    local acme
    acme=$("$bin" --config "$cfg" token --sub ops --tenant acme)
    tenants "$cfg" "$admin" "${bases[@]}"
    post_lua "$work/send.lua" "$acme" '{"topic":"bench","payload":{"n":1}}'
    echo "$label ($# node$([ $# -gt 1 ] && echo s))"
    cpu_mark
    load write "$work/write.lua" / "${bases[@]}"
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
    stop_relays
}

# cut_setup: three nodes under write load; node 2's link is cut a third of
# the way through and mended once the queue has drained without it.
cut_setup() {
    local url=$pg/benchcut cfg=$work/cut-1/sluice.toml stored_before stored acked pid
    pgsql -XAtq "$pg/postgres" -c "CREATE DATABASE benchcut" >/dev/null
    start_nodes "$url" $'[queue]\nlease_ms = 5000' cut-1 cut-2 cut-3
    tenants "$cfg" "$admin" "${bases[@]}"
    drained "$url"
    local posts="SELECT count(*) FROM documents WHERE collection = 'posts'"
    stored_before=$(query "$url" "$posts")
    echo "cut (3 nodes; node 2's link cut after a third of the load)"
    local secs=${duration%s}
    (sleep "$(awk -v d="$secs" 'BEGIN { print d / 3 }')" && bash "$root/scripts/netbed.sh" cut 2) &
    pid=$!
    load write "$work/write.lua" / "${bases[@]}"
    wait "$pid"
    acked=$(python3 - "$work"/wrk-write-*.out <<'PY'
import re, sys
total = 0
for path in sys.argv[1:]:
    out = open(path).read()
    done = int(re.search(r"(\d+) requests in", out)[1])
    n = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    total += done - (int(n[1]) if n else 0)
print(total)
PY
    )
    # Node 2 is still cut off: the others must deliver what it had leased.
    drained "$url"
    stored=$(query "$url" "$posts")
    bash "$root/scripts/netbed.sh" mend 2
    local kept=$((stored - stored_before))
    echo "    acknowledged writes: $acked; committed: $kept; lost: $((acked > kept ? acked - kept : 0))" \
        "(committed may exceed acknowledged: requests in flight when the link went)"
    echo "    the queue drained through nodes 1 and 3 with node 2 still cut off"
    errors "$url" cut-1 cut-2 cut-3
    stop_nodes
    stop_relays
    if [ "$acked" -gt "$kept" ]; then
        echo "cluster-bench.sh: $((acked - kept)) acknowledged writes are missing" >&2
        exit 1
    fi
}

where="a relay adding ${rtt} ms of round trip"
[ "$netns" != 0 ] && where="$where, each process in a network namespace of its own (scripts/netbed.sh)"
echo "wrk -t1 -c$connections -d$duration per node, sluice $source_bin," \
    "PostgreSQL $pg_version with fsync/synchronous_commit/full_page_writes on, reached through" \
    "$where," \
    "$(nproc) cores shared by everything; load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
[ "${SQLITE:-1}" = 0 ] || run_setup "sqlite" "" sqlite
first=
for n in $node_counts; do
    pgsql -XAtq "$pg/postgres" -c "CREATE DATABASE bench$n" >/dev/null
    names=()
    for ((k = 1; k <= n; k++)); do names+=("pg$n-$k"); done
    run_setup "postgres x$n" "$pg/bench$n" "${names[@]}"
    first=${first:-postgres x$n}
done

echo
printf '%-12s %12s %9s %9s %11s %12s %12s  %s\n' setup "write req/s" "p50 ms" "p99 ms" "messages/s" "write ratio" "msgs ratio" "non-2xx write+send"
for s in "${setups[@]}"; do
    printf '%-12s %12s %9s %9s %11s %12s %12s  %s\n' "$s" "${t_rps[$s]}" "${t_p50[$s]}" "${t_p99[$s]}" "${t_msgs[$s]}" \
        "$(awk -v a="${t_rps[$s]}" -v b="${t_rps[$first]}" 'BEGIN { printf "%.2f", a / b }')" \
        "$(awk -v a="${t_msgs[$s]}" -v b="${t_msgs[$first]}" 'BEGIN { printf "%.2f", a / b }')" "${t_bad[$s]}"
done
echo "(ratio: to $first in this run; with several nodes, p50 and p99 are the worse node's)"
[ "$cut" = 0 ] || cut_setup
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
