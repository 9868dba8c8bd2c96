#!/usr/bin/env bash
# A throw-away PostgreSQL server for the tests.
#
#   postgres.sh ensure      installs Debian's `postgresql` package if the
#                           server binaries are missing
#   postgres.sh start DIR   initdb a cluster in DIR, start it on a free
#                           loopback port, print its URL (the only output)
#   postgres.sh stop DIR    stop it at once and remove DIR
#   postgres.sh down DIR    stop it, keeping its data (an outage: every
#                           connection breaks; fast mode, so that commits
#                           survive even without fsync)
#   postgres.sh up DIR      start it again on the same port
#
# The cluster trusts every local connection and does not fsync: test data
# only. PostgreSQL refuses to run as root, so as root the server runs as the
# system user `sluice-pg` (created if missing; `nobody` without useradd).
set -euo pipefail

# Prints the directory holding initdb, pg_ctl and postgres, or fails.
find_bindir() {
    if command -v initdb >/dev/null && command -v pg_ctl >/dev/null && command -v postgres >/dev/null; then
        dirname "$(command -v pg_ctl)"
        return
    fi
    # Debian keeps them out of PATH, one directory per major version.
    local dir
    for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -rV); do
        if [[ -x $dir/initdb && -x $dir/pg_ctl && -x $dir/postgres ]]; then
            echo "$dir"
            return
        fi
    done
    return 1
}

ensure() {
    find_bindir >/dev/null && return
    local sudo=()
    if [[ $(id -u) != 0 ]]; then
        command -v sudo >/dev/null || { echo "postgres.sh: PostgreSQL is missing; install the postgresql package" >&2; exit 1; }
        sudo=(sudo)
    fi
    echo "postgres.sh: installing PostgreSQL (apt-get install postgresql)" >&2
    local log
    log=$(mktemp)
    if ! { "${sudo[@]}" apt-get update -q \
        && "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql; } >"$log" 2>&1; then
        cat "$log" >&2
        rm -f "$log"
        exit 1
    fi
    rm -f "$log"
    find_bindir >/dev/null || { echo "postgres.sh: no PostgreSQL server binaries after installing" >&2; exit 1; }
}

# The user the server runs as: ourselves, or an unprivileged one as root.
server_user() {
    if [[ $(id -u) != 0 ]]; then
        id -un
    elif id sluice-pg >/dev/null 2>&1; then
        echo sluice-pg
    elif command -v useradd >/dev/null \
        && useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin sluice-pg >/dev/null 2>&1; then
        echo sluice-pg
    else
        echo nobody
    fi
}

# Runs a command as user $1 (directly when that is us).
as_user() {
    local user=$1
    shift
    if [[ $user == "$(id -un)" ]]; then
        "$@"
    elif command -v runuser >/dev/null; then
        runuser -u "$user" -- "$@"
    elif command -v setpriv >/dev/null; then
        setpriv --reuid="$user" --regid="$(id -g "$user")" --init-groups -- "$@"
    else
        su -s /bin/bash -c "$(printf '%q ' "$@")" "$user"
    fi
}

# shellcheck source=scripts/free-port.sh
source "$(dirname "${BASH_SOURCE[0]}")/free-port.sh"

start() {
    local dir=$1
    ensure
    local bin user
    bin=$(find_bindir)
    user=$(server_user)
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    chown "$user" "$dir"
    chmod 700 "$dir"
    # The server user must reach DIR: a parent only root can enter fails here
    # with a clear message rather than deep inside initdb.
    if ! as_user "$user" test -w "$dir"; then
        echo "postgres.sh: $user cannot write to $dir (check the parent directories' permissions)" >&2
        exit 1
    fi
    # Tools run as another user may not be able to enter our working directory.
    cd "$dir"
    # The C locale: the same sort order on every machine.
    as_user "$user" "$bin/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --locale=C --no-sync \
        >"$dir/initdb.log" 2>&1 \
        || { cat "$dir/initdb.log" >&2; exit 1; }
    as_user "$user" mkdir "$dir/socket"
    cat >>"$dir/data/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir/socket'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 400
shared_buffers = 128MB
EOF
    local port attempt
    for attempt in 1 2 3 4 5; do
        port=$(free_port)
        if as_user "$user" "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -o "-p $port" -w -t 60 start >/dev/null; then
            break
        fi
        if [[ $attempt == 5 ]]; then
            cat "$dir/server.log" >&2
            exit 1
        fi
    done
    echo "$port" >"$dir/port"
    ready "$bin" "$port" "$dir"
    echo "postgres://postgres@127.0.0.1:$port"
}

# Waits until the server on port $2 answers.
ready() {
    local bin=$1 port=$2 dir=$3
    local isready=pg_isready
    [[ -x $bin/pg_isready ]] && isready=$bin/pg_isready
    local tries=0
    until "$isready" -q -h 127.0.0.1 -p "$port" -U postgres; do
        tries=$((tries + 1))
        if ((tries > 100)); then
            echo "postgres.sh: the server on port $port is not ready" >&2
            cat "$dir/server.log" >&2
            exit 1
        fi
        sleep 0.1
    done
}

down() {
    local dir=$1 bin user
    bin=$(find_bindir)
    user=$(stat -c %U "$dir/data")
    cd "$dir"
    as_user "$user" "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null
}

up() {
    local dir=$1 bin user port
    bin=$(find_bindir)
    user=$(stat -c %U "$dir/data")
    port=$(cat "$dir/port")
    cd "$dir"
    as_user "$user" "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -o "-p $port" -w -t 60 start >/dev/null
    ready "$bin" "$port" "$dir"
}

stop() {
    local dir=$1
    [[ -d $dir ]] || return 0
    if [[ -f $dir/data/postmaster.pid ]]; then
        local bin user
        bin=$(find_bindir)
        user=$(stat -c %U "$dir/data")
        cd "$dir"
        # If pg_ctl cannot, SIGQUIT is the same immediate shutdown.
        as_user "$user" "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 \
            || kill -QUIT "$(head -n 1 "$dir/data/postmaster.pid")" 2>/dev/null || true
        cd /
    fi
    rm -rf "$dir"
}

case "${1:-}" in
    ensure) ensure ;;
    start) start "${2:?usage: postgres.sh start DIR}" ;;
    stop) stop "${2:?usage: postgres.sh stop DIR}" ;;
    down) down "${2:?usage: postgres.sh down DIR}" ;;
    up) up "${2:?usage: postgres.sh up DIR}" ;;
    *)
        echo "usage: postgres.sh ensure | start DIR | stop DIR | down DIR | up DIR" >&2
        exit 2
        ;;
esac
