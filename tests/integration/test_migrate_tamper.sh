#!/usr/bin/env bash
# A man in the middle on the migration data plane, between two real agents.
# In a network namespace of its own, h1 and h2 each have a management and
# a vmotion interface (198.18.1.x, 198.18.2.x). An nftables rule sends the
# connections from h1's vmotion address to h2's to tamper_proxy.py
# (198.18.4.1), which relays them on to h2 (the prepare call goes over
# management, untouched). For each mode a live migration h1 -> h2 of a
# running VM:
#
#   - tamper: one byte of a sealed DATA chunk flipped, megabytes into the
#     stream: h2 finds that the chunk fails authentication, h1 aborts;
#   - wrongkey: the proxy swaps the sender's ephemeral key in HELLO for one
#     of its own: h2 refuses the handshake, h1 aborts;
#   - wrongkey-welcome: the same with h2's ephemeral key in WELCOME: h1
#     refuses it and tells h2 to give up, and why (migration.abort's reason);
#
#   after each, `vm migrate` exits 1 naming the cause, the proxy says what
#   it changed, h2 records the failure (nothing left running there), and the
#   VM still runs on h1: same owner, same generation, its heartbeats going on;
#
#   - pass: the proxy relays untouched and the migration succeeds through
#     it (h2 sees the session come from the proxy's address), the VM then
#     running on h2 alone.
#
# The same faults on the library alone: tests/unit/test_migrate_faults.c.
NETNS_NEEDS="kvm nft python3"
source "$(dirname "$0")/lib.sh"

PROXY_ADDRESS=198.18.4.1
PROXY_MARK=0x4d

step "a private network namespace: management and vmotion per agent, and the proxy's address"
netns_agents "m:1:management, raft, gossip" "v:2:vmotion"
ip link add fx type veth peer name fxx
ip addr add "$PROXY_ADDRESS/24" dev fx
ip link set fxx up
ip link set fx up
PROXY_PORT=$(free_port)
# Locally made connections pass the nat output hook: those from h1's vmotion
# address to h2's go to the proxy; the proxy's own (marked) go through.
nft -f - <<RULES
table ip mitm {
    chain output {
        type nat hook output priority -100;
        ip saddr 198.18.2.1 ip daddr 198.18.2.2 meta l4proto tcp meta mark != $PROXY_MARK counter dnat to $PROXY_ADDRESS:$PROXY_PORT;
    }
}
RULES

step "two agents, a VM on h1"
start_agent 1
wait_for 30 ctl 1 cluster status || fail "h1 does not answer: $(tail -5 "$WORK/h1.log")"
start_agent 2
wait_for 60 cluster_formed h1 h2 || fail "h1 and h2 do not form a cluster"
ctl 1 vm create web1 --memory 128M --profile web:hot=16M,rate=16M --host h1 --start >/dev/null
wait_for 60 vm_runs_on 1 web1 || fail "web1 does not run on h1: $(cat "$WORK/show-1-web1.json")"

# start_proxy MODE: a fresh proxy (one change per run) reporting to $REPORT.
PROXY_PID=""
start_proxy() {
    if [ -n "$PROXY_PID" ]; then
        kill "$PROXY_PID"
        wait "$PROXY_PID" 2>/dev/null || true
    fi
    REPORT=$WORK/proxy-$1.log
    python3 "$(dirname "$0")/tamper_proxy.py" --listen "$PROXY_ADDRESS:$PROXY_PORT" --mode "$1" \
        --after $((4 << 20)) --mark $((PROXY_MARK)) --report "$REPORT" 2>>"$WORK/proxy.log" &
    PROXY_PID=$!
    PIDS+=("$PROXY_PID")
    wait_for 10 grep -q "^listening" "$REPORT" || fail "the proxy did not start: $(cat "$WORK/proxy.log")"
}

# proxy_closed: the proxy saw the migration's connection end and counted it.
proxy_closed() {
    wait_for 10 grep -q "^closed" "$REPORT" || fail "the proxy never saw its connection close: $(cat "$REPORT")"
}
# no_page_moved: the proxy's one connection closed with no DATA chunk through it.
no_page_moved() {
    proxy_closed
    grep -q "(0 DATA chunks)" "$REPORT" || fail "memory went out before the handshake held: $(cat "$REPORT")"
}

# last_job I FIELD: FIELD of the newest migration of web1 that agent hI lists.
last_job() {
    ctl "$1" --json vm migrations >"$WORK/jobs-$1.json" &&
        json_get "$WORK/jobs-$1.json" "[j for j in d['migrations'] if j['vm'] == 'web1'][-1].get('$2')"
}
destination_failed() { [ "$(last_job 2 state)" = failed ]; }

