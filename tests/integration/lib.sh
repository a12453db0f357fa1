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

# --set flags giving a dev agent free ports (other agents may hold the defaults).
dev_port_flags() {
    local key
    for key in raft gossip migration http; do printf -- '--set ports.%s=%s ' "$key" "$(free_port)"; done
}

# Starts `ferryd --dev` with extra flags; sets DEV_PID and DEV_LOG. Waits
# until the agent says it is ready.
start_dev_agent() {
    DEV_LOG=$WORK/dev-$#-$RANDOM.log
    "$FERRYD" --dev $(dev_port_flags) "$@" >"$DEV_LOG" 2>&1 &
    DEV_PID=$!
    PIDS+=("$DEV_PID")
    wait_for 20 grep -q "is ready" "$DEV_LOG" || fail "dev agent did not become ready: $(tail -n 5 "$DEV_LOG")"
}

# --- multi-agent clusters on loopback ---------------------------------------
# make_agent I [EXTRA_INI]: state dir, config and ports for agent hI. Agent 1
# founds the cluster; the others copy its cluster key and join through its
# gossip port. Sets nothing global but files under $WORK/hI.
make_agent() {
    local i=$1 extra=${2:-}
    local dir=$WORK/h$i
    mkdir -p "$dir"
    if [ "$i" -eq 1 ]; then
        "$FERRYD" init --cluster itest --state-dir "$dir/state" --name "h$i" >/dev/null
    else
        mkdir -p "$dir/state"
        cp "$WORK/h1/state/cluster.key" "$dir/state/"
        "$FERRYD" init --cluster itest --state-dir "$dir/state" --name "h$i" --join-existing >/dev/null
    fi
    local control raft gossip migration http
    control=$(free_port); raft=$(free_port); gossip=$(free_port); migration=$(free_port); http=$(free_port)
    echo "$gossip" >"$dir/gossip_port"
    local join=""
    [ "$i" -eq 1 ] || join="join = 127.0.0.1:$(cat "$WORK/h1/gossip_port")"
    cat >"$dir/ferry.conf" <<CONF
[agent]
name = h$i
cluster = itest
state_dir = $dir/state
bind = 127.0.0.1
$join
[ports]
control = $control
raft = $raft
gossip = $gossip
migration = $migration
http = $http
$extra
CONF
}

# start_agent I: runs agent hI in the background (log in $WORK/hI.log).
start_agent() {
    local i=$1
    "$FERRYD" run --config "$WORK/h$i/ferry.conf" >>"$WORK/h$i.log" 2>&1 &
    eval "AGENT_PID_$i=$!"
    PIDS+=("$!")
}

# ctl I ARGS...: ferryctl against agent hI with its own admin credential.
ctl() {
    local i=$1; shift
    "$FERRYCTL" --cred "$WORK/h$i/state/admin.cred" "$@"
}

# status_field I EXPR: a field of `cluster status --json` on agent hI.
status_field() {
    local i=$1
    ctl "$i" --json cluster status >"$WORK/status-$i.json" 2>/dev/null || return 1
    json_get "$WORK/status-$i.json" "$2"
}
