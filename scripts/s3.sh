#!/usr/bin/env bash
# A throw-away S3-compatible server for the tests: s3s-fs, a real S3 server
# (signature checks, multipart uploads, ranges, listings) that keeps each
# object as a file, so tests can look at the bucket on disk.
#
#   s3.sh ensure      builds s3s-fs into target/tools/bin, once
#   s3.sh start DIR   serves DIR on a free loopback port, with the bucket
#                     `sluice-tests`; prints the endpoint (the only output)
#   s3.sh stop DIR    stops it and removes DIR
#
# Its keys are the test ones: access key `sluice-test`, secret key
# `sluice-test-secret`. Objects are under DIR/root/sluice-tests/.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

# The newest s3s-fs that builds with the Rust this repository pins.
VERSION=0.14.1
BIN=$root/target/tools/bin/s3s-fs
ACCESS_KEY=sluice-test
SECRET_KEY=sluice-test-secret
BUCKET=sluice-tests

ensure() {
    if [[ -x $BIN ]] && [[ $("$BIN" --version 2>/dev/null) == *"$VERSION"* ]]; then
        return
    fi
    echo "s3.sh: building s3s-fs $VERSION into target/tools (once)" >&2
    local build log
    build=$(mktemp -d "${TMPDIR:-/tmp}/s3s-fs-build.XXXXXX")
    log=$build.log
    if ! cargo install --locked --quiet --root "$root/target/tools" --target-dir "$build" \
        s3s-fs --version "$VERSION" --features binary >"$log" 2>&1; then
        cat "$log" >&2
        rm -rf "$build" "$log"
        exit 1
    fi
    rm -rf "$build" "$log"
}

# shellcheck source=scripts/free-port.sh
source "$root/scripts/free-port.sh"

start() {
    local dir=$1
    ensure
    mkdir -p "$dir/root/$BUCKET"
    dir=$(cd "$dir" && pwd)
    local port attempt tries pid
    for attempt in 1 2 3 4 5; do
        port=$(free_port)
        "$BIN" --host 127.0.0.1 --port "$port" --access-key "$ACCESS_KEY" --secret-key "$SECRET_KEY" \
            "$dir/root" >"$dir/server.log" 2>&1 &
        pid=$!
        echo "$pid" >"$dir/pid"
        tries=0
        # Up once the port answers; gone if it could not bind.
        while kill -0 "$pid" 2>/dev/null; do
            if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
                echo "http://127.0.0.1:$port"
                return
            fi
            tries=$((tries + 1))
            if ((tries > 100)); then
                kill "$pid" 2>/dev/null || true
                break
            fi
            sleep 0.1
        done
    done
    echo "s3.sh: s3s-fs did not start" >&2
    cat "$dir/server.log" >&2
    exit 1
}

stop() {
    local dir=$1
    [[ -d $dir ]] || return 0
    if [[ -f $dir/pid ]]; then
        kill "$(cat "$dir/pid")" 2>/dev/null || true
    fi
    rm -rf "$dir"
}

case "${1:-}" in
    ensure) ensure ;;
    start) start "${2:?usage: s3.sh start DIR}" ;;
    stop) stop "${2:?usage: s3.sh stop DIR}" ;;
    *)
        echo "usage: s3.sh ensure | start DIR | stop DIR" >&2
        exit 2
        ;;
esac
