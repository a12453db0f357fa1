#!/usr/bin/env bash
# bench/migration_agent/run.sh BUILD_DIR: live migration end to end through
# three real agents on 127.0.0.1, with ferry's defaults ([migration]
# downtime_ms 100, one stream, no bandwidth cap). A web VM moves back and
# forth between two of them; every figure comes from `ferryctl --json vm
# migrate`, whose downtime runs from the vCPUs paused on the source to the
# VM resumed on the destination, the Raft commit of the new owner included.
# Prints one JSON object (docs/benchmarks.md); progress on stderr.
#
#   FERRY_BENCH_MOVES    moves (default 8)
#   FERRY_BENCH_MEMORY   VM memory (default 1G)
#   FERRY_BENCH_PROFILE  workload (default web:hot=64M,rate=160M)
set -euo pipefail
build=$(cd "${1:-build}" && pwd)
moves=${FERRY_BENCH_MOVES:-8}
memory=${FERRY_BENCH_MEMORY:-1G}
profile=${FERRY_BENCH_PROFILE:-web:hot=64M,rate=160M}
skip() {
    printf '{"bench": "migration_agent", "rows": [{"case": "all", "skipped": "%s"}]}\n' "$1"
    exit 0
}
[ -x "$build/ferryd" ] && [ -x "$build/ferryctl" ] || skip "ferryd or ferryctl not built in $build"
(exec 3<>/dev/kvm) 2>/dev/null || skip "no /dev/kvm: the agents would run the process backend"

work=$(mktemp -d /tmp/ferry-bench-migration-agent.XXXXXX)
pids=()
# The agents' state, config and free ports (shared with `make demo` and the
# integration tests).
FERRYD=$build/ferryd
source "$(dirname "$0")/../../deploy/loopback_cluster.sh"
trap 'loopback_cleanup "$work" "${pids[@]}"' EXIT
h() { "$build/ferryctl" --cred "$work/h$1/state/admin.cred" "${@:2}"; }

echo "bench migration_agent: three agents on 127.0.0.1" >&2
for i in 1 2 3; do
    loopback_agent_config "$work" "$i" "h$i" bench
    loopback_agent_start "$work" "$i" "$work/h$i/log"
    pids+=("$LOOPBACK_PID")
done
voters() { h 1 --json cluster status 2>/dev/null | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["voters"]))' 2>/dev/null || echo 0; }
for _ in $(seq 1 300); do [ "$(voters)" = 3 ] && break; sleep 0.1; done
[ "$(voters)" = 3 ] || skip "the three agents did not form a cluster within 30 s"
h 1 vm create bench1 --memory "$memory" --profile "$profile" --host h1 --start >/dev/null 2>&1 \
    || skip "cannot create the VM: $(h 1 vm create bench1 --memory "$memory" --profile "$profile" --host h1 --start 2>&1 | tail -1)"
# Warm up: the hot set written at least once, so pre-copy meets a steady dirty rate.
hot_pages=$(python3 -c 'import re,sys; m=re.search(r"hot=(\d+)([KMG]?)", sys.argv[1]); print(int(m.group(1))*{"":1,"K":1<<10,"M":1<<20,"G":1<<30}[m.group(2)]//4096 if m else 0)' "$profile")
echo "bench migration_agent: warming up ($profile, $memory)" >&2
for _ in $(seq 1 600); do
    written=$(h 1 --json vm show bench1 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["pages_written"])' 2>/dev/null || echo 0)
    [ "$written" -ge "$hot_pages" ] && break
    sleep 0.2
done

results=$work/results.jsonl
: >"$results"
from=1; to=2
for n in $(seq 1 "$moves"); do
    sleep 2   # let the dirty rate settle after the last switchover
    if h "$from" --json vm migrate bench1 --to "h$to" >"$work/move.json" 2>"$work/move.err"; then
        python3 -c 'import json,sys; print(json.dumps(json.load(open(sys.argv[1]))))' "$work/move.json" >>"$results"
        echo "bench migration_agent: move $n h$from -> h$to: $(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print("downtime %.1f ms (commit %.1f ms), total %.0f ms, %d passes" % (d["downtime_ms"], d["commit_ms"], d["total_ms"], d["passes"]))' "$work/move.json")" >&2
        t=$from; from=$to; to=$t
    else
        echo "bench migration_agent: move $n failed: $(tail -1 "$work/move.err")" >&2
    fi
done

python3 - "$results" "$memory" "$profile" "$moves" <<'PY'
import json, statistics, sys, os
path, memory, profile, moves = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
runs = [json.loads(l) for l in open(path) if l.strip()]
def cpu_model():
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "?"
out = {"bench": "migration_agent", "machine": {"cpus": os.cpu_count(), "model": cpu_model()},
       "setup": f"3 agents on 127.0.0.1, defaults; VM {memory} {profile}; {len(runs)} of {moves} moves succeeded",
       "rows": []}
def q(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p * (len(values) - 1))))]
label = f"web {memory} through agents"
if not runs:
    out["rows"].append({"case": label, "skipped": "no move succeeded"})
else:
    def row(case, key, unit, goal=None):
        vals = [r[key] for r in runs]
        r = {"case": f"{label}: {case} median", "unit": unit, "better": "lower",
             "ferry": round(statistics.median(vals), 2), "p90": round(q(vals, 0.9), 2),
             "min": round(min(vals), 2), "max": round(max(vals), 2)}
        if goal is not None:
            r["goal"] = goal
        out["rows"].append(r)
    row("downtime, Raft commit included", "downtime_ms", "ms", 10.0)
    row("Raft commit of the new owner", "commit_ms", "ms")
    row("stop-and-copy", "stop_copy_ms", "ms")
    row("total time", "total_ms", "ms")
    row("bytes sent", "bytes_sent", "bytes")
    row("passes", "passes", "passes")
print(json.dumps(out, indent=1))
PY
