# lib.sh - shared helpers for the integration scripts (sourced, not run).
# Each script gets FERRYD, FERRYCTL, FERRY_BUILD_DIR and FERRY_SOURCE_DIR from ctest.
set -euo pipefail

: "${FERRYD:?run through ctest (FERRYD unset)}"
: "${FERRYCTL:?run through ctest (FERRYCTL unset)}"
TEST_NAME=$(basename "$0" .sh)
WORK=$(mktemp -d "/tmp/ferry-$TEST_NAME.XXXXXX")
# A private runtime dir, so a developer's own dev agent is never touched.
export XDG_RUNTIME_DIR=$WORK/run
mkdir -p "$XDG_RUNTIME_DIR"
unset FERRY_CRED
PIDS=()

cleanup() {
    local rc=$?
    for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [ $rc -ne 0 ]; then
        echo "--- logs of $TEST_NAME (kept in $WORK) ---" >&2
        for f in "$WORK"/*.log; do [ -f "$f" ] && { echo "== $f" >&2; tail -n 40 "$f" >&2; }; done
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT

step() { echo "== $TEST_NAME: $*"; }
fail() { echo "FAIL $TEST_NAME: $*" >&2; exit 1; }

# A TCP port nothing listens on right now (the kernel picks it).
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# wait_for SECONDS COMMAND...: polls COMMAND every 0.1 s until it succeeds.
wait_for() {
    local deadline=$((SECONDS + $1)); shift
    until "$@" >/dev/null 2>&1; do
        [ $SECONDS -lt $deadline ] || return 1
        sleep 0.1
    done
}

# json_get FILE PYTHON-EXPR: evaluates EXPR with `d` bound to the parsed JSON.
json_get() {
    python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print($2)" "$1"
}

# Starts `ferryd --dev` with extra flags; sets DEV_PID and DEV_LOG. Waits
# until the agent says it is ready.
start_dev_agent() {
    DEV_LOG=$WORK/dev-$#-$RANDOM.log
    "$FERRYD" --dev --set ports.raft="$(free_port)" "$@" >"$DEV_LOG" 2>&1 &
    DEV_PID=$!
    PIDS+=("$DEV_PID")
    wait_for 20 grep -q "is ready" "$DEV_LOG" || fail "dev agent did not become ready: $(tail -n 5 "$DEV_LOG")"
}
