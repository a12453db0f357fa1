#!/usr/bin/env bash
# Runs every fuzz target for FUZZ_SECONDS (default 30) each; a crash stops the run.
set -euo pipefail
build=${1:-build-fuzz}
seconds=${FUZZ_SECONDS:-30}
found=0
for target in "$build"/tests/fuzz/fuzz_*; do
    [ -x "$target" ] || continue
    found=1
    corpus=$(mktemp -d)
    echo "fuzz: $(basename "$target") for ${seconds}s"
    "$target" -max_total_time="$seconds" -max_len=65536 -print_final_stats=1 "$corpus" 2>&1 | tail -n 3
    rm -rf "$corpus"
done
[ $found -eq 1 ] || { echo "fuzz: no targets built in $build (is clang installed?)"; exit 1; }
