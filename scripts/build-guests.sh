#!/usr/bin/env bash
# Builds every guest component, the examples and the test guests (those in
# tests/scheduled/ and
# tests/hostile/ too), for wasm32-wasip2 with the `guest` profile: one cargo
# invocation into the shared target/, so each guest compiles once per run.
# Installs the target if needed.
set -euo pipefail
cd "$(dirname "$0")/.."

rustup target list --installed | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2

guests=(
    todo
    channels
    janitor
    files
    stage-then-fail
    stage-then-trap
    counter
    echo
    probe
    consumer
    outsider
    blobs-probe
    cache-probe
    ticker
    hostile
    socket
)

packages=()
for guest in "${guests[@]}"; do
    packages+=(-p "$guest")
done
cargo build --profile guest --target wasm32-wasip2 "${packages[@]}"

# Cargo names a cdylib after its crate, with `-` turned into `_`.
echo "Guest components:"
for guest in "${guests[@]}"; do
    echo "  $PWD/target/wasm32-wasip2/guest/${guest//-/_}.wasm"
done
