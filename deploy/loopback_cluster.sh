# loopback_cluster.sh - a cluster of ferryd agents on one machine, all on
# 127.0.0.1, each with its own state dir, config and free ports (sourced, not
# run). `make demo` (deploy/demo.sh), the benchmarks that drive real agents
# (bench/migration_agent) and the integration tests (tests/integration/lib.sh)
# build their clusters with it. The caller sets FERRYD to the ferryd binary.
#
# Agent I lives in WORK/hI: WORK/hI/state and WORK/hI/ferry.conf. Agent 1
# founds the cluster; every other agent copies its cluster key and joins
# through its gossip port.

# free_port: a TCP port on 127.0.0.1 nothing listens on right now (the kernel
# picks it).
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# loopback_agent_config WORK I NAME CLUSTER [EXTRA_INI]: `ferryd init` for
# agent I, named NAME in cluster CLUSTER, and its config with free ports.
# EXTRA_INI is appended to the config as is (a [migration] section, say).
# Agent 1 must be configured before the others.
loopback_agent_config() {
    local work=$1 i=$2 name=$3 cluster=$4 extra=${5:-}
    local dir=$work/h$i join=""
    mkdir -p "$dir/state"
    if [ "$i" -eq 1 ]; then
        "$FERRYD" init --cluster "$cluster" --state-dir "$dir/state" --name "$name" >/dev/null
    else
        cp "$work/h1/state/cluster.key" "$dir/state/"
        "$FERRYD" init --cluster "$cluster" --state-dir "$dir/state" --name "$name" --join-existing >/dev/null
        join="join = 127.0.0.1:$(sed -n 's/^gossip = //p' "$work/h1/ferry.conf")"
    fi
    cat >"$dir/ferry.conf" <<CONF
[agent]
name = $name
cluster = $cluster
state_dir = $dir/state
bind = 127.0.0.1
$join
[ports]
control = $(free_port)
raft = $(free_port)
gossip = $(free_port)
migration = $(free_port)
http = $(free_port)
$extra
CONF
}

# loopback_agent_start WORK I LOG: runs agent I in the background, its output
# appended to LOG; sets LOOPBACK_PID to its process id.
loopback_agent_start() {
    "$FERRYD" run --config "$1/h$2/ferry.conf" >>"$3" 2>&1 &
    LOOPBACK_PID=$!
}

# loopback_cleanup WORK [PID...]: stops the agents (SIGTERM), waits for them
# and removes WORK. For an EXIT trap: never fails.
loopback_cleanup() {
    local work=$1 pid
    shift
    for pid in "$@"; do kill -TERM "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
