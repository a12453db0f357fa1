# lib.sh - shared helpers for the integration scripts (sourced, not run).
# Each script gets FERRYD, FERRYCTL, FERRY_BUILD_DIR and FERRY_SOURCE_DIR from ctest.
set -euo pipefail

: "${FERRYD:?run through ctest (FERRYD unset)}"
: "${FERRYCTL:?run through ctest (FERRYCTL unset)}"
TEST_NAME=$(basename "$0" .sh)

# skip WHY...: this machine cannot run the test; say so loudly and pass.
skip() { echo "SKIPPED: $*"; exit 0; }
require_kvm() { (exec 3<>/dev/kvm) 2>/dev/null || skip "no /dev/kvm - $TEST_NAME needs KVM to run VMs"; }

# A script that sets NETNS_NEEDS before sourcing this file runs in a network
# namespace of its own, where it may add interfaces and firewall rules at
# will (198.18.0.0/15 addresses only). It is re-run under `unshare --net`
# before anything else happens, or skipped if that cannot be. NETNS_NEEDS
# lists what it needs besides root, unshare and ip: commands, or "kvm".
if [ -n "${NETNS_NEEDS+set}" ] && [ -z "${FERRY_IN_NETNS:-}" ]; then
    [ "$(id -u)" -eq 0 ] || skip "$TEST_NAME needs root for a network namespace"
    for need in unshare ip $NETNS_NEEDS; do
        if [ "$need" = kvm ]; then
            require_kvm
        else
            command -v "$need" >/dev/null || skip "$TEST_NAME needs $need in a network namespace"
        fi
    done
    exec unshare --net env FERRY_IN_NETNS=1 bash "$0" "$@"
fi

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

# free_port, and the state and config of agents on loopback (make_agent and
# start_agent below): shared with `make demo` and bench/migration_agent.
source "$(dirname "${BASH_SOURCE[0]}")/../../deploy/loopback_cluster.sh"

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
# make_agent I [EXTRA_INI]: state dir, config and ports for agent hI in
# cluster itest (under $WORK/hI). Agent 1 founds the cluster; the others copy
# its cluster key and join through its gossip port. EXTRA_INI is appended to
# the config (a [migration] section, say).
make_agent() { loopback_agent_config "$WORK" "$1" "h$1" itest "${2:-}"; }

# start_agent I: runs agent hI in the background (log in $WORK/hI.log); sets
# AGENT_PID_I.
start_agent() {
    local i=$1
    loopback_agent_start "$WORK" "$i" "$WORK/h$i.log"
    eval "AGENT_PID_$i=$LOOPBACK_PID"
    PIDS+=("$LOOPBACK_PID")
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

# cluster_formed NAME...: agent 1 counts every named agent a voter, and
# each of them sees all of them alive.
cluster_formed() {
    ctl 1 --json cluster status >"$WORK/status.json" 2>/dev/null &&
        [ "$(json_get "$WORK/status.json" 'len(d["voters"])')" -eq $# ] || return 1
    local want i
    want=$(python3 -c 'import sys; print(sorted(sys.argv[1:]))' "$@")
    for i in "${@#h}"; do
        ctl "$i" --json host list >"$WORK/hosts$i.json" 2>/dev/null &&
            [ "$(json_get "$WORK/hosts$i.json" 'sorted(m["name"] for m in d["members"] if m["state"] == "alive")')" = "$want" ] ||
            return 1
    done
}

# --- VMs as agents see them ----------------------------------------------------
# vm_show I VM: `vm show --json` on agent hI into $WORK/show-I-VM.json.
vm_show() { ctl "$1" --json vm show "$2" >"$WORK/show-$1-$2.json" 2>/dev/null; }
# vm_field I VM EXPR: EXPR over the last vm_show I VM.
vm_field() { json_get "$WORK/show-$1-$2.json" "$3"; }
# vm_runs_on I VM: runs on hI, heartbeating, its self-check clean.
vm_runs_on() {
    vm_show "$1" "$2" && [ "$(vm_field "$1" "$2" 'd["running_here"] and d["heartbeats"] > 0 and d["check_errors"] == 0 and d["guest_status"] == "running"')" = True ]
}
vm_heartbeats() { vm_show "$1" "$2" && vm_field "$1" "$2" 'd["heartbeats"]'; }
vm_heartbeats_above() { local n; n=$(vm_heartbeats "$1" "$2") && [ "$n" -gt "$3" ]; }
vm_owner_is() { vm_show "$1" "$2" && [ "$(vm_field "$1" "$2" 'd["owner"]')" = "$3" ]; }

# --- two agents in a network namespace (NETNS_NEEDS above) --------------------
# netns_agents NETWORK...: veth interfaces, state and config for agents h1
# and h2. Each NETWORK is "LETTER:SUBNET:SERVICES": agent hI gets interface
# f<LETTER>I with address 198.18.SUBNET.I/24, tagged SERVICES. The first
# network is the management one: the agents bind there, h2 joins h1 on it.
netns_agents() {
    local net letter subnet services i
    ip link set lo up
    for net in "$@"; do
        IFS=: read -r letter subnet services <<<"$net"
        for i in 1 2; do
            ip link add "f$letter$i" type veth peer name "f$letter${i}x"
            ip addr add "198.18.$subnet.$i/24" dev "f$letter$i"
            ip link set "f$letter${i}x" up
            ip link set "f$letter$i" up
        done
    done
    mkdir -p "$WORK/h1/state" "$WORK/h2/state"
    "$FERRYD" init --cluster itest --state-dir "$WORK/h1/state" --name h1 >/dev/null
    cp "$WORK/h1/state/cluster.key" "$WORK/h2/state/"
    "$FERRYD" init --cluster itest --state-dir "$WORK/h2/state" --name h2 --join-existing >/dev/null
    local management gossip1
    IFS=: read -r letter management services <<<"$1"
    gossip1=$(free_port)
    for i in 1 2; do
        {
            printf '[agent]\nname = h%s\ncluster = itest\nstate_dir = %s\nbind = 198.18.%s.%s\n' \
                "$i" "$WORK/h$i/state" "$management" "$i"
            [ "$i" -eq 1 ] || echo "join = 198.18.$management.1:$gossip1"
            printf '[ports]\ncontrol = %s\nraft = %s\ngossip = %s\nmigration = %s\nhttp = %s\n' \
                "$(free_port)" "$(free_port)" "$([ "$i" -eq 1 ] && echo "$gossip1" || free_port)" \
                "$(free_port)" "$(free_port)"
            for net in "$@"; do
                IFS=: read -r letter subnet services <<<"$net"
                printf '[interface f%s%s]\nservices = %s\n' "$letter" "$i" "$services"
            done
        } >"$WORK/h$i/ferry.conf"
    done
}
