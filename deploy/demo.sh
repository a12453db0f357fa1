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
cleanup() {
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

say "1. a single-agent dev cluster on 127.0.0.1"
"$FERRYD" --dev >"$work/dev.log" 2>&1 &
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

say "done: the agent stops on SIGTERM and removes its dev state dir"