# attempt MODE SOURCE_SAYS DESTINATION_SAYS: the migration through the
# proxy in MODE fails with SOURCE_SAYS in ferryctl's message and
# DESTINATION_SAYS in h2's record of it; the VM stays on h1.
attempt() {
    local mode=$1 source_says=$2 destination_says=$3 rc generation heartbeats
    step "$mode: the migration fails and web1 stays on h1"
    start_proxy "$mode"
    vm_show 1 web1
    generation=$(vm_field 1 web1 'd["generation"]')
    heartbeats=$(vm_field 1 web1 'd["heartbeats"]')
    set +e
    ctl 1 vm migrate web1 --to h2 >/dev/null 2>"$WORK/$mode.err"; rc=$?
    set -e
    [ $rc -eq 1 ] || fail "$mode: vm migrate exited $rc: $(cat "$WORK/$mode.err")"
    echo "   $(cat "$WORK/$mode.err")"
    grep -q "^CHANGED: " "$REPORT" || fail "$mode: the proxy changed nothing: $(cat "$REPORT")"
    echo "   proxy $(grep "^CHANGED: " "$REPORT")"
    grep -q -- "$source_says" "$WORK/$mode.err" || fail "$mode: '$source_says' not in: $(cat "$WORK/$mode.err")"
    grep -q "it keeps running on h1" "$WORK/$mode.err" || fail "$mode: no word of the VM staying: $(cat "$WORK/$mode.err")"

    wait_for 30 destination_failed || fail "$mode: h2's migration is $(last_job 2 state), not failed"
    last_job 2 error | grep -q -- "$destination_says" \
        || fail "$mode: '$destination_says' not in h2's error: $(last_job 2 error)"
    echo "   h2: $(last_job 2 error)"
    vm_show 2 web1
    [ "$(vm_field 2 web1 'd["running_here"]')" = False ] || fail "$mode: web1 runs on h2 too"

    wait_for 30 vm_runs_on 1 web1 || fail "$mode: web1 does not run on h1: $(cat "$WORK/show-1-web1.json")"
    [ "$(vm_field 1 web1 'd["owner"]')" = h1 ] || fail "$mode: web1's owner is $(vm_field 1 web1 'd["owner"]')"
    [ "$(vm_field 1 web1 'd["generation"]')" = "$generation" ] || fail "$mode: web1's generation moved"
    wait_for 30 vm_heartbeats_above 1 web1 "$heartbeats" || fail "$mode: web1 stopped heartbeating on h1"
}

attempt tamper "failed authentication (tampered in transit" "failed authentication (tampered in transit"
grep -q "^CHANGED: flipped one byte at offset [0-9]* of DATA chunk" "$REPORT" \
    || fail "tamper: the change was not in a DATA chunk: $(cat "$REPORT")"
attempt wrongkey "rejected the handshake: HELLO failed authentication" "HELLO from $PROXY_ADDRESS failed authentication"
no_page_moved
attempt wrongkey-welcome "WELCOME from .* failed authentication" \
    "the source called it off: handshake: WELCOME from .* failed authentication"
no_page_moved

step "pass: through the untouched proxy the migration succeeds"
start_proxy pass
ctl 1 --json vm migrate web1 --to h2 >"$WORK/pass.json" 2>"$WORK/pass.err" \
    || fail "the migration through the proxy failed: $(cat "$WORK/pass.err")"
[ "$(json_get "$WORK/pass.json" '(d["state"], d["network"], d["address"])')" = "('succeeded', 'vmotion', '198.18.2.2')" ] \
    || fail "not a migration over vmotion: $(cat "$WORK/pass.json")"
data_chunks() { grep -o "([0-9]* DATA chunks)" "$REPORT" | tr -dc '0-9\n' | awk '{ n += $1 } END { print n + 0 }'; }
proxy_closed
[ "$(data_chunks)" -gt 0 ] || fail "no DATA chunk went through the proxy: $(cat "$REPORT")"
! grep -q "^CHANGED" "$REPORT" || fail "the proxy changed something in pass mode: $(cat "$REPORT")"
echo "   the proxy relayed $(data_chunks) DATA chunks untouched"
[ "$(grep -c "stream receiver: session with $PROXY_ADDRESS" "$WORK/h2.log")" -ge 1 ] \
    || fail "h2 did not see the session come from the proxy: $(grep 'stream receiver' "$WORK/h2.log")"
wait_for 30 vm_runs_on 2 web1 || fail "web1 does not run on h2: $(cat "$WORK/show-2-web1.json")"
wait_for 10 vm_owner_is 1 web1 h2 || fail "h1's state does not name h2 owner of web1"
[ "$(vm_field 1 web1 'd["running_here"]')" = False ] || fail "web1 still runs on h1 as well"
nft list table ip mitm >"$WORK/mitm.nft"
grep -q "counter packets [1-9]" "$WORK/mitm.nft" || fail "the redirect rule never matched: $(cat "$WORK/mitm.nft")"
echo "PASS $TEST_NAME"
