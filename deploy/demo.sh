#!/usr/bin/env bash
# make demo: starts a dev agent and shows what ferry does, step by step.
# Each capability that lands adds its step here.
set -euo pipefail
build=${1:-build}
FERRYD=$build/ferryd
FERRYCTL=$build/ferryctl
work=$(mktemp -d /tmp/ferry-demo.XXXXXX)
export XDG_RUNTIME_DIR=$work
pids=()

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

# free_port and the three-host cluster of step 6 (shared with the integration
# tests and bench/migration_agent).
source "$(dirname "$0")/loopback_cluster.sh"
trap 'loopback_cleanup "$work" "${pids[@]}"' EXIT
port_busy() { python3 -c 'import socket,sys; s=socket.socket(); sys.exit(s.connect_ex(("127.0.0.1",int(sys.argv[1])))!=0)' "$1"; }

say "1. a single-agent dev cluster on 127.0.0.1"
dev_flags=()
if port_busy 7400 || port_busy 7401; then
    echo "(the default ports 7400-7404 are taken on this machine; the demo uses free ones)"
    for key in control raft gossip migration http; do dev_flags+=(--set "ports.$key=$(free_port)"); done
fi
"$FERRYD" --dev "${dev_flags[@]}" >"$work/dev.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do grep -q "is ready" "$work/dev.log" && break; sleep 0.1; done
grep -q "is ready" "$work/dev.log" || { cat "$work/dev.log"; echo "demo: the dev agent did not start" >&2; exit 1; }
sed -n '/is ready/,/try:/p' "$work/dev.log"

say "2. the host as the agent sees it"
run "$FERRYCTL" host show

say "3. the same, as JSON (every command takes --json)"
run "$FERRYCTL" --json host show | head -n 20
echo "  ..."

say "4. a client with the wrong key is refused"
"$FERRYD" init --cluster other --state-dir "$work/other" >/dev/null
cred=$work/ferry-dev-$(id -u).cred
{ grep -v '^client_' "$cred"; grep '^client_' "$work/other/admin.cred"; } >"$work/wrong.cred"
chmod 600 "$work/wrong.cred"
run "$FERRYCTL" --cred "$work/wrong.cred" host show || echo "(exit code $?)"

say "5. a VM: the create and the power-on go through Raft; the owner (this agent) runs it"
if (exec 3<>/dev/kvm) 2>/dev/null; then
    # The agent registers its host in the cluster state shortly after start.
    for _ in $(seq 1 100); do
        "$FERRYCTL" --json cluster status | grep -q '"hosts": [1-9]' && break
        sleep 0.1
    done
    run "$FERRYCTL" vm create web1 --memory 64M --profile web:hot=16M,rate=8M --start
    for _ in $(seq 1 300); do
        "$FERRYCTL" --json vm show web1 | grep -q '"heartbeats": [1-9]' && break
        sleep 0.1
    done
    sleep 2   # a couple of measurement rounds, so CPU and dirty rate show
    run "$FERRYCTL" vm list
    run "$FERRYCTL" vm show web1
    printf '$ %s\n' "$FERRYCTL vm console web1 | tail -n 4"
    "$FERRYCTL" vm console web1 | tail -n 4
    run "$FERRYCTL" vm create web2 --memory 100T || echo "(exit code $?)"
    run "$FERRYCTL" vm stop web1
    run "$FERRYCTL" vm delete web1
else
    echo "(skipped: no usable /dev/kvm here)"
fi


say "6. a three-host cluster on loopback: gossip membership and Raft"
for i in 1 2 3; do
    loopback_agent_config "$work" "$i" "host$i" demo
    loopback_agent_start "$work" "$i" "$work/h$i/log"
    pids+=("$LOOPBACK_PID")
    eval "pid_$i=$LOOPBACK_PID"
done
h() { "$FERRYCTL" --cred "$work/h$1/state/admin.cred" "${@:2}"; }
voters() { h 1 --json cluster status 2>/dev/null | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["voters"]))'; }
for _ in $(seq 1 150); do [ "$(voters)" = 3 ] && break; sleep 0.1; done
run "$FERRYCTL" --cred "$work/h2/state/admin.cred" host list
echo
run "$FERRYCTL" --cred "$work/h3/state/admin.cred" cluster status
echo
run "$FERRYCTL" --cred "$work/h3/state/admin.cred" cluster set drs.level 3
leader=$(h 1 --json cluster status | python3 -c 'import json,sys; print(json.load(sys.stdin)["leader"])')
echo "killing the leader, $leader, with SIGKILL ..."
kill -KILL "$(eval echo "\$pid_${leader#host}")"
survivor=$(( ${leader#host} % 3 + 1 ))
start=$(date +%s%N)
for _ in $(seq 1 300); do
    now=$(h "$survivor" --json cluster status 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["leader"])')
    [ -n "$now" ] && [ "$now" != "$leader" ] && break
    sleep 0.02
done
echo "new leader: $now, seen $(( ($(date +%s%N) - start) / 1000000 )) ms after the kill (polling through ferryctl)"
run "$FERRYCTL" --cred "$work/h$survivor/state/admin.cred" cluster status

say "7. live migration between the two survivors, then suspend and a cold migration back"
other=$(( survivor % 3 + 1 )); [ "host$other" = "$leader" ] && other=$(( other % 3 + 1 ))
if h "$survivor" vm create mig1 --memory 128M --profile web:hot=16M,rate=16M --host "host$survivor" --start; then
    for _ in $(seq 1 100); do
        h "$survivor" --json vm show mig1 2>/dev/null | grep -q '"heartbeats": [1-9]' && break
        sleep 0.1
    done
    run "$FERRYCTL" --cred "$work/h$survivor/state/admin.cred" vm migrate mig1 --to "host$other" --verify
    run "$FERRYCTL" --cred "$work/h$other/state/admin.cred" vm list
    run "$FERRYCTL" --cred "$work/h$other/state/admin.cred" vm stop mig1 --suspend
    run "$FERRYCTL" --cred "$work/h$other/state/admin.cred" vm migrate mig1 --to "host$survivor"
    run "$FERRYCTL" --cred "$work/h$survivor/state/admin.cred" vm start mig1
    run "$FERRYCTL" --cred "$work/h$survivor/state/admin.cred" vm events mig1
    run "$FERRYCTL" --cred "$work/h$survivor/state/admin.cred" vm migrations
else
    echo "(skipped: the VM could not be created here)"
fi

say "done: the agents stop on SIGTERM; the dev agent powers its VMs off and removes its state dir"
