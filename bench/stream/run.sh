#!/usr/bin/env bash
# bench/stream/run.sh BUILD_DIR: prints one JSON object (see bench_stream.c).
set -euo pipefail
build=${1:-build}
exe="$build/bench/stream/bench_stream"
if [ ! -x "$exe" ]; then
    echo "bench stream: $exe not built (make -C $build bench_stream)" >&2
    echo '{"bench": "stream", "rows": [{"case": "all", "skipped": "bench_stream not built"}]}'
    exit 0
fi
exec "$exe"
