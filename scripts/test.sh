#!/usr/bin/env bash
# Runs the whole test suite: builds the guests once (installing the
# wasm32-wasip2 target if needed), then the host's unit tests and the
# end-to-end tests against real hosts over HTTP and real SQLite files.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build-guests.sh
cargo test --locked "$@"
