#!/usr/bin/env bash
# Runs the whole test suite: checks the dependencies against the RustSec
# advisories (scripts/audit.sh), builds the guests once (installing the
# wasm32-wasip2 target if needed) and the console (installing Node.js's
# packages and Chromium if needed), packages the SDK as a guest crate
# elsewhere would get it, then the host's unit tests and the
# end-to-end tests against real hosts over HTTP on SQLite, then the
# end-to-end tests again on PostgreSQL, and the blob tests once more with
# blobs in an S3 bucket. One throw-away PostgreSQL server
# (scripts/postgres.sh, which installs it if missing) and one S3 server
# (scripts/s3.sh, which builds it once into target/tools) serve the whole
# run. Arguments go to every `cargo test` run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/audit.sh
bash scripts/build-guests.sh
# The console is embedded in the host when it compiles, so it is built
# first; the browser tests need Chromium.
bash scripts/console.sh --browser
# The OpenAPI validator the contract tests check documents with.
bash scripts/pytools.sh
# The SDK builds outside this repository: packaged with the contract it
# carries, and built from the package.
cargo package --locked --quiet --allow-dirty -p sluice-sdk-macros -p sluice-sdk

pg_dir=$(mktemp -d "${TMPDIR:-/tmp}/sluice-pg.XXXXXX")
s3_dir=$(mktemp -d "${TMPDIR:-/tmp}/sluice-s3.XXXXXX")
trap 'bash scripts/postgres.sh stop "$pg_dir"; bash scripts/s3.sh stop "$s3_dir"' EXIT
SLUICE_TEST_POSTGRES=$(bash scripts/postgres.sh start "$pg_dir")
SLUICE_TEST_S3=$(bash scripts/s3.sh start "$s3_dir")
SLUICE_TEST_S3_DIR=$s3_dir
export SLUICE_TEST_POSTGRES SLUICE_TEST_S3 SLUICE_TEST_S3_DIR

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

# The blob tests again, on PostgreSQL with blobs in the S3 bucket, as a
# cluster keeps them. Left out: what only files in a directory have
# (paths, links).
directory_only=(
    store::blobs::names::blob_names_are_opaque_and_never_reach_a_path
    store::blobs::names::symlinks_in_the_blob_tree_are_not_followed
)
for name in "${directory_only[@]}"; do
    test_args+=(--skip "$name")
done
SLUICE_TEST_BACKEND=postgres SLUICE_TEST_BLOBS=s3 \
    cargo test --locked --test e2e "${cargo_args[@]}" -- store::blobs "${test_args[@]}"
