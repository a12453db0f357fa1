#!/usr/bin/env bash
# bench/raft/disk_stall_repro.sh BUILD_DIR [STALL_MS] [EVERY] [SECONDS]: do disk
# stalls cause elections? Three agents on 127.0.0.1 (tests/integration/lib.sh),
# each with an LD_PRELOAD shim (slow_sync.c) that makes every EVERY-th
# fdatasync() of the agent take STALL_MS longer; the cluster idles for SECONDS
# while every agent's term is polled every 0.5 s. Only the agents' syncs are
# slowed, so two builds compare under the same stalls whatever else the
# machine does. Prints one line; asserts nothing.
#
#   bash bench/raft/disk_stall_repro.sh build 150 3 60
#   stalls of 150 ms on every fdatasync number k*3, 60 s idle: 0 term changes (term 2 -> 2)
set -euo pipefail
build=$(cd "${1:-build}" && pwd)
stall_ms=${2:-150}
every=${3:-3}
seconds=${4:-60}
here=$(cd "$(dirname "$0")" && pwd)
export FERRYD=$build/ferryd FERRYCTL=$build/ferryctl
cd "$here/../.."
source tests/integration/lib.sh
cc -O2 -shared -fPIC -o "$WORK/slow_sync.so" "$here/slow_sync.c" -ldl

for i in 1 2 3; do make_agent "$i"; done
export FERRY_SLOW_SYNC_MS=$stall_ms FERRY_SLOW_SYNC_EVERY=$every LD_PRELOAD=$WORK/slow_sync.so
for i in 1 2 3; do start_agent "$i"; done
unset LD_PRELOAD
whole() {
    local leader
    leader=$(status_field 1 'd["leader"]') && [ -n "$leader" ] &&
        [ "$(status_field 1 'len(d["voters"])')" = 3 ] &&
        [ "$(status_field 2 'd["leader"]')" = "$leader" ] && [ "$(status_field 3 'd["leader"]')" = "$leader" ]
}
wait_for 60 whole || fail "the cluster did not form"
sleep 2
max_term() {
    local t m=0
    for i in 1 2 3; do
        t=$(status_field "$i" 'd["term"]' 2>/dev/null) || continue
        [ -n "$t" ] && [ "$t" -gt "$m" ] && m=$t
    done
    echo "$m"
}
first=$(max_term); last=$first; changes=0
end=$((SECONDS + seconds))
while [ "$SECONDS" -lt "$end" ]; do
    sleep 0.5
    now=$(max_term)
    if [ "$now" -gt "$last" ]; then changes=$((changes + now - last)); last=$now; fi
done
echo "stalls of $stall_ms ms on every fdatasync number k*$every, $seconds s idle: $changes term changes (term $first -> $last)"
