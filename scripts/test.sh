#!/usr/bin/env bash
# Runs the whole test suite: builds the guests once (installing the
# wasm32-wasip2 target if needed), then the host's unit tests and the
# end-to-end tests against real hosts over HTTP on SQLite, then the
# end-to-end tests again on PostgreSQL. One throw-away PostgreSQL server
# (scripts/postgres.sh, which installs it if missing) serves the whole run.
# Arguments go to both `cargo test` runs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build-guests.sh

pg_dir=$(mktemp -d "${TMPDIR:-/tmp}/sluice-pg.XXXXXX")
trap 'bash scripts/postgres.sh stop "$pg_dir"' EXIT
SLUICE_TEST_POSTGRES=$(bash scripts/postgres.sh start "$pg_dir")
export SLUICE_TEST_POSTGRES

cargo test --locked "$@"

# The end-to-end test binaries (tests/tests/<name>/main.rs) again, on
# PostgreSQL. Chosen by target, not with `-p sluice-tests`: the same package
# selection resolves the same dependency features, so nothing recompiles.
e2e=()
for main in tests/tests/*/main.rs; do
    e2e+=(--test "$(basename "$(dirname "$main")")")
done
SLUICE_TEST_BACKEND=postgres cargo test --locked "${e2e[@]}" "$@"
