#!/usr/bin/env bash
# Live migration between real agents on loopback, driven by ferryctl. A
# third agent keeps the quorum when the destination dies.
#
#   - an idle, a web and a db VM each move h1 -> h2 with --verify: the
#     guest acknowledges the migration notice first and hears that it
#     finished after; the memory hashes match at switchover, the guest's self-check still
#     passes on h2 and its heartbeats go on there, h1 runs it no more, and
#     the cluster state names h2 its owner with a new generation;
#   - with no vmotion network configured, the move falls back to
#     management and says so;
#   - refusals (an unknown VM or host, a host the VM is already on): exit
#     1, one line naming the problem, also when relayed from the owner;
#   - any agent takes the request: h1 passes a move of a VM h2 owns to h2,
#     and follows its progress through h2;
#   - the destination is frozen mid pre-copy and then SIGKILLed: the
#     migration fails, the VM keeps running on its source h3 (heartbeats go
#     on), the owner is still h3; once h2 is back, the same VM moves.
#
# Tampered chunks and a wrong key are proven on real VMs by
# tests/unit/test_migrate_faults.c, and between real agents, with a man in
# the middle on the vmotion network, by test_migrate_tamper.sh; network
# selection with separate vmotion and provisioning networks by
# test_migrate_network.sh.
source "$(dirname "$0")/lib.sh"
require_kvm

refused() {  # refused WHAT EXPECTED AGENT ARGS...: exit 1, one line naming the problem
    local what=$1 expected=$2 agent=$3 rc; shift 3
    set +e
    ctl "$agent" "$@" >"$WORK/refused.out" 2>"$WORK/refused.err"; rc=$?
    set -e
    [ $rc -eq 1 ] || fail "$what: expected exit 1, got $rc: $(cat "$WORK/refused.err")"
    [ "$(wc -l <"$WORK/refused.err")" -eq 1 ] || fail "$what: not one line: $(cat "$WORK/refused.err")"
    grep -q -- "$expected" "$WORK/refused.err" || fail "$what: '$expected' not in: $(cat "$WORK/refused.err")"
    echo "   refused ($what): $(cat "$WORK/refused.err")"
}

step "start three agents on loopback (h3 sends at most 4 MiB/s: time to act mid pre-copy)"
make_agent 1; make_agent 2; make_agent 3 "$(printf '[migration]\nbandwidth = 4M')"
start_agent 1
wait_for 30 ctl 1 cluster status || fail "h1 does not answer: $(tail -5 "$WORK/h1.log")"
start_agent 2; start_agent 3
wait_for 60 cluster_formed h1 h2 h3 || fail "h1, h2 and h3 do not form a cluster: $(cat "$WORK/status.json" 2>/dev/null)"

step "create an idle, a web and a db VM on h1"
ctl 1 vm create idle1 --memory 128M --profile idle --host h1 --start >/dev/null
ctl 1 vm create web1 --memory 128M --profile web:hot=16M,rate=32M --host h1 --start >/dev/null
ctl 1 vm create db1 --memory 128M --profile db:wss=32M,rate=64M --host h1 --start >/dev/null
for vm in idle1 web1 db1; do
    wait_for 60 vm_runs_on 1 $vm || fail "$vm does not run on h1: $(cat "$WORK/show-1-$vm.json")"
done

for vm in idle1 web1 db1; do
    step "live-migrate $vm h1 -> h2 with --verify"
    generation=$(vm_show 1 $vm && vm_field 1 $vm 'd["generation"]')
    ctl 1 --json vm migrate $vm --to h2 --verify >"$WORK/migrate-$vm.json" 2>"$WORK/migrate-$vm.err" \
        || fail "vm migrate $vm failed: $(cat "$WORK/migrate-$vm.err")"
    m() { json_get "$WORK/migrate-$vm.json" "$1"; }
    [ "$(m 'd["state"]')" = succeeded ] || fail "$vm: state $(m 'd["state"]')"
    [ "$(m 'd["hash_verified"]')" = True ] || fail "$vm: memory hashes not verified: $(cat "$WORK/migrate-$vm.json")"
    [ "$(m 'd["committed"]')" = True ] || fail "$vm: not committed"
    [ "$(m 'd["passes"] >= 1 and d["bytes_sent"] > 0 and d["total_ms"] > 0 and d["downtime_ms"] > 0')" = True ] \
        || fail "$vm: figures missing: $(cat "$WORK/migrate-$vm.json")"
    [ "$(m 'd["network"]')" = management ] && [ "$(m 'd["network_fallback"]')" = True ] \
        || fail "$vm: expected the management fallback on loopback: $(cat "$WORK/migrate-$vm.json")"
    [ "$(m 'd["interface"]')" = lo ] || fail "$vm: interface $(m 'd["interface"]'), expected lo"
    [ -n "$(m 'd["cipher"]')" ] || fail "$vm: no cipher named"
    [ "$(m 'd["guest_notified"]')" = True ] || fail "$vm: the guest did not acknowledge the migration notice"
    echo "   $vm: downtime $(m 'd["downtime_ms"]') ms, total $(m 'd["total_ms"]') ms, $(m 'd["passes"]') passes, $(m 'd["cipher"]')"
    wait_for 30 vm_runs_on 2 $vm || fail "$vm does not run on h2 after the move: $(cat "$WORK/show-2-$vm.json")"
    before=$(vm_heartbeats 2 $vm)
    wait_for 30 vm_heartbeats_above 2 $vm "$before" || fail "$vm stopped heartbeating on h2"
    console_finished() { ctl 2 vm console $vm --bytes 1M >"$WORK/console-$vm.txt" && grep -q "ferry-guest: migration [0-9]* finished" "$WORK/console-$vm.txt"; }
    wait_for 10 console_finished || fail "$vm's guest never printed that its migration finished"
    vm_show 1 $vm
    [ "$(vm_field 1 $vm 'd["running_here"]')" = False ] || fail "$vm still runs on h1"
    wait_for 10 vm_owner_is 1 $vm h2 || fail "h1's state does not name h2 owner of $vm"
    [ "$(vm_field 1 $vm "d['generation'] > $generation")" = True ] || fail "$vm: the generation did not move"
