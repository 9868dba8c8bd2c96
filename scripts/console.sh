#!/usr/bin/env bash
# Builds the operators' console (host/console, Vite + TypeScript + uPlot)
# into host/console/dist, which the host embeds when it is compiled: run it
# before `cargo build`. Installs Node.js if it is missing and the console's
# packages from the committed lockfile (`npm ci`); a build newer than every
# source is kept. With --browser, also installs Debian's Chromium for the
# browser tests (tests/tests/console).
set -euo pipefail
cd "$(dirname "$0")/../host/console"

apt_install() {
    local sudo=()
    if [[ $(id -u) != 0 ]]; then
        command -v sudo >/dev/null || { echo "console.sh: $* missing; install the Debian packages $*" >&2; exit 1; }
        sudo=(sudo)
    fi
    echo "console.sh: installing $* (apt-get install)" >&2
    local log
    log=$(mktemp)
    if ! { "${sudo[@]}" apt-get update -q \
        && "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@"; } >"$log" 2>&1; then
        cat "$log" >&2
        rm -f "$log"
        exit 1
    fi
    rm -f "$log"
}

command -v npm >/dev/null || apt_install nodejs npm
if [[ ${1:-} == --browser ]] && ! [[ -x /usr/bin/chromium ]]; then
    apt_install chromium
fi

# The packages, again only when the lockfile changed since they were installed.
if ! [[ -f node_modules/.package-lock.json ]] || [[ package-lock.json -nt node_modules/.package-lock.json ]]; then
    npm ci --no-audit --no-fund --loglevel=error
fi

newest_source=$(find index.html vite.config.ts tsconfig.json package-lock.json src -type f -newer dist/index.html 2>/dev/null | head -1 || true)
if [[ -f dist/index.html && -z $newest_source ]]; then
    exit 0
fi
npm run --silent build >/dev/null
echo "console.sh: built host/console/dist" >&2
