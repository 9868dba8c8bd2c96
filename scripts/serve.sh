#!/usr/bin/env bash
# Builds the example guests, the console and the host, then serves the examples on
# http://127.0.0.1:8080 with the embedded SQLite database in ./.sluice.
# Extra arguments go to `sluice serve` (see `sluice serve --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build-guests.sh
bash scripts/console.sh
# Built exactly as the test command builds it (same targets, same feature
# set), so serving and testing share one build instead of compiling wasmtime
# twice.
cargo build --locked --tests
exec target/debug/sluice serve "$@"