done

step "the source's job list and the destination's agree"
ctl 1 --json vm migrations >"$WORK/jobs1.json"
[ "$(json_get "$WORK/jobs1.json" 'sum(1 for j in d["migrations"] if j["role"] == "source" and j["state"] == "succeeded")')" = 3 ] \
    || fail "h1 does not list 3 finished outgoing migrations: $(cat "$WORK/jobs1.json")"
ctl 2 --json vm migrations >"$WORK/jobs2.json"
[ "$(json_get "$WORK/jobs2.json" 'sum(1 for j in d["migrations"] if j["role"] == "destination" and j["state"] == "succeeded")')" = 3 ] \
    || fail "h2 does not list 3 finished incoming migrations: $(cat "$WORK/jobs2.json")"

step "refusals"
refused "already there (asked of h1, answered by the owner h2)" "on h2 already" 1 vm migrate web1 --to h2
refused "unknown host" "no host named 'nowhere'" 2 vm migrate web1 --to nowhere
refused "unknown VM" "no VM named 'ghost'" 2 vm migrate ghost --to h1
set +e
ctl 2 vm migrate web1 >/dev/null 2>"$WORK/usage.err"; rc=$?
set -e
[ $rc -eq 2 ] && grep -q -- "--to HOST" "$WORK/usage.err" || fail "missing --to: exit $rc: $(cat "$WORK/usage.err")"

step "any agent takes the request: h1 passes web1's move h2 -> h3 to its owner, and follows it"
ctl 1 --json vm migrate web1 --to h3 >"$WORK/forwarded.json" 2>"$WORK/forwarded.err" \
    || fail "the forwarded migration failed: $(cat "$WORK/forwarded.err")"
[ "$(json_get "$WORK/forwarded.json" '(d["state"], d["from"], d["to"], d["role"])')" = "('succeeded', 'h2', 'h3', 'source')" ] \
    || fail "the forwarded migration did not run on h2: $(cat "$WORK/forwarded.json")"
wait_for 30 vm_runs_on 3 web1 || fail "web1 does not run on h3 after the forwarded move"

step "the destination frozen, then killed, mid pre-copy: the VM stays on h3"
# h3's bandwidth cap (4 MiB/s) makes the full pass of big1's written memory
# last seconds; big1 writes at most 2 MiB/s, below the cap, so that its move
# once h2 is back converges in a few passes without throttling.
ctl 3 vm create big1 --memory 256M --profile web:hot=64M,rate=2M --host h3 --start >/dev/null
wait_for 60 vm_runs_on 3 big1 || fail "big1 does not run on h3"
written_16m() { vm_show 3 big1 && [ "$(vm_field 3 big1 'd["pages_written"] >= 4096')" = True ]; }
wait_for 60 written_16m || fail "big1 does not write 16 MiB: $(cat "$WORK/show-3-big1.json")"
ctl 3 --json vm migrate big1 --to h2 >"$WORK/migrate-big1.json" 2>"$WORK/migrate-big1.err" &
MIGRATE_PID=$!
in_precopy() {
    ctl 3 --json vm migrations >"$WORK/jobs.json" 2>/dev/null &&
        [ "$(json_get "$WORK/jobs.json" '[(p.get("phase") in ("full", "iterate") and p.get("pass_pages_sent", 0) > 0) for p in [[j for j in d["migrations"] if j["vm"] == "big1"][-1].get("progress", {})]][0]')" = True ]
}
wait_for 30 in_precopy || fail "the migration of big1 never reached pre-copy: $(cat "$WORK/jobs.json")"
kill -STOP "$AGENT_PID_2"
kill -KILL "$AGENT_PID_2"
json_get "$WORK/jobs.json" '[j for j in d["migrations"] if j["vm"] == "big1"][-1]["progress"]' | sed 's/^/   frozen after /'
set +e
wait $MIGRATE_PID; rc=$?
set -e
[ $rc -eq 1 ] || fail "vm migrate big1 exited $rc with h2 killed: $(cat "$WORK/migrate-big1.err")"
grep -q "keeps running on h3" "$WORK/migrate-big1.err" || fail "no clear failure: $(cat "$WORK/migrate-big1.err")"
echo "   $(cat "$WORK/migrate-big1.err")"
wait_for 30 vm_runs_on 3 big1 || fail "big1 does not run on h3 after the failed move"
before=$(vm_heartbeats 3 big1)
wait_for 30 vm_heartbeats_above 3 big1 "$before" || fail "big1 stopped heartbeating on h3"
vm_owner_is 3 big1 h3 || fail "big1's owner changed to $(vm_field 3 big1 'd["owner"]')"

step "h2 back: the same VM moves"
start_agent 2
wait_for 60 cluster_formed h1 h2 h3 || fail "h2 does not rejoin"
wait_for 60 ctl 3 vm migrate big1 --to h2 >/dev/null 2>&1 || fail "big1 does not move once h2 is back"
wait_for 30 vm_runs_on 2 big1 || fail "big1 does not run on h2"
echo "PASS $TEST_NAME"
