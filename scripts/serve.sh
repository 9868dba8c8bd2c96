#!/usr/bin/env bash
# Builds the example guests and the host, then serves the examples on
# http://127.0.0.1:8080 with the embedded SQLite database in ./.sluice.
# Extra arguments go to `sluice serve` (see `sluice serve --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build-guests.sh
cargo build -p sluice-host --bin sluice
exec target/debug/sluice serve "$@"
