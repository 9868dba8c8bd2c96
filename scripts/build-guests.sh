#!/usr/bin/env bash
# Builds every guest component, the examples and the test guests, for
# wasm32-wasip2 with the `guest` profile: one cargo invocation into the
# shared target/, so each guest compiles once per run. The guests are the
# workspace members whose library is a cdylib (Cargo.toml lists them; the
# examples are default members too, for their tests, which run natively).
# Installs the target if needed.
set -euo pipefail
cd "$(dirname "$0")/.."

rustup target list --installed | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2

mapfile -t guests < <(cargo metadata --format-version 1 --no-deps | python3 -c '
import json, sys
meta = json.load(sys.stdin)
for package in meta["packages"]:
    cdylib = any("cdylib" in t["crate_types"] for t in package["targets"])
    if package["id"] in meta["workspace_members"] and cdylib:
        print(package["name"])
')
[ "${#guests[@]}" -gt 0 ] || { echo "build-guests.sh: no guests among the workspace members" >&2; exit 1; }

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
