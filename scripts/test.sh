#!/usr/bin/env bash
# Runs the whole test suite: checks the dependencies against the RustSec
# advisories (scripts/audit.sh), builds the guests once (installing the
# wasm32-wasip2 target if needed), then the host's unit tests and the
# end-to-end tests against real hosts over HTTP on SQLite, then the
# end-to-end tests again on PostgreSQL. One throw-away PostgreSQL server
# (scripts/postgres.sh, which installs it if missing) serves the whole run.
# Arguments go to both `cargo test` runs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/audit.sh
bash scripts/build-guests.sh

pg_dir=$(mktemp -d "${TMPDIR:-/tmp}/sluice-pg.XXXXXX")
trap 'bash scripts/postgres.sh stop "$pg_dir"' EXIT
SLUICE_TEST_POSTGRES=$(bash scripts/postgres.sh start "$pg_dir")
export SLUICE_TEST_POSTGRES

cargo test --locked "$@"

# The end-to-end tests again, on PostgreSQL. Chosen by target, not with
# `-p sluice-tests`: the same package selection resolves the same dependency
# features, so nothing recompiles. The cluster binary always runs on
# PostgreSQL, so it ran above. Tests of what only a host that owns its
# SQLite database does are left out by name (the runner counts them as
# filtered out); run on PostgreSQL they would fail saying so.
sqlite_only=(
    store::blobs::recovery::a_crash_between_rename_and_commit_leaves_no_blob
    store::blobs::recovery::a_row_whose_file_is_gone_is_dropped_at_start
)
# Cargo's arguments, then (after `--`) the test binary's, with the skips.
cargo_args=()
test_args=()
while [ "$#" -gt 0 ] && [ "$1" != "--" ]; do
    cargo_args+=("$1")
    shift
done
[ "$#" -gt 0 ] && shift
test_args=("$@")
for name in "${sqlite_only[@]}"; do
    test_args+=(--skip "$name")
done
SLUICE_TEST_BACKEND=postgres cargo test --locked --test e2e "${cargo_args[@]}" -- "${test_args[@]}"
