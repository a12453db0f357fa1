#!/usr/bin/env bash
# bench/vmm/run.sh BUILD_DIR: prints one JSON object (see bench_vmm.c).
set -euo pipefail
build=${1:-build}
exe="$build/bench/vmm/bench_vmm"
if [ ! -x "$exe" ]; then
    echo "bench vmm: $exe not built (make -C $build bench_vmm)" >&2
    echo '{"bench": "vmm", "rows": [{"case": "all", "skipped": "bench_vmm not built"}]}'
    exit 0
fi
exec "$exe"
