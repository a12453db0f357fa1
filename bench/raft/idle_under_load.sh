#!/usr/bin/env bash
# bench/raft/idle_under_load.sh BUILD_DIR [SECONDS] [BENCH FLAGS...]: bench/raft with
# 3 ferry agents only (no etcd), a SECONDS-long idle window (default 120) and
# short other phases, while a bounded disk load runs beside it on the same
# filesystem ($TMPDIR, default /tmp): dd writes 64 MiB and fdatasyncs it,
# over and over, until the bench ends. The load makes the long fdatasync
# stalls that caused idle elections on a busy machine, on demand, so two
# builds can be compared under the same load. Prints run.sh's JSON.
#
#   bash bench/raft/idle_under_load.sh build 120
set -euo pipefail
build=${1:-build}
seconds=${2:-120}
shift 2 || shift $# || true
here=$(cd "$(dirname "$0")" && pwd)
load_dir=$(mktemp -d "${TMPDIR:-/tmp}/ferry-disk-load.XXXXXX")
load_pid=
cleanup() {
    if [ -n "$load_pid" ]; then kill "$load_pid" 2>/dev/null || true; wait "$load_pid" 2>/dev/null || true; fi
    rm -rf "$load_dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# At most 2 hours of load whatever happens to the bench.
( end=$((SECONDS + 7200))
  while [ "$SECONDS" -lt "$end" ]; do
      dd if=/dev/zero of="$load_dir/load" bs=1M count=64 conv=fdatasync status=none
  done ) &
load_pid=$!
echo "bench raft: disk load running (pid $load_pid) in $load_dir" >&2
bash "$here/run.sh" "$build" --sizes 3 --etcd-sizes none --idle-seconds "$seconds" --kills 3 --commits 300 \
    --throughput-seconds 3 "$@"
