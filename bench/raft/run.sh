#!/usr/bin/env bash
# bench/raft/run.sh BUILD_DIR [FLAGS]: prints one JSON object (see bench_raft.c).
#
#   bench/run raft                      # 3 and 5 agents, etcd 3, 20 kills, 600 s idle each
#   bash bench/raft/run.sh build --quick                 # 5 kills, 20 s idle
#   bash bench/raft/run.sh build --idle-seconds 120      # any bench_raft flag
#   TMPDIR=/dev/shm bash bench/raft/run.sh build         # state on tmpfs: no disk stalls
#
# etcd comes from Debian's etcd-server (/usr/bin/etcd); without it the etcd
# anchors say "anchor_skipped". Every process started lives on 127.0.0.1
# and dies with the benchmark; the scratch directory is removed on exit.
set -euo pipefail
build=$(cd "${1:-build}" 2>/dev/null && pwd || echo "${1:-build}")
shift || true
exe="$build/bench/raft/bench_raft"
ferryd="$build/ferryd"
if [ ! -x "$exe" ] || [ ! -x "$ferryd" ]; then
    echo "bench raft: $exe or $ferryd not built (make -C $build bench_raft ferryd)" >&2
    echo '{"bench": "raft", "rows": [{"case": "all", "skipped": "bench_raft or ferryd not built"}]}'
    exit 0
fi
etcd=${FERRY_BENCH_ETCD:-/usr/bin/etcd}
[ -x "$etcd" ] || etcd=none

# State dirs and logs go under $TMPDIR (default /tmp): its disk's fsync
# stalls are part of what is measured (TMPDIR=/dev/shm takes them out).
work=$(mktemp -d "${TMPDIR:-/tmp}/ferry-bench-raft.XXXXXX")
bench_pid=
cleanup() {
    # bench_raft's children die with it (PR_SET_PDEATHSIG); stop it first.
    if [ -n "$bench_pid" ]; then kill -TERM "$bench_pid" 2>/dev/null || true; wait "$bench_pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A private runtime dir, so that nothing finds a developer's own agent.
export XDG_RUNTIME_DIR=$work/run
mkdir -p "$XDG_RUNTIME_DIR"
unset FERRY_CRED

"$exe" --ferryd "$ferryd" --etcd "$etcd" --workdir "$work" "$@" &
bench_pid=$!
rc=0
wait "$bench_pid" || rc=$?
bench_pid=
if [ $rc -ne 0 ]; then
    echo "bench raft: bench_raft exited with $rc" >&2
    echo '{"bench": "raft", "rows": [{"case": "all", "skipped": "bench_raft failed; see stderr"}]}'
fi
