#!/usr/bin/env bash
# Which network a migration takes. In a network namespace of its own, two
# agents each get three interfaces in 198.18.0.0/15 (veth: this kernel
# has no dummy driver), tagged
# management (198.18.1.x), vmotion (198.18.2.x) and provisioning
# (198.18.3.x):
#
#   - a live migration h1 -> h2 names vmotion, h2's vmotion interface and
#     address, with no fallback; h2's receiver logs the session coming from
#     h1's vmotion address (each side binds its own vmotion address);
#   - the VM suspended on h2 (vm stop --suspend) cold-migrates back over
#     provisioning, the session coming from h2's provisioning address; a
#     start on h1 resumes it from the image: the guest's own heartbeat
#     counter goes on from where it was, rather than from a fresh boot.
NETNS_NEEDS="kvm"
source "$(dirname "$0")/lib.sh"

step "a private network namespace: three tagged interfaces per agent"
netns_agents "m:1:management, raft, gossip" "v:2:vmotion" "p:3:provisioning"

step "two agents on their management addresses"
start_agent 1
wait_for 30 ctl 1 cluster status || fail "h1 does not answer: $(tail -5 "$WORK/h1.log")"
start_agent 2
wait_for 60 cluster_formed h1 h2 || fail "h1 and h2 do not form a cluster"

step "live migration h1 -> h2 goes over vmotion"
ctl 1 vm create web1 --memory 128M --profile web:hot=16M,rate=16M --host h1 --start >/dev/null
wait_for 60 vm_runs_on 1 web1 || fail "web1 does not run on h1"
ctl 1 --json vm migrate web1 --to h2 >"$WORK/live.json" 2>"$WORK/live.err" || fail "live migration failed: $(cat "$WORK/live.err")"
m() { json_get "$WORK/$1.json" "$2"; }
[ "$(m live '(d["network"], d["interface"], d["address"], d["network_fallback"])')" = "('vmotion', 'fv2', '198.18.2.2', False)" ] \
    || fail "live migration did not use h2's vmotion network: $(cat "$WORK/live.json")"
grep -q "stream receiver: session with 198.18.2.1" "$WORK/h2.log" \
    || fail "h2 did not see the session arrive from h1's vmotion address: $(grep 'stream receiver' "$WORK/h2.log")"
echo "   $(grep -o 'stream receiver: session with [^:]*' "$WORK/h2.log" | tail -1), bound on $(m live 'd["address"]')"
wait_for 30 vm_runs_on 2 web1 || fail "web1 does not run on h2"

step "suspend on h2, cold migration h2 -> h1 goes over provisioning"
wait_for 10 ctl 2 vm stop web1 --suspend || fail "vm stop --suspend failed: $(ctl 2 vm stop web1 --suspend 2>&1)"
counter_before=$(ctl 2 --json vm events web1 | python3 -c 'import json,sys; print(sum(1 for e in json.load(sys.stdin)["events"] if e["kind"] == "suspended"))')
[ "$counter_before" -ge 1 ] || fail "h2 recorded no suspended event: $(ctl 2 vm events web1)"
ctl 2 --json vm migrate web1 --to h1 >"$WORK/cold.json" 2>"$WORK/cold.err" || fail "cold migration failed: $(cat "$WORK/cold.err")"
[ "$(m cold '(d["kind"], d["network"], d["interface"], d["address"], d["network_fallback"])')" = "('cold', 'provisioning', 'fp1', '198.18.3.1', False)" ] \
    || fail "cold migration did not use h1's provisioning network: $(cat "$WORK/cold.json")"
[ "$(m cold 'd["bytes_sent"] > 0')" = True ] || fail "the cold migration copied nothing: $(cat "$WORK/cold.json")"
grep -q "stream receiver: session with 198.18.3.2" "$WORK/h1.log" \
    || fail "h1 did not see the session arrive from h2's provisioning address: $(grep 'stream receiver' "$WORK/h1.log")"
[ -f "$WORK/h1/state/images/web1/manifest" ] || fail "no complete image arrived on h1"
[ ! -e "$WORK/h2/state/images/web1" ] || fail "h2 kept the image it gave away"

step "a start on h1 resumes the image"
ctl 1 vm start web1 >/dev/null || fail "vm start web1 on h1 failed"
wait_for 30 vm_runs_on 1 web1 || fail "web1 does not run on h1"
resumed=$(ctl 1 --json vm events web1 | python3 -c 'import json,sys; print(sum(1 for e in json.load(sys.stdin)["events"] if e["kind"] == "resumed"))')
[ "$resumed" -ge 1 ] || fail "web1 booted afresh rather than resuming: $(ctl 1 vm events web1)"
vm_show 1 web1
[ "$(json_get "$WORK/show-1-web1.json" 'd["heartbeat_counter"] > d["heartbeats"]')" = True ] \
    || fail "the guest's own counter started over: $(cat "$WORK/show-1-web1.json")"
[ ! -e "$WORK/h1/state/images/web1" ] || fail "the image outlived the resume"
echo "PASS $TEST_NAME"
