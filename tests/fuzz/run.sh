#!/usr/bin/env bash
# Runs every fuzz target for FUZZ_SECONDS (default 30) each. A crash fails
# the run and prints the fuzzer's report.
set -uo pipefail
build=${1:-build-fuzz}
seconds=${FUZZ_SECONDS:-30}
ran=0 crashed=0
for target in "$build"/tests/fuzz/fuzz_*; do
    [ -x "$target" ] || continue
    ran=$((ran + 1))
    name=$(basename "$target")
    corpus=$(mktemp -d)
    log=$(mktemp)
    if "$target" -max_total_time="$seconds" -max_len=65536 -print_final_stats=1 "$corpus" >"$log" 2>&1; then
        echo "fuzz: $name: $(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$') runs in ${seconds}s, no crash"
    else
        crashed=$((crashed + 1))
        echo "fuzz: $name: CRASHED"
        tail -n 40 "$log"
    fi
    rm -rf "$corpus" "$log"
done
[ $ran -gt 0 ] || { echo "fuzz: no targets built in $build"; exit 1; }
echo "fuzz: $ran targets, $crashed crashed"
[ $crashed -eq 0 ]
