#!/usr/bin/env bash
# Fuzzes the host's parsers of untrusted input with libFuzzer (cargo fuzz):
# the targets of tests/fuzz, each for SECONDS (default 600), JOBS at once
# (default 1; one build, then each run takes a core).
#
#   bash scripts/fuzz.sh [SECONDS] [TARGET...]
#
# Needs a nightly toolchain (cargo fuzz builds with AddressSanitizer) and
# cargo-fuzz; installs both if missing. The instrumented build goes to
# target/fuzz, so the normal builds are left alone. New inputs go to
# target/fuzz/corpus/TARGET (the committed seeds in tests/fuzz/corpus stay
# as they are; MERGE=1 minimises the new inputs into them), a crash to
# target/fuzz/artifacts/TARGET/, and each run's log and final stats to
# target/fuzz/TARGET.log. `cargo test` replays the committed corpora.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
seconds="${1:-600}"
shift || true
jobs="${JOBS:-1}"

if ! rustup toolchain list | grep -q '^nightly'; then
    rustup toolchain install nightly --profile minimal
fi
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
fuzz=(cargo +nightly fuzz)
opts=(--fuzz-dir tests/fuzz --target-dir target/fuzz)

if [[ $# -gt 0 ]]; then
    targets=("$@")
else
    mapfile -t targets < <("${fuzz[@]}" list --fuzz-dir tests/fuzz)
fi
# One build for all: `cargo fuzz build` without a target builds them all.
"${fuzz[@]}" build "${opts[@]}"

run() {
    local t="$1" out="target/fuzz"
    mkdir -p "$out/corpus/$t" "$out/artifacts/$t"
    if "${fuzz[@]}" run "${opts[@]}" "$t" "$out/corpus/$t" "tests/fuzz/corpus/$t" -- \
        -max_total_time="$seconds" -artifact_prefix="$out/artifacts/$t/" \
        -print_final_stats=1 >"$out/$t.log" 2>&1; then
        echo "$t: clean for $seconds s: $(grep -E '^stat::number_of_executed_units' "$out/$t.log" | awk '{print $2}') executions," \
            "$(find "$out/corpus/$t" -type f | wc -l) corpus inputs, $(grep -oE 'cov: [0-9]+' "$out/$t.log" | tail -1)"
    else
        echo "$t: FAILED; see $out/$t.log and $out/artifacts/$t/" >&2
        return 1
    fi
    if [[ -n "${MERGE:-}" ]]; then
        "${fuzz[@]}" run "${opts[@]}" "$t" "tests/fuzz/corpus/$t" "$out/corpus/$t" -- -merge=1 \
            >>"$out/$t.log" 2>&1
    fi
}

status=0
running=0
for t in "${targets[@]}"; do
    run "$t" &
    running=$((running + 1))
    if ((running >= jobs)); then
        wait -n || status=1
        running=$((running - 1))
    fi
done
while ((running > 0)); do
    wait -n || status=1
    running=$((running - 1))
done
exit "$status"
