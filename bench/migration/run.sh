#!/usr/bin/env bash
# bench/migration/run.sh BUILD_DIR: prints one JSON object (see bench_migration.c).
set -euo pipefail
build=${1:-build}
exe="$build/bench/migration/bench_migration"
if [ ! -x "$exe" ]; then
    echo "bench migration: $exe not built (make -C $build bench_migration)" >&2
    echo '{"bench": "migration", "rows": [{"case": "all", "skipped": "bench_migration not built"}]}'
    exit 0
fi
exec "$exe"
